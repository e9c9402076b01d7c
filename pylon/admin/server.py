"""The master's small HTTP/1.1 server: an asyncio.Protocol on ``wire.h1.RequestParser``,
serving the Admin API, the Control API (``server/control.py``) and the Prometheus export
(``server/exporter.py``).

Requests on a connection are answered in order (keep-alive and pipelining work); a body is
buffered up to 1.5 MiB (APISIX's ``MAX_REQ_BODY``) and a larger one is answered 413 and the
connection closed.  Every answer is JSON with ``X-API-VERSION: v3``.

Each server is bounded like the proxy port (``settings.ConnLimits``: ``deployment.admin``
for the Admin API, ``apisix.control`` for the other two): a whole request head within
``client_header_timeout`` (else 408 and close), no pause longer than
``client_body_timeout`` in a body (408), an idle keep-alive connection closed after
``keepalive_timeout``, and at most ``max_connections`` open, the longest-waiting one
closed to let a new one in (``Pool``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Mapping
from typing import Any, Protocol

import msgspec

from .. import errors
from ..settings import ConnLimits
from ..timer import Deadline
from ..wire.h1 import Limits, RequestParser, encode_headers, status_line
from ..wire.head import RequestHead

log = logging.getLogger("pylon.admin")

MAX_BODY = 1024 * 1024 * 3 // 2      # 1.5 MiB, as APISIX
LINGER_SECONDS = 2.0
LINGER_BYTES = 4 * MAX_BODY
BACKLOG = 511                        # nginx's listen backlog: a burst of connects waits
WARN_EVERY = 10.0                    # seconds between two "connections full" log lines
#: what a connection waits for: its client (nothing sent yet / idle keep-alive, a request
#: head, a request body), its handler (the answer), the end of lingering after an error
_WAIT, _HEAD, _BODY, _BUSY, _LINGER = range(5)
_encode = msgspec.json.Encoder()


class Handler(Protocol):
    def handle(self, method: str, path: str, query: str, headers: Mapping[str, str],
               body: bytes, remote_addr: str | None = None
               ) -> Awaitable[tuple[int, dict[str, Any]]]: ...


class _Request:
    __slots__ = ("body", "done", "head")

    def __init__(self, head: RequestHead) -> None:
        self.head = head
        self.body: list[bytes] = []
        self.done = False


class RawBody:
    """A handler's answer that is not JSON (the metrics exporter's text, the dashboard's
    files), with the headers it adds (``Set-Cookie``, ``Content-Encoding``...)."""

    __slots__ = ("content_type", "data", "headers")

    def __init__(self, data: bytes, content_type: bytes,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.data = data
        self.content_type = content_type
        self.headers = headers or []


#: APISIX's ``cors_admin`` (``deployment.admin.enable_admin_cors``, on by default): on every
#: Admin API answer, and an ``OPTIONS`` preflight is answered 200 before anything is checked
CORS_HEADERS = [(b"Access-Control-Allow-Origin", b"*"),
                (b"Access-Control-Allow-Credentials", b"true"),
                (b"Access-Control-Expose-Headers", b"*"),
                (b"Access-Control-Max-Age", b"3600")]
PREFLIGHT_HEADERS = [(b"Access-Control-Allow-Origin", b"*"),
                     (b"Access-Control-Allow-Methods", b"POST, GET, PUT, OPTIONS, DELETE, PATCH"),
                     (b"Access-Control-Max-Age", b"3600"),
                     (b"Access-Control-Allow-Headers", b"*"),
                     (b"Access-Control-Allow-Credentials", b"true")]


def render(status: int, body: Any, keep_alive: bool, head_only: bool = False,
           cors: bool = False) -> bytes:
    extra: list[tuple[bytes, bytes]] = []
    if isinstance(body, RawBody):
        payload, ctype, extra = body.data, body.content_type, body.headers
    else:
        payload, ctype = (b"" if body is None else _encode.encode(body)), b"application/json"
    headers = [(b"Content-Type", ctype),
               (b"Content-Length", str(len(payload)).encode()),
               (b"X-API-VERSION", b"v3"),
               (b"Server", b"pylon"),
               (b"Connection", b"keep-alive" if keep_alive else b"close"), *extra]
    if cors:
        headers += CORS_HEADERS
    return status_line(status) + encode_headers(headers) + b"\r\n" + \
        (b"" if head_only else payload)


def render_preflight(keep_alive: bool) -> bytes:
    headers = [*PREFLIGHT_HEADERS, (b"Content-Length", b"0"), (b"Content-Type", b"text/plain"),
               (b"Server", b"pylon"),
               (b"Connection", b"keep-alive" if keep_alive else b"close")]
    return status_line(200) + encode_headers(headers) + b"\r\n"


class Pool:
    """One server's connections and limits (the Admin API, the Control API, the metrics
    export each have their own).

    When it is full, a new connection still gets in: the open connection that has waited
    longest for its client -- lingering after an error answer first, then idle keep-alive
    ones and ones with an unfinished request, oldest wait first -- is closed to make room.
    Only when every connection is busy being answered is the new one refused.  So a flood
    of half-open connections (slowloris) cannot keep a real client out."""

    __slots__ = ("conns", "limits", "loop", "name", "warned")

    def __init__(self, loop: asyncio.AbstractEventLoop, limits: ConnLimits | None = None,
                 name: str = "Admin API") -> None:
        self.loop = loop
        self.limits = limits or ConnLimits()
        self.name = name
        self.conns: set[AdminProtocol] = set()
        self.warned = -WARN_EVERY

    def admit(self, new: AdminProtocol) -> bool:
        conns = self.conns
        if len(conns) < self.limits.max_connections:
            conns.add(new)
            return True
        victim = min((c for c in conns if c.state != _BUSY),
                     key=lambda c: (c.state != _LINGER, c.since), default=None)
        now = self.loop.time()
        if now - self.warned >= WARN_EVERY:      # at most one line per WARN_EVERY seconds
            self.warned = now
            log.warning("%s: %d connections open (max_connections); %s", self.name,
                        len(conns), "refusing a new one: all are busy" if victim is None
                        else "closing the one that waited longest for its client "
                        f"({victim.peer})")
        if victim is None:
            return False
        conns.discard(victim)
        victim._close()
        conns.add(new)
        return True


class AdminProtocol(asyncio.Protocol):
    """One connection: its request heads must arrive whole within ``header_timeout``,
    a body must not pause longer than ``body_timeout``, an idle keep-alive connection
    closes after ``idle_timeout`` (nginx's ``client_header_timeout``,
    ``client_body_timeout``, ``keepalive_timeout``); one deadline per connection.
    Reading pauses while a request is being answered."""

    def __init__(self, app: Handler, loop: asyncio.AbstractEventLoop,
                 pool: Pool | None = None) -> None:
        self.app = app
        #: the Admin API answers with APISIX's CORS headers (AdminApp.cors); other apps
        #: served by this protocol (metrics, control) do not
        self.cors: bool = bool(getattr(app, "cors", False))
        self.loop = loop
        self.pool = pool if pool is not None else Pool(loop)
        self.limits = self.pool.limits
        self.deadline = Deadline(loop, self._timed_out)
        self.parser = RequestParser(self, Limits(max_body=MAX_BODY))
        self.transport: asyncio.Transport | None = None
        self.remote: str | None = None
        self.peer = "?"            # address:port, for the log
        self.queue: collections.deque[_Request] = collections.deque()
        self.current: _Request | None = None
        self.task: asyncio.Task[None] | None = None
        self.closing = False
        self.draining = 0          # bytes still discarded after an early error answer
        #: what the connection waits for (_WAIT, _HEAD, _BODY, _BUSY, _LINGER) and since when
        self.state = _WAIT
        self.since = 0.0
        self.served = False        # a response went out: _WAIT is keep-alive idle
        #: a refusal waiting for the answers to the requests pipelined before it
        self.deferred: tuple[int, str] | None = None

    # -- transport ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if isinstance(peer, tuple) and peer else None
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and peer else "?"
        self.since = now = self.loop.time()
        if not self.pool.admit(self):
            self.closing = True
            transport.close()
            return
        # a new connection has header_timeout for its whole first head (nothing sent by
        # then: closed without an answer)
        self.deadline.set(now + self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.conns.discard(self)
        self.deadline.cancel()
        self.closing = True
        self.transport = None
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def data_received(self, data: bytes) -> None:
        if self.draining:
            self.draining = max(0, self.draining - len(data))
            if not self.draining:
                self._close()
            return
        if self.closing:
            return
        if self.state == _WAIT:
            self.state = _HEAD
            if self.served:            # keep-alive: the next head has its own header_timeout
                self.deadline.set(self.loop.time() + self.limits.header_timeout)
        try:
            self.parser.feed(data)
        except errors.GatewayError as e:
            self._fail(e.status, _message(e))
        except Exception:   # pragma: no cover - a parser bug: answer, do not crash
            log.exception("admin API: request parsing failed")
            self._fail(500, "internal error")

    # -- parser sink -----------------------------------------------------------------------
    def on_request(self, head: RequestHead) -> None:
        self.current = _Request(head)
        self.queue.append(self.current)
        if self.state != _BUSY and (head.chunked or head.content_length):
            self.state = _BODY
            self.deadline.set(self.loop.time() + self.limits.body_timeout)

    def on_body(self, chunk: bytes) -> None:
        if self.current is not None:
            self.current.body.append(chunk)
        if self.state == _BODY:        # between two reads, as nginx's client_body_timeout
            self.deadline.due = self.loop.time() + self.limits.body_timeout

    def on_end(self, trailers: list[tuple[bytes, bytes]] | None) -> None:
        if self.current is not None:
            self.current.done = True
            self.current = None
        if self.state != _BUSY:
            self.state = _BUSY
            self.deadline.clear()
            if self.transport is not None:
                self.transport.pause_reading()
        if self.task is None or self.task.done():
            self.task = self.loop.create_task(self._serve())

    # -- answering ------------------------------------------------------------------------
    async def _serve(self) -> None:
        while self.queue and self.queue[0].done and (not self.closing or self.deferred):
            req = self.queue.popleft()
            head = req.head
            keep = head.keep_alive and self.limits.idle_timeout > 0
            cors = self.cors and (head.path == "/apisix/admin"
                                  or head.path.startswith("/apisix/admin/"))
            if cors and head.method == "OPTIONS":
                if self.transport is None:
                    return
                self.transport.write(render_preflight(keep))
                if not keep:
                    self._close()
                    return
                continue
            try:
                status, body = await self.app.handle(
                    head.method, head.path, head.query.decode("latin-1"),
                    _headers(head), b"".join(req.body), self.remote)
            except Exception:
                log.exception("admin API: handler failed")
                status, body = 500, {"error_msg": "internal error"}
            if self.transport is None:
                return
            self.transport.write(render(status, body, keep, head.method == "HEAD", cors))
            if not keep:
                self._close()
                return
        if self.deferred is not None and self.transport is not None:
            status, message = self.deferred
            self.deferred = None
            self.state = _HEAD
            self._fail(status, message)
            return
        if self.closing or self.transport is None:
            return
        # answered all there is: wait for the client again (the rest of a pipelined
        # request's body, or the next request on this keep-alive connection)
        self.served = True
        self.since = now = self.loop.time()
        if self.current is not None:
            self.state = _BODY
            self.deadline.set(now + self.limits.body_timeout)
        else:
            self.state = _WAIT
            self.deadline.set(now + self.limits.idle_timeout)
        self.transport.resume_reading()

    def _timed_out(self) -> None:
        state = self.state
        if state in (_HEAD, _BODY):
            self._fail(408, _message(errors.RequestTimeout()))
        elif state != _BUSY:           # idle, or nothing sent; or the lingering is over
            self._close()

    def _fail(self, status: int, message: str) -> None:
        """A request that cannot be parsed (or is too large, or too slow): answer and close.
        Like nginx's lingering close, what the client is still sending is read and dropped
        for a moment first, so the answer is not lost to a reset."""
        if self.transport is None:
            return
        if self.state == _BUSY:
            # the bad bytes came pipelined behind requests not answered yet: they get their
            # answers first, then this one (_serve), and nothing more is read
            self.deferred = (status, message)
            while self.queue and not self.queue[-1].done:
                self.queue.pop()
            self.current = None
            self.closing = True
            return
        self.transport.write(render(status, {"error_msg": message}, False))
        self.transport.resume_reading()
        self.closing = True
        self.queue.clear()
        self.draining = LINGER_BYTES
        self.state = _LINGER
        self.deadline.set(self.loop.time() + LINGER_SECONDS)

    def _close(self) -> None:
        self.closing = True
        self.draining = 0
        self.queue.clear()
        self.deadline.cancel()
        if self.transport is not None:
            self.transport.close()


def _headers(head: RequestHead) -> dict[str, str]:
    out: dict[str, str] = {}
    for n, v in head.headers:
        out.setdefault(n.decode("latin-1").lower(), v.decode("latin-1"))
    return out


def _message(e: errors.GatewayError) -> str:
    if isinstance(e, errors.BodyTooLarge):
        return f"request body is larger than the {MAX_BODY} bytes allowed"
    return e.detail or e.message


async def start_admin(loop: asyncio.AbstractEventLoop, app: Handler, host: str, port: int,
                      limits: ConnLimits | None = None, name: str = "Admin API"
                      ) -> asyncio.Server:
    """Listen on ``host:port`` and answer requests with ``app`` (the Admin API; the Control
    API and the metrics export use it too), within ``limits``."""
    pool = Pool(loop, limits, name)
    def factory() -> AdminProtocol:
        return AdminProtocol(app, loop, pool)
    return await loop.create_server(factory, host, port, reuse_address=True,
                                    backlog=BACKLOG)
