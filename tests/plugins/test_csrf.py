"""csrf through a real gateway: APISIX's token format, cookie, statuses and bodies."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time

import pytest

from pylon.pdk.testing import Kit

KEY = "userkey"
DOC = {
    "routes": [
        {"id": "csrf", "uri": "/csrf", "plugins": {"csrf": {"key": KEY}}},
        {"id": "custom", "uri": "/custom",
         "plugins": {"csrf": {"key": "other", "name": "x-csrf", "expires": 60}}},
        {"id": "forever", "uri": "/forever",
         "plugins": {"csrf": {"key": KEY, "expires": 0}}},
    ],
}
NAME = "apisix-csrf-token"


@pytest.fixture(scope="module")
def kit():
    with Kit(DOC) as k:
        yield k


def apisix_token(key: str, random: str = "0.84018771676347", issued: int | None = None,
                 sign: str | None = None) -> str:
    """A token built the way APISIX's csrf.lua builds it (independently of the plugin)."""
    issued = int(time.time()) if issued is None else issued
    if sign is None:
        sign = hashlib.sha256(f"{{expires:{issued},random:{random},key:{key}}}".encode()) \
            .hexdigest()
    body = f'{{"expires":{issued},"sign":"{sign}","random":{random}}}'
    return base64.b64encode(body.encode()).decode()


def _cookie(r, name=NAME):
    for k, v in r.header_list:
        if k.lower() == "set-cookie" and v.startswith(name + "="):
            return v
    raise AssertionError(f"no {name} cookie in {r.header_list}")


def _token(r, name=NAME):
    return _cookie(r, name).split(";", 1)[0].split("=", 1)[1]


def _post(kit, path, token=None, cookie=None, name=NAME, method="POST"):
    h = {}
    if token is not None:
        h[name] = token
    if cookie is not None:
        h["Cookie"] = f"{name}={cookie}"
    return kit.request(method, path, body="{}", headers=h)


def test_safe_request_gets_an_apisix_token_cookie(kit):
    now = int(time.time())
    r = kit.get("/csrf")
    assert r.status == 200
    cookie = _cookie(r)
    m = re.fullmatch(NAME + r"=([A-Za-z0-9+/=]+);path=/;SameSite=Lax;"
                     r"Expires=(\w{3}, \d\d-\w{3}-\d\d \d\d:\d\d:\d\d GMT)", cookie)
    assert m, cookie
    expiry = time.strptime(m.group(2), "%a, %d-%b-%y %H:%M:%S GMT")
    assert abs(time.mktime(expiry) - time.mktime(time.gmtime(now + 7200))) <= 2
    tok = json.loads(base64.b64decode(m.group(1)))
    assert set(tok) == {"random", "expires", "sign"}
    assert abs(tok["expires"] - now) <= 2
    assert tok["sign"] == hashlib.sha256(
        f"{{expires:{tok['expires']:.14g},random:{tok['random']:.14g},key:{KEY}}}".encode()
    ).hexdigest()


def test_token_from_a_safe_request_passes_an_unsafe_one(kit):
    tok = _token(kit.get("/csrf"))
    r = _post(kit, "/csrf", tok, tok)
    assert r.status == 200
    assert r.json()["method"] == "POST"


def test_missing_header_is_401(kit):
    tok = _token(kit.get("/csrf"))
    r = _post(kit, "/csrf", None, tok)
    assert r.status == 401
    assert r.json() == {"error_msg": "no csrf token in headers"}
    r = _post(kit, "/csrf", "", tok)
    assert r.json() == {"error_msg": "no csrf token in headers"}


def test_missing_cookie_is_401(kit):
    tok = _token(kit.get("/csrf"))
    r = _post(kit, "/csrf", tok, None)
    assert r.status == 401
    assert r.json() == {"error_msg": "no csrf cookie"}


def test_header_and_cookie_must_match(kit):
    a = _token(kit.get("/csrf"))
    b = _token(kit.get("/csrf"))
    assert a != b                                      # a fresh token every response
    r = _post(kit, "/csrf", a, b)
    assert r.status == 401
    assert r.json() == {"error_msg": "csrf token mismatch"}


def test_token_signed_with_another_key_is_refused(kit):
    bad = apisix_token("not-the-key")
    r = _post(kit, "/csrf", bad, bad)
    assert r.status == 401
    assert r.json() == {"error_msg": "Failed to verify the csrf token signature"}


def test_garbage_token_is_refused_not_a_500(kit):
    for bad in ("not base64!", base64.b64encode(b"[1,2]").decode(),
                base64.b64encode(b'{"random":true,"expires":1,"sign":"x"}').decode(),
                base64.b64encode(b'{"expires":1,"sign":"x"}').decode()):
        r = _post(kit, "/csrf", bad, bad)
        assert r.status == 401, bad
        assert r.json() == {"error_msg": "Failed to verify the csrf token signature"}


def test_token_made_by_apisix_is_accepted(kit):
    tok = apisix_token(KEY)
    assert _post(kit, "/csrf", tok, tok).status == 200
    tok = apisix_token(KEY, random="1.2e-05")
    assert _post(kit, "/csrf", tok, tok).status == 200


def test_expired_token_is_401(kit):
    old = apisix_token(KEY, issued=int(time.time()) - 7300)
    r = _post(kit, "/csrf", old, old)
    assert r.status == 401
    assert r.json() == {"error_msg": "Failed to verify the csrf token signature"}
    assert _post(kit, "/forever", old, old).status == 200     # expires 0: never


def test_every_unsafe_method_is_checked_and_safe_ones_pass(kit):
    for m in ("PUT", "DELETE", "PATCH"):
        r = _post(kit, "/csrf", method=m)
        assert r.status == 401, m
    for m in ("GET", "HEAD", "OPTIONS"):
        assert kit.request(m, "/csrf").status == 200, m


def test_custom_name_and_expiry(kit):
    r = kit.get("/custom")
    cookie = _cookie(r, "x-csrf")
    tok = _token(r, "x-csrf")
    assert ";SameSite=Lax;Expires=" in cookie
    assert _post(kit, "/custom", tok, tok, name="x-csrf").status == 200
    r = _post(kit, "/custom", tok, tok)                     # wrong name: no header
    assert r.json() == {"error_msg": "no csrf token in headers"}
    old = apisix_token("other", issued=int(time.time()) - 120)
    assert _post(kit, "/custom", old, old, name="x-csrf").status == 401


def test_rejections_also_carry_a_fresh_token(kit):
    r = _post(kit, "/csrf")
    assert r.status == 401
    tok = _token(r)
    assert _post(kit, "/csrf", tok, tok).status == 200
