"""Real receivers for the logger tests, on 127.0.0.1: what a log sink is sent, as it arrives.

``HttpCollector`` (POSTs by path), ``TcpReceiver`` (the bytes of each connection, once it is
closed), ``UdpReceiver`` (datagrams), ``HungListener`` (accepts the TCP handshake, never
reads: a sink that does not answer) and ``json_lines`` (a file-logger's file).  Each is a
context manager; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

T = TypeVar("T")


def wait_for(get: Callable[[], T], done: Callable[[T], bool], timeout: float = 8.0) -> T:
    """``get()`` again until ``done`` says so or ``timeout`` seconds pass; the last value."""
    deadline = time.monotonic() + timeout
    while True:
        got = get()
        if done(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


class _Receiver:
    lock: threading.Lock

    def _wait(self, select: Callable[[], list[Any]], n: int, timeout: float) -> list[Any]:
        """``select()`` (under the lock) once it has ``n`` items (fewer after timeout)."""
        def get() -> list[Any]:
            with self.lock:
                return select()
        return wait_for(get, lambda got: len(got) >= n, timeout)

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: Any) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HttpCollector(_Receiver):
    """An HTTP server recording every POST: ``{"path", "headers", "body"}``."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                with outer.lock:
                    outer.posts.append({"path": self.path, "headers": dict(self.headers),
                                        "body": body})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a: object) -> None:
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def wait(self, n: int, path: str, timeout: float = 8.0) -> list[dict[str, Any]]:
        """The POSTs to ``path`` once there are ``n`` (fewer after ``timeout``)."""
        return self._wait(lambda: [p for p in self.posts if p["path"] == path], n, timeout)

    def entries(self, n: int, path: str, timeout: float = 8.0) -> list[Any]:
        """The log entries of the JSON-array POSTs to ``path`` (at least ``n``)."""
        return self._wait(lambda: [e for p in self.posts if p["path"] == path
                                   for e in json.loads(p["body"])], n, timeout)

    def close(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()


class TcpReceiver(_Receiver):
    """A TCP server keeping, per connection, all it was sent (once the sender closes)."""

    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.lock = threading.Lock()
        outer = self

        class H(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data = b""
                self.request.settimeout(5)
                while chunk := self.request.recv(65536):
                    data += chunk
                with outer.lock:
                    outer.got.append(data)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.srv = Server(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def wait(self, n: int, timeout: float = 8.0) -> list[bytes]:
        """The connections' data once there are ``n`` (fewer after ``timeout``)."""
        return self._wait(lambda: list(self.got), n, timeout)

    def close(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()


class UdpReceiver(_Receiver):
    """A UDP socket; ``recv()`` is the next datagram (``socket.timeout`` after 8 s)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(8)
        self.port = self.sock.getsockname()[1]

    def recv(self) -> bytes:
        return self.sock.recv(65536)

    def close(self) -> None:
        self.sock.close()


class HungListener(_Receiver):
    """A listening socket nobody accepts from: the kernel completes the handshake, then the
    sender waits (an HTTP answer or a TLS handshake never comes)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


def json_lines(path: str, n: int, timeout: float = 5.0) -> list[Any]:
    """The JSON lines of a file-logger's file once there are ``n`` (fewer after timeout)."""
    def get() -> list[Any]:
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [json.loads(x) for x in f.read().splitlines() if x]
    return wait_for(get, lambda got: len(got) >= n, timeout)
