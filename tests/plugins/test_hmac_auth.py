"""hmac-auth through a real gateway: signatures computed here as the APISIX docs show."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import time

import pytest

from pylon.pdk.testing import Kit

DOC = {
    "consumers": [
        {"username": "john", "plugins": {"hmac-auth": {"key_id": "john-key",
                                                       "secret_key": "john-secret-key"}}},
        {"username": "rose"},
        {"id": "rose/credentials/c1",
         "plugins": {"hmac-auth": {"key_id": "rose-key", "secret_key": "rose-secret"}}},
        {"username": "guest"},
    ],
    "routes": [
        {"id": "plain", "uri": "/plain*", "plugins": {"hmac-auth": {}}},
        {"id": "strict", "uri": "/strict",
         "plugins": {"hmac-auth": {"allowed_algorithms": ["hmac-sha512"], "clock_skew": 10,
                                   "signed_headers": ["date", "x-custom-a"]}}},
        {"id": "body", "uri": "/body", "plugins": {"hmac-auth": {"validate_request_body": True}}},
        {"id": "small", "uri": "/small", "plugins": {"hmac-auth": {
            "validate_request_body": True, "max_req_body_size": 16}}},
        {"id": "hidden", "uri": "/hidden", "plugins": {"hmac-auth": {"hide_credentials": True}}},
        {"id": "anon", "uri": "/anon", "plugins": {"hmac-auth": {"anonymous_consumer": "guest"}}},
        {"id": "anon-hidden", "uri": "/anon-hidden",
         "plugins": {"hmac-auth": {"anonymous_consumer": "guest", "hide_credentials": True}}},
        {"id": "nodate", "uri": "/nodate", "plugins": {"hmac-auth": {"signed_headers": []}}},
        {"id": "ghost", "uri": "/ghost", "plugins": {"hmac-auth": {"anonymous_consumer": "x"}}},
    ],
}

HASH = {"hmac-sha1": hashlib.sha1, "hmac-sha256": hashlib.sha256,
        "hmac-sha512": hashlib.sha512}


def signed(method: str, target: str, key_id: str = "john-key",
           secret: str = "john-secret-key", alg: str = "hmac-sha256",
           names: tuple[str, ...] = ("@request-target", "date"),
           extra: dict[str, str] | None = None, date: str | None = None,
           body: bytes | None = None) -> dict[str, str]:
    """The headers of a request signed the way APISIX's documentation does it."""
    hdrs = {"Date": date or email.utils.formatdate(usegmt=True), **(extra or {})}
    lower = {k.lower(): v for k, v in hdrs.items()}
    lines = [key_id]
    for n in names:
        lines.append(f"{method} {target}" if n == "@request-target" else f"{n}: {lower[n]}")
    sig = hmac.new(secret.encode(), ("\n".join(lines) + "\n").encode(), HASH[alg]).digest()
    hdrs["Authorization"] = (f'Signature keyId="{key_id}",algorithm="{alg}",'
                             f'headers="{" ".join(names)}",'
                             f'signature="{base64.b64encode(sig).decode()}"')
    if body is not None:
        hdrs["Digest"] = "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()
    return hdrs


@pytest.fixture(scope="module")
def kit():
    with Kit(DOC) as k:
        yield k


def who(r) -> str:
    assert r.status == 200, r
    return r.json()["headers"]["x-consumer-username"]


def rejected(r, message: str = "client request can't be validated") -> None:
    assert r.status == 401, r
    assert r.json() == {"message": message}


def test_missing_authorization_is_401(kit):
    rejected(kit.get("/plain"), "client request can't be validated: missing Authorization header")


def test_other_scheme_is_401(kit):
    rejected(kit.get("/plain", headers={"Authorization": "Basic Zm9vOmJhcg=="}),
             "client request can't be validated: Authorization header does not start with "
             "'Signature'")


def test_signed_request_identifies_the_consumer(kit):
    r = kit.get("/plain", headers=signed("GET", "/plain"))
    assert who(r) == "john"
    assert r.json()["headers"]["authorization"].startswith("Signature ")   # kept by default


def test_request_target_includes_the_query(kit):
    assert who(kit.get("/plain/x?a=1&b=2", headers=signed("GET", "/plain/x?a=1&b=2"))) == "john"
    rejected(kit.get("/plain/x?a=1&b=3", headers=signed("GET", "/plain/x?a=1&b=2")))


def test_every_algorithm_and_a_credential_row(kit):
    for alg in ("hmac-sha1", "hmac-sha512"):
        assert who(kit.get("/plain", headers=signed("GET", "/plain", alg=alg))) == "john"
    r = kit.get("/plain", headers=signed("GET", "/plain", key_id="rose-key",
                                         secret="rose-secret"))
    assert who(r) == "rose"
    assert r.json()["headers"]["x-credential-identifier"] == "c1"


def test_wrong_secret_method_or_unknown_key_is_401(kit):
    rejected(kit.get("/plain", headers=signed("GET", "/plain", secret="nope")))
    rejected(kit.post("/plain", headers=signed("GET", "/plain")))
    rejected(kit.get("/plain", headers=signed("GET", "/plain", key_id="who")))


def test_missing_fields_are_401(kit):
    rejected(kit.get("/plain", headers={"Date": email.utils.formatdate(usegmt=True),
                                        "Authorization": 'Signature keyId="john-key"'}))
    h = signed("GET", "/plain")
    h["Authorization"] = h["Authorization"].replace('algorithm="hmac-sha256",', "")
    rejected(kit.get("/plain", headers=h))
    h = signed("GET", "/plain")
    h["Authorization"] = h["Authorization"].replace('signature="', 'signature="!!')
    rejected(kit.get("/plain", headers=h))


def test_date_is_required_and_checked_against_clock_skew(kit):
    h = signed("GET", "/plain")
    del h["Date"]
    rejected(kit.get("/plain", headers=h))
    old = email.utils.formatdate(time.time() - 600, usegmt=True)
    rejected(kit.get("/plain", headers=signed("GET", "/plain", date=old)))
    rejected(kit.get("/plain", headers=signed("GET", "/plain", date="yesterday")))
    near = email.utils.formatdate(time.time() - 60, usegmt=True)
    assert who(kit.get("/plain", headers=signed("GET", "/plain", date=near))) == "john"


def test_date_must_be_signed_by_default(kit):
    rejected(kit.get("/plain", headers=signed("GET", "/plain", names=("@request-target",))))
    h = signed("GET", "/plain", names=("@request-target", "date"))
    assert who(kit.get("/plain", headers=h)) == "john"
    h["Date"] = email.utils.formatdate(time.time() - 30, usegmt=True)    # replayed, re-dated
    rejected(kit.get("/plain", headers=h))


def test_empty_signed_headers_turns_the_date_binding_off(kit):
    h = signed("GET", "/nodate", names=("@request-target",))
    assert who(kit.get("/nodate", headers=h)) == "john"


def test_x_date_is_accepted_for_the_clock(kit):
    h = signed("GET", "/nodate", names=("@request-target",))
    h["X-Date"] = h.pop("Date")
    assert who(kit.get("/nodate", headers=h)) == "john"


def test_route_limits_algorithms_skew_and_mandatory_headers(kit):
    names = ("@request-target", "date", "x-custom-a")
    extra = {"X-Custom-A": "hello"}
    ok = signed("GET", "/strict", alg="hmac-sha512", names=names, extra=extra)
    assert who(kit.get("/strict", headers=ok)) == "john"
    rejected(kit.get("/strict", headers=signed("GET", "/strict", names=names, extra=extra)))
    rejected(kit.get("/strict", headers=signed("GET", "/strict", alg="hmac-sha512")))
    near = email.utils.formatdate(time.time() - 60, usegmt=True)
    rejected(kit.get("/strict", headers=signed("GET", "/strict", alg="hmac-sha512",
                                               names=names, extra=extra, date=near)))
    tampered = dict(ok, **{"X-Custom-A": "evil"})
    rejected(kit.get("/strict", headers=tampered))


def test_body_digest_is_validated(kit):
    body = b'{"name": "world"}'
    r = kit.post("/body", body=body, headers=signed("POST", "/body", body=body))
    assert who(r) == "john"
    assert r.json()["body"] == body.decode()                  # still sent upstream
    rejected(kit.post("/body", body=b'{"name": "evil"}',
                      headers=signed("POST", "/body", body=body)))
    rejected(kit.post("/body", body=body, headers=signed("POST", "/body")))   # no Digest
    assert who(kit.post("/body", body=b"", headers=signed("POST", "/body", body=b""))) == "john"


def test_body_over_max_req_body_size_is_413(kit):
    body = b"x" * 16
    assert who(kit.post("/small", body=body, headers=signed("POST", "/small", body=body))) \
        == "john"
    body = b"x" * 17
    r = kit.post("/small", body=body, headers=signed("POST", "/small", body=body))
    assert r.status == 413


def test_bad_signature_with_a_valid_digest_is_401(kit):
    body = b"x" * 10
    rejected(kit.post("/body", body=body, headers=signed("POST", "/body", secret="no",
                                                         body=body)))


def test_hide_credentials_removes_authorization(kit):
    r = kit.get("/hidden", headers=signed("GET", "/hidden"))
    assert who(r) == "john" and "authorization" not in r.json()["headers"]


def test_anonymous_consumer(kit):
    assert who(kit.get("/anon")) == "guest"
    assert who(kit.get("/anon", headers=signed("GET", "/anon", secret="bad"))) == "guest"
    assert who(kit.get("/anon", headers=signed("GET", "/anon"))) == "john"
    rejected(kit.get("/ghost"), "Invalid user authorization")


def test_failed_signature_under_anonymous_is_hidden_from_the_upstream(kit):
    r = kit.get("/anon-hidden", headers=signed("GET", "/anon-hidden", secret="bad"))
    assert who(r) == "guest" and "authorization" not in r.json()["headers"]
