"""APISIX radixtree router semantics (pylon.routing.router)."""

from __future__ import annotations

import dataclasses
import random

import pytest

from pylon.routing import Match, RadixTree, Router, RouterError, RouteSpec
from pylon.routing import router as router_mod

HOST_URI = "radixtree_host_uri"
URI = "radixtree_uri"
PARAM = "radixtree_uri_with_parameter"
ALL_KINDS = (HOST_URI, URI, PARAM)


class Vars:
    def __init__(self, **values: str) -> None:
        self.values = values

    def var(self, name: str) -> str | None:
        return self.values.get(name)


NOVARS = Vars()


def R(rid: str, *uris: str, **kw) -> RouteSpec:
    return RouteSpec(id=rid, payload=f"payload-{rid}", uris=tuple(uris), **kw)


def hit(router: Router, path: str, method: str = "GET", host: str = "example.org",
        remote_addr: str = "10.0.0.1", src=NOVARS) -> str | None:
    m = router.match(method, host, path, src, remote_addr)
    return None if m is None else m.route_id


# --------------------------------------------------------------------------- exact / prefix


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_exact_uri_beats_prefix_even_with_lower_priority(kind):
    r = Router([R("prefix", "/a/*", priority=100), R("exact", "/a/b", priority=-5)], kind)
    assert hit(r, "/a/b") == "exact"
    assert hit(r, "/a/c") == "prefix"


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_deepest_prefix_wins_regardless_of_priority(kind):
    r = Router([R("root", "/*", priority=10), R("a", "/a/*", priority=5), R("ab", "/a/b/*")], kind)
    assert hit(r, "/a/b/c") == "ab"
    assert hit(r, "/a/x") == "a"
    assert hit(r, "/z") == "root"


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_deeper_prefix_falls_back_to_shorter_when_its_conditions_fail(kind):
    r = Router([
        R("short", "/api/*"),
        R("long", "/api/v1/*", methods=frozenset({"POST"})),
    ], kind)
    assert hit(r, "/api/v1/x", method="POST") == "long"
    assert hit(r, "/api/v1/x", method="GET") == "short"


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_exact_route_falls_back_to_prefix_when_its_conditions_fail(kind):
    r = Router([R("exact", "/a", methods=frozenset({"POST"})), R("prefix", "/a*")], kind)
    assert hit(r, "/a", method="POST") == "exact"
    assert hit(r, "/a", method="GET") == "prefix"


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_prefix_without_slash_matches_any_continuation(kind):
    r = Router([R("a", "/a*")], kind)
    assert hit(r, "/a") == "a"
    assert hit(r, "/abc") == "a"
    assert hit(r, "/a/b/c") == "a"
    assert hit(r, "/b") is None


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_slash_star_prefix_does_not_match_the_bare_directory(kind):
    r = Router([R("dir", "/a/*")], kind)
    assert hit(r, "/a") is None
    assert hit(r, "/a/") == "dir"
    assert hit(r, "/a/b") == "dir"


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_exact_uri_requires_the_whole_path(kind):
    r = Router([R("e", "/a/b")], kind)
    assert hit(r, "/a/b") == "e"
    assert hit(r, "/a/b/") is None
    assert hit(r, "/a") is None


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_lone_star_matches_every_path(kind):
    r = Router([R("all", "*"), R("x", "/x")], kind)
    assert hit(r, "/x") == "x"
    assert hit(r, "/anything/else") == "all"
    assert hit(r, "") == "all"


def test_route_with_several_uris_matches_each():
    r = Router([R("multi", "/a", "/b/*")], URI)
    assert hit(r, "/a") == "multi"
    assert hit(r, "/b/c") == "multi"
    m = r.match("GET", "h", "/b/c", NOVARS, "1.1.1.1")
    assert m.matched_uri == "/b/*"


def test_match_reports_payload_route_id_and_matched_uri():
    r = Router([R("p", "/p/*"), R("e", "/e")], URI)
    m = r.match("GET", "h", "/p/x", NOVARS, "1.1.1.1")
    assert m == Match("payload-p", "p", None, "/p/*", "")
    m = r.match("GET", "h", "/e", NOVARS, "1.1.1.1")
    assert (m.route, m.route_id, m.params, m.matched_uri, m.matched_host) == (
        "payload-e", "e", None, "/e", "")


def test_match_without_params_is_shared_and_immutable():
    r = Router([R("e", "/e")], URI)
    m1 = r.match("GET", "h", "/e", NOVARS, "1.1.1.1")
    m2 = r.match("GET", "h", "/e", NOVARS, "1.1.1.1")
    assert m1 is m2
    assert m1.params is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        m1.route_id = "other"  # type: ignore[misc]


def test_no_routes_matches_nothing():
    for kind in ALL_KINDS:
        r = Router([], kind)
        assert hit(r, "/") is None
        assert len(r) == 0


# --------------------------------------------------------------------------- priority


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_higher_priority_wins_on_the_same_uri(kind):
    r = Router([R("low", "/a", priority=1), R("high", "/a", priority=2), R("mid", "/a")], kind)
    assert hit(r, "/a") == "high"
    r = Router([R("low", "/a/*", priority=1), R("high", "/a/*", priority=2)], kind)
    assert hit(r, "/a/x") == "high"


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_equal_priority_keeps_insertion_order(kind):
    r = Router([R("first", "/a"), R("second", "/a")], kind)
    assert hit(r, "/a") == "first"
    r = Router([R("second", "/a/*"), R("first", "/a/*")], kind)
    assert hit(r, "/a/b") == "second"


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_lower_priority_route_is_tried_when_higher_fails_conditions(kind):
    r = Router([
        R("fallback", "/a", priority=0),
        R("post-only", "/a", priority=9, methods=frozenset({"POST"})),
    ], kind)
    assert hit(r, "/a", method="POST") == "post-only"
    assert hit(r, "/a", method="GET") == "fallback"


def test_negative_priority_sorts_after_default():
    r = Router([R("neg", "/a", priority=-1), R("zero", "/a")], URI)
    assert hit(r, "/a") == "zero"


# --------------------------------------------------------------------------- hosts


def test_host_uri_kind_prefers_host_routes_over_more_specific_hostless_uri():
    routes = [R("hostless-exact", "/api/users"), R("host-prefix", "/*", hosts=("api.test",))]
    r = Router(routes, HOST_URI)
    assert hit(r, "/api/users", host="api.test") == "host-prefix"
    assert hit(r, "/api/users", host="other.test") == "hostless-exact"


def test_uri_kind_treats_hosts_as_a_plain_condition():
    routes = [R("hostless-exact", "/api/users"), R("host-prefix", "/*", hosts=("api.test",))]
    r = Router(routes, URI)
    assert hit(r, "/api/users", host="api.test") == "hostless-exact"
    assert hit(r, "/other", host="api.test") == "host-prefix"
    assert hit(r, "/other", host="other.test") is None


def test_host_uri_kind_exact_host_beats_wildcard_host():
    r = Router([
        R("wild", "/a", hosts=("*.example.com",)),
        R("exact", "/*", hosts=("www.example.com",)),
    ], HOST_URI)
    assert hit(r, "/a", host="www.example.com") == "exact"
    assert hit(r, "/a", host="api.example.com") == "wild"


def test_host_uri_kind_longer_wildcard_suffix_wins():
    r = Router([
        R("short", "/*", hosts=("*.com",)),
        R("long", "/*", hosts=("*.b.example.com",)),
        R("mid", "/*", hosts=("*.example.com",)),
    ], HOST_URI)
    assert hit(r, "/", host="a.b.example.com") == "long"
    assert hit(r, "/", host="x.example.com") == "mid"
    assert hit(r, "/", host="x.com") == "short"


def test_host_uri_kind_falls_back_to_shorter_wildcard_then_hostless():
    r = Router([
        R("hostless", "/x/*"),
        R("mid", "/x/*", hosts=("*.example.com",)),
        R("exact", "/only", hosts=("a.b.example.com",)),
        R("long", "/x/*", hosts=("*.b.example.com",), methods=frozenset({"PUT"})),
    ], HOST_URI)
    assert hit(r, "/x/1", host="a.b.example.com", method="PUT") == "long"
    assert hit(r, "/x/1", host="a.b.example.com", method="GET") == "mid"
    assert hit(r, "/x/1", host="elsewhere.org") == "hostless"
    assert hit(r, "/only", host="a.b.example.com") == "exact"
    assert hit(r, "/only", host="c.b.example.com") is None


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_wildcard_host_matches_subdomains_at_any_depth_but_not_the_apex(kind):
    r = Router([R("w", "/", hosts=("*.example.com",))], kind)
    assert hit(r, "/", host="a.example.com") == "w"
    assert hit(r, "/", host="a.b.example.com") == "w"
    assert hit(r, "/", host="example.com") is None
    assert hit(r, "/", host="badexample.com") is None
    assert hit(r, "/", host="example.com.evil") is None


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_wildcard_without_dot_is_a_plain_suffix(kind):
    r = Router([R("w", "/", hosts=("*example.com",))], kind)
    assert hit(r, "/", host="example.com") == "w"
    assert hit(r, "/", host="myexample.com") == "w"
    assert hit(r, "/", host="example.org") is None


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_route_hosts_are_case_insensitive(kind):
    r = Router([R("h", "/", hosts=("API.Example.COM",)), R("w", "/w", hosts=("*.Foo.COM",))], kind)
    assert hit(r, "/", host="api.example.com") == "h"
    assert hit(r, "/w", host="x.foo.com") == "w"


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_route_with_several_hosts_matches_any_and_reports_the_pattern(kind):
    r = Router([R("h", "/a", hosts=("a.test", "*.b.test"))], kind)
    m = r.match("GET", "x.b.test", "/a", NOVARS, "1.1.1.1")
    assert m is not None and m.matched_host == "*.b.test"
    m = r.match("GET", "a.test", "/a", NOVARS, "1.1.1.1")
    assert m is not None and m.matched_host == "a.test"
    assert hit(r, "/a", host="c.test") is None


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_hostless_route_reports_empty_matched_host(kind):
    r = Router([R("a", "/a")], kind)
    assert r.match("GET", "whatever", "/a", NOVARS, "1.1.1.1").matched_host == ""


def test_host_uri_kind_with_many_distinct_hosts_stays_correct(monkeypatch):
    monkeypatch.setattr(router_mod, "_HOST_CACHE_MAX", 8)
    r = Router([R("w", "/*", hosts=("*.example.com",)), R("any", "/*")], HOST_URI)
    for i in range(100):
        assert hit(r, "/", host=f"h{i}.example.com") == "w"
        assert hit(r, "/", host=f"h{i}.other.com") == "any"


# --------------------------------------------------------------------------- methods


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_route_without_methods_accepts_any_method(kind):
    r = Router([R("a", "/a")], kind)
    for m in ("GET", "POST", "PURGE", "PROPFIND"):
        assert hit(r, "/a", method=m) == "a"


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_methods_restrict_the_route(kind):
    r = Router([R("a", "/a", methods=frozenset({"GET", "PURGE"}))], kind)
    assert hit(r, "/a", method="GET") == "a"
    assert hit(r, "/a", method="PURGE") == "a"
    assert hit(r, "/a", method="POST") is None


def test_head_is_not_an_alias_for_get():
    # lua-resty-radixtree tests the method bit of the request method as is
    r = Router([R("get", "/a", methods=frozenset({"GET"}))], URI)
    assert hit(r, "/a", method="HEAD") is None


def test_methods_are_normalised_to_upper_case_and_unknown_ones_rejected():
    r = Router([R("a", "/a", methods=frozenset({"get"}))], URI)
    assert hit(r, "/a", method="GET") == "a"
    with pytest.raises(RouterError) as ei:
        Router([R("bad", "/a", methods=frozenset({"FETCH"}))], URI)
    assert ei.value.route_id == "bad"
    assert "FETCH" in ei.value.message


# --------------------------------------------------------------------------- remote_addrs


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_remote_addrs_match_ipv4_addresses_and_cidrs(kind):
    r = Router([R("a", "/a", remote_addrs=("127.0.0.1", "192.168.0.0/16"))], kind)
    assert hit(r, "/a", remote_addr="127.0.0.1") == "a"
    assert hit(r, "/a", remote_addr="192.168.1.1") == "a"
    assert hit(r, "/a", remote_addr="10.0.0.1") is None


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_remote_addrs_match_ipv6_addresses_and_cidrs(kind):
    r = Router([R("a", "/a", remote_addrs=("::1", "2001:db8::/32"))], kind)
    assert hit(r, "/a", remote_addr="::1") == "a"
    assert hit(r, "/a", remote_addr="2001:db8:ffff::1") == "a"
    assert hit(r, "/a", remote_addr="2001:db9::1") is None
    assert hit(r, "/a", remote_addr="127.0.0.1") is None


def test_unparseable_remote_addr_does_not_match_restricted_routes():
    r = Router([R("restricted", "/a", remote_addrs=("0.0.0.0/0",)), R("open", "/a")], URI)
    assert hit(r, "/a", remote_addr="unix:") == "open"
    assert hit(r, "/a", remote_addr=None) == "open"  # type: ignore[arg-type]


# --------------------------------------------------------------------------- vars


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_vars_condition_selects_between_routes_on_the_same_uri(kind):
    r = Router([
        R("beta", "/app/*", vars=[["http_x_channel", "==", "beta"]], priority=1),
        R("stable", "/app/*"),
    ], kind)
    assert hit(r, "/app/x", src=Vars(http_x_channel="beta")) == "beta"
    assert hit(r, "/app/x", src=Vars(http_x_channel="other")) == "stable"
    assert hit(r, "/app/x") == "stable"


def test_vars_with_nested_logic_and_negation_in_a_route():
    spec = ["OR", ["arg_debug", "==", "1"],
            ["AND", ["cookie_user", "~~", "^admin"],
             ["remote_addr", "!", "ipmatch", ["10.0.0.0/8"]]]]
    r = Router([R("v", "/v", vars=spec)], URI)
    assert hit(r, "/v", src=Vars(arg_debug="1")) == "v"
    assert hit(r, "/v", src=Vars(cookie_user="admin-1", remote_addr="11.1.1.1")) == "v"
    assert hit(r, "/v", src=Vars(cookie_user="admin-1", remote_addr="10.1.1.1")) is None


def test_empty_vars_matches_everything():
    r = Router([R("v", "/v", vars=[])], URI)
    assert hit(r, "/v") == "v"


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_all_conditions_must_pass(kind):
    r = Router([R("all", "/a", hosts=("h.test",), methods=frozenset({"GET"}),
                  remote_addrs=("10.0.0.0/8",), vars=[["arg_k", "==", "v"]])], kind)
    ok = dict(method="GET", host="h.test", remote_addr="10.1.1.1", src=Vars(arg_k="v"))
    assert hit(r, "/a", **ok) == "all"
    for key, bad in (("method", "POST"), ("host", "x.test"), ("remote_addr", "11.0.0.1"),
                     ("src", Vars(arg_k="w"))):
        assert hit(r, "/a", **{**ok, key: bad}) is None, key


# --------------------------------------------------------------------------- parameters


def test_param_segment_captures_one_segment():
    r = Router([R("user", "/user/:id")], PARAM)
    m = r.match("GET", "h", "/user/42", NOVARS, "1.1.1.1")
    assert m.route_id == "user" and m.params == {"id": "42"} and m.matched_uri == "/user/:id"
    assert hit(r, "/user/42/posts") is None
    assert hit(r, "/user/") is None
    assert hit(r, "/user") is None


def test_several_params_are_returned():
    r = Router([R("p", "/name/:name/id/:id")], PARAM)
    m = r.match("GET", "h", "/name/json/id/1", NOVARS, "1.1.1.1")
    assert m.params == {"name": "json", "id": "1"}
    assert hit(r, "/name/json/id/") is None


def test_catch_all_param_captures_the_rest_possibly_empty():
    r = Router([R("files", "/files/*path")], PARAM)
    assert r.match("GET", "h", "/files/a/b/c.txt", NOVARS, "1").params == {"path": "a/b/c.txt"}
    assert r.match("GET", "h", "/files/", NOVARS, "1").params == {"path": ""}
    assert hit(r, "/files") is None


def test_params_and_catch_all_combine():
    r = Router([R("p", "/name/:name/id/:id/*other")], PARAM)
    m = r.match("GET", "h", "/name/json/id/1/foo/bar/gloo", NOVARS, "1")
    assert m.params == {"name": "json", "id": "1", "other": "foo/bar/gloo"}


def test_param_at_first_segment_with_static_suffix():
    r = Router([R("p", "/:name/foo")], PARAM)
    assert hit(r, "/json/foo") == "p"
    assert hit(r, "/json/") is None
    assert hit(r, "/json/bar") is None
    assert hit(r, "/json/foo/bar") is None


def test_static_beats_param_beats_catch_all():
    r = Router([
        R("catch", "/user/*"),
        R("param", "/user/:id"),
        R("static", "/user/profile"),
    ], PARAM)
    assert hit(r, "/user/profile") == "static"
    assert hit(r, "/user/42") == "param"
    assert hit(r, "/user/42/posts") == "catch"
    assert hit(r, "/user/") == "catch"


def test_same_prefix_patterns_are_ordered_by_pattern_length_like_apisix():
    # lua-resty-radixtree sort_route: equal priority -> longer original path first.
    # "/user/*rest" (11 chars) therefore outranks "/user/:id" (9 chars).
    r = Router([R("param", "/user/:id"), R("catch", "/user/*rest")], PARAM)
    m = r.match("GET", "h", "/user/42", NOVARS, "1")
    assert m.route_id == "catch" and m.params == {"rest": "42"}


def test_longer_literal_prefix_beats_param():
    r = Router([R("param", "/user/:id"), R("pref", "/user/pro*")], PARAM)
    assert hit(r, "/user/profile") == "pref"
    assert hit(r, "/user/42") == "param"


def test_priority_still_orders_param_routes_on_the_same_prefix():
    r = Router([R("param", "/user/:id"), R("catch", "/user/*", priority=5)], PARAM)
    assert hit(r, "/user/42") == "catch"


def test_param_route_conditions_are_checked():
    r = Router([
        R("param-post", "/user/:id", methods=frozenset({"POST"})),
        R("catch", "/user/*"),
    ], PARAM)
    m = r.match("POST", "h", "/user/1", NOVARS, "1")
    assert m.route_id == "param-post" and m.params == {"id": "1"}
    assert hit(r, "/user/1", method="GET") == "catch"


def test_param_route_with_host_reports_host_and_params():
    r = Router([R("p", "/u/:id", hosts=("*.test",))], PARAM)
    m = r.match("GET", "a.test", "/u/7", NOVARS, "1")
    assert (m.params, m.matched_host) == ({"id": "7"}, "*.test")


def test_anonymous_star_in_param_kind_is_a_plain_prefix():
    r = Router([R("p", "/a/*")], PARAM)
    m = r.match("GET", "h", "/a/b/c", NOVARS, "1")
    assert m.route_id == "p" and m.params is None


def test_colon_is_literal_outside_the_param_kind():
    for kind in (URI, HOST_URI):
        r = Router([R("lit", "/user/:id")], kind)
        assert hit(r, "/user/:id") == "lit"
        assert hit(r, "/user/42") is None


def test_star_in_the_middle_is_a_glob_outside_the_param_kind():
    r = Router([R("glob", "/a/*/c")], URI)
    assert hit(r, "/a/b/c") == "glob"
    assert hit(r, "/a/b/x/c") == "glob"
    assert hit(r, "/a/b/d") is None
    m = r.match("GET", "h", "/a/b/c", NOVARS, "1")
    assert m.params is None


def test_param_names_need_not_be_identifiers_and_last_duplicate_wins():
    r = Router([R("odd", "/odd/:x-y/:1st"), R("dup", "/dup/:id/:id")], PARAM)
    assert r.match("GET", "h", "/odd/a/b", NOVARS, "1").params == {"x-y": "a", "1st": "b"}
    assert r.match("GET", "h", "/dup/a/b", NOVARS, "1").params == {"id": "b"}


def test_star_inside_a_segment_is_a_glob_in_the_param_kind():
    r = Router([R("g", "/a*b/:id")], PARAM)
    m = r.match("GET", "h", "/axxb/7", NOVARS, "1")
    assert m.route_id == "g" and m.params == {"id": "7"}
    assert hit(r, "/axxc/7") is None


def test_regex_metacharacters_in_param_patterns_are_literal():
    r = Router([R("p", "/v1.0/:id")], PARAM)
    assert hit(r, "/v1.0/x") == "p"
    assert hit(r, "/v1x0/x") is None


# --------------------------------------------------------------------------- errors / build


def test_router_raises_router_error_for_a_bad_route():
    with pytest.raises(RouterError) as ei:
        Router([R("ok", "/a"), R("bad", "/b", remote_addrs=("10.0.0.0/40",))], URI)
    assert ei.value.route_id == "bad"
    assert "bad CIDR '10.0.0.0/40'" in ei.value.message
    assert "remote_addrs[0]" in ei.value.message


def test_build_skips_bad_routes_and_reports_them():
    routes = [
        R("ok1", "/a"),
        R("bad-cidr", "/b", remote_addrs=("127.0.0.1", "nope")),
        R("bad-vars", "/c", vars=[["arg_x", "==", "1"], ["arg_y", "xx", "1"]]),
        R("bad-regex", "/d", vars=[["arg_x", "~~", "("]]),
        R("bad-method", "/e", methods=frozenset({"GRAB"})),
        R("no-uris"),
        R("bad-host", "/f", hosts=("",)),
        R("bad-param", "/g/:", ),
        R("ok2", "/z/*"),
    ]
    r, errors = Router.build(routes, PARAM)
    ids = [rid for rid, _ in errors]
    assert ids == ["bad-cidr", "bad-vars", "bad-regex", "bad-method", "no-uris", "bad-host",
                   "bad-param"]
    msgs = dict(errors)
    assert "remote_addrs[1]" in msgs["bad-cidr"]
    assert "unknown operator 'xx' at vars[1][1]" in msgs["bad-vars"]
    assert "bad regex" in msgs["bad-regex"] and "vars[0][2]" in msgs["bad-regex"]
    assert len(r) == 2
    assert hit(r, "/a") == "ok1"
    assert hit(r, "/z/1") == "ok2"
    assert hit(r, "/b") is None


def test_build_with_no_errors_returns_an_empty_list():
    r, errors = Router.build([R("a", "/a")])
    assert errors == [] and hit(r, "/a") == "a" and r.kind == HOST_URI


def test_unknown_router_kind_is_rejected():
    with pytest.raises(ValueError):
        Router([], "radixtree_nonsense")


def test_routes_can_be_any_iterable():
    r = Router((R(str(i), f"/r{i}") for i in range(3)), URI)
    assert hit(r, "/r2") == "2"


# --------------------------------------------------------------------------- scale


def test_many_routes_build_and_match():
    routes = []
    for i in range(20_000):
        if i % 3 == 0:
            routes.append(R(f"e{i}", f"/api/v1/r{i}"))
        elif i % 3 == 1:
            routes.append(R(f"p{i}", f"/svc{i}/*"))
        else:
            routes.append(R(f"h{i}", f"/svc{i}/*", hosts=(f"*.t{i}.example.com",)))
    for kind in (HOST_URI, URI):
        r = Router(routes, kind)
        assert hit(r, "/api/v1/r3000") == "e3000"
        assert hit(r, "/svc3001/x/y") == "p3001"
        assert hit(r, "/svc3002/x", host="a.t3002.example.com") == "h3002"
        assert hit(r, "/svc3002/x", host="a.t3005.example.com") is None
        assert hit(r, "/svc30011/x") is None  # no such key, and /svc3001/ does not prefix it


# --------------------------------------------------------------------------- reference model


def _ref_host_match(pattern: str, host: str) -> bool:
    return host.endswith(pattern[1:]) if pattern.startswith("*") else host == pattern


def _ref_conds(spec: RouteSpec, method: str, remote: str, src: Vars) -> bool:
    if spec.methods and method not in spec.methods:
        return False
    if spec.remote_addrs and remote not in spec.remote_addrs:  # plain IPs in the model
        return False
    return spec.vars is None or src.var(spec.vars[0][0]) == spec.vars[0][2]


def _ref_uri_match(specs, path, method, remote, src, host, host_cond: bool):
    """Brute force: exact uris, then prefixes by decreasing key length; sort_route order."""
    cands = []
    for seq, spec in specs:
        for uri in spec.uris:
            if uri.endswith("*"):
                key = uri[:-1]
                if path.startswith(key):
                    cands.append((1, -len(key), -spec.priority, -len(uri), seq, spec))
            elif uri == path:
                cands.append((0, 0, -spec.priority, 0, seq, spec))
    for *_, spec in sorted(cands, key=lambda c: c[:5]):
        if host_cond and spec.hosts and not any(_ref_host_match(h, host) for h in spec.hosts):
            continue
        if _ref_conds(spec, method, remote, src):
            return spec.id
    return None


def _ref_match(kind, routes, path, method, host, remote, src):
    indexed = list(enumerate(routes))
    if kind == URI:
        return _ref_uri_match(indexed, path, method, remote, src, host, True)
    groups = []
    exact = [(s, r) for s, r in indexed if host in r.hosts]
    if exact:
        groups.append(exact)
    suffixes = sorted({h[1:] for _, r in indexed for h in r.hosts if h.startswith("*")
                       and host.endswith(h[1:])}, key=len, reverse=True)
    for suf in suffixes:
        groups.append([(s, r) for s, r in indexed if "*" + suf in r.hosts])
    groups.append([(s, r) for s, r in indexed if not r.hosts])
    for g in groups:
        res = _ref_uri_match(g, path, method, remote, src, host, False)
        if res is not None:
            return res
    return None


@pytest.mark.parametrize("mode", ["linear", "walk", "jump-table"])
@pytest.mark.parametrize("kind", [HOST_URI, URI])
@pytest.mark.parametrize("seed", range(6))
def test_router_agrees_with_brute_force_reference(kind, seed, mode, monkeypatch):
    # exercise every prefix-table implementation: tiny linear tables, radix walk, jump table
    monkeypatch.setattr(router_mod, "_SMALL_TABLE_MAX_KEYS", 10**9 if mode == "linear" else -1)
    monkeypatch.setattr(router_mod, "_JUMP_MIN_KEYS", 0 if mode == "jump-table" else 10**9)
    rnd = random.Random(seed)
    segs = ["a", "b", "ab", "api", "v1"]
    hosts = ["a.x.com", "b.x.com", "*.x.com", "*.com", "*.y.x.com", "c.y.x.com"]

    def rand_path(max_segs=4):
        return "/" + "/".join(rnd.choice(segs) for _ in range(rnd.randint(0, max_segs)))

    routes = []
    for i in range(rnd.randint(5, 60)):
        uris = []
        for _ in range(rnd.randint(1, 2)):
            p = rand_path(3)
            kindp = rnd.random()
            if kindp < 0.3:
                p = p.rstrip("/") + "/*"
            elif kindp < 0.45:
                p = p + "*"
            uris.append(p)
        routes.append(RouteSpec(
            id=f"r{i}", payload=i, uris=tuple(uris),
            hosts=tuple(rnd.sample(hosts, rnd.choice([0, 0, 1, 2]))),
            methods=frozenset(rnd.sample(["GET", "POST"], rnd.choice([0, 0, 1]))),
            remote_addrs=("10.0.0.1",) if rnd.random() < 0.1 else (),
            vars=[["arg_k", "==", "v"]] if rnd.random() < 0.15 else None,
            priority=rnd.choice([0, 0, 0, 1, 2, -1]),
        ))
    router = Router(routes, kind)
    for _ in range(400):
        path = rand_path()
        if rnd.random() < 0.3:
            path += rnd.choice(["", "/", "x", "b/c", "i/x", "/v"])
        method = rnd.choice(["GET", "POST"])
        host = rnd.choice(["a.x.com", "b.x.com", "z.x.com", "c.y.x.com", "d.y.x.com", "x.com",
                           "other.org", "q.com"])
        remote = rnd.choice(["10.0.0.1", "10.0.0.2"])
        src = Vars(arg_k=rnd.choice(["v", "w"]))
        expected = _ref_match(kind, routes, path, method, host, remote, src)
        got = router.match(method, host, path, src, remote)
        assert (got.route_id if got else None) == expected, (path, method, host, remote)


# --------------------------------------------------------------------------- radix tree


def test_radix_tree_walks_all_prefix_keys_deepest_first():
    t = RadixTree.from_dict({"": 0, "/": 1, "/a": 2, "/abc": 3, "/abd": 4, "/b/": 5})
    assert list(t.prefixes("/abcd")) == [("/abc", 3), ("/a", 2), ("/", 1), ("", 0)]
    assert list(t.prefixes("/ab")) == [("/a", 2), ("/", 1), ("", 0)]
    assert list(t.prefixes("/b")) == [("/", 1), ("", 0)]
    assert t.deepest("/b/x").value == 5


def test_radix_tree_segment_index_reproduces_the_walk_state():
    t = RadixTree.from_dict({"/": 0, "/a": 1, "/ab/": 2, "/ab/c/": 3, "/abc/d": 4, "/x/y": 5})
    idx = t.segment_index()
    assert set(idx) == {"/ab/", "/abc/", "/x/"}
    node, pending, rest, best = idx["/ab/"]
    assert pending is None and node.value == 2 and best.value == 2
    node, pending, rest, best = idx["/abc/"]
    assert pending.value == 4 and rest == "d" and best.value == 1
    node, pending, rest, best = idx["/x/"]
    assert pending.value == 5 and rest == "y" and best.value == 0


def test_radix_tree_bulk_build_equals_incremental_sets():
    rnd = random.Random(7)
    for _ in range(200):
        keys = {"".join(rnd.choice("ab/") for _ in range(rnd.randint(0, 6))): i
                for i in range(rnd.randint(1, 25))}
        bulk = RadixTree.from_dict(keys)
        inc: RadixTree[int] = RadixTree()
        for k, v in keys.items():
            inc.set(k, v)
        assert dict(bulk.items()) == keys == dict(inc.items())
        for _ in range(20):
            p = "".join(rnd.choice("ab/") for _ in range(rnd.randint(0, 8)))
            expected = sorted(((k, v) for k, v in keys.items() if p.startswith(k)),
                              key=lambda kv: -len(kv[0]))
            assert list(bulk.prefixes(p)) == expected == list(inc.prefixes(p))
