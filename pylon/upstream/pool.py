"""Keep-alive connections to upstream nodes.

One ``NodePool`` per (scheme, host, port, TLS settings).  Idle connections are reused LIFO
(the most recently used one is the least likely to have been closed by the server), capped at
``keepalive_pool.size``, closed after ``idle_timeout`` and after ``requests`` requests — the
APISIX ``keepalive_pool`` semantics.  A connection is owned by at most one exchange at a time.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Protocol, TypeVar

from .. import errors
from ..timer import Deadline
from ..wire.h1 import ResponseParser

log = logging.getLogger("pylon.upstream")
WRITE_HIGH_WATER = 64 * 1024


class _Flusher(Protocol):
    @property
    def head_buf(self) -> bytes | None: ...
    def flush(self) -> None: ...


class _TunnelEnd(Protocol):
    """After a 101 the connection is one end of a ``proxy.tunnel.Tunnel``."""

    def from_upstream(self, data: bytes) -> None: ...
    def upstream_writable(self, writable: bool) -> None: ...
    def close(self) -> None: ...


class ConnOwner(Protocol):
    """What an upstream connection reports to: the exchange using it
    (``proxy.exchange.Exchange``).  While it owns the connection it is also the sink of its
    ``ResponseParser`` (``on_response`` / ``on_body`` / ``on_end``)."""

    @property
    def client(self) -> _Flusher: ...
    def on_response(self, status: int, headers: list[tuple[bytes, bytes]], keep_alive: bool,
                    length: int | None, chunked: bool) -> None: ...
    def on_body(self, data: bytes) -> None: ...
    def on_end(self, trailers: list[tuple[bytes, bytes]] | None) -> None: ...
    def switched(self, conn: UpstreamConnection, rest: bytes) -> None: ...
    def upstream_failed(self, error: errors.GatewayError) -> None: ...
    def upstream_writable(self, writable: bool) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    __slots__ = ("pool", "transport", "parser", "owner", "alive", "requests", "idle_since",
                 "deadline", "timeout_error", "read_timeout", "got_bytes", "close_delimited",
                 "peer", "tunnel")

    def __init__(self, pool: NodePool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set in connection_made
        self.parser = ResponseParser(self)
        self.owner: ConnOwner | None = None
        self.alive = True
        self.requests = 0
        self.idle_since = 0.0
        self.deadline = Deadline(pool.loop, self._timed_out)
        self.timeout_error: type[errors.UpstreamError] = errors.UpstreamReadTimeout
        #: the owner's read timeout (set as it sends a request): each read moves the
        #: deadline by this much
        self.read_timeout = 60.0
        self.got_bytes = False
        self.close_delimited = False
        #: after a 101 the connection is one end of a Tunnel and never returns to the pool
        self.tunnel: _TunnelEnd | None = None

    # -- transport callbacks ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        prepare(self.transport)

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.from_upstream(data)
            return
        owner = self.owner
        if owner is None:            # bytes while idle: the server broke the protocol
            self.close()
            return
        self.got_bytes = True
        d = self.deadline
        if d.due is not None:
            d.due = self.pool.loop.time() + self.read_timeout
        try:
            self.parser.feed(data)
            off = self.parser.upgrade_offset
            if off is not None:             # 101: from here on the bytes are not HTTP
                self.parser.upgrade_offset = None
                owner = self.owner
                if owner is not None:
                    owner.switched(self, data[off:])
                return
            owner = self.owner
            if owner is not None:           # response still streaming: don't hold its head
                down = owner.client
                if down.head_buf is not None:
                    down.flush()
        except Exception as e:
            if not isinstance(e, errors.GatewayError):
                log.exception("internal error relaying a response from %s:%d",
                              self.pool.host, self.pool.port)
                e = errors.InternalError()
            self.alive = False
            self.transport.close()
            o = self.owner
            if o is not None:
                self.owner = None
                o.upstream_failed(e)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        self.deadline.cancel()
        if self.tunnel is not None:
            self.tunnel.close()
        owner = self.owner
        if owner is None:
            return
        self.owner = None
        if exc is None and self.close_delimited:
            owner.on_end(None)       # a body delimited by the connection closing
            return
        owner.upstream_failed(errors.UpstreamReset(
            f"upstream closed the connection{': ' + str(exc) if exc else ''}"))

    def pause_writing(self) -> None:
        if self.tunnel is not None:
            self.tunnel.upstream_writable(False)
        elif self.owner is not None:
            self.owner.upstream_writable(False)

    def resume_writing(self) -> None:
        if self.tunnel is not None:
            self.tunnel.upstream_writable(True)
        elif self.owner is not None:
            self.owner.upstream_writable(True)

    # -- parser sink -------------------------------------------------------------------------
    # The parser's sink when no exchange owns the connection (the owner is the sink
    # otherwise): a response nobody asked for makes the connection unusable.
    def on_response(self, status: int, headers: list[tuple[bytes, bytes]], keep_alive: bool,
                    length: int | None, chunked: bool) -> None:
        self.close()

    def on_body(self, chunk: bytes) -> None:
        pass

    def on_end(self, trailers: list[tuple[bytes, bytes]] | None) -> None:
        self.deadline.due = None

    # -- use -------------------------------------------------------------------------------------
    def arm(self, timeout: float, error: type[errors.UpstreamError]) -> None:
        self.timeout_error = error
        self.deadline.set(self.pool.loop.time() + timeout)

    def _timed_out(self) -> None:
        owner = self.owner
        self.owner = None
        self.close()
        if owner is not None:
            owner.upstream_failed(self.timeout_error())

    def close(self) -> None:
        self.alive = False
        self.deadline.cancel()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


P = TypeVar("P", bound=asyncio.Protocol)


def prepare(transport: asyncio.Transport) -> None:
    """A new upstream connection's transport: the write water mark, TCP_NODELAY."""
    transport.set_write_buffer_limits(WRITE_HIGH_WATER)
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # pragma: no cover - platform specific
            pass


async def open_connection(loop: asyncio.AbstractEventLoop, factory: Callable[[], P],
                          host: str, port: int, ssl_ctx: ssl.SSLContext | None,
                          sni: str | None, timeout: float) -> P:
    """Connect to an upstream node within ``timeout``; failures as UpstreamError
    subclasses (connect timeout, TLS, refused or unreachable)."""
    try:
        async with asyncio.timeout(timeout):
            _, conn = await loop.create_connection(
                factory, host, port, ssl=ssl_ctx, server_hostname=sni if ssl_ctx else None)
    except TimeoutError:
        raise errors.UpstreamConnectTimeout(f"connect to {host}:{port} timed out") from None
    except ssl.SSLError as e:
        raise errors.UpstreamTLSError(f"TLS to {host}:{port}: {e}") from None
    except OSError as e:
        raise errors.UpstreamConnectFailed(
            f"connect to {host}:{port}: {e.strerror or e}") from None
    return conn


class NodePool:
    """Idle keep-alive connections to one node, and the way to open new ones."""

    __slots__ = ("loop", "host", "port", "ssl", "sni", "idle", "max_idle", "idle_timeout",
                 "max_requests", "opened", "users")

    def __init__(self, loop: asyncio.AbstractEventLoop, host: str, port: int,
                 ssl_ctx: ssl.SSLContext | None, sni: str | None, max_idle: int = 320,
                 idle_timeout: float = 60.0, max_requests: int = 1000) -> None:
        self.loop = loop
        self.host = host
        self.port = port
        self.ssl = ssl_ctx
        self.sni = sni
        self.idle: list[UpstreamConnection] = []
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.max_requests = max_requests
        self.opened = 0
        self.users = 0       # upstream runtimes holding this pool (for cleanup)

    def take(self) -> UpstreamConnection | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.alive and not conn.transport.is_closing():
                if self.idle_timeout and self.loop.time() - conn.idle_since > self.idle_timeout:
                    conn.close()
                    continue
                return conn
        return None

    def put(self, conn: UpstreamConnection) -> None:
        if (not conn.alive or conn.requests >= self.max_requests
                or len(self.idle) >= self.max_idle or self.idle_timeout == 0):
            conn.close()
            return
        conn.idle_since = self.loop.time()
        self.idle.append(conn)

    async def connect(self, timeout: float) -> UpstreamConnection:
        """Open a new connection; raises an UpstreamError subclass on failure."""
        conn = await open_connection(self.loop, lambda: UpstreamConnection(self), self.host,
                                     self.port, self.ssl, self.sni, timeout)
        self.opened += 1
        return conn

    def sweep(self, now: float) -> None:
        """Close idle connections past idle_timeout (called periodically)."""
        if not self.idle:
            return
        keep = []
        for conn in self.idle:
            if conn.alive and (not self.idle_timeout or now - conn.idle_since <= self.idle_timeout):
                keep.append(conn)
            else:
                conn.close()
        self.idle = keep

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle = []

