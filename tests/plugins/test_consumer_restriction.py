"""consumer-restriction through a real gateway (with key-auth): APISIX configs and answers."""

from __future__ import annotations

import pytest

from pylon.pdk.testing import Kit

JACK = {"apikey": "jack-key"}
ROSE = {"apikey": "rose-key"}
TOM = {"apikey": "tom-key"}
LIMITED = {"apikey": "limited-key"}


def _route(rid, uri, conf, auth=True, **extra):
    plugins = {"consumer-restriction": conf} if conf is not None else {}
    if auth:
        plugins["key-auth"] = {}
    return {"id": rid, "uri": uri, "plugins": plugins, **extra}


DOC = {
    "consumer_groups": [{"id": "gold", "plugins": {}}, {"id": "silver", "plugins": {}}],
    "consumers": [
        {"username": "jack", "group_id": "gold", "plugins": {"key-auth": {"key": "jack-key"}}},
        {"username": "rose", "group_id": "silver",
         "plugins": {"key-auth": {"key": "rose-key"}}},
        {"username": "tom", "plugins": {"key-auth": {"key": "tom-key"}}},
        # a consumer restricted to one route by its own consumer-restriction
        {"username": "limited", "plugins": {
            "key-auth": {"key": "limited-key"},
            "consumer-restriction": {"type": "route_id", "whitelist": ["open"]}}},
    ],
    "services": [{"id": "svc1"}],
    "routes": [
        _route("white", "/white", {"whitelist": ["jack"]}),
        _route("black", "/black", {"blacklist": ["jack"], "rejected_code": 429,
                                   "rejected_msg": "jack is not welcome"}),
        _route("group", "/group", {"type": "consumer_group_id", "whitelist": ["gold"]}),
        _route("methods", "/methods",
               {"allowed_by_methods": [{"user": "jack", "methods": ["GET"]}]}),
        _route("white-methods", "/white-methods",
               {"whitelist": ["jack"],
                "allowed_by_methods": [{"user": "jack", "methods": ["POST"]},
                                       {"user": "rose", "methods": ["POST"]}]}),
        _route("black-wins", "/black-wins", {"whitelist": ["jack"], "blacklist": ["jack"]}),
        _route("noauth", "/noauth", {"whitelist": ["jack"]}, auth=False),
        _route("by-route", "/by-route", {"type": "route_id", "blacklist": ["by-route"]},
               auth=False),
        _route("in-svc", "/in-svc", {"type": "service_id", "whitelist": ["svc1"]},
               service_id="svc1"),
        _route("no-svc", "/no-svc", {"type": "service_id", "whitelist": ["svc1"]}),
        _route("open", "/open", None),
        _route("other", "/other", None),
    ],
}


@pytest.fixture(scope="module")
def kit():
    with Kit(DOC) as k:
        yield k


def test_whitelisted_consumer_passes(kit):
    r = kit.get("/white", headers=JACK)
    assert r.status == 200
    assert r.json()["headers"]["x-consumer-username"] == "jack"


def test_consumer_not_in_whitelist_is_403_with_apisix_message(kit):
    r = kit.get("/white", headers=ROSE)
    assert r.status == 403
    assert r.json() == {"message": "The consumer_name is forbidden."}


def test_blacklisted_consumer_gets_rejected_code_and_rejected_msg(kit):
    r = kit.get("/black", headers=JACK)
    assert r.status == 429
    assert r.json() == {"message": "jack is not welcome"}
    assert kit.get("/black", headers=ROSE).status == 200


def test_blacklist_wins_over_whitelist(kit):
    r = kit.get("/black-wins", headers=JACK)
    assert r.status == 403
    assert r.json() == {"message": "The consumer_name is forbidden."}


def test_request_without_consumer_is_401_asking_for_the_type(kit):
    r = kit.get("/noauth")
    assert r.status == 401
    assert r.json() == {
        "message": "The request is rejected, please check the consumer_name for this request"}


def test_runs_after_authentication(kit):
    # key-auth (2500, rewrite) answers first; consumer-restriction (2400, access) never sees it
    r = kit.get("/white")
    assert r.status == 401
    assert r.json() == {"message": "Missing API key in request"}


def test_consumer_group_whitelist(kit):
    assert kit.get("/group", headers=JACK).status == 200
    r = kit.get("/group", headers=ROSE)
    assert r.status == 403
    assert r.json() == {"message": "The consumer_group_id is forbidden."}


def test_consumer_without_group_is_401_for_group_type(kit):
    r = kit.get("/group", headers=TOM)
    assert r.status == 401
    assert r.json() == {"message": "The request is rejected, please check the "
                                   "consumer_group_id for this request"}


def test_allowed_by_methods_limits_the_named_consumer(kit):
    assert kit.get("/methods", headers=JACK).status == 200
    r = kit.post("/methods", body="x", headers=JACK)
    assert r.status == 403
    assert r.json() == {"message": "The consumer_name is forbidden."}
    # a consumer not listed is not limited
    assert kit.post("/methods", body="x", headers=ROSE).status == 200


def test_whitelisted_consumer_skips_allowed_by_methods(kit):
    assert kit.get("/white-methods", headers=JACK).status == 200
    # rose is not whitelisted: blocked even with a method allowed_by_methods gives her
    assert kit.post("/white-methods", body="x", headers=ROSE).status == 403


def test_route_id_blacklist(kit):
    r = kit.get("/by-route")
    assert r.status == 403
    assert r.json() == {"message": "The route_id is forbidden."}


def test_service_id_whitelist(kit):
    assert kit.get("/in-svc", headers=TOM).status == 200
    r = kit.get("/no-svc", headers=TOM)
    assert r.status == 401
    assert r.json() == {
        "message": "The request is rejected, please check the service_id for this request"}


def test_restriction_on_the_consumer_applies_after_it_is_identified(kit):
    assert kit.get("/open", headers=LIMITED).status == 200
    r = kit.get("/other", headers=LIMITED)
    assert r.status == 403
    assert r.json() == {"message": "The route_id is forbidden."}
    assert kit.get("/other", headers=JACK).status == 200


def test_bad_configuration_rejects_the_route_and_logs_why(kit):
    doc = dict(DOC)
    doc["routes"] = DOC["routes"] + [
        _route("no-list", "/no-list", {"type": "consumer_name"}),
        _route("bad-type", "/bad-type", {"type": "nope", "whitelist": ["jack"]}),
        _route("bad-code", "/bad-code", {"whitelist": ["jack"], "rejected_code": 100}),
    ]
    kit.apply(doc)
    try:
        log = kit.log()
        for rid in ("no-list", "bad-type", "bad-code"):
            line = next((ln for ln in log.splitlines() if f"(id {rid})" in ln), "")
            assert "failed to check the configuration of plugin consumer-restriction" in line
        assert kit.get("/no-list", headers=JACK).status == 404
        assert kit.get("/white", headers=JACK).status == 200
    finally:
        kit.apply(DOC)
