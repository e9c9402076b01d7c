"""A small blocking HTTP/2 client for the tests (the ``h2`` library over a socket), and
``fetch``: one request by HTTP/1.1 or HTTP/2, so a behaviour test can run over both."""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions


class Resp:
    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.interim: list[int] = []
        self.body = bytearray()
        #: body bytes received (also when the client keeps none: ``keep_body=False``)
        self.received = 0
        self.trailers: list[tuple[bytes, bytes]] | None = None
        self.ended = False
        #: RST_STREAM from the server: its error code
        self.reset: int | None = None

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None

    def header(self, name: str) -> str | None:
        n = name.lower().encode()
        for k, v in self.headers:
            if k == n:
                return v.decode("latin-1")
        return None

    def header_map(self) -> dict[str, str]:
        return {k.decode(): v.decode("latin-1") for k, v in self.headers}


class _Conn(h2.connection.H2Connection):
    """The client's h2, which can be told to ignore the server's stream limit (to test
    that the server enforces it) and to go on after a GOAWAY with NO_ERROR (h2 stops at
    any GOAWAY; RFC 9113 §6.8: streams up to the last one are still answered)."""

    unlimited = False

    @property
    def open_outbound_streams(self) -> int:
        n = self._open_streams(0 if self.config.client_side else 1)
        return 0 if self.unlimited else n


class H2Client:
    """h2c with prior knowledge to 127.0.0.1:``port``; ``auto_credit=False`` leaves the
    response windows to the test (``credit``)."""

    def __init__(self, port: int, *, settings: dict[int, int] | None = None,
                 timeout: float = 10.0, auto_credit: bool = True,
                 sock: socket.socket | None = None, upgraded: bool = False,
                 keep_body: bool = True) -> None:
        self.sock = sock or socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.settimeout(timeout)
        # frames go out in several writes: without NODELAY, Nagle and the peer's delayed
        # ACK add 40 ms to every window round trip
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.conn = _Conn(h2.config.H2Configuration(client_side=True, header_encoding=None))
        if upgraded:
            self.conn.initiate_upgrade_connection()
        else:
            self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.auto_credit = auto_credit
        self.keep_body = keep_body
        self.resps: dict[int, Resp] = {}
        self.events: list[h2.events.Event] = []
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.closed = False
        self.remote_settings: dict[int, int] = {}
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_request(self, method: str, path: str, headers: list[tuple[str, str]] | None = None,
                     body: bytes | None = None, end: bool = True,
                     authority: str = "a.test") -> int:
        sid = self.conn.get_next_available_stream_id()
        hs = [(":method", method), (":scheme", "http"), (":authority", authority),
              (":path", path), *(headers or [])]
        self.resps[sid] = Resp()
        self.conn.send_headers(sid, [(k.encode(), v.encode()) for k, v in hs],
                               end_stream=end and not body)
        if body:
            self.send_body(sid, body, end)
        self.flush()
        return sid

    def send_raw(self, headers: list[tuple[bytes, bytes]], end: bool = True) -> int:
        """A request head as given (no pseudo-headers added, no checks): its stream id."""
        sid = self.conn.get_next_available_stream_id()
        self.resps[sid] = Resp()
        self.conn.send_headers(sid, headers, end_stream=end)
        self.flush()
        return sid

    def send_body(self, sid: int, body: bytes, end: bool = True) -> None:
        """All of ``body``, waiting for the server's window as needed."""
        view = memoryview(body)
        while view:
            window = min(self.conn.local_flow_control_window(sid),
                         self.conn.max_outbound_frame_size)
            if window <= 0:
                self.pump(lambda: self.conn.local_flow_control_window(sid) > 0 or
                          self.resps[sid].done)
                if self.resps[sid].done:
                    return
                continue
            n = min(window, len(view))
            self.conn.send_data(sid, bytes(view[:n]))
            view = view[n:]
            self.flush()
        if end:
            self.conn.end_stream(sid)
            self.flush()

    def pump(self, until: Callable[[], bool], timeout: float | None = None) -> None:
        """Read and handle frames until ``until()`` or the connection closes."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while not until():
            if self.closed:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer in time")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                return
            try:
                events = self.conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                self.closed = True
                return
            for ev in events:
                self._event(ev)
            self.flush()

    def _event(self, ev: h2.events.Event) -> None:
        self.events.append(ev)
        sid = getattr(ev, "stream_id", None)
        r = self.resps.get(sid) if sid else None
        if isinstance(ev, h2.events.ResponseReceived) and r is not None:
            r.headers = list(ev.headers or [])
            r.status = int(dict(r.headers)[b":status"])
        elif isinstance(ev, h2.events.InformationalResponseReceived) and r is not None:
            r.interim.append(int(dict(ev.headers or [])[b":status"]))
        elif isinstance(ev, h2.events.DataReceived):
            if r is not None:
                r.received += len(ev.data or b"")
                if self.keep_body:
                    r.body += ev.data or b""
            if self.auto_credit and ev.flow_controlled_length and sid:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
        elif isinstance(ev, h2.events.TrailersReceived) and r is not None:
            r.trailers = list(ev.headers or [])
        elif isinstance(ev, h2.events.StreamEnded) and r is not None:
            r.ended = True
        elif isinstance(ev, h2.events.StreamReset) and r is not None:
            r.reset = int(ev.error_code or 0)
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = ev
            if ev.error_code == 0:      # graceful: the open streams are still answered
                self.conn.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            for k, v in ev.changed_settings.items():
                self.remote_settings[int(k)] = v.new_value

    def credit(self, sid: int, n: int) -> None:
        self.conn.increment_flow_control_window(n, sid)
        self.conn.increment_flow_control_window(n)
        self.flush()

    def request(self, method: str, path: str, headers: list[tuple[str, str]] | None = None,
                body: bytes | None = None, authority: str = "a.test") -> Resp:
        sid = self.send_request(method, path, headers, body, authority=authority)
        r = self.resps[sid]
        self.pump(lambda: r.done)
        return r

    def wait_closed(self, timeout: float = 5.0) -> None:
        """Read until the server closes the connection."""
        self.pump(lambda: self.closed, timeout)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def fetch(proto: str, port: int, method: str, path: str, body: bytes | None = None,
          headers: dict[str, str] | None = None, timeout: float = 10.0
          ) -> tuple[int, dict[str, str], bytes]:
    """One request over ``proto`` ("h1": HTTP/1.1, "h2": h2c prior knowledge): status,
    lower-case headers, body."""
    if proto == "h1":
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()
    with H2Client(port, timeout=timeout) as cl:
        hs = [(k.lower(), v) for k, v in (headers or {}).items()]
        if body is not None and not any(k == "content-length" for k, _ in hs):
            hs.append(("content-length", str(len(body))))
        resp = cl.request(method, path, hs, body, authority=f"127.0.0.1:{port}")
        if resp.reset is not None:
            raise ConnectionResetError(f"stream reset: error code {resp.reset}")
        return resp.status, {k: v for k, v in resp.header_map().items()
                             if not k.startswith(":")}, bytes(resp.body)
