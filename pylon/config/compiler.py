"""Resources → compiled, immutable routing tables.  A pure function of its inputs.

Precedence (APISIX): a route's own fields over its service's; upstream from the route's inline
``upstream``, then ``upstream_id``, then the service's inline ``upstream``, then its
``upstream_id``; a route's ``timeout`` over its upstream's.  Routes with ``status: 0`` are
compiled out.  Anything that cannot be compiled is rejected with its id and path and the rest
still applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..model.route import Route, Service
from ..model.upstream import DEFAULT_PORTS, Upstream
from ..model.validate import Rejection, Resources, convert, parse_resources, ref_error
from ..proxy.chain import EMPTY, Chain
from ..proxy.registry import check_plugins
from ..routing.router import Router, RouteSpec
from ..upstream.balancer import Node
from ..upstream.runtime import UpstreamPlan


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


@dataclass(frozen=True, slots=True)
class Compiled:
    router: Router
    routes: dict[str, CompiledRoute]
    plans: dict[str, UpstreamPlan]
    rejected: list[Rejection] = field(default_factory=list)


def upstream_plan(key: str, up: Upstream, route_timeout: Any = None) -> UpstreamPlan:
    default_port = DEFAULT_PORTS.get(up.scheme, 80)
    nodes = tuple(Node(n.host, n.port or default_port, n.weight, n.priority)
                  for n in up.node_list())
    t = up.timeout
    kp = up.keepalive_pool
    tls = up.tls
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
        connect_timeout=t.connect if t else 60.0, send_timeout=t.send if t else 60.0,
        read_timeout=t.read if t else 60.0,
        retries=up.retries, retry_timeout=up.retry_timeout or 0.0, checks=up.checks)


def compile_resources(res: Resources, router_kind: str = "radixtree_host_uri") -> Compiled:
    rejected: list[Rejection] = []
    plans: dict[str, UpstreamPlan] = {}
    for uid, up in res.upstreams.items():
        plans[f"upstreams/{uid}"] = upstream_plan(f"upstreams/{uid}", up)
    services: dict[str, Service] = {}
    for sid, svc in res.services.items():
        err = _plugins_error(svc.plugins)
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
        svc = services.get(str(route.service_id)) if route.service_id is not None else None
        if route.service_id is not None and svc is None:
            rejected.append(Rejection("routes", rid, res.path_of("routes", rid) + ".service_id",
                                      f"service_id {str(route.service_id)!r} was rejected"))
            continue
        err = _plugins_error(route.plugins) if route.plugins else None
        if err:
            rejected.append(Rejection("routes", rid, res.path_of("routes", rid) + ".plugins", err))
            continue
        cr = _compile_route(rid, route, svc, plans)
        if route.status == 0:
            continue
        compiled[rid] = cr
        specs.append(route_spec(rid, route, svc, cr))
    router, bad = Router.build(specs, router_kind)
    for rid, msg in bad:
        compiled.pop(rid, None)
        rejected.append(Rejection("routes", rid, res.path_of("routes", rid), msg))
    return Compiled(router=router, routes=compiled, plans=plans, rejected=rejected)


_NO_METHODS: frozenset[str] = frozenset()


def _plugins_error(plugins: dict[str, Any] | None) -> str | None:
    """The registry's message without its path prefix (the Rejection carries the path)."""
    err = check_plugins(plugins, "plugins")
    return err.removeprefix("plugins: ") if err else None


def _compile_route(rid: str, route: Route, svc: Service | None,
                   plans: dict[str, UpstreamPlan]) -> CompiledRoute:
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
        websocket=websocket, chain=EMPTY, labels=route.labels)


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

    def __init__(self, router_kind: str = "radixtree_host_uri") -> None:
        self.kind = router_kind
        #: every well-formed object by kind and id (valid or waiting for a reference)
        self.objs: dict[str, dict[str, Any]] = {k: {} for k in _TYPED}
        self.compiled: Compiled = compile_resources(Resources(), router_kind)
        #: services that compiled (reference and plugins fine)
        self.services: dict[str, Service] = {}
        self.svc_routes: dict[str, set[str]] = {}      # service id -> route ids naming it
        self.up_routes: dict[str, set[str]] = {}       # upstream id -> route ids (upstream_id)
        self.up_services: dict[str, set[str]] = {}     # upstream id -> service ids
        self.other: dict[str, Any] = {}                # other kinds: key -> raw value

    # -- whole document ------------------------------------------------------------------
    def load(self, doc: Any) -> Compiled:
        res, rejected = parse_resources(doc)
        compiled = compile_resources(res, self.kind)
        compiled.rejected[:0] = rejected
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
        for sid, svc in objs["services"].items():
            self._index_service(sid, svc, True)
        for rid, route in objs["routes"].items():
            self._index_route(rid, route, True)
        self.other = {}
        if isinstance(doc, dict):
            from .yaml_store import doc_to_items
            self.other = doc_to_items({k: v for k, v in doc.items() if k not in _TYPED})
        return compiled

    # -- one change at a time ------------------------------------------------------------
    def apply(self, puts: list[tuple[str, Any]], dels: list[str]) -> tuple[
            Compiled, dict[str, UpstreamPlan | None]]:
        """Apply changed keys (``"routes/1"``); returns the snapshot's Compiled (router
        updated in place) with this change's rejections, and the upstream plans that
        changed (None: removed) for ``Runtimes.update``."""
        rejected: list[Rejection] = []
        changed: dict[str, dict[str, Any | None]] = {k: {} for k in _TYPED}
        for key in dels:
            kind, _, oid = key.partition("/")
            if kind in changed:
                changed[kind][oid] = None
            else:
                self.other.pop(key, None)
        for key, value in puts:
            kind, _, oid = key.partition("/")
            if kind not in changed:
                self.other[key] = value
                continue
            obj, rej = convert(kind, value, key, oid) if isinstance(value, dict) else \
                (None, Rejection(kind, oid, key, "must be a mapping"))
            if rej is not None:
                rejected.append(rej)
            changed[kind][oid] = obj             # None: unusable, treated as absent

        # what the change reaches
        plans: dict[str, UpstreamPlan | None] = {}
        routes_hit: set[str] = set(changed["routes"])
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
        for rid in sorted(routes_hit):            # new equal-priority routes: stable order
            old_cr = c.routes.pop(rid, None)
            if old_cr is not None and old_cr.upstream_key == f"routes/{rid}/upstream":
                plans.setdefault(old_cr.upstream_key, None)
            route = self.objs["routes"].get(rid)
            if route is None:
                continue
            err = self._route_error(rid, route)
            if err:
                rejected.append(Rejection("routes", rid, f"routes/{rid}.{err[0]}", err[1]))
                continue
            svc = self.services.get(str(route.service_id)) \
                if route.service_id is not None else None
            if route.upstream is not None:
                local: dict[str, UpstreamPlan] = {}
                cr = _compile_route(rid, route, svc, local)
                plans.update(local)
            else:                                 # only reads plans (timeouts)
                cr = _compile_route(rid, route, svc, view)  # type: ignore[arg-type]
            if route.status == 0:
                continue
            c.routes[rid] = cr
            specs.append(route_spec(rid, route, svc, cr))
        for key, plan in plans.items():
            if plan is None:
                c.plans.pop(key, None)
            else:
                c.plans[key] = plan
        bad = c.router.update(routes_hit, specs)
        for rid, msg in bad:
            c.routes.pop(rid, None)
            rejected.append(Rejection("routes", rid, f"routes/{rid}", msg))
        self.compiled = Compiled(router=c.router, routes=c.routes, plans=c.plans,
                                 rejected=rejected)
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
        err = _plugins_error(svc.plugins)
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
        err = _plugins_error(route.plugins) if route.plugins else None
        if err:
            return "plugins", err
        return None

    def _index_service(self, sid: str, svc: Service, add: bool) -> None:
        if svc.upstream_id is not None:
            _index(self.up_services, str(svc.upstream_id), sid, add)

    def _index_route(self, rid: str, route: Route, add: bool) -> None:
        if route.service_id is not None:
            _index(self.svc_routes, str(route.service_id), rid, add)
        if route.upstream_id is not None:
            _index(self.up_routes, str(route.upstream_id), rid, add)


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
