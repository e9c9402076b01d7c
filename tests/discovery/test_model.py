"""Discovered upstreams in the model (APISIX's schema wording), the node config's
``discovery:`` section, and the worker's runtimes swapping discovered nodes in place."""

from __future__ import annotations

import asyncio

import pytest

from pylon.admin.checks import validate_object
from pylon.config.compiler import upstream_plan
from pylon.discovery import watch_key
from pylon.discovery.config import parse
from pylon.errors import ConfigError
from pylon.model.validate import convert
from pylon.upstream.runtime import Runtimes


def rejection(raw: dict[str, object]) -> str | None:
    _, rej = convert("upstreams", raw, "upstreams/1")
    return rej.message if rej is not None else None


def test_a_discovered_upstream_needs_a_known_type_and_no_nodes() -> None:
    assert rejection({"discovery_type": "dns", "service_name": "a.test:80"}) is None
    assert rejection({"discovery_type": "kubernetes", "service_name": "ns/web:http",
                      "discovery_args": {"namespace_id": "x"}}) is None
    assert rejection({"discovery_type": "zookeeper", "service_name": "x"}) == (
        "discovery zookeeper is uninitialized (known: dns, consul, consul_kv, nacos, "
        "eureka, kubernetes)")
    assert rejection({"service_name": "x"}) == (
        "value should match only one schema, but matches none")
    assert rejection({"discovery_type": "dns", "service_name": "x", "nodes": {"a:1": 1}}) == (
        "value should match only one schema, but matches both schemas 1 and 2")
    # APISIX: a discovery_type beside nodes, without service_name, is accepted and unused
    assert rejection({"discovery_type": "dns", "nodes": {"a:1": 1}}) is None
    assert rejection({}) == "nodes is required"
    # the Admin API's check, inline upstreams too
    assert validate_object("routes", {"uri": "/a", "upstream": {
        "discovery_type": "consul", "service_name": "web"}}) is None
    assert validate_object("routes", {"uri": "/a", "upstream": {"service_name": "web"}}) == (
        "upstream: value should match only one schema, but matches none")


def test_discovery_section_keys_defaults_and_errors() -> None:
    got = parse({"consul": {"servers": ["http://127.0.0.1:8500"]},
                 "kubernetes": {"client": {"token": "t"}}})
    consul = got["consul"]
    assert (consul.weight, consul.fetch_interval, consul.keepalive,        # type: ignore
            consul.timeout.wait, consul.sort_type) == (1, 3, True, 60, "origin")  # type: ignore
    k8s = got["kubernetes"]
    assert isinstance(k8s, list) and k8s[0].default_weight == 50
    assert k8s[0].service.host == "${KUBERNETES_SERVICE_HOST}"
    with pytest.raises(ConfigError, match="unknown discovery type") as e:
        parse({"zookeeper": {}})
    assert e.value.path == "discovery.zookeeper"
    with pytest.raises(ConfigError, match="only support consul http schema address"):
        parse({"consul": {"servers": ["https://127.0.0.1:8500"]}})
    with pytest.raises(ConfigError) as e:
        parse({"dns": {"servers": []}})
    assert e.value.path.startswith("discovery.dns")
    with pytest.raises(ConfigError, match="unique id"):
        parse({"kubernetes": [{"client": {"token": "a"}}, {"client": {"token": "b"}}]})


def _plan(key: str, service: str) -> object:
    up, _ = convert("upstreams", {"discovery_type": "dns", "service_name": service,
                                  "checks": {"active": {"http_path": "/"}}}, key)
    assert up is not None
    return upstream_plan(key, up)


def test_runtimes_swap_discovered_nodes_in_place_keeping_pools_and_health() -> None:
    loop = asyncio.new_event_loop()
    try:
        rts = Runtimes(loop)
        plan = _plan("upstreams/1", "web.test")
        dkey = watch_key("dns", "web.test", None)
        assert plan.discovery == dkey                                        # type: ignore
        by_key = rts.reconcile({"upstreams/1": plan})                        # type: ignore
        assert "upstreams/1" not in by_key              # no nodes yet: no runtime (503)
        rts.set_discovered(dkey, [["10.0.0.1", None, 1, 0], ["10.0.0.2", 8080, 2, 0]])
        rt = by_key["upstreams/1"]                      # the snapshot's dict, in place
        assert [(n.host, n.port, n.weight) for n in rt.plan.nodes] == [
            ("10.0.0.1", 80, 1), ("10.0.0.2", 8080, 2)]
        kept_pool = rt.pools["10.0.0.2:8080"]
        rts.set_health("upstreams/1", "10.0.0.2:8080", "unhealthy")
        rts.set_discovered(dkey, [["10.0.0.2", 8080, 2, 0], ["10.0.0.3", None, 1, 0]])
        rt2 = by_key["upstreams/1"]
        assert rt2 is not rt and rt2.pools["10.0.0.2:8080"] is kept_pool
        assert rts.health["upstreams/1"].down == {"10.0.0.2:8080"}
        assert rt2.balancer.pick(None, None).addr == "10.0.0.3:80"    # the down one skipped
        rts.set_discovered(dkey, [])
        assert "upstreams/1" not in by_key
        rts.update({"upstreams/1": None})               # gone: forgotten everywhere
        assert rts._disc_plans == {} and rts._disc_users == {}
    finally:
        loop.close()


def test_ewma_latency_of_nodes_that_stay_survives_a_node_list_change() -> None:
    loop = asyncio.new_event_loop()
    try:
        rts = Runtimes(loop)
        up, _ = convert("upstreams", {"discovery_type": "consul", "service_name": "web",
                                      "type": "ewma"}, "upstreams/1")
        assert up is not None
        plan = upstream_plan("upstreams/1", up)
        by_key = rts.reconcile({"upstreams/1": plan})
        assert plan.discovery is not None
        rts.set_discovered(plan.discovery, [["10.0.0.1", 80, 1, 0], ["10.0.0.2", 80, 1, 0]])
        old = by_key["upstreams/1"].balancer
        stay = old.nodes[0]
        old.observe(stay, 0.25)
        rts.set_discovered(plan.discovery, [["10.0.0.1", 80, 1, 0], ["10.0.0.3", 80, 1, 0]])
        new = by_key["upstreams/1"].balancer
        assert new is not old
        kept = new.score(stay)
        assert kept is not None and kept > 0.2         # the average came along
        assert new.score(new.nodes[1]) == 0            # a new node starts unknown
    finally:
        loop.close()


def test_a_whole_config_resync_keeps_the_watches_and_publishes_nothing() -> None:
    """``replace`` with the same discovered upstreams (a reload, a re-read file) and two
    upstreams swapping services: no watch stops, no worker is told to forget nodes."""
    from pylon.discovery.manager import DiscoveryManager

    async def run() -> list[tuple[str, list[object]]]:
        published: list[tuple[str, list[object]]] = []
        mgr = DiscoveryManager(parse({"dns": {"servers": ["127.0.0.1:1"]}}),
                               lambda k, n: published.append((k, n)))
        p1, p2 = _plan("upstreams/1", "a.test"), _plan("upstreams/2", "b.test")
        mgr.replace({"upstreams/1": p1, "upstreams/2": p2})       # type: ignore
        watches = dict(mgr.watches)
        for w in watches.values():                  # as if each had answered
            w.stop()
            w.nodes = [("127.0.0.1", 80, 1, 0)]
        mgr.replace({"upstreams/1": _plan("upstreams/1", "a.test"),      # type: ignore
                     "upstreams/2": _plan("upstreams/2", "b.test")})
        mgr.update({"upstreams/1": _plan("upstreams/1", "b.test"),       # type: ignore
                    "upstreams/2": _plan("upstreams/2", "a.test")})
        assert mgr.watches == watches               # the same Watch objects
        mgr.update({"upstreams/1": None, "upstreams/2": None})
        assert mgr.watches == {}
        mgr.close()
        return published

    published = asyncio.run(run())
    # only the last update (both gone) tells the workers to forget the nodes
    assert sorted(n for _, n in published) == [[], []]
