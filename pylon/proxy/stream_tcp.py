"""The stream proxy's TCP side: a client connection spliced to an upstream node (steps in
``stream.py``), and the ClientHello's server name for TLS passthrough."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING, Any, cast

from .. import errors
from .stream_session import StreamSession

log = logging.getLogger("pylon.stream")

if TYPE_CHECKING:
    from ..upstream.balancer import Node
    from .stream import StreamProxy

#: nginx's preread_timeout (30 s) and preread_buffer_size (16k): the ClientHello wait
PREREAD_TIMEOUT = 30.0
PREREAD_MAX = 16384 + 5
#: a side's write buffer above this pauses reading the other side (and below LOW resumes)
HIGH, LOW = 64 * 1024, 16 * 1024


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


class TcpSession(StreamSession, asyncio.Protocol):
    """One client connection of a stream TCP listener."""

    __slots__ = ("buf", "client", "down_eof", "task", "tls", "up", "up_eof", "waiter")

    def __init__(self, proxy: StreamProxy, tls: bool) -> None:
        StreamSession.__init__(self, proxy, "TCP", ("", 0), ("", 0))
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
        self.idle = plan.stream_idle
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
