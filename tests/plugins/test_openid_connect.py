"""openid-connect through a real gateway against a real (test) OpenID provider.

The browser is http.client following redirects by hand and carrying cookies."""

from __future__ import annotations

import base64
import http.client
import json
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from pylon.pdk.testing import Kit, Response
from pylon.proxy import registry

from .oidc_provider import OIDCProvider, _Key

SECRET = "a-session-secret-of-32-characters"


@pytest.fixture(scope="module")
def op():
    p = OIDCProvider(clients={"app": "app-secret", "other": "other-secret"})
    yield p
    p.close()


def _doc(op: OIDCProvider) -> dict[str, Any]:
    base = {"client_id": "app", "client_secret": "app-secret", "discovery": op.discovery_url,
            "ssl_verify": False}
    web = {**base, "session": {"secret": SECRET}, "redirect_uri": "/web/callback",
           "logout_path": "/web/logout", "use_pkce": True, "use_nonce": True,
           "post_logout_redirect_uri": "http://app.example/bye",
           "revoke_tokens_on_logout": True}
    return {"routes": [
        {"id": "jwks", "uri": "/jwks/*", "plugins": {"openid-connect": {
            "client_id": "app", "discovery": op.discovery_url, "bearer_only": True,
            "use_jwks": True, "realm": "test"}}},
        {"id": "scoped", "uri": "/scoped", "plugins": {"openid-connect": {
            **base, "bearer_only": True, "use_jwks": True,
            "required_scopes": ["orders:read", "orders:write"]}}},
        {"id": "aud", "uri": "/aud", "plugins": {"openid-connect": {
            **base, "bearer_only": True, "use_jwks": True,
            "claim_validator": {"audience": {"match_with_client_id": True}}}}},
        {"id": "claims", "uri": "/claims", "plugins": {"openid-connect": {
            **base, "bearer_only": True, "use_jwks": True,
            "claim_schema": {"type": "object", "required": ["email"]}}}},
        {"id": "short", "uri": "/short/*", "plugins": {"openid-connect": {
            **base, "session": {"secret": SECRET, "cookie_name": "short",
                                "absolute_timeout": 2}}}},
        {"id": "pubkey", "uri": "/pubkey", "plugins": {"openid-connect": {
            **base, "bearer_only": True, "public_key": op.public_pem(),
            "token_signing_alg_values_expected": "RS256",
            "access_token_in_authorization_header": True}}},
        {"id": "introspect", "uri": "/introspect/*", "plugins": {"openid-connect": {
            **base, "bearer_only": True, "introspection_endpoint": op.issuer + "/introspect"}}},
        {"id": "introspect-post", "uri": "/ipost", "plugins": {"openid-connect": {
            **base, "bearer_only": True, "introspection_endpoint_auth_method":
            "client_secret_post"}}},     # the endpoint from discovery
        {"id": "introspect-bad", "uri": "/ibad", "plugins": {"openid-connect": {
            **base, "client_secret": "wrong", "bearer_only": True,
            "introspection_endpoint": op.issuer + "/introspect"}}},
        {"id": "web", "uri": "/web/*", "plugins": {"openid-connect": web}},
        {"id": "plain", "uri": "/plain/*", "plugins": {"openid-connect": {
            **base, "session": {"secret": SECRET, "cookie_name": "plain_sess"},
            "token_endpoint_auth_method": "client_secret_post", "scope": "openid profile"}}},
        {"id": "mixed", "uri": "/mixed/*", "plugins": {"openid-connect": {
            **base, "session": {"secret": SECRET}, "use_jwks": True,
            "redirect_uri": "/mixed/cb"}}},
        {"id": "catchall", "uri": "/*", "plugins": {"openid-connect": {
            **base, "session": {"secret": SECRET, "cookie_name": "ca"},
            "redirect_uri": "/catchall/cb"}}},
        {"id": "deny", "uri": "/deny", "plugins": {"openid-connect": {
            **base, "session": {"secret": SECRET}, "unauth_action": "deny"}}},
        {"id": "pass", "uri": "/pass", "plugins": {"openid-connect": {
            **base, "session": {"secret": SECRET}, "unauth_action": "pass"}}},
        {"id": "deadop", "uri": "/deadop/*", "plugins": {"openid-connect": {
            **base, "session": {"secret": SECRET},
            "discovery": "http://127.0.0.1:9/.well-known/openid-configuration",
            "timeout": 1}}},
    ]}


@pytest.fixture(scope="module")
def kit(op):
    with Kit(_doc(op)) as k:
        yield k


# -- a browser ------------------------------------------------------------------------------
class Browser:
    def __init__(self, kit: Kit) -> None:
        self.kit = kit
        self.jar: dict[str, str] = {}

    def get(self, url: str, headers: dict[str, str] | None = None) -> Response:
        u = urlsplit(url)
        host, port = (u.hostname, u.port) if u.scheme else ("127.0.0.1", self.kit.port)
        target = (u.path or "/") + ("?" + u.query if u.query else "")
        hdrs = dict(headers or {})
        if port == self.kit.port and self.jar:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        c = http.client.HTTPConnection(host, port, timeout=10)
        try:
            c.request("GET", target, headers=hdrs)
            r = c.getresponse()
            resp = Response(r.status, r.getheaders(), r.read())
        finally:
            c.close()
        if port == self.kit.port:
            for k, v in resp.header_list:
                if k.lower() == "set-cookie":
                    name, _, rest = v.partition("=")
                    value = rest.split(";", 1)[0]
                    if "Max-Age=0" in v:
                        self.jar.pop(name, None)
                    else:
                        self.jar[name] = value
        return resp

    def login(self, path: str) -> Response:
        """Follow the whole flow from ``path``; the final response from the gateway."""
        r = self.get(path)
        for _ in range(6):
            if r.status != 302:
                return r
            r = self.get(r.headers["location"])
        raise AssertionError("redirect loop")


def set_cookies(r: Response) -> list[str]:
    return [v for k, v in r.header_list if k.lower() == "set-cookie"]


def b64json(v: str) -> Any:
    return json.loads(base64.b64decode(v))


def www_auth(r: Response) -> str:
    return r.headers.get("www-authenticate", "")


# -- bearer: JWKS ---------------------------------------------------------------------------
def test_bearer_only_without_token_is_401_with_realm(kit):
    r = kit.get("/jwks/x")
    assert r.status == 401
    assert www_auth(r) == 'Bearer realm="test"'


def test_bearer_token_checked_against_jwks_passes_with_headers(kit, op):
    tok = op.mint()
    r = kit.get("/jwks/x", headers={"Authorization": "Bearer " + tok,
                                    "X-Userinfo": "forged", "X-ID-Token": "forged"})
    assert r.status == 200, r.body
    h = r.json()["headers"]
    assert h["x-access-token"] == tok
    info = b64json(h["x-userinfo"])
    assert info["sub"] == "alice" and info["iss"] == op.issuer
    assert "x-id-token" not in h                 # the client's copy is removed


def test_lowercase_bearer_scheme_is_accepted(kit, op):
    assert kit.get("/jwks/x", headers={"Authorization": "bearer " + op.mint()}).status == 200


def test_expired_token_is_401_invalid_token(kit, op):
    r = kit.get("/jwks/x", headers={"Authorization": "Bearer " + op.mint(ttl=-10)})
    assert r.status == 401
    assert www_auth(r).startswith('Bearer realm="test", error="invalid_token", '
                                  'error_description="')
    assert "expired" in www_auth(r)


def test_tampered_or_foreign_token_is_401(kit, op):
    tok = op.mint()
    head, payload, sig = tok.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "mallory"
    forged = head + "." + base64.urlsafe_b64encode(json.dumps(claims).encode()) \
        .rstrip(b"=").decode() + "." + sig
    assert kit.get("/jwks/x", headers={"Authorization": "Bearer " + forged}).status == 401
    other_issuer = op.mint({"iss": "http://evil.example"})
    r = kit.get("/jwks/x", headers={"Authorization": "Bearer " + other_issuer})
    assert r.status == 401 and "iss" in www_auth(r)
    for junk in ("abc", "a.b.c", ""):
        r = kit.get("/jwks/x", headers={"Authorization": "Bearer " + junk})
        assert r.status == 401


def test_authorization_header_without_a_token_is_400(kit):
    assert kit.get("/jwks/x", headers={"Authorization": "Bearer"}).status == 400


def test_other_authorization_scheme_is_no_token(kit):
    r = kit.get("/jwks/x", headers={"Authorization": "Basic YTpi"})
    assert r.status == 401 and www_auth(r) == 'Bearer realm="test"'


def test_x_access_token_header_is_a_bearer_input(kit, op):
    tok = op.mint()
    r = kit.get("/jwks/x", headers={"X-Access-Token": tok})
    assert r.status == 200 and r.json()["headers"]["x-access-token"] == tok


def test_rotated_key_refetches_jwks_once(kit, op):
    kit.get("/jwks/x", headers={"Authorization": "Bearer " + op.mint()})   # JWKS cached
    before = op.count("/jwks")
    op.rotate_key()
    r = kit.get("/jwks/x", headers={"Authorization": "Bearer " + op.mint()})
    assert r.status == 200
    assert op.count("/jwks") == before + 1
    assert kit.get("/jwks/x", headers={"Authorization": "Bearer " + op.mint()}).status == 200
    assert op.count("/jwks") == before + 1       # cached again


def test_unknown_kid_refetches_are_bounded(kit, op):
    rogue = _Key("rogue")
    kit.get("/jwks/x", headers={"Authorization": "Bearer " + op.mint(key=rogue)})
    before = op.count("/jwks")
    for _ in range(5):
        r = kit.get("/jwks/x", headers={"Authorization": "Bearer " + op.mint(key=rogue)})
        assert r.status == 401
    assert op.count("/jwks") <= before + 1


def test_required_scopes_missing_is_403(kit, op):
    r = kit.get("/scoped", headers={"Authorization": "Bearer " + op.mint(
        {"scope": "openid orders:read"})})
    assert r.status == 403
    assert r.json() == {"error": "required scopes orders:read, orders:write not present"}
    r = kit.get("/scoped", headers={"Authorization": "Bearer " + op.mint(
        {"scope": "orders:write openid orders:read"})})
    assert r.status == 200


def test_audience_must_match_client_id_when_asked(kit, op):
    r = kit.get("/aud", headers={"Authorization": "Bearer " + op.mint(aud="someone-else")})
    assert (r.status, r.json()) == (403, {"error": "mismatched audience"})
    r = kit.get("/aud", headers={"Authorization": "Bearer " + op.mint(aud=["x", "app"])})
    assert r.status == 200
    # without claim_validator the audience is not checked for bearer tokens
    assert kit.get("/jwks/x", headers={"Authorization": "Bearer " + op.mint(
        aud="someone-else")}).status == 200


def test_claim_schema_is_enforced_on_bearer_claims(kit, op):
    r = kit.get("/claims", headers={"Authorization": "Bearer " + op.mint()})
    assert r.status == 401 and 'error="invalid_token"' in www_auth(r)
    r = kit.get("/claims", headers={"Authorization": "Bearer " + op.mint(
        {"email": "alice@example.com"})})
    assert r.status == 200


def test_public_key_verification_and_authorization_header_output(kit, op):
    first = op.keys[-1]                          # the key the route's public_key is
    tok = op.mint(key=first)
    r = kit.get("/pubkey", headers={"Authorization": "Bearer " + tok})
    assert r.status == 200
    h = r.json()["headers"]
    assert h["authorization"] == "Bearer " + tok
    assert "x-access-token" not in h
    r = kit.get("/pubkey", headers={"Authorization": "Bearer " + op.mint(key=_Key("zz"))})
    assert r.status == 401


# -- bearer: introspection ------------------------------------------------------------------
def test_introspection_active_token_passes_and_is_cached(kit, op):
    tok = op.mint_opaque({"scope": "openid read"})
    before = op.count("/introspect")
    r = kit.get("/introspect/a", headers={"Authorization": "Bearer " + tok})
    assert r.status == 200
    h = r.json()["headers"]
    assert h["x-access-token"] == tok
    info = b64json(h["x-userinfo"])
    assert info["active"] is True and info["username"] == "alice"
    assert op.last("/introspect")["client_auth"] == "client_secret_basic"
    assert op.last("/introspect")["form"]["token"] == tok
    assert "client_secret" not in op.last("/introspect")["form"]
    assert kit.get("/introspect/b", headers={"Authorization": "Bearer " + tok}).status == 200
    assert op.count("/introspect") == before + 1


def test_introspection_inactive_token_is_401(kit, op):
    tok = op.mint_opaque(ttl=-5)
    r = kit.get("/introspect/a", headers={"Authorization": "Bearer " + tok})
    assert r.status == 401
    assert 'error="invalid_token"' in www_auth(r)
    assert 'error_description="invalid token"' in www_auth(r)


def test_introspection_with_client_secret_post_and_discovered_endpoint(kit, op):
    tok = op.mint_opaque()
    r = kit.get("/ipost", headers={"Authorization": "Bearer " + tok})
    assert r.status == 200
    last = op.last("/introspect")
    assert last["client_auth"] == "client_secret_post"
    assert last["form"]["client_id"] == "app"


def test_introspection_rejected_client_is_401(kit, op):
    r = kit.get("/ibad", headers={"Authorization": "Bearer " + op.mint_opaque()})
    assert r.status == 401
    assert "status=401" in www_auth(r)


# -- the authorization code flow ------------------------------------------------------------
def test_login_flow_end_to_end(kit, op):
    b = Browser(kit)
    r = b.get("/web/page?x=1")
    assert r.status == 302
    loc = urlsplit(r.headers["location"])
    assert f"{loc.scheme}://{loc.netloc}{loc.path}" == op.issuer + "/authorize"
    q = {k: v[0] for k, v in parse_qs(loc.query).items()}
    assert q["client_id"] == "app" and q["response_type"] == "code"
    assert q["scope"] == "openid"
    assert q["redirect_uri"] == f"http://127.0.0.1:{kit.port}/web/callback"
    assert len(q["state"]) == 32 and len(q["nonce"]) == 32
    assert q["code_challenge_method"] == "S256" and q["code_challenge"]
    assert r.headers["cache-control"] == "no-cache, no-store, max-age=0"
    cookie = set_cookies(r)[0]
    assert cookie.startswith("session=") and "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie and "Path=/" in cookie

    r = b.get(r.headers["location"])                  # the provider approves
    assert r.status == 302 and r.headers["location"].startswith(q["redirect_uri"] + "?code=")
    r = b.get(r.headers["location"])                  # the callback at the gateway
    assert r.status == 302 and r.headers["location"] == "/web/page?x=1"
    tok_req = op.last("/token")
    assert tok_req["client_auth"] == "client_secret_basic"
    assert tok_req["form"]["code_verifier"]
    assert tok_req["form"]["redirect_uri"] == q["redirect_uri"]

    r = b.get("/web/page?x=1")
    assert r.status == 200, r.body
    up = r.json()
    assert up["path"] == "/web/page?x=1"
    h = up["headers"]
    assert op._verify_token(h["x-access-token"])["sub"] == "alice"
    idt = b64json(h["x-id-token"])
    assert idt["sub"] == "alice" and idt["aud"] == "app" and idt["nonce"] == q["nonce"]
    assert b64json(h["x-userinfo"]) == op.user
    assert "x-refresh-token" not in h and "x-raw-id-token" not in h


def test_session_cookie_is_encrypted(kit, op):
    b = Browser(kit)
    assert b.login("/web/enc").status == 200
    raw = b.jar["session"]
    assert "alice" not in raw
    assert b"alice" not in base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))


def test_tampered_session_cookie_means_a_new_login(kit, op):
    b = Browser(kit)
    assert b.login("/web/t").status == 200
    v = b.jar["session"]
    b.jar["session"] = v[:20] + ("A" if v[20] != "A" else "B") + v[21:]
    r = b.get("/web/t")
    assert r.status == 302
    assert r.headers["location"].startswith(op.issuer + "/authorize?")


def test_session_from_another_secret_is_refused(kit, op):
    b = Browser(kit)
    assert b.login("/plain/a").status == 200          # cookie plain_sess, same secret
    b2 = Browser(kit)
    b2.jar["session"] = b.jar["plain_sess"]          # moved to another cookie name
    assert b2.get("/web/x").status == 302


def test_no_session_at_callback_is_500(kit):
    assert kit.get("/web/callback?code=abc&state=def").status == 500


def test_wrong_state_restarts_the_flow_a_bounded_number_of_times(kit, op):
    b = Browser(kit)
    r = b.get("/web/start")
    assert r.status == 302
    for _ in range(3):
        r = b.get("/web/callback?code=abc&state=not-the-state")
        assert r.status == 302 and r.headers["location"] == "/web/start"
    assert b.get("/web/callback?code=abc&state=not-the-state").status == 500


def test_callback_without_code_is_500(kit):
    b = Browser(kit)
    b.get("/web/start")
    assert b.get("/web/callback?error=access_denied").status == 500


def test_id_token_for_another_audience_is_refused(kit, op):
    op.id_token_overrides = {"aud": "someone-else"}
    try:
        b = Browser(kit)
        r = b.login("/web/aud")
        assert r.status == 500
        assert b.get("/web/aud").status == 302           # still not logged in
    finally:
        op.id_token_overrides = {}


def test_id_token_with_wrong_nonce_or_issuer_is_refused(kit, op):
    for bad in ({"nonce": "other"}, {"iss": "http://evil.example"}, {"exp": 1000}):
        op.id_token_overrides = bad
        try:
            assert Browser(kit).login("/web/n").status == 500, bad
        finally:
            op.id_token_overrides = {}


def test_original_url_never_leaves_the_site(kit, op):
    c = http.client.HTTPConnection("127.0.0.1", kit.port, timeout=10)
    try:
        c.request("GET", "//evil.example/landing?x=1")
        r = c.getresponse()
        r.read()
        assert r.status == 302, r.status
        cookies = [v for k, v in r.getheaders() if k.lower() == "set-cookie"]
        location = r.getheader("Location")
    finally:
        c.close()
    b = Browser(kit)
    name, _, rest = cookies[0].partition("=")
    b.jar[name] = rest.split(";", 1)[0]
    r = b.get(location)                                  # the provider
    r = b.get(r.headers["location"])                     # the callback
    assert r.status == 302
    assert r.headers["location"] == "/evil.example/landing?x=1"


def test_default_redirect_uri_and_client_secret_post(kit, op):
    b = Browser(kit)
    r = b.get("/plain/deep/page")
    q = parse_qs(urlsplit(r.headers["location"]).query)
    assert q["redirect_uri"] == [f"http://127.0.0.1:{kit.port}/plain/deep/page/.apisix/redirect"]
    assert q["scope"] == ["openid profile"]
    assert "nonce" not in q and "code_challenge" not in q     # use_nonce / use_pkce off
    assert set_cookies(r)[0].startswith("plain_sess=")
    r = b.login("/plain/deep/page")
    assert r.status == 200
    assert op.last("/token")["client_auth"] == "client_secret_post"


def test_forwarded_proto_and_host_shape_the_redirect_uri(kit):
    r = kit.get("/plain/p", headers={"X-Forwarded-Proto": "https",
                                     "X-Forwarded-Host": "gw.example, inner"})
    q = parse_qs(urlsplit(r.headers["location"]).query)
    assert q["redirect_uri"] == ["https://gw.example/plain/p/.apisix/redirect"]


def test_logout_clears_the_session_and_goes_to_end_session(kit, op):
    b = Browser(kit)
    assert b.login("/web/l").status == 200
    revokes = op.count("/revoke")
    r = b.get("/web/logout")
    assert r.status == 302
    loc = urlsplit(r.headers["location"])
    assert f"{loc.scheme}://{loc.netloc}{loc.path}" == op.issuer + "/logout"
    q = parse_qs(loc.query)
    assert q["post_logout_redirect_uri"] == ["http://app.example/bye"]
    hint = op._verify_token(q["id_token_hint"][0])          # the raw ID token
    assert hint is not None and hint["aud"] == "app"
    assert any("Max-Age=0" in c and c.startswith("session=") for c in set_cookies(r))
    assert op.count("/revoke") == revokes + 2                 # revoke_tokens_on_logout
    assert "session" not in b.jar
    assert b.get("/web/l").status == 302


def test_logout_without_end_session_endpoint_says_logged_out(kit, op):
    op_meta = op.metadata

    def no_end_session() -> dict[str, Any]:
        m = op_meta()
        m.pop("end_session_endpoint")
        return m
    other = OIDCProvider()
    other.metadata = no_end_session  # type: ignore[method-assign]
    try:
        doc = _doc(op)
        doc["routes"].append({"id": "noend", "uri": "/noend/*", "plugins": {
            "openid-connect": {"client_id": "app", "client_secret": "app-secret",
                               "discovery": other.discovery_url,
                               "session": {"secret": SECRET},
                               "logout_path": "/noend/logout"}}})
        kit.apply(doc)
        r = kit.get("/noend/logout")
        assert r.status == 200
        assert r.headers["content-type"] == "text/html"
        assert r.body == b"<html><body>Logged Out</body></html>\n"
    finally:
        kit.apply(_doc(op))
        other.close()


def test_session_ends_after_absolute_timeout(kit, op):
    b = Browser(kit)
    assert b.login("/short/a").status == 200
    assert b.get("/short/a").status == 200
    time.sleep(2.3)
    r = b.get("/short/a")
    assert r.status == 302 and "/authorize?" in r.headers["location"]


def test_expired_access_token_is_refreshed(kit, op):
    op.access_ttl = 2                      # kept until now + 1 s
    try:
        b = Browser(kit)
        assert b.login("/web/r").status == 200
        first = b.get("/web/r").json()["headers"]["x-access-token"]
        refreshes = sum(1 for x in op.requests if x["path"] == "/token"
                        and x["form"].get("grant_type") == "refresh_token")
        time.sleep(1.2)
        r = b.get("/web/r")
        assert r.status == 200
        second = r.json()["headers"]["x-access-token"]
        assert second != first
        assert sum(1 for x in op.requests if x["path"] == "/token"
                   and x["form"].get("grant_type") == "refresh_token") == refreshes + 1
        assert any(c.startswith("session=") for c in set_cookies(r))   # session re-saved
    finally:
        op.access_ttl = 300


def test_bearer_takes_precedence_then_session_flow(kit, op):
    r = kit.get("/mixed/a", headers={"Authorization": "Bearer " + op.mint()})
    assert r.status == 200 and "x-access-token" in r.json()["headers"]
    r = kit.get("/mixed/a", headers={"Authorization": "Bearer nonsense"})
    assert r.status == 401                  # an invalid token is not sent to login
    r = kit.get("/mixed/a")
    assert r.status == 302 and "/authorize?" in r.headers["location"]


def test_unauth_action_deny_and_pass(kit, op):
    assert kit.get("/deny").status == 401
    r = kit.get("/pass", headers={"X-Userinfo": "forged"})
    assert r.status == 200
    assert "x-userinfo" not in r.json()["headers"]


def test_unreachable_provider_is_500_without_hanging(kit):
    t0 = time.monotonic()
    assert kit.get("/deadop/x").status == 500
    assert time.monotonic() - t0 < 5


def test_large_session_is_split_across_cookies(kit, op):
    op.user = {**op.user, "blob": secrets.token_hex(3000)}     # incompressible 6 KB
    try:
        b = Browser(kit)
        r = b.login("/web/big")
        assert r.status == 200, r.body
        assert "session_2" in b.jar
        assert b64json(r.json()["headers"]["x-userinfo"])["blob"] == op.user["blob"]
        del b.jar["session_2"]                             # a chunk lost: no session
        assert b.get("/web/big").status == 302
    finally:
        op.user = {"sub": "alice", "name": "Alice", "email": "alice@example.com"}


# -- configuration --------------------------------------------------------------------------
def test_schema_defaults_and_apisix_checks():
    spec = registry.load(["openid-connect"]).get("openid-connect")
    assert spec is not None and spec.priority == 2599
    assert "session.secret" in spec.encrypt_fields and "client_secret" in spec.encrypt_fields
    conf = spec.check_conf({"client_id": "a", "client_secret": "b",
                            "discovery": "https://op/.well-known/openid-configuration",
                            "bearer_only": True})
    for k, v in {"scope": "openid", "realm": "apisix", "logout_path": "/logout",
                 "ssl_verify": True, "timeout": 3, "unauth_action": "auth",
                 "introspection_endpoint_auth_method": "client_secret_basic",
                 "token_endpoint_auth_method": "client_secret_basic",
                 "set_access_token_header": True, "set_userinfo_header": True,
                 "set_id_token_header": True, "use_jwks": False, "use_pkce": False,
                 "access_token_in_authorization_header": False}.items():
        assert conf[k] == v, k
    with pytest.raises(registry.PluginConfigError) as ei:
        spec.check_conf({"client_id": "a", "client_secret": "b", "discovery": "http://x"})
    assert 'property "session.secret" is required when "bearer_only" is false' in str(ei.value)
    with pytest.raises(registry.PluginConfigError) as ei:
        spec.check_conf({"client_id": "a", "discovery": "http://x", "bearer_only": True})
    assert 'property "client_secret" is required' in str(ei.value)
    # no client secret needed to verify tokens locally, or for a PKCE public client
    spec.check_conf({"client_id": "a", "discovery": "http://x", "bearer_only": True,
                     "use_jwks": True})
    spec.check_conf({"client_id": "a", "discovery": "http://x", "use_pkce": True,
                     "session": {"secret": SECRET}})
    with pytest.raises(registry.PluginConfigError):
        spec.check_conf({"client_id": "a", "client_secret": "b", "discovery": "http://x",
                         "session": {"secret": "short"}})
    with pytest.raises(registry.PluginConfigError):
        spec.check_conf({"client_id": "a", "client_secret": "b", "discovery": "http://x",
                         "bearer_only": True, "unauth_action": "maybe"})
    with pytest.raises(registry.PluginConfigError):
        spec.check_conf({"client_secret": "b", "discovery": "http://x", "bearer_only": True})
    with pytest.raises(registry.PluginConfigError) as ei:
        spec.check_conf({"client_id": "a", "client_secret": "b", "discovery": "http://x",
                         "bearer_only": True, "use_dpop": True})
    assert 'use "dpop.enabled" instead' in str(ei.value)


def test_no_plugin_failure_in_the_gateway_log(kit):
    log = kit.log()
    assert "Traceback" not in log and "plugin_failed" not in log
    assert "app-secret" not in log and SECRET not in log       # secrets never logged
