"""DNS discovery end to end: a real gateway resolves through a real dnsmasq started by the
test (records from files it writes) and proxies to the nodes it found."""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter
from typing import Any

from .conftest import control_node
from .dnsmasq import Dnsmasq


def dns_gateway(factory: Any, dnsmasq: Dnsmasq, service_name: str, workers: int = 1,
                **node: Any) -> Any:
    doc = {"routes": [{"id": "r1", "uri": "/*", "upstream": {
        "discovery_type": "dns", "service_name": service_name, "type": "roundrobin"}}]}
    return factory(doc, workers=workers,
                   node={"discovery": {"dns": {"servers": [dnsmasq.server]}}, **node})


def bodies(gw: Any, n: int) -> Counter[str]:
    got: Counter[str] = Counter()
    for _ in range(n):
        status, _, body = gw.get("/")
        got[f"{status} {body.decode()}"] += 1
    return got


def wait_for(gw: Any, want: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    last: Counter[str] = Counter()
    while time.monotonic() < deadline:
        last = bodies(gw, 4)
        if set(last) == {want}:
            return
        time.sleep(0.2)
    raise AssertionError(f"still {dict(last)}, wanted only {want!r}\n{gw.log()[-3000:]}")


def test_a_record_with_the_service_names_port_is_proxied_to(gateway_factory, dnsmasq,
                                                            named) -> None:
    a = named("a")
    dnsmasq.set_hosts({"web.test": ["127.0.0.1"]})
    gw = dns_gateway(gateway_factory, dnsmasq, f"web.test:{a.port}")
    wait_for(gw, "200 a")


def test_aaaa_records_are_proxied_to_over_ipv6(gateway_factory, dnsmasq, named) -> None:
    a = named("a6", "::1")
    dnsmasq.set_hosts({"v6.test": ["::1"]})
    node = control_node()
    gw = dns_gateway(gateway_factory, dnsmasq, f"v6.test:{a.port}", **node)
    wait_for(gw, "200 a6")
    port = node["pylon"]["control"]["port"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/discovery/dns/dump",
                                timeout=5) as r:
        dump = json.loads(r.read())
    assert dump["services"] == {f"v6.test:{a.port}": [
        {"host": "::1", "port": a.port, "weight": 1}]}


def test_a_record_change_is_picked_up_after_its_ttl(gateway_factory, dnsmasq,
                                                     named) -> None:
    a = named("a", "127.0.0.1")
    b = named("b", "127.0.0.2", a.port)
    dnsmasq.set_hosts({"web.test": ["127.0.0.1"]})
    gw = dns_gateway(gateway_factory, dnsmasq, f"web.test:{a.port}", workers=2)
    wait_for(gw, "200 a")
    dnsmasq.set_hosts({"web.test": ["127.0.0.2"]})
    t0 = time.monotonic()
    wait_for(gw, "200 b", timeout=10)
    assert time.monotonic() - t0 < 8          # TTL 1 s (+ the 1 s floor, a request or two)
    assert b.hits > 0


def test_srv_records_give_ports_and_weights(gateway_factory, dnsmasq, named) -> None:
    a, b = named("a"), named("b")
    dnsmasq.set_hosts({"a.test": ["127.0.0.1"], "b.test": ["127.0.0.1"]})
    dnsmasq.set_srv([("_web._tcp.svc.test", "a.test", a.port, 1, 30),
                     ("_web._tcp.svc.test", "b.test", b.port, 1, 10)])
    gw = dns_gateway(gateway_factory, dnsmasq, "_web._tcp.svc.test")
    deadline = time.monotonic() + 15
    while gw.get("/")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    got = bodies(gw, 40)
    assert got == Counter({"200 a": 30, "200 b": 10}), got     # smooth weighted round robin


def test_srv_lower_priority_value_is_chosen_first(gateway_factory, dnsmasq, named) -> None:
    a, b = named("a"), named("b")
    dnsmasq.set_hosts({"a.test": ["127.0.0.1"], "b.test": ["127.0.0.1"]})
    dnsmasq.set_srv([("_web._tcp.svc.test", "a.test", a.port, 20, 10),
                     ("_web._tcp.svc.test", "b.test", b.port, 10, 10)])
    gw = dns_gateway(gateway_factory, dnsmasq, "_web._tcp.svc.test")
    wait_for(gw, "200 b")
    assert a.hits == 0


def test_a_name_without_records_answers_503_until_it_has_some(gateway_factory, dnsmasq,
                                                              named) -> None:
    a = named("a")
    gw = dns_gateway(gateway_factory, dnsmasq, f"later.test:{a.port}")
    status, _, body = gw.get("/")
    assert status == 503
    assert json.loads(body) == {"error_msg": "503 Service Temporarily Unavailable"}
    dnsmasq.set_hosts({"later.test": ["127.0.0.1"]})
    wait_for(gw, "200 a", timeout=15)       # NXDOMAIN is asked again after 5 s


def test_resolver_down_keeps_the_last_nodes_and_the_dump_says_so(gateway_factory, dnsmasq,
                                                                 named) -> None:
    a = named("a")
    dnsmasq.set_hosts({"web.test": ["127.0.0.1"]})
    node = control_node()
    port = node["pylon"]["control"]["port"]
    gw = dns_gateway(gateway_factory, dnsmasq, f"web.test:{a.port}", **node)
    wait_for(gw, "200 a")
    dnsmasq.stop()
    deadline = time.monotonic() + 20
    dump: dict[str, Any] = {}
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/discovery/dns/dump",
                                    timeout=5) as r:
            dump = json.loads(r.read())
        if dump["watches"][0]["state"] == "error":
            break
        time.sleep(0.3)
    w = dump["watches"][0]
    assert w["state"] == "error" and w["failures"] >= 1, dump
    assert w["nodes"] == [{"host": "127.0.0.1", "port": a.port, "weight": 1}]
    assert dump["config"]["servers"] == [dnsmasq.server]
    assert dump["services"] == {f"web.test:{a.port}": w["nodes"]}
    assert bodies(gw, 5) == Counter({"200 a": 5})          # still served
    assert "keeping the last 1 nodes" in gw.log()


def test_traffic_split_to_a_discovered_upstream_by_id(gateway_factory, dnsmasq,
                                                      named) -> None:
    """traffic-split's ``upstream_id`` naming a discovered upstream: its nodes (APISIX
    resolves such an upstream as any other)."""
    a, b = named("a"), named("b")
    dnsmasq.set_hosts({"web.test": ["127.0.0.1"]})
    doc = {"upstreams": [{"id": "u1", "discovery_type": "dns",
                          "service_name": f"web.test:{a.port}"}],
           "routes": [{"id": "r1", "uri": "/*",
                       "upstream": {"nodes": {f"127.0.0.1:{b.port}": 1}},
                       "plugins": {"traffic-split": {"rules": [{"weighted_upstreams": [
                           {"upstream_id": "u1", "weight": 1}, {"weight": 1}]}]}}}]}
    gw = gateway_factory(doc, node={"discovery": {"dns": {"servers": [dnsmasq.server]}}})
    deadline = time.monotonic() + 15
    got: Counter[str] = Counter()
    while time.monotonic() < deadline:
        got = bodies(gw, 4)
        if got == Counter({"200 a": 2, "200 b": 2}):
            break
        time.sleep(0.2)
    assert got == Counter({"200 a": 2, "200 b": 2}), (got, gw.log()[-2000:])
