"""redirect through a real gateway: APISIX templates, regex_uri, http_to_https, codes."""

from __future__ import annotations

import json

import pytest

from pylon.pdk.testing import Kit

DOC = {
    "routes": [
        {"id": "tmpl", "uri": "/tmpl/*", "plugins": {"redirect": {
            "uri": "/new${uri}?a=$arg_a&h=$host&m=$http_x_mark&none=$nope"}}},
        {"id": "code", "uri": "/code", "plugins": {"redirect": {
            "uri": "https://example.com/moved", "ret_code": 301}}},
        {"id": "literal", "uri": "/literal", "plugins": {"redirect": {
            "uri": "/price/\\$host/$ 5"}}},
        {"id": "https", "uri": "/https/*", "plugins": {"redirect": {"http_to_https": True}}},
        {"id": "regex", "uri": "/regex/*", "plugins": {"redirect": {
            "regex_uri": ["^/regex/(\\w+)/(\\d+)$", "/r/${2}-$1"], "ret_code": 307}}},
        {"id": "encode", "uri": "/enc/*", "plugins": {"redirect": {
            "uri": "$uri?keep=a b", "encode_uri": True}}},
        {"id": "append", "uri": "/append", "plugins": {"redirect": {
            "uri": "/target", "append_query_string": True}}},
        {"id": "append2", "uri": "/append2", "plugins": {"redirect": {
            "uri": "/target?x=1", "append_query_string": True}}},
    ],
}


@pytest.fixture(scope="module")
def kit():
    with Kit(DOC) as k:
        yield k


def test_uri_template_is_filled_with_nginx_variables(kit):
    before = len(kit.upstream.requests)
    r = kit.get("/tmpl/page?a=1", headers={"Host": "Shop.Example:9080", "X-Mark": "m1"})
    assert r.status == 302
    assert r.headers["location"] == "/new/tmpl/page?a=1&h=shop.example&m=m1&none="
    assert r.body == b""
    assert len(kit.upstream.requests) == before


def test_ret_code_is_used(kit):
    r = kit.get("/code")
    assert r.status == 301
    assert r.headers["location"] == "https://example.com/moved"


def test_escaped_dollar_and_lone_dollar_are_kept(kit):
    r = kit.get("/literal")
    assert r.headers["location"] == "/price/\\$host/$ 5"


def test_http_to_https_is_301_for_get_and_head(kit):
    r = kit.get("/https/a/b?x=1&y=2", headers={"Host": "foo.com"})
    assert r.status == 301
    assert r.headers["location"] == "https://foo.com/https/a/b?x=1&y=2"
    r = kit.request("HEAD", "/https/a", headers={"Host": "foo.com"})
    assert r.status == 301


def test_http_to_https_is_308_for_other_methods(kit):
    r = kit.post("/https/form", body="a=1", headers={"Host": "foo.com"})
    assert r.status == 308
    assert r.headers["location"] == "https://foo.com/https/form"


def test_http_to_https_passes_when_forwarded_proto_is_https(kit):
    r = kit.get("/https/a", headers={"X-Forwarded-Proto": "https"})
    assert r.status == 200
    assert r.json()["path"] == "/https/a"
    r = kit.get("/https/a", headers={"X-Forwarded-Proto": "http"})
    assert r.status == 301


def test_regex_uri_replaces_the_first_match(kit):
    r = kit.get("/regex/item/42")
    assert r.status == 307
    assert r.headers["location"] == "/r/42-item"


def test_regex_uri_without_a_match_proxies(kit):
    r = kit.get("/regex/item/forty-two")
    assert r.status == 200
    assert r.json()["path"] == "/regex/item/forty-two"


def test_encode_uri_escapes_the_path_part_only(kit):
    r = kit.get("/enc/a%20b%23c")
    assert r.status == 302
    assert r.headers["location"] == "/enc/a%20b%23c?keep=a b"


def test_append_query_string(kit):
    assert kit.get("/append?a=1&b=2").headers["location"] == "/target?a=1&b=2"
    assert kit.get("/append").headers["location"] == "/target"
    assert kit.get("/append2?a=1").headers["location"] == "/target?x=1&a=1"


def test_bad_configs_are_refused_with_apisix_messages(kit):
    doc = json.loads(json.dumps(DOC))
    doc["routes"] += [
        {"id": "both", "uri": "/both", "plugins": {"redirect": {
            "uri": "/x", "http_to_https": True}}},
        {"id": "mix", "uri": "/mix", "plugins": {"redirect": {
            "http_to_https": True, "append_query_string": True}}},
        {"id": "badrx", "uri": "/badrx", "plugins": {"redirect": {
            "regex_uri": ["^/(a", "/b"]}}},
        {"id": "badgroup", "uri": "/badgroup", "plugins": {"redirect": {
            "regex_uri": ["^/(a)", "/$2"]}}},
    ]
    kit.apply(doc)
    try:
        for path in ("/both", "/mix", "/badrx", "/badgroup"):
            assert kit.get(path).status == 404, path
        log = kit.log()
        assert "only one of `http_to_https` and `append_query_string` can be configured." in log
        assert "invalid regex_uri (^/(a, /b), err:" in log
        assert "invalid regex_uri (^/(a), /$2), err:" in log
        assert kit.get("/code").status == 301
    finally:
        kit.apply(DOC)
