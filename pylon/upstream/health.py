"""Upstream health checks: APISIX's ``checks`` (lua-resty-healthcheck semantics), run once
per node by the master and shared with every worker.

Where things happen
-------------------
* **Master** (``HealthManager``): one ``UpstreamChecker`` per upstream that has ``checks``
  and more than one node (APISIX creates no checker for a single node).  It runs the active
  probes (``checks.active``) and owns the state of every target: status and counters.  The
  workers' passive reports (``checks.passive``) come in over the control channel and go
  through the same state machine, so every worker sees one aggregated result.  Every status
  change is broadcast to the workers; a new worker gets the whole table.
* **Worker**: a ``HealthView`` per upstream key (which nodes are down, kept across config
  changes by key) behind a ``HealthFilter`` around the balancer, so a balancer skips down
  nodes through its ``healthy`` predicate, and -- when ``checks.passive`` is set -- a
  ``PassiveReporter`` on the runtime that the exchange calls with a response status or a
  failure.  Upstreams without checks have neither: their hot path is unchanged.

State machine (lua-resty-healthcheck ``incr_counter``)
------------------------------------------------------
Each target has a status (``healthy``, ``mostly_healthy``, ``mostly_unhealthy``,
``unhealthy``) and four 8-bit counters: success, http, tcp, timeout.  A success resets the
three failure counters; a failure resets the success counter.  Successes are not counted
while a target is fully ``healthy``, failures not while it is fully ``unhealthy``.  A counter
reaching its threshold makes the target ``healthy`` / ``unhealthy``; the first failure of a
healthy target makes it ``mostly_healthy``, the first success of an unhealthy one
``mostly_unhealthy``.  A balancer uses ``healthy`` and ``mostly_healthy`` targets.  A
threshold of 0 disables that counter.  Active and passive results share the counters; each
is judged against its own thresholds.

Unlike APISIX the state is keyed by (upstream key, node address) and survives config
changes that keep the node: only a removed node or upstream forgets its state, and a
changed ``checks`` restarts the probes but keeps what is known.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from .. import errors
from .balancer import Node

log = logging.getLogger("pylon.health")

HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
MOSTLY_HEALTHY = "mostly_healthy"
MOSTLY_UNHEALTHY = "mostly_unhealthy"
#: states in which a balancer may pick the node
UP_STATES = frozenset((HEALTHY, MOSTLY_HEALTHY))

# counter indexes; also the ``kind`` of a report
SUCCESS, HTTP, TCP, TIMEOUT = 0, 1, 2, 3
KIND_NAMES = ("success", "http", "tcp", "timeout")
#: a probe that got an HTTP status (classified by the active status lists)
STATUS = -1

_Count = Annotated[int, Meta(ge=1, le=254)]
_Count0 = Annotated[int, Meta(ge=0, le=254)]     # passive: 0 turns the counter off
_Status = Annotated[int, Meta(ge=200, le=599)]


# ------------------------------------------------------------------ the checks schema
class _C(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    pass


class ActiveHealthy(_C):
    interval: Annotated[int, Meta(ge=1)] = 1
    http_statuses: Annotated[list[_Status], Meta(min_length=1)] = \
        msgspec.field(default_factory=lambda: [200, 302])
    successes: _Count = 2


class ActiveUnhealthy(_C):
    interval: Annotated[int, Meta(ge=1)] = 1
    http_statuses: Annotated[list[_Status], Meta(min_length=1)] = \
        msgspec.field(default_factory=lambda: [429, 404, 500, 501, 502, 503, 504, 505])
    http_failures: _Count = 5
    tcp_failures: _Count = 2
    timeouts: _Count = 3


class Active(_C):
    type: Literal["http", "https", "tcp"] = "http"
    timeout: Annotated[float, Meta(gt=0)] = 1.0
    concurrency: Annotated[int, Meta(ge=1)] = 10
    host: str | None = None
    port: Annotated[int, Meta(ge=1, le=65535)] | None = None
    http_path: str = "/"
    https_verify_certificate: bool = True
    req_headers: Annotated[list[str], Meta(min_length=1)] | None = None
    healthy: ActiveHealthy = ActiveHealthy()
    unhealthy: ActiveUnhealthy = ActiveUnhealthy()


class PassiveHealthy(_C):
    http_statuses: Annotated[list[_Status], Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: [200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
                                 300, 301, 302, 303, 304, 305, 306, 307, 308])
    successes: _Count0 = 5


class PassiveUnhealthy(_C):
    http_statuses: Annotated[list[_Status], Meta(min_length=1)] = \
        msgspec.field(default_factory=lambda: [429, 500, 503])
    tcp_failures: _Count0 = 2
    timeouts: _Count0 = 7
    http_failures: _Count0 = 5


class Passive(_C):
    type: Literal["http", "https", "tcp"] = "http"
    healthy: PassiveHealthy = PassiveHealthy()
    unhealthy: PassiveUnhealthy = PassiveUnhealthy()


class Checks(_C):
    active: Active | None = None
    passive: Passive | None = None

    @property
    def type(self) -> str:
        """What the control API shows: the active type, else the passive one."""
        if self.active is not None:
            return self.active.type
        return self.passive.type if self.passive is not None else "http"


def parse_checks(raw: Any) -> Checks:
    """APISIX ``upstream.checks`` with its defaults filled in; ValueError names the field."""
    try:
        c = msgspec.convert(raw, Checks)
    except msgspec.ValidationError as e:
        text = str(e).replace("`", "").replace(" - at $", " at checks")
        raise ValueError(text) from None
    if c.active is None and c.passive is None:
        raise ValueError("checks needs active (and optionally passive)")
    return c


def checked_addrs(nodes: Iterable[Node]) -> list[Node]:
    """The nodes a checker watches: one per address, in config order."""
    seen: dict[str, Node] = {}
    for n in nodes:
        seen.setdefault(n.addr, n)
    return list(seen.values())


def has_checker(plan: Any) -> bool:
    """APISIX creates a checker only for an upstream with ``checks`` and more than one
    node (``upstream.lua``: ``nodes_count > 1``)."""
    return bool(plan.checks) and len({n.addr for n in plan.nodes}) > 1


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


def active_limit(a: Active, kind: int) -> int:
    if kind == SUCCESS:
        return a.healthy.successes
    if kind == HTTP:
        return a.unhealthy.http_failures
    if kind == TCP:
        return a.unhealthy.tcp_failures
    return a.unhealthy.timeouts


def passive_limit(p: Passive, kind: int) -> int:
    if kind == SUCCESS:
        return p.healthy.successes
    if kind == HTTP:
        return p.unhealthy.http_failures
    if kind == TCP:
        return p.unhealthy.tcp_failures
    return p.unhealthy.timeouts


# ------------------------------------------------------------------ worker side
class HealthView:
    """A worker's copy of one upstream's node states, as the master broadcast them.  Only
    nodes that are not fully ``healthy`` are stored; ``down`` holds those a balancer must
    skip.  The object lives as long as its upstream key, across runtime rebuilds."""

    __slots__ = ("down", "states")

    def __init__(self) -> None:
        self.states: dict[str, str] = {}
        self.down: set[str] = set()

    def set(self, addr: str, state: str | None) -> None:
        if state is None or state == HEALTHY:
            self.states.pop(addr, None)
            self.down.discard(addr)
            return
        self.states[addr] = state
        if state in UP_STATES:
            self.down.discard(addr)
        else:
            self.down.add(addr)

    def clear(self) -> None:
        self.states.clear()
        self.down.clear()


class HealthFilter:
    """A balancer that skips the nodes of ``down`` through the wrapped balancer's
    ``healthy`` predicate (and its all-unhealthy fallback); with nothing down it is the
    wrapped balancer plus one call."""

    __slots__ = ("after", "before", "down", "inner", "nodes", "_healthy")

    def __init__(self, inner: Any, down: set[str]) -> None:
        self.inner = inner
        self.down = down
        self.nodes = inner.nodes
        self.before = inner.before
        self.after = inner.after
        self._healthy: Callable[[Node], bool] = lambda n: n.addr not in down

    def pick(self, req: Any = None, tried: Any = None, healthy: Any = None) -> Node | None:
        if self.down:
            return self.inner.pick(req, tried, self._healthy)  # type: ignore[no-any-return]
        return self.inner.pick(req, tried, healthy)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<HealthFilter down={sorted(self.down)} {self.inner!r}>"


_TIMEOUTS = (errors.UpstreamConnectTimeout, errors.UpstreamReadTimeout,
             errors.UpstreamSendTimeout)
_TCP = (errors.UpstreamConnectFailed, errors.UpstreamTLSError, errors.UpstreamReset,
        errors.UpstreamBadResponse)


class PassiveReporter:
    """``UpstreamRuntime.health`` of an upstream with ``checks.passive``: turns what a
    request saw into reports for the master.  Nothing is sent when it cannot change
    anything (a success on a fully healthy node, a failure on a fully unhealthy one, a
    status in neither list, a counter set to 0), so healthy traffic costs a set lookup."""

    __slots__ = ("bad", "key", "limits", "ok", "report", "states")

    def __init__(self, key: str, view: HealthView, passive: Passive,
                 report: Callable[[str, str, int], None]) -> None:
        self.key = key
        self.states = view.states
        self.ok = frozenset(passive.healthy.http_statuses)
        self.bad = frozenset(passive.unhealthy.http_statuses)
        self.limits = tuple(passive_limit(passive, k) for k in (SUCCESS, HTTP, TCP, TIMEOUT))
        self.report = report

    def response(self, addr: str, status: int) -> None:
        """A response head from ``addr`` (APISIX reports the status in the log phase)."""
        if status in self.ok:
            if addr not in self.states or not self.limits[SUCCESS]:
                return                      # fully healthy: successes are not counted
            self.report(self.key, addr, SUCCESS)
        elif status in self.bad:
            if not self.limits[HTTP] or self.states.get(addr) == UNHEALTHY:
                return
            self.report(self.key, addr, HTTP)

    def failure(self, addr: str, error: Exception) -> None:
        """The attempt on ``addr`` failed: a timeout (nginx 504) or any other error (nginx
        ``failed``: connect refused, reset, TLS, a bad response) -- ``tcp_failures``."""
        if isinstance(error, _TIMEOUTS):
            kind = TIMEOUT
        elif isinstance(error, _TCP):
            kind = TCP
        else:
            return
        if not self.limits[kind] or self.states.get(addr) == UNHEALTHY:
            return
        self.report(self.key, addr, kind)


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


def probe_request(a: Active, host_header: str) -> bytes:
    """The probe's request, as lua-resty-healthcheck writes it."""
    headers = "".join(h + "\r\n" for h in a.req_headers or ())
    return (f"GET {a.http_path} HTTP/1.1\r\nConnection: close\r\n{headers}"
            f"Host: {host_header}\r\n\r\n").encode("latin-1")


async def probe(host: str, port: int, a: Active, host_header: str) -> tuple[int, int]:
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

    def __init__(self, mgr: HealthManager, plan: Any, checks: Checks) -> None:
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
            limit = active_limit(c.active, kind)
        elif c.passive is not None:
            limit = passive_limit(c.passive, kind)
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

    async def _round(self, batch: list[Target], a: Active) -> None:
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
        self.configured: dict[str, tuple[Any, Checks]] = {}
        self.checkers: dict[str, UpstreamChecker] = {}
        self._bad: dict[str, Any] = {}          # key -> raw checks already reported invalid

    def update(self, changed: dict[str, Any]) -> None:
        """Apply changed plans (None: the upstream is gone)."""
        for key, plan in changed.items():
            checks = None
            if plan is not None and plan.checks:
                try:
                    checks = parse_checks(plan.checks)
                except ValueError as e:
                    if self._bad.get(key) != plan.checks:
                        log.error("health checks of %s ignored: %s", key, e)
                        self._bad[key] = plan.checks
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
