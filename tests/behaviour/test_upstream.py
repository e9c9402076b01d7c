"""The gateway as an upstream client: errors and timeouts, retries (APISIX ``retries``),
keep-alive pooling (``keepalive_pool``), TLS to the upstream, and load balancing
(weighted round robin, consistent hashing, priority tiers), through a real gateway with
one worker so that balancer state is deterministic."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest

from tests.harness import (
    connect,
    dead_port,
    echo,
    echo_peer,
    hang,
    hang_up,
    node,
    origin_factory,
    self_signed_cert,
    server_tls_context,
)

__all__ = ["origin_factory"]


@pytest.fixture
def upstream_factory(origin_factory):
    return origin_factory


def up_doc(nodes, uri: str = "/*", rid: str = "r1", **upstream) -> dict:
    return {"id": rid, "uri": uri, "upstream": {"nodes": nodes, "type": "roundrobin", **upstream}}


def retries_logged(gw, addr: str | None = None) -> int:
    return sum(1 for line in gw.log().splitlines()
               if "retrying" in line and (addr is None or line.rstrip().endswith(addr)))


# ------------------------------------------------------------------------- failures
def test_connection_refused_is_502_with_json_error(gateway_factory):
    gw = gateway_factory({"routes": [up_doc([node(dead_port())])]})
    status, headers, body = gw.get("/x")
    assert status == 502
    assert json.loads(body) == {"error_msg": "502 Bad Gateway"}
    assert headers["content-type"].startswith("application/json")


def test_upstream_read_timeout_is_504(gateway_factory, upstream_factory):
    release = threading.Event()
    slow = upstream_factory("slow", behaviour=hang(release))
    doc = {"routes": [
        {**up_doc([node(slow.port)], uri="/route", rid="by-route"),
         "timeout": {"connect": 2, "send": 2, "read": 0.5}},
        up_doc([node(slow.port)], uri="/upstream", rid="by-upstream",
               timeout={"connect": 2, "send": 2, "read": 0.5}),
    ]}
    gw = gateway_factory(doc)
    try:
        for path in ("/route", "/upstream"):
            t0 = time.monotonic()
            status, _, body = gw.get(path)
            took = time.monotonic() - t0
            assert status == 504, body
            assert json.loads(body) == {"error_msg": "504 Gateway Time-out"}
            assert 0.4 <= took < 2.5, took
    finally:
        release.set()


def test_upstream_garbage_response_is_502(gateway_factory, upstream_factory):
    def garbage(h: BaseHTTPRequestHandler, body: bytes) -> None:
        h.wfile.write(b"THIS IS NOT HTTP\r\n\r\n")
        h.close_connection = True

    up = upstream_factory("bad", behaviour=garbage)
    gw = gateway_factory({"routes": [up_doc([node(up.port)])]})
    status, _, body = gw.get("/")
    assert status == 502 and json.loads(body) == {"error_msg": "502 Bad Gateway"}


def test_upstream_dying_mid_body_cuts_the_client_connection(gateway_factory, upstream_factory):
    def truncated(h: BaseHTTPRequestHandler, body: bytes) -> None:
        h.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        h.wfile.flush()
        h.close_connection = True

    up = upstream_factory("cut", behaviour=truncated)
    ok = upstream_factory("ok")
    gw = gateway_factory({"routes": [up_doc([node(up.port)], uri="/cut", rid="cut"),
                                     up_doc([node(ok.port)], uri="/ok", rid="ok")]})
    s, rd = connect(gw)
    with s:
        s.sendall(b"GET /cut HTTP/1.1\r\nHost: a\r\n\r\n")
        with pytest.raises(EOFError, match="short body: 10 of 100"):
            rd.response()                       # the head, 10 bytes, then the close
    assert gw.get("/ok")[0] == 200


# -------------------------------------------------------------------------- retries
def test_retry_moves_to_the_next_node_after_a_refused_connect(gateway_factory,
                                                              upstream_factory):
    live = upstream_factory("live")
    dead = dead_port()
    gw = gateway_factory({"routes": [up_doc([node(dead), node(live.port)])]})
    status, _, body = gw.get("/one")
    assert status == 200 and json.loads(body)["upstream"] == "live"
    assert retries_logged(gw, f"127.0.0.1:{dead}") == 1, "the dead node is tried exactly once"
    # round robin keeps alternating: 3 more requests, the dead node is picked once more
    for _ in range(3):
        assert gw.get("/more")[0] == 200
    assert retries_logged(gw) == 2
    assert len(live.requests) == 4


def test_large_body_is_retried_after_a_connect_failure(gateway_factory, upstream_factory):
    """Connect errors are retried for every method (nothing was sent); the body is not
    lost because it never left the gateway."""
    live = upstream_factory("live")
    gw = gateway_factory({"routes": [up_doc([node(dead_port()), node(live.port)])]})
    body = bytes(range(256)) * 800                       # 200 KiB, more than the replay buffer
    s, rd = connect(gw)
    with s:
        s.sendall(b"POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body)
                  + body)
        r = rd.response()
        assert r.status == 200, r
    assert [r["body"] for r in live.requests] == [body]


def test_all_nodes_failing_exhausts_retries_with_502(gateway_factory):
    a, b = dead_port(), dead_port()
    gw = gateway_factory({"routes": [up_doc([node(a), node(b)])]})
    status, _, body = gw.get("/")
    assert status == 502 and json.loads(body) == {"error_msg": "502 Bad Gateway"}
    assert retries_logged(gw) == 1, "two nodes: one attempt each"


def test_retries_zero_means_a_single_attempt(gateway_factory, upstream_factory):
    live = upstream_factory("live")
    gw = gateway_factory({"routes": [up_doc([node(dead_port()), node(live.port)], retries=0)]})
    assert gw.get("/first")[0] == 502          # the dead node, and no second attempt
    assert retries_logged(gw) == 0
    assert live.requests == []
    assert gw.get("/second")[0] == 200         # round robin moved on to the live node


def test_non_idempotent_request_is_not_retried_once_sent(gateway_factory, upstream_factory):
    hangup_post = upstream_factory("hangup-post", behaviour=hang_up)
    hangup_get = upstream_factory("hangup-get", behaviour=hang_up)
    live = upstream_factory("live")
    gw = gateway_factory({"routes": [
        up_doc([node(hangup_post.port), node(live.port)], uri="/post", rid="post"),
        up_doc([node(hangup_get.port), node(live.port)], uri="/get", rid="get"),
    ]})
    status, _, body = gw.request("POST", "/post", body=b"pay once")
    assert status == 502, body
    assert [r["body"] for r in hangup_post.requests] == [b"pay once"]
    assert live.requests == [], "a POST the upstream may have acted on must not be replayed"
    # the same failure on an idempotent request is retried on the other node
    status, _, body = gw.get("/get")
    assert status == 200 and json.loads(body)["upstream"] == "live"
    assert len(hangup_get.requests) == 1


def test_request_on_a_stale_pooled_connection_is_retried(gateway_factory, upstream_factory):
    def one_per_connection(h: BaseHTTPRequestHandler, body: bytes) -> None:
        n = getattr(h, "served", 0) + 1
        h.served = n                           # the handler lives as long as the connection
        if n == 1:
            echo(h, body)                      # keep-alive response...
        else:
            hang_up(h, body)                   # ...but the next request on it is dropped

    up = upstream_factory("flaky", behaviour=one_per_connection)
    gw = gateway_factory({"routes": [up_doc([node(up.port)])]})
    assert gw.get("/1")[0] == 200
    status, _, body = gw.get("/2")
    assert status == 200, body


# ------------------------------------------------------------------------ keep-alive pool
def test_upstream_connections_are_reused_across_client_connections(gateway_factory,
                                                                   upstream_factory):
    up = upstream_factory("pooled", behaviour=echo_peer)
    limited = upstream_factory("limited", behaviour=echo_peer)
    gw = gateway_factory({"routes": [
        up_doc([node(up.port)], uri="/pool", rid="pool"),
        up_doc([node(limited.port)], uri="/limited", rid="limited",
               keepalive_pool={"size": 4, "idle_timeout": 60, "requests": 3}),
    ]})
    for _ in range(10):
        assert gw.get("/pool")[0] == 200       # a new client connection each time
    assert len(up.peer_ports) == 10 and len(set(up.peer_ports)) == 1
    for _ in range(10):
        assert gw.get("/limited")[0] == 200
    # keepalive_pool.requests = 3: a connection carries at most 3 requests
    assert len(set(limited.peer_ports)) == 4
    assert [limited.peer_ports.count(p) for p in dict.fromkeys(limited.peer_ports)] == [3, 3, 3, 1]


def test_idle_pooled_connection_is_dropped_after_idle_timeout(gateway_factory,
                                                             upstream_factory):
    up = upstream_factory("idle", behaviour=echo_peer)
    gw = gateway_factory({"routes": [
        up_doc([node(up.port)], keepalive_pool={"size": 4, "idle_timeout": 0.3,
                                                "requests": 100})]})
    assert gw.get("/a")[0] == 200
    assert gw.get("/b")[0] == 200
    time.sleep(0.6)
    assert gw.get("/c")[0] == 200
    a, b, c = up.peer_ports
    assert a == b and c != a


# ---------------------------------------------------------------------------------- TLS
def test_https_upstream(gateway_factory, upstream_factory, tmp_path):
    cert, key = self_signed_cert(str(tmp_path))
    tls = upstream_factory("tls", behaviour=echo_peer, ssl_context=server_tls_context(cert, key))
    gw = gateway_factory({"routes": [up_doc([node(tls.port)], scheme="https",
                                            pass_host="node")]})
    for i in range(3):
        status, _, body = gw.request("POST", f"/secure/{i}", body=b"over tls")
        assert status == 200, body
        got = json.loads(body)
        assert got["upstream"] == "tls" and got["body"] == "over tls"
        assert got["headers"]["Host"] == f"127.0.0.1:{tls.port}"
    assert len(set(tls.peer_ports)) == 1, "TLS connections are pooled too"


def test_https_upstream_speaking_plain_http_is_502(gateway_factory, upstream_factory):
    plain = upstream_factory("plain")
    gw = gateway_factory({"routes": [up_doc([node(plain.port)], scheme="https")]})
    status, _, body = gw.get("/")
    assert status == 502 and json.loads(body) == {"error_msg": "502 Bad Gateway"}


# ---------------------------------------------------------------------- load balancing
def test_weighted_round_robin_exact_counts(gateway_factory, upstream_factory):
    a, b = upstream_factory("a"), upstream_factory("b")
    gw = gateway_factory({"routes": [up_doc([node(a.port, weight=3), node(b.port, weight=1)])]})
    order = [json.loads(gw.get("/")[2])["upstream"] for _ in range(8)]
    assert (order.count("a"), order.count("b")) == (6, 2)
    assert order[:4].count("b") == 1 and order[4:].count("b") == 1, order


def test_weight_zero_node_gets_nothing(gateway_factory, upstream_factory):
    a, b = upstream_factory("a"), upstream_factory("b")
    gw = gateway_factory({"routes": [up_doc([node(a.port, weight=1), node(b.port, weight=0)])]})
    assert {json.loads(gw.get("/")[2])["upstream"] for _ in range(6)} == {"a"}
    assert b.requests == []


def test_chash_by_header_maps_each_key_to_one_node(gateway_factory, upstream_factory):
    a, b, c = upstream_factory("a"), upstream_factory("b"), upstream_factory("c")
    gw = gateway_factory({"routes": [{
        "id": "r1", "uri": "/*",
        "upstream": {"type": "chash", "hash_on": "header", "key": "X-User",
                     "nodes": [node(a.port), node(b.port), node(c.port)]}}]})
    mapping: dict[str, set[str]] = {}
    for _round in range(3):
        for user in (f"user-{i}" for i in range(12)):
            got = json.loads(gw.get("/", headers={"X-User": user})[2])["upstream"]
            mapping.setdefault(user, set()).add(got)
    assert all(len(v) == 1 for v in mapping.values()), mapping
    assert len({next(iter(v)) for v in mapping.values()}) >= 2, "keys spread over nodes"


def test_priority_tiers_lower_tier_only_when_higher_fails(gateway_factory, upstream_factory):
    hi, lo = upstream_factory("hi"), upstream_factory("lo")
    backup = upstream_factory("backup")
    gw = gateway_factory({"routes": [
        up_doc([node(lo.port, priority=0), node(hi.port, priority=1)], uri="/healthy",
               rid="healthy"),
        up_doc([node(dead_port(), priority=1), node(backup.port, priority=0)], uri="/failover",
               rid="failover"),
    ]})
    assert {json.loads(gw.get("/healthy")[2])["upstream"] for _ in range(6)} == {"hi"}
    assert lo.requests == []
    for _ in range(3):
        status, _, body = gw.get("/failover")
        assert status == 200 and json.loads(body)["upstream"] == "backup"
    assert retries_logged(gw) == 3, "the higher tier is always tried first"
