"""What a stream proxy TCP connection and UDP session share (``stream.py`` tells the whole
story): the route match, the preread hooks, the node choice with its failure reports, the idle
bound and the end (log hooks, access log, balancer accounting)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import TYPE_CHECKING

from ..pdk.stream import StreamContext
from .stream_routes import StreamRoute

if TYPE_CHECKING:
    from ..upstream.balancer import Node
    from ..upstream.runtime import UpstreamRuntime
    from .stream import StreamProxy

log = logging.getLogger("pylon.stream")


class StreamSession(StreamContext):
    """What TCP and UDP sessions share: route, preread hooks, node choice, log hooks."""

    __slots__ = ("closed", "idle", "last", "node", "proxy", "route", "rt", "t0", "timer",
                 "tried")

    def __init__(self, proxy: StreamProxy, protocol: str, remote: tuple[str, int],
                 server: tuple[str, int]) -> None:
        super().__init__(protocol, remote, server)
        self.proxy = proxy
        self.route: StreamRoute | None = None
        self.rt: UpstreamRuntime | None = None
        self.node: Node | None = None
        self.tried: set[str] | None = None
        self.t0 = time.monotonic()
        self.closed = False
        self.last = proxy.loop.time()
        self.idle = 600.0
        self.timer: asyncio.TimerHandle | None = None

    def session_time(self) -> float:
        return time.monotonic() - self.t0

    def _match(self) -> bool:
        snap = self.proxy.holder.current
        route = snap.compiled.stream.match(self.remote_addr, self.server_addr,
                                           self.server_port, self.sni)
        if route is None:
            self.detail = "no_route"
            log.info("not hit any route: %s %s:%d -> %s:%d%s", self.protocol, self.remote_addr,
                     self.remote_port, self.server_addr, self.server_port,
                     f" (sni {self.sni})" if self.sni else "")
            return False
        self.route = route
        self.route_id = route.id
        self.rt = snap.upstreams.get(route.upstream_key) if route.upstream_key else None
        return True

    async def _preread(self) -> bool:
        """The route's preread hooks; False: a hook refused the connection."""
        assert self.route is not None
        for h in self.route.chain.preread:
            if h.filter is not None and not h.filter(self):
                continue
            got = h.fn(h.conf, self)
            if inspect.isawaitable(got):
                got = await got
            if got is not None:
                status = got[0] if isinstance(got, tuple) else got
                self.status = int(status) if isinstance(status, int) else 503
                self.detail = "plugin " + h.name
                log.info("stream route %s: plugin %s ended the connection from %s (%s)",
                         self.route_id, h.name, self.remote_addr, self.status)
                return False
        return True

    def _pick(self) -> Node | None:
        rt = self.rt
        assert rt is not None
        node: Node | None = rt.balancer.pick(self, self.tried)
        if node is not None and rt.track:
            rt.balancer.before(node)
        self.node = node
        return node

    def _failed(self, node: Node, error: Exception) -> None:
        rt = self.rt
        assert rt is not None
        if rt.track:
            rt.balancer.after(node, None, True)
        if rt.health is not None:
            rt.health.failure(node.addr, error)
        if self.tried is None:
            self.tried = set()
        self.tried.add(node.addr)

    def _arm(self) -> None:
        """The idle bound (nginx's proxy_timeout), checked lazily: activity only stores
        the time."""
        if self.timer is None and not self.closed:
            self.timer = self.proxy.loop.call_at(self.last + self.idle, self._idle_check)

    def _idle_check(self) -> None:
        self.timer = None
        if self.closed:
            return
        if self.proxy.loop.time() - self.last >= self.idle:
            log.info("stream %s %s:%d: idle for %.0f s, closed", self.protocol,
                     self.remote_addr, self.remote_port, self.idle)
            self.close()
            return
        self._arm()

    def close(self) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        """Once: the log hooks, the balancer's accounting."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.proxy.sessions.discard(self)
        if self.proxy.access_log is not None:
            self.proxy.access_log.add(self, self.bytes_sent)
        rt, node = self.rt, self.node
        if rt is not None and node is not None and rt.track and self.upstream_addr:
            rt.balancer.after(node, self.session_time(), False)
        route = self.route
        if route is None:
            return
        for h in route.chain.log:
            try:
                got = h.fn(h.conf, self)
                if inspect.isawaitable(got):
                    self.proxy.loop.create_task(got)  # type: ignore[arg-type]
            except Exception:
                log.exception("stream route %s: plugin %s log hook failed", route.id, h.name)
