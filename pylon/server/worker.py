"""A worker process: serve the listeners it was handed with the config the master sends.

The worker receives config documents from the master on its control socket, compiles each
into a new snapshot (off the event loop's critical path, in a thread), reconciles upstream
runtimes and swaps the snapshot in.  On SIGTERM it stops accepting, lets in-flight requests
finish (closing keep-alive connections as they go idle) and exits at the deadline.  When its
master dies it serves on with the config it has, until a new master takes over and tells it
to drain (``takeover.py``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import ssl
import struct
import sys
import time
from email.utils import formatdate
from typing import Any

import msgspec

from .. import __version__, errors
from ..config.compiler import Compiled, ConfigModel
from ..config.snapshot import Snapshot, SnapshotHolder
from ..node import Node, load_plugins
from ..observe import metrics
from ..observe.access_log import AccessLog
from ..pdk.runtime import install as install_node
from ..proxy import variables
from ..proxy.exchange import Exchange
from ..proxy.realip import RealIp
from ..proxy.stream import StreamProxy
from ..settings import Settings
from ..tls.listener import server_context
from ..tls.table import H2, HTTP11
from ..upstream.runtime import Runtimes
from ..wire.h1 import Limits
from .h1 import H1Connection
from .h2 import H2Connection, take_over

log = logging.getLogger("pylon.worker")
clog = logging.getLogger("pylon.config")


class Timeouts:
    __slots__ = ("client_body", "client_header", "keepalive", "send")

    def __init__(self, s: Settings) -> None:
        self.client_header = s.client_header_timeout
        self.client_body = s.client_body_timeout
        self.keepalive = s.keepalive_timeout
        self.send = s.send_timeout


def _load_model(model: ConfigModel, doc: Any) -> Compiled:
    # Compiling allocates hundreds of thousands of objects at 100k routes; letting the cyclic
    # GC walk them while they are being built costs more than the build itself.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return model.load(doc)
    finally:
        if enabled:
            gc.enable()


def compile_doc(doc: Any, node: Node) -> Compiled:
    """A whole document compiled as a worker of ``node`` compiles it (``pylon validate``)."""
    assert node.settings is not None
    return _load_model(ConfigModel(node.settings.router, node, tls_alpns(node.settings)), doc)


def tls_alpns(settings: Settings) -> tuple[tuple[str, ...], ...]:
    """The ALPN lists of the node's TLS listeners: an ssl object gets a context for each."""
    alpns = {H2 if h2 else HTTP11 for h2 in settings.tls_listen.values()}
    if any(settings.stream_tcp.values()):       # stream TLS listeners: no HTTP/2
        alpns.add(HTTP11)
    return tuple(sorted(alpns)) or (HTTP11,)


class Worker:
    def __init__(self, node: Node, loop: asyncio.AbstractEventLoop, index: int = 0) -> None:
        settings = node.settings
        assert settings is not None, "a worker runs a node with settings"
        self.node = node
        self.settings = settings
        self.loop = loop
        self.index = index
        self.limits = Limits(settings.max_uri, settings.max_header_bytes, settings.max_headers,
                             settings.max_body)
        self.timeouts = Timeouts(settings)
        #: nginx_config.http.real_ip_*: who may set the client address (None: nobody)
        self.realip = RealIp.from_settings(settings)
        self.connections: set[H1Connection | H2Connection] = set()
        self.draining = False
        self.runtimes = Runtimes(loop, settings.ssl_trusted_certificate)
        self.alpns = tls_alpns(settings)
        self.model = ConfigModel(settings.router, node, self.alpns)
        self.holder = SnapshotHolder(Snapshot(0, self.model.compiled, {}))
        self.apply_ms = 0.0
        self.server_header = f"Server: Pylon/{__version__}\r\n".encode()
        #: "Date: ...\r\n", refreshed every second by the sweep timer (not per response)
        self.date_hdr = b""
        self.wall_offset = 0.0
        self._tick_date()
        self.access_log: AccessLog[Exchange] | None = AccessLog(
            loop, settings.access_log, settings.access_log_format, variables.getter,
            variables.request_headers) \
            if settings.access_log else None
        self.servers: list[asyncio.base_events.Server] = []
        #: the stream proxy (``apisix.proxy_mode`` with stream), its UDP listeners
        self.stream = StreamProxy(loop, self.holder, self.runtimes, settings.stream_access_log,
                                  settings.stream_access_log_format) \
            if settings.proxy_mode != "http" else None
        self.udp: list[tuple[asyncio.DatagramTransport, Any]] = []
        self._tls_ctx: dict[bool, ssl.SSLContext] = {}
        self.requests = 0
        #: node status: connections accepted, requests of connections already closed
        self.accepted = 0
        self.closed_requests = 0
        self._apply_lock = asyncio.Lock()
        self._sweeper: asyncio.TimerHandle | None = None

    # -- per request -------------------------------------------------------------------------
    def count_error(self, e: errors.GatewayError, client: str) -> None:
        log.info("refused request from %s: %s (%s)", client, e.code, e)

    def _tick_date(self) -> None:
        self.date_hdr = b"Date: " + formatdate(usegmt=True).encode() + b"\r\n"
        self.wall_offset = time.time() - self.loop.time()

    # -- config ------------------------------------------------------------------------------
    async def apply(self, revision: int, doc: Any) -> Compiled:
        """Compile a whole document and swap it in.  Compilation runs in a thread so a large
        config does not stall the requests this worker is serving."""
        async with self._apply_lock:
            t0 = time.perf_counter()
            model = ConfigModel(self.settings.router, self.node, self.alpns)
            compiled = await asyncio.to_thread(_load_model, model, doc)
            self.model = model
            runtimes = self.runtimes.reconcile(compiled.plans)
            self._swap(revision, compiled, runtimes, t0, "")
            # The snapshot is long-lived and acyclic (freed by reference counting when it is
            # replaced): move it out of the collector's generations so that periodic full
            # collections do not re-walk a large routing table while requests wait.  Only
            # here, not after a delta: freezing takes every tracked object, also the
            # connections and exchanges alive at that moment, and once they end they are
            # cyclic garbage the collector never sees (a freeze per change grew the soak
            # test's workers by ~60 KiB a change).  A later whole document (a file edit, a
            # plugin reload) first thaws and collects what the previous freeze took.
            if gc.get_freeze_count():
                gc.unfreeze()
                gc.collect()
            gc.freeze()
            return compiled

    async def apply_delta(self, revision: int, put: list[Any], dels: list[str]) -> Compiled:
        """Apply changed keys in place, on the loop: only what they reach is recompiled
        (one route at 100k routes: well under a millisecond), and no request ever sees a
        half-applied change because nothing awaits in between."""
        async with self._apply_lock:
            t0 = time.perf_counter()
            compiled, plans = self.model.apply([(k, v) for k, v in put], dels)
            runtimes = self.runtimes.update(plans) if plans else self.runtimes.by_key
            self._swap(revision, compiled, runtimes, t0, f" ({len(put)} put, {len(dels)} "
                                                         "deleted)")
            return compiled

    def _swap(self, revision: int, compiled: Compiled, runtimes: Any, t0: float,
              what: str) -> None:
        if self.index == 0:          # one worker reports, so each rejection is logged once
            for r in compiled.rejected:
                clog.error("config revision %d: rejected %s", revision, r)
        old = self.holder.swap(Snapshot(revision, compiled, runtimes))
        del old
        self.apply_ms = (time.perf_counter() - t0) * 1000
        log.info("worker %d: config revision %d live%s: %d routes, %d rejected, %.1f ms",
                 self.index, revision, what, len(compiled.routes), len(compiled.rejected),
                 self.apply_ms)

    def explain(self, query: dict[str, str]) -> tuple[int, Any]:
        from ..config.explain import explain_reply
        m = self.model
        return explain_reply(m.objs["routes"], m.objs["services"], m.compiled,
                             self.settings.router, query)

    def status(self) -> dict[str, int]:
        """This worker's share of the node status (``/apisix/status``), counted from the
        live connections when asked: the request path only pays two integer additions per
        connection."""
        states = [0, 0, 0]
        total = self.closed_requests
        for c in self.connections:
            states[c.status()] += 1
            total += c.requests
        return {"accepted": self.accepted, "handled": self.accepted,
                "active": len(self.connections), "total": total, "waiting": states[0],
                "reading": states[1], "writing": states[2]}

    # -- lifecycle ---------------------------------------------------------------------------
    def _connection(self) -> H1Connection:
        return H1Connection(self, "http")

    def _h2c_connection(self) -> H1Connection:
        """A connection on a listener with ``enable_http2``: HTTP/1.1 until its first bytes
        are the HTTP/2 preface or a request asks for ``Upgrade: h2c`` (``server/h2.py``)."""
        return H1Connection(self, "http", True)

    def _tls_connection(self) -> H1Connection:
        return H1Connection(self, "https")

    def alpn_h2(self, conn: H1Connection) -> None:
        """ALPN chose "h2" on a listener with ``enable_http2`` (its connection just made):
        HTTP/2 (``server/h2.py``) takes the connection over."""
        take_over(conn, b"")

    def _tls_context(self, h2: bool) -> ssl.SSLContext:
        """The context of this worker's TLS listeners with (or without) HTTP/2 in ALPN:
        each handshake looks its certificate up in the current snapshot's SNI table."""
        ctx = self._tls_ctx.get(h2)
        if ctx is None:
            holder = self.holder
            ctx = self._tls_ctx[h2] = server_context(
                self.settings.tls, H2 if h2 else HTTP11, lambda: holder.current.compiled.tls)
        return ctx

    async def serve(self, socks: list[socket.socket]) -> None:
        tls_listen = self.settings.tls_listen
        tls_ports = {port: h2 for (_, port), h2 in tls_listen.items()}
        h2c = self.settings.h2c_listen
        for s in socks:
            addr = s.getsockname()[:2] if s.family != socket.AF_UNIX else ("", 0)
            if self.stream is not None and (s.type == socket.SOCK_DGRAM or
                                            addr in self.settings.stream_tcp):
                await self._serve_stream(s, addr)
                continue
            h2 = tls_listen.get(addr, tls_ports.get(addr[1])) if tls_listen else None
            if h2 is None:
                factory = self._h2c_connection if h2c and (
                    (addr[0], addr[1]) in h2c or any(p == addr[1] and ip in ("0.0.0.0", "::")
                                                     for ip, p in h2c)) else self._connection
                srv = await self.loop.create_server(factory, sock=s,
                                                    backlog=self.settings.backlog)
            else:
                srv = await self.loop.create_server(
                    self._tls_connection, sock=s, backlog=self.settings.backlog,
                    ssl=self._tls_context(h2),
                    ssl_handshake_timeout=self.settings.client_header_timeout or None)
            self.servers.append(srv)
        self._sweep()

    async def _serve_stream(self, s: socket.socket, addr: tuple[str, int]) -> None:
        """A stream proxy listener (``apisix.stream_proxy``): TCP, TLS-terminating TCP
        (``tls: true``) or UDP."""
        stream = self.stream
        assert stream is not None
        if s.type == socket.SOCK_DGRAM:
            transport, listener = await self.loop.create_datagram_endpoint(
                stream.udp_factory(), sock=s)
            self.udp.append((transport, listener))
            return
        tls = self.settings.stream_tcp[addr]
        srv = await self.loop.create_server(
            stream.tcp_factory(tls), sock=s, backlog=self.settings.backlog,
            ssl=self._tls_context(False) if tls else None,
            ssl_handshake_timeout=(self.settings.client_header_timeout or None) if tls
            else None)
        self.servers.append(srv)

    def _sweep(self) -> None:
        self._tick_date()
        self.runtimes.sweep()
        from ..ratelimit.local import sweep as sweep_counters
        sweep_counters()              # limit-conn: counts of dead workers stop counting
        try:
            metrics.flush()               # prometheus: this second's counts node-wide
        except Exception:
            log.exception("metrics flush failed")
        self._sweeper = self.loop.call_later(1.0, self._sweep)

    async def drain(self, deadline: float) -> None:
        """Stop accepting; finish in-flight requests until ``deadline`` (loop time)."""
        self.draining = True
        for srv in self.servers:
            srv.close()
        # UDP: the slot's socket stays with the worker replacing this one; sessions here end
        # now (a datagram has no connection to finish, the client asks again)
        for transport, listener in self.udp:
            listener.close()
            transport.close()
        for c in list(self.connections):
            c.drain()
        stream = self.stream
        while (self.connections or (stream is not None and stream.sessions)) and \
                self.loop.time() < deadline:
            await asyncio.sleep(0.05)
            for c in list(self.connections):
                c.drain()
        for c in list(self.connections):
            c.abort()
        if stream is not None:
            stream.abort_all()
        if self._sweeper is not None:
            self._sweeper.cancel()
        self.runtimes.close()
        if self.access_log is not None:
            self.access_log.close()
        await self._flush_log_sinks(deadline)
        try:
            metrics.flush()               # the last counts stay in the node's store
        except Exception:
            log.exception("metrics flush failed")

    async def _flush_log_sinks(self, deadline: float) -> None:
        """Log sinks' buffered batches go out before the worker exits (bounded by the
        drain deadline, at least a second)."""
        from ..observe import batch
        procs = [p for _, p in batch.all_processors()]
        if not procs:
            return
        wait = max(deadline - self.loop.time(), 1.0)
        try:
            await asyncio.wait_for(asyncio.gather(*(p.flush() for p in procs),
                                                  return_exceptions=True), wait)
        except TimeoutError:
            log.warning("worker %d: log sinks not flushed within %.1f s; entries lost",
                        self.index, wait)


# ------------------------------------------------------------------ control channel
def encode_msg(msg: Any) -> bytes:
    # JSON, not msgpack: msgspec decodes a large config document about twice as fast from JSON
    body = msgspec.json.encode(msg)
    return struct.pack(">I", len(body)) + body


async def read_msg(reader: asyncio.StreamReader) -> Any:
    hdr = await reader.readexactly(4)
    (n,) = struct.unpack(">I", hdr)
    return msgspec.json.decode(await reader.readexactly(n))


class MasterLink:
    """Questions this worker asks its master on the control channel, answered with
    ``{"t": "reply", "seq", "body"}`` (a plugin endpoint that needs the node's view:
    prometheus' metrics served through ``public-api``)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.seq = 0
        self.asks: dict[int, asyncio.Future[Any]] = {}
        #: the master died: questions fail at once (an orphaned worker, ``takeover.py``)
        self.gone = False

    def lost(self) -> None:
        self.gone = True
        for fut in self.asks.values():
            if not fut.done():
                fut.set_exception(ConnectionError("the master is gone"))

    async def ask(self, t: str, timeout: float) -> Any:
        if self.gone:
            raise ConnectionError("the master is gone")
        self.seq += 1
        seq = self.seq
        fut = asyncio.get_running_loop().create_future()
        self.asks[seq] = fut
        self.writer.write(encode_msg({"t": t, "seq": seq}))
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self.asks.pop(seq, None)

    def answered(self, msg: dict[str, Any]) -> None:
        fut = self.asks.get(msg.get("seq"))  # type: ignore[arg-type]
        if fut is not None and not fut.done():
            fut.set_result(msg.get("body"))


async def worker_main(node: Node, index: int, listen_fds: list[int], ctl_fd: int) -> int:
    loop = asyncio.get_running_loop()
    w = Worker(node, loop, index)
    settings = w.settings
    ctl = socket.socket(fileno=ctl_fd)
    reader, writer = await asyncio.open_connection(sock=ctl, limit=1 << 30)
    link = node.master = MasterLink(writer)
    install_node(node)              # what the plugins of this process see as pdk.node()
    # the metrics store's size, should this worker be the first to count anything (a limit
    # plugin's Redis outage may come before the prometheus plugin's first prepare)
    metrics.local().max_values = metrics.max_values(node.plugin_attr("prometheus"))
    socks = [socket.socket(fileno=fd) for fd in listen_fds]
    from ..ratelimit.local import ENV, hold
    if os.environ.get(ENV):
        hold(os.environ[ENV])    # the node's shared memory stays while this process lives
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    def reopen_logs() -> None:                # SIGUSR1 (log rotation), forwarded by the master
        from ..logs import setup_logging
        setup_logging(settings, f"worker {index}")
        if w.access_log is not None:
            w.access_log.reopen()
        if w.stream is not None and w.stream.access_log is not None:
            w.stream.access_log.reopen()

    loop.add_signal_handler(signal.SIGUSR1, reopen_logs)

    # passive health reports go to the master, which aggregates them for every worker: one
    # message per loop iteration at most, whatever the number of reports
    reports: list[tuple[str, str, int]] = []

    def flush_reports() -> None:
        if link.gone:
            reports.clear()
        elif reports:
            writer.write(encode_msg({"t": "hreport", "r": reports[:]}))
            reports.clear()

    def report(key: str, addr: str, kind: int) -> None:
        if not reports:
            loop.call_soon(flush_reports)
        reports.append((key, addr, kind))

    w.runtimes.report = report

    async def control() -> None:
        served = False
        while True:
            try:
                msg = await read_msg(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                if not served:
                    log.warning("worker %d: master went away before any config; stopping",
                                index)
                    stop.set()
                    return
                # an orphan: serve on until a new master takes over (or SIGTERM)
                link.lost()
                log.warning("worker %d: master went away; serving config revision %d until "
                            "a new master takes over or SIGTERM", index,
                            w.holder.current.revision)
                from .takeover import await_new_master
                await await_new_master(
                    settings.pid_file,
                    lambda: {"pid": os.getpid(), "slot": index, "shm": os.environ.get(ENV, ""),
                             "rev": w.holder.current.revision},
                    listen_fds, stop.set)
                return
            t = msg.get("t")
            if t in ("config", "delta"):
                try:
                    if t == "config":
                        await w.apply(msg["rev"], msg["doc"])
                    else:
                        await w.apply_delta(msg["rev"], msg["put"], msg["del"])
                except Exception:
                    log.exception("worker %d: config revision %s failed to apply; "
                                  "keeping revision %d", index, msg.get("rev"),
                                  w.holder.current.revision)
                    if t == "delta":     # the model may be off now: start again from whole
                        writer.write(encode_msg({"t": "resync"}))
                if not served:
                    await w.serve(socks)
                    served = True
                writer.write(encode_msg({"t": "applied", "rev": msg["rev"],
                                         "pid": os.getpid(),
                                         "rejected": len(w.holder.current.compiled.rejected)}))
            elif t == "plugins":            # plugin reload: the full config follows
                try:
                    fresh = Node.load(settings.path, settings.prefix, plugins=False)
                    assert fresh.settings is not None
                    node.plugins = load_plugins(fresh.settings, reload=True)
                except Exception:
                    log.exception("worker %d: plugin reload failed; keeping the plugins",
                                  index)
            elif t == "explain":
                try:
                    status, body = w.explain(msg["query"])
                except Exception:
                    log.exception("worker %d: explain failed", index)
                    status, body = 500, {"error_msg": "internal error"}
                writer.write(encode_msg({"t": "answer", "seq": msg["seq"], "status": status,
                                         "body": body}))
            elif t == "metrics":            # a scrape: counts into the shared store first
                try:
                    metrics.flush()
                except Exception:
                    log.exception("worker %d: metrics flush failed", index)
                writer.write(encode_msg({"t": "answer", "seq": msg["seq"], "status": 200,
                                         "body": {"status": w.status()}}))
            elif t == "status":             # node status: this worker's connection counts
                writer.write(encode_msg({"t": "answer", "seq": msg["seq"], "status": 200,
                                         "body": w.status()}))
            elif t == "health":             # a node's health changed (checked by the master)
                w.runtimes.set_health(msg["key"], msg["addr"], msg.get("state"))
            elif t == "health_all":         # every known node state (this worker's start)
                w.runtimes.reset_health(msg["table"])
            elif t == "nodes":              # a discovered service's nodes (the master's)
                w.runtimes.set_discovered(msg["key"], msg["nodes"])
            elif t == "nodes_all":          # every discovered service (this worker's start)
                for key, nodes in msg["table"].items():
                    w.runtimes.set_discovered(key, nodes)
            elif t == "reply":              # the master's answer to a worker's question
                link.answered(msg)
            elif t == "stop":
                stop.set()

    task = loop.create_task(control())
    await stop.wait()
    task.cancel()
    await w.drain(loop.time() + settings.shutdown_timeout)
    writer.close()
    return 0


def run_worker(node: Node, index: int, listen_fds: list[int], ctl_fd: int) -> None:
    import uvloop

    from ..logs import setup_logging
    assert node.settings is not None
    setup_logging(node.settings, f"worker {index}")
    profile = os.environ.get("PYLON_PROFILE")     # performance work: cProfile a worker
    if profile:
        import cProfile
        prof = cProfile.Profile()
        prof.enable()
    try:
        rc = uvloop.run(worker_main(node, index, listen_fds, ctl_fd))
    except KeyboardInterrupt:  # pragma: no cover
        rc = 0
    if profile:
        prof.disable()
        prof.dump_stats(f"{profile}.{os.getpid()}")
    sys.exit(rc)
