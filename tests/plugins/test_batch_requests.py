"""batch-requests through a real gateway: every pipeline item is a real request to the
gateway's own listener, routed and run through its route's plugins (APISIX's
t/plugin/batch-requests.t cases, with the echo upstream standing in for its locations)."""

from __future__ import annotations

import json
import socket
import time

import pytest

from pylon.pdk.testing import Kit

BATCH = "/apisix/batch-requests"
DOC = {
    "consumers": [{"username": "jack", "plugins": {"key-auth": {"key": "jack-key"}}}],
    "routes": [
        {"id": "br", "uri": BATCH, "plugins": {"public-api": {}}},
        {"id": "b", "uri": "/b"},
        {"id": "c", "uri": "/c", "methods": ["PUT"],
         "plugins": {"fault-injection": {"abort": {"http_status": 201, "body": "C"}}}},
        {"id": "d", "uri": "/d",
         "plugins": {"fault-injection": {"abort": {"http_status": 202, "body": "D"}}}},
        {"id": "auth", "uri": "/auth", "plugins": {"key-auth": {}}},
        {"id": "slow", "uri": "/slow",
         "plugins": {"fault-injection": {"delay": {"duration": 1}}}},
        {"id": "internal", "uri": "/internal",
         "plugins": {"ip-restriction": {"whitelist": ["127.0.0.1"]}}},
    ],
}
ADMIN_KEY = "b" * 32


@pytest.fixture(scope="module")
def kit():
    with Kit(DOC, admin_key=ADMIN_KEY) as k:
        yield k


def batch(kit: Kit, body: object, headers: dict[str, str] | None = None) -> tuple[int, object]:
    r = kit.post(BATCH, json.dumps(body) if not isinstance(body, (str, bytes)) else body,
                 headers={"Content-Type": "application/json", **(headers or {})})
    return r.status, r.json()


def test_headers_and_query_merge_as_apisix(kit):
    status, out = batch(kit, {
        "query": {"base": "base_query", "conflict": "query_value"},
        "headers": {"Base-Header": "base", "ConflictHeader": "header_value",
                    "OuterConflict": "common_value"},
        "pipeline": [
            {"path": "/b", "headers": {"Header1": "hello", "Header2": "world",
                                       "ConflictHeader": "b-header-value"}},
            {"path": "/c", "method": "PUT"},
            {"path": "/b", "query": {"one": "thing", "conflict": "d_value"}},
        ]}, headers={"ConflictHeader": "outer_header", "OuterConflict": "outer_conflict",
                     "OuterHeader": "request-header"})
    assert status == 200
    b, c, d = out
    assert (b["status"], b["reason"], c["status"], c["reason"], c["body"]) == \
        (200, "OK", 201, "Created", "C")
    got = json.loads(b["body"])["headers"]
    assert got["base-header"] == "base"
    assert got["header1"] == "hello" and got["header2"] == "world"
    assert got["conflictheader"] == "b-header-value"     # the item's own header wins
    assert got["outerconflict"] == "common_value"        # then the batch's headers
    assert got["outerheader"] == "request-header"        # then the outer request's
    assert "content-type" not in got                     # ... except Content-*
    assert got["x-real-ip"] == "127.0.0.1"               # the client, not the gateway
    assert json.loads(b["body"])["path"] == "/b?base=base_query&conflict=query_value"
    assert json.loads(d["body"])["path"] == "/b?base=base_query&conflict=d_value&one=thing"
    assert b["headers"]["Content-Type"] == "application/json"


def test_sub_requests_go_through_their_routes_plugins(kit):
    status, out = batch(kit, {"pipeline": [
        {"path": "/auth"},
        {"path": "/auth", "headers": {"apikey": "jack-key"}},
        {"path": "/nowhere"},
    ]})
    assert status == 200
    assert [s["status"] for s in out] == [401, 200, 404]
    assert json.loads(out[0]["body"]) == {"message": "Missing API key in request"}
    assert json.loads(out[1]["body"])["headers"]["x-consumer-username"] == "jack"


def test_sub_requests_keep_the_client_address(kit):
    # the client is 10.1.2.3 (X-Real-IP from a trusted peer); a pipeline item claiming to be
    # 127.0.0.1 must not pass an allowlist of 127.0.0.1 (APISIX's CVE-2022-24112 fix)
    status, out = batch(kit, {"pipeline": [
        {"path": "/internal", "headers": {"X-Real-IP": "127.0.0.1"}},
        {"path": "/b"},
    ]}, headers={"X-Real-IP": "10.1.2.3"})
    assert status == 200
    assert out[0]["status"] == 403
    assert json.loads(out[0]["body"]) == {"message": "Your IP address is not allowed"}
    assert json.loads(out[1]["body"])["headers"]["x-real-ip"] == "10.1.2.3"
    status, out = batch(kit, {"pipeline": [{"path": "/internal"}]})
    assert out[0]["status"] == 200                     # a client at 127.0.0.1 does pass


def test_a_hanging_request_times_out_alone(kit):
    t0 = time.monotonic()
    status, out = batch(kit, {"timeout": 300, "pipeline": [
        {"path": "/b", "headers": {"X-Echo-Delay": "2"}},
        {"path": "/c", "method": "PUT"},
        {"path": "/d"},
    ]})
    assert status == 200
    assert out[0] == {"status": 504, "reason": "upstream timeout"}
    assert [s["status"] for s in out[1:]] == [201, 202]
    assert time.monotonic() - t0 < 1.8


def test_sub_requests_run_in_parallel(kit):
    t0 = time.monotonic()
    status, out = batch(kit, {"pipeline": [{"path": "/slow", "query": {"n": str(i)}}
                                           for i in range(4)]})
    took = time.monotonic() - t0
    assert status == 200 and [o["status"] for o in out] == [200] * 4
    # answers in pipeline order
    assert [json.loads(o["body"])["path"] for o in out] == [f"/slow?n={i}" for i in range(4)]
    assert took < 3.5, f"4 sub-requests of 1 s each took {took:.1f} s: not run in parallel"


def test_head_response_has_no_body(kit):
    status, out = batch(kit, {"pipeline": [{"path": "/b", "method": "HEAD"}]})
    assert status == 200
    assert out[0]["status"] == 200 and "body" not in out[0]


def test_item_body_is_sent(kit):
    _status, out = batch(kit, {"pipeline": [{"path": "/b", "method": "POST", "body": "test2"}]})
    assert json.loads(out[0]["body"])["body"] == "test2"


@pytest.mark.parametrize(("body", "msg"), [
    ({"pipeline1": [{"path": "/b"}]},
     'bad request body: object matches none of the required: ["pipeline"]'),
    ({"timeout": "200", "pipeline": [{"path": "/b"}]},
     ('bad request body: property "timeout" validation failed: wrong type: expected integer, '
     "got string")),
    ({"pipeline": [{"path": ""}]},
     ('bad request body: property "pipeline" validation failed: failed to validate item 1: '
     'property "path" validation failed: string too short, expected at least 1, got 0')),
    ({"pipeline": [{"path": "/c", "method": "put"}]},
     ('bad request body: property "pipeline" validation failed: failed to validate item 1: '
     'property "method" validation failed: matches none of the enum values')),
    ({"pipeline": [{"path": "/d", "version": 1.2}]},
     ('bad request body: property "pipeline" validation failed: failed to validate item 1: '
     'property "version" validation failed: matches none of the enum values')),
    ({"pipeline": [{"path": "/d", "ssl_verify": 1.2}]},
     ('bad request body: property "pipeline" validation failed: failed to validate item 1: '
     'property "ssl_verify" validation failed: wrong type: expected boolean, got number')),
    ({"pipeline": []},
     ('bad request body: property "pipeline" validation failed: expect array to have at '
     "least 1 items")),
    ("invalid json string",
     ("invalid request body: invalid json string, err: Expected value but found invalid token "
     "at character 1")),
    ("", "no request body, you should give at least one pipeline setting"),
])
def test_bad_pipeline_is_400_with_apisix_message(kit, body, msg):
    assert batch(kit, body) == (400, {"error_msg": msg})


def test_body_over_default_limit_is_413(kit):
    r = kit.post(BATCH, "1234" * 1024 * 1024)
    assert r.status == 413
    assert r.json() == {"error_msg": "request size 4194304 is greater than the maximum size "
                                     "1048576 allowed"}


def test_chunked_body_over_limit_is_413(kit):
    with socket.create_connection(("127.0.0.1", kit.port), timeout=10) as s:
        s.sendall(f"POST {BATCH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  .encode())
        chunk = b"1000\r\n" + b"1" * 4096 + b"\r\n"
        for _ in range(257):
            s.sendall(chunk)
        s.sendall(b"0\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data or not data.endswith(b"}"):
            more = s.recv(65536)
            if not more:
                break
            data += more
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert json.loads(body)["error_msg"].endswith("is greater than the maximum size 1048576 "
                                                  "allowed")


def test_plugin_metadata_limits(kit):
    r = kit.admin("PUT", "/plugin_metadata/batch-requests", {"max_body_size": 0})
    assert r.status == 400
    assert r.json()["error_msg"].startswith(
        'invalid configuration: property "max_body_size" validation failed: expected 0 to be')
    r = kit.admin("PUT", "/plugin_metadata/batch-requests",
                  {"max_body_size": 2048, "max_pipeline_items": 2,
                   "max_response_body_size": 100})
    assert r.status in (200, 201)
    try:
        deadline = time.monotonic() + 10
        while kit.post(BATCH, "1234" * 1024).status != 413:
            assert time.monotonic() < deadline, "metadata not applied"
            time.sleep(0.05)
        r = kit.post(BATCH, "1234" * 1024)
        assert r.json() == {"error_msg": "request size 4096 is greater than the maximum size "
                                         "2048 allowed"}
        assert batch(kit, {"pipeline": [{"path": "/d"}] * 3}) == (400, {
            "error_msg": "too many pipeline requests, 3 exceeds the maximum of 2"})
        assert batch(kit, {"pipeline": [{"path": "/d"}, {"path": "/b"}]}) == (502, {
            "error_msg": "response body of pipeline request 2 exceeds max_response_body_size"})
    finally:
        kit.admin("DELETE", "/plugin_metadata/batch-requests")


def test_plugin_attr_moves_the_endpoint():
    doc = {"routes": [{"uri": "/foo/bar", "plugins": {"public-api": {}}},
                      {"uri": BATCH, "plugins": {"public-api": {}}},
                      {"uri": "/a"}]}
    with Kit(doc, node={"plugin_attr": {"batch-requests": {"uri": "/foo/bar"}}}) as k:
        assert k.post(BATCH, {"pipeline": [{"path": "/a"}]}).status == 404
        r = k.post("/foo/bar", {"pipeline": [{"path": "/a"}]})
        assert r.status == 200, k.log()[-3000:]
        assert r.json()[0]["status"] == 200
