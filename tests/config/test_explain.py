"""pylon.config.explain: the router's verdict, and why, per candidate route."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from pylon.config.compiler import compile_resources
from pylon.config.explain import (
    DocExplainer,
    explain,
    explain_offline,
    explain_reply,
    format_text,
    parse_request,
    plugin_chain,
)
from pylon.model.validate import parse_resources

UP = {"nodes": {"127.0.0.1:1980": 1}, "type": "roundrobin"}
HOST_URI = "radixtree_host_uri"


def run(routes: list[dict[str, Any]], query: dict[str, str], kind: str = HOST_URI,
        **doc: Any) -> dict[str, Any]:
    full = {"upstreams": [{"id": "u1", **UP}], "routes": routes, **doc}
    res, rejected = parse_resources(full)
    assert rejected == [], rejected
    compiled = compile_resources(res, kind)
    return explain(res.routes, res.services, compiled, kind, query)


def r(rid: str, uri: str = "/a", **kw: Any) -> dict[str, Any]:
    return {"id": rid, "uri": uri, "upstream_id": "u1", **kw}


def cand(result: dict[str, Any], rid: str) -> dict[str, Any]:
    found = [c for c in result["candidates"] if c["route_id"] == rid]
    assert found, f"{rid} not among {[c['route_id'] for c in result['candidates']]}"
    return found[0]


def test_exact_beats_prefix() -> None:
    out = run([r("pre", "/a/*"), r("ex", "/a/b")], {"uri": "/a/b"})
    assert out["matched"]["route_id"] == "ex"
    assert out["matched"]["matched_uri"] == "/a/b"
    assert cand(out, "ex")["result"] == "matched"
    pre = cand(out, "pre")
    assert pre["result"] == "shadowed"
    assert pre["reasons"] == ["shadowed by route ex: exact uri beats prefix (/a/b over /a/*)"]
    # the matched candidate comes first
    assert out["candidates"][0]["route_id"] == "ex"


def test_priority_shadowing() -> None:
    out = run([r("low", "/p/*"), r("high", "/p/*", priority=10)], {"uri": "/p/x"})
    assert out["matched"]["route_id"] == "high"
    assert cand(out, "low")["reasons"] == ["shadowed by route high (priority 10 > 0)"]


def test_longer_prefix_and_same_priority_order() -> None:
    out = run([r("short", "/s/*"), r("long", "/s/t/*"), r("twin", "/s/t/*")], {"uri": "/s/t/u"})
    assert out["matched"]["route_id"] == "long"
    assert "longer prefix /s/t/* is tried before /s/*" in cand(out, "short")["reasons"][0]
    assert "comes first in the configuration" in cand(out, "twin")["reasons"][0]


def test_method_host_vars_remote_addr_reasons() -> None:
    routes = [
        r("m", methods=["POST", "PUT"]),
        r("h", hosts=["b.com", "*.c.com"]),
        r("v", vars=[["arg_v", "==", "1"], ["http_x_k", "==", "y"]]),
        r("ra", remote_addrs=["10.0.0.0/8"]),
    ]
    out = run(routes, {"uri": "/a?v=2", "host": "a.com:8080", "header_X-K": "y",
                       "remote_addr": "192.168.1.1"})
    assert out["matched"] is None
    assert out["request"]["host"] == "a.com"
    assert out["request"]["args"] == {"v": "2"}
    assert cand(out, "m")["reasons"] == ["method GET not in [POST, PUT]"]
    assert cand(out, "h")["reasons"] == ["host a.com does not match [b.com, *.c.com]"]
    # only the failing rule is named
    assert cand(out, "v")["reasons"] == ['vars [["arg_v","==","1"]] false']
    assert cand(out, "ra")["reasons"] == ["remote_addr 192.168.1.1 not in [10.0.0.0/8]"]
    assert all(c["result"] == "not matched" for c in out["candidates"])
    # arg_* in the query beats the uri's own query; the wildcard host then matches
    out = run(routes, {"uri": "/a?v=2", "arg_v": "1", "header_x_k": "y", "host": "x.c.com"})
    assert out["matched"]["route_id"] == "h"
    assert out["matched"]["matched_host"] == "*.c.com"
    assert cand(out, "v")["result"] == "shadowed"
    assert "routes with a matching host are tried before host-less" in \
        cand(out, "v")["reasons"][0]


def test_cookie_vars() -> None:
    out = run([r("c", vars=[["cookie_sid", "==", "s1"]])],
              {"uri": "/a", "header_cookie": "a=1; sid=s1"})
    assert out["matched"]["route_id"] == "c"
    out = run([r("c", vars=[["cookie_sid", "==", "s1"]])], {"uri": "/a", "cookie_sid": "s1"})
    assert out["matched"]["route_id"] == "c"


def test_params_with_the_parameter_router() -> None:
    kind = "radixtree_uri_with_parameter"
    out = run([r("star", "/u/*"), r("param", "/u/:id/*rest")], {"uri": "/u/7/x/y"}, kind)
    m = out["matched"]
    assert m["route_id"] == "param"
    assert m["params"] == {"id": "7", "rest": "x/y"}
    assert "longer pattern /u/:id/*rest beats /u/*" in cand(out, "star")["reasons"][0]


def test_no_match_lists_nothing_but_counts() -> None:
    routes = [r(f"r{i}", f"/other/{i}") for i in range(50)]
    out = run(routes, {"uri": "/nothing"})
    assert out["matched"] is None
    assert out["candidates"] == []
    assert out["not_listed"] == 50
    text = format_text(out)
    assert "no route matches (404)" in text and "50 other routes do not match" in text
    out = run(routes, {"uri": "/nothing", "verbose": "1"})
    assert len(out["candidates"]) == 50 and out["not_listed"] == 0
    assert out["candidates"][0]["reasons"] == ["uri /nothing does not match [/other/0]"]


def test_service_hosts_are_inherited() -> None:
    services = [{"id": "s1", "hosts": ["svc.com"], "upstream_id": "u1"}]
    routes = [{"id": "r", "uri": "/a", "service_id": "s1"}]
    out = run(routes, {"uri": "/a", "host": "other.com"}, services=services)
    assert out["matched"] is None
    assert cand(out, "r")["reasons"] == [
        "host other.com does not match [svc.com] (hosts of service s1)"]
    out = run(routes, {"uri": "/a", "host": "svc.com"}, services=services)
    m = out["matched"]
    assert m["route_id"] == "r" and m["service_id"] == "s1"
    assert m["upstream"]["key"] == "upstreams/u1"
    assert m["upstream"]["nodes"] == [{"host": "127.0.0.1", "port": 1980, "weight": 1,
                                       "priority": 0}]
    assert m["plugins"] == []


def test_disabled_routes_are_candidates_that_never_match() -> None:
    out = run([r("off", "/a", status=0), r("on", "/a*")], {"uri": "/a"})
    assert out["matched"]["route_id"] == "on"
    assert cand(out, "off")["result"] == "not matched"
    assert cand(out, "off")["reasons"] == ["disabled (status 0)"]


def test_the_verdict_is_the_routers() -> None:
    """Whatever the explanation says, ``matched`` is what compiled.router.match returns."""
    routes = [r("a", "/x/*", priority=1), r("b", "/x/y", methods=["POST"]),
              r("c", "/x/y", hosts=["h.com"])]
    res, _ = parse_resources({"upstreams": [{"id": "u1", **UP}], "routes": routes})
    compiled = compile_resources(res, HOST_URI)
    for q in ({"uri": "/x/y"}, {"uri": "/x/y", "method": "POST"},
              {"uri": "/x/y", "host": "h.com"}, {"uri": "/x/z"}):
        req = parse_request(q)
        m = compiled.router.match(req.method, req.host, req.path, req, req.remote_addr)
        out = explain(res.routes, res.services, compiled, HOST_URI, q)
        assert (out["matched"] or {}).get("route_id") == (m.route_id if m else None)
        winners = [c for c in out["candidates"] if c["result"] == "matched"]
        assert len(winners) == (1 if m else 0)


def test_missing_or_bad_uri() -> None:
    res, _ = parse_resources({})
    compiled = compile_resources(res)
    with pytest.raises(ValueError, match="missing uri"):
        explain({}, {}, compiled, HOST_URI, {})
    assert explain_reply({}, {}, compiled, HOST_URI, {"uri": "/../x"})[0] == 400
    assert explain_reply({}, {}, compiled, HOST_URI, {"uri": "/a"})[0] == 200


def test_request_normalisation() -> None:
    req = parse_request({"uri": "/a/./b//c/%7Ex?q=1&q=2", "method": "post",
                         "host": "[::1]:80", "header_User-Agent": "t"})
    assert (req.method, req.path, req.host) == ("POST", "/a/b/c/~x", "::1")
    assert req.var("arg_q") == "1" and req.var("http_user_agent") == "t"
    assert req.var("request_uri") == "/a/b/c/~x?q=1&q=2"
    assert req.var("remote_addr") == "127.0.0.1" and req.var("nope") is None


def test_plugin_chain_is_read_generically() -> None:
    from pylon.proxy.chain import Chain

    class Plugin:
        def __init__(self, name: str, priority: int) -> None:
            self.name, self.priority = name, priority

        def hook(self) -> None: ...

    a, b = Plugin("key-auth", 2500), Plugin("proxy-rewrite", 1008)
    chain = Chain(rewrite=(a.hook, b.hook), log=((b, {}),))
    assert plugin_chain(chain) == [
        {"phase": "rewrite", "name": "key-auth", "priority": 2500},
        {"phase": "rewrite", "name": "proxy-rewrite", "priority": 1008},
        {"phase": "log", "name": "proxy-rewrite", "priority": 1008},
    ]


def test_explain_offline_on_a_yaml_file(tmp_path: Path) -> None:
    doc = {"upstreams": [{"id": "u1", **UP}],
           "routes": [r("api", "/api/*", name="api"), r("health", "/api/health"),
                      {"id": "broken", "uri": "/api/x", "upstream_id": "missing"}]}
    path = tmp_path / "apisix.yaml"
    path.write_text(yaml.safe_dump(doc) + "#END\n")
    out = explain_offline(str(path), HOST_URI, {"uri": "/api/health"})
    assert out["matched"]["route_id"] == "health"
    assert cand(out, "api")["result"] == "shadowed"
    assert out["rejected"] and "missing" in out["rejected"][0]
    text = format_text(out)
    assert "=> route health on /api/health" in text
    assert "[shadowed]" in text and "exact uri beats prefix" in text
    assert "rejected: routes[2].upstream_id" in text
    # a parsed document works the same
    assert explain_offline(doc, HOST_URI, {"uri": "/api/v"})["matched"]["route_id"] == "api"


def test_doc_explainer_compiles_once_per_document() -> None:
    doc = {"upstreams": [{"id": "u1", **UP}], "routes": [r("a", "/a")]}
    current = [doc]
    ex = DocExplainer(lambda: current[0], HOST_URI)

    async def go() -> list[Any]:
        one = await ex({"uri": "/a"})
        loaded = ex._loaded
        two = await ex({"uri": "/a"})
        same = ex._loaded is loaded
        current[0] = {"routes": []}
        three = await ex({"uri": "/a"})
        bad = await ex({})
        return [one, two, same, three, bad]

    one, two, same, three, bad = asyncio.run(go())
    assert one[0] == 200 and one[1]["matched"]["route_id"] == "a"
    assert two == one and same
    assert three[0] == 200 and three[1]["matched"] is None
    assert bad == (400, {"error_msg": "missing uri"})
