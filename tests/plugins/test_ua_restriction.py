"""ua-restriction through a real gateway: allowlist / denylist regexes, missing User-Agent."""

from __future__ import annotations

import http.client
import json

import pytest

from pylon.pdk.testing import Kit

NOT_ALLOWED = {"message": "Not allowed"}


def _route(rid, conf):
    return {"id": rid, "uri": "/" + rid, "plugins": {"ua-restriction": conf}}


DOC = {
    "routes": [
        _route("deny", {"denylist": ["my-bot2", r"(Twitterspider)/(\d+)\.(\d+)"]}),
        _route("deny-msg", {"denylist": ["^curl/"], "message": "Do you want to do something bad?",
                            "bypass_missing": True}),
        _route("allow", {"allowlist": ["my-bot1", r"(Baiduspider)/(\d+)\.(\d+)"]}),
        _route("pcre", {"denylist": [r"(?<name>evil)\d+", r"[[:digit:]]{5}"]}),
    ],
}


@pytest.fixture(scope="module")
def kit():
    with Kit(DOC) as k:
        yield k


def _ua(value):
    return {"User-Agent": value}


def _get_with_uas(kit, path, uas):
    """A request carrying several User-Agent headers."""
    c = http.client.HTTPConnection("127.0.0.1", kit.port, timeout=10)
    try:
        c.putrequest("GET", path, skip_accept_encoding=True)
        for ua in uas:
            c.putheader("User-Agent", ua)
        c.endheaders()
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def test_user_agent_not_in_denylist_passes(kit):
    assert kit.get("/deny", headers=_ua("Mozilla/5.0")).status == 200


def test_user_agent_matching_a_denylist_regex_is_403(kit):
    r = kit.get("/deny", headers=_ua("Twitterspider/2.0"))
    assert r.status == 403
    assert r.json() == NOT_ALLOWED
    # the regex is searched anywhere in the value
    assert kit.get("/deny", headers=_ua("x my-bot2 y")).status == 403


def test_missing_user_agent_is_403_by_default(kit):
    r = kit.get("/deny")
    assert r.status == 403
    assert r.json() == NOT_ALLOWED


def test_bypass_missing_lets_requests_without_user_agent_through(kit):
    assert kit.get("/deny-msg").status == 200


def test_custom_message(kit):
    r = kit.get("/deny-msg", headers=_ua("curl/8.0"))
    assert r.status == 403
    assert r.json() == {"message": "Do you want to do something bad?"}


def test_allowlist_lets_only_matching_user_agents_through(kit):
    assert kit.get("/allow", headers=_ua("Baiduspider/3.1")).status == 200
    assert kit.get("/allow", headers=_ua("  my-bot1  ")).status == 200
    r = kit.get("/allow", headers=_ua("Mozilla/5.0"))
    assert r.status == 403
    assert r.json() == NOT_ALLOWED


def test_pcre_syntax_is_understood(kit):
    assert kit.get("/pcre", headers=_ua("an evil42 bot")).status == 403
    assert kit.get("/pcre", headers=_ua("build 12345")).status == 403
    assert kit.get("/pcre", headers=_ua("evil bot 1234")).status == 200


def test_repeated_user_agent_is_checked_per_value(kit):
    # denylist: one denied value is enough to deny
    status, body = _get_with_uas(kit, "/deny", ["Mozilla/5.0", "my-bot2"])
    assert status == 403 and json.loads(body) == NOT_ALLOWED
    # each value on its own: an anchored regex matches the second one
    status, _ = _get_with_uas(kit, "/deny-msg", ["Mozilla/5.0", "curl/8.0"])
    assert status == 403
    # allowlist: one allowed value is enough to allow
    status, _ = _get_with_uas(kit, "/allow", ["Mozilla/5.0", "my-bot1"])
    assert status == 200
    status, _ = _get_with_uas(kit, "/allow", ["Mozilla/5.0", "curl/8"])
    assert status == 403


def test_same_user_agent_gives_the_same_answer_again(kit):
    for _ in range(3):
        assert kit.get("/deny", headers=_ua("Twitterspider/1.0")).status == 403
        assert kit.get("/deny", headers=_ua("Firefox")).status == 200


@pytest.mark.parametrize("conf, why", [
    ({"denylist": ["(unclosed"]}, "failed to compile regex '(unclosed'"),
    ({"allowlist": ["ok", "[z-a]"]}, "failed to compile regex '[z-a]'"),
    ({"allowlist": ["a"], "denylist": ["b"]}, ""),
    ({"bypass_missing": True}, ""),
    ({"denylist": []}, "denylist"),
    ({"denylist": ["a"], "message": ""}, "message"),
])
def test_bad_configuration_rejects_the_route_and_logs_why(kit, conf, why):
    before = len(kit.log())
    kit.apply({"routes": DOC["routes"] + [_route("bad", conf)]})
    try:
        line = next((ln for ln in kit.log()[before:].splitlines() if "(id bad)" in ln), "")
        assert "failed to check the configuration of plugin ua-restriction" in line
        assert why in line
        assert kit.get("/bad", headers=_ua("x")).status == 404
        assert kit.get("/allow", headers=_ua("my-bot1")).status == 200
    finally:
        kit.apply(DOC)
