"""Downstream HTTP/1.1 connections: bytes in, exchanges out, framed bytes back.

This is the only code that owns client sockets.  It feeds ``wire.h1.RequestParser``, starts
one ``Exchange`` per request (pipelined requests wait in order, with reading paused), frames
the exchange's response for HTTP/1.x (Content-Length, chunked, or close-delimited for 1.0),
and runs the connection timers (header, body, keep-alive idle, send) on one lazy deadline.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import errors
from ..proxy.exchange import Exchange
from ..proxy.realip import RealIp
from ..proxy.state import RESPONDING
from ..proxy.tunnel import Tunnel
from ..timer import Deadline
from ..tls.listener import TlsConn
from ..wire.h1 import _STATUS_LINES, RequestParser, chunk, encode_headers, last_chunk, status_line
from ..wire.head import RequestHead
from .h2 import PREFACE, take_over

if TYPE_CHECKING:
    from .worker import Worker

log = logging.getLogger("pylon.server")
WRITE_HIGH_WATER = 64 * 1024
_NONE, _FIXED, _CHUNKED, _CLOSE = range(4)
# timer states
_T_IDLE, _T_HEADER, _T_BODY, _T_SEND, _T_OFF, _T_LINGER = range(6)
LINGER_TIME = 30.0       # nginx lingering_time
LINGER_TIMEOUT = 5.0     # nginx lingering_timeout
DRAIN_GRACE = 1.0        # a fresh, silent connection may still send its request when draining
_PAUSE_PIPELINE, _PAUSE_BODY = 1, 2


class _Queued:
    """A pipelined request read while an earlier one is still being answered."""

    __slots__ = ("chunks", "done", "head", "trailers")

    def __init__(self, head: RequestHead) -> None:
        self.head = head
        self.chunks: list[bytes] = []
        self.done = False
        self.trailers: list[tuple[bytes, bytes]] | None = None

    def req_body(self, data: bytes) -> None:
        self.chunks.append(data)

    def req_end(self, trailers: list[tuple[bytes, bytes]] | None) -> None:
        self.done = True
        self.trailers = trailers


class _Discard:
    """Body sink for a request that was already answered (its body is dropped)."""

    __slots__ = ()

    def req_body(self, data: bytes) -> None:
        pass

    def req_end(self, trailers: list[tuple[bytes, bytes]] | None) -> None:
        pass


_DISCARD = _Discard()


class H1Connection(asyncio.Protocol):
    """One client connection: the ``proxy.downstream.Downstream`` of its exchanges (one at a
    time; pipelined requests wait in ``queue``)."""

    __slots__ = (
        "born",
        "bytes_out",
        "client_addr",
        "client_port",
        "closing",
        "deadline",
        "deferred",
        "dispatching",
        "early",
        "exchange",
        "fwd_for",
        "fwd_port",
        "h2c",
        "h2_upgrade",
        "head_buf",
        "keep_alive",
        "linger_until",
        "lingering",
        "loop",
        "mode",
        "parser",
        "paused",
        "queue",
        "reading",
        "realip",
        "req_complete",
        "requests",
        "scheme",
        "server_addr",
        "server_port_s",
        "timer_state",
        "tls",
        "transport",
        "tunnel",
        "w",
        "write_paused",
    )

    def __init__(self, worker: Worker, scheme: str = "http", h2c: bool = False) -> None:
        self.w = worker
        #: the listener has enable_http2: the connection's first bytes may be the HTTP/2
        #: preface, a request may ask for ``Upgrade: h2c`` (``server/h2.py`` takes over)
        self.h2c = h2c
        #: the request that asked for ``Upgrade: h2c``, until its head is parsed out
        self.h2_upgrade: RequestHead | None = None
        self.loop = worker.loop
        self.scheme = scheme
        #: what the TLS handshake settled (SNI, ssl object, client certificate, ALPN); None
        #: on a plain HTTP listener
        self.tls: TlsConn | None = None
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = RequestParser(self, worker.limits)
        self.exchange: Exchange | None = None
        self.reading: Any = None
        self.queue: deque[_Queued] = deque()
        self.deadline = Deadline(self.loop, self._timed_out)
        self.timer_state = _T_IDLE     # nothing received yet: the timeout closes silently
        self.write_paused = False
        self.paused = 0
        self.closing = False
        self.mode = _NONE
        self.keep_alive = True
        self.bytes_out = 0
        self.req_complete = True
        self.dispatching = False
        self.requests = 0
        #: a response head waiting to go out with the first body bytes (one write, not two)
        self.head_buf: bytes | None = None
        #: a refused pipelined request, answered once the response before it is complete
        self.deferred: errors.GatewayError | None = None
        self.lingering = False
        self.linger_until = 0.0
        self.tunnel: Tunnel | None = None
        self.realip: RealIp | None = None
        #: client bytes after an upgrade request's head (for the tunnel, if it switches)
        self.early = b""

    # ---------------------------------------------------------------- transport
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(WRITE_HIGH_WATER)  # type: ignore[attr-defined]
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        realip = self.w.realip
        if isinstance(peer, tuple):
            self.client_addr, self.client_port = peer[0], peer[1]
            #: the node's real_ip_from trusts this peer: X-Real-IP sets $remote_addr
            self.realip = realip if realip is not None and realip.trusts(peer[0]) else None
        else:                                    # unix socket
            self.client_addr, self.client_port = "127.0.0.1", 0
            self.realip = realip if realip is not None and realip.trusts(None) else None
        if isinstance(sock, tuple):
            self.server_addr, port = sock[0], sock[1]
        else:
            self.server_addr, port = "127.0.0.1", 0
        self.server_port_s = str(port)
        # the forwarding headers, constant per connection where nothing in the request
        # changes them (``Exchange._upstream_head``: X-Forwarded-Host goes between the two)
        client = self.client_addr.encode()
        self.fwd_for = b"".join((b"X-Real-IP: ", client, b"\r\nX-Forwarded-For: ", client,
                                 b"\r\nX-Forwarded-Proto: ", self.scheme.encode(),
                                 b"\r\nX-Forwarded-Host: "))
        self.fwd_port = b"\r\nX-Forwarded-Port: " + self.server_port_s.encode() + b"\r\n"
        s = transport.get_extra_info("socket")
        if s is not None and s.family in (socket.AF_INET, socket.AF_INET6):
            try:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover
                pass
        self.w.connections.add(self)
        self.w.accepted += 1                   # node status (reading/writing: ``status``)
        self.born = self.loop.time()
        self.deadline.set(self.loop.time() + self.w.timeouts.client_header)
        obj = transport.get_extra_info("ssl_object")
        if obj is not None:                      # a TLS listener: the handshake is done
            tls = self.tls = TlsConn(obj)
            if tls.alpn == "h2":                 # ALPN chose HTTP/2: it takes over
                self.w.alpn_h2(self)

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.from_client(data)
            return
        if self.lingering:                      # after an error: drop input until the end
            self.deadline.due = min(self.loop.time() + LINGER_TIMEOUT, self.linger_until)
            return
        idle = self.timer_state == _T_IDLE
        if idle:
            if self.h2c and not self.requests:
                # the connection's first bytes on an h2c listener: the HTTP/2 preface?
                rest = self._h2_preface(data)
                if rest is None:
                    return
                data = rest
            self.timer_state = _T_HEADER
        try:
            self.parser.feed(data)
        except errors.GatewayError as e:
            self._bad_request(e)
            return
        except Exception:  # a bug: answer 500, keep the worker serving
            log.exception("internal error handling a request from %s", self.client_addr)
            self._bad_request(errors.InternalError())
            return
        if idle and self.timer_state == _T_HEADER:
            # the head is not complete in this read: the header timer runs (set only now:
            # a whole head in one read, the usual case, moves the timer on right away)
            self.deadline.set(self.loop.time() + self.w.timeouts.client_header)
        off = self.parser.upgrade_offset
        if off is not None:
            # bytes after an upgrade request's head (one without a body: see wire.h1) are
            # not HTTP: they wait for the 101 and the tunnel (enable_websocket), or the
            # request is answered as an ordinary one and the connection closes after it
            self.parser.upgrade_offset = None
            up = self.h2_upgrade
            if up is not None:                  # Upgrade: h2c -- HTTP/2 from here on
                self.h2_upgrade = None
                take_over(self, data[off:], up)
                return
            self.keep_alive = False
            self._pause(_PAUSE_PIPELINE)
            self.early = data[off:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.deadline.cancel()
        if self.tunnel is not None:
            self.tunnel.close()
        self.w.connections.discard(self)
        self.w.closed_requests += self.requests   # node status: requests of closed ones
        ex = self.exchange
        if ex is not None:
            self.exchange = None
            ex.downstream_lost()

    def pause_writing(self) -> None:
        if self.tunnel is not None:
            self.tunnel.client_writable(False)
            return
        self.write_paused = True
        self.timer_state = _T_SEND
        self.deadline.set(self.loop.time() + self.w.timeouts.send)
        if self.exchange is not None:
            self.exchange.downstream_writable(False)

    def resume_writing(self) -> None:
        if self.tunnel is not None:
            self.tunnel.client_writable(True)
            return
        self.write_paused = False
        if self.timer_state == _T_SEND:
            self.timer_state = _T_OFF
            self.deadline.clear()
        if self.exchange is not None:
            self.exchange.downstream_writable(True)

    # ---------------------------------------------------------------- parser sink
    def on_request(self, head: RequestHead) -> None:
        self.requests += 1
        if head.upgrade is not None and self.h2c and self._h2_upgrade(head):
            return
        body_follows = head.chunked or bool(head.content_length)
        if self.exchange is not None or self.queue:
            q = _Queued(head)
            self.queue.append(q)
            self.reading = q
            self._pause(_PAUSE_PIPELINE)
            if not body_follows:
                q.done = True
            return
        self.req_complete = not body_follows
        if body_follows:
            self.timer_state = _T_BODY
            self.deadline.set(self.loop.time() + self.w.timeouts.client_body)
        else:
            self.timer_state = _T_OFF
            self.deadline.due = None
        ex = Exchange(self, head, self.w.holder.current, self.loop.time())
        self.exchange = ex
        self.mode = _NONE
        if body_follows:
            self.reading = ex
        else:
            ex.req_done = True      # nothing to read: the request goes upstream in one write
            self.reading = None
        ex.start()

    def on_body(self, data: bytes) -> None:
        if self.timer_state == _T_BODY:
            self.deadline.due = self.loop.time() + self.w.timeouts.client_body
        self.reading.req_body(data)

    def on_end(self, trailers: list[tuple[bytes, bytes]] | None) -> None:
        r = self.reading
        if r is None:                 # body-less request already ended in on_request
            return
        self.reading = None
        if r is self.exchange:
            self.req_complete = True
            if self.timer_state == _T_BODY:
                self.timer_state = _T_OFF
                self.deadline.clear()
        r.req_end(trailers)

    # ---------------------------------------------------------------- HTTP/2 (h2c)
    def _h2_preface(self, data: bytes) -> bytes | None:
        """The first bytes on an h2c listener: the HTTP/2 preface hands the connection to
        ``server/h2.py`` (None: taken over, or a part of the preface waits for the rest);
        anything else is HTTP/1.x, returned to be parsed."""
        buf = self.early + data if self.early else data
        n = len(PREFACE) if len(buf) > len(PREFACE) else len(buf)
        if buf[:n] != PREFACE[:n]:
            self.early = b""
            return buf
        if n < len(PREFACE):
            self.early = buf
            return None
        self.early = b""
        take_over(self, buf)
        return None

    def _h2_upgrade(self, head: RequestHead) -> bool:
        """A request asks for ``Upgrade: h2c`` (RFC 7540 §3.2): taken up when it is the
        only one in flight, has no body (``wire.h1`` clears ``upgrade`` for one with a body)
        and carries HTTP2-Settings; it is answered 101 once its head is parsed out
        (``data_received``) and becomes stream 1."""
        up = head.upgrade
        if up is None or self.exchange is not None or self.queue or \
                b"upgrade" not in head.conn_tokens or \
                b"h2c" not in [t.strip().lower() for t in up.split(b",")] or \
                head.header(b"http2-settings") is None:
            return False
        self.h2_upgrade = head
        return True

    # ---------------------------------------------------------------- downstream API
    # (``proxy.downstream.Downstream``: what the exchange calls)
    @property
    def max_body(self) -> int:
        """client_max_body_size (0: unlimited)."""
        return self.w.limits.max_body

    @property
    def wall_offset(self) -> float:
        """``time.time() - loop.time()``, for a wall-clock request start."""
        return self.w.wall_offset

    def send_continue(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def send_interim(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        ex = self.exchange
        if ex is not None and ex.head.version == "1.1" and not self.transport.is_closing():
            self.transport.write(status_line(status) + encode_headers(headers) + b"\r\n")

    def send_head(self, status: int, headers: list[tuple[bytes, bytes]], length: int | None,
                  no_body: bool) -> None:
        ex = self.exchange
        assert ex is not None
        w = self.w
        keep = self.keep_alive and ex.head.keep_alive and not w.draining
        parts = [_STATUS_LINES.get(status) or status_line(status), w.server_header, w.date_hdr]
        for n, v in headers:
            parts += (n, b": ", v, b"\r\n")
        if no_body:
            self.mode = _NONE
            if length is not None:
                parts.append(b"Content-Length: %d\r\n" % length)
        elif length is not None:
            self.mode = _FIXED
            parts.append(b"Content-Length: %d\r\n" % length)
        elif ex.head.version == "1.1":
            self.mode = _CHUNKED
            parts.append(b"Transfer-Encoding: chunked\r\n")
        else:
            self.mode = _CLOSE
            keep = False
        if not keep:
            parts.append(b"Connection: close\r\n")
        elif ex.head.version == "1.0":
            parts.append(b"Connection: keep-alive\r\n")
        parts.append(b"\r\n")
        self.keep_alive = keep
        data = b"".join(parts)
        self.bytes_out += len(data)
        self.head_buf = data

    def send_data(self, data: bytes) -> None:
        mode = self.mode
        if not data or mode == _NONE:
            return
        self.bytes_out += len(data)
        if mode == _CHUNKED:
            data = chunk(data)
        head = self.head_buf
        if head is not None:
            self.head_buf = None
            data = head + data
        self.transport.write(data)

    def send_end(self, trailers: list[tuple[bytes, bytes]] | None) -> None:
        data = last_chunk(trailers) if self.mode == _CHUNKED else b""
        head = self.head_buf
        if head is not None:
            self.head_buf = None
            data = head + data
        if data:
            self.transport.write(data)

    def flush(self) -> None:
        """Write a buffered response head now (the body is not here yet)."""
        head = self.head_buf
        if head is not None:
            self.head_buf = None
            self.transport.write(head)

    def send_local(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                   close: bool) -> None:
        """A response made by the gateway itself (errors, plugin replies)."""
        ex = self.exchange
        if close or not self.req_complete:
            # the rest of the request body was not read: the connection cannot be reused
            self.keep_alive = False
        keep = self.keep_alive and (ex is None or ex.head.keep_alive) and not self.w.draining
        self.keep_alive = keep
        data = b"".join((status_line(status), self.w.server_header, self.w.date_hdr,
                         encode_headers(headers),
                         b"Content-Length: %d\r\n" % len(body),
                         b"Connection: keep-alive\r\n\r\n" if keep else
                         b"Connection: close\r\n\r\n",
                         b"" if ex is not None and ex.head.method == "HEAD" else body))
        self.mode = _NONE
        self.bytes_out += len(data)
        if not self.transport.is_closing():
            self.transport.write(data)

    def start_tunnel(self, headers: list[tuple[bytes, bytes]], upgrade: bytes,
                     upstream: asyncio.Transport, early: bytes, idle: float,
                     on_close: Callable[[Tunnel], None]) -> Tunnel:
        """The upstream switched protocols: send the 101 and splice the two connections."""
        self.deadline.cancel()
        self.timer_state = _T_OFF
        head = b"".join([status_line(101), self.w.server_header, self.w.date_hdr,
                         encode_headers(headers), b"Connection: upgrade\r\nUpgrade: ", upgrade,
                         b"\r\n\r\n"])
        self.bytes_out += len(head)
        self.transport.write(head + early)
        tunnel = Tunnel(self.loop, self.transport, upstream, idle, on_close)
        self.tunnel = tunnel
        if self.early:
            tunnel.from_client(self.early)
            self.early = b""
        self.paused = 0
        self.transport.resume_reading()
        return tunnel

    def pause_body(self) -> None:
        self._pause(_PAUSE_BODY)

    def resume_body(self) -> None:
        self._resume(_PAUSE_BODY)

    def abort(self) -> None:
        """The response cannot be completed: close so the client sees it was cut short."""
        self.flush()
        self.keep_alive = False
        self.closing = True
        self.transport.close()

    def exchange_done(self, ex: Exchange) -> None:
        if ex is not self.exchange:
            return
        self.exchange = None
        self.mode = _NONE
        if self.reading is ex:          # answered before its body was read
            self.reading = _DISCARD
        w = self.w
        w.requests += 1
        if w.access_log is not None:
            w.access_log.add(ex, self.bytes_out)
        self.bytes_out = 0
        if self.deferred is not None and not self.closing:
            e, self.deferred = self.deferred, None
            self.send_local(e.status, [(b"Content-Type", b"application/json; charset=utf-8")],
                            errors.error_body(e.message), True)
        if not self.keep_alive or self.closing:
            # unread or dropped client input (after an error, an unread body, a pipelined
            # request after one that closes, an upgrade not taken): close without a reset
            if ex.error is not None or not self.req_complete or self.parser.after_close \
                    or ex.head.upgrade is not None:
                self._linger_close()
            else:
                self.close()
            return
        if self.dispatching:
            return
        if self.queue:
            self._dispatch_queue()
        else:                           # the common case: wait for the next request
            if self.paused & _PAUSE_PIPELINE:
                self._resume(_PAUSE_PIPELINE)
            self.timer_state = _T_IDLE
            self.deadline.set(self.loop.time() + w.timeouts.keepalive)
            if w.draining:
                self.close()

    def _dispatch_queue(self) -> None:
        # a loop, not recursion: a read may hold hundreds of pipelined requests
        self.dispatching = True
        try:
            while self.queue and self.exchange is None and not self.closing:
                q = self.queue.popleft()
                ex = Exchange(self, q.head, self.w.holder.current, self.loop.time())
                self.exchange = ex
                self.req_complete = q.done
                if self.reading is q:
                    self.reading = ex
                ex.start()
                for c in q.chunks:
                    ex.req_body(c)
                if q.done:
                    ex.req_end(q.trailers)
        finally:
            self.dispatching = False
        if self.closing:
            return
        cur = self.exchange
        if cur is None:
            # (a request answered before its body was read keeps reading = _DISCARD until
            # the body ends: the next request starts after it, as nginx discards the body)
            self._resume(_PAUSE_PIPELINE)
            self.timer_state = _T_IDLE
            self.deadline.set(self.loop.time() + self.w.timeouts.keepalive)
            if self.w.draining:
                self.close()
        elif self.reading is cur:       # the dispatched request's body is still to come
            self._resume(_PAUSE_PIPELINE)
            self.timer_state = _T_BODY
            self.deadline.set(self.loop.time() + self.w.timeouts.client_body)

    # ---------------------------------------------------------------- errors and timers
    def _bad_request(self, e: errors.GatewayError) -> None:
        ex = self.exchange
        self.keep_alive = False
        self.queue.clear()
        if ex is not None and self.reading is not ex and ex.state < RESPONDING:
            # the bad bytes belong to a later, pipelined request: the request in flight
            # still gets its own response, then the connection closes
            self._pause(_PAUSE_PIPELINE)
            self.reading = _DISCARD
            self.w.count_error(e, self.client_addr)
            self.deferred = e
            return
        if ex is not None:
            ex.reply_error(e)                   # closes: keep_alive is off
        else:
            self.w.count_error(e, self.client_addr)
            self.send_local(e.status, [(b"Content-Type", b"application/json; charset=utf-8")],
                            errors.error_body(e.message), True)
            self._linger_close()

    def _linger_close(self) -> None:
        """Close after an error without resetting the client (nginx's lingering_close).

        Closing a socket with unread input makes the kernel send RST, which can destroy our
        error response before the client reads it.  Instead: send FIN after the response, then
        read and drop what the client still sends, for at most LINGER_TIME in all and
        LINGER_TIMEOUT between reads."""
        self.closing = True
        t = self.transport
        if t.is_closing():
            return
        self.flush()
        try:
            t.write_eof()
        except (OSError, RuntimeError, NotImplementedError):
            t.close()
            return
        self.lingering = True
        self.queue.clear()
        if self.paused:
            self.paused = 0
            t.resume_reading()
        now = self.loop.time()
        self.linger_until = now + LINGER_TIME
        self.timer_state = _T_LINGER
        self.deadline.set(now + LINGER_TIMEOUT)

    def _timed_out(self) -> None:
        state = self.timer_state
        if state in (_T_IDLE, _T_LINGER):
            self.transport.close()              # idle keep-alive / lingering: close silently
            return
        if state in (_T_HEADER, _T_BODY):
            self._bad_request(errors.RequestTimeout())
            return
        # send timeout: the client stopped reading our response
        self.abort()

    def _pause(self, reason: int) -> None:
        if not self.paused and not self.transport.is_closing():
            self.transport.pause_reading()
        self.paused |= reason

    def _resume(self, reason: int) -> None:
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused and not self.transport.is_closing():
                self.transport.resume_reading()

    def close(self) -> None:
        self.closing = True
        if not self.transport.is_closing():
            self.transport.close()

    def status(self) -> int:
        """Node status (``/apisix/status``), read when asked, never on the request path:
        0 waiting (idle keep-alive or nothing sent yet), 1 reading (a request head is
        being read), 2 writing (a request is being processed and answered), as nginx's
        stub_status counts them."""
        if self.exchange is not None or self.tunnel is not None or self.queue:
            return 2
        return 1 if self.timer_state == _T_HEADER else 0

    def drain(self) -> None:
        """Graceful shutdown: idle keep-alive connections close now, busy ones after their
        response (sent with ``Connection: close``).  A connection that has not sent anything
        yet gets DRAIN_GRACE first: it was accepted just before the drain and its request
        may already be on its way — closing it would fail that request."""
        if self.exchange is None and not self.queue and self.timer_state == _T_IDLE and \
                (self.requests or self.loop.time() - self.born >= DRAIN_GRACE):
            self.close()
