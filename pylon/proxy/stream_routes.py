"""Stream routes (``stream_routes``) compiled into an immutable matcher (docs/stream.md).

APISIX's stream router (``apisix/stream/router/ip_port.lua``): routes with an ``sni`` are
looked up by the connection's TLS server name (exact names before ``*.`` wildcards, the
longest wildcard first); the others are tried in order (APISIX: the order it read them from
etcd, i.e. by key) and the first whose ``remote_addr`` / ``server_addr`` (an address or a
CIDR) and ``server_port`` all match wins; a route without any of them matches every
connection.  No match: the connection is closed ("not hit any route").

A route's upstream: its inline ``upstream``, else ``upstream_id``, else its service's (inline,
then ``upstream_id``); its plugins: the service's merged with its own (the route's win), as
APISIX's ``merge_service_stream_route``.  Stream routes are few; the whole table is rebuilt
when a stream route, upstream, service or plugin changes (``StreamCompiler``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..model.schemas import fmt_problem, schema_problem, validator
from ..model.validate import Rejection, convert
from ..routing.expr import ExprError, IpMatcher
from ..upstream.runtime import UpstreamPlan
from .chain import STREAM_EMPTY, ChainBuilder, StreamChain, merge

PlanFn = Callable[[str, Any], UpstreamPlan]


class StreamRoute:
    __slots__ = ("chain", "id", "remote_addr", "server_addr", "server_port", "service_id",
                 "sni", "upstream_key")

    def __init__(self, rid: str, remote_addr: IpMatcher | None, server_addr: IpMatcher | None,
                 server_port: int | None, sni: str | None, upstream_key: str | None,
                 chain: StreamChain, service_id: str | None = None) -> None:
        self.id = rid
        self.service_id = service_id
        self.remote_addr = remote_addr
        self.server_addr = server_addr
        self.server_port = server_port
        self.sni = sni
        self.upstream_key = upstream_key
        self.chain = chain

    def hits(self, remote: str, server: str, port: int) -> bool:
        return (self.server_port is None or self.server_port == port) and \
            (self.remote_addr is None or self.remote_addr.match(remote)) and \
            (self.server_addr is None or self.server_addr.match(server))


class StreamTable:
    """The stream routes of one snapshot; ``match`` runs once per connection."""

    __slots__ = ("by_sni", "plain", "wild")

    def __init__(self, routes: list[StreamRoute]) -> None:
        self.plain = tuple(r for r in routes if r.sni is None)
        self.by_sni: dict[str, list[StreamRoute]] = {}
        wild: list[tuple[str, StreamRoute]] = []
        for r in routes:
            if r.sni is None:
                continue
            name = r.sni.lower()
            if name.startswith("*"):
                wild.append((name[1:], r))          # "*.a.com" -> suffix ".a.com"
            else:
                self.by_sni.setdefault(name, []).append(r)
        wild.sort(key=lambda w: -len(w[0]))
        self.wild = tuple(wild)

    @property
    def wants_sni(self) -> bool:
        """Some route is chosen by TLS server name: a plain listener peeks the ClientHello."""
        return bool(self.by_sni or self.wild)

    def match(self, remote: str, server: str, port: int, sni: str | None
              ) -> StreamRoute | None:
        if sni is not None and (self.by_sni or self.wild):
            name = sni.lower()
            for r in self.by_sni.get(name, ()):
                if r.hits(remote, server, port):
                    return r
            for suffix, r in self.wild:
                if name.endswith(suffix) and len(name) > len(suffix) and \
                        r.hits(remote, server, port):
                    return r
        for r in self.plain:
            if r.hits(remote, server, port):
                return r
        return None

    def __len__(self) -> int:
        return len(self.plain) + sum(map(len, self.by_sni.values())) + len(self.wild)


EMPTY_STREAM = StreamTable([])
_SCHEMA = validator("stream_routes")


def compile_stream(raw: dict[str, Any], upstream_ids: set[str],
                   services: dict[str, Any], service_plans: set[str],
                   builder: ChainBuilder, plan_of: PlanFn
                   ) -> tuple[StreamTable, dict[str, UpstreamPlan], list[Rejection]]:
    """``raw`` (id -> stream route as stored) compiled; also the plans of the inline
    upstreams (``stream_routes/<id>/upstream``) and what was rejected.  ``services``: the
    usable services by id (their typed objects), ``service_plans``: the plan keys of
    services' inline upstreams."""
    routes: list[StreamRoute] = []
    plans: dict[str, UpstreamPlan] = {}
    rejected: list[Rejection] = []
    for rid in sorted(raw):
        conf = raw[rid]
        path = f"stream_routes/{rid}"
        try:
            route, plan = _compile_one(rid, conf, upstream_ids, services, service_plans,
                                       builder, plan_of)
        except ValueError as e:
            rejected.append(Rejection("stream_routes", rid, path, str(e)))
            continue
        if plan is not None:
            plans[plan.key] = plan
        routes.append(route)
    return StreamTable(routes), plans, rejected


def _compile_one(rid: str, conf: Any, upstream_ids: set[str], services: dict[str, Any],
                 service_plans: set[str], builder: ChainBuilder, plan_of: PlanFn
                 ) -> tuple[StreamRoute, UpstreamPlan | None]:
    if not isinstance(conf, dict):
        raise ValueError("must be a mapping")  # noqa: TRY004 (a rejection, not a bug)
    err = fmt_problem(schema_problem(_SCHEMA, conf))
    if err is not None:
        raise ValueError(err)
    protocol = conf.get("protocol")           # (the schema made it a mapping)
    if protocol is not None:                  # APISIX with no xRPC protocol enabled
        raise ValueError(f"unknown protocol [{protocol.get('name')}] (Pylon has no xRPC "
                         "protocols)")
    svc = None
    if conf.get("service_id") is not None:
        sid = str(conf["service_id"])
        svc = services.get(sid)
        if svc is None:
            raise ValueError(f"service_id {sid!r} not found (or rejected)")
    plan = None
    key: str | None = None
    if conf.get("upstream") is not None:
        up, rej = convert("upstreams", conf["upstream"], f"stream_routes/{rid}.upstream")
        if rej is not None:
            raise ValueError(f"upstream: {rej.message}")
        key = f"stream_routes/{rid}/upstream"
        plan = plan_of(key, up)
    elif conf.get("upstream_id") is not None:
        uid = str(conf["upstream_id"])
        if uid not in upstream_ids:
            raise ValueError(f"upstream_id {uid!r} not found")
        key = f"upstreams/{uid}"
    elif svc is not None:
        if f"services/{svc.id}/upstream" in service_plans:
            key = f"services/{svc.id}/upstream"
        elif svc.upstream_id is not None and str(svc.upstream_id) in upstream_ids:
            key = f"upstreams/{svc.upstream_id}"
    plugins = merge(svc.plugins if svc is not None else None, conf.get("plugins"))
    chain = builder.build_stream(plugins) if plugins else STREAM_EMPTY
    try:
        remote = IpMatcher(conf["remote_addr"], "remote_addr") \
            if conf.get("remote_addr") else None
        server = IpMatcher(conf["server_addr"], "server_addr") \
            if conf.get("server_addr") else None
    except ExprError as e:
        raise ValueError(e.message) from None
    return StreamRoute(rid, remote, server, conf.get("server_port"), conf.get("sni"), key,
                       chain, str(svc.id) if svc is not None else None), plan
