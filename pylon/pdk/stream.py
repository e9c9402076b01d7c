"""What a stream plugin hook can read and do about the connection it runs for.

``sctx`` in ``def stream_preread(conf, sctx)`` / ``def stream_log(conf, sctx)`` is the
connection (or UDP session) itself, as an exchange is an HTTP plugin's ``ctx``; this class is
its public face (``pylon/proxy/stream.py`` implements it).  Names follow APISIX's stream
variables (nginx's ``ngx_stream_core_module``): ``remote_addr``, ``server_port``,
``bytes_received``, ``session_time`` ...; plugins may register their own
(``set_var("mqtt_client_id", ...)``: the chash ``key`` of the route's upstream reads it).
A ``stream_preread`` hook ends the connection by returning a number (APISIX's
``return 503``: nginx's stream status), or lets it go on by returning None; it may be
``async`` (it may ``await sctx.peek(n)``).
"""

from __future__ import annotations

import time
from typing import Any


class StreamContext:
    """One client connection (TCP) or session (UDP) of the stream proxy."""

    __slots__ = ("bytes_received", "bytes_sent", "detail", "protocol", "remote_addr",
                 "remote_port", "route_id", "server_addr", "server_port", "sni", "status",
                 "upstream_addr", "_store", "_vars", "_wall")

    def __init__(self, protocol: str, remote: tuple[str, int], server: tuple[str, int]
                 ) -> None:
        #: "TCP" or "UDP" (nginx's ``$protocol``)
        self.protocol = protocol
        self.remote_addr = remote[0]
        self.remote_port = remote[1]
        self.server_addr = server[0]
        self.server_port = server[1]
        #: the TLS server name: the ClientHello's (passthrough) or the handshake's
        #: (a ``tls: true`` listener); None without TLS
        self.sni: str | None = None
        self.route_id: str | None = None
        #: bytes from the client / to the client
        self.bytes_received = 0
        self.bytes_sent = 0
        #: the upstream node used, "host:port" ("" before one is connected)
        self.upstream_addr = ""
        #: nginx's ``$status``: 200 proxied, 403 refused, 502 no upstream, 503 ...
        self.status = 200
        #: why the connection ended as it did when not proxied to its end (``no_route``,
        #: ``upstream_connect_failed``, ``plugin <name>`` ...), else ""
        self.detail = ""
        self._wall = time.time()
        self._store: dict[str, Any] | None = None
        self._vars: dict[str, str] | None = None

    @property
    def store(self) -> dict[str, Any]:
        """Per-connection plugin state (made on first use)."""
        st = self._store
        if st is None:
            st = self._store = {}
        return st

    @property
    def store_if_any(self) -> dict[str, Any] | None:
        return self._store

    def set_var(self, name: str, value: str | None) -> None:
        """A variable for the upstream's chash ``key`` and ``var()`` (APISIX's
        ``core.ctx.register_var``)."""
        if self._vars is None:
            self._vars = {}
        if value is None:
            self._vars.pop(name, None)
        else:
            self._vars[name] = value

    def var(self, name: str) -> str | None:
        """A stream variable by name (nginx's names), or one a plugin set; None if unknown."""
        if self._vars is not None and name in self._vars:
            return self._vars[name]
        if name in _VARS:
            v = getattr(self, name)
            return None if v is None else str(v)
        if name == "ssl_server_name":
            return self.sni
        if name == "pylon_detail":
            return self.detail or None
        if name == "session_time":
            return f"{self.session_time():.3f}"
        return None

    def wall_start(self) -> float:
        """When the connection started (seconds since the epoch)."""
        return self._wall

    def session_time(self) -> float:
        """Seconds since the connection started."""
        raise NotImplementedError

    async def peek(self, n: int) -> bytes:
        """The first ``n`` bytes the client sent (fewer if it closed or the wait ran out:
        bounded by the listener's preread timeout), without consuming them: they still go
        to the upstream (nginx's ``preread``)."""
        raise NotImplementedError

    # chash reads these (``pylon.upstream.balancer.HashKeySource``)
    consumer_name: str | None = None


_VARS = frozenset(("remote_addr", "remote_port", "server_addr", "server_port", "protocol",
                   "bytes_received", "bytes_sent", "upstream_addr", "route_id", "status"))
