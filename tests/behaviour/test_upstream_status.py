"""``X-APISIX-Upstream-Status`` (apisix/init.lua header_filter): the statuses of every node
tried for a request, comma separated as nginx's ``$upstream_status``, on answers whose last
upstream status is a 5xx -- including the gateway's own 502/504 after every attempt failed --
and on every proxied answer with ``apisix.show_upstream_status_in_response_header``."""

from __future__ import annotations

import time

import pytest

from pylon.pdk.testing import EchoUpstream, Kit
from tests.harness import dead_port, node

H = "x-apisix-upstream-status"


def _status_from_header(h, rec) -> None:
    """Answers with the status the request asks for (``X-Status``), or after a delay."""
    delay = rec["headers"].get("x-delay")
    if delay:
        time.sleep(float(delay))
    status = int(rec["headers"].get("x-status", "200"))
    h.send_response(status)
    h.send_header("Content-Length", "2")
    h.end_headers()
    h.wfile.write(b"ok")


@pytest.fixture(scope="module")
def origin():
    u = EchoUpstream(_status_from_header)
    yield u
    u.close()


def _port(u: EchoUpstream) -> int:
    return int(u.addr.rsplit(":", 1)[1])


def _doc(origin: EchoUpstream) -> dict:
    dead, dead2 = dead_port(), dead_port()
    up = _port(origin)
    return {"routes": [
        {"id": "one", "uri": "/one", "upstream": {"type": "roundrobin", "nodes": [node(up)]}},
        # the dead node has the higher priority: always tried first
        {"id": "dead-first", "uri": "/dead-first", "upstream": {
            "type": "roundrobin", "retries": 1,
            "nodes": [node(dead, priority=1), node(up, priority=0)]}},
        {"id": "all-dead", "uri": "/all-dead", "upstream": {
            "type": "roundrobin", "retries": 1,
            "nodes": [node(dead, priority=1), node(dead2, priority=0)]}},
        {"id": "slow", "uri": "/slow", "timeout": {"connect": 2, "send": 2, "read": 0.3},
         "upstream": {"type": "roundrobin", "retries": 0, "nodes": [node(up)]}},
        {"id": "local", "uri": "/local", "plugins": {"key-auth": {}},
         "upstream": {"type": "roundrobin", "nodes": [node(up)]}},
    ]}


@pytest.fixture(scope="module")
def kit(origin):
    with Kit(_doc(origin)) as k:
        yield k


def test_upstream_5xx_carries_its_status(kit):
    for status in (500, 503):
        r = kit.get("/one", headers={"X-Status": str(status)})
        assert r.status == status
        assert r.headers[H] == str(status)


def test_success_and_4xx_carry_no_header(kit):
    assert H not in kit.get("/one").headers
    r = kit.get("/one", headers={"X-Status": "404"})
    assert r.status == 404 and H not in r.headers


def test_every_tried_status_after_a_retry(kit):
    r = kit.get("/dead-first", headers={"X-Status": "503"})
    assert r.status == 503
    assert r.headers[H] == "502, 503"


def test_retry_that_succeeds_carries_no_header(kit):
    r = kit.get("/dead-first")
    assert r.status == 200 and H not in r.headers


def test_all_attempts_failed_lists_each_one(kit):
    r = kit.get("/all-dead")
    assert r.status == 502
    assert r.headers[H] == "502, 502"


def test_read_timeout_is_504(kit):
    r = kit.get("/slow", headers={"X-Delay": "1"})
    assert r.status == 504
    assert r.headers[H] == "504"


def test_gateway_reply_without_an_upstream_has_no_header(kit):
    r = kit.get("/local")
    assert r.status == 401 and H not in r.headers
    r = kit.get("/nothing-here")
    assert r.status == 404 and H not in r.headers


def test_show_upstream_status_sends_it_on_every_proxied_answer(origin):
    with Kit(_doc(origin), node={"pylon": {"show_upstream_status_in_response_header": True}}) \
            as k:
        assert k.get("/one").headers[H] == "200"
        assert k.get("/dead-first").headers[H] == "502, 200"
        assert H not in k.get("/local").headers
