"""request-id through a real gateway: ids upstream and in the response, algorithms."""

from __future__ import annotations

import re
import time
import uuid

import pytest

from pylon.pdk.testing import EchoUpstream, Kit

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def _answers_with_its_own_id(h, rec):
    h.send_response(200)
    h.send_header("X-Request-Id", "from-upstream")
    h.send_header("Content-Length", "2")
    h.end_headers()
    h.wfile.write(b"ok")


@pytest.fixture(scope="module")
def own_id_upstream():
    u = EchoUpstream(_answers_with_its_own_id)
    yield u
    u.close()


def _route(rid, conf, **extra):
    plugins = {"request-id": conf, **extra.pop("plugins", {})}
    return {"id": rid, "uri": "/" + rid, "plugins": plugins, **extra}


def _doc(own_id_upstream):
    return {
        "routes": [
            _route("default", {}),
            _route("quiet", {"include_in_response": False}),
            _route("custom", {"header_name": "X-Trace-Id"}),
            _route("nanoid", {"algorithm": "nanoid"}),
            _route("range", {"algorithm": "range_id",
                             "range_id": {"char_set": "abcdef", "length": 8}}),
            _route("range-default", {"algorithm": "range_id"}),
            _route("ksuid", {"algorithm": "ksuid"}),
            _route("uuidv7", {"algorithm": "uuidv7"}),
            _route("auth", {}, plugins={"key-auth": {}}),
            _route("upstream-id", {}, upstream={"type": "roundrobin",
                                                "nodes": {own_id_upstream.addr: 1}}),
        ],
    }


@pytest.fixture(scope="module")
def kit(own_id_upstream):
    with Kit(_doc(own_id_upstream)) as k:
        yield k


def test_id_is_generated_sent_upstream_and_returned(kit):
    r = kit.get("/default")
    assert r.status == 200
    rid = r.headers["x-request-id"]
    assert UUID4.match(rid)
    assert r.json()["headers"]["x-request-id"] == rid


def test_each_request_gets_a_new_id(kit):
    ids = {kit.get("/default").headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


def test_id_sent_by_the_client_is_kept(kit):
    r = kit.get("/default", headers={"X-Request-Id": "client-123"})
    assert r.headers["x-request-id"] == "client-123"
    assert r.json()["headers"]["x-request-id"] == "client-123"


def test_empty_id_from_the_client_is_replaced(kit):
    r = kit.get("/default", headers={"X-Request-Id": ""})
    rid = r.headers["x-request-id"]
    assert UUID4.match(rid)
    assert r.json()["headers"]["x-request-id"] == rid


def test_include_in_response_false_only_sets_it_upstream(kit):
    r = kit.get("/quiet")
    assert "x-request-id" not in r.headers
    assert UUID4.match(r.json()["headers"]["x-request-id"])


def test_custom_header_name(kit):
    r = kit.get("/custom")
    rid = r.headers["x-trace-id"]
    assert UUID4.match(rid)
    assert r.json()["headers"]["x-trace-id"] == rid
    assert "x-request-id" not in r.headers


def test_nanoid(kit):
    rid = kit.get("/nanoid").headers["x-request-id"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{21}", rid)


def test_range_id_uses_char_set_and_length(kit):
    rid = kit.get("/range").headers["x-request-id"]
    assert re.fullmatch(r"[abcdef]{8}", rid)
    rid = kit.get("/range-default").headers["x-request-id"]
    assert re.fullmatch(r"[A-Za-z0-9]{16}", rid)


def test_ksuid(kit):
    rid = kit.get("/ksuid").headers["x-request-id"]
    assert re.fullmatch(r"[0-9A-Za-z]{27}", rid)


def test_uuidv7_has_version_and_variant_bits_and_the_time(kit):
    before = time.time_ns() // 1_000_000
    r = kit.get("/uuidv7")
    after = time.time_ns() // 1_000_000
    rid = r.headers["x-request-id"]
    assert UUID7.match(rid) and r.json()["headers"]["x-request-id"] == rid
    u = uuid.UUID(rid)
    assert u.version == 7 and u.variant == uuid.RFC_4122
    assert before - 5 <= u.int >> 80 <= after + 5          # 48-bit Unix milliseconds


def test_uuidv7_ids_sort_in_creation_order(kit):
    ids = [kit.get("/uuidv7").headers["x-request-id"] for _ in range(60)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)              # many fall in the same millisecond: the counter
    assert [uuid.UUID(i).int for i in ids] == sorted(uuid.UUID(i).int for i in ids)


def test_a_plugin_reply_carries_the_id(kit):
    r = kit.get("/auth")
    assert r.status == 401
    assert UUID4.match(r.headers["x-request-id"])


def test_id_from_the_upstream_response_is_not_overwritten(kit, own_id_upstream):
    r = kit.get("/upstream-id")
    assert r.status == 200
    assert r.headers["x-request-id"] == "from-upstream"
    assert UUID4.match(own_id_upstream.requests[-1]["headers"]["x-request-id"])


@pytest.mark.parametrize("conf, why", [
    ({"algorithm": "snowflake"}, "algorithm"),
    ({"algorithm": "range_id", "range_id": {"length": 5}}, "length"),
    ({"algorithm": "range_id", "range_id": {"char_set": "abc"}}, "char_set"),
    ({"include_in_response": "yes"}, "include_in_response"),
])
def test_bad_configuration_rejects_the_route_and_logs_why(kit, own_id_upstream, conf, why):
    doc = _doc(own_id_upstream)
    before = len(kit.log())
    kit.apply({"routes": doc["routes"] + [_route("bad", conf)]})
    try:
        line = next((ln for ln in kit.log()[before:].splitlines() if "(id bad)" in ln), "")
        assert "failed to check the configuration of plugin request-id" in line
        assert why in line
        assert kit.get("/bad").status == 404
        assert kit.get("/default").status == 200
    finally:
        kit.apply(doc)
