"""uri-blocker through a real gateway: PCRE rules on $request_uri."""

from __future__ import annotations

import pytest

from pylon.pdk.testing import Kit


def _route(rid, conf, **plugins):
    return {"id": rid, "uri": f"/{rid}/*", "plugins": {"uri-blocker": conf, **plugins}}


DOC = {
    "routes": [
        _route("u", {"block_rules": [r"root\.exe", "^/u/admin", "%20"]}),
        _route("m", {"block_rules": ["secret"], "rejected_code": 410,
                     "rejected_msg": "access is not allowed"}),
        _route("ci", {"block_rules": ["secret", r"\.PHP$"], "case_insensitive": True}),
        _route("all", {"block_rules": []}),
        _route("auth", {"block_rules": ["private"]}, **{"key-auth": {}}),
    ],
}


@pytest.fixture(scope="module")
def kit():
    with Kit(DOC) as k:
        yield k


def test_uri_not_matching_any_rule_passes(kit):
    r = kit.get("/u/index.html")
    assert r.status == 200
    assert r.json()["path"] == "/u/index.html"


def test_uri_matching_a_rule_is_403_without_body(kit):
    r = kit.get("/u/root.exe")
    assert r.status == 403
    assert r.body == b""
    assert kit.get("/u/admin/x").status == 403


def test_rules_see_the_query_string(kit):
    assert kit.get("/u/x?file=root.exe").status == 403


def test_rules_see_the_uri_as_sent_not_decoded(kit):
    assert kit.get("/u/a%20b").status == 403
    assert kit.get("/u/a+b").status == 200


def test_anchored_rule_does_not_match_elsewhere(kit):
    assert kit.get("/u/x/admin").status == 200


def test_rejected_code_and_rejected_msg(kit):
    r = kit.get("/m/top-secret")
    assert r.status == 410
    assert r.json() == {"error_msg": "access is not allowed"}


def test_rules_are_case_sensitive_by_default(kit):
    assert kit.get("/m/SECRET").status == 200


def test_case_insensitive(kit):
    assert kit.get("/ci/SeCrEt").status == 403
    assert kit.get("/ci/index.php").status == 403
    assert kit.get("/ci/index.html").status == 200


def test_empty_rule_list_blocks_everything_as_apisix(kit):
    assert kit.get("/all/anything").status == 403


def test_runs_before_authentication(kit):
    # uri-blocker (2900) runs in rewrite before key-auth (2500)
    assert kit.get("/auth/private").status == 403
    assert kit.get("/auth/public").status == 401


@pytest.mark.parametrize("conf, why", [
    ({"block_rules": ["ok", "(unclosed"]}, "failed to compile regex '(unclosed'"),
    ({"block_rules": ["a**"]}, "failed to compile regex 'a**'"),
    ({"rejected_code": 403}, "block_rules"),
    ({"block_rules": ["a", "a"]}, "block_rules"),
    ({"block_rules": ["a"], "rejected_code": 100}, "rejected_code"),
    ({"block_rules": [""]}, "block_rules"),
])
def test_bad_configuration_rejects_the_route_and_logs_why(kit, conf, why):
    before = len(kit.log())
    kit.apply({"routes": DOC["routes"] + [_route("bad", conf)]})
    try:
        line = next((ln for ln in kit.log()[before:].splitlines() if "(id bad)" in ln), "")
        assert "failed to check the configuration of plugin uri-blocker" in line
        assert why in line
        assert kit.get("/bad/x").status == 404
        assert kit.get("/u/x").status == 200
    finally:
        kit.apply(DOC)
