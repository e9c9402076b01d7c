"""http-logger through a real gateway, posting to a real collector."""

from __future__ import annotations

import json
import socket
import time

import pytest

from pylon.pdk.testing import Kit

from .log_receivers import HttpCollector, HungListener


@pytest.fixture(scope="module")
def col():
    with HttpCollector() as c:
        yield c


@pytest.fixture(scope="module")
def kit(col):
    base = f"http://127.0.0.1:{col.port}"
    hung = HungListener()               # a receiver that never answers
    dead = hung.port
    doc = {
        "consumers": [{"username": "jack", "plugins": {"key-auth": {"key": "k1"}}}],
        "routes": [
            {"id": "full", "uri": "/full", "plugins": {"http-logger": {
                "uri": base + "/full", "batch_max_size": 1, "auth_header": "Basic abc"}}},
            {"id": "size", "uri": "/size", "plugins": {"http-logger": {
                "uri": base + "/size", "batch_max_size": 3, "inactive_timeout": 30}}},
            {"id": "idle", "uri": "/idle", "plugins": {"http-logger": {
                "uri": base + "/idle", "batch_max_size": 100, "inactive_timeout": 1,
                "concat_method": "new_line"}}},
            {"id": "fmt", "uri": "/fmt", "plugins": {"http-logger": {
                "uri": base + "/fmt", "batch_max_size": 1,
                "log_format": {"h": "$host", "st": "$status", "lit": "x", "a": "$arg_a"}}}},
            {"id": "auth", "uri": "/auth", "plugins": {"key-auth": {}, "http-logger": {
                "uri": base + "/auth", "batch_max_size": 1}}},
            {"id": "dead", "uri": "/dead", "plugins": {"http-logger": {
                "uri": f"http://127.0.0.1:{dead}/x", "batch_max_size": 1, "timeout": 1}}},
        ],
    }
    with hung, Kit(doc) as k:
        yield k


def test_full_log_entry_has_apisix_fields(kit, col):
    r = kit.get("/full?a=1&b=2", headers={"X-Test": "yes"})
    assert r.status == 200
    posts = col.wait(1, "/full")
    assert len(posts) == 1
    p = posts[0]
    assert p["headers"]["Authorization"] == "Basic abc"
    assert p["headers"]["Content-Type"] == "application/json"
    entries = json.loads(p["body"])
    assert isinstance(entries, list) and len(entries) == 1
    e = entries[0]
    assert e["route_id"] == "full" and e["service_id"] == ""
    assert e["request"]["method"] == "GET"
    assert e["request"]["uri"] == "/full?a=1&b=2"
    assert e["request"]["url"] == f"http://127.0.0.1:{kit.port}/full?a=1&b=2"
    assert e["request"]["querystring"] == {"a": "1", "b": "2"}
    assert e["request"]["headers"]["x-test"] == "yes"
    assert e["response"]["status"] == 200
    assert e["response"]["size"] > 0
    assert "content-type" in e["response"]["headers"]
    assert e["server"]["hostname"] == socket.gethostname()
    assert e["client_ip"] == "127.0.0.1"
    assert e["upstream"] == kit.upstream.addr
    assert abs(e["start_time"] / 1000 - time.time()) < 30
    assert e["latency"] >= 0 and e["upstream_latency"] >= 0 and e["apisix_latency"] >= 0


def test_batches_are_cut_at_batch_max_size(kit, col):
    for _ in range(6):
        assert kit.get("/size").status == 200
    posts = col.wait(2, "/size")
    assert [len(json.loads(p["body"])) for p in posts] == [3, 3]


def test_partial_batch_goes_after_inactive_timeout_as_new_lines(kit, col):
    t0 = time.monotonic()
    kit.get("/idle")
    kit.get("/idle")
    posts = col.wait(1, "/idle")
    assert len(posts) == 1 and time.monotonic() - t0 >= 0.9
    assert posts[0]["headers"]["Content-Type"] == "text/plain"
    lines = posts[0]["body"].decode().split("\n")
    assert len(lines) == 2 and all(json.loads(x)["route_id"] == "idle" for x in lines)


def test_log_format_picks_variables_and_adds_route(kit, col):
    kit.get("/fmt?a=7")
    e = json.loads(col.wait(1, "/fmt")[0]["body"])[0]
    assert e == {"h": "127.0.0.1", "st": "200", "lit": "x", "a": "7", "route_id": "fmt"}
    kit.get("/fmt")                     # an unset variable is left out, as a Lua nil
    e = json.loads(col.wait(2, "/fmt")[1]["body"])[0]
    assert "a" not in e and e["st"] == "200"


def test_rejected_requests_are_logged_with_consumer_when_known(kit, col):
    assert kit.get("/auth").status == 401
    assert kit.get("/auth", headers={"apikey": "k1"}).status == 200
    posts = col.wait(2, "/auth")
    es = [json.loads(p["body"])[0] for p in posts]
    assert sorted(e["response"]["status"] for e in es) == [200, 401]
    ok = next(e for e in es if e["response"]["status"] == 200)
    assert ok["consumer"] == {"username": "jack"}


def test_dead_receiver_does_not_slow_requests(kit):
    times = []
    for _ in range(20):
        t0 = time.monotonic()
        assert kit.get("/dead").status == 200
        times.append(time.monotonic() - t0)
    assert max(times) < 1.0             # the sink (timeout 1 s per batch) is not waited for
    deadline = time.monotonic() + 8
    while "exceeded the max_retry_count" not in kit.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "exceeded the max_retry_count" in kit.log()


def test_buffered_entries_are_sent_when_the_gateway_stops():
    """A batch still waiting for its inactive_timeout goes out on a graceful stop."""
    with HttpCollector() as c:
        doc = {"routes": [{"uri": "/x", "plugins": {"http-logger": {
            "uri": f"http://127.0.0.1:{c.port}/logs",
            "batch_max_size": 100, "inactive_timeout": 60}}}]}
        k = Kit(doc)
        try:
            assert k.get("/x").status == 200
            assert c.posts == []                 # still buffered
        finally:
            k.close()                            # SIGTERM: drain, flush the sinks
        entries = [e for p in c.posts for e in json.loads(p["body"])]
        assert len(entries) == 1 and entries[0]["request"]["uri"].startswith("/x")
