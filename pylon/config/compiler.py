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
from ..model.validate import Rejection, Resources
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
        hosts = route.all_hosts() or (svc.hosts if svc and svc.hosts else ())
        specs.append(RouteSpec(
            rid, cr, (route.uri,) if route.uri is not None else tuple(route.uris or ()),
            tuple([h.lower() for h in hosts]) if hosts else (),
            frozenset(route.methods) if route.methods else _NO_METHODS,
            tuple(route.all_remote_addrs()) if route.remote_addr or route.remote_addrs else (),
            route.vars or None, route.priority))
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
