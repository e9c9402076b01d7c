"""Upstream health checks through a real gateway (master + 2 workers): passive checks
take a killed node out under load after ``tcp_failures`` errors and active checks bring it
back; active probes run once per node in the master, not once per worker; node states
survive config changes; the Control API (``/v1/healthcheck``) answers as APISIX's."""

from __future__ import annotations

import http.client
import json
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.behaviour.loadgen import Load
from tests.harness import dead_port, free_port, node


def named(h: BaseHTTPRequestHandler, _body: bytes) -> None:
    """200 with the origin's name; no keep-alive, so a killed origin refuses at once."""
    out = h.server.owner.name.encode()  # type: ignore[attr-defined]
    h.send_response(200)
    h.send_header("Content-Length", str(len(out)))
    h.send_header("Connection", "close")
    h.end_headers()
    h.wfile.write(out)


def control(port: int, path: str) -> tuple[int, Any]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, json.loads(r.read())
    finally:
        c.close()


def wait(cond: Any, timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def start(gateway_factory: Any, routes: list[dict[str, Any]]) -> tuple[Any, int]:
    cport = free_port()
    gw = gateway_factory({"routes": routes}, workers=2,
                         node={"pylon": {"enable_control": True,
                                         "control": {"ip": "127.0.0.1", "port": cport}}})
    return gw, cport


def states(cport: int, src: str) -> dict[int, str]:
    status, body = control(cport, f"/v1/healthcheck/{src}")
    assert status == 200, body
    return {n["port"]: n["status"] for n in body["nodes"]}


def traffic(up: Any) -> int:
    return sum(1 for r in up.requests if r["path"] == "/x")


def test_killed_node_costs_errors_bounded_by_the_threshold_and_comes_back(gateway_factory,
                                                                          upstream_factory):
    a = upstream_factory("a", behaviour=named)
    b = upstream_factory("b", behaviour=named)
    checks = {
        # healthy nodes are probed rarely: the passive checks have to see the death
        "active": {"http_path": "/health", "timeout": 0.5,
                   "healthy": {"interval": 60, "successes": 1},
                   "unhealthy": {"interval": 1}},
        "passive": {"unhealthy": {"tcp_failures": 2}},
    }
    gw, cport = start(gateway_factory, [{"id": "r1", "uri": "/*", "upstream": {
        "type": "roundrobin", "retries": 0, "nodes": [node(a.port), node(b.port)],
        "checks": checks}}])
    with Load(gw.port, "/x", fresh=2, keepalive=2) as load:
        load.wait_for(100)
        assert traffic(b) > 20, "both nodes take traffic"
        assert load.failures == []
        b.close()
        wait(lambda: states(cport, "routes/r1").get(b.port) == "unhealthy", 5, "b unhealthy")
        time.sleep(0.3)             # requests in flight when the verdict was broadcast
        marked = len(load.failures)
        ok_while_down = load.ok
        time.sleep(1.0)
        assert load.ok > ok_while_down + 20, "a keeps serving"
        # the threshold (2), plus what the clients sent to a worker before the master's
        # verdict reached it (one round trip over the control channel: well under a
        # millisecond on an idle machine, more on a busy one); without the checks half of
        # the requests would fail (hundreds here; the active checks alone would take 1-2 s at
        # ~1,400 req/s).  2-5 on a quiet machine; the report's trip through a busy master
        # grows with the load (26 and 67 seen with the parallel suite beside it), so the
        # bound is set well below what the active checks alone would give, not at the quiet
        # figure; what must hold under any load is the next assertion: no error once marked
        assert 2 <= marked <= 150, load.summary()
        assert len(load.failures) == marked, f"errors after the node was out: {load.summary()}"
        assert set(load.statuses) <= {200, 502}, load.summary()
        # the node is back: active checks (1 success, every 1 s) bring traffic back
        b2 = upstream_factory("b", behaviour=named, port=b.port)
        wait(lambda: traffic(b2) > 10, 8, "traffic back on b")
        assert states(cport, "routes/r1")[b.port] == "healthy"
        assert len(load.failures) == marked, load.summary()


def test_active_checks_run_once_per_node_in_the_master(gateway_factory, upstream_factory):
    a = upstream_factory("a", behaviour=named)
    b = upstream_factory("b", behaviour=named)
    checks = {"active": {"http_path": "/probe", "host": "checks.example",
                         "req_headers": ["X-Probe: 1"],
                         "healthy": {"interval": 1}, "unhealthy": {"interval": 1}}}
    gw, cport = start(gateway_factory, [{"id": "r1", "uri": "/*", "upstream": {
        "type": "roundrobin", "nodes": [node(a.port), node(b.port)], "checks": checks}}])

    def probes(up: Any) -> list[dict[str, Any]]:
        return [r for r in up.requests if r["path"] == "/probe"]

    wait(lambda: probes(a) and probes(b), 5, "the first probes")
    n_a, n_b = len(probes(a)), len(probes(b))
    time.sleep(3.0)
    # one probe per node per second; per-worker probing would make it 6 each
    assert 2 <= len(probes(a)) - n_a <= 4, len(probes(a)) - n_a
    assert 2 <= len(probes(b)) - n_b <= 4, len(probes(b)) - n_b
    p = probes(a)[0]["headers"]
    assert p["host"] == "checks.example" and p["x-probe"] == "1" and p["connection"] == "close"
    assert gw.get("/x")[0] == 200
    assert states(cport, "routes/r1") == {a.port: "healthy", b.port: "healthy"}


def test_health_survives_config_changes_and_the_control_api_answers(gateway_factory,
                                                                    upstream_factory):
    a = upstream_factory("a", behaviour=named)
    dead = dead_port()
    checks = {"active": {"healthy": {"interval": 30}, "unhealthy": {"interval": 30}},
              "passive": {"unhealthy": {"tcp_failures": 1}}}
    up = {"type": "roundrobin", "retries": 0, "nodes": [node(a.port), node(dead)],
          "checks": checks}
    r1 = {"id": "r1", "uri": "/*", "upstream": up}
    gw, cport = start(gateway_factory, [r1])
    assert states(cport, "routes/r1") == {a.port: "healthy", dead: "healthy"}
    # passive: the first failure (tcp_failures 1) takes the dead node out
    codes = []
    while states(cport, "routes/r1")[dead] != "unhealthy":
        codes.append(gw.get("/x")[0])
        assert len(codes) < 40, codes
    assert set(codes) <= {200, 502} and 502 in codes, codes
    time.sleep(0.2)
    assert {gw.get("/x")[0] for _ in range(10)} == {200}

    # an unrelated change (a new route) and a change of this upstream that keeps the
    # node (timeouts): the state is kept, no request goes to the dead node
    # (APISIX builds a new checker, all healthy, and fails requests until it re-learns)
    r2 = {"id": "r2", "uri": "/other", "upstream": {"type": "roundrobin", "nodes": [
        node(a.port)], "checks": checks}}
    gw.write({"routes": [r1, r2]})
    wait(lambda: all(gw.get("/other")[0] == 200 for _ in range(4)), 10, "r2 live")
    assert [gw.get("/x")[0] for _ in range(10)] == [200] * 10
    gw.write({"routes": [{**r1, "upstream": {**up, "timeout": {"connect": 3, "send": 3,
                                                                 "read": 3}}}, r2]})
    time.sleep(1.0)
    assert [gw.get("/x")[0] for _ in range(10)] == [200] * 10
    assert states(cport, "routes/r1") == {a.port: "healthy", dead: "unhealthy"}

    # the Control API, APISIX's shape
    status, body = control(cport, "/v1/healthcheck")
    assert status == 200 and isinstance(body, list)
    assert [(e["name"], e["type"]) for e in body] == [("/apisix/routes/r1", "http"),
                                                      ("/apisix/routes/r2", "http")]
    dead_node = next(n for n in body[0]["nodes"] if n["port"] == dead)
    assert dead_node == {"ip": "127.0.0.1", "port": dead, "hostname": "127.0.0.1",
                         "status": "unhealthy", "counter": {"success": 0, "http_failure": 0,
                                                            "tcp_failure": 1,
                                                            "timeout_failure": 0}}
    assert body[1]["nodes"] == []                   # one node: no checker (APISIX neither)
    assert control(cport, "/v1/healthcheck/routes/r1")[1] == body[0]
    assert control(cport, "/v1/healthcheck/upstreams/9") == \
        (404, {"error_msg": "upstreams[9] not found"})
    assert control(cport, "/v1/healthcheck/services/1") == \
        (404, {"error_msg": "services[1] not found"})
    assert control(cport, "/v1/healthcheck/routes/nope") == \
        (404, {"error_msg": "routes[nope] not found"})
    assert control(cport, "/v1/healthcheck/stream_routes/1")[0] == 400
    assert control(cport, "/v1/healthcheck/routes")[0] == 404
    assert control(cport, "/v1/nothing")[0] == 404

    # the node leaves the upstream: its state goes; back again it starts healthy
    gw.write({"routes": [{**r1, "upstream": {**up, "nodes": [node(a.port), node(free_port())]}},
                         r2]})
    wait(lambda: dead not in states(cport, "routes/r1"), 10, "node removed")
    gw.write({"routes": [r1, r2]})
    wait(lambda: states(cport, "routes/r1").get(dead) == "healthy", 10, "node back, healthy")
