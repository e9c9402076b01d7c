"""The client side of an exchange: what ``Exchange`` calls on ``self.down``.

``server/h1.py``'s ``H1Connection`` implements it for HTTP/1.x, ``server/h2.py``'s
``H2Stream`` for one HTTP/2 stream, with the exchange unchanged.  The exchange hands over a
response as status + header pairs + body bytes and never frames anything itself: Content-Length or
chunked, ``Connection``, ``Date``/``Server``, keep-alive and the 100-continue line are the
downstream's business.  It tells the exchange about the client with
``Exchange.req_body`` / ``req_end`` (request body), ``downstream_writable`` (its write
buffer crossed a water mark) and ``downstream_lost`` (the client went away).

What is still HTTP/1-shaped in the exchange: the upgrade to a tunnel (``start_tunnel``: an
HTTP/2 stream would answer an extended CONNECT instead; the exchange's side -- a 101 from
the upstream, then raw bytes -- stays the same).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ..pdk.context import Peer

if TYPE_CHECKING:
    from ..tls.listener import TlsConn
    from ..upstream.runtime import Runtimes
    from .exchange import Exchange
    from .realip import RealIp
    from .tunnel import Tunnel

Headers = list[tuple[bytes, bytes]]


class GatewaySettings(Protocol):
    """The node settings the exchange reads (``pylon.settings.Settings``)."""

    @property
    def post_args_limit(self) -> int | None: ...
    @property
    def show_upstream_status(self) -> bool: ...


class Gateway(Protocol):
    """The worker's services an exchange uses (``pylon.server.worker.Worker``)."""

    @property
    def settings(self) -> GatewaySettings: ...
    @property
    def runtimes(self) -> Runtimes: ...


class Downstream(Peer, Protocol):
    """One client request stream: an HTTP/1.x connection (one exchange at a time) or one
    HTTP/2 stream.  (Read-only properties here only for typing: the HTTP/1 connection has
    them as plain slots, which the hot path reads per request.)"""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    @property
    def w(self) -> Gateway: ...
    @property
    def realip(self) -> RealIp | None:
        """The node's real_ip_from trusts this peer: ``realip.header_b`` sets $remote_addr."""
    # the client (``Peer`` has client_addr, scheme, server_port_s, bytes_out too)
    @property
    def client_port(self) -> int: ...
    @property
    def server_addr(self) -> str: ...
    @property
    def fwd_for(self) -> bytes:
        """``X-Real-IP`` to ``X-Forwarded-Proto`` for this client, then the name
        ``X-Forwarded-Host: `` (its value is the request's): prepared once per connection."""
    @property
    def fwd_port(self) -> bytes:
        """The ``X-Forwarded-Port`` line, with the CRLF before it."""
    @property
    def write_paused(self) -> bool:
        """The client's write buffer is over its high-water mark."""
    @property
    def tls(self) -> TlsConn | None:
        """What the client connection's TLS handshake settled (SNI, the ssl object, client
        certificate, ALPN): ``$ssl_*``, mTLS checks.  None on plain HTTP."""

    # -- the response, in order: [interim...] head, data..., end -- or one local reply ------
    def send_interim(self, status: int, headers: Headers) -> None:
        """A 1xx response other than 100 and 101 (103 Early Hints...)."""
    def send_head(self, status: int, headers: Headers, length: int | None,
                  no_body: bool) -> None:
        """The response head; ``length`` None: not known (the downstream frames it)."""
    def send_data(self, data: bytes) -> None: ...
    def send_end(self, trailers: Headers | None) -> None: ...
    @property
    def head_buf(self) -> bytes | None:
        """A response head held back to go out with the first body bytes."""
    def flush(self) -> None:
        """Write ``head_buf`` now."""
    def send_local(self, status: int, headers: Headers, body: bytes, close: bool) -> None:
        """A whole response made by the gateway (an error, a plugin's reply)."""
    def abort(self) -> None:
        """The response cannot be completed: the client must see it cut short."""
    def start_tunnel(self, headers: Headers, upgrade: bytes, upstream: asyncio.Transport,
                     early: bytes, idle: float, on_close: Callable[[Tunnel], None]) -> Tunnel:
        """The upstream switched protocols (101): answer the client, splice the two."""

    # -- the request body: flow control ---------------------------------------------------
    def pause_body(self) -> None: ...

    # -- the end ---------------------------------------------------------------------------
    def exchange_done(self, ex: Exchange) -> None:
        """The exchange is finished (answered, failed, or the client is gone): log it, go
        on with the next request."""
