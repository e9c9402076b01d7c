"""Admin API answers word for word as APISIX 3.x: the bodies are APISIX's own bad bodies
(``t/admin/*.t``) and the expected ``error_msg`` is what APISIX answers to them."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest

from pylon.pdk.testing import Kit, Response

KEY = "edd1c9f034335f136f87ad84b625c8f1"
UP = {"type": "roundrobin", "nodes": {"127.0.0.1:1980": 1}}
LIMIT_REQ_BAD = {"limit-req": {"rate": -1, "burst": 0, "rejected_code": 503,
                               "key": "remote_addr"}}
RATE_ERR = ("failed to check the configuration of plugin limit-req err: property \"rate\" "
            "validation failed: expected -1 to be greater than 0")


@pytest.fixture(scope="module")
def kit() -> Iterator[Kit]:
    with Kit({}, admin_key=KEY) as k:
        yield k


def raw(kit: Kit, method: str, target: str, body: bytes | None = None,
        headers: dict[str, str] | None = None) -> Response:
    assert kit.admin_port is not None
    c = http.client.HTTPConnection("127.0.0.1", kit.admin_port, timeout=10)
    try:
        c.request(method, target, body=body, headers={"X-API-KEY": KEY, **(headers or {})})
        r = c.getresponse()
        return Response(r.status, r.getheaders(), r.read())
    finally:
        c.close()


def refused(kit: Kit, method: str, path: str, body: Any, status: int = 400) -> str:
    r = kit.admin(method, path, body)
    assert r.status == status, (r.status, r.text)
    out = r.json()
    assert set(out) == {"error_msg"}, out
    return str(out["error_msg"])


# -- core objects: "invalid configuration: " + api7/jsonschema's words -----------------------
def test_route_schema_errors_read_as_apisix(kit: Kit) -> None:
    # t/admin/routes.t "invalid method"
    assert refused(kit, "PUT", "/routes/1", {
        "methods": ["invalid_method"], "upstream": UP, "uri": "/index.html"}) == (
        'invalid configuration: property "methods" validation failed: failed to validate '
        "item 1: matches none of the enum values")
    assert refused(kit, "PUT", "/routes/1", {"upstream": UP}) == (
        "invalid configuration: allOf 1 failed: value should match only one schema, "
        "but matches none")
    assert refused(kit, "PUT", "/routes/1", {"uri": "/a", "host": "a.com",
                                             "hosts": ["b.com"]}) == \
        "only one of host or hosts is allowed"
    assert refused(kit, "PUT", "/routes/1", {"uri": "/a", "remote_addr": "127.0.0.1",
                                             "remote_addrs": ["127.0.0.1"]}) == \
        "only one of remote_addr or remote_addrs is allowed"
    assert refused(kit, "PUT", "/routes/1", {"uri": "/a", "unknown": 1}) == \
        "invalid configuration: additional properties forbidden, found unknown"
    assert refused(kit, "PUT", "/routes", {"id": "a b", "uri": "/a"}) == (
        'invalid configuration: property "id" validation failed: object matches none of '
        "the required")
    assert kit.admin("GET", "/routes/1").status == 404


def test_upstream_errors_read_as_apisix(kit: Kit) -> None:
    # t/admin/upstream.t: a negative weight
    assert refused(kit, "PUT", "/upstreams/1", {
        "nodes": {"127.0.0.1:8080": -100}, "type": "roundrobin"}) == (
        'invalid configuration: property "nodes" validation failed: object matches none of '
        "the required")
    assert refused(kit, "PUT", "/upstreams/1", {"nodes": UP["nodes"], "type": "chash"}) == \
        "missing key"
    assert refused(kit, "PUT", "/upstreams/1", {"nodes": UP["nodes"], "pass_host": "rewrite"}) \
        == "`upstream_host` can't be empty when `pass_host` is `rewrite`"
    # an inline upstream is checked the same way, with the route's prefix on schema errors
    assert refused(kit, "PUT", "/routes/1", {
        "uri": "/a", "upstream": {"nodes": UP["nodes"], "retries": -1}}) == (
        'invalid configuration: property "upstream" validation failed: property "retries" '
        "validation failed: expected -1 to be at least 0")


def test_chash_on_consumer_needs_no_key(kit: Kit) -> None:
    r = kit.admin("PUT", "/upstreams/c", {"nodes": UP["nodes"], "type": "chash",
                                          "hash_on": "consumer"})
    assert r.status == 201, r.text
    assert r.json()["value"]["hash_on"] == "consumer"


def test_health_check_ports_are_range_checked(kit: Kit) -> None:
    checks = {"active": {"http_path": "/status", "port": 65536,
                         "healthy": {"interval": 2, "successes": 1}}}
    assert refused(kit, "PUT", "/upstreams/hc", {**UP, "checks": checks}) == (
        'invalid configuration: property "checks" validation failed: property "active" '
        'validation failed: property "port" validation failed: expected 65536 to be at most '
        "65535")
    checks["active"]["port"] = 0
    assert "expected 0 to be at least 1" in refused(kit, "PUT", "/upstreams/hc",
                                                     {**UP, "checks": checks})
    assert refused(kit, "PUT", "/upstreams/hc", {**UP, "checks": {"passive": {}}}) == (
        'invalid configuration: property "checks" validation failed: object matches none of '
        'the required: ["active"] or ["active","passive"]')
    checks["active"]["port"] = 8080
    assert kit.admin("PUT", "/upstreams/hc", {**UP, "checks": checks}).status == 201


def test_labels_are_validated(kit: Kit) -> None:
    assert refused(kit, "PUT", "/routes/1", {"uri": "/a", "labels": {"env": "a b"}}) == (
        'invalid configuration: property "labels" validation failed: failed to validate env '
        '(matching ".*"): failed to match pattern "^\\\\S+$" with "a b"')
    assert "string too long, expected at most 256, got 257" in refused(
        kit, "PUT", "/routes/1", {"uri": "/a", "labels": {"env": "x" * 257}})
    assert kit.admin("PUT", "/routes/1", {"uri": "/a", "labels": {"build": "16"}}).status \
        == 201
    assert kit.admin("DELETE", "/routes/1").status == 200


# -- plugins: APISIX's text with no path prefix -------------------------------------------
@pytest.mark.parametrize("path,body", [
    ("/routes/p1", {"uri": "/p", "plugins": LIMIT_REQ_BAD}),
    ("/services/p1", {"plugins": LIMIT_REQ_BAD}),
    ("/plugin_configs/p1", {"plugins": LIMIT_REQ_BAD}),
    ("/global_rules/p1", {"plugins": LIMIT_REQ_BAD}),
    ("/consumer_groups/p1", {"plugins": LIMIT_REQ_BAD}),
])
def test_plugin_errors_name_the_plugin_only(kit: Kit, path: str, body: Any) -> None:
    assert refused(kit, "PUT", path, body) == RATE_ERR


def test_plugin_names_and_shapes(kit: Kit) -> None:
    assert refused(kit, "PUT", "/routes/1", {"uri": "/a", "plugins": {"nope": {}}}) == \
        "unknown plugin [nope]"
    assert refused(kit, "PUT", "/routes/1", {"uri": "/a", "plugins": {"limit-req": 1}}) == \
        "invalid plugin conf 1 for plugin [limit-req]"
    meta = {"rate": 1, "burst": 0, "key": "remote_addr", "_meta": {"disable": "yes"}}
    assert refused(kit, "PUT", "/routes/1", {"uri": "/a", "plugins": {"limit-req": meta}}) == (
        'failed to check the configuration of plugin limit-req err: property "_meta" '
        'validation failed: property "disable" validation failed: wrong type: expected '
        "boolean, got string")


def test_vars_errors(kit: Kit) -> None:
    msg = refused(kit, "PUT", "/routes/1", {"uri": "/a", "vars": [["arg_x", "~~", "("]]})
    assert msg.startswith("failed to validate the 'vars' expression: ")
    assert refused(kit, "PUT", "/routes/1", {"uri": "/a", "vars": "x"}) == \
        'invalid configuration: property "vars" validation failed: wrong type: expected ' \
        "array, got string"


# -- consumers and credentials -------------------------------------------------------------
def test_consumer_errors(kit: Kit) -> None:
    # t/admin/consumers.t: a consumer plugin configuration is checked with its consumer schema
    assert refused(kit, "PUT", "/consumers", {"username": "jack",
                                              "plugins": {"key-auth": {}}}) == (
        "invalid plugins configuration: failed to check the configuration of plugin key-auth "
        'err: property "key" is required')
    assert refused(kit, "PUT", "/consumers/jack", {"plugins": {}}) == \
        'invalid configuration: property "username" is required'
    assert refused(kit, "PUT", "/consumers/tom", {"username": "jack"}) == "wrong username"
    assert kit.admin("PUT", "/consumers", {"username": "jack",
                                           "plugins": {"key-auth": {"key": "the-key"}}}).status \
        == 201
    assert refused(kit, "PUT", "/consumers", {"username": "jack2",
                                              "plugins": {"key-auth": {"key": "the-key"}}}) \
        == "duplicate key found with consumer: jack"
    assert refused(kit, "PUT", "/consumers", {"username": "jack3", "group_id": "g9"}) == \
        "failed to fetch consumer group info by consumer group id [g9], response code: 404"


def test_credential_errors(kit: Kit) -> None:
    assert refused(kit, "PUT", "/consumers/nobody/credentials/c1", {"plugins": {}}, 404) == \
        "consumer not found"
    kit.admin("PUT", "/consumers", {"username": "ann"})
    assert refused(kit, "PUT", "/consumers/ann/credentials/c1", {
        "plugins": {"limit-count": {"count": 1, "time_window": 60}}}) == \
        "only supports auth type plugins in consumer credential"
    assert refused(kit, "PUT", "/consumers/ann/credentials/c1", {
        "plugins": {"key-auth": {"key": 1}}}) == (
        "invalid plugins configuration: failed to check the configuration of plugin key-auth "
        'err: property "key" validation failed: wrong type: expected string, got number')
    assert kit.admin("PUT", "/consumers/ann/credentials/c1",
                     {"plugins": {"key-auth": {"key": "ann-key"}}}).status == 201
    assert refused(kit, "PATCH", "/consumers/ann/credentials/c1", {"desc": "x"}, 405) == \
        "not supported `PATCH` method for credential"


# -- envelopes, ids, timestamps, ttl -------------------------------------------------------
def test_an_id_given_only_in_the_body_keeps_its_json_type(kit: Kit) -> None:
    r = kit.admin("PUT", "/routes", {"id": 1, "uri": "/n"})
    assert r.status == 201 and r.json()["key"] == "/apisix/routes/1"
    assert r.json()["value"]["id"] == 1
    assert kit.admin("GET", "/routes/1").json()["value"]["id"] == 1
    # an id in the URL is a string, as APISIX sets it from the URL
    r = kit.admin("PUT", "/routes/1", {"id": 1, "uri": "/n"})
    assert r.status == 200 and r.json()["value"]["id"] == "1"
    assert refused(kit, "PUT", "/routes/1", {"id": 2, "uri": "/n"}) == "wrong route id"
    assert refused(kit, "POST", "/routes", {"id": 2, "uri": "/n"}) == \
        "wrong route id, do not need it"
    assert kit.admin("DELETE", "/routes/1").status == 200


def test_timestamps_in_a_body_are_refused_but_a_patch_may_set_them(kit: Kit) -> None:
    assert refused(kit, "PUT", "/routes/t", {"uri": "/t", "create_time": 1602883670}) == \
        "the property is forbidden:  create_time"
    assert refused(kit, "POST", "/routes", {"uri": "/t", "update_time": 1602883670}) == \
        "the property is forbidden:  update_time"
    assert refused(kit, "PUT", "/routes/t", {"uri": "/t", "upstream": {
        **UP, "create_time": 1602883670}}) == "the property is forbidden:  upstream.create_time"
    r = kit.admin("PUT", "/routes/t", {"uri": "/t"})
    assert r.status == 201 and isinstance(r.json()["value"]["create_time"], int)
    r = kit.admin("PATCH", "/routes/t", {"update_time": 1602883670})
    assert r.status == 200 and r.json()["value"]["update_time"] == 1602883670


def test_ttl_is_checked_before_anything_else(kit: Kit) -> None:
    r = raw(kit, "PUT", "/apisix/admin/routes?ttl=abc", json.dumps({"uri": "/x"}).encode())
    assert (r.status, r.json()) == (400, {"error_msg": "invalid argument ttl: should be a "
                                                       "number"})
    r = raw(kit, "PUT", "/apisix/admin/routes/x?ttl=60", json.dumps({"uri": "/x"}).encode())
    assert r.status == 201
    assert kit.admin("DELETE", "/routes/x").status == 200


def test_body_that_is_not_an_object(kit: Kit) -> None:
    assert refused(kit, "PUT", "/global_rules/1", [1]) == \
        "invalid configuration: wrong type: expected object, got table"


# -- CORS ----------------------------------------------------------------------------------
def test_cors_headers_on_answers_and_preflight_without_a_key(kit: Kit) -> None:
    r = kit.admin("GET", "/routes")
    assert r.status == 200
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["access-control-allow-credentials"] == "true"
    assert r.headers["access-control-expose-headers"] == "*"
    assert r.headers["access-control-max-age"] == "3600"
    r = raw(kit, "GET", "/apisix/admin/routes", headers={"X-API-KEY": "wrong"})
    assert r.status == 401 and r.headers["access-control-allow-origin"] == "*"
    assert kit.admin_port is not None
    c = http.client.HTTPConnection("127.0.0.1", kit.admin_port, timeout=10)
    try:
        c.request("OPTIONS", "/apisix/admin/routes/1",
                  headers={"Origin": "http://dash.example",
                           "Access-Control-Request-Method": "PUT"})
        resp = c.getresponse()
        body = resp.read()
        h = {k.lower(): v for k, v in resp.getheaders()}
    finally:
        c.close()
    assert (resp.status, body) == (200, b"")
    assert h["access-control-allow-methods"] == "POST, GET, PUT, OPTIONS, DELETE, PATCH"
    assert h["access-control-allow-headers"] == "*"
    assert h["access-control-allow-origin"] == "*"
    assert h["content-type"] == "text/plain"
