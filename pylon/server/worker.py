"""A worker process: serve the listeners it was handed with the config the master sends.

The worker receives config documents from the master on its control socket, compiles each
into a new snapshot (off the event loop's critical path, in a thread), reconciles upstream
runtimes and swaps the snapshot in.  On SIGTERM it stops accepting, lets in-flight requests
finish (closing keep-alive connections as they go idle) and exits at the deadline.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import struct
import sys
import time
from email.utils import formatdate
from typing import Any

import msgspec

from .. import __version__, errors
from ..config.compiler import Compiled, compile_resources
from ..config.snapshot import Snapshot, SnapshotHolder
from ..model.validate import parse_resources
from ..observe.access_log import AccessLog
from ..settings import Settings
from ..upstream.runtime import Runtimes
from ..wire.h1 import Limits
from .h1 import H1Connection

log = logging.getLogger("pylon.worker")
clog = logging.getLogger("pylon.config")


class Timeouts:
    __slots__ = ("client_header", "client_body", "keepalive", "send")

    def __init__(self, s: Settings) -> None:
        self.client_header = s.client_header_timeout
        self.client_body = s.client_body_timeout
        self.keepalive = s.keepalive_timeout
        self.send = s.send_timeout


def compile_doc(doc: Any, router: str) -> Compiled:
    # Compiling allocates hundreds of thousands of objects at 100k routes; letting the cyclic
    # GC walk them while they are being built costs more than the build itself.
    enabled = gc.isenabled()
    gc.disable()
    try:
        res, rejected = parse_resources(doc)
        compiled = compile_resources(res, router)
        compiled.rejected[:0] = rejected
        return compiled
    finally:
        if enabled:
            gc.enable()


class Worker:
    def __init__(self, settings: Settings, loop: asyncio.AbstractEventLoop, index: int = 0) -> None:
        self.settings = settings
        self.loop = loop
        self.index = index
        self.limits = Limits(settings.max_uri, settings.max_header_bytes, settings.max_headers,
                             settings.max_body)
        self.timeouts = Timeouts(settings)
        self.connections: set[H1Connection] = set()
        self.draining = False
        self.runtimes = Runtimes(loop)
        empty = compile_resources(parse_resources({})[0], settings.router)
        self.holder = SnapshotHolder(Snapshot(0, empty, {}))
        self.server_header = f"Server: Pylon/{__version__}\r\n".encode()
        #: "Date: ...\r\n", refreshed every second by the sweep timer (not per response)
        self.date_hdr = b""
        self.wall_offset = 0.0
        self._tick_date()
        self.access_log = AccessLog(loop, settings.access_log, settings.access_log_format) \
            if settings.access_log else None
        self.servers: list[asyncio.base_events.Server] = []
        self.requests = 0
        self._apply_lock = asyncio.Lock()
        self._sweeper: asyncio.TimerHandle | None = None

    # -- per request -------------------------------------------------------------------------
    def finished(self, exchange: Any, bytes_out: int) -> None:
        self.requests += 1
        if self.access_log is not None:
            self.access_log.add(exchange, bytes_out)

    def count_error(self, e: errors.GatewayError, client: str) -> None:
        log.info("refused request from %s: %s (%s)", client, e.code, e)

    def _tick_date(self) -> None:
        self.date_hdr = b"Date: " + formatdate(usegmt=True).encode() + b"\r\n"
        self.wall_offset = time.time() - self.loop.time()

    def date_header(self) -> bytes:
        return self.date_hdr

    # -- config ------------------------------------------------------------------------------
    async def apply(self, revision: int, doc: Any) -> Compiled:
        """Compile ``doc`` and swap it in.  Compilation runs in a thread so a large config
        does not stall the requests this worker is serving."""
        async with self._apply_lock:
            t0 = time.perf_counter()
            compiled = await asyncio.to_thread(compile_doc, doc, self.settings.router)
            if self.index == 0:          # one worker reports, so each rejection is logged once
                for r in compiled.rejected:
                    clog.error("config revision %d: rejected %s", revision, r)
            runtimes = self.runtimes.reconcile(compiled.plans)
            old = self.holder.swap(Snapshot(revision, compiled, runtimes))
            del old
            # The snapshot is long-lived and acyclic (freed by reference counting when it is
            # replaced): move it out of the collector's generations so that periodic full
            # collections do not re-walk a large routing table while requests wait.
            gc.freeze()
            log.info("worker %d: config revision %d live: %d routes, %d rejected, %.0f ms",
                     self.index, revision, len(compiled.routes), len(compiled.rejected),
                     (time.perf_counter() - t0) * 1000)
            return compiled

    # -- lifecycle ---------------------------------------------------------------------------
    async def serve(self, socks: list[socket.socket]) -> None:
        for s in socks:
            scheme = "http"
            srv = await self.loop.create_server(lambda sch=scheme: H1Connection(self, sch),
                                                sock=s, backlog=self.settings.backlog)
            self.servers.append(srv)
        self._sweep()

    def _sweep(self) -> None:
        self._tick_date()
        self.runtimes.sweep()
        self._sweeper = self.loop.call_later(1.0, self._sweep)

    async def drain(self, deadline: float) -> None:
        """Stop accepting; finish in-flight requests until ``deadline`` (loop time)."""
        self.draining = True
        for srv in self.servers:
            srv.close()
        for c in list(self.connections):
            c.drain()
        while self.connections and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
            for c in list(self.connections):
                c.drain()
        for c in list(self.connections):
            c.abort()
        if self._sweeper is not None:
            self._sweeper.cancel()
        self.runtimes.close()
        if self.access_log is not None:
            self.access_log.close()


# ------------------------------------------------------------------ control channel
def encode_msg(msg: Any) -> bytes:
    # JSON, not msgpack: msgspec decodes a large config document about twice as fast from JSON
    body = msgspec.json.encode(msg)
    return struct.pack(">I", len(body)) + body


async def read_msg(reader: asyncio.StreamReader) -> Any:
    hdr = await reader.readexactly(4)
    (n,) = struct.unpack(">I", hdr)
    return msgspec.json.decode(await reader.readexactly(n))


async def worker_main(settings: Settings, index: int, listen_fds: list[int], ctl_fd: int) -> int:
    loop = asyncio.get_running_loop()
    w = Worker(settings, loop, index)
    ctl = socket.socket(fileno=ctl_fd)
    reader, writer = await asyncio.open_connection(sock=ctl, limit=1 << 30)
    socks = [socket.socket(fileno=fd) for fd in listen_fds]
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    def reopen_logs() -> None:                # SIGUSR1 (log rotation), forwarded by the master
        from ..logs import setup_logging
        setup_logging(settings, f"worker {index}")
        if w.access_log is not None:
            w.access_log.reopen()

    loop.add_signal_handler(signal.SIGUSR1, reopen_logs)

    async def control() -> None:
        served = False
        while True:
            try:
                msg = await read_msg(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                log.warning("worker %d: master went away; stopping", index)
                stop.set()
                return
            if msg.get("t") == "config":
                try:
                    await w.apply(msg["rev"], msg["doc"])
                except Exception:
                    log.exception("worker %d: config revision %s failed to apply; "
                                  "keeping revision %d", index, msg.get("rev"),
                                  w.holder.current.revision)
                if not served:
                    await w.serve(socks)
                    served = True
                writer.write(encode_msg({"t": "applied", "rev": msg["rev"],
                                         "pid": os.getpid()}))
            elif msg.get("t") == "stop":
                stop.set()

    task = loop.create_task(control())
    await stop.wait()
    task.cancel()
    await w.drain(loop.time() + settings.shutdown_timeout)
    writer.close()
    return 0


def run_worker(settings: Settings, index: int, listen_fds: list[int], ctl_fd: int) -> None:
    import uvloop

    from ..logs import setup_logging
    setup_logging(settings, f"worker {index}")
    profile = os.environ.get("PYLON_PROFILE")     # performance work: cProfile a worker
    if profile:
        import cProfile
        prof = cProfile.Profile()
        prof.enable()
    try:
        rc = uvloop.run(worker_main(settings, index, listen_fds, ctl_fd))
    except KeyboardInterrupt:  # pragma: no cover
        rc = 0
    if profile:
        prof.disable()
        prof.dump_stats(f"{profile}.{os.getpid()}")
    sys.exit(rc)
