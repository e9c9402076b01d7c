"""Resources → compiled, immutable routing tables.  A pure function of its inputs.

Precedence (APISIX): a route's own fields over its service's; upstream from the route's inline
``upstream``, then ``upstream_id``, then the service's inline ``upstream``, then its
``upstream_id``; a route's ``timeout`` over its upstream's.  Routes with ``status: 0`` are
compiled out.  Anything that cannot be compiled is rejected with its id and path and the rest
still applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from ..discovery import watch_key
from ..model.health import plan_checks
from ..model.route import Route, Service
from ..model.upstream import DEFAULT_PORTS, Upstream
from ..model.validate import Rejection, Resources, convert, parse_resources, ref_error
from ..pdk.consumers import EMPTY_INDEX, ConsumerIndex
from ..proxy.chain import EMPTY, Chain, ChainBuilder, Opener, concat, merge
from ..proxy.consumers import compile_consumers, decrypt_fields
from ..proxy.registry import Registry
from ..proxy.stream_routes import EMPTY_STREAM, StreamTable, compile_stream
from ..routing.router import Router, RouteSpec
from ..tls.table import EMPTY_TABLE, HTTP11, SniTable, SslCompiler
from ..upstream.balancer import Node
from ..upstream.runtime import UpstreamPlan
from .store import split_key


@dataclass(slots=True)
class CompiledRoute:
    """Read-only by convention (a frozen dataclass costs ~2x to build at 100k routes)."""

    id: str
    name: str | None
    service_id: str | None
    upstream_key: str | None        # key of the UpstreamPlan, None = no upstream configured
    connect_timeout: float
    send_timeout: float
    read_timeout: float
    websocket: bool
    chain: Chain
    labels: dict[str, str] | None = None
    service_name: str | None = None


@dataclass(frozen=True, slots=True)
class Compiled:
    router: Router
    routes: dict[str, CompiledRoute]
    plans: dict[str, UpstreamPlan]
    rejected: list[Rejection] = field(default_factory=list)
    #: the global rules' plugins, run before every route's (and for unmatched requests)
    global_chain: Chain = EMPTY
    consumers: ConsumerIndex = EMPTY_INDEX
    #: plugin name -> prepared plugin_metadata
    metadata: dict[str, Any] = field(default_factory=dict)
    #: the ssl objects' SNI table (TLS listeners look certificates up in it)
    tls: SniTable = EMPTY_TABLE
    #: proto objects: id -> content (grpc-transcode compiles them, cached by content)
    protos: dict[str, str] = field(default_factory=dict)
    #: the stream routes (``pylon.proxy.stream_routes``)
    stream: StreamTable = EMPTY_STREAM


def _protos(other: dict[str, Any]) -> dict[str, str]:
    """The proto objects among the other kinds' raw values: id -> content."""
    return {k[7:]: v["content"] for k, v in other.items()
            if k.startswith("protos/") and isinstance(v, dict)
            and isinstance(v.get("content"), str)}


class PluginHost(Protocol):
    """Where the compiler finds the plugins and the keyring (the node: ``pylon.node.Node``);
    read at each whole compile, so a plugin reload is seen by the next one."""

    @property
    def plugins(self) -> Registry: ...

    @property
    def keyring(self) -> Opener | None: ...


class PluginSet:
    """The plugin-bearing objects a route's chain is compiled from, and the builder."""

    def __init__(self, plugins: Registry, keyring: Opener | None = None) -> None:
        self.builder = ChainBuilder(plugins, keyring)
        #: plugin_config id -> its plugins (only the ones that validated)
        self.plugin_configs: dict[str, dict[str, Any]] = {}

    def route_chain(self, route: Route, svc: Service | None) -> Chain:
        """route > plugin_config > service, as APISIX merges them.  Raises ValueError
        (PluginConfigError included) with the reason when the result cannot be built."""
        pc = None
        if route.plugin_config_id is not None:
            pc = self.plugin_configs.get(str(route.plugin_config_id))
            if pc is None:
                raise LookupError(f"plugin_config_id {str(route.plugin_config_id)!r} not "
                                  "found (or rejected)")
        if not (route.plugins or pc or (svc is not None and svc.plugins)):
            return EMPTY
        return self.builder.build(merge(svc.plugins if svc is not None else None, pc,
                                        route.plugins))


def upstream_plan(key: str, up: Upstream) -> UpstreamPlan:
    default_port = DEFAULT_PORTS.get(up.scheme, 80)
    nodes = tuple(Node(n.host, n.port or default_port, n.weight, n.priority)
                  for n in up.node_list())
    t = up.timeout
    kp = up.keepalive_pool
    tls = up.tls
    checks, bad_checks = plan_checks(up.checks)
    return UpstreamPlan(
        key=key, nodes=nodes, type=up.type, hash_on=up.hash_on,
        hash_key=up.key or "remote_addr", scheme=up.scheme, pass_host=up.pass_host,
        upstream_host=up.upstream_host,
        pool_size=kp.size if kp else 320,
        pool_idle_timeout=kp.idle_timeout if kp else 60.0,
        pool_requests=kp.requests if kp else 1000,
        tls_verify=tls.verify if tls else False,
        client_cert=tls.client_cert if tls else None,
        client_key=tls.client_key if tls else None,
        client_cert_id=str(tls.client_cert_id) if tls and tls.client_cert_id is not None
        else None,
        connect_timeout=t.connect if t else 60.0, send_timeout=t.send if t else 60.0,
        read_timeout=t.read if t else 60.0, stream_idle=t.read if t else 600.0,
        retries=up.retries, retry_timeout=up.retry_timeout or 0.0, checks=checks,
        bad_checks=bad_checks,
        discovery=watch_key(up.discovery_type, up.service_name, up.discovery_args)
        if up.discovery_type is not None and up.service_name is not None else None)


def compile_resources(res: Resources, router_kind: str = "radixtree_host_uri",
                      ps: PluginSet | None = None) -> Compiled:
    """``res`` compiled; plugins are checked and built with ``ps`` (none: no plugin is
    known, so a route that names one is rejected)."""
    ps = ps or PluginSet(Registry())
    rejected: list[Rejection] = []
    plans: dict[str, UpstreamPlan] = {}
    for uid, up in res.upstreams.items():
        plans[f"upstreams/{uid}"] = upstream_plan(f"upstreams/{uid}", up)
    services: dict[str, Service] = {}
    for sid, svc in res.services.items():
        err = _plugins_error(svc.plugins, ps)
        if err:
            rejected.append(Rejection("services", sid,
                                      res.path_of("services", sid) + ".plugins", err))
            continue
        if svc.upstream is not None:
            key = f"services/{sid}/upstream"
            plans[key] = upstream_plan(key, svc.upstream)
        services[sid] = svc

    compiled: dict[str, CompiledRoute] = {}
    specs: list[RouteSpec] = []
    for rid, route in res.routes.items():
        rsvc = services.get(str(route.service_id)) if route.service_id is not None else None
        if route.service_id is not None and rsvc is None:
            rejected.append(Rejection("routes", rid, res.path_of("routes", rid) + ".service_id",
                                      f"service_id {str(route.service_id)!r} was rejected"))
            continue
        try:
            chain = ps.route_chain(route, rsvc)
        except LookupError as e:
            rejected.append(Rejection("routes", rid, res.path_of("routes", rid) +
                                      ".plugin_config_id", str(e.args[0])))
            continue
        except ValueError as e:
            rejected.append(Rejection("routes", rid, res.path_of("routes", rid) + ".plugins",
                                      str(e)))
            continue
        err = plugin_plans(chain, plans)
        if err:
            rejected.append(Rejection("routes", rid, res.path_of("routes", rid) + ".plugins",
                                      err))
            continue
        cr = _compile_route(rid, route, rsvc, plans, chain)
        if route.status == 0:
            continue
        compiled[rid] = cr
        specs.append(route_spec(rid, route, rsvc, cr))
    router, bad = Router.build(specs, router_kind)
    for rid, msg in bad:
        compiled.pop(rid, None)
        rejected.append(Rejection("routes", rid, res.path_of("routes", rid), msg))
    return Compiled(router=router, routes=compiled, plans=plans, rejected=rejected)


_NO_METHODS: frozenset[str] = frozenset()


class _PlanSink(Protocol):
    """Where new plans go: a plans table (``key -> plan``, or a change: ``plan | None``)."""

    def __contains__(self, key: object, /) -> bool: ...

    def __setitem__(self, key: str, value: UpstreamPlan, /) -> None: ...


def plugin_plans(chain: Chain, plans: Any, out: _PlanSink | None = None) -> str | None:
    """Plans for the upstreams a chain's plugins declare (traffic-split's inline ones) that
    ``plans`` does not have yet, added to ``out`` (default: ``plans``); the error text when
    one is not a valid upstream."""
    if not chain.upstreams:
        return None
    target = plans if out is None else out
    for key, raw in chain.upstreams.items():
        if plans.get(key) is not None or key in target:
            continue
        up, rej = convert("upstreams", raw, key)
        if rej is not None:
            return f"upstream of plugin: {rej.message}"
        target[key] = upstream_plan(key, up)
    return None


def _plugins_error(plugins: dict[str, Any] | None, ps: PluginSet) -> str | None:
    """The registry's message for the first bad plugin entry (the Rejection has the path)."""
    return ps.builder.registry.check_plugins(plugins) if plugins else None


def _compile_route(rid: str, route: Route, svc: Service | None,
                   plans: dict[str, UpstreamPlan], chain: Chain = EMPTY) -> CompiledRoute:
    key: str | None = None
    if route.upstream is not None:
        key = f"routes/{rid}/upstream"
        plans[key] = upstream_plan(key, route.upstream)
    elif route.upstream_id is not None:
        key = f"upstreams/{route.upstream_id}"
    elif svc is not None and svc.upstream is not None:
        key = f"services/{svc.id}/upstream"
    elif svc is not None and svc.upstream_id is not None:
        key = f"upstreams/{svc.upstream_id}"
    plan = plans.get(key) if key else None
    t = route.timeout
    websocket = route.enable_websocket if route.enable_websocket is not None else \
        bool(svc and svc.enable_websocket)
    return CompiledRoute(
        id=rid, name=route.name, service_id=str(route.service_id) if route.service_id else None,
        upstream_key=key,
        connect_timeout=t.connect if t else (plan.connect_timeout if plan else 60.0),
        send_timeout=t.send if t else (plan.send_timeout if plan else 60.0),
        read_timeout=t.read if t else (plan.read_timeout if plan else 60.0),
        websocket=websocket, chain=chain, labels=route.labels,
        service_name=svc.name if svc is not None else None)


def route_spec(rid: str, route: Route, svc: Service | None, cr: CompiledRoute) -> RouteSpec:
    hosts = route.all_hosts() or (svc.hosts if svc and svc.hosts else ())
    return RouteSpec(
        rid, cr, (route.uri,) if route.uri is not None else tuple(route.uris or ()),
        tuple([h.lower() for h in hosts]) if hosts else (),
        frozenset(route.methods) if route.methods else _NO_METHODS,
        tuple(route.all_remote_addrs()) if route.remote_addr or route.remote_addrs else (),
        route.vars or None, route.priority)


# --------------------------------------------------------------------------- incremental
_TYPED = ("upstreams", "services", "routes")
#: kinds that carry plugins and compile into the snapshot beside the routing table
_PLUGIN_KINDS = ("consumers", "credentials", "consumer_groups", "plugin_configs",
                 "global_rules", "plugin_metadata")
_CONSUMER_KINDS = frozenset(("consumers", "credentials", "consumer_groups"))


class ConfigModel:
    """A worker's live configuration, updated one key at a time.

    ``load`` compiles a whole document (the bulk path above, fast at 100k routes) and keeps
    what an update needs: every well-formed route, service and upstream -- also those
    rejected for a missing reference, so they come back when it appears -- and reverse
    indexes (which routes use service S or upstream U).  ``apply`` then touches only what a
    change reaches: a changed upstream re-plans that upstream and re-compiles the routes and
    services that use it; a changed service its routes; a changed route itself.  The router
    is updated in place (``Router.update``); nothing else is rebuilt.  The result of any
    sequence of ``apply`` calls is the same as a ``load`` of the resulting document.
    """

    def __init__(self, router_kind: str = "radixtree_host_uri",
                 node: PluginHost | None = None,
                 alpns: tuple[tuple[str, ...], ...] = (HTTP11,)) -> None:
        self.kind = router_kind
        #: where the plugins and the keyring come from (none: no plugins)
        self.node = node
        #: every well-formed object by kind and id (valid or waiting for a reference)
        self.objs: dict[str, dict[str, Any]] = {k: {} for k in _TYPED}
        self.compiled: Compiled = compile_resources(Resources(), router_kind)
        #: services that compiled (reference and plugins fine)
        self.services: dict[str, Service] = {}
        self.svc_routes: dict[str, set[str]] = {}      # service id -> route ids naming it
        self.up_routes: dict[str, set[str]] = {}       # upstream id -> route ids (upstream_id)
        self.up_services: dict[str, set[str]] = {}     # upstream id -> service ids
        self.pc_routes: dict[str, set[str]] = {}       # plugin_config id -> route ids
        #: plugin-declared upstream plan key -> owners (route ids, "global")
        self.plugin_ups: dict[str, set[str]] = {}
        self.other: dict[str, Any] = {}                # other kinds: key -> raw value
        #: the plugin-bearing kinds by kind and id (raw values)
        self.extra: dict[str, dict[str, Any]] = {k: {} for k in _PLUGIN_KINDS}
        self.ps = self._plugin_set()
        #: ssl objects -> the SNI table (contexts for each ALPN list of the TLS listeners)
        self.alpns = alpns
        self.ssls = self._ssl_compiler()
        #: plan keys of the stream routes' inline upstreams
        self.stream_plans: set[str] = set()

    def _ssl_compiler(self) -> SslCompiler:
        keyring = self.node.keyring if self.node is not None else None
        return SslCompiler(self.alpns, keyring.open if keyring is not None else None)

    def _with_ssls(self, c: Compiled, puts: dict[str, Any], dels: set[str],
                   rejected: list[Rejection],
                   plans: dict[str, UpstreamPlan | None] | None = None) -> Compiled:
        """``c`` with the SNI table after ssl objects were put / deleted; upstream plans
        naming a changed object (``tls.client_cert_id``) take its certificate again (and
        go into ``plans``, the change for the runtimes)."""
        for oid, msg in self.ssls.update(puts, dels):
            rejected.append(Rejection("ssls", oid, f"ssls/{oid}", msg))
        touched = set(puts) | dels
        for key, plan in c.plans.items():
            if plan.client_cert_id is not None and plan.client_cert_id in touched:
                new = self._client_cert(plan, rejected)
                if new != plan:
                    c.plans[key] = new
                    if plans is not None:
                        plans[key] = new
        return replace(c, tls=self.ssls.table)

    def _client_cert(self, plan: UpstreamPlan, rejected: list[Rejection]) -> UpstreamPlan:
        """``plan`` with the certificate and key of its ``tls.client_cert_id`` (none when
        that ssl object is missing or not ``type: client``: APISIX answers such requests
        502; here the upstream sees no client certificate, and the compile reports it)."""
        cid = plan.client_cert_id
        assert cid is not None
        e = self.ssls.table.client_cert(cid)
        if e is None:
            rejected.append(Rejection("upstreams", None, plan.key + ".tls.client_cert_id",
                                      f"ssl [{cid}] not found or not of type client"))
            return replace(plan, client_cert=None, client_key=None)
        return replace(plan, client_cert=e.cert, client_key=e.key)

    def _resolve_certs(self, plans: dict[str, UpstreamPlan], out: Any,
                       rejected: list[Rejection]) -> None:
        """Plans in ``plans`` naming a client certificate by id get it (into ``out``)."""
        for key, plan in plans.items():
            if plan is not None and plan.client_cert_id is not None:
                out[key] = self._client_cert(plan, rejected)

    def _plugin_set(self) -> PluginSet:
        """A new builder on the node's current plugins: nothing cached from an old
        registry."""
        node = self.node
        return PluginSet(node.plugins, node.keyring) if node is not None \
            else PluginSet(Registry())

    # -- whole document ------------------------------------------------------------------
    def load(self, doc: Any) -> Compiled:
        res, rejected = parse_resources(doc)
        self.other = {}
        self.extra = {k: {} for k in _PLUGIN_KINDS}
        if isinstance(doc, dict):
            from .yaml_store import doc_to_items
            self.other = doc_to_items({k: v for k, v in doc.items() if k not in _TYPED})
            for key, value in self.other.items():
                kind, oid = split_key(key)
                if kind in self.extra:
                    self.extra[kind][oid] = value
        self.ps = self._plugin_set()
        self.ps.plugin_configs = self._plugin_configs(set(self.extra["plugin_configs"]),
                                                      rejected)
        compiled = compile_resources(res, self.kind, self.ps)
        compiled.rejected[:0] = rejected
        compiled = self._with_plugins(compiled, _PLUGIN_KINDS, compiled.rejected)
        self.ssls = self._ssl_compiler()
        compiled = self._with_ssls(compiled, {split_key(k)[1]: v for k, v in self.other.items()
                                              if k.startswith("ssls/")}, set(),
                                   compiled.rejected)
        self._resolve_certs(compiled.plans, compiled.plans, compiled.rejected)
        compiled = replace(compiled, protos=_protos(self.other))
        self.compiled = compiled
        objs = {k: dict(getattr(res, k)) for k in _TYPED}
        for kind, extra in res.dangling.items():
            for oid, obj in extra.items():
                objs[kind].setdefault(oid, obj)
        self.objs = objs
        bad_services = {r.id for r in compiled.rejected if r.kind == "services"}
        self.services = {sid: svc for sid, svc in res.services.items()
                         if sid not in bad_services}
        self.svc_routes, self.up_routes, self.up_services = {}, {}, {}
        self.pc_routes = {}
        self.plugin_ups = {}
        for rid, cr in compiled.routes.items():
            for key in cr.chain.upstreams:
                self.plugin_ups.setdefault(key, set()).add(rid)
        for key in compiled.global_chain.upstreams:
            self.plugin_ups.setdefault(key, set()).add("\0global")
        for sid, svc in objs["services"].items():
            self._index_service(sid, svc, True)
        for rid, route in objs["routes"].items():
            self._index_route(rid, route, True)
        self.stream_plans = set()
        compiled = self.compiled = self._with_stream(compiled, compiled.rejected)
        return compiled

    def _with_stream(self, c: Compiled, rejected: list[Rejection],
                     plans: dict[str, UpstreamPlan | None] | None = None) -> Compiled:
        """``c`` with the stream routes compiled again (all of them: they are few); their
        inline upstreams' plans go into ``c.plans`` and, when given, ``plans``."""
        raw = {split_key(k)[1]: v for k, v in self.other.items()
               if k.startswith("stream_routes/")}
        if not raw and not self.stream_plans and not len(c.stream):
            return c
        table, new, rej = compile_stream(
            raw, set(self.objs["upstreams"]), self.services,
            {k for k in c.plans if k.startswith("services/")}, self.ps.builder, upstream_plan)
        rejected.extend(rej)
        self._resolve_certs(new, new, rejected)
        for key in self.stream_plans - set(new):
            c.plans.pop(key, None)
            if plans is not None:
                plans[key] = None
        for key, plan in new.items():
            if c.plans.get(key) != plan:
                c.plans[key] = plan
                if plans is not None:
                    plans[key] = plan
        self.stream_plans = set(new)
        return replace(c, stream=table)

    # -- plugin-bearing kinds ------------------------------------------------------------
    def _plugin_configs(self, ids: set[str], rejected: list[Rejection]) -> dict[str, Any]:
        """plugin_configs with ``ids`` re-checked; the others kept as they were."""
        pcs = dict(self.ps.plugin_configs)
        reg = self.ps.builder.registry
        for pid in ids:
            pcs.pop(pid, None)
            raw = self.extra["plugin_configs"].get(pid)
            if raw is None:
                continue
            plugins = raw.get("plugins") if isinstance(raw, dict) else None
            if not isinstance(plugins, dict):
                rejected.append(Rejection("plugin_configs", pid, f"plugin_configs/{pid}",
                                          "plugins is required"))
                continue
            err = reg.check_plugins(plugins)
            if err:
                rejected.append(Rejection("plugin_configs", pid,
                                          f"plugin_configs/{pid}.plugins", err))
                continue
            pcs[pid] = plugins
        return pcs

    def _with_plugins(self, c: Compiled, kinds: Any, rejected: list[Rejection],
                      plans: dict[str, UpstreamPlan | None] | None = None) -> Compiled:
        """``c`` with the global chain, consumers and metadata rebuilt for changed kinds
        (plans of upstreams the global rules' plugins declare go into ``c.plans`` and, when
        given, ``plans``: the change for the runtimes)."""
        g, cons, meta = c.global_chain, c.consumers, c.metadata
        if "global_rules" in kinds:
            chains = []
            for gid in sorted(self.extra["global_rules"]):
                raw = self.extra["global_rules"][gid]
                plugins = raw.get("plugins") if isinstance(raw, dict) else None
                try:
                    chains.append(self.ps.builder.build(plugins if isinstance(plugins, dict)
                                                        else None))
                except ValueError as e:
                    rejected.append(Rejection("global_rules", gid,
                                              f"global_rules/{gid}.plugins", str(e)))
            g = concat(chains)
            for key in c.global_chain.upstreams:
                _index(self.plugin_ups, key, "\0global", False)
            new: dict[str, UpstreamPlan] = {}
            err = plugin_plans(g, c.plans, new)
            if err:
                rejected.append(Rejection("global_rules", None, "global_rules.plugins", err))
                g = c.global_chain
            else:
                for key in g.upstreams:
                    _index(self.plugin_ups, key, "\0global", True)
                c.plans.update(new)
                if plans is not None:
                    plans.update(new)
                for key in c.global_chain.upstreams:
                    if key not in self.plugin_ups:
                        c.plans.pop(key, None)
                        if plans is not None:
                            plans[key] = None
        if _CONSUMER_KINDS & set(kinds):
            cons, rej = compile_consumers(self.extra["consumers"], self.extra["credentials"],
                                          self.extra["consumer_groups"], self.ps.builder)
            rejected.extend(rej)
        if "plugin_metadata" in kinds:
            meta = {}
            reg = self.ps.builder.registry
            for name, raw in self.extra["plugin_metadata"].items():
                spec = reg.get(name)
                if spec is None:
                    rejected.append(Rejection("plugin_metadata", name,
                                              f"plugin_metadata/{name}",
                                              f"unknown plugin [{name}]"))
                    continue
                conf = decrypt_fields(
                    {k: v for k, v in raw.items() if k != "id"}, spec.encrypt_fields,
                    self.ps.builder.keyring) if isinstance(raw, dict) else raw
                try:
                    checked = spec.check_conf(conf, "metadata")
                    meta[name] = spec.prepare_metadata(checked) if spec.prepare_metadata \
                        else checked
                except ValueError as e:
                    rejected.append(Rejection("plugin_metadata", name,
                                              f"plugin_metadata/{name}", str(e)))
        return Compiled(router=c.router, routes=c.routes, plans=c.plans, rejected=rejected,
                        global_chain=g, consumers=cons, metadata=meta, tls=c.tls,
                        protos=c.protos, stream=c.stream)

    # -- one change at a time ------------------------------------------------------------
    def apply(self, puts: list[tuple[str, Any]], dels: list[str]) -> tuple[
            Compiled, dict[str, UpstreamPlan | None]]:
        """Apply changed keys (``"routes/1"``); returns the snapshot's Compiled (router
        updated in place) with this change's rejections, and the upstream plans that
        changed (None: removed) for ``Runtimes.update``."""
        rejected: list[Rejection] = []
        changed: dict[str, dict[str, Any | None]] = {k: {} for k in _TYPED}
        extra_hit: dict[str, set[str]] = {}
        for key in dels:
            kind, _, oid = key.partition("/")
            if kind in changed:
                changed[kind][oid] = None
            else:
                self.other.pop(key, None)
                kind, oid = split_key(key)
                if kind in self.extra:
                    self.extra[kind].pop(oid, None)
                    extra_hit.setdefault(kind, set()).add(oid)
        for key, value in puts:
            kind, _, oid = key.partition("/")
            if kind not in changed:
                self.other[key] = value
                kind, oid = split_key(key)
                if kind in self.extra:
                    self.extra[kind][oid] = value
                    extra_hit.setdefault(kind, set()).add(oid)
                continue
            obj, rej = convert(kind, value, key, oid) if isinstance(value, dict) else \
                (None, Rejection(kind, oid, key, "must be a mapping"))
            if rej is not None:
                rejected.append(rej)
            changed[kind][oid] = obj             # None: unusable, treated as absent

        # what the change reaches
        plans: dict[str, UpstreamPlan | None] = {}
        routes_hit: set[str] = set(changed["routes"])
        if "plugin_configs" in extra_hit:
            pids = extra_hit["plugin_configs"]
            self.ps.plugin_configs = self._plugin_configs(pids, rejected)
            for pid in pids:
                routes_hit |= self.pc_routes.get(pid, set())
        services_hit: set[str] = set(changed["services"])
        for uid, up in changed["upstreams"].items():
            self._put_obj("upstreams", uid, up)
            key = f"upstreams/{uid}"
            plans[key] = upstream_plan(key, up) if up is not None else None
            routes_hit |= self.up_routes.get(uid, set())
            services_hit |= self.up_services.get(uid, set())
        for sid in changed["services"]:
            old = self.objs["services"].get(sid)
            if old is not None:
                self._index_service(sid, old, False)
            svc = changed["services"][sid]
            self._put_obj("services", sid, svc)
            if svc is not None:
                self._index_service(sid, svc, True)
        for sid in services_hit:
            routes_hit |= self.svc_routes.get(sid, set())
            self._compile_service(sid, plans, rejected)
        for rid in changed["routes"]:
            old = self.objs["routes"].get(rid)
            if old is not None:
                self._index_route(rid, old, False)
            route = changed["routes"][rid]
            self._put_obj("routes", rid, route)
            if route is not None:
                self._index_route(rid, route, True)

        # re-compile the routes reached
        c = self.compiled
        view = _Overlay(c.plans, plans)
        specs: list[RouteSpec] = []
        released: set[str] = set()
        for rid in sorted(routes_hit):            # new equal-priority routes: stable order
            old_cr = c.routes.pop(rid, None)
            if old_cr is not None and old_cr.upstream_key == f"routes/{rid}/upstream":
                plans.setdefault(old_cr.upstream_key, None)
            if old_cr is not None:
                for key in old_cr.chain.upstreams:
                    _index(self.plugin_ups, key, rid, False)
                    released.add(key)
            route = self.objs["routes"].get(rid)
            if route is None:
                continue
            err = self._route_error(rid, route)
            if err:
                rejected.append(Rejection("routes", rid, f"routes/{rid}.{err[0]}", err[1]))
                continue
            svc = self.services.get(str(route.service_id)) \
                if route.service_id is not None else None
            try:
                chain = self.ps.route_chain(route, svc)
            except LookupError as e:
                rejected.append(Rejection("routes", rid, f"routes/{rid}.plugin_config_id",
                                          str(e.args[0])))
                continue
            except ValueError as e:
                rejected.append(Rejection("routes", rid, f"routes/{rid}.plugins", str(e)))
                continue
            perr = plugin_plans(chain, view, plans)
            if perr:
                rejected.append(Rejection("routes", rid, f"routes/{rid}.plugins", perr))
                continue
            for key in chain.upstreams:
                _index(self.plugin_ups, key, rid, True)
            if route.upstream is not None:
                local: dict[str, UpstreamPlan] = {}
                cr = _compile_route(rid, route, svc, local, chain)
                plans.update(local)
            else:                                 # only reads plans (timeouts)
                cr = _compile_route(rid, route, svc, view, chain)  # type: ignore[arg-type]
            if route.status == 0:
                continue
            c.routes[rid] = cr
            specs.append(route_spec(rid, route, svc, cr))
        for key in released:                      # plugin upstreams no route uses any more
            if key not in self.plugin_ups and plans.get(key) is None:
                plans[key] = None
        for key, plan in plans.items():
            if plan is None:
                c.plans.pop(key, None)
            else:
                c.plans[key] = plan
        bad = c.router.update(routes_hit, specs)
        for rid, msg in bad:
            c.routes.pop(rid, None)
            rejected.append(Rejection("routes", rid, f"routes/{rid}", msg))
        c = self._with_plugins(c, extra_hit, rejected, plans)
        if any(k.startswith("protos/") for k, _ in puts) or \
                any(k.startswith("protos/") for k in dels):
            c = replace(c, protos=_protos(self.other))
        ssl_puts = {k[5:]: v for k, v in puts if k.startswith("ssls/")}
        ssl_dels = {k[5:] for k in dels if k.startswith("ssls/")}
        if ssl_puts or ssl_dels:
            c = self._with_ssls(c, ssl_puts, ssl_dels, rejected, plans)
        if any(k.startswith(_STREAM_DEPS) for k in dels) or \
                any(k.startswith(_STREAM_DEPS) for k, _ in puts):
            c = self._with_stream(c, rejected, plans)
        new_plans = {k: p for k, p in plans.items() if p is not None}
        self._resolve_certs(new_plans, plans, rejected)
        self._resolve_certs(new_plans, c.plans, [])
        self.compiled = c
        return self.compiled, plans

    # -- helpers -------------------------------------------------------------------------
    def _put_obj(self, kind: str, oid: str, obj: Any) -> None:
        if obj is None:
            self.objs[kind].pop(oid, None)
        else:
            self.objs[kind][oid] = obj

    def _compile_service(self, sid: str, plans: dict[str, UpstreamPlan | None],
                         rejected: list[Rejection]) -> None:
        key = f"services/{sid}/upstream"
        self.services.pop(sid, None)
        plans[key] = None
        svc = self.objs["services"].get(sid)
        if svc is None:
            return
        ref = ref_error(svc, self.objs["upstreams"].__contains__, _never)
        if ref:
            rejected.append(Rejection("services", sid, f"services/{sid}.{ref[0]}", ref[1]))
            return
        err = _plugins_error(svc.plugins, self.ps)
        if err:
            rejected.append(Rejection("services", sid, f"services/{sid}.plugins", err))
            return
        if svc.upstream is not None:
            plans[key] = upstream_plan(key, svc.upstream)
        self.services[sid] = svc

    def _route_error(self, rid: str, route: Route) -> tuple[str, str] | None:
        ups = self.objs["upstreams"]
        svcs = self.objs["services"]
        ref = ref_error(route, ups.__contains__, lambda sid: sid in svcs and ref_error(
            svcs[sid], ups.__contains__, _never) is None)
        if ref:
            return ref
        if route.service_id is not None:
            sid = str(route.service_id)
            if sid not in self.services:
                return "service_id", f"service_id {sid!r} was rejected"
        return None

    def _index_service(self, sid: str, svc: Service, add: bool) -> None:
        if svc.upstream_id is not None:
            _index(self.up_services, str(svc.upstream_id), sid, add)

    def _index_route(self, rid: str, route: Route, add: bool) -> None:
        if route.service_id is not None:
            _index(self.svc_routes, str(route.service_id), rid, add)
        if route.upstream_id is not None:
            _index(self.up_routes, str(route.upstream_id), rid, add)
        if route.plugin_config_id is not None:
            _index(self.pc_routes, str(route.plugin_config_id), rid, add)


#: what a stream route reads: a change to one of these compiles the stream routes again
_STREAM_DEPS = ("stream_routes/", "upstreams/", "services/", "plugin_metadata/", "ssls/")


def _never(_oid: str) -> bool:
    return False


class _Overlay:
    """Plans as they will be after a change, read by key without copying 100k of them."""

    __slots__ = ("base", "top")

    def __init__(self, base: dict[str, UpstreamPlan],
                 top: dict[str, UpstreamPlan | None]) -> None:
        self.base = base
        self.top = top

    def get(self, key: str) -> UpstreamPlan | None:
        if key in self.top:
            return self.top[key]
        return self.base.get(key)


def _index(idx: dict[str, set[str]], key: str, member: str, add: bool) -> None:
    s = idx.get(key)
    if add:
        if s is None:
            idx[key] = {member}
        else:
            s.add(member)
    elif s is not None:
        s.discard(member)
        if not s:
            del idx[key]
