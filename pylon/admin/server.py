"""The Admin API's HTTP/1.1 server: an asyncio.Protocol on ``wire.h1.RequestParser``.

Requests on a connection are answered in order (keep-alive and pipelining work); a body is
buffered up to 1.5 MiB (APISIX's ``MAX_REQ_BODY``) and a larger one is answered 413 and the
connection closed.  Every answer is JSON with ``X-API-VERSION: v3``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import msgspec

from .. import errors
from ..timer import Deadline
from ..wire.h1 import Limits, RequestParser, encode_headers, status_line
from ..wire.head import RequestHead

log = logging.getLogger("pylon.admin")

MAX_BODY = 1024 * 1024 * 3 // 2      # 1.5 MiB, as APISIX
LINGER_SECONDS = 2.0
IDLE_TIMEOUT = 60.0                  # a connection with nothing to do closes after this
MAX_CONNECTIONS = 256                # beyond this, new admin connections are closed at once
LINGER_BYTES = 4 * MAX_BODY
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
    """A handler's answer that is not JSON (the metrics exporter's text)."""

    __slots__ = ("content_type", "data")

    def __init__(self, data: bytes, content_type: bytes) -> None:
        self.data = data
        self.content_type = content_type


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
    if isinstance(body, RawBody):
        payload, ctype = body.data, body.content_type
    else:
        payload, ctype = (b"" if body is None else _encode.encode(body)), b"application/json"
    headers = [(b"Content-Type", ctype),
               (b"Content-Length", str(len(payload)).encode()),
               (b"X-API-VERSION", b"v3"),
               (b"Server", b"pylon"),
               (b"Connection", b"keep-alive" if keep_alive else b"close")]
    if cors:
        headers += CORS_HEADERS
    return status_line(status) + encode_headers(headers) + b"\r\n" + \
        (b"" if head_only else payload)


def render_preflight(keep_alive: bool) -> bytes:
    headers = [*PREFLIGHT_HEADERS, (b"Content-Length", b"0"), (b"Content-Type", b"text/plain"),
               (b"Server", b"pylon"),
               (b"Connection", b"keep-alive" if keep_alive else b"close")]
    return status_line(200) + encode_headers(headers) + b"\r\n"


class AdminProtocol(asyncio.Protocol):
    def __init__(self, app: Handler, loop: asyncio.AbstractEventLoop,
                 conns: set[AdminProtocol] | None = None) -> None:
        self.app = app
        #: the Admin API answers with APISIX's CORS headers (AdminApp.cors); other apps
        #: served by this protocol (metrics, control) do not
        self.cors: bool = bool(getattr(app, "cors", False))
        self.loop = loop
        self.conns: set[AdminProtocol] = conns if conns is not None else set()
        self.idle = Deadline(loop, self._close)
        self.parser = RequestParser(self, Limits(max_body=MAX_BODY))
        self.transport: asyncio.Transport | None = None
        self.remote: str | None = None
        self.queue: collections.deque[_Request] = collections.deque()
        self.current: _Request | None = None
        self.task: asyncio.Task[None] | None = None
        self.closing = False
        self.draining = 0          # bytes still discarded after an early error answer

    # -- transport ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if isinstance(peer, tuple) and peer else None
        if len(self.conns) >= MAX_CONNECTIONS:
            log.warning("admin API: %d connections open; refusing %s", len(self.conns),
                        self.remote)
            transport.close()
            return
        self.conns.add(self)
        self.idle.set(self.loop.time() + IDLE_TIMEOUT)

    def connection_lost(self, exc: Exception | None) -> None:
        self.conns.discard(self)
        self.idle.cancel()
        self.closing = True
        self.transport = None
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def data_received(self, data: bytes) -> None:
        self.idle.due = self.loop.time() + IDLE_TIMEOUT
        if self.draining:
            self.draining = max(0, self.draining - len(data))
            if not self.draining:
                self._close()
            return
        if self.closing:
            return
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

    def on_body(self, chunk: bytes) -> None:
        if self.current is not None:
            self.current.body.append(chunk)

    def on_end(self, trailers: list[tuple[bytes, bytes]] | None) -> None:
        if self.current is not None:
            self.current.done = True
            self.current = None
        if self.task is None or self.task.done():
            self.task = self.loop.create_task(self._serve())

    # -- answering ------------------------------------------------------------------------
    async def _serve(self) -> None:
        while self.queue and self.queue[0].done and not self.closing:
            req = self.queue.popleft()
            head = req.head
            keep = head.keep_alive
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

    def _fail(self, status: int, message: str) -> None:
        """A request that cannot be parsed (or is too large): answer and close.  Like
        nginx's lingering close, what the client is still sending is read and dropped for
        a moment first, so the answer is not lost to a reset."""
        if self.transport is None:
            return
        self.transport.write(render(status, {"error_msg": message}, False))
        self.closing = True
        self.queue.clear()
        self.draining = LINGER_BYTES
        self.loop.call_later(LINGER_SECONDS, self._close)

    def _close(self) -> None:
        self.closing = True
        self.draining = 0
        self.queue.clear()
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


async def start_admin(loop: asyncio.AbstractEventLoop, app: Handler, host: str,
                      port: int) -> asyncio.Server:
    """Listen on ``host:port`` and answer Admin API requests with ``app``."""
    conns: set[AdminProtocol] = set()
    factory: Callable[[], AdminProtocol] = lambda: AdminProtocol(app, loop, conns)
    return await loop.create_server(factory, host, port, reuse_address=True)
