"""basic-auth through a real gateway: APISIX configs, statuses, bodies and challenge."""

from __future__ import annotations

import base64

import pytest

from pylon.pdk.testing import Kit

DOC = {
    "consumers": [
        {"username": "jack", "plugins": {"basic-auth": {"username": "jack", "password": "j-pw"}},
         "labels": {"custom_id": "c-7"}},
        {"username": "rose"},
        {"id": "rose/credentials/c1",
         "plugins": {"basic-auth": {"username": "rose-user", "password": "pa:ss word"}}},
        {"username": "guest"},
    ],
    "routes": [
        {"id": "plain", "uri": "/plain", "plugins": {"basic-auth": {}}},
        {"id": "hidden", "uri": "/hidden", "plugins": {"basic-auth": {"hide_credentials": True}}},
        {"id": "anon", "uri": "/anon", "plugins": {"basic-auth": {"anonymous_consumer": "guest"}}},
        {"id": "ghost", "uri": "/ghost",
         "plugins": {"basic-auth": {"anonymous_consumer": "nobody"}}},
        {"id": "realm", "uri": "/realm", "plugins": {"basic-auth": {"realm": "staff"}}},
        {"id": "anon-hidden", "uri": "/anon-hidden",
         "plugins": {"basic-auth": {"anonymous_consumer": "guest", "hide_credentials": True}}},
    ],
}


def basic(user: str, password: str) -> dict[str, str]:
    tok = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {tok}"}


@pytest.fixture(scope="module")
def kit():
    with Kit(DOC) as k:
        yield k


def test_missing_authorization_is_401_with_challenge(kit):
    r = kit.get("/plain")
    assert r.status == 401
    assert r.json() == {"message": "Missing authorization in request"}
    assert r.headers["www-authenticate"] == 'Basic realm="basic"'


def test_malformed_header_is_401_invalid_authorization(kit):
    for value in ("Bearer abc", "Basic", "Basic !!!notbase64", "Basic " +
                  base64.b64encode(b"no-colon").decode()):
        r = kit.get("/plain", headers={"Authorization": value})
        assert r.status == 401, value
        assert r.json() == {"message": "Invalid authorization in request"}, value


def test_unknown_user_and_wrong_password_look_the_same(kit):
    r1 = kit.get("/plain", headers=basic("nobody", "j-pw"))
    r2 = kit.get("/plain", headers=basic("jack", "wrong"))
    for r in (r1, r2):
        assert r.status == 401
        assert r.json() == {"message": "Invalid user authorization"}
        assert r.headers["www-authenticate"] == 'Basic realm="basic"'


def test_valid_credentials_identify_the_consumer_upstream(kit):
    r = kit.get("/plain", headers=basic("jack", "j-pw"))
    assert r.status == 200
    h = r.json()["headers"]
    assert h["x-consumer-username"] == "jack"
    assert h["x-consumer-custom-id"] == "c-7"
    assert "x-credential-identifier" not in h
    assert h["authorization"].startswith("Basic ")      # kept by default
    assert "www-authenticate" not in r.headers


def test_scheme_is_case_insensitive_and_newline_trimmed(kit):
    tok = base64.b64encode(b"jack:j-pw\n").decode()
    r = kit.get("/plain", headers={"Authorization": f"basic {tok}"})
    assert r.status == 200


def test_credential_with_colon_and_space_in_password(kit):
    r = kit.get("/plain", headers=basic("rose-user", "pa:ss word"))
    assert r.status == 200
    h = r.json()["headers"]
    assert h["x-consumer-username"] == "rose"
    assert h["x-credential-identifier"] == "c1"
    assert kit.get("/plain", headers=basic("rose-user", "pa")).status == 401


def test_hide_credentials_removes_authorization(kit):
    r = kit.get("/hidden", headers=basic("jack", "j-pw"))
    assert r.status == 200
    assert "authorization" not in r.json()["headers"]


def test_anonymous_consumer_when_credentials_missing_or_wrong(kit):
    r = kit.get("/anon")
    assert r.status == 200 and r.json()["headers"]["x-consumer-username"] == "guest"
    r = kit.get("/anon", headers=basic("jack", "wrong"))
    assert r.status == 200 and r.json()["headers"]["x-consumer-username"] == "guest"
    r = kit.get("/anon", headers=basic("jack", "j-pw"))
    assert r.json()["headers"]["x-consumer-username"] == "jack"


def test_wrong_password_under_anonymous_is_hidden_from_the_upstream(kit):
    r = kit.get("/anon-hidden", headers=basic("jack", "wrong"))
    assert r.status == 200 and r.json()["headers"]["x-consumer-username"] == "guest"
    assert "authorization" not in r.json()["headers"]


def test_missing_anonymous_consumer_is_401_invalid_user(kit):
    r = kit.get("/ghost")
    assert r.status == 401
    assert r.json() == {"message": "Invalid user authorization"}


def test_custom_realm_in_challenge(kit):
    r = kit.get("/realm")
    assert r.status == 401
    assert r.headers["www-authenticate"] == 'Basic realm="staff"'


def test_consumer_without_password_is_rejected_and_others_still_served(kit):
    doc = dict(DOC)
    doc["consumers"] = DOC["consumers"] + [
        {"username": "bad", "plugins": {"basic-auth": {"username": "bad"}}}]
    kit.apply(doc)
    try:
        lines = [ln for ln in kit.log().splitlines() if "rejected consumers/bad" in ln]
        assert lines and 'property "password" is required' in lines[-1]
        assert kit.get("/plain", headers=basic("jack", "j-pw")).status == 200
    finally:
        kit.apply(DOC)


def test_duplicate_username_across_consumers_keeps_the_first(kit):
    doc = dict(DOC)
    doc["consumers"] = DOC["consumers"] + [
        {"username": "mallory", "plugins": {"basic-auth": {"username": "jack",
                                                           "password": "evil"}}}]
    kit.apply(doc)
    try:
        assert "duplicate key found with consumer: jack" in kit.log()
        assert kit.get("/plain", headers=basic("jack", "evil")).status == 401
        r = kit.get("/plain", headers=basic("jack", "j-pw"))
        assert r.json()["headers"]["x-consumer-username"] == "jack"
    finally:
        kit.apply(DOC)
