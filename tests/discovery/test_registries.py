"""Consul, consul_kv, Nacos, Eureka and Kubernetes discovery against faithful fakes of their
HTTP APIs (``fakes.py``; no server binary of them is available here): end to end through a
real gateway where the behaviour is the gateway's (proxying to discovered nodes, nodes
changing live, outages, health checks), the registry's own rules (auth, filters, shapes)
through ``follow`` on real sockets."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from pylon.discovery.base import DNode, Registry
from pylon.discovery.config import parse
from pylon.discovery.manager import make_registry
from tests.server_process import free_port

from .conftest import control_node
from .fakes import (
    FakeConsul,
    FakeEureka,
    FakeKubernetes,
    FakeNacos,
    endpoint_slice,
    endpoints,
)
from .test_dns import bodies, wait_for


@pytest.fixture
def fakes() -> Iterator[list[Any]]:
    made: list[Any] = []
    yield made
    for f in made:
        f.stop()


def routed(discovery_type: str, service_name: str, **up: Any) -> dict[str, Any]:
    return {"routes": [{"id": "r1", "uri": "/*", "upstream": {
        "discovery_type": discovery_type, "service_name": service_name,
        "type": "roundrobin", **up}}]}


def control_get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return json.loads(r.read())


def first(reg: Registry, service_name: str, args: dict[str, Any] | None = None,
          count: int = 1) -> list[list[DNode]]:
    """The first ``count`` node lists ``follow`` yields (bounded: 10 s)."""
    async def run() -> list[list[DNode]]:
        out: list[list[DNode]] = []
        gen: AsyncIterator[list[DNode]] = reg.follow(service_name, args or {})
        async with asyncio.timeout(10):
            async for nodes in gen:
                out.append(nodes)
                if len(out) == count:
                    break
        await gen.aclose()  # type: ignore[attr-defined]
        return out
    return asyncio.run(run())


def registry(kind: str, conf: dict[str, Any]) -> Registry:
    return make_registry(kind, parse({kind: conf})[kind])


# ------------------------------------------------------------------ consul
def test_consul_nodes_follow_the_catalog_live_and_survive_an_outage(gateway_factory, named,
                                                                    fakes) -> None:
    a, b = named("a"), named("b")
    consul = FakeConsul(token="s3cret")
    fakes.append(consul)
    consul.set_service("web", [{"address": "127.0.0.1", "port": a.port}])
    gw = gateway_factory(routed("consul", "web"), workers=2, node={"discovery": {"consul": {
        "servers": [consul.url], "token": "s3cret", "timeout": {"wait": 5}}}})
    wait_for(gw, "200 a")
    consul.set_service("web", [{"address": "127.0.0.1", "port": b.port}])
    t0 = time.monotonic()
    wait_for(gw, "200 b", timeout=5)
    assert time.monotonic() - t0 < 2          # a blocking query answers at the change
    queries = [r for r in consul.requests if r[1].startswith("/v1/health/service/web")]
    assert all(h.get("X-Consul-Token") == "s3cret" for _, _, h in queries)
    # two workers, one watch in the master: one query per change, not one per worker
    assert len(queries) <= 4, queries
    consul.stop()                             # registry down: the last nodes keep serving
    time.sleep(1.5)
    assert bodies(gw, 4) == Counter({"200 b": 4})
    assert "keeping the last 1 nodes" in gw.log()
    consul.set_service("web", [{"address": "127.0.0.1", "port": a.port}])
    consul.start()                            # back: the back-off retry finds the change
    wait_for(gw, "200 a", timeout=15)


def test_consul_passing_instances_and_tags(fakes) -> None:
    consul = FakeConsul()
    fakes.append(consul)
    consul.set_service("web", [
        {"address": "10.0.0.1", "port": 80, "tags": ["v1"]},
        {"address": "", "node_address": "10.0.0.9", "port": 81, "tags": ["v2"]},
        {"address": "10.0.0.3", "port": 82, "tags": ["v1"], "passing": False},
        {"address": "10.0.0.1", "port": 80, "tags": ["v3"]},          # the same address
        {"address": "10.0.0.4", "port": 0, "tags": ["v3"]}])          # the default port
    reg = registry("consul", {"servers": [consul.url], "weight": 3})
    assert first(reg, "web") == [[("10.0.0.1", 80, 3, 0), ("10.0.0.9", 81, 3, 0),
                                  ("10.0.0.4", None, 3, 0)]]
    assert first(reg, "web", {"tags": ["v1"]}) == [[("10.0.0.1", 80, 3, 0)]]
    assert first(reg, "nope") == [[]]
    with_default = registry("consul", {"servers": [consul.url],
                                       "default_service": {"host": "10.9.9.9", "port": 8}})
    assert first(with_default, "nope") == [[("10.9.9.9", 8, 1, 0)]]
    assert reg.check("consul", {}) == "service consul is in skip_services"


def test_consul_kv_nodes_are_the_keys_under_the_prefix(fakes) -> None:
    consul = FakeConsul()
    fakes.append(consul)
    consul.put_kv("upstreams/webpages/10.0.0.1:8000", b'{"weight": 5, "max_fails": 2}')
    consul.put_kv("upstreams/webpages/10.0.0.2:8001", b"")
    consul.put_kv("upstreams/other/10.0.0.3:9", b"{}")
    reg = registry("consul_kv", {"servers": [consul.url]})
    name = f"{consul.url}/v1/kv/upstreams/webpages/"
    assert reg.check(name, {}) is None
    assert first(reg, name) == [[("10.0.0.1", 8000, 5, 0), ("10.0.0.2", 8001, 1, 0)]]
    assert first(reg, f"{consul.url}/v1/kv/upstreams/none/") == [[]]
    assert reg.check("webpages", {}) is not None


def test_consul_health_checks_apply_to_discovered_nodes(gateway_factory, named,
                                                        fakes) -> None:
    a = named("a")
    dead = free_port()
    consul = FakeConsul()
    fakes.append(consul)
    consul.set_service("web", [{"address": "127.0.0.1", "port": a.port},
                               {"address": "127.0.0.1", "port": dead}])
    node = control_node()
    cport = node["pylon"]["control"]["port"]
    checks = {"active": {"http_path": "/", "timeout": 0.5, "healthy": {"interval": 1},
                         "unhealthy": {"interval": 1, "tcp_failures": 1}}}
    gw = gateway_factory(routed("consul", "web", checks=checks, retries=0), node={
        **node, "discovery": {"consul": {"servers": [consul.url]}}})
    deadline = time.monotonic() + 15
    states: dict[int, str] = {}
    while time.monotonic() < deadline:
        got = control_get(cport, "/v1/healthcheck/routes/r1")
        states = {n["port"]: n["status"] for n in got["nodes"]}
        if states.get(dead) == "unhealthy":
            break
        time.sleep(0.3)
    assert states == {a.port: "healthy", dead: "unhealthy"}, states
    assert bodies(gw, 6) == Counter({"200 a": 6})


def test_consul_dump_file_seeds_the_nodes_while_the_registry_is_down(gateway_factory, named,
                                                                     tmp_path, fakes) -> None:
    a = named("a")
    consul = FakeConsul()
    fakes.append(consul)
    consul.set_service("web", [{"address": "127.0.0.1", "port": a.port}])
    dump = str(tmp_path / "consul.dump")
    node = control_node()
    cport = node["pylon"]["control"]["port"]
    conf = {"discovery": {"consul": {"servers": [consul.url], "dump": {"path": dump}}}}
    gw = gateway_factory(routed("consul", "web"), node={**node, **conf})
    wait_for(gw, "200 a")
    shown = control_get(cport, "/v1/discovery/consul/show_dump_file")
    assert shown["services"] == {"web": [{"host": "127.0.0.1", "port": a.port, "weight": 1}]}
    d = control_get(cport, "/v1/discovery/consul/dump")
    assert d["services"] == shown["services"] and d["config"]["servers"] == [consul.url]
    gw.stop()
    consul.stop()
    gw2 = gateway_factory(routed("consul", "web"), node=conf)   # boots with consul down
    wait_for(gw2, "200 a", timeout=10)


# ------------------------------------------------------------------ nacos
def test_nacos_logs_in_and_reads_namespace_and_group(fakes) -> None:
    nacos = FakeNacos(user="nacos", password="pw")
    fakes.append(nacos)
    nacos.instances[("public", "DEFAULT_GROUP", "web")] = [
        {"ip": "10.0.0.1", "port": 80, "weight": 1.0}]
    nacos.instances[("dev", "g1", "web")] = [{"ip": "10.0.0.2", "port": 81, "weight": 2.0},
                                             {"ip": "10.0.0.3", "port": 82}]
    url = f"http://nacos:pw@127.0.0.1:{nacos.port}"
    reg = registry("nacos", {"host": [url]})
    assert first(reg, "web") == [[("10.0.0.1", 80, 1, 0)]]
    assert first(reg, "web", {"namespace_id": "dev", "group_name": "g1"}) == [
        [("10.0.0.2", 81, 2, 0), ("10.0.0.3", 82, 1, 0)]]
    logins = [r for r in nacos.requests if r[1].startswith("/nacos/v1/auth/login")]
    assert len(logins) == 1                   # the token is kept for its TTL
    bad = registry("nacos", {"host": [f"http://nacos:wrong@127.0.0.1:{nacos.port}"]})
    with pytest.raises(Exception, match="nacos login.*403"):
        first(bad, "web")


def test_nacos_nodes_are_proxied_to(gateway_factory, named, fakes) -> None:
    a = named("a")
    nacos = FakeNacos()
    fakes.append(nacos)
    nacos.instances[("public", "DEFAULT_GROUP", "web")] = [
        {"ip": "127.0.0.1", "port": a.port}]
    gw = gateway_factory(routed("nacos", "web"), node={"discovery": {"nacos": {
        "host": [nacos.url], "fetch_interval": 1}}})
    wait_for(gw, "200 a")


# ------------------------------------------------------------------ eureka
def test_eureka_up_instances_with_their_enabled_port(fakes) -> None:
    eureka = FakeEureka(user="u", password="p")
    fakes.append(eureka)
    eureka.apps["WEB"] = [{"ip": "10.0.0.1", "port": 8080, "weight": 7},
                          {"ip": "10.0.0.2", "secure_port": 8443},
                          {"ip": "10.0.0.3", "port": 8080, "status": "DOWN"}]
    reg = registry("eureka", {"host": [f"http://u:p@127.0.0.1:{eureka.port}"]})
    assert first(reg, "web") == [[("10.0.0.1", 8080, 7, 0), ("10.0.0.2", 8443, 100, 0)]]
    assert first(reg, "NOPE") == [[]]



def test_eureka_nodes_are_proxied_to_and_follow_the_registry(gateway_factory, named,
                                                             fakes) -> None:
    a, b = named("a"), named("b")
    eureka = FakeEureka()
    fakes.append(eureka)
    eureka.apps["WEB"] = [{"ip": "127.0.0.1", "port": a.port}]
    gw = gateway_factory(routed("eureka", "web"), node={"discovery": {"eureka": {
        "host": [f"http://127.0.0.1:{eureka.port}"], "fetch_interval": 1}}})
    wait_for(gw, "200 a")
    eureka.apps["WEB"] = [{"ip": "127.0.0.1", "port": b.port},
                          {"ip": "127.0.0.1", "port": a.port, "status": "DOWN"}]
    wait_for(gw, "200 b", timeout=10)       # the next poll (fetch_interval 1 s)


# ------------------------------------------------------------------ kubernetes
def k8s_conf(fake: FakeKubernetes, **more: Any) -> dict[str, Any]:
    return {"service": {"schema": "http", "host": "127.0.0.1", "port": str(fake.port)},
            "client": {"token": fake.token}, **more}


def test_kubernetes_endpoints_list_then_watch_live(gateway_factory, named, fakes) -> None:
    a, b = named("a"), named("b")
    k8s = FakeKubernetes()
    fakes.append(k8s)
    k8s.put("endpoints", "default", endpoints("web", ["127.0.0.1"], {"http": a.port,
                                                                    "metrics": 9}))
    gw = gateway_factory(routed("kubernetes", "default/web:http"), workers=2,
                         node={"discovery": {"kubernetes": k8s_conf(k8s)}})
    wait_for(gw, "200 a")
    k8s.put("endpoints", "default", endpoints("web", ["127.0.0.1"], {"http": b.port}))
    t0 = time.monotonic()
    wait_for(gw, "200 b", timeout=5)
    assert time.monotonic() - t0 < 2          # the watch stream, not a poll
    k8s.compact()                             # 410 Gone: listed again
    k8s.put("endpoints", "default", endpoints("web", ["127.0.0.1"], {"http": a.port}))
    wait_for(gw, "200 a", timeout=10)
    k8s.delete("endpoints", "default", "web")
    deadline = time.monotonic() + 10
    while gw.get("/")[0] != 503 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gw.get("/")[0] == 503              # no endpoints: no nodes


def test_kubernetes_endpoint_slices_ready_addresses_and_several_clusters(fakes) -> None:
    k1, k2 = FakeKubernetes(token="one"), FakeKubernetes(token="two")
    fakes.extend([k1, k2])
    k1.put("endpointslices", "ns1", endpoint_slice("web-abc", "web", ["10.0.0.1"],
                                                   ["10.0.0.9"], {"http": 80}))
    k1.put("endpointslices", "ns1", endpoint_slice("web-def", "web", ["10.0.0.2"], [],
                                                   {"http": 80}))
    k2.put("endpoints", "ns2", endpoints("api", ["10.1.0.1"], {"": 8080}))
    reg = registry("kubernetes", [
        {"id": "one", **k8s_conf(k1, watch_endpoint_slices=True, default_weight=5)},
        {"id": "two", **k8s_conf(k2)}])
    assert first(reg, "one/ns1/web:http") == [[("10.0.0.1", 80, 5, 0), ("10.0.0.2", 80, 5, 0)]]
    assert first(reg, "two/ns2/api:8080") == [[("10.1.0.1", 8080, 50, 0)]]
    assert reg.check("ns1/web:http", {}) is not None      # several clusters: id required
    assert reg.check("three/ns1/web:http", {}) is not None


def test_kubernetes_wrong_token_is_a_failure(fakes) -> None:
    k8s = FakeKubernetes(token="right")
    fakes.append(k8s)
    reg = registry("kubernetes", {**k8s_conf(k8s), "client": {"token": "wrong"}})
    with pytest.raises(Exception, match="401"):
        first(reg, "default/web:http")


def test_admin_api_discovered_upstreams_start_change_and_stop_watches(gateway_factory, named,
                                                                      fakes) -> None:
    from tests.admin.test_admin_gateway import admin, admin_node
    a, b = named("a"), named("b")
    consul = FakeConsul()
    fakes.append(consul)
    consul.set_service("web", [{"address": "127.0.0.1", "port": a.port}])
    consul.set_service("api", [{"address": "127.0.0.1", "port": b.port}])
    aport, key = free_port(), "k" * 32
    node = admin_node(aport, admin_key=[{"name": "ops", "key": key}])
    node["pylon"].update(control_node()["pylon"])
    cport = node["pylon"]["control"]["port"]
    gw = gateway_factory({}, workers=2, node={
        **node, "discovery": {"consul": {"servers": [consul.url]}}})

    def put(path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return admin(aport, "PUT", f"/apisix/admin/{path}", body, key=key)

    status, body = put("upstreams/u1", {"discovery_type": "zookeeper", "service_name": "x"})
    assert status == 400 and "discovery zookeeper is uninitialized" in body["error_msg"]
    assert put("upstreams/u1", {"discovery_type": "consul", "service_name": "web"})[0] == 201
    assert put("routes/r1", {"uri": "/*", "upstream_id": "u1"})[0] == 201
    wait_for(gw, "200 a")
    assert put("upstreams/u1", {"discovery_type": "consul", "service_name": "api"})[0] == 200
    wait_for(gw, "200 b", timeout=5)
    watched = [w["service_name"] for w in
               control_get(cport, "/v1/discovery/consul/dump")["watches"]]
    assert watched == ["api"]                 # the "web" watch stopped with its last user
    assert admin(aport, "DELETE", "/apisix/admin/routes/r1", key=key)[0] == 200
    assert admin(aport, "DELETE", "/apisix/admin/upstreams/u1", key=key)[0] == 200
    deadline = time.monotonic() + 5
    while control_get(cport, "/v1/discovery/consul/dump")["watches"] and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    assert control_get(cport, "/v1/discovery/consul/dump")["watches"] == []


def test_reload_with_a_new_discovery_section_serves_without_a_503(gateway_factory, named,
                                                                   fakes) -> None:
    """SIGHUP after the node config's ``discovery:`` changed (Consul moved): the watches
    start again on the new servers, and the workers that replace the old ones start with
    their nodes (no request answered 503 in between)."""
    import signal
    import threading

    import yaml
    a, b = named("a"), named("b")
    old, new = FakeConsul(), FakeConsul()
    fakes += [old, new]
    old.set_service("web", [{"address": "127.0.0.1", "port": a.port}])
    new.set_service("web", [{"address": "127.0.0.1", "port": b.port}])
    gw = gateway_factory(routed("consul", "web"), workers=2, node={"discovery": {"consul": {
        "servers": [old.url], "timeout": {"wait": 5}}}})
    wait_for(gw, "200 a")
    seen: Counter[int] = Counter()
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            seen[gw.get("/")[0]] += 1

    t = threading.Thread(target=load, daemon=True)
    t.start()
    try:
        gw.node_cfg["discovery"] = {"consul": {"servers": [new.url], "timeout": {"wait": 5}}}
        with open(gw.conf_path, "w") as f:
            yaml.safe_dump(gw.node_cfg, f)
        gw.signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while "reload done" not in gw.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "reload done" in gw.log(), gw.log()[-3000:]
        wait_for(gw, "200 b", timeout=10)
    finally:
        stop.set()
        t.join(10)
    assert seen[200] > 0 and set(seen) == {200}, (seen, gw.log()[-4000:].splitlines())
    assert "the discovery section changed" in gw.log()
