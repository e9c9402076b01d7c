"""HTTP/2 toward upstream nodes (``scheme: grpc`` / ``grpcs``): pooled connections, one
stream per request.

The ``h2`` library (sans-IO, client side) does framing, HPACK and the flow-control
bookkeeping, as for the client side in ``server/h2.py``.  Here:

* ``H2Pool`` -- one per (scheme, host, port, TLS settings), as ``pool.NodePool`` is for
  HTTP/1.1.  A request gets a *stream* on a live connection with room for it (fewer open
  streams than the server's ``SETTINGS_MAX_CONCURRENT_STREAMS``, not draining); when none
  has room the stream waits for a connection being opened (one connect serves many waiting
  streams).  ``keepalive_pool``: ``size`` connections without streams are kept (more are
  closed), ``idle_timeout`` closes a connection without streams after that long,
  ``requests`` streams per connection and the connection drains (no new streams, closed
  when its last stream ends).
* ``H2UpConnection`` -- one TCP (or TLS with ALPN ``h2``) connection.  GOAWAY from the
  server: no new streams on it; streams it did not process (above ``last_stream_id``) fail
  with ``UpstreamRefused`` -- safe to send again, the exchange does so once on a new
  connection.  ``REFUSED_STREAM`` likewise.
* ``H2UpStream`` -- one request: its owner (the exchange, ``pool.ConnOwner``) gets
  ``on_response`` / ``on_body`` / ``on_end(trailers)`` / ``upstream_failed`` as from an
  HTTP/1.1 connection.  Flow control both ways: request bytes beyond the server's window
  wait in the stream (past ``WRITE_HIGH_WATER`` the owner pauses reading its client, and
  ``timeout.send`` runs); response bytes are credited back to the server only while the
  owner's client keeps up (``pause``).  ``timeout.read`` runs between reads once the request
  headers went out; an optional absolute deadline (``grpc-timeout``) ends the stream with
  ``GrpcDeadlineExceeded``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import Frame, GoAwayFrame

from .. import errors
from ..timer import Deadline
from .pool import ConnOwner, open_connection, prepare

log = logging.getLogger("pylon.upstream")

Headers = list[tuple[bytes, bytes]]
#: request bytes a stream holds beyond the server's window before its owner pauses the client
WRITE_HIGH_WATER = 64 * 1024
#: our receive windows: per stream (what a paused client lets pile up) and per connection
STREAM_WINDOW = 256 * 1024
CONNECTION_WINDOW = 16 << 20
#: streams per connection when the server sets no lower limit
MAX_STREAMS = 1000


def send_window(c: h2.connection.H2Connection, sid: int, out: deque[bytes]) -> int:
    """DATA frames of stream ``sid`` from the bytes queued in ``out``, as far as the
    peer's window and frame size allow; the bytes sent (h2's errors are the caller's)."""
    window = c.local_flow_control_window(sid)
    frame = c.max_outbound_frame_size
    sent = 0
    while out and window > 0:
        data = out[0]
        n = min(window, frame, len(data))
        if n < len(data):
            c.send_data(sid, data[:n])
            out[0] = data[n:]
        else:
            c.send_data(sid, data)
            out.popleft()
        sent += n
        window -= n
    return sent


class _H2Client(h2.connection.H2Connection):
    """h2's connection, except that a GOAWAY leaves it open: the streams the server still
    processes (up to ``last_stream_id``) go on to their end (RFC 9113 §6.8).  h2 closes its
    state machine on GOAWAY, drops the frames not yet written and refuses every later frame
    (gRPC servers send a first GOAWAY and a PING, then the final GOAWAY).  No new stream is
    opened on a connection after a GOAWAY (``H2UpConnection.draining``)."""

    sweep_at = 64

    @property
    def open_outbound_streams(self) -> int:
        # h2 counts open streams by walking all it knows at every new stream (O(streams)
        # per request); the pool enforces the limit itself (``room``).  Closed streams are
        # dropped once the table has grown past twice what was open at the last walk.
        if len(self.streams) >= self.sweep_at:
            self.sweep_at = 2 * self._open_streams(1) + 64
        return 0

    def _receive_goaway_frame(self, frame: GoAwayFrame
                              ) -> tuple[list[Frame], list[h2.events.Event]]:
        ev = h2.events.ConnectionTerminated()
        ev.error_code = _error_code(frame.error_code)
        ev.last_stream_id = frame.last_stream_id
        ev.additional_data = frame.additional_data or None
        return [], [ev]


def _error_code(code: int) -> ErrorCodes | int:
    try:
        return ErrorCodes(code)
    except ValueError:
        return code


class H2UpStream:
    """One request toward the upstream on an HTTP/2 connection."""

    __slots__ = ("pool", "conn", "sid", "owner", "headers", "out", "out_bytes", "end",
                 "end_sent", "paused", "unacked", "deadline", "timeout_error", "read_timeout",
                 "send_timeout", "connect_timeout", "limit", "got_head", "got_bytes", "done",
                 "blocked", "resp_trailers")

    def __init__(self, pool: H2Pool, owner: ConnOwner, headers: Headers,
                 connect_timeout: float, send_timeout: float, read_timeout: float) -> None:
        self.pool = pool
        self.conn: H2UpConnection | None = None
        self.sid = 0
        self.owner: ConnOwner | None = owner
        self.headers = headers
        #: request body waiting for the server's window (or for the stream to open)
        self.out: deque[bytes] = deque()
        self.out_bytes = 0
        #: the request's end, waiting behind ``out``: None, or (trailers,)
        self.end: tuple[Headers | None] | None = None
        self.end_sent = False
        #: the owner's client is slow: received bytes are not credited back
        self.paused = False
        self.unacked = 0
        self.deadline = Deadline(pool.loop, self._timed_out)
        self.timeout_error: type[errors.UpstreamError] = errors.UpstreamReadTimeout
        self.read_timeout = read_timeout
        self.send_timeout = send_timeout
        self.connect_timeout = connect_timeout
        #: absolute loop time the whole call must end by (``grpc-timeout``), 0: none
        self.limit = 0.0
        self.got_head = False
        self.got_bytes = False
        self.done = False
        self.blocked = False
        self.resp_trailers: Headers | None = None

    # -- the owner's side ------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """More request body."""
        if self.done or not data:
            return
        self.out.append(data)
        self.out_bytes += len(data)
        c = self.conn
        if c is not None:
            c.push(self)
        self._check_blocked()

    def finish(self, trailers: Headers | None) -> None:
        """The request body ended (with trailers, if any)."""
        if self.done or self.end is not None or self.end_sent:
            return
        self.end = (trailers,)
        c = self.conn
        if c is not None:
            c.push(self)

    def pause(self, paused: bool) -> None:
        """The owner's client is (not) keeping up: withhold (give back) the window."""
        self.paused = paused
        if not paused and self.unacked:
            c = self.conn
            n = self.unacked
            self.unacked = 0
            if c is not None and not self.done:
                c.ack(self.sid, n)

    def set_limit(self, due: float) -> None:
        """The call must end by loop time ``due`` (``grpc-timeout``)."""
        self.limit = due
        self._arm(self.read_timeout, errors.UpstreamReadTimeout)

    def cancel(self) -> None:
        """The owner is done with the stream before it ended: RST_STREAM CANCEL."""
        if not self.done:
            self._drop()

    # -- internals ---------------------------------------------------------------------------
    def _arm(self, timeout: float, error: type[errors.UpstreamError]) -> None:
        due = self.pool.loop.time() + timeout
        if self.limit and self.limit < due:
            due = self.limit
            error = errors.GrpcDeadlineExceeded
        self.timeout_error = error
        self.deadline.set(due)

    def _check_blocked(self) -> None:
        owner = self.owner
        if self.out_bytes > WRITE_HIGH_WATER:
            if not self.blocked:
                self.blocked = True
                self._arm(self.send_timeout, errors.UpstreamSendTimeout)
                if owner is not None:
                    owner.upstream_writable(False)
        elif self.blocked:
            self.blocked = False
            self._arm(self.read_timeout, errors.UpstreamReadTimeout)
            if owner is not None:
                owner.upstream_writable(True)

    def _timed_out(self) -> None:
        if self.done:
            return
        self.fail(self.timeout_error())

    def _close(self) -> None:
        self.done = True
        self.owner = None
        self.out.clear()
        self.out_bytes = 0
        self.deadline.cancel()

    def _drop(self) -> None:
        self._close()
        c = self.conn
        if c is not None:
            c.reset(self, ErrorCodes.CANCEL)
        else:
            self.pool.forget(self)

    def fail(self, err: errors.GatewayError) -> None:
        """The stream ends without a whole response: tell the owner, reset the stream."""
        if self.done:
            return
        owner = self.owner
        self._drop()
        if owner is not None:
            owner.upstream_failed(err)

    # events from the connection
    def on_headers(self, headers: Headers, ended: bool) -> None:
        owner = self.owner
        if owner is None:
            return
        self.got_bytes = True
        status = 0
        length: int | None = None
        fields: Headers = []
        for n, v in headers:
            if n[:1] == b":":
                if n == b":status":
                    try:
                        status = int(v)
                    except ValueError:
                        status = 0
                continue
            if n == b"content-length":
                try:
                    length = int(v)
                except ValueError:
                    length = None
            fields.append((n, v))
        if self.got_head:                   # trailers
            self._ended(fields)
            return
        if status < 100 or status > 999:
            self.fail(errors.UpstreamBadResponse("HTTP/2 response without a valid :status"))
            return
        if status < 200:
            owner.on_response(status, fields, True, None, False)
            return
        self.got_head = True
        self._arm(self.read_timeout, errors.UpstreamReadTimeout)
        owner.on_response(status, fields, True, length, False)
        if ended and not self.done:     # (gRPC's Trailers-Only: the head is the response)
            self._ended(None)

    def on_data(self, data: bytes, flow: int, ended: bool) -> None:
        owner = self.owner
        if owner is None:
            return
        if self.deadline.due is not None and not self.blocked:
            self._arm(self.read_timeout, errors.UpstreamReadTimeout)
        if data:
            owner.on_body(data)
        if flow:
            if self.paused or self.done:
                self.unacked += flow
            else:
                c = self.conn
                if c is not None:
                    c.ack(self.sid, flow)
        if ended and not self.done:
            self._ended(None)

    def _ended(self, trailers: Headers | None) -> None:
        owner = self.owner
        if not self.got_head:
            self.fail(errors.UpstreamBadResponse("HTTP/2 stream ended without a response"))
            return
        c = self.conn
        end_sent = self.end_sent
        self._close()
        if c is not None:
            if end_sent:
                c.stream_closed(self)
            else:       # answered before the request ended: stop the request (RFC 9113 §8.1)
                c.reset(self, ErrorCodes.NO_ERROR)
        if owner is not None:
            owner.on_end(trailers)


class H2UpConnection(asyncio.Protocol):
    """One HTTP/2 connection to an upstream node."""

    def __init__(self, pool: H2Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        # headers are built here (lower-case names, pseudo-headers first): h2 need not
        # check or normalise them either way
        cfg = h2.config.H2Configuration(client_side=True, header_encoding=None,
                                        validate_inbound_headers=False,
                                        normalize_inbound_headers=False,
                                        validate_outbound_headers=False,
                                        normalize_outbound_headers=False)
        self.h2 = _H2Client(cfg)
        self.streams: dict[int, H2UpStream] = {}
        self.alive = True
        #: GOAWAY received or ``requests`` reached: no new streams
        self.draining = False
        self.opened = 0
        self.idle_since = pool.loop.time()
        self.write_paused = False
        #: streams with request bytes waiting for the server's window
        self.waiting: set[H2UpStream] = set()
        self.flush_handle: asyncio.Handle | None = None

    # -- capacity --------------------------------------------------------------------------
    def room(self) -> int:
        if not self.alive or self.draining:
            return 0
        limit = min(self.h2.remote_settings.max_concurrent_streams, MAX_STREAMS)
        return max(0, min(limit - len(self.streams), self.pool.max_requests - self.opened))

    def start(self, st: H2UpStream) -> None:
        """Open ``st`` on this connection: headers now, body as the window allows."""
        c = self.h2
        try:
            sid = c.get_next_available_stream_id()
            c.send_headers(sid, st.headers, end_stream=False)
        except h2.exceptions.H2Error as e:
            self.draining = True        # (the owner hears of it from the loop, not in here)
            self.loop.call_soon(st.fail, errors.UpstreamRefused(f"HTTP/2 stream not opened: {e}"))
            return
        st.conn = self
        st.sid = sid
        self.streams[sid] = st
        self.opened += 1
        if self.opened >= self.pool.max_requests:
            self.draining = True
        st._arm(st.read_timeout, errors.UpstreamReadTimeout)
        self.push(st)
        self.flush_soon()

    # -- sending -----------------------------------------------------------------------------
    def push(self, st: H2UpStream) -> None:
        """``st``'s waiting body (and end) out, as far as the server's window allows."""
        if st.done or not self.alive:
            return
        c = self.h2
        sid = st.sid
        out = st.out
        try:
            st.out_bytes -= send_window(c, sid, out)
            if not out and st.end is not None:
                trailers = st.end[0]
                st.end = None
                st.end_sent = True
                if trailers:
                    c.send_headers(sid, [(n.lower(), v) for n, v in trailers], end_stream=True)
                else:
                    c.end_stream(sid)
        except h2.exceptions.H2Error as e:
            st.fail(errors.UpstreamReset(f"HTTP/2 stream failed: {e}"))
            return
        if out:
            self.waiting.add(st)
        else:
            self.waiting.discard(st)
        st._check_blocked()
        self.flush_soon()

    def ack(self, sid: int, n: int) -> None:
        if not self.alive:
            return
        try:
            self.h2.acknowledge_received_data(n, sid)
        except h2.exceptions.H2Error:
            return
        self.flush_soon()

    def reset(self, st: H2UpStream, code: ErrorCodes) -> None:
        if self.streams.pop(st.sid, None) is None:
            return
        self.waiting.discard(st)
        if self.alive:
            try:
                self.h2.reset_stream(st.sid, code)
            except h2.exceptions.H2Error:
                pass
            if st.unacked:
                try:
                    self.h2.acknowledge_received_data(st.unacked, st.sid)
                except h2.exceptions.H2Error:
                    pass
            self.flush_soon()
        self._stream_gone()

    def stream_closed(self, st: H2UpStream) -> None:
        if self.streams.pop(st.sid, None) is not None:
            self.waiting.discard(st)
            self._stream_gone()

    def _stream_gone(self) -> None:
        if not self.streams:
            self.idle_since = self.loop.time()
            if self.draining or not self.alive:
                self.close()
            else:
                self.pool.idle(self)
        self.pool.wake()

    def flush_soon(self) -> None:
        if self.flush_handle is None and self.alive:
            self.flush_handle = self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.flush_handle = None
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    # -- transport callbacks ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        prepare(transport)  # type: ignore[arg-type]
        c = self.h2
        c.local_settings = h2.settings.Settings(client=True, initial_values={
            SettingCodes.ENABLE_PUSH: 0, SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            SettingCodes.MAX_CONCURRENT_STREAMS: 100})
        c.initiate_connection()
        c.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self.flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            log.info("HTTP/2 protocol error from %s:%d: %s", self.pool.host, self.pool.port, e)
            self.flush()
            self._lost(errors.UpstreamBadResponse(f"HTTP/2 protocol error: {e}"))
            return
        for ev in events:
            try:
                self._event(ev)
            except Exception:
                log.exception("internal error relaying an HTTP/2 response from %s:%d",
                              self.pool.host, self.pool.port)
                st = self.streams.get(getattr(ev, "stream_id", 0) or 0)
                if st is not None:
                    st.fail(errors.InternalError())
        self.flush_soon()

    def _event(self, ev: h2.events.Event) -> None:
        if isinstance(ev, h2.events.DataReceived):
            st = self.streams.get(ev.stream_id)
            if st is None:
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                return
            st.on_data(ev.data or b"", ev.flow_controlled_length,
                       ev.stream_ended is not None)
        elif isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
            st = self.streams.get(ev.stream_id)
            if st is not None:
                st.on_headers(list(ev.headers or []), ev.stream_ended is not None)
        elif isinstance(ev, h2.events.InformationalResponseReceived):
            st = self.streams.get(ev.stream_id)
            if st is not None:
                st.on_headers(list(ev.headers or []), False)
        elif isinstance(ev, h2.events.StreamReset):
            st = self.streams.pop(ev.stream_id, None)
            if st is not None:
                self.waiting.discard(st)
                if ev.error_code == ErrorCodes.REFUSED_STREAM and not st.got_bytes:
                    err: errors.UpstreamError = errors.UpstreamRefused(
                        "the upstream refused the HTTP/2 stream")
                else:
                    err = errors.UpstreamReset(
                        f"the upstream reset the HTTP/2 stream ({ev.error_code!s})")
                st.conn = None
                st.fail(err)
                self._stream_gone()
        elif isinstance(ev, h2.events.WindowUpdated):
            if ev.stream_id:
                st = self.streams.get(ev.stream_id)
                if st is not None:
                    self.push(st)
            else:
                for st in list(self.waiting):
                    self.push(st)
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self._goaway(ev.last_stream_id or 0, ev.error_code)
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            if SettingCodes.INITIAL_WINDOW_SIZE in ev.changed_settings:
                for st in list(self.waiting):
                    self.push(st)
            self.pool.wake()

    def _goaway(self, last: int, code: object) -> None:
        """GOAWAY: no new streams here; those above ``last`` were not processed."""
        self.draining = True
        for sid, st in list(self.streams.items()):
            if sid > last:
                self.streams.pop(sid, None)
                self.waiting.discard(st)
                st.conn = None
                st.fail(errors.UpstreamRefused("the upstream sent GOAWAY before this stream"))
        if code != ErrorCodes.NO_ERROR and self.streams:
            self._lost(errors.UpstreamReset(f"the upstream sent GOAWAY ({code!s})"))
            return
        if not self.streams:
            self.close()
        self.pool.wake()

    def _lost(self, err: errors.UpstreamError) -> None:
        self.alive = False
        streams = list(self.streams.values())
        self.streams.clear()
        self.waiting.clear()
        for st in streams:
            st.conn = None
            st.fail(err)
        self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        self.pool.discard(self)
        if self.streams:
            self._lost(errors.UpstreamReset(
                f"upstream closed the connection{': ' + str(exc) if exc else ''}"))

    def pause_writing(self) -> None:
        self.write_paused = True
        for st in self.streams.values():
            if not st.blocked and not st.done:
                st.blocked = True
                st._arm(st.send_timeout, errors.UpstreamSendTimeout)
                if st.owner is not None:
                    st.owner.upstream_writable(False)

    def resume_writing(self) -> None:
        self.write_paused = False
        for st in list(self.streams.values()):
            st._check_blocked()

    def close(self) -> None:
        self.alive = False
        self.pool.discard(self)
        if self.flush_handle is not None:
            self.flush_handle.cancel()
            self.flush_handle = None
        t = self.transport
        if t is not None and not t.is_closing():
            try:
                self.h2.close_connection()
                t.write(self.h2.data_to_send())
            except h2.exceptions.H2Error:
                pass
            t.close()


class H2Pool:
    """HTTP/2 connections to one node (``keepalive_pool`` as described above)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, host: str, port: int,
                 ssl_ctx: ssl.SSLContext | None, sni: str | None, max_idle: int = 320,
                 idle_timeout: float = 60.0, max_requests: int = 1000) -> None:
        self.loop = loop
        self.host = host
        self.port = port
        self.ssl = ssl_ctx
        self.sni = sni
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.max_requests = max(1, max_requests)
        self.conns: list[H2UpConnection] = []
        #: streams waiting for a connection with room
        self.pending: deque[H2UpStream] = deque()
        self.connecting = 0
        #: the connect in progress (held: the loop keeps only a weak reference)
        self.task: asyncio.Task[None] | None = None
        self.opened = 0
        self.closed = False
        self.users = 0

    def request(self, owner: ConnOwner, headers: Headers, connect_timeout: float,
                send_timeout: float, read_timeout: float) -> H2UpStream:
        """A new stream for ``owner``; it opens now if a connection has room, else when
        one does (a connect is started; its failure fails the stream)."""
        st = H2UpStream(self, owner, headers, connect_timeout, send_timeout, read_timeout)
        for c in reversed(self.conns):
            if c.room() > 0:
                c.start(st)
                return st
        st._arm(connect_timeout, errors.UpstreamConnectTimeout)    # (waiting is bounded)
        self.pending.append(st)
        self.wake()
        return st

    def forget(self, st: H2UpStream) -> None:
        try:
            self.pending.remove(st)
        except ValueError:
            pass

    def wake(self) -> None:
        """Give waiting streams to connections with room; connect when there is none."""
        pending = self.pending
        while pending:
            for c in reversed(self.conns):
                if c.room() > 0:
                    break
            else:
                if self.connecting == 0:
                    self.connecting += 1
                    self.task = self.loop.create_task(
                        self._connect(pending[0].connect_timeout))
                return
            st = pending.popleft()
            if not st.done:
                c.start(st)

    async def _connect(self, timeout: float) -> None:
        try:
            conn = await open_connection(self.loop, lambda: H2UpConnection(self), self.host,
                                         self.port, self.ssl, self.sni, timeout)
        except errors.UpstreamError as err:
            self.connecting -= 1
            pending = list(self.pending)
            self.pending.clear()
            for st in pending:
                if not st.done:
                    st.fail(err)
            return
        self.connecting -= 1
        self.opened += 1
        self.conns.append(conn)
        self.wake()

    def idle(self, conn: H2UpConnection) -> None:
        """``conn`` has no stream left: keep it (up to ``size`` such) or close it."""
        if self.idle_timeout == 0 or self.closed:
            conn.close()
            return
        idle = sum(1 for c in self.conns if not c.streams)
        if idle > self.max_idle:
            conn.close()

    def discard(self, conn: H2UpConnection) -> None:
        try:
            self.conns.remove(conn)
        except ValueError:
            pass

    def sweep(self, now: float) -> None:
        """Close connections without streams past ``idle_timeout`` (called periodically)."""
        for c in list(self.conns):
            if not c.streams and (not c.alive or (
                    self.idle_timeout and now - c.idle_since > self.idle_timeout)):
                c.close()

    def close(self) -> None:
        """The pool is no longer used: idle connections close now, busy ones when their
        streams end (a request of an older snapshot still gets a connection, closed after
        it)."""
        self.closed = True
        for c in list(self.conns):
            c.draining = True
            if not c.streams:
                c.close()
