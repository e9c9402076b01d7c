"""The master process: listeners, workers, config distribution, signals.

* Listening sockets are created here, one per (listen address, worker slot), each with
  SO_REUSEPORT so the kernel spreads connections over the slots.  The master keeps every
  socket open; a worker inherits its slot's sockets.  Because the socket outlives any one
  worker, connections queued on it are not lost when its worker dies or is replaced — the next
  worker accepts them (the classic SO_REUSEPORT reload loss does not happen).
* One config watch per node (``config/hub.py``): the master holds the store (file or etcd)
  and its state, sends a new worker the whole document once and then every worker the keys
  that changed; workers compile and swap (worker 0 logs rejected objects).  A store that
  fails keeps the last good config serving.
* Upstream health checks run here, once per node whatever the worker count
  (``upstream/checker.py``): active probes, and the workers' passive reports aggregated; every
  status change goes to every worker (``{"t": "health", ...}``), a new worker gets the whole
  table.  The Control API (``/v1/healthcheck``, ``server/control.py``) is served here too.
* Service discovery runs here too, once per node (``pylon/discovery/``): one watch per
  discovered service; a node list that changes goes to every worker (``{"t": "nodes"}``),
  which swaps it into the upstream runtimes without a compile; a new worker gets every
  list (``nodes_all``) before its config.
* Signals: SIGHUP re-reads everything and replaces workers one slot at a time (the new worker
  is serving before the old one drains); SIGTERM/SIGINT drain workers up to
  ``worker_shutdown_timeout`` and exit; SIGUSR1 reopens access logs.  A worker that dies is
  replaced, with back-off if it keeps dying.
* A master killed does not stop the node: its workers serve on as orphans; a master started
  again on the node adopts their listening sockets, and has them drain once its own workers
  serve (``server/takeover.py``, docs/operations.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import site
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from .. import _native
from ..config import loader
from ..config.hub import ConfigHub, make_hub
from ..config.store import Event
from ..config.yaml_store import YamlStore
from ..discovery.manager import DiscoveryManager
from ..errors import ConfigError
from ..logs import setup_logging
from ..node import Node, load_plugins
from ..upstream.checker import HealthManager
from ..upstream.health import UP_STATES
from ..upstream.runtime import UpstreamPlan
from .control import STATUS_ITEMS, ControlApp, changed_plans, checked_plans, node_id, start_control
from .takeover import Orphan, find_orphans
from .worker import encode_msg, read_msg

log = logging.getLogger("pylon.master")
#: the directory holding the ``pylon`` package this master runs, when it is a source tree
#: (workers import it from there); None when the package is installed in site-packages,
#: which a worker finds anyway (putting site-packages on PYTHONPATH would rank it above the
#: standard library)
_PACKAGE_ROOT: str | None = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _PACKAGE_ROOT in {os.path.abspath(p) for p in
                     (*site.getsitepackages(), site.getusersitepackages())}:
    _PACKAGE_ROOT = None
clog = logging.getLogger("pylon.config")


@dataclass(eq=False)                      # identity semantics: kept in sets
class WorkerProc:
    slot: int
    proc: asyncio.subprocess.Process
    ctl: socket.socket
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.StreamReader | None = None
    applied: int = -1
    #: objects the worker's last compile kept out (rejected)
    rejected: int = 0
    retiring: bool = False
    ready: asyncio.Event = field(default_factory=asyncio.Event)


def bind_socket(host: str, port: int, backlog: int, kind: int = socket.SOCK_STREAM
                ) -> socket.socket:
    """A slot's listening socket; ``kind`` SOCK_DGRAM: a stream proxy UDP listener
    (``apisix.stream_proxy.udp``) -- per slot too, the kernel hashes a client's datagrams
    to one slot, so its session stays in one worker."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((host, port))
    if kind == socket.SOCK_STREAM:
        s.listen(backlog)
    # not inheritable: a worker gets its own slot's sockets (``pass_fds``) and no other, so
    # a slot's socket is never held open by a worker that does not accept from it
    # (uvloop's spawn hands every inheritable descriptor to the child)
    return s


def _is_loopback(host: str) -> bool:
    import ipaddress
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def load_standalone(path: str) -> Any:
    with open(path, "rb") as f:
        return loader.parse_standalone(f.read(), path)     # YAML: must end with #END


#: how long a starting master waits for the registries' first answers (service discovery)
DISCOVERY_START_WAIT = 3.0


class Master:
    def __init__(self, node: Node, config_path: str, workers: int | None,
                 orphans: list[Orphan] | None = None) -> None:
        settings = node.settings
        assert settings is not None, "a master runs a node with settings"
        #: settings, plugins, keyring: what the Admin API and the exporter read (a reload
        #: changes them in place, so holders see the new ones)
        self.node = node
        self.settings = settings
        #: workers of a master that died, taken over (``server/takeover.py``): their
        #: listening sockets become this master's slots; they drain once ours serve
        self.orphans = orphans or []
        self._adopted: dict[tuple[str, int], list[socket.socket]] = {}
        self._retiring: asyncio.Task[None] | None = None
        for o in self.orphans:
            for sk in o.socks:
                host, port = sk.getsockname()[:2]
                self._adopted.setdefault((host, port), []).append(sk)
        self.hub = make_hub(settings)
        self.hub.subscribers.append(self.on_config)
        self.admin_server: asyncio.base_events.Server | None = None
        self.control_server: asyncio.base_events.Server | None = None
        self.export_server: asyncio.base_events.Server | None = None
        #: renders the metrics a worker asks for (``scrape``), made at the first question
        self._scraper: Any = None
        #: workers that exited unexpectedly and were replaced (a metric)
        self.restarts = 0
        #: upstream health checks (created in ``run``, inside the loop)
        self.health: HealthManager | None = None
        #: service discovery: the registries' watches (created in ``run``)
        self.discovery: DiscoveryManager | None = None
        self.exit_code = 0
        self.config_path = config_path
        self.worker_override = workers
        self.nworkers = workers or settings.workers
        self.slots: list[list[socket.socket]] = []
        self.workers: dict[int, WorkerProc] = {}
        self._doc_msg: bytes | None = None
        self._asks: dict[int, asyncio.Future[Any]] = {}
        self._ask_seq = 0
        self.stopping = False
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.crashes: dict[int, list[float]] = {}
        #: workers spawned but not yet in ``workers`` (a rolling replacement waiting for
        #: readiness); they get config broadcasts too so none starts on a stale revision
        self.starting: set[WorkerProc] = set()
        self._reloading = False
        self._reload_again = False
        #: ``/v1/server_info``: when this node started (epoch seconds)
        self.boot_time = int(time.time())

    # -- config ------------------------------------------------------------------------------
    def config_msg(self) -> bytes:
        """The whole current configuration as a control message, encoded once for every
        worker that needs it (a new worker; every worker after an external file edit)."""
        if self._doc_msg is None:
            store = self.hub.store
            doc = store.doc if isinstance(store, YamlStore) else self.hub.state.to_doc()
            self._doc_msg = encode_msg({"t": "config", "rev": self.hub.state.revision,
                                        "doc": doc})
        return self._doc_msg

    def _send(self, msg: bytes) -> None:
        for w in [*self.workers.values(), *self.starting]:
            if w.writer is not None and not w.retiring:
                w.writer.write(msg)

    def broadcast(self) -> None:
        self._send(self.config_msg())

    def on_config(self, events: list[Event], revision: int, whole: bool) -> None:
        """Hub subscriber: forward a change to every worker (a delta, or everything after
        an edit of the file, so rejections are reported with their place in the file)."""
        self._doc_msg = None
        if whole:
            self.broadcast()
            self._health_resync()
            return
        put = [[e.key, e.value] for e in events if e.value is not None]
        dels = [e.key for e in events if e.value is None]
        self._send(encode_msg({"t": "delta", "rev": revision, "put": put, "del": dels}))
        if self.discovery is not None:
            self.discovery.update(changed_plans(events, "service_name"))
        if self.health is not None:          # after the delta: workers know the upstream
            self.health.update(self._with_found(changed_plans(events)))

    def _use_hub(self, hub: ConfigHub) -> None:
        self.hub = hub
        hub.subscribers.append(self.on_config)
        self._doc_msg = None
        self._health_resync()

    # -- health checks -----------------------------------------------------------------------
    def _health_resync(self) -> None:
        """Follow the whole configuration (start, reload, external edit of the file): node
        states of upstreams and nodes that stay are kept."""
        if self.discovery is not None:
            self.discovery.replace(checked_plans(self.hub.state.items(), "service_name"))
        if self.health is not None:
            found = self._with_found(dict(checked_plans(self.hub.state.items())))
            self.health.replace({k: p for k, p in found.items() if p is not None})

    def _with_found(self, plans: dict[str, UpstreamPlan | None]
                    ) -> dict[str, UpstreamPlan | None]:
        """Discovered upstreams' plans with the nodes their registry gave (health checks)."""
        return self.discovery.effective(plans) if self.discovery is not None else plans

    # -- service discovery -----------------------------------------------------------------
    def _nodes_found(self, key: str, nodes: list[Any]) -> None:
        """A watched service's node list changed: to every worker, then to the checkers."""
        self._send(encode_msg({"t": "nodes", "key": key, "nodes": nodes}))
        if self.health is not None and self.discovery is not None:
            users = {k: p for k, p in self.discovery.users_of(key).items()
                     if p.checks is not None}
            if users:
                self.health.update(self._with_found(dict(users)))

    def nodes_table_msg(self) -> bytes:
        return encode_msg({"t": "nodes_all", "table": self.discovery.table()
                           if self.discovery is not None else {}})

    def _health_changed(self, key: str, addr: str, state: str | None) -> None:
        self._send(encode_msg({"t": "health", "key": key, "addr": addr,
                               "healthy": state is None or state in UP_STATES,
                               "state": state}))

    def health_table_msg(self) -> bytes:
        return encode_msg({"t": "health_all",
                           "table": self.health.table() if self.health is not None else []})

    async def start_control(self) -> None:
        """The Control API (``apisix.control``); a port in use is logged, not fatal."""
        host, port = self.settings.control_listen
        if not _is_loopback(host):
            log.warning("Control API on %s: it should never listen to public traffic", host)
        app = ControlApp(lambda: self.health, lambda key: self.hub.state.get(key) is not None,
                         self.settings.etcd.prefix, state=lambda: self.hub.state,
                         plugins=self._plugin_table, node_status=self.node_status,
                         node_id=node_id(self.settings.prefix), boot_time=self.boot_time,
                         store_kind=type(self.hub.store).__name__,
                         discovery=lambda: self.discovery,
                         default_cert=lambda: self.settings.tls.cert,
                         stream_plugins=lambda: self.node.plugins.table("stream")
                         if self.settings.proxy_mode != "http" else {})
        try:
            self.control_server = await start_control(self.loop, app, host, port,
                                                      self.settings.control_limits)
        except OSError as e:
            log.error("Control API not started on %s:%d: %s", host, port, e)
            return
        log.info("Control API listening on %s:%d", host, port)

    def _plugin_table(self) -> dict[str, dict[str, Any]]:
        """The loaded plugins as the Control API lists them (read at each call: a plugin
        reload swaps ``node.plugins``)."""
        return self.node.plugins.table()

    async def start_admin(self) -> None:
        """Serve the Admin API from the master: one writer per node, reading what it serves."""
        from ..admin import AdminApp, parse_allow, parse_keys, start_admin
        from ..admin.node_key import announce, generate_key, store_key

        s = self.settings
        host, port = s.admin_listen
        rows = s.admin_keys
        if not rows and s.admin_key_required:
            key = generate_key()
            store_key(self.config_path, key)
            announce(key, self.config_path)
            rows = [{"name": "admin", "key": key, "role": "admin"}]
        elif not rows and not _is_loopback(host):
            raise ConfigError(f"admin_listen {host} is not loopback and no admin_key is set",
                              "deployment.admin")

        app = AdminApp(self.hub, parse_keys(rows), parse_allow(s.allow_admin),
                       key_required=s.admin_key_required, audit_path=s.admin_audit_log,
                       explain=self.explain, node=self.node, router_kind=s.router,
                       reload_plugins=self.reload_plugins, viewer_secrets=s.admin_viewer_secrets)
        handler: Any = app
        if s.admin_ui:                  # the dashboard on the same port (docs/dashboard.md)
            from ..admin.ui import UiApp
            control = ControlApp(lambda: self.health,
                                 lambda key: self.hub.state.get(key) is not None,
                                 self.settings.etcd.prefix)
            handler = UiApp(app, s.admin_ui_session_timeout, metrics=self.metrics_text,
                            health=lambda: control.handle("GET", "/v1/healthcheck", "", {},
                                                          b""))
        self.admin_server = await start_admin(self.loop, handler, host, port, s.admin_limits)
        log.warning("Admin API listening on %s:%d%s", host, port,
                    f" (dashboard: http://{host}:{port}/ui/)" if s.admin_ui else "")

    async def reload_plugins(self) -> None:
        """``PUT /apisix/admin/plugins/reload``: re-read the node config's ``plugins`` list
        and the plugin code, here and in every worker; the workers then recompile the
        current configuration against it and swap (requests in flight finish on the old
        snapshot).  A plugin that fails to load refuses the reload: the running set stays."""
        fresh = Node.load(self.config_path, self.settings.prefix, plugins=False)
        assert fresh.settings is not None
        reg = await asyncio.to_thread(load_plugins, fresh.settings, reload=True)
        if reg.errors:
            raise RuntimeError("; ".join(reg.errors))
        self.node.plugins = reg
        log.warning("plugins reloaded: %d loaded", len(reg.plugins))
        self._doc_msg = None
        self._send(encode_msg({"t": "plugins"}))
        self.broadcast()

    async def explain(self, query: dict[str, str]) -> tuple[int, Any]:
        """Ask a live worker (it holds the compiled routes) which route a request matches."""
        w = next((w for w in self.workers.values() if w.writer is not None and w.ready.is_set()
                  and not w.retiring), None)
        if w is None:
            return 503, {"error_msg": "no worker is serving"}
        self._ask_seq += 1
        seq = self._ask_seq
        fut = self.loop.create_future()
        self._asks[seq] = fut
        assert w.writer is not None
        w.writer.write(encode_msg({"t": "explain", "seq": seq, "query": query}))
        try:
            reply = await asyncio.wait_for(fut, 10.0)
        except TimeoutError:
            return 504, {"error_msg": "the worker did not answer in 10 s"}
        finally:
            self._asks.pop(seq, None)
        return reply["status"], reply["body"]

    async def ask_workers(self, t: str, timeout: float) -> list[dict[str, Any]]:
        """Ask every serving worker ``{"t": t}`` on its control channel; the answers'
        bodies of those that answered within ``timeout`` seconds."""
        ws = [w for w in self.workers.values() if w.writer is not None and w.ready.is_set()
              and not w.retiring]
        futs: list[asyncio.Future[Any]] = []
        seqs: list[int] = []
        for w in ws:
            self._ask_seq += 1
            fut = self.loop.create_future()
            self._asks[self._ask_seq] = fut
            seqs.append(self._ask_seq)
            futs.append(fut)
            assert w.writer is not None
            w.writer.write(encode_msg({"t": t, "seq": self._ask_seq}))
        try:
            if futs:
                await asyncio.wait(futs, timeout=timeout)
        finally:
            for seq in seqs:
                self._asks.pop(seq, None)
        return [f.result()["body"] for f in futs if f.done() and not f.cancelled()
                and f.exception() is None]

    async def node_status(self) -> tuple[int, Any]:
        """``/apisix/status``: every serving worker's connection counts, summed (each
        worker answers a ``status`` question on its control channel)."""
        if not any(w.writer is not None and w.ready.is_set() and not w.retiring
                   for w in self.workers.values()):
            return 503, {"error_msg": "no worker is serving"}
        serving = sum(1 for w in self.workers.values() if w.ready.is_set() and not w.retiring)
        replies = await self.ask_workers("status", 5.0)
        if len(replies) < serving:
            return 504, {"error_msg": "a worker did not answer in 5 s"}
        out = dict.fromkeys(STATUS_ITEMS, 0)
        for r in replies:
            for k in STATUS_ITEMS:
                out[k] += int(r.get(k, 0))
        return 200, out

    async def start_exporter(self) -> None:
        """The Prometheus export server, when the prometheus plugin is loaded (APISIX
        ``plugin_attr.prometheus``); a port in use is logged, not fatal."""
        from ..observe.metrics import export_settings, max_values
        from .exporter import ExportApp, start_exporter
        if "prometheus" not in self.node.plugins:
            return
        attr = self.node.plugin_attr("prometheus")
        try:
            on, host, port, uri, prefix = export_settings(attr)
        except ValueError as e:
            log.error("Prometheus export server not started: %s", e)
            return
        if not on:
            return
        try:
            app = ExportApp(self, uri, prefix, max_values(attr))
            self.export_server = await start_exporter(self.loop, app, host, port,
                                                      self.settings.control_limits)
        except OSError as e:
            log.error("Prometheus export server not started on %s:%d: %s", host, port, e)
            return
        log.info("Prometheus metrics on http://%s:%d%s", host, port, uri)

    def _scrape_app(self) -> Any:
        """The renderer of the node's metrics (an ``ExportApp``), made at the first use."""
        from ..observe.metrics import export_settings, max_values
        from .exporter import ExportApp
        if self._scraper is None:
            attr = self.node.plugin_attr("prometheus")
            _, _, _, uri, prefix = export_settings(attr)
            self._scraper = ExportApp(self, uri, prefix, max_values(attr))
        return self._scraper

    async def metrics_text(self) -> tuple[str, str] | None:
        """The dashboard's live view: the node's metrics now and their name prefix; None
        when the prometheus plugin is not loaded."""
        if "prometheus" not in self.node.plugins:
            return None
        app = self._scrape_app()
        return await app.scrape(), app.prefix

    async def _scrape(self, w: WorkerProc, seq: Any) -> None:
        """A worker's ``scrape`` question: the node's metrics as the export server renders
        them (prometheus' ``api()``, exposed with ``public-api``), answered as ``reply``."""
        text = None
        try:
            text = await self._scrape_app().scrape()
        except Exception:
            log.exception("metrics for worker %d failed", w.slot)
        if w.writer is not None and not w.writer.is_closing():
            w.writer.write(encode_msg({"t": "reply", "seq": seq, "body": text}))

    # -- workers -----------------------------------------------------------------------------
    def open_slots(self) -> None:
        s = self.settings
        while len(self.slots) < self.nworkers:
            self.slots.append([self._adopt(h, p) or bind_socket(h, p, s.backlog)
                               for h, p in s.listen] +
                              [self._adopt(h, p, socket.SOCK_DGRAM) or
                               bind_socket(h, p, 0, socket.SOCK_DGRAM)
                               for h, p in s.udp_listen])
        while len(self.slots) > self.nworkers:
            for sock in self.slots.pop():
                sock.close()
        # orphans' sockets beyond our slots: served too (by slot), so that what is queued
        # on them is accepted; those of addresses no longer listened to are closed
        extra = 0
        for addr, socks in self._adopted.items():
            for sock in socks:
                if self.slots and addr in (s.listen if sock.type == socket.SOCK_STREAM
                                           else s.udp_listen):
                    self.slots[extra % len(self.slots)].append(sock)
                    extra += 1
                else:
                    sock.close()
        self._adopted = {}

    def _adopt(self, host: str, port: int, kind: int = socket.SOCK_STREAM
               ) -> socket.socket | None:
        """A listening socket an orphaned worker handed over for this address, if any."""
        socks = self._adopted.get((host, port)) or []
        for i, sock in enumerate(socks):
            if sock.type == kind:
                return socks.pop(i)
        return None

    async def retire_orphans(self) -> None:
        """Our workers serve: the orphans we took over drain and exit, and so do any that
        turned up since (their sockets were not taken: closed with them)."""
        told = [o for o in self.orphans if o.drain()]
        late = await asyncio.to_thread(find_orphans, self.settings.pid_file,
                                       skip={o.pid for o in self.orphans})
        self.orphans = []
        for o in late:
            for sock in o.socks:
                sock.close()
            if o.drain():
                told.append(o)
        if not told:
            return
        wait = self.settings.shutdown_timeout + 5
        done = await asyncio.gather(*(o.gone(wait) for o in told))
        for o, ok in zip(told, done, strict=True):
            if ok:
                log.warning("orphaned worker pid %d drained and exited", o.pid)
            else:
                log.error("orphaned worker pid %d still running %.0f s after it was told "
                          "to drain", o.pid, wait)

    async def spawn(self, slot: int) -> WorkerProc:
        parent, child = socket.socketpair()
        fds = [sk.fileno() for sk in self.slots[slot]]
        # -P: the current directory stays off sys.path, so a folder named like a module the
        # worker imports (a "pylon" directory where the node was started) cannot shadow it;
        # the directory this master's package came from goes first instead (a source tree)
        cmd = [sys.executable, "-P", "-m", "pylon.cli", "_worker", "--prefix",
               self.settings.prefix,
               "-c", self.config_path, "--slot", str(slot),
               "--fds", ",".join(map(str, fds)), "--ctl", str(child.fileno())]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (_PACKAGE_ROOT,
                                                          env.get("PYTHONPATH"))))
        proc = await asyncio.create_subprocess_exec(*cmd, pass_fds=[*fds, child.fileno()],
                                                    env=env)
        child.close()
        w = WorkerProc(slot, proc, parent)
        w.reader, w.writer = await asyncio.open_connection(sock=parent)
        # node states first: the runtimes the config builds start with them, so the worker
        # never serves a request with a down node taken for a healthy one
        w.writer.write(self.health_table_msg())
        w.writer.write(self.nodes_table_msg())     # discovered nodes too, for the same reason
        w.writer.write(self.config_msg())
        self.loop.create_task(self._listen(w))
        self.loop.create_task(self._reap(w))
        log.info("worker %d started (pid %d)", slot, proc.pid)
        return w

    async def _listen(self, w: WorkerProc) -> None:
        assert w.reader is not None
        while True:
            try:
                msg = await read_msg(w.reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            t = msg.get("t")
            if t == "applied":
                w.applied = msg["rev"]
                w.rejected = int(msg.get("rejected", 0))
                w.ready.set()
            elif t == "resync" and w.writer is not None:
                w.writer.write(self.config_msg())
            elif t == "answer":
                fut = self._asks.get(msg.get("seq"))
                if fut is not None and not fut.done():
                    fut.set_result(msg)
            elif t == "scrape":         # a worker serves the metrics (public-api route)
                self.loop.create_task(self._scrape(w, msg.get("seq")))
            elif t == "hreport" and self.health is not None:    # passive health reports
                try:
                    for key, addr, kind in msg["r"]:
                        self.health.passive(key, addr, kind)
                except Exception:
                    log.exception("bad health report from worker %d", w.slot)

    async def _reap(self, w: WorkerProc) -> None:
        rc = await w.proc.wait()
        if w.writer is not None:
            w.writer.close()
        if self.workers.get(w.slot) is not w:
            return                           # retired or replaced on purpose
        del self.workers[w.slot]
        if self.stopping or w.slot >= self.nworkers:
            return
        log.error("worker %d (pid %d) exited with %s; starting a new one", w.slot,
                  w.proc.pid, rc)
        self.restarts += 1
        now = time.monotonic()
        recent = [t for t in self.crashes.get(w.slot, []) if now - t < 10] + [now]
        self.crashes[w.slot] = recent
        if len(recent) > 3:
            await asyncio.sleep(min(5.0, 0.5 * len(recent)))
        await self._fill(w.slot)

    async def _fill(self, slot: int) -> None:
        """Start a worker for an empty slot (unless a reload filled it meanwhile)."""
        if self.stopping or slot in self.workers or slot >= self.nworkers:
            return
        new = await self.spawn(slot)
        if self.stopping or slot in self.workers:
            self.retire(new)
        else:
            self.workers[slot] = new

    async def replace_all(self) -> None:
        """Rolling replacement: per slot, the new worker serves before the old one drains."""
        self.open_slots()
        for slot in range(self.nworkers):
            if self.stopping:
                return
            new = await self.spawn(slot)
            self.starting.add(new)
            ready = self.loop.create_task(new.ready.wait())
            died = self.loop.create_task(new.proc.wait())
            try:
                await asyncio.wait({ready, died}, timeout=60,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                ready.cancel()
                died.cancel()
                self.starting.discard(new)
            if self.stopping:
                self.retire(new)
                return
            cur = self.workers.get(slot)     # ``old``, or its replacement if it died meanwhile
            if not new.ready.is_set():
                log.error("new worker %d (pid %d) %s", slot, new.proc.pid,
                          "exited" if new.proc.returncode is not None
                          else "did not become ready in 60 s")
                if cur is not None or new.proc.returncode is not None:
                    # keep the old worker serving rather than leave the slot empty
                    self.retire(new)
                    if cur is None:
                        await self._fill(slot)
                    continue
            self.workers[slot] = new
            if cur is not None:
                self.retire(cur)
        for slot in [s for s in self.workers if s >= self.nworkers]:
            self.retire(self.workers.pop(slot))

    def retire(self, w: WorkerProc) -> None:
        w.retiring = True
        if w.proc.returncode is None:
            w.proc.send_signal(signal.SIGTERM)

    # -- signals -----------------------------------------------------------------------------
    async def reload(self) -> None:
        if self._reloading:
            self._reload_again = True        # a SIGHUP during a reload is not lost
            return
        self._reloading = True
        try:
            while True:
                self._reload_again = False
                try:
                    await self._reload()
                except Exception:
                    log.exception("reload failed; the running workers keep serving")
                if not self._reload_again or self.stopping:
                    break
        finally:
            self._reloading = False

    async def _reload(self) -> None:
        try:
            fresh = Node.load(self.config_path, self.settings.prefix)
        except ConfigError as e:
            log.error("reload refused, node config invalid: %s", e)
            return
        settings = fresh.settings
        assert settings is not None
        node = self.node
        node.settings, node.plugins, node.keyring = settings, fresh.plugins, fresh.keyring
        if settings.listen != self.settings.listen or \
                settings.udp_listen != self.settings.udp_listen:
            for slot in self.slots:
                for sock in slot:
                    sock.close()
            self.slots = []
        self.settings = settings
        self.nworkers = self.worker_override or settings.workers
        setup_logging(settings, "master")
        if self.discovery is not None and settings.discovery != self.discovery.confs:
            log.warning("reload: the discovery section changed, its watches start again")
            self.discovery.close()
            self.discovery = DiscoveryManager(settings.discovery, self._nodes_found,
                                              settings.resolve)
            self._health_resync()
            # the new workers start with the nodes when the registries answer quickly
            await self.discovery.first_answers(DISCOVERY_START_WAIT)
        hub = make_hub(settings)
        try:
            await hub.load()
        except ConfigError as e:
            log.error("reload: config not re-read, the current one keeps serving: %s", e)
            await hub.store.close()
        else:
            old = self.hub
            self._use_hub(hub)
            await old.close()
            hub.start_watch()
        await self.replace_all()
        log.info("reload done: %d workers, config revision %d", self.nworkers,
                 self.hub.state.revision)

    async def run(self) -> int:
        self.loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        self.loop.add_signal_handler(signal.SIGTERM, stop.set)
        self.loop.add_signal_handler(signal.SIGINT, stop.set)
        self.loop.add_signal_handler(signal.SIGHUP, lambda: self.loop.create_task(self.reload()))
        self.loop.add_signal_handler(signal.SIGUSR1, self._reopen_logs)
        try:
            await self.hub.load()
        except ConfigError as e:
            print(f"pylon: {e}", file=sys.stderr)
            log.error("%s", e)
            return 1
        self.health = HealthManager(self._health_changed)
        self.discovery = DiscoveryManager(self.settings.discovery, self._nodes_found,
                                          self.settings.resolve)
        self._health_resync()
        # workers start with the discovered nodes when the registries answer quickly
        await self.discovery.first_answers(DISCOVERY_START_WAIT)
        self.open_slots()
        for index in range(self.nworkers):
            self.workers[index] = await self.spawn(index)
        if not await self._started(stop):
            self.stopping = True
            for w in list(self.workers.values()):
                self.retire(w)
            await asyncio.gather(*(w.proc.wait() for w in self.workers.values()))
            return 1
        if self.settings.admin_enabled:
            try:
                await self.start_admin()
            except (OSError, ConfigError) as e:
                log.error("Admin API not started: %s", e)
                stop.set()
                self.exit_code = 1
        if self.settings.control_enabled and not stop.is_set():
            await self.start_control()
        if not stop.is_set():
            await self.start_exporter()
        addrs = ", ".join([f"{h}:{p}" for h, p in self.settings.listen] +
                          [f"{h}:{p}/udp" for h, p in self.settings.udp_listen])
        if not stop.is_set():
            log.warning("pylon started: %d workers listening on %s (pid %d; %s)", self.nworkers,
                        addrs, os.getpid(), _native.describe())
        self.hub.start_watch()
        if not stop.is_set():
            self._retiring = self.loop.create_task(self.retire_orphans())
        await stop.wait()
        self.stopping = True
        log.warning("stopping: draining workers (up to %.0f s)", self.settings.shutdown_timeout)
        if self.admin_server is not None:
            self.admin_server.close()
        if self.control_server is not None:
            self.control_server.close()
        if self.export_server is not None:
            self.export_server.close()
        if self.health is not None:
            self.health.close()
        if self.discovery is not None:
            self.discovery.close()
        procs = [*self.workers.values(), *self.starting]
        for w in procs:
            self.retire(w)
        # the workers stop accepting now; close our copies of the listeners too, so that new
        # connections are refused instead of queueing on a socket nobody will accept from
        for slot in self.slots:
            for sock in slot:
                sock.close()
        self.slots = []
        await asyncio.gather(*(w.proc.wait() for w in procs))
        await self.hub.close()
        log.warning("stopped")
        return self.exit_code

    async def _started(self, stop: asyncio.Event) -> bool:
        """Wait until every worker serves; False on SIGTERM or when workers keep dying."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not stop.is_set():
            if all(w.ready.is_set() for w in self.workers.values()) and \
                    len(self.workers) == self.nworkers:
                return True
            if any(len(v) >= 3 for v in self.crashes.values()):
                log.error("workers exit right after starting; giving up (see the errors above)")
                return False
            await asyncio.sleep(0.05)
        return False

    def _reopen_logs(self) -> None:
        setup_logging(self.settings, "master")
        for w in self.workers.values():
            if w.proc.returncode is None:
                w.proc.send_signal(signal.SIGUSR1)
