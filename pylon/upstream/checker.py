"""Upstream health checks, the master side: the active probes and every target's state.

``HealthManager`` holds one ``UpstreamChecker`` per upstream that has ``checks`` and more
than one node (APISIX creates no checker for a single node).  It runs the active probes
(``checks.active``) and owns the state of every target: status and counters (the state
machine is described in ``pylon.upstream.health``, the worker side).  The workers' passive
reports (``checks.passive``) come in over the control channel and go through the same state
machine, so every worker sees one aggregated result.  Every status change is broadcast to
the workers; a new worker gets the whole table.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Callable, Iterable
from typing import Any

from .balancer import Node
from .health import (
    HEALTHY,
    HTTP,
    KIND_NAMES,
    MOSTLY_HEALTHY,
    MOSTLY_UNHEALTHY,
    SUCCESS,
    TCP,
    TIMEOUT,
    UNHEALTHY,
    UP_STATES,
    has_checker,
    threshold,
)

log = logging.getLogger("pylon.health")
#: a probe that got an HTTP status (classified by the active status lists)
STATUS = -1

# ``checks`` below are ``pylon.model.health.Checks`` (``Active``...) as the config compiler
# parsed them into the plans; upstream/ does not import model/ (they are independent layers)


def checked_addrs(nodes: Iterable[Node]) -> list[Node]:
    """The nodes a checker watches: one per address, in config order."""
    seen: dict[str, Node] = {}
    for n in nodes:
        seen.setdefault(n.addr, n)
    return list(seen.values())



# ------------------------------------------------------------------ the state machine
class Target:
    """One checked node of one upstream (master side)."""

    __slots__ = ("node", "state", "ctr", "probing")

    def __init__(self, node: Node, state: str = HEALTHY) -> None:
        self.node = node
        self.state = state
        self.ctr = [0, 0, 0, 0]       # success, http, tcp, timeout
        self.probing = False

    def counter(self) -> dict[str, int]:
        c = self.ctr
        return {"success": c[SUCCESS], "http_failure": c[HTTP], "tcp_failure": c[TCP],
                "timeout_failure": c[TIMEOUT]}


def count(t: Target, kind: int, limit: int) -> str | None:
    """Apply one report to ``t`` (lua-resty-healthcheck ``incr_counter``); returns the new
    status when it changed."""
    if limit <= 0:
        return None
    cur = t.state
    report = HEALTHY if kind == SUCCESS else UNHEALTHY
    if report == cur:
        return None                 # nothing to count in a settled state
    c = t.ctr
    n = c[kind] = min(c[kind] + 1, 255)
    if kind == SUCCESS:
        c[HTTP] = c[TCP] = c[TIMEOUT] = 0
    else:
        c[SUCCESS] = 0
    new = None
    if n >= limit:
        new = report
    elif cur == HEALTHY and kind != SUCCESS:
        new = MOSTLY_HEALTHY
    elif cur == UNHEALTHY and kind == SUCCESS:
        new = MOSTLY_UNHEALTHY
    if new is not None and new != cur:
        t.state = new
        return new
    return None





# ------------------------------------------------------------------ active probes
_STATUS_LINE = re.compile(rb"^HTTP/\d+\.\d+\s+(\d+)", re.IGNORECASE)
_ssl_contexts: dict[bool, ssl.SSLContext] = {}


def _probe_ssl(verify: bool) -> ssl.SSLContext:
    ctx = _ssl_contexts.get(verify)
    if ctx is None:
        ctx = ssl.create_default_context()
        if not verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        _ssl_contexts[verify] = ctx
    return ctx


def probe_request(a: Any, host_header: str) -> bytes:
    """The probe's request, as lua-resty-healthcheck writes it."""
    headers = "".join(h + "\r\n" for h in a.req_headers or ())
    return (f"GET {a.http_path} HTTP/1.1\r\nConnection: close\r\n{headers}"
            f"Host: {host_header}\r\n\r\n").encode("latin-1")


async def probe(host: str, port: int, a: Any, host_header: str) -> tuple[int, int]:
    """One active check: (SUCCESS, 0) for a tcp check that connected, (STATUS, status)
    for an HTTP answer (0: not a status line), (TCP, 0) or (TIMEOUT, 0) for a failure.
    Every step waits at most ``a.timeout`` (lua-resty-healthcheck's socket timeout)."""
    t = a.timeout
    tls = a.type == "https"
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            host.strip("[]"), port, ssl=_probe_ssl(a.https_verify_certificate) if tls else None,
            server_hostname=host_header if tls else None), t)
    except TimeoutError:
        return TIMEOUT, 0
    except (OSError, ValueError, UnicodeError):
        return TCP, 0
    try:
        if a.type == "tcp":
            return SUCCESS, 0
        writer.write(probe_request(a, host_header))
        try:
            await asyncio.wait_for(writer.drain(), t)
            line = await asyncio.wait_for(reader.readline(), t)
        except TimeoutError:
            return TIMEOUT, 0
        except (OSError, asyncio.IncompleteReadError):
            return TCP, 0
        except ValueError:                  # a line longer than the reader's limit
            return STATUS, 0
        if not line:
            return TCP, 0                   # closed before a status line
        m = _STATUS_LINE.match(line)
        return STATUS, int(m.group(1)) if m else 0
    finally:
        writer.close()


# ------------------------------------------------------------------ master side
Publish = Callable[[str, str, str | None], None]


class UpstreamChecker:
    """The checker of one upstream: its targets, their states and the active probes."""

    def __init__(self, mgr: HealthManager, plan: Any, checks: Any) -> None:
        self.mgr = mgr
        self.key: str = plan.key
        self.plan = plan
        self.checks = checks
        self.targets: dict[str, Target] = {}
        self.task: asyncio.Task[None] | None = None
        self.rounds: set[asyncio.Task[None]] = set()
        #: probes sent so far
        self.probes = 0

    # -- configuration ---------------------------------------------------------------
    def set_nodes(self, nodes: Iterable[Node]) -> None:
        """Keep the targets of nodes that stay (their state too), add new ones healthy,
        forget removed ones."""
        keep: dict[str, Target] = {}
        for n in checked_addrs(nodes):
            t = self.targets.get(n.addr)
            if t is None:
                t = Target(n)
            else:
                t.node = n
            keep[n.addr] = t
        for addr, t in self.targets.items():
            if addr not in keep and t.state != HEALTHY:
                self.mgr.publish(self.key, addr, None)
        self.targets = keep

    def start(self) -> None:
        if self.checks.active is not None and self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._active(),
                                                               name=f"health {self.key}")

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None
        for r in self.rounds:
            r.cancel()
        self.rounds.clear()
        for t in self.targets.values():
            t.probing = False

    def forget(self) -> None:
        """The upstream is gone (or has no checker any more): workers drop its states."""
        self.stop()
        for addr, t in self.targets.items():
            if t.state != HEALTHY:
                self.mgr.publish(self.key, addr, None)
        self.targets = {}

    # -- reports ---------------------------------------------------------------------
    def report(self, addr: str, kind: int, active: bool) -> None:
        t = self.targets.get(addr)
        if t is None:
            return
        c = self.checks
        if active:
            assert c.active is not None
            limit = threshold(c.active, kind)
        elif c.passive is not None:
            limit = threshold(c.passive, kind)
        else:
            return
        before = t.ctr[kind]
        new = count(t, kind, limit)
        if t.ctr[kind] != before or new is not None:
            log.info("health %s %s: %s %s (%d/%d, %s)", self.key, addr,
                     "healthy" if kind == SUCCESS else "unhealthy", KIND_NAMES[kind],
                     t.ctr[kind], limit, "active" if active else "passive")
        if new is not None:
            log.warning("health %s: node %s is %s (%s %d/%d, %s check)", self.key, addr, new,
                        KIND_NAMES[kind], t.ctr[kind], limit, "active" if active else "passive")
            self.mgr.publish(self.key, addr, new)

    # -- active checks ---------------------------------------------------------------
    def host_header(self, n: Node) -> str:
        """APISIX ``create_checker``: the upstream_host for ``pass_host: rewrite``, the
        node's name for ``node``, else ``checks.active.host``, else the node's host."""
        p = self.plan
        a = self.checks.active
        if p.pass_host == "rewrite" and p.upstream_host:
            return str(p.upstream_host)
        if p.pass_host == "node":
            return n.host
        return a.host if a is not None and a.host else n.host

    async def _active(self) -> None:
        a = self.checks.active
        assert a is not None
        loop = asyncio.get_running_loop()
        last_up = last_down = loop.time()      # the first check comes after one interval
        while True:
            due_up = last_up + a.healthy.interval
            due_down = last_down + a.unhealthy.interval
            await asyncio.sleep(max(0.0, min(due_up, due_down) - loop.time()))
            now = loop.time()
            up = down = False
            if now >= due_up:
                up, last_up = True, now
            if now >= due_down:
                down, last_down = True, now
            batch = [t for t in self.targets.values() if not t.probing and
                     ((up and t.state in UP_STATES) or (down and t.state not in UP_STATES))]
            if batch:
                for t in batch:
                    t.probing = True
                r = loop.create_task(self._round(batch, a))
                self.rounds.add(r)
                r.add_done_callback(self.rounds.discard)

    async def _round(self, batch: list[Target], a: Any) -> None:
        sem = asyncio.Semaphore(a.concurrency)

        async def one(t: Target) -> None:
            try:
                async with sem:
                    n = t.node
                    self.probes += 1
                    kind, status = await probe(n.host, a.port or n.port, a, self.host_header(n))
            finally:
                t.probing = False
            if kind == STATUS:
                if status in a.healthy.http_statuses:
                    kind = SUCCESS
                elif status in a.unhealthy.http_statuses or status == 0:
                    kind = HTTP
                else:
                    return
            if self.targets.get(n.addr) is t:
                self.report(n.addr, kind, True)

        await asyncio.gather(*(one(t) for t in batch), return_exceptions=True)

    # -- introspection ---------------------------------------------------------------
    def nodes_info(self) -> list[dict[str, Any]]:
        """Targets as APISIX's control API shows them (``get_target_list``)."""
        a = self.checks.active
        out = []
        for t in self.targets.values():
            n = t.node
            out.append({"ip": n.host, "port": (a.port if a is not None and a.port else n.port),
                        "hostname": a.host if a is not None and a.host else n.host,
                        "status": t.state, "counter": t.counter()})
        return out


def _probe_config(plan: Any) -> tuple[Any, ...]:
    """What a checker's probes depend on besides ``checks`` and the nodes."""
    return (plan.pass_host, plan.upstream_host, plan.scheme)


class HealthManager:
    """All checkers of the node (master).  ``update`` follows config changes; ``passive``
    takes the workers' reports; ``publish(key, addr, state)`` is called on every status
    change (``state`` None: forget the node)."""

    def __init__(self, publish: Publish) -> None:
        self.publish = publish
        #: every upstream whose plan has ``checks`` (valid), with or without a checker
        self.configured: dict[str, tuple[Any, Any]] = {}
        self.checkers: dict[str, UpstreamChecker] = {}
        self._bad: dict[str, Any] = {}          # key -> raw checks already reported invalid

    def update(self, changed: dict[str, Any]) -> None:
        """Apply changed plans (None: the upstream is gone)."""
        for key, plan in changed.items():
            checks = plan.checks if plan is not None else None
            bad = plan.bad_checks if plan is not None else None
            if bad is not None and self._bad.get(key) != bad.raw:
                log.error("health checks of %s ignored: %s", key, bad.error)
                self._bad[key] = bad.raw
            if checks is None:
                self.configured.pop(key, None)
                self._drop(key)
                continue
            self._bad.pop(key, None)
            if checks.active is None and key not in self.configured:
                log.warning("%s: checks.passive without checks.active (APISIX requires "
                            "active): an unhealthy node comes back only while every node "
                            "is unhealthy", key)
            self.configured[key] = (plan, checks)
            if not has_checker(plan):
                self._drop(key)
                continue
            ch = self.checkers.get(key)
            if ch is None:
                ch = self.checkers[key] = UpstreamChecker(self, plan, checks)
                ch.set_nodes(plan.nodes)
                ch.start()
                continue
            restart = ch.checks != checks or _probe_config(ch.plan) != _probe_config(plan)
            ch.plan = plan
            if restart:
                ch.stop()
                ch.checks = checks
            ch.set_nodes(plan.nodes)
            if restart:
                log.info("health %s: checks changed, checker restarted (states kept)", key)
                ch.start()

    def replace(self, plans: dict[str, Any]) -> None:
        """Make ``plans`` the whole set (a full reload of the configuration)."""
        changed: dict[str, Any] = {k: None for k in self.configured if k not in plans}
        changed.update(plans)
        self.update(changed)

    def _drop(self, key: str) -> None:
        ch = self.checkers.pop(key, None)
        if ch is not None:
            ch.forget()

    def passive(self, key: str, addr: str, kind: int) -> None:
        ch = self.checkers.get(key)
        if ch is not None and kind in (SUCCESS, HTTP, TCP, TIMEOUT):
            ch.report(addr, kind, False)

    def table(self) -> list[list[str]]:
        """Every node that is not fully healthy: [key, addr, state] (a new worker's start)."""
        return [[key, addr, t.state] for key, ch in self.checkers.items()
                for addr, t in ch.targets.items() if t.state != HEALTHY]

    def info(self, key: str) -> dict[str, Any] | None:
        """``{"type", "nodes"}`` for the control API, None when ``key`` has no checks."""
        got = self.configured.get(key)
        if got is None:
            return None
        ch = self.checkers.get(key)
        return {"type": got[1].type, "nodes": ch.nodes_info() if ch is not None else []}

    def close(self) -> None:
        for ch in self.checkers.values():
            ch.stop()
