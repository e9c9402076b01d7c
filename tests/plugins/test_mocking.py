"""mocking through a real gateway: APISIX's doc and test-file examples."""

from __future__ import annotations

import json
import time

import pytest

from pylon import __version__
from pylon.pdk.testing import Kit

DOC_SCHEMA = {       # the JSON Schema example of APISIX's doc page, unchanged
    "properties": {
        "field0": {"example": "abcd", "type": "string"},
        "field1": {"example": 123.12, "type": "number"},
        "field3": {
            "properties": {
                "field3_1": {"type": "string"},
                "field3_2": {
                    "properties": {
                        "field3_2_1": {"example": True, "type": "boolean"},
                        "field3_2_2": {"items": {"example": 155.55, "type": "integer"},
                                       "type": "array"},
                    },
                    "type": "object",
                },
            },
            "type": "object",
        },
        "field2": {"items": {"type": "string"}, "type": "array"},
    },
    "type": "object",
}


def _route(rid: str, conf: dict) -> dict:
    return {"id": rid, "uri": f"/{rid}", "plugins": {"mocking": conf}}


DOC = {"routes": [
    _route("example", {"delay": 0, "content_type": "application/json;charset=utf8",
                       "with_mock_header": True, "response_status": 201,
                       "response_example": '{"a":1,"b":2}'}),
    _route("doc-schema", {"content_type": "application/json",
                          "response_schema": DOC_SCHEMA}),
    _route("text", {"delay": 1, "content_type": "text/plain", "response_status": 200,
                    "response_example": "hello world"}),
    _route("both", {"response_example": "example wins",
                    "response_schema": {"type": "object",
                                        "properties": {"x": {"type": "string"}}}}),
    _route("xml", {"content_type": "application/xml", "response_schema": {
        "type": "object", "properties": {"name": {"type": "string", "example": "Spain"},
                                         "n": {"type": "integer", "example": 4}}}}),
    _route("vars", {"response_example": "you are $remote_addr, arg ${arg_q}!",
                    "with_mock_header": False,
                    "response_headers": {"X-Foo": "bar", "X-Num": 12, "X-Arg": "$arg_q"}}),
    _route("random", {"content_type": "text/plain", "response_schema": {
        "type": "object", "properties": {
            "s": {"type": "string"}, "i": {"type": "integer"}, "n": {"type": "number"},
            "b": {"type": "boolean", "example": False}, "o": {"type": "object"},
            "no_items": {"type": "array"}}}}),
]}


@pytest.fixture(scope="module")
def kit():
    with Kit(DOC, admin_key="mock-admin") as k:
        yield k


def test_response_example_status_content_type_and_mock_header(kit):
    before = len(kit.upstream.requests)
    r = kit.get("/example")
    assert r.status == 201
    assert r.body == b'{"a":1,"b":2}'
    assert r.headers["content-type"] == "application/json;charset=utf8"
    assert r.headers["x-mock-by"] == f"Pylon/{__version__}"
    assert len(kit.upstream.requests) == before          # the upstream is never called


def test_doc_schema_generates_the_documented_shape(kit):
    body = kit.get("/doc-schema").json()
    assert body["field0"] == "abcd" and body["field1"] == 123.12
    assert isinstance(body["field3"]["field3_1"], str)
    assert 1 <= len(body["field3"]["field3_1"]) <= 10
    assert body["field3"]["field3_2"]["field3_2_1"] is True
    assert set(body["field3"]["field3_2"]["field3_2_2"]) == {155}       # floor(155.55)
    assert 1 <= len(body["field3"]["field3_2"]["field3_2_2"]) <= 3
    assert all(s.isalpha() and s.islower() for s in body["field2"])


def test_delay_is_in_seconds(kit):
    t0 = time.monotonic()
    r = kit.get("/text")
    assert time.monotonic() - t0 >= 0.95
    assert (r.status, r.body) == (200, b"hello world")
    assert r.headers["content-type"] == "text/plain"


def test_response_example_wins_over_response_schema(kit):
    assert kit.get("/both").body == b"example wins"


def test_xml_content_type_renders_xml2lua_layout(kit):
    r = kit.get("/xml")
    assert r.headers["content-type"] == "application/xml"
    lines = r.text.split("\n")               # (key order: Lua's pairs order is unspecified)
    assert lines[0] == "<data>" and lines[-2:] == ["</data>", ""]
    assert sorted(lines[1:-2]) == ["  <n>4</n>", "  <name>Spain</name>"]


def test_variables_and_response_headers(kit):
    r = kit.get("/vars?q=zz")
    assert r.text == "you are 127.0.0.1, arg zz!"
    assert r.headers["x-foo"] == "bar" and r.headers["x-num"] == "12"
    assert r.headers["x-arg"] == "zz"
    assert "x-mock-by" not in r.headers


def test_random_values_follow_apisix_rules(kit):
    seen_b = set()
    for _ in range(12):
        body = json.loads(kit.get("/random").body)
        assert set(body) == {"s", "i", "n", "b", "o"}     # an array without items: left out
        assert body["s"].isalpha() and 1 <= len(body["s"]) <= 10
        assert isinstance(body["i"], int) and 1 <= body["i"] <= 10000
        assert isinstance(body["n"], (int, float)) and 0 <= body["n"] < 10000
        assert body["o"] == {}
        seen_b.add(body["b"])
    assert seen_b == {True, False}               # example false is random, as in APISIX


def test_bad_config_is_refused_by_the_admin_api(kit):
    r = kit.admin("PUT", "/routes/bad", {"uri": "/bad", "plugins": {"mocking": {
        "content_type": "image/png", "response_example": "x"}},
        "upstream": {"nodes": {"127.0.0.1:1": 1}}})
    assert r.status == 400
    assert r.json()["error_msg"] == \
        "failed to check the configuration of plugin mocking err: unsupported content type!"
    r = kit.admin("PUT", "/routes/bad", {"uri": "/bad", "plugins": {"mocking": {
        "response_status": 200}}, "upstream": {"nodes": {"127.0.0.1:1": 1}}})
    assert r.status == 400
    assert r.json()["error_msg"].startswith(
        "failed to check the configuration of plugin mocking err: ")
    r = kit.admin("PUT", "/routes/bad", {"uri": "/bad", "plugins": {"mocking": {
        "response_example": "x", "response_status": 99}},
        "upstream": {"nodes": {"127.0.0.1:1": 1}}})
    assert r.status == 400
