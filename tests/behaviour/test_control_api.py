"""The Control API beyond health checks, through a real gateway (master + 2 workers):
config dumps (``/v1/routes``, ``/v1/route/{id}``, services, upstreams, plugin metadata),
``/v1/schema``, ``/v1/plugins``, ``/v1/server_info``, and the node status
(``/apisix/status``) with real connection counts summed over the workers."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from typing import Any

from tests.harness import Upstream, free_port, hang


def control(port: int, path: str, method: str = "GET") -> tuple[int, Any]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, json.loads(r.read())
    finally:
        c.close()


def wait_for(cond: Any, timeout: float = 10.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def start(gateway_factory: Any, doc: dict[str, Any]) -> tuple[Any, int]:
    cport = free_port()
    gw = gateway_factory(doc, workers=2,
                         node={"pylon": {"enable_control": True,
                                         "control": {"ip": "127.0.0.1", "port": cport}}})
    return gw, cport


def test_config_dumps_schema_and_plugins(gateway_factory: Any, upstream: Upstream) -> None:
    route = {"id": "1", "uri": "/a", "upstream_id": "u1",
             "plugins": {"cors": {"max_age": 10}}}
    doc = {
        "routes": [route, {"id": "2", "uri": "/c", "service_id": "s1"}],
        "services": [{"id": "s1", "upstream": {"nodes": {"example.com:80": 1},
                                               "type": "roundrobin"}}],
        "upstreams": [{"id": "u1", "nodes": {upstream.addr: 1}, "type": "roundrobin"}],
    }
    gw, cport = start(gateway_factory, doc)

    status, routes = control(cport, "/v1/routes")
    assert status == 200
    assert [r["key"] for r in routes] == ["/apisix/routes/1", "/apisix/routes/2"]
    r1 = routes[0]
    assert r1["value"]["uri"] == "/a" and r1["value"]["upstream_id"] == "u1"
    assert r1["value"]["plugins"] == {"cors": {"max_age": 10}}   # as stored
    assert isinstance(r1["modifiedIndex"], int) and isinstance(r1["createdIndex"], int)
    assert r1["clean_handlers"] == {} and r1["has_domain"] is False
    assert control(cport, "/v1/route/1") == (200, r1)
    assert control(cport, "/v1/route/9") == (404, {"error_msg": "route[9] not found"})

    status, svcs = control(cport, "/v1/services")
    assert status == 200 and [s["key"] for s in svcs] == ["/apisix/services/s1"]
    assert svcs[0]["has_domain"] is True                 # example.com
    assert control(cport, "/v1/service/s1") == (200, svcs[0])
    assert control(cport, "/v1/service/x") == (404, {"error_msg": "service[x] not found"})

    status, ups = control(cport, "/v1/upstreams")
    assert status == 200 and [u["key"] for u in ups] == ["/apisix/upstreams/u1"]
    assert ups[0]["value"]["nodes"] == {upstream.addr: 1}
    assert control(cport, "/v1/upstream/u1") == (200, ups[0])
    assert control(cport, "/v1/upstream/u2") == (404, {"error_msg": "upstream[u2] not found"})

    assert control(cport, "/v1/plugin_metadatas") == (200, [])
    assert control(cport, "/v1/plugin_metadata/cors") == \
        (404, {"error_msg": "plugin metadata[cors] not found"})

    status, schema = control(cport, "/v1/schema")
    assert status == 200
    assert {"route", "service", "upstream", "consumer", "ssl", "global_rule",
            "plugin_config", "plugins", "upstream_hash_vars_schema"} <= set(schema["main"])
    assert "uri" in schema["main"]["route"]["properties"]
    pr = schema["plugins"]["cors"]
    assert isinstance(pr["priority"], int) and pr["schema"]["type"] == "object"
    assert schema["stream_plugins"] == {}

    status, names = control(cport, "/v1/plugins")
    assert status == 200 and "cors" in names
    prios = [schema["plugins"][n]["priority"] for n in names]
    assert prios == sorted(prios, reverse=True)

    status, info = control(cport, "/v1/server_info")
    assert status == 200 and set(info) >= {"hostname", "id", "version", "boot_time",
                                           "etcd_version"}
    assert abs(info["boot_time"] - time.time()) < 120

    # a change is seen at once (the master's state is what the workers serve)
    doc["routes"].append({"id": "3", "uri": "/d", "upstream_id": "u1"})
    gw.write(doc)
    wait_for(lambda: control(cport, "/v1/route/3")[0] == 200, what="route 3")
    assert control(cport, "/v1/nothing")[0] == 404
    assert control(cport, "/v1/routes", "POST")[0] == 405
    assert control(cport, "/v1/healthcheck") == (200, [])     # untouched


def test_node_status_counts_real_connections(gateway_factory: Any,
                                             upstream_factory: Any) -> None:
    release = threading.Event()
    slow = upstream_factory("slow", behaviour=hang(release))
    fast = upstream_factory("fast")
    doc = {"routes": [
        {"id": "slow", "uri": "/slow", "upstream": {"nodes": {slow.addr: 1},
                                                    "type": "roundrobin"}},
        {"id": "fast", "uri": "/fast", "upstream": {"nodes": {fast.addr: 1},
                                                    "type": "roundrobin"}},
    ]}
    gw, cport = start(gateway_factory, doc)

    def node_status() -> dict[str, int]:
        status, body = control(cport, "/apisix/status")
        assert status == 200, body
        assert set(body) == {"status", "id"} and body["id"]
        assert set(body["status"]) == {"total", "waiting", "active", "accepted", "handled",
                                       "reading", "writing"}
        assert all(isinstance(v, str) for v in body["status"].values())   # as APISIX
        return {k: int(v) for k, v in body["status"].items()}

    base = node_status()
    assert base["active"] == base["reading"] + base["writing"] + base["waiting"]

    # 5 requests on their own connections
    for _ in range(5):
        assert gw.get("/fast")[0] == 200
    after = wait_for(lambda: (s := node_status())["active"] == base["active"] and s,
                     what="closed connections gone")
    assert after["accepted"] == base["accepted"] + 5 == after["handled"]
    assert after["total"] == base["total"] + 5

    # one idle keep-alive connection (after 2 requests), one head half read, one request
    # held by its upstream
    idle = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
    for _ in range(2):
        idle.request("GET", "/fast")
        r = idle.getresponse()
        r.read()
        assert r.status == 200
    partial = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    partial.sendall(b"GET /fast HTTP/1.1\r\nHost: x\r\n")
    held: list[int] = []

    def slow_request() -> None:
        held.append(gw.get("/slow", timeout=15)[0])

    t = threading.Thread(target=slow_request)
    t.start()
    try:
        now = wait_for(lambda: (s := node_status())["writing"] >= 1 and s["reading"] >= 1
                       and s["active"] == after["active"] + 3 and s,
                       what="one writing, one reading, one waiting")
        assert now["writing"] == 1 and now["reading"] == 1
        assert now["waiting"] == now["active"] - 2
        assert now["accepted"] == after["accepted"] + 3
        # requests: 2 on the idle connection, the held one, the partial head not yet
        assert now["total"] == after["total"] + 3
    finally:
        release.set()
        t.join(15)
        partial.close()
        idle.close()
    assert held == [200]
    end = wait_for(lambda: (s := node_status())["active"] == base["active"] and s,
                   what="every connection closed")
    assert end["writing"] == end["reading"] == 0
    assert end["total"] == after["total"] + 3
