"""Real TCP / UDP origins for the stream proxy tests: an echo server (each connection's
bytes back, EOF answered by EOF, so half-close is visible), a named echo (prefixes its
answers with its name, to see which node a connection reached)."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

from pylon.pdk.testing import free_port


class TcpEcho:
    """Echoes every connection on 127.0.0.1 (a thread per connection); ``name`` (if set)
    is sent first on each connection."""

    def __init__(self, name: bytes = b"", port: int | None = None) -> None:
        self.name = name
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port or 0))
        self.sock.listen(128)
        self.port = int(self.sock.getsockname()[1])
        self.accepted = 0
        self.peers: list[Any] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop:
            try:
                c, peer = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.peers.append(peer)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c: socket.socket) -> None:
        with c:
            c.settimeout(30)
            try:
                if self.name:
                    c.sendall(self.name)
                while True:
                    data = c.recv(65536)
                    if not data:
                        c.shutdown(socket.SHUT_WR)       # EOF answered by EOF
                        return
                    c.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self._stop = True
        with contextlib.suppress(OSError):
            self.sock.close()


class UdpEcho:
    """Answers each datagram with ``name`` + the datagram."""

    def __init__(self, name: bytes = b"") -> None:
        self.name = name
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.peers: set[Any] = set()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(65536)
            except OSError:
                return
            self.peers.add(peer)
            with contextlib.suppress(OSError):
                self.sock.sendto(self.name + data, peer)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def stream_node(tcp: list[Any] | None = None, udp: list[Any] | None = None,
                mode: str = "http&stream") -> dict[str, Any]:
    """The node config part that turns the stream proxy on (``Gateway(node=...)``)."""
    return {"pylon": {"proxy_mode": mode,
                      "stream_proxy": {"tcp": tcp or [], "udp": udp or []}}}


def talk(port: int, data: bytes, timeout: float = 5.0, expect: int | None = None,
         shut: bool = True) -> bytes:
    """Send ``data`` to 127.0.0.1:``port``, half-close (``shut``), read until EOF (or
    ``expect`` bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        out = b""
        try:                           # a gateway that refuses may reset before we are done
            s.sendall(data)
            if shut:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            return out
        while expect is None or len(out) < expect:
            try:
                got = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not got:
                break
            out += got
        return out


__all__ = ["TcpEcho", "UdpEcho", "free_port", "stream_node", "talk"]
