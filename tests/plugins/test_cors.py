"""cors through a real gateway: APISIX configs, preflights, headers on every kind of answer."""

from __future__ import annotations

import json

import pytest

from pylon.pdk.testing import Kit

DOC = {
    "consumers": [{"username": "jack", "plugins": {"key-auth": {"key": "jack-key"}}}],
    "plugin_metadata": [{"id": "cors", "allow_origins": {
        "EXAMPLE": "https://example.com",
        "PAIR": "https://one.example,https://two.example"}}],
    "routes": [
        {"id": "default", "uri": "/default", "plugins": {"cors": {}}},
        {"id": "list", "uri": "/list", "plugins": {"cors": {
            "allow_origins": "http://sub.domain.com,http://sub2.domain.com",
            "allow_methods": "GET,POST", "allow_headers": "headr1,headr2",
            "expose_headers": "ex-headr1,ex-headr2", "max_age": 50,
            "allow_credential": True}}},
        {"id": "single", "uri": "/single", "plugins": {"cors": {
            "allow_origins": "http://only.example"}}},
        {"id": "force", "uri": "/force", "plugins": {"cors": {
            "allow_origins": "**", "allow_methods": "**", "allow_headers": "**",
            "expose_headers": "x-a", "allow_credential": True}}},
        {"id": "regex", "uri": "/regex", "plugins": {"cors": {
            "allow_origins": "http://ignored.example",
            "allow_origins_by_regex": [r"^http://.*\.test\.com$", r"^https://exact\.org$"],
            "allow_methods": "GET"}}},
        {"id": "meta", "uri": "/meta", "plugins": {"cors": {
            "allow_origins_by_metadata": ["EXAMPLE", "PAIR"]}}},
        {"id": "timing", "uri": "/timing", "plugins": {"cors": {
            "allow_origins": "http://a.example,http://b.example",
            "timing_allow_origins": "http://a.example"}}},
        {"id": "timing-rx", "uri": "/timing-rx", "plugins": {"cors": {
            "timing_allow_origins_by_regex": [r"\.timing\.org$"]}}},
        {"id": "auth", "uri": "/auth", "plugins": {"cors": {}, "key-auth": {}}},
    ],
}

ORIGIN = "Origin"


@pytest.fixture(scope="module")
def kit():
    with Kit(DOC) as k:
        yield k


def _count(r, name):
    return sum(1 for k, _ in r.header_list if k.lower() == name.lower())


def test_default_config_allows_any_origin_with_apisix_headers(kit):
    r = kit.get("/default", headers={ORIGIN: "http://x.example"})
    assert r.status == 200
    h = r.headers
    assert h["access-control-allow-origin"] == "*"
    assert h["access-control-allow-methods"] == "*"
    assert h["access-control-allow-headers"] == "*"
    assert h["access-control-max-age"] == "5"
    assert "access-control-expose-headers" not in h          # unset by default
    assert "access-control-allow-credentials" not in h
    assert "vary" not in h                                     # "*" does not vary


def test_preflight_is_answered_by_the_gateway_and_not_proxied(kit):
    before = len(kit.upstream.requests)
    r = kit.request("OPTIONS", "/list", headers={
        ORIGIN: "http://sub2.domain.com", "Access-Control-Request-Method": "POST"})
    assert r.status == 200
    assert r.body == b""
    assert r.headers["access-control-allow-origin"] == "http://sub2.domain.com"
    assert r.headers["access-control-allow-methods"] == "GET,POST"
    assert r.headers["access-control-max-age"] == "50"
    assert len(kit.upstream.requests) == before


def test_any_options_request_is_answered_200_as_apisix_does(kit):
    before = len(kit.upstream.requests)
    r = kit.request("OPTIONS", "/default")
    assert r.status == 200
    assert r.headers["access-control-allow-origin"] == "*"
    assert len(kit.upstream.requests) == before


def test_listed_origin_is_echoed_with_credentials_and_vary(kit):
    r = kit.get("/list", headers={ORIGIN: "http://sub.domain.com"})
    h = r.headers
    assert h["access-control-allow-origin"] == "http://sub.domain.com"
    assert h["access-control-allow-credentials"] == "true"
    assert h["access-control-allow-headers"] == "headr1,headr2"
    assert h["access-control-expose-headers"] == "ex-headr1,ex-headr2"
    assert h["vary"] == "Origin"


def test_unlisted_origin_gets_no_cors_headers_but_vary(kit):
    r = kit.get("/list", headers={ORIGIN: "http://sub3.domain.com"})
    assert r.status == 200
    assert "access-control-allow-origin" not in r.headers
    assert "access-control-allow-methods" not in r.headers
    assert r.headers["vary"] == "Origin"


def test_single_origin_only_matches_itself(kit):
    r = kit.get("/single", headers={ORIGIN: "http://only.example"})
    assert r.headers["access-control-allow-origin"] == "http://only.example"
    r = kit.get("/single", headers={ORIGIN: "http://other.example"})
    assert "access-control-allow-origin" not in r.headers
    r = kit.get("/single")
    assert "access-control-allow-origin" not in r.headers


def test_double_star_echoes_origin_methods_and_request_headers(kit):
    r = kit.get("/force", headers={ORIGIN: "http://any.example",
                                   "Access-Control-Request-Headers": "x-one,x-two"})
    h = r.headers
    assert h["access-control-allow-origin"] == "http://any.example"
    assert h["access-control-allow-methods"] == \
        "GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS,CONNECT,TRACE"
    assert h["access-control-allow-headers"] == "x-one,x-two"
    assert h["access-control-allow-credentials"] == "true"
    r = kit.get("/force")                                   # no Origin: "*"
    assert r.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-headers" not in r.headers  # nothing to echo


def test_regex_origins_replace_allow_origins(kit):
    r = kit.get("/regex", headers={ORIGIN: "http://a.test.com"})
    assert r.headers["access-control-allow-origin"] == "http://a.test.com"
    r = kit.get("/regex", headers={ORIGIN: "https://exact.org"})
    assert r.headers["access-control-allow-origin"] == "https://exact.org"
    r = kit.get("/regex", headers={ORIGIN: "http://a.test2.com"})
    assert "access-control-allow-origin" not in r.headers
    r = kit.get("/regex", headers={ORIGIN: "http://ignored.example"})
    assert "access-control-allow-origin" not in r.headers


def test_origins_from_plugin_metadata(kit):
    r = kit.get("/meta", headers={ORIGIN: "https://example.com"})
    assert r.headers["access-control-allow-origin"] == "https://example.com"
    r = kit.get("/meta", headers={ORIGIN: "https://two.example"})
    assert r.headers["access-control-allow-origin"] == "https://two.example"
    r = kit.get("/meta", headers={ORIGIN: "https://three.example"})
    assert "access-control-allow-origin" not in r.headers


def test_timing_allow_origin_only_for_listed_origins(kit):
    r = kit.get("/timing", headers={ORIGIN: "http://a.example"})
    assert r.headers["timing-allow-origin"] == "http://a.example"
    r = kit.get("/timing", headers={ORIGIN: "http://b.example"})
    assert r.headers["access-control-allow-origin"] == "http://b.example"
    assert "timing-allow-origin" not in r.headers
    r = kit.get("/timing-rx", headers={ORIGIN: "http://x.timing.org"})
    assert r.headers["timing-allow-origin"] == "http://x.timing.org"
    r = kit.get("/timing-rx", headers={ORIGIN: "http://x.other.org"})
    assert "timing-allow-origin" not in r.headers


def test_auth_failure_still_carries_cors_headers(kit):
    r = kit.get("/auth", headers={ORIGIN: "http://app.example"})
    assert r.status == 401
    assert r.json() == {"message": "Missing API key in request"}
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["access-control-allow-methods"] == "*"
    r = kit.get("/auth", headers={ORIGIN: "http://app.example", "apikey": "jack-key"})
    assert r.status == 200
    assert r.headers["access-control-allow-origin"] == "*"


def test_preflight_is_answered_before_authentication(kit):
    r = kit.request("OPTIONS", "/auth", headers={
        ORIGIN: "http://app.example", "Access-Control-Request-Method": "GET"})
    assert r.status == 200
    assert r.headers["access-control-allow-origin"] == "*"


def test_upstream_cors_headers_are_replaced_not_duplicated(kit):
    def cors_origin(h, rec):
        out = json.dumps(rec).encode()
        h.send_response(200)
        h.send_header("Access-Control-Allow-Origin", "http://evil.example")
        h.send_header("Access-Control-Allow-Methods", "DELETE")
        h.send_header("Content-Length", str(len(out)))
        h.end_headers()
        h.wfile.write(out)

    old = kit.upstream.behaviour
    kit.upstream.behaviour = cors_origin
    try:
        r = kit.get("/list", headers={ORIGIN: "http://sub.domain.com"})
        assert _count(r, "Access-Control-Allow-Origin") == 1
        assert r.headers["access-control-allow-origin"] == "http://sub.domain.com"
        assert _count(r, "Access-Control-Allow-Methods") == 1
        assert r.headers["access-control-allow-methods"] == "GET,POST"
        # an origin the plugin does not allow leaves the upstream's own headers alone
        r = kit.get("/list", headers={ORIGIN: "http://sub3.domain.com"})
        assert r.headers["access-control-allow-origin"] == "http://evil.example"
    finally:
        kit.upstream.behaviour = old


def test_credentials_with_wildcards_are_refused_at_config_time(kit):
    doc = json.loads(json.dumps(DOC))
    doc["routes"].append({"id": "bad", "uri": "/bad", "plugins": {"cors": {
        "allow_credential": True}}})
    kit.apply(doc)
    try:
        assert "you can not set '*' for other option when 'allow_credential' is true" \
            in kit.log()
        assert kit.get("/bad").status == 404
        assert kit.get("/default").status == 200
    finally:
        kit.apply(DOC)
