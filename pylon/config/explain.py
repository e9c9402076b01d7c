"""Why a request matches the route it matches (``GET /apisix/admin/explain``, ``pylon explain``).

The verdict is the real router's: ``compiled.router.match`` on the request described by the
query.  The explanation is per candidate route -- every route one of whose uri patterns
matches the path -- each condition evaluated on its own by a one-route ``Router`` of the same
kind (so the wording can never disagree with the router): the uri alone, then with the
methods, the hosts (a route's own, else its service's), the remote addresses, and each
``vars`` rule.  A candidate whose conditions all pass but that lost is ``shadowed``, with the
rule that made the winner come first (host tier, exact before prefix, longer prefix,
priority, longer pattern, configuration order).

Query keys: ``uri`` (required; may carry ``?a=1``), ``method`` (GET), ``host``,
``remote_addr`` (127.0.0.1), ``header_<name>``, ``arg_<name>``, ``cookie_<name>``,
``verbose=1`` (also list, up to ``VERBOSE_CAP``, the routes whose uri does not match).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from ..model.route import Route, Service
from ..proxy.registry import Registry
from ..routing.router import Match, Router, RouterError, RouteSpec
from .compiler import Compiled

VERBOSE_CAP = 200


# ----------------------------------------------------------------------------- the request

@dataclass(slots=True)
class RequestVars:
    """A ``VarSource`` (``src.var(name)``) for the described request."""

    method: str
    host: str
    path: str
    query_string: str
    remote_addr: str
    headers: dict[str, str] = field(default_factory=dict)   # lower-case, "-" separated
    args: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)

    def var(self, name: str) -> str | None:
        if name.startswith("arg_"):
            return self.args.get(name[4:])
        if name.startswith("http_"):
            return self.headers.get(name[5:].lower().replace("_", "-"))
        if name.startswith("cookie_"):
            return self.cookies.get(name[7:])
        if name == "uri":
            return self.path
        if name == "request_uri":
            return self.path + ("?" + self.query_string if self.query_string else "")
        if name == "host":
            return self.host
        if name == "remote_addr":
            return self.remote_addr
        if name == "request_method":
            return self.method
        if name in ("query_string", "args"):
            return self.query_string
        if name == "scheme":
            return "http"
        if name == "server_protocol":
            return "HTTP/1.1"
        return None


def parse_request(query: Mapping[str, str]) -> RequestVars:
    """The request the query describes; ValueError when ``uri`` is missing or bad."""
    from ..wire.head import host_of, normalize_path

    raw = query.get("uri")
    if not raw:
        raise ValueError("missing uri")
    raw_path, _, qs = raw.partition("?")
    if not raw_path.startswith("/"):
        raw_path = "/" + raw_path
    try:
        path = normalize_path(raw_path.encode("utf-8"))
    except ValueError as e:
        raise ValueError(f"bad uri {raw!r}: {e}") from None
    headers: dict[str, str] = {}
    args: dict[str, str] = {}
    cookies: dict[str, str] = {}
    for k, v in parse_qsl(qs, keep_blank_values=True):
        args.setdefault(k, v)
    extra_args: list[tuple[str, str]] = []
    for k, v in query.items():
        if k.startswith("header_") and len(k) > 7:
            headers[k[7:].lower().replace("_", "-")] = v
        elif k.startswith("arg_") and len(k) > 4:
            args[k[4:]] = v
            extra_args.append((k[4:], v))
        elif k.startswith("cookie_") and len(k) > 7:
            cookies[k[7:]] = v
    for part in headers.get("cookie", "").split(";"):
        ck, sep, cv = part.strip().partition("=")
        if ck and sep:
            cookies.setdefault(ck, cv)
    if extra_args:
        qs = "&".join(p for p in (qs, urlencode(extra_args)) if p)
    host_raw = query.get("host") or headers.get("host") or ""
    host = host_of(host_raw.encode("latin-1", "replace")) if host_raw else ""
    if host and "host" not in headers:
        headers["host"] = host_raw
    return RequestVars(method=(query.get("method") or "GET").upper(), host=host, path=path,
                       query_string=qs, remote_addr=query.get("remote_addr") or "127.0.0.1",
                       headers=headers, args=args, cookies=cookies)


# ---------------------------------------------------------------------------- uri patterns

class _Patterns:
    """Does a uri pattern match the path; what kind of pattern is it.  Uses the router's own
    parser when it has the expected shape, else one-route routers (slower, same answers)."""

    def __init__(self, router_kind: str) -> None:
        self.kind = router_kind
        self.with_params = router_kind == "radixtree_uri_with_parameter"
        self.cache: dict[str, tuple[bool, str, Any] | None] = {}
        try:
            from ..routing.router import _parse_uri

            probe = _parse_uri("/a/*", False)
            self.parse: Callable[[str, bool], Any] | None = \
                _parse_uri if isinstance(probe, tuple) and len(probe) == 5 else None
        except Exception:  # noqa: BLE001 - the router was reorganised: use routers
            self.parse = None

    def info(self, pattern: str) -> tuple[bool, str, Any] | None:
        """(exact, literal key, tail regex) or None when the pattern does not parse."""
        if pattern in self.cache:
            return self.cache[pattern]
        res: tuple[bool, str, Any] | None
        if self.parse is not None:
            try:
                _p, exact, key, rx, _names = self.parse(pattern, self.with_params)
                res = (bool(exact), key, rx)
            except Exception:  # noqa: BLE001 - a pattern the router refuses matches nothing
                res = None
        else:
            star = pattern.find("*")
            colon = pattern.find("/:") if self.with_params else -1
            cut = min(i for i in (star, colon + 1 if colon >= 0 else -1, len(pattern))
                      if i >= 0)
            res = (cut == len(pattern), pattern[:cut], None)
        if len(self.cache) < 100_000:
            self.cache[pattern] = res
        return res

    def hits(self, pattern: str, path: str) -> bool:
        info = self.info(pattern)
        if info is None:
            return False
        exact, key, rx = info
        if self.parse is None:
            return _one(RouteSpec(id="p", payload=None, uris=(pattern,)), self.kind,
                        RequestVars("GET", "", path, "", "127.0.0.1")) is not None
        if exact:
            return path == key
        if not path.startswith(key):
            return False
        return rx is None or rx.fullmatch(path, len(key)) is not None

    def exact(self, pattern: str) -> bool:
        info = self.info(pattern)
        return bool(info and info[0])

    def key(self, pattern: str) -> str:
        info = self.info(pattern)
        return info[1] if info else pattern


def _one(spec: RouteSpec, kind: str, req: RequestVars) -> Match | None:
    """The verdict of a router holding ``spec`` alone (RouterError when it is refused)."""
    router = Router([spec], kind)
    return router.match(req.method, req.host, req.path, req, req.remote_addr)


# ----------------------------------------------------------------------------- the verdict

def explain(routes: Mapping[str, Route], services: Mapping[str, Service], compiled: Compiled,
            router_kind: str, query: Mapping[str, str]) -> dict[str, Any]:
    """Explain the match of the request ``query`` describes (see the module docstring).
    ``routes``/``services`` are the parsed resources the ``compiled`` snapshot was built
    from.  ValueError when the query has no (or a bad) ``uri``."""
    req = parse_request(query)
    verbose = str(query.get("verbose", "")).lower() in ("1", "true", "yes")
    m = compiled.router.match(req.method, req.host, req.path, req, req.remote_addr)
    pats = _Patterns(router_kind)
    rejected = {r.id: r for r in compiled.rejected if r.kind == "routes" and r.id is not None}

    candidates: list[dict[str, Any]] = []
    misses: list[dict[str, Any]] = []
    not_listed = 0
    order = {rid: i for i, rid in enumerate(routes)}
    for rid, route in routes.items():
        uris = route.all_uris()
        hit = [u for u in uris if pats.hits(u, req.path)]
        if not hit:
            not_listed += 1
            if verbose and len(misses) < VERBOSE_CAP:
                misses.append({"route_id": rid, "name": route.name, "uri": uris,
                               "priority": route.priority, "result": "not matched",
                               "reasons": [f"uri {req.path} does not match {_list(uris)}"]})
            continue
        candidates.append(_candidate(rid, route, hit, services, compiled, router_kind, req,
                                     m, routes, rejected, pats))
    rank = {"matched": 0, "shadowed": 1, "not matched": 2}
    candidates.sort(key=lambda c: (rank[c["result"]], -c["priority"], order[c["route_id"]]))
    if verbose:
        not_listed -= len(misses)
        candidates.extend(misses)
    out: dict[str, Any] = {
        "request": {"method": req.method, "uri": req.path, "query": req.query_string,
                    "host": req.host, "remote_addr": req.remote_addr,
                    "headers": req.headers, "args": req.args, "cookies": req.cookies},
        "router": router_kind,
        "matched": _matched(m, routes, compiled) if m is not None else None,
        "candidates": candidates,
        "not_listed": not_listed,
    }
    return out


def _list(items: Any) -> str:
    return "[" + ", ".join(str(i) for i in items) + "]"


def _hosts_of(route: Route, services: Mapping[str, Service]) -> tuple[list[str], str | None]:
    own = route.all_hosts()
    if own:
        return [h.lower() for h in own], None
    if route.service_id is not None:
        svc = services.get(str(route.service_id))
        if svc is not None and svc.hosts:
            return [h.lower() for h in svc.hosts], str(route.service_id)
    return [], None


def _candidate(rid: str, route: Route, hit: list[str], services: Mapping[str, Service],
               compiled: Compiled, kind: str, req: RequestVars, m: Match | None,
               routes: Mapping[str, Route], rejected: Mapping[str, Any],
               pats: _Patterns) -> dict[str, Any]:
    reasons: list[str] = []
    loaded = rid in compiled.routes
    if route.status == 0:
        reasons.append("disabled (status 0)")
    elif not loaded:
        rej = rejected.get(rid)
        reasons.append(f"rejected: {rej.path}: {rej.message}" if rej is not None
                       else "not loaded")
    base: dict[str, Any] = {"id": rid, "payload": None, "uris": tuple(hit),
                            "priority": route.priority}
    hosts, host_from = _hosts_of(route, services)
    addrs = route.all_remote_addrs()
    ok = True

    def passes(**extra: Any) -> bool | None:
        try:
            return _one(RouteSpec(**base, **extra), kind, req) is not None
        except (RouterError, ValueError) as e:
            reasons.append(f"refused by the router: {getattr(e, 'message', e)}")
            return None

    if route.methods and not passes(methods=frozenset(route.methods)):
        ok = False
        if req.method not in route.methods:
            reasons.append(f"method {req.method} not in {_list(route.methods)}")
    if hosts and not passes(hosts=tuple(hosts)):
        ok = False
        where = f" (hosts of service {host_from})" if host_from else ""
        reasons.append(f"host {req.host or '(none)'} does not match {_list(hosts)}{where}")
    if addrs and not passes(remote_addrs=tuple(addrs)):
        ok = False
        reasons.append(f"remote_addr {req.remote_addr} not in {_list(addrs)}")
    if route.vars and not passes(vars=route.vars):
        ok = False
        failing = _failing_rules(route.vars, passes)
        reasons.append(f"vars {json.dumps(failing, separators=(',', ':'))} false")
    own: Match | None = None
    if ok:
        try:
            own = _one(RouteSpec(**base, methods=frozenset(route.methods or ()),
                                 hosts=tuple(hosts), remote_addrs=tuple(addrs),
                                 vars=route.vars or None), kind, req)
        except (RouterError, ValueError):
            own = None
    if m is not None and m.route_id == rid:
        result = "matched"
    elif ok and own is not None and loaded and route.status != 0:
        result = "shadowed"
        if m is not None:
            reasons.append(_shadow_reason(m, own, routes, route, kind, pats))
        else:
            reasons.append("passes its own conditions but the router did not take it")
    else:
        result = "not matched"
    out: dict[str, Any] = {"route_id": rid, "name": route.name, "uri": route.all_uris(),
                           "priority": route.priority, "result": result, "reasons": reasons}
    if hosts:
        out["hosts"] = hosts
    if own is not None:
        out["matched_uri"] = own.matched_uri
    return out


def _failing_rules(rules: Any, passes: Callable[..., bool | None]) -> Any:
    """The rules of an AND list (``[[...], [...]]``) that fail on their own; the whole
    expression when it is not a plain AND list or no single rule fails alone."""
    if isinstance(rules, list) and rules and all(isinstance(r, list) for r in rules) \
            and not (isinstance(rules[0], str)):
        failing = [r for r in rules if passes(vars=[r]) is False]
        if failing:
            return failing
    return rules


def _shadow_reason(w: Match, c: Match, routes: Mapping[str, Route], route: Route, kind: str,
                   pats: _Patterns) -> str:
    wid = w.route_id
    by = f"shadowed by route {wid}"
    if kind == "radixtree_host_uri":
        wh, ch = w.matched_host, c.matched_host
        if wh and not ch:
            return (f"{by}: it matched on host {wh}, and routes with a matching host are "
                    "tried before host-less routes")
        if wh and ch and wh != ch:
            if not wh.startswith("*") and ch.startswith("*"):
                return f"{by}: exact host {wh} is tried before wildcard host {ch}"
            if wh.startswith("*") and ch.startswith("*") and len(wh) > len(ch):
                return f"{by}: longer wildcard host {wh} is tried before {ch}"
    wu, cu = w.matched_uri, c.matched_uri
    w_exact, c_exact = pats.exact(wu), pats.exact(cu)
    if w_exact and not c_exact:
        return f"{by}: exact uri beats prefix ({wu} over {cu})"
    if not w_exact and not c_exact and len(pats.key(wu)) > len(pats.key(cu)):
        return f"{by}: longer prefix {wu} is tried before {cu}"
    winner = routes.get(wid)
    wp = winner.priority if winner is not None else 0
    cp = route.priority
    if wp > cp:
        return f"{by} (priority {wp} > {cp})"
    if wp == cp and len(wu) > len(cu):
        return f"{by}: same priority {cp}, longer pattern {wu} beats {cu}"
    if wp == cp:
        return f"{by}: same priority {cp}, and it comes first in the configuration"
    return by


def _matched(m: Match, routes: Mapping[str, Route], compiled: Compiled) -> dict[str, Any]:
    rid = m.route_id
    cr = compiled.routes.get(rid)
    route = routes.get(rid)
    out: dict[str, Any] = {
        "route_id": rid,
        "name": cr.name if cr is not None else (route.name if route else None),
        "matched_uri": m.matched_uri,
        "matched_host": m.matched_host,
        "params": dict(m.params) if m.params else {},
        "priority": route.priority if route is not None else 0,
        "service_id": cr.service_id if cr is not None else None,
        "upstream": None,
        "plugins": [],
    }
    if cr is None:
        return out
    out["timeouts"] = {"connect": cr.connect_timeout, "send": cr.send_timeout,
                       "read": cr.read_timeout}
    out["websocket"] = cr.websocket
    plan = compiled.plans.get(cr.upstream_key) if cr.upstream_key else None
    if cr.upstream_key is not None:
        out["upstream"] = {"key": cr.upstream_key, "nodes": [], "missing": plan is None}
    if plan is not None:
        out["upstream"] = {
            "key": plan.key, "type": plan.type, "scheme": plan.scheme,
            "pass_host": plan.pass_host,
            "nodes": [{"host": n.host, "port": n.port, "weight": n.weight,
                       "priority": n.priority} for n in plan.nodes]}
    out["plugins"] = plugin_chain(cr.chain)
    return out


def plugin_chain(chain: Any) -> list[dict[str, Any]]:
    """The hooks of a compiled ``Chain`` in run order: ``{"phase", "name", "priority"}``."""
    try:
        from ..proxy.chain import PHASES
    except ImportError:     # pragma: no cover - the chain module moved
        PHASES = ("rewrite", "access", "before_proxy", "header_filter", "body_filter", "log")
    out = []
    for phase in PHASES:
        for hook in getattr(chain, phase, ()) or ():
            out.append({"phase": phase, **_hook_info(hook)})
    return out


def _hook_info(hook: Any) -> dict[str, Any]:
    objs = [hook]
    if isinstance(hook, tuple) and hook:
        objs.insert(0, hook[0])
    objs += [getattr(hook, "plugin", None), getattr(hook, "__self__", None)]
    for obj in objs:
        if obj is None:
            continue
        name = getattr(obj, "name", None)
        if isinstance(name, str):
            prio = getattr(obj, "priority", None)
            return {"name": name,
                    "priority": prio if isinstance(prio, int) and not isinstance(prio, bool)
                    else None}
    return {"name": getattr(hook, "__qualname__", None) or repr(hook), "priority": None}


# ------------------------------------------------------------------------ node and offline

def explain_reply(routes: Mapping[str, Route], services: Mapping[str, Service],
                  compiled: Compiled, router_kind: str, query: Mapping[str, str]
                  ) -> tuple[int, dict[str, Any]]:
    """``explain`` as an Admin API answer: 200 with the result, 400 for a bad query."""
    try:
        return 200, explain(routes, services, compiled, router_kind, query)
    except ValueError as e:
        return 400, {"error_msg": str(e)}


def _load(doc: Any, router_kind: str, plugins: Registry | None
          ) -> tuple[Any, Compiled, list[Any]]:
    from ..model.validate import parse_resources
    from .compiler import PluginSet, compile_resources

    res, rejected = parse_resources(doc)
    compiled = compile_resources(res, router_kind,
                                 PluginSet(plugins) if plugins is not None else None)
    return res, compiled, [*rejected, *compiled.rejected]


def explain_offline(doc: Any, router_kind: str, query: Mapping[str, str],
                    plugins: Registry | None = None) -> dict[str, Any]:
    """Parse and compile a standalone document (a parsed document, or the path of a YAML /
    JSON file) with ``plugins`` (none: no plugin is known) and explain ``query`` against
    it.  The document's rejections are listed under ``"rejected"``."""
    if isinstance(doc, (str, os.PathLike)):
        from .loader import read_file

        doc = read_file(os.fspath(doc))
    res, compiled, rejected = _load(doc, router_kind, plugins)
    out = explain(res.routes, res.services, compiled, router_kind, query)
    out["rejected"] = [str(r) for r in rejected]
    return out


class DocExplainer:
    """A ready ``MetaContext.explain``: explains against the node's current standalone
    document (``doc_getter()``), parsed and compiled with ``plugins()`` (none: no plugin
    is known) once per document object, off the event loop."""

    def __init__(self, doc_getter: Callable[[], Any], router_kind: str,
                 plugins: Callable[[], Registry] | None = None) -> None:
        self.doc_getter = doc_getter
        self.router_kind = router_kind
        self.plugins = plugins
        self._doc: Any = None
        self._loaded: tuple[Any, Compiled, list[Any]] | None = None

    async def __call__(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        try:
            parse_request(query)
        except ValueError as e:
            return 400, {"error_msg": str(e)}
        doc = self.doc_getter()
        if self._loaded is None or doc is not self._doc:
            loop = asyncio.get_running_loop()
            self._loaded = await loop.run_in_executor(None, _load, doc, self.router_kind,
                                                      self.plugins() if self.plugins
                                                      else None)
            self._doc = doc
        res, compiled, _rej = self._loaded
        return explain_reply(res.routes, res.services, compiled, self.router_kind, query)


# ---------------------------------------------------------------------------------- text

def format_text(result: Mapping[str, Any]) -> str:
    """A terminal report of an ``explain`` result."""
    req = result.get("request", {})
    lines = []
    q = f"?{req['query']}" if req.get("query") else ""
    lines.append(f"{req.get('method', 'GET')} {req.get('host') or '(no host)'} "
                 f"{req.get('uri', '')}{q}  from {req.get('remote_addr', '')}")
    m = result.get("matched")
    if m is None:
        lines.append("=> no route matches (404)")
    else:
        name = f" \"{m['name']}\"" if m.get("name") else ""
        host = f" host {m['matched_host']}" if m.get("matched_host") else ""
        lines.append(f"=> route {m['route_id']}{name} on {m['matched_uri']}{host}")
        if m.get("params"):
            lines.append("   params: " + ", ".join(f"{k}={v}" for k, v in m["params"].items()))
        if m.get("service_id"):
            lines.append(f"   service: {m['service_id']}")
        up = m.get("upstream")
        if up is None:
            lines.append("   upstream: none configured (the request gets 503)")
        else:
            nodes = ", ".join(f"{n['host']}:{n['port']} (weight {n['weight']})"
                              for n in up.get("nodes", ()))
            lines.append(f"   upstream: {up['key']}"
                         + (f" {up.get('type')}" if up.get("type") else "")
                         + (f": {nodes}" if nodes else ": no nodes"))
        chain = m.get("plugins") or []
        if chain:
            lines.append("   plugins: " + ", ".join(
                f"{p['phase']}:{p['name']}" + (f"({p['priority']})"
                                                if p.get("priority") is not None else "")
                for p in chain))
        else:
            lines.append("   plugins: none")
    cands = result.get("candidates") or []
    if cands:
        lines.append("")
        lines.append("candidates:")
        width = max(len(str(c["route_id"])) for c in cands)
        for c in cands:
            uri = ", ".join(c.get("uri") or ())
            name = f" \"{c['name']}\"" if c.get("name") else ""
            lines.append(f"  {('[' + c['result'] + ']'):<14} {c['route_id']!s:<{width}}"
                         f"{name}  {uri}  priority {c.get('priority', 0)}")
            for r in c.get("reasons") or ():
                lines.append(f"  {'':<14} - {r}")
    n = result.get("not_listed") or 0
    if n:
        lines.append(f"{n} other route{'s do' if n != 1 else ' does'} not match the uri"
                     " (verbose=1 lists them)")
    for r in result.get("rejected") or ():
        lines.append(f"rejected: {r}")
    return "\n".join(lines) + "\n"
