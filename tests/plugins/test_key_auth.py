"""key-auth through a real gateway: APISIX configs, statuses and bodies."""

from __future__ import annotations

import pytest

from pylon.pdk.testing import Kit

DOC = {
    "consumers": [
        {"username": "jack", "plugins": {"key-auth": {"key": "jack-key"}},
         "labels": {"custom_id": "c-42"}},
        {"username": "rose"},
        {"id": "rose/credentials/primary", "plugins": {"key-auth": {"key": "rose-key"}}},
        {"username": "guest"},
    ],
    "routes": [
        {"id": "plain", "uri": "/plain", "plugins": {"key-auth": {}}},
        {"id": "hidden", "uri": "/hidden",
         "plugins": {"key-auth": {"header": "X-Key", "query": "k", "hide_credentials": True}}},
        {"id": "anon", "uri": "/anon",
         "plugins": {"key-auth": {"anonymous_consumer": "guest"}}},
        {"id": "anon-hidden", "uri": "/anon-hidden",
         "plugins": {"key-auth": {"anonymous_consumer": "guest", "hide_credentials": True}}},
        {"id": "realm", "uri": "/realm", "plugins": {"key-auth": {"realm": "partners"}}},
    ],
}
ADMIN_KEY = "k" * 32


@pytest.fixture(scope="module")
def kit():
    with Kit(DOC, admin_key=ADMIN_KEY) as k:
        yield k


def test_missing_key_is_401_with_apisix_body(kit):
    r = kit.get("/plain")
    assert r.status == 401
    assert r.json() == {"message": "Missing API key in request"}


def test_wrong_key_is_401_invalid(kit):
    r = kit.get("/plain", headers={"apikey": "nope"})
    assert r.status == 401
    assert r.json() == {"message": "Invalid API key in request"}


def test_every_401_carries_the_apikey_challenge_with_the_default_realm(kit):
    for headers in ({}, {"apikey": "nope"}):
        r = kit.get("/plain", headers=headers)
        assert r.status == 401
        assert r.headers["www-authenticate"] == 'apikey realm="key"'


def test_configured_realm_is_in_the_challenge(kit):
    r = kit.get("/realm")
    assert r.status == 401
    assert r.headers["www-authenticate"] == 'apikey realm="partners"'
    assert "www-authenticate" not in kit.get("/realm", headers={"apikey": "jack-key"}).headers


def test_empty_realm_is_refused_by_the_admin_api(kit):
    r = kit.admin("PUT", "/routes/bad", {"uri": "/bad", "plugins": {"key-auth": {"realm": ""}},
                                         "upstream": {"nodes": {kit.upstream.addr: 1}}})
    assert r.status == 400
    assert ("failed to check the configuration of plugin key-auth err: "
            'property "realm" validation failed') in r.json()["error_msg"]


def test_key_in_header_identifies_the_consumer_upstream(kit):
    r = kit.get("/plain", headers={"apikey": "jack-key"})
    assert r.status == 200
    h = r.json()["headers"]
    assert h["x-consumer-username"] == "jack"
    assert h["x-consumer-custom-id"] == "c-42"
    assert "x-credential-identifier" not in h
    assert h["apikey"] == "jack-key"          # not hidden by default


def test_key_of_a_credential_names_the_credential(kit):
    r = kit.get("/plain?apikey=rose-key")
    assert r.status == 200
    h = r.json()["headers"]
    assert h["x-consumer-username"] == "rose"
    assert h["x-credential-identifier"] == "primary"


def test_client_cannot_spoof_the_consumer_header(kit):
    r = kit.get("/plain", headers={"apikey": "rose-key", "X-Consumer-Username": "jack"})
    assert r.json()["headers"]["x-consumer-username"] == "rose"


def test_hide_credentials_strips_header_and_query(kit):
    r = kit.get("/hidden", headers={"X-Key": "jack-key"})
    assert r.status == 200 and "x-key" not in r.json()["headers"]
    r = kit.get("/hidden?k=jack-key&keep=1")
    assert r.status == 200 and r.json()["path"] == "/hidden?keep=1"


def test_anonymous_consumer_is_used_without_a_key(kit):
    r = kit.get("/anon")
    assert r.status == 200
    assert r.json()["headers"]["x-consumer-username"] == "guest"
    r = kit.get("/anon", headers={"apikey": "jack-key"})
    assert r.json()["headers"]["x-consumer-username"] == "jack"


def test_wrong_key_under_anonymous_is_hidden_from_the_upstream(kit):
    r = kit.get("/anon-hidden", headers={"apikey": "nope"})
    assert r.status == 200
    h = r.json()["headers"]
    assert h["x-consumer-username"] == "guest" and "apikey" not in h
    r = kit.get("/anon-hidden?apikey=nope&keep=1")
    assert r.status == 200 and r.json()["path"] == "/anon-hidden?keep=1"
    r = kit.get("/anon", headers={"apikey": "nope"})          # not hidden unless asked
    assert r.json()["headers"]["apikey"] == "nope"


def test_duplicate_key_across_consumers_is_refused_and_first_kept(kit):
    doc = dict(DOC)
    doc["consumers"] = DOC["consumers"] + [
        {"username": "mallory", "plugins": {"key-auth": {"key": "jack-key"}}}]
    kit.apply(doc)
    try:
        assert "duplicate key found with consumer: jack" in kit.log()
        r = kit.get("/plain", headers={"apikey": "jack-key"})
        assert r.json()["headers"]["x-consumer-username"] == "jack"
    finally:
        kit.apply(DOC)
