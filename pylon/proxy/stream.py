"""The stream proxy: raw TCP and UDP connections spliced to upstream nodes (docs/stream.md).

One ``TcpSession`` per client connection of a stream listener (``apisix.stream_proxy.tcp``):

1. **preread**: on a plain listener whose snapshot has ``sni`` routes, the first TLS record
   is read (not consumed: it goes to the upstream as it came) for the ClientHello's server
   name -- TLS passthrough; on a ``tls: true`` listener the handshake (certificates from the
   ``ssls`` objects) already gave the name.  Bounded: ``PREREAD_TIMEOUT`` and
   ``PREREAD_MAX`` bytes (nginx's ``preread_timeout`` / ``preread_buffer_size``).
2. **route**: the snapshot's ``StreamTable``; no route -- closed, as APISIX ("not hit any
   route").  The route's ``stream_preread`` plugin hooks run (they may ``peek``); a number
   returned ends the connection (APISIX: ``return 403``).
3. **connect**: the route's upstream runtime (the HTTP proxy's: same balancer, health
   state, passive reports); a failed or timed-out connect is reported and the next node
   tried, ``retries`` times at most (default: every node once) within ``retry_timeout``.
   ``scheme: tls``: TLS toward the node.
4. **splice**: bytes both ways with backpressure (a side whose write buffer is above 64 KiB
   pauses reading the other side), half-close (EOF from one side: shutdown of writing to the
   other), one idle bound: the upstream's ``timeout.read`` between two reads or writes on
   either side (nginx's ``proxy_timeout``).  Byte counts for the log.
5. **log**: the route's ``stream_log`` hooks when both sides are closed.

UDP (``UdpListener``): a session per client address toward one node, replies sent back from
the listener's socket, expired after the same idle bound; at most ``MAX_UDP_SESSIONS`` per
worker (datagrams of a new client beyond it are dropped and counted in the log).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

from .. import errors
from ..observe.access_log import AccessLog
from ..pdk.stream import StreamContext
from .stream_routes import StreamRoute

if TYPE_CHECKING:
    from ..upstream.balancer import Node
    from ..upstream.runtime import Runtimes, UpstreamRuntime

log = logging.getLogger("pylon.stream")

#: nginx's preread_timeout (30 s) and preread_buffer_size (16k): the ClientHello wait
PREREAD_TIMEOUT = 30.0
PREREAD_MAX = 16384 + 5
#: a side's write buffer above this pauses reading the other side (and below LOW resumes)
HIGH, LOW = 64 * 1024, 16 * 1024
#: UDP sessions a worker keeps at once
MAX_UDP_SESSIONS = 4096
#: datagrams kept for a UDP session while its upstream socket is being made
UDP_QUEUE = 64


class SnapshotSource(Protocol):
    """What the stream proxy reads of the worker: the snapshot holder's current snapshot
    (``compiled.stream``, ``upstreams``)."""

    @property
    def current(self) -> Any: ...


class StreamProxy:
    """A worker's stream proxy: the protocol factories of its stream listeners and the
    sessions alive (for draining)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, holder: SnapshotSource,
                 runtimes: Runtimes, access_log: str | None = None,
                 log_format: str = "") -> None:
        self.loop = loop
        self.holder = holder
        self.runtimes = runtimes
        #: ``nginx_config.stream.access_log``: a line per connection when it ends
        self.access_log: AccessLog[StreamContext] | None = AccessLog(
            loop, access_log, log_format, _stream_var) if access_log else None
        self.sessions: set[TcpSession | UdpSession] = set()
        self.udp_dropped = 0

    def tcp_factory(self, tls: bool) -> Callable[[], TcpSession]:
        return lambda: TcpSession(self, tls)

    def udp_factory(self) -> Callable[[], UdpListener]:
        return lambda: UdpListener(self)

    def abort_all(self) -> None:
        for s in list(self.sessions):
            s.close()
        if self.access_log is not None:
            self.access_log.close()


def _stream_var(name: str) -> Callable[[StreamContext], object]:
    """``$name`` of the stream access log format: the connection's variable."""
    return lambda c: c.var(name)


# ---------------------------------------------------------------------------- shared steps
class _Session(StreamContext):
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
        self.idle = 60.0
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


# ---------------------------------------------------------------------------- TCP
class _Upstream(asyncio.Protocol):
    """The upstream side of a TCP session."""

    def __init__(self, s: TcpSession) -> None:
        self.s = s

    def data_received(self, data: bytes) -> None:
        s = self.s
        s.last = s.proxy.loop.time()
        s.bytes_sent += len(data)
        c = s.client
        if c is not None and not c.is_closing():
            c.write(data)

    def eof_received(self) -> bool:
        s = self.s
        s.up_eof = True
        c = s.client
        if s.down_eof or c is None or c.is_closing() or s.tls or not c.can_write_eof():
            s.close()
            return False
        c.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.s.close()

    def pause_writing(self) -> None:
        c = self.s.client
        if c is not None and not c.is_closing():
            c.pause_reading()

    def resume_writing(self) -> None:
        c = self.s.client
        if c is not None and not c.is_closing():
            c.resume_reading()


class TcpSession(_Session, asyncio.Protocol):
    """One client connection of a stream TCP listener."""

    __slots__ = ("buf", "client", "down_eof", "task", "tls", "up", "up_eof", "waiter")

    def __init__(self, proxy: StreamProxy, tls: bool) -> None:
        _Session.__init__(self, proxy, "TCP", ("", 0), ("", 0))
        self.tls = tls
        self.client: asyncio.Transport | None = None
        self.up: asyncio.Transport | None = None
        #: what the client sent before the upstream was connected (preread, connect)
        self.buf = bytearray()
        self.waiter: asyncio.Future[None] | None = None
        self.down_eof = False
        self.up_eof = False
        self.task: asyncio.Task[None] | None = None

    # -- client side ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)      # uvloop's: not a subclass
        self.client = transport
        peer = transport.get_extra_info("peername") or ("", 0)
        sock = transport.get_extra_info("sockname") or ("", 0)
        self.remote_addr, self.remote_port = str(peer[0]), int(peer[1])
        self.server_addr, self.server_port = str(sock[0]), int(sock[1])
        if self.tls:
            obj = transport.get_extra_info("ssl_object")
            self.sni = getattr(obj, "pylon_sni", (None, None))[0]
        transport.set_write_buffer_limits(HIGH, LOW)
        self.proxy.sessions.add(self)
        self.task = self.proxy.loop.create_task(self._start())

    def data_received(self, data: bytes) -> None:
        self.last = self.proxy.loop.time()
        self.bytes_received += len(data)
        up = self.up
        if up is not None:
            up.write(data)
            return
        self.buf += data
        if len(self.buf) > PREREAD_MAX and self.client is not None:
            self.client.pause_reading()       # enough kept until the upstream is there
        self._wake()

    def eof_received(self) -> bool:
        self.down_eof = True
        self._wake()
        up = self.up
        if up is None:
            return True                      # kept: sent once connected, then shut down
        if self.up_eof or up.is_closing() or not up.can_write_eof():
            self.close()
            return False
        up.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()

    def pause_writing(self) -> None:
        if self.up is not None and not self.up.is_closing():
            self.up.pause_reading()

    def resume_writing(self) -> None:
        if self.up is not None and not self.up.is_closing():
            self.up.resume_reading()

    def _wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def peek(self, n: int) -> bytes:
        deadline = self.proxy.loop.time() + PREREAD_TIMEOUT
        n = min(n, PREREAD_MAX)
        while len(self.buf) < n and not self.down_eof and not self.closed:
            left = deadline - self.proxy.loop.time()
            if left <= 0:
                break
            self.waiter = self.proxy.loop.create_future()
            try:
                async with asyncio.timeout(left):
                    await self.waiter
            except TimeoutError:
                break
            finally:
                self.waiter = None
        return bytes(self.buf[:n])

    # -- the steps -----------------------------------------------------------------------
    async def _start(self) -> None:
        try:
            if not self.tls and self.proxy.holder.current.compiled.stream.wants_sni:
                self.sni = await self._client_hello_sni()
            if self.closed or not self._match() or not await self._preread():
                self.close()
                return
            if self.rt is None:
                log.error("stream route %s: no upstream (or no node yet)", self.route_id)
                self.status = 502
                self.close()
                return
            await self._connect()
        except asyncio.CancelledError:
            self.close()
            raise
        except Exception:
            log.exception("stream session from %s failed", self.remote_addr)
            self.status = 500
            self.close()

    async def _client_hello_sni(self) -> str | None:
        head = await self.peek(5)
        if len(head) < 5 or head[0] != 0x16:
            return None                           # not TLS: routes without sni decide
        size = int.from_bytes(head[3:5], "big")
        return client_hello_sni(await self.peek(5 + size))

    async def _connect(self) -> None:
        rt = self.rt
        assert rt is not None
        plan = rt.plan
        self.idle = plan.read_timeout
        loop = self.proxy.loop
        deadline = loop.time() + plan.retry_timeout if plan.retry_timeout else None
        tls = plan.scheme == "tls"
        ctx = self.proxy.runtimes.client_context(plan) if tls else None
        for attempt in range(rt.retries + 1):
            node = self._pick()
            if node is None:
                break
            try:
                async with asyncio.timeout(plan.connect_timeout):   # no task, unlike wait_for
                    transport, _ = await loop.create_connection(
                        lambda: _Upstream(self), node.host, node.port, ssl=ctx,
                        server_hostname=_server_name(plan, node, self.sni) if tls else None)
            except (OSError, ssl.SSLError, TimeoutError) as e:
                err: Exception = errors.UpstreamConnectTimeout() \
                    if isinstance(e, TimeoutError) else errors.UpstreamTLSError() \
                    if isinstance(e, ssl.SSLError) else errors.UpstreamConnectFailed()
                log.error("stream route %s: connect to %s failed: %s", self.route_id,
                          node.addr, e or type(e).__name__)
                self.detail = err.code  # type: ignore[attr-defined]
                self._failed(node, err)
                if self.closed or (deadline is not None and loop.time() >= deadline) or \
                        attempt == rt.retries:
                    break
                continue
            if self.closed:
                transport.close()
                return
            self._spliced(transport, node)
            return
        self.status = 502
        self.close()

    def _spliced(self, up: asyncio.Transport, node: Node) -> None:
        self.up = up
        self.upstream_addr = node.addr
        up.set_write_buffer_limits(HIGH, LOW)
        if self.buf:
            up.write(bytes(self.buf))
            self.buf = bytearray()
        c = self.client
        if c is not None and not c.is_closing():
            c.resume_reading()
        if self.down_eof:
            if up.can_write_eof():
                up.write_eof()
            else:
                self.close()
                return
        self.last = self.proxy.loop.time()
        self._arm()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._wake()
        for t in (self.client, self.up):
            if t is not None and not t.is_closing():
                t.close()
        task = self.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
        self._finish()


def _server_name(plan: Any, node: Node, sni: str | None) -> str | None:
    """The name sent toward a ``scheme: tls`` node: ``upstream_host`` with ``pass_host:
    rewrite``, else the client's SNI, else the node's host."""
    if plan.pass_host == "rewrite" and plan.upstream_host:
        return str(plan.upstream_host)
    return sni or node.host


def client_hello_sni(record: bytes) -> str | None:
    """The server name of a TLS ClientHello record (RFC 8446 4.1.2, RFC 6066 3), None when
    there is none or the record is not a well-formed ClientHello."""
    try:
        if record[0] != 0x16 or record[5] != 0x01:
            return None
        p = 5 + 4 + 2 + 32                       # record and handshake headers, version, random
        p += 1 + record[p]                       # session id
        p += 2 + int.from_bytes(record[p:p + 2], "big")     # cipher suites
        p += 1 + record[p]                       # compression methods
        end = p + 2 + int.from_bytes(record[p:p + 2], "big")
        p += 2
        while p + 4 <= min(end, len(record)):
            etype = int.from_bytes(record[p:p + 2], "big")
            elen = int.from_bytes(record[p + 2:p + 4], "big")
            p += 4
            if etype == 0:                       # server_name: list length, type, length
                q = p + 2
                while q + 3 <= p + elen:
                    nlen = int.from_bytes(record[q + 1:q + 3], "big")
                    if record[q] == 0:
                        name = record[q + 3:q + 3 + nlen]
                        if len(name) != nlen:
                            return None
                        return name.decode("ascii").lower().rstrip(".")
                    q += 3 + nlen
                return None
            p += elen
    except (IndexError, UnicodeDecodeError):
        return None
    return None


# ---------------------------------------------------------------------------- UDP
class UdpListener(asyncio.DatagramProtocol):
    """A stream UDP listener: datagrams by client address to their ``UdpSession``."""

    def __init__(self, proxy: StreamProxy) -> None:
        self.proxy = proxy
        self.transport: asyncio.DatagramTransport | None = None
        self.server: tuple[str, int] = ("", 0)
        self.sessions: dict[Any, UdpSession] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.DatagramTransport, transport)
        self.transport = transport
        sock = transport.get_extra_info("sockname") or ("", 0)
        self.server = (str(sock[0]), int(sock[1]))

    def datagram_received(self, data: bytes, addr: Any) -> None:
        s = self.sessions.get(addr)
        if s is None:
            if len(self.sessions) >= MAX_UDP_SESSIONS:
                self.proxy.udp_dropped += 1
                if self.proxy.udp_dropped % 1000 == 1:
                    log.warning("stream udp %s:%d: %d sessions open, datagrams of new "
                                "clients dropped (%d so far)", *self.server,
                                MAX_UDP_SESSIONS, self.proxy.udp_dropped)
                return
            s = self.sessions[addr] = UdpSession(self, addr)
        s.from_client(data)

    def error_received(self, exc: Exception) -> None:
        log.info("stream udp %s:%d: %s", *self.server, exc)

    def close(self) -> None:
        for s in list(self.sessions.values()):
            s.close()


class _UdpUpstream(asyncio.DatagramProtocol):
    def __init__(self, s: UdpSession) -> None:
        self.s = s

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.s.from_upstream(data)

    def error_received(self, exc: Exception) -> None:
        s = self.s
        if s.node is not None and s.rt is not None and s.rt.health is not None:
            s.rt.health.failure(s.node.addr, errors.UpstreamConnectFailed())
        log.info("stream route %s: udp upstream %s: %s", s.route_id, s.upstream_addr, exc)


class UdpSession(_Session):
    """One client address of a stream UDP listener and its socket toward one node."""

    __slots__ = ("addr", "listener", "queue", "task", "up")

    def __init__(self, listener: UdpListener, addr: Any) -> None:
        super().__init__(listener.proxy, "UDP", (str(addr[0]), int(addr[1])), listener.server)
        self.listener = listener
        self.addr = addr
        self.up: asyncio.DatagramTransport | None = None
        self.queue: list[bytes] = []
        self.proxy.sessions.add(self)
        self.task: asyncio.Task[None] | None = self.proxy.loop.create_task(self._start())

    def from_client(self, data: bytes) -> None:
        self.last = self.proxy.loop.time()
        self.bytes_received += len(data)
        if self.up is not None:
            self.up.sendto(data)
        elif len(self.queue) < UDP_QUEUE:
            self.queue.append(data)

    def from_upstream(self, data: bytes) -> None:
        self.last = self.proxy.loop.time()
        self.bytes_sent += len(data)
        t = self.listener.transport
        if t is not None and not t.is_closing():
            t.sendto(data, self.addr)

    async def peek(self, n: int) -> bytes:
        return self.queue[0][:n] if self.queue else b""

    async def _start(self) -> None:
        try:
            if not self._match() or not await self._preread():
                self.close()
                return
            rt = self.rt
            if rt is None:
                log.error("stream route %s: no upstream (or no node yet)", self.route_id)
                self.status = 502
                self.close()
                return
            self.idle = rt.plan.read_timeout
            node = self._pick()
            if node is None:
                self.status = 502
                self.close()
                return
            loop = self.proxy.loop
            try:
                async with asyncio.timeout(rt.plan.connect_timeout):
                    transport, _ = await loop.create_datagram_endpoint(
                        lambda: _UdpUpstream(self), remote_addr=(node.host, node.port),
                        family=socket.AF_INET6 if ":" in node.host else socket.AF_INET)
            except (OSError, TimeoutError) as e:
                log.error("stream route %s: udp upstream %s: %s", self.route_id, node.addr, e)
                self._failed(node, errors.UpstreamConnectFailed())
                self.status = 502
                self.close()
                return
            if self.closed:
                transport.close()
                return
            self.up = transport
            self.upstream_addr = node.addr
            for d in self.queue:
                transport.sendto(d)
            self.queue = []
            self._arm()
        except asyncio.CancelledError:
            self.close()
            raise
        except Exception:
            log.exception("stream udp session from %s failed", self.remote_addr)
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.listener.sessions.get(self.addr) is self:
            del self.listener.sessions[self.addr]
        if self.up is not None:
            self.up.close()
        task = self.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
        self._finish()
