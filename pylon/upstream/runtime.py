"""Upstream plans (compiled, immutable) and runtimes (stateful, long-lived).

The compiler describes every upstream as a frozen ``UpstreamPlan``.  ``Runtimes.reconcile``
turns the plans of a new snapshot into ``UpstreamRuntime`` objects: a runtime whose plan did
not change is reused as is (balancer position, EWMA statistics and pools survive), a changed
one is rebuilt but still reuses the keep-alive pools of nodes it keeps.  Pools no runtime uses
any more are closed.

Health checks (``health.py``): an upstream with a checker gets a ``HealthFilter`` around its
balancer and, with ``checks.passive``, a ``PassiveReporter`` as ``health``; both read a
``HealthView`` kept per upstream key in ``Runtimes.health``, so node states survive a
rebuilt runtime.  Every other upstream has ``health = None`` and its bare balancer.

Discovered upstreams (``discovery_type``): the plan's ``discovery`` names what the master
watches and its ``nodes`` are empty; ``Runtimes`` holds the node lists the master pushes
(``set_discovered``) and builds the runtime from the plan with those nodes (``with_nodes``).
A discovered upstream with no nodes yet has no runtime, so a request to it is answered 503
as APISIX answers it.  A new node list rebuilds only the runtimes of that service, in
place: pools and health states of the nodes that stay are kept.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..tls.certs import load_chain
from .balancer import Node, create_balancer
from .h2 import H2Pool
from .health import HealthFilter, HealthView, PassiveReporter, has_checker
from .pool import NodePool

DEFAULT_PORTS = {"http": 80, "https": 443, "grpc": 80, "grpcs": 443}
#: schemes reached over HTTP/2 (``upstream/h2.py``)
H2_SCHEMES = frozenset(("grpc", "grpcs"))


@dataclass(frozen=True, slots=True)
class UpstreamPlan:
    key: str                       # "upstreams/1", "routes/7/upstream", "services/3/upstream"
    nodes: tuple[Node, ...]
    type: str = "roundrobin"
    hash_on: str = "vars"
    hash_key: str = "remote_addr"
    scheme: str = "http"
    pass_host: str = "pass"
    upstream_host: str | None = None
    pool_size: int = 320
    pool_idle_timeout: float = 60.0
    pool_requests: int = 1000
    tls_verify: bool = False
    client_cert: str | None = None
    client_key: str | None = None
    connect_timeout: float = 60.0
    send_timeout: float = 60.0
    read_timeout: float = 60.0
    #: a stream connection's idle bound (nginx's ``proxy_timeout``; APISIX's stream balancer
    #: sets it from ``timeout.read``): ``timeout.read`` when given, else nginx's 10 min
    stream_idle: float = 600.0
    retries: int | None = None
    retry_timeout: float = 0.0
    #: ``pylon.model.health.Checks`` as the compiler parsed them (None: no valid checks)
    checks: Any = None
    #: ``pylon.model.health.BadChecks``: checks that do not parse (the master logs them)
    bad_checks: Any = None
    #: discovered upstream: the watch key (``pylon.discovery.base.watch_key``), else None
    discovery: str | None = None
    #: ``tls.client_cert_id``: the ``type: client`` ssl object whose certificate and key
    #: the compiler put in ``client_cert`` / ``client_key`` (None there: not found)
    client_cert_id: str | None = None


#: a discovered node as the master sends it: host, port (None: the scheme's), weight,
#: priority
FoundNode = Sequence[Any]


def with_nodes(plan: UpstreamPlan, found: Iterable[FoundNode]) -> UpstreamPlan:
    """``plan`` (a discovered upstream's) with the nodes its registry gave."""
    default = DEFAULT_PORTS.get(plan.scheme, 80)
    return replace(plan, nodes=tuple(Node(str(h), int(p or default), int(w), int(pr))
                                     for h, p, w, pr in found))


PoolKey = tuple[str, str, int, bool, str | None, str | None, int, float, int]


class UpstreamRuntime:
    """What a request needs to reach an upstream: a balancer and a pool per node."""

    __slots__ = ("balancer", "h2pools", "health", "host_headers", "plan", "pools", "retries",
                 "tls", "track", "variants")

    def __init__(self, plan: UpstreamPlan, pools: dict[str, Any],
                 view: HealthView | None = None, health: PassiveReporter | None = None,
                 previous: Any = None) -> None:
        self.plan = plan
        # ``previous``: the balancer this runtime replaces (ewma keeps the latency of the
        # nodes that stay)
        self.balancer: Any = create_balancer(plan.type, plan.nodes, plan.hash_on, plan.hash_key,
                                             previous=previous)
        if view is not None:               # health checked: skip the nodes that are down
            self.balancer = HealthFilter(self.balancer, view.down)
        #: passive health reports (``checks.passive``), None for every other upstream
        self.health = health
        #: HTTP/1.1 pools by node address; for ``grpc``/``grpcs`` HTTP/2 pools in
        #: ``h2pools`` instead (None for the other schemes)
        self.pools: dict[str, NodePool] = {}
        self.h2pools: dict[str, H2Pool] | None = None
        self._set_pools(plan, pools)
        # before()/after() only matter to balancers that track load or latency
        self.track = plan.type in ("least_conn", "ewma")
        self.tls = plan.scheme in ("https", "grpcs")
        usable = sum(1 for n in plan.nodes if n.weight > 0)
        # APISIX: by default a request may try every node once
        self.retries = plan.retries if plan.retries is not None else max(usable - 1, 0)
        self.host_headers = _host_headers(plan)
        #: this upstream reached over another scheme, by scheme (``Runtimes.with_scheme``)
        self.variants: dict[str, UpstreamRuntime] | None = None

    def _set_pools(self, plan: UpstreamPlan, pools: dict[str, Any]) -> None:
        if plan.scheme in H2_SCHEMES:
            self.pools = {}
            self.h2pools = pools
        else:
            self.pools = pools
            self.h2pools = None

    def variant(self, plan: UpstreamPlan, pools: dict[str, Any]) -> UpstreamRuntime:
        """A copy for ``plan`` (this plan with another scheme): the same balancer, retries
        and health state, other pools."""
        v = object.__new__(UpstreamRuntime)
        for k in UpstreamRuntime.__slots__:
            setattr(v, k, getattr(self, k))
        v.plan = plan
        v._set_pools(plan, pools)
        v.tls = plan.scheme in ("https", "grpcs")
        v.host_headers = _host_headers(plan)
        v.variants = None
        return v


def _host_headers(plan: UpstreamPlan) -> dict[str, bytes]:
    """Each node's Host header for ``pass_host: node`` (the port only when not the
    scheme's default)."""
    default = DEFAULT_PORTS.get(plan.scheme, 80)
    out: dict[str, bytes] = {}
    for n in plan.nodes:
        h = f"[{n.host}]" if ":" in n.host and not n.host.startswith("[") else n.host
        out[n.addr] = (h if n.port == default else f"{h}:{n.port}").encode()
    return out


class Runtimes:
    """Per-worker owner of upstream runtimes and the node pools they share."""

    def __init__(self, loop: asyncio.AbstractEventLoop, trusted_ca: str | None = None) -> None:
        self.loop = loop
        #: ``apisix.ssl.ssl_trusted_certificate``: what ``tls.verify`` trusts (None: the
        #: system's CA store)
        self.trusted_ca = trusted_ca
        self.by_key: dict[str, UpstreamRuntime] = {}
        self._pools: dict[PoolKey, NodePool | H2Pool] = {}
        self._ssl: dict[tuple[bool, str | None, str | None, bool], ssl.SSLContext] = {}
        #: how many runtimes use each pool (``update`` closes a pool at zero)
        self._refs: dict[PoolKey, int] = {}
        #: node states by upstream key, as the master broadcasts them (health checks)
        self.health: dict[str, HealthView] = {}
        #: where passive health reports go (the worker sends them to the master)
        self.report: Callable[[str, str, int], None] | None = None
        #: discovered node lists by watch key, as the master pushes them
        self.discovered: dict[str, list[FoundNode]] = {}
        #: discovered upstreams: their compiled plans (no nodes) by upstream key, and the
        #: upstream keys of each watch key
        self._disc_plans: dict[str, UpstreamPlan] = {}
        self._disc_users: dict[str, set[str]] = {}

    def _effective(self, key: str, plan: UpstreamPlan | None) -> UpstreamPlan | None:
        """The plan a runtime is built from: a discovered upstream's gets its nodes (None
        while it has none: no runtime, 503).  Keeps the discovered-upstream index."""
        old = self._disc_plans.get(key)
        if old is not None and (plan is None or old.discovery != plan.discovery):
            users = self._disc_users.get(old.discovery or "")
            if users is not None:
                users.discard(key)
                if not users:
                    del self._disc_users[old.discovery or ""]
            del self._disc_plans[key]
        if plan is None or plan.discovery is None:
            return plan
        self._disc_plans[key] = plan
        self._disc_users.setdefault(plan.discovery, set()).add(key)
        found = self.discovered.get(plan.discovery)
        return with_nodes(plan, found) if found else None

    def set_discovered(self, dkey: str, found: list[FoundNode]) -> None:
        """The master's new node list for one watch key: the runtimes of the upstreams
        using it are rebuilt in place (no config compile)."""
        if found:
            self.discovered[dkey] = found
        else:
            self.discovered.pop(dkey, None)
        users = self._disc_users.get(dkey)
        if users:
            self.update({k: self._disc_plans[k] for k in users})

    def _runtime(self, plan: UpstreamPlan, old: UpstreamRuntime | None = None
                 ) -> UpstreamRuntime:
        """A runtime for ``plan``; ``old``: the one it replaces (balancer state carried)."""
        view = reporter = None
        checks = plan.checks
        if checks is not None and has_checker(plan):
            view = self.health.get(plan.key)
            if view is None:
                view = self.health[plan.key] = HealthView()
            if checks.passive is not None:
                reporter = PassiveReporter(plan.key, view, checks.passive, self._report)
        prev = old.balancer if old is not None else None
        return UpstreamRuntime(plan, self._pools_for(plan), view, reporter,
                               getattr(prev, "inner", prev))

    def _report(self, key: str, addr: str, kind: int) -> None:
        if self.report is not None:
            self.report(key, addr, kind)

    def set_health(self, key: str, addr: str, state: str | None) -> None:
        """The master's word on one node (state None: forget it)."""
        view = self.health.get(key)
        if view is None:
            if state is None:
                return
            view = self.health[key] = HealthView()
        view.set(addr, state)

    def reset_health(self, table: list[list[str]]) -> None:
        """The master's whole table (a worker's start): [[key, addr, state], ...]."""
        for view in self.health.values():
            view.clear()
        for key, addr, state in table:
            self.set_health(key, addr, state)

    def reconcile(self, plans: dict[str, UpstreamPlan]) -> dict[str, UpstreamRuntime]:
        old = self.by_key
        new: dict[str, UpstreamRuntime] = {}
        for key in [k for k in self._disc_plans if k not in plans]:
            self._effective(key, None)
        for key, given in plans.items():
            plan = self._effective(key, given)
            if plan is None:
                continue
            rt = old.get(key)
            if rt is None or rt.plan != plan:
                rt = self._runtime(plan, rt)
            new[key] = rt
        self._refs = {}
        for rt in new.values():
            for plan in _plans(rt):
                for n in plan.nodes:
                    pk = self._pool_key(plan, n)
                    self._refs[pk] = self._refs.get(pk, 0) + 1
        for pk in [pk for pk in self._pools if pk not in self._refs]:
            self._pools.pop(pk).close()
        self.by_key = new
        for key in [k for k in self.health if k not in plans]:
            del self.health[key]
        return new

    def with_scheme(self, rt: UpstreamRuntime, scheme: str) -> UpstreamRuntime:
        """``rt`` reached over ``scheme`` instead of its own (proxy-rewrite ``scheme``):
        the same balancer and health state, that scheme's pools.  Built once, kept on
        ``rt`` (a rebuilt upstream starts without), its pools counted as ``rt``'s."""
        variants = rt.variants
        if variants is None:
            variants = rt.variants = {}
        v = variants.get(scheme)
        if v is None:
            plan = replace(rt.plan, scheme=scheme)
            v = variants[scheme] = rt.variant(plan, self._pools_for(plan))
            for n in plan.nodes:
                pk = self._pool_key(plan, n)
                self._refs[pk] = self._refs.get(pk, 0) + 1
        return v

    def update(self, changed: dict[str, UpstreamPlan | None]) -> dict[str, UpstreamRuntime]:
        """Apply changed plans (None: gone) in place: only their runtimes are rebuilt, and
        a pool is closed when the last runtime using it goes.  Cost follows the change,
        not the number of upstreams."""
        by_key = self.by_key
        refs = self._refs
        for key, given in changed.items():
            plan = self._effective(key, given)
            old = by_key.get(key)
            if old is not None and plan is not None and old.plan == plan:
                continue
            if plan is not None:
                for n in plan.nodes:
                    pk = self._pool_key(plan, n)
                    refs[pk] = refs.get(pk, 0) + 1
                by_key[key] = self._runtime(plan, old)
            else:
                by_key.pop(key, None)
                if given is None:          # gone (a discovered one waiting for nodes keeps
                    self.health.pop(key, None)      # its node states)
            if old is not None:
                for old_plan in _plans(old):
                    for n in old_plan.nodes:
                        pk = self._pool_key(old_plan, n)
                        left = refs.get(pk, 0) - 1
                        if left > 0:
                            refs[pk] = left
                        else:
                            refs.pop(pk, None)
                            pool = self._pools.pop(pk, None)
                            if pool is not None:
                                pool.close()
        return by_key

    def sweep(self) -> None:
        now = self.loop.time()
        for pool in self._pools.values():
            pool.sweep(now)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

    def _pool_key(self, plan: UpstreamPlan, n: Node) -> PoolKey:
        sni = plan.upstream_host if plan.pass_host == "rewrite" else n.host
        return (plan.scheme, n.host, n.port, plan.tls_verify, plan.client_cert, sni,
                plan.pool_size, plan.pool_idle_timeout, plan.pool_requests)

    def _pools_for(self, plan: UpstreamPlan) -> dict[str, Any]:
        out: dict[str, Any] = {}
        tls = plan.scheme in ("https", "grpcs")
        h2 = plan.scheme in H2_SCHEMES
        for n in plan.nodes:
            pk = self._pool_key(plan, n)
            pool = self._pools.get(pk)
            if pool is None:
                ctx = self._ssl_context(plan, h2) if tls else None
                cls = H2Pool if h2 else NodePool
                pool = cls(self.loop, n.host, n.port, ctx, pk[5] if tls else None,
                           plan.pool_size, plan.pool_idle_timeout, plan.pool_requests)
                self._pools[pk] = pool
            out[n.addr] = pool
        return out

    def client_context(self, plan: UpstreamPlan) -> ssl.SSLContext:
        """The TLS client context of ``plan`` (``tls.verify``, client certificate), shared
        by the upstreams that need the same one (the stream proxy's ``scheme: tls``)."""
        return self._ssl_context(plan)

    def _ssl_context(self, plan: UpstreamPlan, h2: bool = False) -> ssl.SSLContext:
        key = (plan.tls_verify, plan.client_cert, plan.client_key, h2)
        ctx = self._ssl.get(key)
        if ctx is None:
            ctx = ssl.create_default_context(cafile=self.trusted_ca)
            if h2:                       # grpcs: HTTP/2 by ALPN
                ctx.set_alpn_protocols(["h2"])
            if not plan.tls_verify:      # APISIX upstream tls.verify defaults to false
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if plan.client_cert and plan.client_key:
                load_chain(ctx, plan.client_cert, plan.client_key)
            self._ssl[key] = ctx
        return ctx


def _plans(rt: UpstreamRuntime) -> list[UpstreamPlan]:
    """The plans whose pools ``rt`` holds: its own and its scheme variants'."""
    if not rt.variants:
        return [rt.plan]
    return [rt.plan, *(v.plan for v in rt.variants.values())]

