"""Downstream HTTP/2 connections: frames in, one exchange per stream, frames back.

A connection starts as an ``H1Connection`` (``server/h1.py``) and is handed over here
(``take_over``) when it turns out to speak HTTP/2: TLS negotiated ``h2`` by ALPN, the first
bytes on a listener with ``enable_http2`` are the HTTP/2 preface (h2c with prior
knowledge), or an HTTP/1.1 request asked for ``Upgrade: h2c``.  The peer facts the
HTTP/1 connection worked out (addresses, real-ip trust, the forwarding headers) carry over.

The ``h2`` library (python-hyper, sans-IO) does the framing, HPACK and flow-control
bookkeeping.  Here: request heads are checked (RFC 9113 §8.3: a malformed request is a
stream error, not the connection's), turned into a ``RequestHead`` and given to an
``Exchange`` through an ``H2Stream`` -- the stream is the exchange's ``Downstream``, as the
HTTP/1 connection is -- so routing, plugins and variables are the same for both protocols.

Flow control both ways: a request body is credited back to the client (WINDOW_UPDATE) only
as the exchange takes it (``pause_body`` withholds the credit); a response body goes out as
the client's window allows, the rest waits in the stream, and above ``WRITE_HIGH_WATER``
waiting bytes (or while the socket's write buffer is full) the exchange is told to pause
reading its upstream (``downstream_writable``).  Frames are written once per loop iteration
for all streams together.

Defences (docs/http2.md): max concurrent streams (REFUSED_STREAM past it), new streams per
read and client resets per second (rapid reset, CVE-2023-44487), control frames per second
(SETTINGS / PING / PRIORITY / empty DATA floods), header block size and CONTINUATION
frames, the header list size; GOAWAY ENHANCE_YOUR_CALM past a limit.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.frame_buffer
import h2.settings
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import Frame, GoAwayFrame

from .. import errors
from ..proxy.exchange import Exchange
from ..proxy.state import RESPONDING
from ..timer import Deadline
from ..upstream.h2 import send_window
from ..wire.head import HOP_BY_HOP, RequestHead

if TYPE_CHECKING:
    from ..proxy.realip import RealIp
    from ..proxy.tunnel import Tunnel
    from ..tls.listener import TlsConn
    from .h1 import H1Connection
    from .worker import Worker

log = logging.getLogger("pylon.server")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: response bytes a stream may hold beyond the client's window before its exchange pauses
#: reading the upstream (the socket's own buffer has the same mark: ``h1.WRITE_HIGH_WATER``)
WRITE_HIGH_WATER = 64 * 1024
#: the connection's receive window: streams share it, each is bounded by its own
CONNECTION_WINDOW = 16 << 20
#: frames in one header block (HEADERS + CONTINUATION): the CONTINUATION flood bound
MAX_HEADER_FRAMES = 16
#: defences, counted per connection: client resets of open streams per second (rapid
#: reset) and control frames per second (SETTINGS, PING, PRIORITY, empty DATA)
RESET_FACTOR = 2            # × max concurrent streams, per second
MIN_RESETS = 200
MAX_CONTROL_PER_SECOND = 1000
#: new streams in one read, × max concurrent streams (nginx 1.25.3's rapid-reset bound)
NEW_STREAMS_FACTOR = 2

#: connection-specific fields: illegal in HTTP/2 requests (RFC 9113 §8.2.2), never sent
_CONNECTION_SPECIFIC = frozenset((b"connection", b"keep-alive", b"proxy-connection",
                                  b"transfer-encoding", b"upgrade"))
#: RFC 9110 §5.1 token, lower case only (RFC 9113 §8.2.1: upper case is malformed)
_FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
#: RFC 9113 §8.2.1: no NUL, CR, LF; no leading or trailing space or tab
_BAD_VALUE = re.compile(rb"[\x00\r\n]|^[ \t]|[ \t]$")
_METHOD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: request field names already checked (bounded)
_GOOD_NAMES: set[bytes] = set()
#: response field name → its HTTP/2 spelling, or None: not sent (bounded)
_OUT_NAMES: dict[bytes, bytes | None] = {}
_DROP_OUT = HOP_BY_HOP | _CONNECTION_SPECIFIC
_STATUS: dict[int, bytes] = {}
Headers = list[tuple[bytes, bytes]]


def _status(status: int) -> bytes:
    s = _STATUS.get(status)
    if s is None:
        s = _STATUS[status] = str(status).encode()
    return s


def _out_headers(status: int, headers: Headers, first: Headers) -> Headers:
    """A response head in HTTP/2 spelling: ``:status``, then ``first`` (Server, Date,
    Content-Length), then the header names lower-cased, connection-specific ones left out."""
    out = [(b":status", _status(status)), *first]
    names = _OUT_NAMES
    for n, v in headers:
        ln = names.get(n, b"")
        if ln == b"":
            low = n.lower()
            ln = None if low in _DROP_OUT else low
            if len(names) < 2048:
                names[n] = ln
        if ln is not None:
            out.append((ln, v))
    return out


def _trailers(trailers: Headers) -> Headers:
    return [(n.lower(), v) for n, v in trailers if n.lower() not in _DROP_OUT]


class _H2(h2.connection.H2Connection):
    """h2's connection, except that a stream past the advertised concurrency limit is
    refused here with REFUSED_STREAM, a stream error (RFC 9113 §5.1.2): h2 would end the
    whole connection.  (The header block is still decoded, so HPACK stays in step.)

    h2 counts open streams by walking all it knows, dropping the closed ones, at every new
    stream: O(streams) per request.  Here the walk runs only once the table has grown past
    twice what was open at the last walk (amortised O(1); the table stays bounded)."""

    sweep_at = 64

    @property
    def open_inbound_streams(self) -> int:
        if len(self.streams) >= self.sweep_at:
            self.sweep_at = 2 * self._open_streams(1) + 64  # (drops closed streams)
        return 0


class _FrameBuffer(h2.frame_buffer.FrameBuffer):
    """h2's frame buffer with a tighter bound on a header block: at most
    ``MAX_HEADER_FRAMES`` frames and ``max_block`` bytes (h2 allows 64 frames of any size)."""

    def __init__(self, max_block: int) -> None:
        super().__init__(server=True)
        self.max_block = max_block

    def _update_header_buffer(self, f: Frame | None) -> Frame | None:
        buf = self._headers_buffer
        if buf and (len(buf) >= MAX_HEADER_FRAMES or
                    sum(len(x.data) for x in buf) > self.max_block):
            raise h2.exceptions.DenialOfServiceError("header block too large")
        return super()._update_header_buffer(f)


class H2Stream:
    """One request stream: the ``proxy.downstream.Downstream`` of its exchange."""

    __slots__ = (
        "body_paused", "bytes_out", "c", "client_addr", "client_port", "end", "ex",
        "fwd_for", "fwd_port", "head_sent", "loop", "max_body", "out", "out_bytes",
        "realip", "req_open", "responded", "reset", "scheme", "server_addr",
        "server_port_s", "sid", "tls", "unacked", "w", "wall_offset", "blocked", "no_body",
        "head_out",
    )

    def __init__(self, c: H2Connection, sid: int) -> None:
        self.c = c
        self.sid = sid
        self.w = c.w
        self.loop = c.loop
        self.realip = c.realip
        self.scheme = c.scheme
        self.client_addr = c.client_addr
        self.client_port = c.client_port
        self.server_addr = c.server_addr
        self.server_port_s = c.server_port_s
        self.fwd_for = c.fwd_for
        self.fwd_port = c.fwd_port
        self.tls = c.tls
        self.max_body = c.w.limits.max_body
        self.wall_offset = c.w.wall_offset
        self.bytes_out = 0
        self.ex: Exchange | None = None
        #: the request body is still coming
        self.req_open = True
        #: reading the body is paused: received bytes are not credited back yet
        self.body_paused = False
        self.unacked = 0
        #: response bytes waiting for the client's flow-control window
        self.out: deque[bytes] = deque()
        self.out_bytes = 0
        #: the end of the response, waiting behind ``out``: None, or (trailers,)
        self.end: tuple[Headers | None] | None = None
        self.head_sent = False
        #: the response head, held until the first body bytes, the end or the loop
        #: iteration's flush: a response that ends with its head goes out as one HEADERS
        #: frame with END_STREAM (gRPC's Trailers-Only from an upstream)
        self.head_out: Headers | None = None
        self.no_body = False
        #: the whole response went out (END_STREAM sent) or the stream was reset
        self.responded = False
        self.reset = False
        #: over the high-water mark: the exchange was told to pause its upstream
        self.blocked = False

    # -- Downstream: properties ---------------------------------------------------------
    @property
    def write_paused(self) -> bool:
        return self.blocked or self.c.write_paused

    @property
    def head_buf(self) -> bytes | None:
        return None                 # frames leave once per loop iteration (``_flush``)

    def flush(self) -> None:
        pass

    # -- the response -----------------------------------------------------------------------
    def send_continue(self) -> None:
        if not self.head_sent and not self.reset:
            self.c.send_headers(self.sid, [(b":status", b"100")], False)

    def send_interim(self, status: int, headers: Headers) -> None:
        if not self.head_sent and not self.reset:
            self.c.send_headers(self.sid, _out_headers(status, headers, []), False)

    def send_head(self, status: int, headers: Headers, length: int | None,
                  no_body: bool) -> None:
        if self.reset:
            return
        c = self.c
        first = [c.server_value, (b"date", c.w.date_hdr[6:-2])]
        if length is not None:
            first.append((b"content-length", b"%d" % length))
        out = _out_headers(status, headers, first)
        self.head_sent = True
        self.no_body = no_body
        self.bytes_out += 9 + sum(len(n) + len(v) + 4 for n, v in out)
        if no_body:
            c.send_headers(self.sid, out, True)
            self._ended()
        else:
            self.head_out = out
            c.defer_head(self)

    def send_data(self, data: bytes) -> None:
        if not data or self.no_body or self.reset or self.responded:
            return
        self.bytes_out += len(data)
        if self.head_out is not None:
            self.c.emit_head(self)
        if self.out:
            self.out.append(data)
            self.out_bytes += len(data)
        else:
            self.c.send_body(self, data)
        if self.out_bytes > WRITE_HIGH_WATER:
            self.blocked = True

    def send_end(self, trailers: Headers | None) -> None:
        if self.no_body or self.reset or self.responded:
            return
        out = self.head_out
        if out is not None:
            self.head_out = None
            if not trailers:            # the head is the whole response
                self.c.send_headers(self.sid, out, True)
                self._ended()
                return
            self.c.send_headers(self.sid, out, False)
        if self.out:
            self.end = (trailers,)
            return
        self.c.end_stream(self, trailers)

    def send_local(self, status: int, headers: Headers, body: bytes, close: bool) -> None:
        ex = self.ex
        head_only = ex is not None and ex.head.method == "HEAD"
        self.send_head(status, headers, len(body), head_only or not body)
        if body and not head_only:
            self.send_data(body)
            self.send_end(None)

    def abort(self) -> None:
        """The response cannot be completed: RST_STREAM, so the client sees it cut short."""
        if not self.reset and not self.responded:
            self.c.reset_stream(self, ErrorCodes.INTERNAL_ERROR)

    def start_tunnel(self, headers: Headers, upgrade: bytes, upstream: asyncio.Transport,
                     early: bytes, idle: float, on_close: Callable[[Tunnel], None]) -> Tunnel:
        # never reached: an HTTP/2 request carries no Upgrade (a malformed one is refused),
        # so the exchange never upgrades it (RFC 8441's extended CONNECT is not offered)
        raise errors.UpstreamBadResponse("101 to an HTTP/2 request")

    # -- the request body: flow control -------------------------------------------------
    def pause_body(self) -> None:
        self.body_paused = True

    def resume_body(self) -> None:
        if self.body_paused:
            self.body_paused = False
            n = self.unacked
            if n:
                self.unacked = 0
                self.c.credit(self.sid, n)
            if self.req_open:           # the body timer runs again
                self.c.deadline.set(self.loop.time() + self.w.timeouts.client_body)

    # -- the end ----------------------------------------------------------------------------
    def exchange_done(self, ex: Exchange) -> None:
        if ex is not self.ex:
            return
        self.ex = None
        w = self.w
        w.requests += 1
        if w.access_log is not None:
            w.access_log.add(ex, self.bytes_out)
        self.c.stream_done(self)

    def _ended(self) -> None:
        """END_STREAM went out: the response is complete."""
        self.responded = True
        self.out.clear()
        self.out_bytes = 0
        self.c.stream_done(self)


class H2Connection(asyncio.Protocol):
    """One HTTP/2 client connection (taken over from an ``H1Connection``)."""

    __slots__ = (
        "born", "c", "client_addr", "client_port", "closing", "control", "deadline",
        "flush_due", "fwd_for", "fwd_port", "goaway", "loop", "max_streams", "new_streams",
        "realip", "requests", "resets", "scheme", "server_addr", "server_port_s",
        "server_value", "streams", "tls", "transport", "w", "waiting", "window_start",
        "write_paused", "reading", "stall", "heads",
    )

    def __init__(self, h1: H1Connection) -> None:
        w: Worker = h1.w
        self.w = w
        self.loop: asyncio.AbstractEventLoop = h1.loop
        self.scheme: str = h1.scheme
        self.transport: asyncio.Transport = h1.transport
        self.client_addr: str = h1.client_addr
        self.client_port: int = h1.client_port
        self.server_addr: str = h1.server_addr
        self.server_port_s: str = h1.server_port_s
        self.realip: RealIp | None = h1.realip
        self.fwd_for: bytes = h1.fwd_for
        self.fwd_port: bytes = h1.fwd_port
        #: the TLS connection (``$ssl_*``, mTLS): None on h2c
        self.tls: TlsConn | None = h1.tls
        self.born: float = h1.born
        self.server_value = (b"server", w.server_header[8:-2])
        s = w.settings
        self.max_streams = s.h2_max_streams
        c = self.c = _H2(h2.config.H2Configuration(
            client_side=False, header_encoding=None, validate_inbound_headers=False,
            normalize_inbound_headers=False, validate_outbound_headers=False,
            normalize_outbound_headers=False))
        limits = w.limits
        c.local_settings = h2.settings.Settings(client=False, initial_values={
            SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams,
            SettingCodes.INITIAL_WINDOW_SIZE: s.h2_window,
            SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_bytes,
            SettingCodes.ENABLE_PUSH: 0,
        })
        c.decoder.max_header_list_size = limits.max_header_bytes
        c.incoming_buffer = _FrameBuffer(limits.max_header_bytes)
        self.streams: dict[int, H2Stream] = {}
        #: streams with response bytes waiting for the client's window
        self.waiting: set[H2Stream] = set()
        #: streams whose response head is held (``H2Stream.head_out``) until the flush
        self.heads: list[H2Stream] = []
        #: streams whose request body is still coming (the body timeout runs)
        self.reading = 0
        self.requests = 0
        self.write_paused = False
        self.closing = False
        self.goaway = False
        self.flush_due = False
        self.deadline = Deadline(self.loop, self._timed_out)
        #: send_timeout while streams wait for the client's window (a client that never
        #: sends WINDOW_UPDATE does not hold its streams and their upstreams forever)
        self.stall = Deadline(self.loop, self._stalled)
        self.window_start = 0.0
        self.resets = 0
        self.control = 0
        self.new_streams = 0

    # ---------------------------------------------------------------- start
    def start(self, data: bytes, upgrade: RequestHead | None, settings: bytes | None) -> None:
        c = self.c
        if upgrade is not None:
            c.initiate_upgrade_connection(settings)
        else:
            c.initiate_connection()
        c.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self.window_start = self.loop.time()
        self.w.connections.add(self)
        if upgrade is not None:
            # stream 1 is the upgraded request, its body already read (half-closed remote)
            upgrade.upgrade = None
            upgrade.version = "2.0"
            self._open(1, upgrade, True)
        if data:
            self.data_received(data)
        else:
            self._flush()
        self._idle_check()

    # ---------------------------------------------------------------- transport
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        pass                            # (taken over: the transport is already set)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            events = self.c.receive_data(data)
        except h2.exceptions.DenialOfServiceError:
            self._calm("denial of service")
            return
        except h2.exceptions.ProtocolError as e:
            log.info("HTTP/2 protocol error from %s: %s", self.client_addr, e)
            self._close_now()
            return
        self.new_streams = 0
        try:
            for ev in events:
                self._event(ev)
        except _Calm as e:
            self._calm(str(e))
            return
        except Exception:   # a bug: this connection ends, the worker keeps serving
            log.exception("internal error on an HTTP/2 connection from %s", self.client_addr)
            self._close_now()
            return
        if self.reading:
            self.deadline.set(self.loop.time() + self.w.timeouts.client_body)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.deadline.cancel()
        self.stall.cancel()
        self.w.connections.discard(self)
        self.w.closed_requests += self.requests
        for st in list(self.streams.values()):
            st.reset = True
            ex = st.ex
            if ex is not None:
                ex.downstream_lost()
        self.streams.clear()
        self.waiting.clear()

    def pause_writing(self) -> None:
        self.write_paused = True
        self.deadline.set(self.loop.time() + self.w.timeouts.send)
        for st in list(self.streams.values()):
            ex = st.ex
            if ex is not None and not st.blocked:
                ex.downstream_writable(False)

    def resume_writing(self) -> None:
        self.write_paused = False
        self.deadline.clear()
        self._idle_check()
        for st in list(self.streams.values()):
            ex = st.ex
            if ex is not None and not st.blocked:
                ex.downstream_writable(True)

    # ---------------------------------------------------------------- events
    def _event(self, ev: h2.events.Event) -> None:
        t = type(ev)
        if t is h2.events.DataReceived:
            self._data(ev)  # type: ignore[arg-type]
        elif t is h2.events.RequestReceived:
            self._request(ev)  # type: ignore[arg-type]
        elif t is h2.events.StreamEnded:
            st = self.streams.get(ev.stream_id)  # type: ignore[attr-defined]
            if st is not None:
                self._body_end(st, None)
        elif t is h2.events.WindowUpdated:
            self._window(ev.stream_id)  # type: ignore[attr-defined]
        elif t is h2.events.StreamReset:
            self._client_reset(ev)  # type: ignore[arg-type]
        elif t is h2.events.TrailersReceived:
            st = self.streams.get(ev.stream_id)  # type: ignore[attr-defined]
            if st is not None:
                self._body_end(st, list(ev.headers or ()))  # type: ignore[attr-defined]
        elif t is h2.events.RemoteSettingsChanged:
            self._count_control()
            if SettingCodes.INITIAL_WINDOW_SIZE in ev.changed_settings:  # type: ignore[attr-defined]
                self._window(0)
        elif t is h2.events.PingReceived or t is h2.events.PriorityUpdated:
            self._count_control()
        elif t is h2.events.ConnectionTerminated:
            # the client's GOAWAY: h2 sends nothing after one, so what is still open is lost
            self.goaway = True
            self._close_now()

    def _request(self, ev: h2.events.RequestReceived) -> None:
        sid = ev.stream_id
        self.new_streams += 1
        if self.new_streams > NEW_STREAMS_FACTOR * self.max_streams:
            raise _Calm("too many new streams in one read")
        if self.goaway:                 # after our GOAWAY: not processed (RFC 9113 §6.8)
            self.c.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
            return
        if len(self.streams) >= self.max_streams:
            self.c.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
            return
        ended = ev.stream_ended is not None
        head = self._head(ev.headers or [], ended)
        if head is None:                # malformed (RFC 9113 §8.1.1): a stream error
            self.c.reset_stream(sid, ErrorCodes.PROTOCOL_ERROR)
            return
        self._open(sid, head, ended)

    def _open(self, sid: int, head: RequestHead, ended: bool) -> None:
        self.requests += 1
        st = H2Stream(self, sid)
        self.streams[sid] = st
        if not self.write_paused:
            self.deadline.clear()           # (the idle timer: a stream is open)
        ex = Exchange(st, head, self.w.holder.current, self.loop.time())
        st.ex = ex
        if ended:
            st.req_open = False
            ex.req_done = True
        else:
            self.reading += 1
        ex.start()

    def _head(self, headers: Headers, ended: bool) -> RequestHead | None:
        """The request's pseudo-headers and fields as a ``RequestHead`` (:authority as
        Host, cookies joined), or None for a malformed request (RFC 9113 §8.1.1, §8.2,
        §8.3)."""
        method = scheme = path = authority = host = None
        fields: Headers = []
        cookies: list[bytes] | None = None
        regular = False
        good = _GOOD_NAMES
        for n, v in headers:
            if n[:1] == b":":
                if regular:
                    return None         # a pseudo-header after a regular field
                if n == b":method" and method is None:
                    method = v
                elif n == b":path" and path is None:
                    path = v
                elif n == b":scheme" and scheme is None:
                    scheme = v
                elif n == b":authority" and authority is None:
                    authority = v
                else:
                    return None         # unknown or repeated pseudo-header
                continue
            regular = True
            if n not in good:
                if _FIELD_NAME.fullmatch(n) is None or n in _CONNECTION_SPECIFIC:
                    return None
                if n == b"te":
                    if v != b"trailers":
                        return None
                elif len(good) < 2048:
                    good.add(n)
            if v and _BAD_VALUE.search(v) is not None:
                return None
            if n == b"cookie":
                if cookies is None:
                    cookies = [v]
                else:
                    cookies.append(v)
            elif n == b"host":
                if host is None:
                    host = v
            else:
                fields.append((n, v))
        if method is None or scheme is None or not path or \
                _METHOD.fullmatch(method) is None or method == b"CONNECT":
            return None                 # CONNECT: no tunnels over HTTP/2 here
        if path[:1] != b"/" and not (path == b"*" and method == b"OPTIONS"):
            return None
        if cookies is not None:         # RFC 9113 §8.2.3: one field for HTTP/1.1
            fields.append((b"cookie", b"; ".join(cookies)))
        auth = authority if authority is not None else host
        if auth is not None:
            fields.insert(0, (b"host", auth))
        limits = self.w.limits
        try:
            head = RequestHead.from_h1(method.decode("latin-1"), path, fields, "2.0", True)
        except ValueError:              # a Content-Length h2 let through: not digits
            return None
        if head.error is None:
            if auth is None:
                head.error = errors.BadRequest("missing Host header")
            elif len(path) > limits.max_uri:
                head.error = errors.UriTooLong()
            elif len(fields) > limits.max_headers:
                head.error = errors.HeaderTooLarge()
            elif head.content_length is not None and limits.max_body and \
                    head.content_length > limits.max_body:
                head.error = errors.BodyTooLarge()
        if ended:
            if head.content_length:     # a length promised, no body sent
                return None
        elif head.content_length is None:
            head.chunked = True         # upstream: HTTP/1.1 needs framing for the body
        return head

    def _data(self, ev: h2.events.DataReceived) -> None:
        sid = ev.stream_id
        size = ev.flow_controlled_length or 0
        data = ev.data or b""
        if not data and ev.stream_ended is None:
            self._count_control()       # empty DATA frames (CVE-2019-9518)
        st = self.streams.get(sid)
        if st is None or not st.req_open or st.ex is None:
            if size:                    # not ours any more: the connection's window only
                self.c.acknowledge_received_data(size, sid)
            return
        ex = st.ex
        max_body = st.max_body
        if max_body and ex.body_in + len(data) > max_body:
            st.req_open = False
            self.reading -= 1
            self.c.acknowledge_received_data(size, sid)
            if ex.state >= RESPONDING:
                st.abort()
                return
            ex.reply_error(errors.BodyTooLarge())
            if st.responded and not st.reset:
                # answered: the rest of the body is not wanted (RFC 9113 §8.1)
                st.reset = True
                try:
                    self.c.reset_stream(sid, ErrorCodes.NO_ERROR)
                except h2.exceptions.ProtocolError:
                    pass
            return
        if data:
            ex.req_body(data)
        if st.body_paused and st.req_open:  # (credited when the exchange resumes)
            st.unacked += size
        elif size:
            self.c.acknowledge_received_data(size, sid)

    def _body_end(self, st: H2Stream, trailers: Headers | None) -> None:
        if not st.req_open:
            return
        st.req_open = False
        self.reading -= 1
        ex = st.ex
        if ex is not None:
            ex.req_end(trailers)

    def _client_reset(self, ev: h2.events.StreamReset) -> None:
        st = self.streams.get(ev.stream_id)
        if st is None:
            return
        if not st.responded:            # rapid reset: a request cancelled before its answer
            now = self.loop.time()
            self._window_roll(now)
            self.resets += 1
            if self.resets > max(MIN_RESETS, RESET_FACTOR * self.max_streams):
                raise _Calm("too many streams reset by the client")
        st.reset = True
        if st.unacked:
            self.c.acknowledge_received_data(st.unacked, st.sid)
            st.unacked = 0
        ex = st.ex
        if ex is not None:
            ex.downstream_lost()        # → exchange_done → stream_done
        self.stream_done(st)

    def _count_control(self) -> None:
        self._window_roll(self.loop.time())
        self.control += 1
        if self.control > MAX_CONTROL_PER_SECOND:
            raise _Calm("control frame flood")

    def _window_roll(self, now: float) -> None:
        if now - self.window_start >= 1.0:
            self.window_start = now
            self.resets = 0
            self.control = 0

    # ---------------------------------------------------------------- sending (streams call)
    def send_headers(self, sid: int, headers: Headers, end: bool) -> None:
        try:
            self.c.send_headers(sid, headers, end_stream=end)
        except h2.exceptions.ProtocolError:
            return
        self._flush_soon()

    def send_body(self, st: H2Stream, data: bytes) -> None:
        """Send as much as the client's window allows; queue the rest on the stream."""
        c = self.c
        sid = st.sid
        try:
            window = c.local_flow_control_window(sid)
        except h2.exceptions.ProtocolError:
            return
        frame = c.max_outbound_frame_size
        n = len(data)
        if n <= window and n <= frame:
            c.send_data(sid, data)
        else:
            st.out.append(data)
            st.out_bytes += n
            self._push(st)
        self._flush_soon()

    def _push(self, st: H2Stream) -> None:
        """Queued response bytes of ``st`` out, as far as the window allows."""
        out = st.out
        try:
            st.out_bytes -= send_window(self.c, st.sid, out)
        except h2.exceptions.ProtocolError:
            out.clear()
            st.out_bytes = 0
            return
        if out:
            if not self.waiting:
                self.stall.set(self.loop.time() + self.w.timeouts.send)
            self.waiting.add(st)
            return
        self.waiting.discard(st)
        if st.end is not None:
            trailers = st.end[0]
            st.end = None
            self.end_stream(st, trailers)
        if st.blocked:
            st.blocked = False
            ex = st.ex
            if ex is not None and not self.write_paused:
                ex.downstream_writable(True)

    def end_stream(self, st: H2Stream, trailers: Headers | None) -> None:
        try:
            if trailers:
                self.c.send_headers(st.sid, _trailers(trailers), end_stream=True)
            else:
                self.c.end_stream(st.sid)
        except h2.exceptions.ProtocolError:
            pass
        self._flush_soon()
        st._ended()

    def reset_stream(self, st: H2Stream, code: ErrorCodes) -> None:
        st.reset = True
        st.head_out = None
        try:
            self.c.reset_stream(st.sid, code)
        except h2.exceptions.ProtocolError:
            pass
        self._flush_soon()
        if st.req_open:
            st.req_open = False
            self.reading -= 1
        if st.unacked:
            self.c.acknowledge_received_data(st.unacked, st.sid)
            st.unacked = 0
        self.stream_done(st)

    def credit(self, sid: int, n: int) -> None:
        """The exchange took ``n`` more bytes of the body: give the client the room back."""
        if self.closing:
            return
        self.c.acknowledge_received_data(n, sid)
        self._flush_soon()

    def stream_done(self, st: H2Stream) -> None:
        """Drop the stream once its exchange is done and its response is out (or reset)."""
        if st.ex is not None or not (st.responded or st.reset):
            return
        if self.streams.pop(st.sid, None) is None:
            return
        self.waiting.discard(st)
        if not self.waiting:
            self.stall.clear()
        if st.req_open:
            # answered before the request body ended: tell the client to stop sending
            # (RFC 9113 §8.1: RST_STREAM with NO_ERROR after a complete response)
            st.req_open = False
            self.reading -= 1
            if not st.reset:
                try:
                    self.c.reset_stream(st.sid, ErrorCodes.NO_ERROR)
                except h2.exceptions.ProtocolError:
                    pass
                self._flush_soon()
        if st.unacked:
            self.c.acknowledge_received_data(st.unacked, st.sid)
            st.unacked = 0
        if not self.streams:
            self._idle_check()

    def _window(self, sid: int) -> None:
        """The client opened its window (a stream's, or the connection's: ``sid`` 0)."""
        if not self.waiting:
            return
        if sid:
            st = self.streams.get(sid)
            if st is not None and st in self.waiting:
                self._push(st)
        else:
            for st in list(self.waiting):
                self._push(st)
        # progress: the send timeout starts again (or stops: nothing waits)
        if self.waiting:
            self.stall.set(self.loop.time() + self.w.timeouts.send)
        else:
            self.stall.clear()
        self._flush_soon()

    def _stalled(self) -> None:
        """No window opened for send_timeout while responses wait: those streams are
        reset (the others, and the connection, go on)."""
        if self.closing or not self.waiting:
            return
        log.info("HTTP/2 client %s opened no window for %d stream(s) in send_timeout",
                 self.client_addr, len(self.waiting))
        for st in list(self.waiting):
            ex = st.ex
            self.reset_stream(st, ErrorCodes.CANCEL)
            if ex is not None:
                ex.detail = "send_timeout"
                ex.downstream_lost()        # → exchange_done → stream_done
        self._flush()

    def _flush_soon(self) -> None:
        if not self.flush_due:
            self.flush_due = True
            self.loop.call_soon(self._flush)

    def defer_head(self, st: H2Stream) -> None:
        self.heads.append(st)
        self._flush_soon()

    def emit_head(self, st: H2Stream) -> None:
        out = st.head_out
        if out is not None:
            st.head_out = None
            self.send_headers(st.sid, out, False)

    def _flush(self) -> None:
        self.flush_due = False
        heads = self.heads
        if heads:
            for st in heads:
                if not st.reset:
                    self.emit_head(st)
            heads.clear()
        data = self.c.data_to_send()
        if data and not self.transport.is_closing():
            self.transport.write(data)

    # ---------------------------------------------------------------- timers, the end
    def _idle_check(self) -> None:
        """No stream open: the keep-alive timer runs (or, after a GOAWAY, the connection
        closes)."""
        if self.streams or self.closing:
            return
        if self.goaway or self.w.draining:
            self._goaway(ErrorCodes.NO_ERROR)
            self._close_after_flush()
            return
        if not self.write_paused:
            self.deadline.set(self.loop.time() + self.w.timeouts.keepalive)

    def _timed_out(self) -> None:
        if self.closing:
            return
        if self.write_paused:           # send timeout: the client stopped reading
            self._close_now()
            return
        if not self.streams:            # idle keep-alive
            self._goaway(ErrorCodes.NO_ERROR)
            self._close_after_flush()
            return
        if self.reading:                # a request body stalled (client_body_timeout)
            for st in list(self.streams.values()):
                ex = st.ex
                if st.req_open and ex is not None and not st.body_paused:
                    if ex.state < RESPONDING:
                        ex.reply_error(errors.RequestTimeout())
                    else:
                        st.abort()
            self._flush()

    def _goaway(self, code: ErrorCodes) -> None:
        """The last frame: GOAWAY, then the connection closes."""
        self.goaway = True
        try:
            self.c.close_connection(code, last_stream_id=self.c.highest_inbound_stream_id)
        except h2.exceptions.ProtocolError:
            pass

    def _graceful_goaway(self) -> None:
        """GOAWAY NO_ERROR while streams go on (h2 would close the connection at once):
        streams above the last one are refused from now on."""
        self.goaway = True
        self._flush()
        if not self.transport.is_closing():
            self.transport.write(GoAwayFrame(
                0, last_stream_id=self.c.highest_inbound_stream_id or 0).serialize())

    def _calm(self, why: str) -> None:
        log.warning("HTTP/2 connection from %s closed: %s", self.client_addr, why)
        self._goaway(ErrorCodes.ENHANCE_YOUR_CALM)
        self._close_now()

    def _close_after_flush(self) -> None:
        self._flush()
        self.closing = True
        self.deadline.cancel()
        self.stall.cancel()
        self.transport.close()          # (after the buffered frames are written)

    def _close_now(self) -> None:
        """A protocol error or a defence: whatever h2 queued (GOAWAY) goes, then close."""
        self._close_after_flush()
        for st in list(self.streams.values()):
            st.reset = True
            ex = st.ex
            if ex is not None:
                ex.downstream_lost()

    # ---------------------------------------------------------------- worker's view
    def status(self) -> int:
        """Node status: 2 writing while a stream is open, else 0 waiting."""
        return 2 if self.streams else 0

    def drain(self) -> None:
        """Graceful shutdown: GOAWAY now (streams already open are answered; new ones are
        refused), close once no stream is open."""
        if self.closing:
            return
        if not self.goaway:
            self._graceful_goaway()
        self._idle_check()

    def abort(self) -> None:
        self.closing = True
        self.transport.close()

    def close(self) -> None:
        self.abort()


class _Calm(Exception):
    """A defence tripped: GOAWAY ENHANCE_YOUR_CALM and close."""


def take_over(h1: H1Connection, data: bytes, upgrade: RequestHead | None = None) -> bool:
    """Make an ``H1Connection`` an HTTP/2 connection: ``data`` is what was read so far (the
    preface), ``upgrade`` the HTTP/1.1 request that asked for ``Upgrade: h2c`` (answered
    101 here; it becomes stream 1).  False when the listener does not speak HTTP/2 (the
    HTTP/1 connection goes on as it was)."""
    w = h1.w
    settings: bytes | None = None
    if h1.scheme == "http" and not h1.h2c:
        return False
    if upgrade is not None:
        raw = upgrade.header(b"http2-settings")
        if raw is None:
            return False
        settings = raw + b"=" * (-len(raw) % 4)
        try:
            if len(base64.urlsafe_b64decode(settings)) % 6:
                return False
        except (binascii.Error, ValueError):
            return False
    h1.deadline.cancel()
    h1.closing = True
    w.connections.discard(h1)
    w.closed_requests += h1.requests - (upgrade is not None)
    t = h1.transport
    c = H2Connection(h1)
    t.set_protocol(c)
    if upgrade is not None:
        t.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                b"Upgrade: h2c\r\n\r\n")
    if h1.paused:
        h1.paused = 0
        t.resume_reading()
    try:
        c.start(data, upgrade, settings)
    except h2.exceptions.ProtocolError as e:    # a bad HTTP2-Settings header
        log.info("HTTP/2 upgrade from %s refused: %s", c.client_addr, e)
        c._close_now()
    return True
