"""jwt-auth through a real gateway: tokens signed here with PyJWT and generated keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import textwrap
import time
import warnings
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from pylon.pdk.testing import Kit

HS_SECRET = "jack-hs256-secret-that-is-very-long!"          # 36 bytes
HS512_SECRET = "r" * 64
B64_SECRET = base64.b64encode(b"\x01" * 48).decode()          # HS384, base64_secret

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def pem(key) -> str:
    return key.public_key().public_bytes(ser.Encoding.PEM,
                                         ser.PublicFormat.SubjectPublicKeyInfo).decode()


def jwk(obj, key, kid):
    d = json.loads(obj.to_jwk(key.public_key()))
    d["kid"] = kid
    return d


JWKS = {"keys": [jwk(RSAAlgorithm, RSA_KEY, "k1"), jwk(RSAAlgorithm, RSA_OTHER, "k2")]}
JWKS_EC = {"keys": [jwk(ECAlgorithm, EC_KEY, "e1")]}

# a plugin that shows upstream what jwt-auth stored in ctx (store_in_ctx)
PEEK = textwrap.dedent('''
    name = "jwt-peek"
    priority = 2417      # below jwt-auth; an unusual number (no built-in uses it)
    schema = {"type": "object"}

    def rewrite(conf, ctx):
        p = ctx.store.get("jwt_auth_payload")
        ctx.set_header("X-Jwt-Sub", p["sub"] if p else "none")
''')

DOC = {
    "consumers": [
        {"username": "jack", "plugins": {"jwt-auth": {"key": "jack-key", "secret": HS_SECRET}}},
        {"username": "rose"},
        {"id": "rose/credentials/c1",
         "plugins": {"jwt-auth": {"key": "rose-key", "secret": HS512_SECRET,
                                  "algorithm": "HS512"}}},
        {"username": "b64", "plugins": {"jwt-auth": {"key": "b64-key", "secret": B64_SECRET,
                                                     "algorithm": "HS384",
                                                     "base64_secret": True}}},
        {"username": "rsa", "plugins": {"jwt-auth": {"key": "rsa-key", "algorithm": "RS256",
                                                     "public_key": pem(RSA_KEY)}}},
        {"username": "ecc", "plugins": {"jwt-auth": {"key": "ec-key", "algorithm": "ES256",
                                                     "public_key": pem(EC_KEY)}}},
        {"username": "edd", "plugins": {"jwt-auth": {"key": "ed-key", "algorithm": "EdDSA",
                                                     "public_key": pem(ED_KEY)}}},
        {"username": "jwks", "plugins": {"jwt-auth": {"key": "jwks-key", "algorithm": "RS256",
                                                      "jwks": JWKS}}},
        {"username": "jwks-ec", "plugins": {"jwt-auth": {"key": "jwks-ec", "algorithm": "ES256",
                                                         "jwks": JWKS_EC}}},
        {"username": "skew", "plugins": {"jwt-auth": {"key": "skew-key", "secret": HS_SECRET,
                                                      "lifetime_grace_period": 60}}},
        {"username": "guest"},
    ],
    "routes": [
        {"id": "plain", "uri": "/plain", "plugins": {"jwt-auth": {}}},
        {"id": "custom", "uri": "/custom",
         "plugins": {"jwt-auth": {"header": "X-Token", "query": "tok", "cookie": "sess",
                                  "hide_credentials": True}}},
        {"id": "iss", "uri": "/iss", "plugins": {"jwt-auth": {"key_claim_name": "iss"}}},
        {"id": "noclaims", "uri": "/noclaims", "plugins": {"jwt-auth": {"claims_to_verify": []}}},
        {"id": "anon", "uri": "/anon", "plugins": {"jwt-auth": {"anonymous_consumer": "guest"}}},
        {"id": "ghost", "uri": "/ghost", "plugins": {"jwt-auth": {"anonymous_consumer": "x"}}},
        {"id": "store", "uri": "/store",
         "plugins": {"jwt-auth": {"store_in_ctx": True, "realm": "api"}, "jwt-peek": {}}},
    ],
}


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    d = tmp_path_factory.mktemp("jwt-plugins")
    (d / "jwt_peek.py").write_text(PEEK)
    with Kit(DOC, plugin_dirs=[str(d)], admin_key="a" * 32) as k:
        yield k


def token(key, payload=None, alg="HS256", headers=None, **claims):
    body = {"exp": int(time.time()) + 600}
    body.update(payload or {})
    body.update(claims)
    return jwt.encode(body, key, algorithm=alg, headers=headers)


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def who(r) -> str:
    assert r.status == 200, r
    return r.json()["headers"]["x-consumer-username"]


def denied(r, message: str, realm: str = "jwt") -> None:
    assert r.status == 401, r
    assert r.json() == {"message": message}
    assert r.headers["www-authenticate"] == f'Bearer realm="{realm}"'


def test_missing_token_is_401_with_bearer_challenge(kit):
    denied(kit.get("/plain"), "Missing JWT token in request")


def test_token_in_header_with_or_without_bearer_prefix(kit):
    tok = token(HS_SECRET, {"key": "jack-key"})
    assert who(kit.get("/plain", headers=bearer(tok))) == "jack"
    r = kit.get("/plain", headers={"Authorization": tok})
    assert who(r) == "jack"
    assert r.json()["headers"]["authorization"] == tok        # not hidden by default


def test_token_in_query_and_cookie(kit):
    tok = token(HS_SECRET, {"key": "jack-key"})
    assert who(kit.get(f"/plain?jwt={tok}")) == "jack"
    assert who(kit.get("/plain", headers={"Cookie": f"a=1; jwt={tok}"})) == "jack"


def test_credential_row_and_other_hmac_algorithms(kit):
    r = kit.get("/plain", headers=bearer(token(HS512_SECRET, {"key": "rose-key"}, "HS512")))
    assert who(r) == "rose"
    assert r.json()["headers"]["x-credential-identifier"] == "c1"
    b64 = token(base64.b64decode(B64_SECRET), {"key": "b64-key"}, "HS384")
    assert who(kit.get("/plain", headers=bearer(b64))) == "b64"


def test_rs256_es256_and_eddsa_tokens(kit):
    assert who(kit.get("/plain", headers=bearer(token(RSA_KEY, {"key": "rsa-key"}, "RS256")))) \
        == "rsa"
    assert who(kit.get("/plain", headers=bearer(token(EC_KEY, {"key": "ec-key"}, "ES256")))) \
        == "ecc"
    assert who(kit.get("/plain", headers=bearer(token(ED_KEY, {"key": "ed-key"}, "EdDSA")))) \
        == "edd"


def test_garbage_token_is_invalid(kit):
    for bad in ("abc", "a.b.c", "e30.e30", "!!!.###.$$$"):
        denied(kit.get("/plain", headers=bearer(bad)), "JWT token invalid")


def test_token_without_key_claim_is_401(kit):
    denied(kit.get("/plain", headers=bearer(token(HS_SECRET, {"sub": "x"}))),
           "missing user key in JWT token")


def test_unknown_key_is_401_invalid_user_key(kit):
    denied(kit.get("/plain", headers=bearer(token(HS_SECRET, {"key": "nobody"}))),
           "Invalid user key in JWT token")
    denied(kit.get("/plain", headers=bearer(token(HS_SECRET, {"key": 42}))),
           "Invalid user key in JWT token")


def test_wrong_signature_fails_to_verify(kit):
    tok = token("some-other-secret-that-is-long-enough!!", {"key": "jack-key"})
    denied(kit.get("/plain", headers=bearer(tok)), "failed to verify jwt")
    other = token(RSA_OTHER, {"key": "rsa-key"}, "RS256")
    denied(kit.get("/plain", headers=bearer(other)), "failed to verify jwt")


def test_expired_token_is_401(kit):
    tok = token(HS_SECRET, {"key": "jack-key"}, exp=int(time.time()) - 30)
    denied(kit.get("/plain", headers=bearer(tok)), "failed to verify jwt")


def test_not_yet_valid_token_is_401(kit):
    tok = token(HS_SECRET, {"key": "jack-key"}, nbf=int(time.time()) + 30)
    denied(kit.get("/plain", headers=bearer(tok)), "failed to verify jwt")


def test_grace_period_allows_clock_skew(kit):
    now = int(time.time())
    ok_exp = token(HS_SECRET, {"key": "skew-key"}, exp=now - 30)
    ok_nbf = token(HS_SECRET, {"key": "skew-key"}, nbf=now + 30)
    assert who(kit.get("/plain", headers=bearer(ok_exp))) == "skew"
    assert who(kit.get("/plain", headers=bearer(ok_nbf))) == "skew"
    too_old = token(HS_SECRET, {"key": "skew-key"}, exp=now - 120)
    denied(kit.get("/plain", headers=bearer(too_old)), "failed to verify jwt")


def test_non_numeric_exp_is_refused(kit):
    tok = token(HS_SECRET, {"key": "jack-key"}, exp="tomorrow")
    denied(kit.get("/plain", headers=bearer(tok)), "failed to verify jwt")


def test_claims_to_verify_empty_skips_exp(kit):
    tok = token(HS_SECRET, {"key": "jack-key"}, exp=int(time.time()) - 3600)
    assert who(kit.get("/noclaims", headers=bearer(tok))) == "jack"


def test_alg_confusion_hs256_with_rsa_public_key_fails(kit):
    def seg(d):
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
    head = seg({"alg": "HS256", "typ": "JWT"})
    body = seg({"key": "rsa-key", "exp": int(time.time()) + 600})
    sig = hmac.new(pem(RSA_KEY).encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    forged = f"{head}.{body}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"
    denied(kit.get("/plain", headers=bearer(forged)), "failed to verify jwt")


def test_token_whose_alg_is_not_a_string_fails_to_verify(kit):
    """A header ``alg`` that is a number, not the consumer's algorithm: 401 (the warning
    names its type; it used to call the module's ``type = "auth"`` and answer 500)."""
    def seg(d):
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
    head = seg({"alg": 256, "typ": "JWT"})
    body = seg({"key": "rsa-key", "exp": int(time.time()) + 600})
    denied(kit.get("/plain", headers=bearer(f"{head}.{body}.c2ln")), "failed to verify jwt")


def test_alg_none_is_refused(kit):
    tok = jwt.encode({"key": "jack-key"}, None, algorithm="none")
    denied(kit.get("/plain", headers=bearer(tok)), "failed to verify jwt")


def test_jwks_picks_the_key_by_kid(kit):
    t1 = token(RSA_KEY, {"key": "jwks-key"}, "RS256", headers={"kid": "k1"})
    t2 = token(RSA_OTHER, {"key": "jwks-key"}, "RS256", headers={"kid": "k2"})
    assert who(kit.get("/plain", headers=bearer(t1))) == "jwks"
    assert who(kit.get("/plain", headers=bearer(t2))) == "jwks"
    swapped = token(RSA_KEY, {"key": "jwks-key"}, "RS256", headers={"kid": "k2"})
    denied(kit.get("/plain", headers=bearer(swapped)), "failed to verify jwt")
    unknown = token(RSA_KEY, {"key": "jwks-key"}, "RS256", headers={"kid": "zz"})
    denied(kit.get("/plain", headers=bearer(unknown)), "failed to verify jwt")


def test_jwks_with_one_key_accepts_a_token_without_kid(kit):
    assert who(kit.get("/plain", headers=bearer(token(EC_KEY, {"key": "jwks-ec"}, "ES256")))) \
        == "jwks-ec"


def test_hide_credentials_for_header_query_and_cookie(kit):
    tok = token(HS_SECRET, {"key": "jack-key"})
    r = kit.get("/custom", headers={"X-Token": tok})
    assert who(r) == "jack" and "x-token" not in r.json()["headers"]
    r = kit.get(f"/custom?a=1&tok={tok}")
    assert who(r) == "jack" and r.json()["path"] == "/custom?a=1"
    r = kit.get("/custom", headers={"Cookie": f"a=1; sess={tok}; b=2"})
    assert who(r) == "jack" and r.json()["headers"]["cookie"] == "a=1; b=2"
    r = kit.get("/custom", headers={"Cookie": f"sess={tok}"})
    assert who(r) == "jack" and "cookie" not in r.json()["headers"]


def test_failed_token_under_anonymous_is_hidden_from_the_upstream(kit):
    doc = json.loads(json.dumps(DOC))
    doc["routes"].append({"id": "hide-anon", "uri": "/hide-anon", "plugins": {"jwt-auth": {
        "hide_credentials": True, "anonymous_consumer": "guest"}}})
    kit.apply(doc)
    try:
        r = kit.get("/hide-anon", headers=bearer("bad.token.here"))
        assert who(r) == "guest" and "authorization" not in r.json()["headers"]
        r = kit.get("/hide-anon?jwt=bad.token.here&a=1")
        assert who(r) == "guest" and r.json()["path"] == "/hide-anon?a=1"
        r = kit.get("/anon", headers=bearer("bad.token.here"))       # not hidden unless asked
        assert r.json()["headers"]["authorization"] == "Bearer bad.token.here"
    finally:
        kit.apply(DOC)


def test_key_claim_name(kit):
    assert who(kit.get("/iss", headers=bearer(token(HS_SECRET, {"iss": "jack-key"})))) == "jack"
    denied(kit.get("/iss", headers=bearer(token(HS_SECRET, {"key": "jack-key"}))),
           "missing user key in JWT token")


def test_store_in_ctx_gives_later_plugins_the_payload(kit):
    r = kit.get("/store", headers=bearer(token(HS_SECRET, {"key": "jack-key", "sub": "u-9"})))
    assert r.status == 200 and r.json()["headers"]["x-jwt-sub"] == "u-9"
    r = kit.get("/plain", headers=bearer(token(HS_SECRET, {"key": "jack-key"})))
    assert r.status == 200
    denied(kit.get("/store"), "Missing JWT token in request", realm="api")


def test_anonymous_consumer(kit):
    assert who(kit.get("/anon")) == "guest"
    assert who(kit.get("/anon", headers=bearer("x.y.z"))) == "guest"
    assert who(kit.get("/anon", headers=bearer(token(HS_SECRET, {"key": "jack-key"})))) == "jack"
    denied(kit.get("/ghost"), "Invalid user authorization")


def test_short_secret_consumer_loads_with_a_warning_and_bad_ones_are_rejected(kit):
    doc = json.loads(json.dumps(DOC))
    doc["consumers"] += [
        {"username": "shorty", "plugins": {"jwt-auth": {"key": "short-key",
                                                        "secret": "my-secret-key"}}},
        {"username": "nosecret", "plugins": {"jwt-auth": {"key": "ns-key",
                                                          "algorithm": "HS512"}}},
        {"username": "nopub", "plugins": {"jwt-auth": {"key": "np-key",
                                                       "algorithm": "RS256"}}},
        {"username": "badpem", "plugins": {"jwt-auth": {"key": "bp-key", "algorithm": "ES256",
                                                        "public_key": pem(RSA_KEY)}}},
    ]
    kit.apply(doc)
    try:
        log = kit.log()

        def rejection(user: str) -> str:
            lines = [ln for ln in log.splitlines() if f"rejected consumers/{user}." in ln]
            assert lines, user
            return lines[-1]
        assert not [ln for ln in log.splitlines() if "rejected consumers/shorty." in ln]
        assert "the secret of key 'short-key' is too short for HS256: 13 bytes" in log
        assert "my-secret-key" not in log                       # never log a secret
        assert 'property "secret" is required when "algorithm" is "HS512"' in \
            rejection("nosecret")
        assert "missing valid public key" in rejection("nopub")
        assert "invalid public_key: not a PEM EC public key" in rejection("badpem")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")          # PyJWT warns about the short key
            short = jwt.encode({"key": "short-key"}, "my-secret-key", algorithm="HS256")
            forged = jwt.encode({"key": "short-key"}, "my-secret-kez", algorithm="HS256")
        assert who(kit.get("/plain", headers=bearer(short))) == "shorty"
        denied(kit.get("/plain", headers=bearer(forged)), "failed to verify jwt")
        assert who(kit.get("/plain", headers=bearer(token(HS_SECRET, {"key": "jack-key"})))) \
            == "jack"
    finally:
        kit.apply(DOC)


def test_admin_api_accepts_a_short_secret_with_a_warning(kit):
    r = kit.admin("PUT", "/consumers", {"username": "apisix-doc", "plugins": {
        "jwt-auth": {"key": "user-key", "secret": "my-secret-key"}}})
    try:
        assert r.status in (200, 201), r.body
        body = r.json()
        assert body["key"] == "/apisix/consumers/apisix-doc"
        assert "too short for HS256: 13 bytes" in body["warning"]
        assert "my-secret-key" not in body["warning"]
        r = kit.admin("PUT", "/consumers", {"username": "long", "plugins": {
            "jwt-auth": {"key": "long-key", "secret": HS_SECRET}}})
        assert r.status in (200, 201) and "warning" not in r.json()
    finally:
        kit.apply(DOC)


def test_strict_node_refuses_short_secrets(tmp_path):
    doc = {"consumers": [{"username": "shorty", "plugins": {"jwt-auth": {
        "key": "short-key", "secret": "my-secret-key"}}}],
        "routes": [{"id": "plain", "uri": "/plain", "plugins": {"jwt-auth": {}}}]}
    with Kit(doc, admin_key="s" * 32,
             node={"pylon": {"reject_short_jwt_secrets": True}}) as k:
        assert "secret is too short for HS256: 13 bytes" in k.log()
        assert "rejected consumers/shorty" in k.log()
        r = k.admin("PUT", "/consumers", {"username": "apisix-doc", "plugins": {
            "jwt-auth": {"key": "user-key", "secret": "my-secret-key"}}})
        assert r.status == 400
        assert "secret is too short for HS256" in r.json()["error_msg"]


def test_admin_api_stores_secrets_encrypted(kit):
    secret = "an-admin-api-secret-long-enough-for-hs256"
    r = kit.admin("PUT", "/consumers", {"username": "adm", "plugins": {
        "jwt-auth": {"key": "adm-key", "secret": secret}}})
    assert r.status in (200, 201), r.body
    try:
        assert secret not in Path(kit.doc_path).read_text()          # stored encrypted
        tok = token(secret, {"key": "adm-key"})
        deadline = time.monotonic() + 5
        while kit.get("/plain", headers=bearer(tok)).status != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert who(kit.get("/plain", headers=bearer(tok))) == "adm"
    finally:
        kit.apply(DOC)
