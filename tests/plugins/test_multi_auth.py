"""multi-auth through a real gateway: several auth plugins, first success wins."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import textwrap
import time

import jwt
import pytest

from pylon.pdk.testing import Kit

JWT_SECRET = "jwt-secret-for-multi-auth-tests-32b"

# an auth plugin that sets a response header and a store entry, then refuses
DIRTY = textwrap.dedent('''
    name = "dirty-auth"
    priority = 2419
    type = "auth"
    schema = {"type": "object"}

    def rewrite(conf, ctx):
        ctx.set_resp_header("X-Dirty", "1")
        return 401, {"message": "dirty says no"}, {"WWW-Authenticate": "Dirty"}
''')
NOT_AUTH = textwrap.dedent('''
    name = "not-auth"
    priority = 2418
    schema = {"type": "object"}

    def rewrite(conf, ctx):
        return None
''')

DOC = {
    "consumers": [
        {"username": "jack", "plugins": {
            "basic-auth": {"username": "jack", "password": "jack-pw"},
            "key-auth": {"key": "jack-key"},
            "jwt-auth": {"key": "jack-jwt", "secret": JWT_SECRET},
            "hmac-auth": {"key_id": "jack-hmac", "secret_key": "jack-hmac-secret"}}},
        {"username": "rose"},
        {"id": "rose/credentials/c1", "plugins": {"key-auth": {"key": "rose-key"}}},
        {"username": "guest"},
    ],
    "routes": [
        {"id": "multi", "uri": "/multi", "plugins": {"multi-auth": {"auth_plugins": [
            {"basic-auth": {}}, {"key-auth": {"query": "k"}}, {"jwt-auth": {}}]}}},
        {"id": "body", "uri": "/body", "plugins": {"multi-auth": {"auth_plugins": [
            {"hmac-auth": {"validate_request_body": True}}, {"dirty-auth": {}},
            {"key-auth": {}}]}}},
        {"id": "dirty", "uri": "/dirty", "plugins": {"multi-auth": {"auth_plugins": [
            {"dirty-auth": {}}, {"key-auth": {}}]}}},
        {"id": "hide", "uri": "/hide", "plugins": {"multi-auth": {"auth_plugins": [
            {"key-auth": {}}, {"basic-auth": {"hide_credentials": True}}]}}},
        {"id": "anon", "uri": "/anon", "plugins": {"multi-auth": {"auth_plugins": [
            {"basic-auth": {}}, {"key-auth": {"anonymous_consumer": "guest"}}]}}},
    ],
}


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    d = tmp_path_factory.mktemp("multi-plugins")
    (d / "dirty_auth.py").write_text(DIRTY)
    (d / "not_auth.py").write_text(NOT_AUTH)
    with Kit(DOC, plugin_dirs=[str(d)]) as k:
        yield k


def basic(user: str, pw: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}


def hmac_headers(method: str, path: str, body: bytes) -> dict[str, str]:
    date = email.utils.formatdate(usegmt=True)
    s = f"jack-hmac\n{method} {path}\ndate: {date}\n"
    sig = base64.b64encode(hmac.new(b"jack-hmac-secret", s.encode(), hashlib.sha256)
                           .digest()).decode()
    return {"Date": date,
            "Digest": "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode(),
            "Authorization": f'Signature keyId="jack-hmac",algorithm="hmac-sha256",'
                             f'headers="@request-target date",signature="{sig}"'}


def who(r) -> str:
    assert r.status == 200, r
    return r.json()["headers"]["x-consumer-username"]


def test_no_credentials_is_401_authorization_failed(kit):
    r = kit.get("/multi")
    assert r.status == 401
    assert r.json() == {"message": "Authorization Failed"}
    challenges = [v for k, v in r.header_list if k.lower() == "www-authenticate"]
    assert 'Basic realm="basic"' in challenges and 'Bearer realm="jwt"' in challenges
    log = kit.log()
    assert ("basic-auth failed to authenticate the request, code: 401. error: "
            "Missing authorization in request") in log
    assert ("jwt-auth failed to authenticate the request, code: 401. error: "
            "Missing JWT token in request") in log


def test_each_plugin_can_authenticate(kit):
    assert who(kit.get("/multi", headers=basic("jack", "jack-pw"))) == "jack"
    r = kit.get("/multi?k=rose-key")
    assert who(r) == "rose"
    assert r.json()["headers"]["x-credential-identifier"] == "c1"
    tok = jwt.encode({"key": "jack-jwt", "exp": int(time.time()) + 60}, JWT_SECRET)
    assert who(kit.get("/multi", headers={"Authorization": f"Bearer {tok}"})) == "jack"


def test_wrong_credentials_everywhere_is_401(kit):
    r = kit.get("/multi?k=nope", headers=basic("jack", "bad"))
    assert r.status == 401
    assert r.json() == {"message": "Authorization Failed"}


def test_async_sub_plugin_is_awaited(kit):
    body = b'{"a": 1}'
    assert who(kit.post("/body", body=body, headers=hmac_headers("POST", "/body", body))) \
        == "jack"


def test_chain_goes_on_after_an_async_refusal(kit):
    h = hmac_headers("POST", "/body", b"other body")
    h["apikey"] = "rose-key"
    r = kit.post("/body", body=b"tampered", headers=h)
    assert who(r) == "rose"
    assert "x-dirty" not in r.headers
    h = hmac_headers("POST", "/body", b"other body")
    r = kit.post("/body", body=b"tampered", headers=h)
    assert r.status == 401 and r.json() == {"message": "Authorization Failed"}


def test_refusing_plugin_leaves_no_response_header(kit):
    r = kit.get("/dirty", headers={"apikey": "jack-key"})
    assert who(r) == "jack"
    assert "x-dirty" not in r.headers
    r = kit.get("/dirty")
    assert r.status == 401
    assert "x-dirty" not in r.headers
    challenges = [v for k, v in r.header_list if k.lower() == "www-authenticate"]
    assert "Dirty" in challenges and 'apikey realm="key"' in challenges


def test_sub_plugin_options_apply(kit):
    r = kit.get("/hide", headers=basic("jack", "jack-pw"))
    assert who(r) == "jack" and "authorization" not in r.json()["headers"]


def test_anonymous_consumer_of_a_sub_plugin(kit):
    assert who(kit.get("/anon")) == "guest"
    assert who(kit.get("/anon", headers=basic("jack", "jack-pw"))) == "jack"


@pytest.mark.parametrize("auth_plugins, error", [
    ([{"basic-auth": {}}], "auth_plugins"),
    ([{"basic-auth": {}}, {"nope-auth": {}}], "nope-auth plugin did not found"),
    ([{"basic-auth": {}}, {"not-auth": {}}], "not-auth plugin is not supported"),
    ([{"basic-auth": {}}, {"multi-auth": {"auth_plugins": []}}],
     "multi-auth plugin is not supported"),
    ([{"basic-auth": {"hide_credentials": "yes"}}, {"key-auth": {}}],
     "multi-auth plugin failed to check the configuration of plugin basic-auth err: "),
])
def test_bad_configuration_rejects_the_route(kit, auth_plugins, error):
    doc = json.loads(json.dumps(DOC))
    doc["routes"].append({"id": "bad", "uri": "/bad",
                          "plugins": {"multi-auth": {"auth_plugins": auth_plugins}}})
    before = len(kit.log())
    kit.apply(doc)
    try:
        new = [ln for ln in kit.log()[before:].splitlines() if "(id bad)" in ln]
        assert new and all(error in ln for ln in new), new
        assert kit.get("/bad").status == 404
        assert who(kit.get("/multi", headers=basic("jack", "jack-pw"))) == "jack"
    finally:
        kit.apply(DOC)
