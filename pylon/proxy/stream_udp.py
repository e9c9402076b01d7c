"""The stream proxy's UDP side: a session per client address toward one node, replies sent
back from the listener's socket (``stream.py``)."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING, Any, cast

from .. import errors
from .stream_session import StreamSession

log = logging.getLogger("pylon.stream")

if TYPE_CHECKING:
    from .stream import StreamProxy

#: UDP sessions a worker keeps at once
MAX_UDP_SESSIONS = 4096
#: datagrams kept for a UDP session while its upstream socket is being made
UDP_QUEUE = 64


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


class UdpSession(StreamSession):
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
            self.idle = rt.plan.stream_idle
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
