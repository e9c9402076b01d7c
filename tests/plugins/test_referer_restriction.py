"""referer-restriction through a real gateway: host whitelist / blacklist with wildcards."""

from __future__ import annotations

import pytest

from pylon.pdk.testing import Kit

NOT_ALLOWED = {"message": "Your referer host is not allowed"}


def _route(rid, conf):
    return {"id": rid, "uri": "/" + rid, "plugins": {"referer-restriction": conf}}


DOC = {
    "routes": [
        _route("white", {"whitelist": ["xx.com", "*.yy.com", "[::1]"]}),
        _route("white-bypass", {"whitelist": ["xx.com"], "bypass_missing": True}),
        _route("black", {"blacklist": ["bad.com", "*.evil.org"], "message": "nope"}),
    ],
}


@pytest.fixture(scope="module")
def kit():
    with Kit(DOC) as k:
        yield k


def _ref(value):
    return {"Referer": value}


def test_whitelisted_host_passes(kit):
    assert kit.get("/white", headers=_ref("http://xx.com/x")).status == 200
    assert kit.get("/white", headers=_ref("https://xx.com:8443/a?b=c")).status == 200


def test_wildcard_matches_subdomains_only(kit):
    assert kit.get("/white", headers=_ref("https://a.yy.com/")).status == 200
    assert kit.get("/white", headers=_ref("https://a.b.yy.com")).status == 200
    r = kit.get("/white", headers=_ref("https://yy.com/"))
    assert r.status == 403
    assert r.json() == NOT_ALLOWED


def test_host_not_in_whitelist_is_403(kit):
    r = kit.get("/white", headers=_ref("http://zz.com/xx.com"))
    assert r.status == 403
    assert r.json() == NOT_ALLOWED


def test_schemeless_referer_and_ipv6_literal(kit):
    assert kit.get("/white", headers=_ref("//xx.com/path")).status == 200
    assert kit.get("/white", headers=_ref("http://[::1]:8080/")).status == 200


def test_missing_referer_is_403_unless_bypass_missing(kit):
    r = kit.get("/white")
    assert r.status == 403
    assert r.json() == NOT_ALLOWED
    assert kit.get("/white-bypass").status == 200
    assert kit.get("/white-bypass", headers=_ref("http://other.com")).status == 403


def test_malformed_referer_counts_as_missing(kit):
    for bad in ("xx.com", "ftp://xx.com/", "http:xx.com"):
        assert kit.get("/white", headers=_ref(bad)).status == 403, bad
        assert kit.get("/white-bypass", headers=_ref(bad)).status == 200, bad


def test_blacklisted_host_gets_custom_message(kit):
    r = kit.get("/black", headers=_ref("http://bad.com/"))
    assert r.status == 403
    assert r.json() == {"message": "nope"}
    assert kit.get("/black", headers=_ref("https://www.evil.org/")).status == 403


def test_host_not_in_blacklist_passes(kit):
    assert kit.get("/black", headers=_ref("http://good.com/")).status == 200
    assert kit.get("/black", headers=_ref("http://evil.org/")).status == 200


@pytest.mark.parametrize("conf, why", [
    ({"whitelist": ["a b.com"]}, "whitelist"),
    ({"blacklist": ["x.com/path"]}, "blacklist"),
    ({"whitelist": ["a.com"], "blacklist": ["b.com"]}, ""),
    ({"bypass_missing": True}, ""),
    ({"whitelist": []}, "whitelist"),
])
def test_bad_configuration_rejects_the_route_and_logs_why(kit, conf, why):
    before = len(kit.log())
    kit.apply({"routes": DOC["routes"] + [_route("bad", conf)]})
    try:
        line = next((ln for ln in kit.log()[before:].splitlines() if "(id bad)" in ln), "")
        assert "failed to check the configuration of plugin referer-restriction" in line
        assert why in line
        assert kit.get("/bad", headers=_ref("http://a.com")).status == 404
        assert kit.get("/white", headers=_ref("http://xx.com")).status == 200
    finally:
        kit.apply(DOC)
