"""The prometheus plugin and the master's export server, on real gateways: every scrape is
real HTTP, parsed with ``prometheus_client``'s parser, and the counts are exact."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from pylon.observe.metrics import MetricStore
from pylon.pdk.testing import Kit, free_port
from tests.etcd_server import EtcdServer
from tests.harness import closing_factory
from tests.observe.test_metric_store import samples

URI = "/apisix/prometheus/metrics"
DEFAULT_BOUNDS = ["1", "2", "5", "10", "20", "50", "100", "200", "500", "1000", "2000",
                  "5000", "10000", "30000", "60000", "+Inf"]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Prom:
    """A Kit with the export server on a free port, and its scrapes."""

    def __init__(self, doc: dict[str, Any], attr: dict[str, Any] | None = None,
                 workers: int = 2, node: dict[str, Any] | None = None) -> None:
        self.port = free_port()
        self.uri = (attr or {}).get("export_uri", URI)
        cfg: dict[str, Any] = {"export_addr": {"ip": "127.0.0.1", "port": self.port},
                               **(attr or {})}
        self.kit = Kit(doc, workers=workers, node={"plugin_attr": {"prometheus": cfg},
                                                   **(node or {})})

    def raw(self, path: str | None = None, method: str = "GET") -> tuple[int, str, str]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path or self.uri}",
                                     method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.headers.get("Content-Type", ""), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Content-Type", ""), e.read().decode()

    def text(self) -> str:
        status, ctype, text = self.raw()
        assert status == 200, text
        assert ctype.startswith("text/plain; version=0.0.4")
        return text

    def scrape(self) -> Samples:
        return samples(self.text())             # parses, no duplicate series

    def wait(self, cond: Callable[[Samples], bool], timeout: float = 15.0) -> Samples:
        deadline = time.monotonic() + timeout
        while True:
            s = self.scrape()
            if cond(s):
                return s
            if time.monotonic() > deadline:
                raise AssertionError(f"metrics never got there:\n{self.text()}\n"
                                     f"{self.kit.log()[-3000:]}")
            time.sleep(0.1)

    def close(self) -> None:
        self.kit.close()


@pytest.fixture
def prom() -> Iterator[Callable[..., Prom]]:
    yield from closing_factory(Prom)


def val(s: Samples, metric: str, /, **labels: str) -> float | None:
    return s.get((metric, frozenset(labels.items())))


def series(s: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {k[1]: v for k, v in s.items() if k[0] == name}


def status_labels(code: int, route: str, uri: str, *, host: str = "", service: str = "",
                  consumer: str = "", node: str = "127.0.0.1") -> frozenset[tuple[str, str]]:
    return frozenset({"code": str(code), "route": route, "matched_uri": uri,
                      "matched_host": host, "service": service, "consumer": consumer,
                      "node": node}.items())


def histogram(s: Samples, name: str, **labels: str) -> tuple[list[tuple[str, float]], float,
                                                             float]:
    """(le, cumulative count) in exposition order, sum, count of one histogram series."""
    buckets = [(dict(k[1])["le"], v) for k, v in s.items()
               if k[0] == name + "_bucket"
               and {a: b for a, b in k[1] if a != "le"} == labels]
    total = val(s, name + "_sum", **labels)
    count = val(s, name + "_count", **labels)
    assert buckets and total is not None and count is not None, (name, labels)
    return buckets, total, count


def assert_cumulative(buckets: list[tuple[str, float]], count: float) -> None:
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), buckets          # monotonic
    assert buckets[-1] == ("+Inf", count)


def worker_pids(kit: Kit) -> set[int]:
    pid = kit.proc.pid
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return {int(x) for x in f.read().split()}


def per_worker(kit: Kit, key: str) -> list[float]:
    """The non-zero values of series ``key`` in the node's store, one per writer slot (a
    worker, or a worker before it was replaced)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    store = MetricStore(os.path.join(base, f"pylon-{kit.proc.pid}"))
    try:
        pos = [b for _, k, b, _ in store.entries(0) if k == key]
        assert len(pos) == 1, key
        out = []
        for slot in store.used_slots():
            mv = store.slot_values(slot)
            out.append(mv[pos[0]])
            mv.release()
        return [v for v in out if v]
    finally:
        store.close()


def send(kit: Kit, path: str, n: int, *, method: str = "GET", body: bytes | None = None,
         headers: dict[str, str] | None = None, status: int = 200) -> None:
    """``n`` requests, each on its own connection (the workers share them)."""
    for _ in range(n):
        r = kit.request(method, path, body=body, headers=headers)
        assert r.status == status, r


# ----------------------------------------------------------------------------- request series
def test_status_counts_are_exact_across_two_workers_with_apisix_labels(prom) -> None:
    doc = {
        "consumers": [{"username": "jack", "plugins": {"key-auth": {"key": "k-jack"}}}],
        "services": [{"id": "s1", "name": "svc-one"}],
        "routes": [
            {"id": "r1", "uri": "/a", "plugins": {"prometheus": {}}},
            {"id": "r2", "uri": "/auth", "plugins": {"key-auth": {}, "prometheus": {}}},
            {"id": "r3", "name": "route-three", "uri": "/named", "service_id": "s1",
             "plugins": {"prometheus": {"prefer_name": True}}},
            {"id": "r4", "name": "unused-name", "uri": "/svc/*", "service_id": "s1",
             "plugins": {"prometheus": {}}},
            {"id": "r5", "uri": "/plain"},
            {"id": "r6", "uri": "/h", "hosts": ["*.example.com"],
             "plugins": {"prometheus": {}}},
        ]}
    p = prom(doc)
    kit = p.kit
    send(kit, "/a", 30)
    body = b"x" * 5000
    send(kit, "/a", 2, method="POST", body=body)
    send(kit, "/svc/x", 7)
    send(kit, "/named", 3)
    send(kit, "/auth", 4, status=401)
    send(kit, "/auth", 5, headers={"apikey": "k-jack"})
    send(kit, "/plain", 2)
    send(kit, "/h", 3, headers={"Host": "api.example.com"})
    s = p.scrape()
    assert series(s, "apisix_http_status") == {
        status_labels(200, "r1", "/a"): 32,
        status_labels(200, "r4", "/svc/*", service="s1"): 7,
        status_labels(200, "route-three", "/named", service="svc-one"): 3,
        status_labels(401, "r2", "/auth", node=""): 4,
        status_labels(200, "r2", "/auth", consumer="jack"): 5,
        status_labels(200, "r6", "/h", host="*.example.com"): 3,
    }
    # the latency histograms count the same requests, under APISIX's labels
    for route, service, consumer, node, n in [("r1", "", "", "127.0.0.1", 32),
                                             ("r4", "s1", "", "127.0.0.1", 7),
                                             ("route-three", "svc-one", "", "127.0.0.1", 3),
                                             ("r2", "", "", "", 4),
                                             ("r2", "", "jack", "127.0.0.1", 5)]:
        lab = {"route": route, "service": service, "consumer": consumer, "node": node}
        buckets, _, count = histogram(s, "apisix_http_latency", type="request", **lab)
        assert [b for b, _ in buckets] == DEFAULT_BOUNDS
        assert_cumulative(buckets, count)
        assert count == n
    assert not any(dict(k[1]).get("route") == "r5" for k in s)   # no plugin: not counted
    shares = per_worker(kit, 'apisix_http_status{code="200",route="r1",matched_uri="/a",'
                             'matched_host="",service="",consumer="",node="127.0.0.1"}')
    assert len(shares) == 2 and sum(shares) == 32       # both workers served, summed
    # bandwidth: at least the bodies sent and echoed back
    lab = {"route": "r1", "service": "", "consumer": "", "node": "127.0.0.1"}
    ingress = val(s, "apisix_bandwidth", type="ingress", **lab)
    egress = val(s, "apisix_bandwidth", type="egress", **lab)
    assert ingress is not None and ingress >= 2 * len(body)
    assert egress is not None and egress >= 2 * len(body) + 32 * 100
    # keep-alive: each request's bytes once (not the connection's running total)
    send(kit, "/h", 1, headers={"Host": "api.example.com"})
    lab6 = {"route": "r6", "service": "", "consumer": "", "node": "127.0.0.1"}
    one = val(p.scrape(), "apisix_bandwidth", type="egress", **lab6) / 4
    c = http.client.HTTPConnection("127.0.0.1", kit.port, timeout=10)
    for _ in range(10):
        c.request("GET", "/h", headers={"Host": "api.example.com"})
        r = c.getresponse()
        r.read()
        assert r.status == 200
    c.close()
    total = val(p.scrape(), "apisix_bandwidth", type="egress", **lab6)
    assert 14 * one - 100 <= total <= 14 * one + 100
    send(kit, "/a", 1, method="POST", body=body)
    s2 = p.scrape()
    assert val(s2, "apisix_bandwidth", type="ingress", **lab) >= ingress + len(body)
    assert val(s2, "apisix_bandwidth", type="egress", **lab) >= egress + len(body)
    assert series(s2, "apisix_http_status")[status_labels(200, "r1", "/a")] == 33


def test_latency_histogram_buckets_types_and_configured_bounds(prom) -> None:
    p = prom({"routes": [{"id": "lat", "uri": "/lat", "plugins": {"prometheus": {}}},
                         {"id": "deny", "uri": "/deny",
                          "plugins": {"key-auth": {}, "prometheus": {}}}]},
             attr={"default_buckets": [100, 200, 5000]})
    send(p.kit, "/lat", 3, headers={"X-Echo-Delay": "0.12"})
    send(p.kit, "/lat", 4)
    send(p.kit, "/deny", 2, status=401)
    s = p.scrape()
    lab = {"route": "lat", "service": "", "consumer": "", "node": "127.0.0.1"}
    for typ in ("request", "upstream", "apisix"):
        buckets, total, count = histogram(s, "apisix_http_latency", type=typ, **lab)
        assert [b for b, _ in buckets] == ["100", "200", "5000", "+Inf"]
        assert_cumulative(buckets, count)
        assert count == 7
        if typ != "apisix":                # the 120 ms answers: above 100, within 200
            assert dict(buckets)["100"] == 4
            assert dict(buckets)["200"] == 7
            assert total >= 3 * 120
        else:
            assert total < 3 * 120
    deny = {"route": "deny", "service": "", "consumer": "", "node": ""}
    for typ in ("request", "apisix"):
        buckets, _, count = histogram(s, "apisix_http_latency", type=typ, **deny)
        assert_cumulative(buckets, count)
        assert count == 2
    assert val(s, "apisix_http_latency_count", type="upstream", **deny) is None


def test_prefix_uri_and_extra_labels_are_configurable(prom) -> None:
    p = prom({"routes": [{"id": "1", "uri": "/x", "plugins": {"prometheus": {}}}]},
             attr={"metric_prefix": "edge_", "export_uri": "/metrics",
                   "metrics": {"http_status": {"extra_labels": [
                       {"upstream_addr": "$upstream_addr"}]},
                       "bandwidth": {"extra_labels": [
                           {"method": "$request_method"},
                           {"bad-name": "$uri", "route": "$uri"}]}}})  # ignored, logged
    send(p.kit, "/x", 3)
    send(p.kit, "/x", 2, method="POST", body=b"hello")
    s = p.scrape()
    up = p.kit.upstream.addr
    assert series(s, "edge_http_status") == {
        status_labels(200, "1", "/x") | {("upstream_addr", up)}: 5}
    common = {"route": "1", "service": "", "consumer": "", "node": "127.0.0.1"}
    assert val(s, "edge_bandwidth", type="ingress", method="GET", **common) is not None
    assert val(s, "edge_bandwidth", type="ingress", method="POST", **common) >= 10
    _, _, count = histogram(s, "edge_http_latency", type="request", **common)
    assert count == 5                              # no extra labels configured there
    assert val(s, "edge_node_info", hostname=socket.gethostname(),
               version=_version()) == 1
    assert not [k for k in s if k[0].startswith("apisix_")]
    assert p.raw(URI)[0] == 404
    assert p.raw("/metrics/x")[0] == 404
    assert p.raw("/metrics", method="POST")[0] == 405
    assert "'bad-name' is not a valid label name" in p.kit.log()


def _version() -> str:
    from pylon import __version__
    return __version__


def test_export_server_is_off_with_enable_export_server_false(prom) -> None:
    p = prom({"routes": [{"uri": "/x", "plugins": {"prometheus": {}}}]},
             attr={"enable_export_server": False}, workers=1)
    assert p.kit.get("/x").status == 200
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", p.port), timeout=5).close()


def test_a_bad_export_address_is_a_clear_error_and_the_gateway_serves() -> None:
    doc = {"routes": [{"uri": "/x", "plugins": {"prometheus": {}}}]}
    bad = {"prometheus": {"export_addr": {"ip": "127.0.0.1", "port": "abc"}}}
    with Kit(doc, node={"plugin_attr": bad}) as kit:
        assert kit.get("/x").status == 200
        assert "Prometheus export server not started: plugin_attr.prometheus.export_addr" \
               ".port 'abc' is not a port" in kit.log()


def test_unmatched_requests_are_counted_by_a_global_rule_with_an_empty_route(prom) -> None:
    p = prom({"global_rules": [{"id": "g", "plugins": {"prometheus": {}}}],
              "routes": [{"id": "r1", "uri": "/a"}]})
    send(p.kit, "/a", 3)
    send(p.kit, "/nowhere", 2, status=404)
    s = p.scrape()
    assert series(s, "apisix_http_status") == {
        status_labels(200, "r1", "/a"): 3,
        status_labels(404, "", "", node=""): 2}


# ----------------------------------------------------------------------------- node series
def test_node_series_and_counts_survive_a_killed_worker(prom) -> None:
    p = prom({"routes": [{"id": "r1", "uri": "/a", "plugins": {"prometheus": {}}}]})
    kit = p.kit
    key = status_labels(200, "r1", "/a")

    def count(s: Samples) -> float | None:
        return series(s, "apisix_http_status").get(key)

    send(kit, "/a", 20)
    s = p.scrape()
    assert count(s) == 20
    assert val(s, "apisix_http_requests_total") >= 20
    states = {dict(k[1])["state"] for k in s if k[0] == "apisix_nginx_http_current_connections"}
    assert states == {"active", "accepted", "handled", "reading", "writing", "waiting"}
    assert val(s, "apisix_nginx_http_current_connections", state="accepted") >= 20
    assert val(s, "apisix_node_info", hostname=socket.gethostname(), version=_version()) == 1
    assert val(s, "pylon_workers") == 2
    assert val(s, "pylon_worker_restarts_total") == 0
    assert "apisix_etcd_reachable" not in {k[0] for k in s}     # the file store: none

    # a config change: every worker reports the revision it serves
    kit.apply({"routes": [{"id": "r1", "uri": "/a", "plugins": {"prometheus": {}}},
                          {"id": "r2", "uri": "/b"}]})
    rev = max(kit._revisions().values())
    p.wait(lambda s: series(s, "pylon_config_revision") ==
           {frozenset({("worker", "0")}): rev, frozenset({("worker", "1")}): rev})
    assert rev > 1

    # a worker killed: what it flushed stays, the new one adds, the restart is counted
    before = worker_pids(kit)
    assert len(before) == 2
    os.kill(min(before), signal.SIGKILL)
    revs = {frozenset({("worker", "0")}): rev, frozenset({("worker", "1")}): rev}
    s = p.wait(lambda s: val(s, "pylon_worker_restarts_total") == 1
               and val(s, "pylon_workers") == 2 and len(worker_pids(kit)) == 2
               and series(s, "pylon_config_revision") == revs)       # the new one serves
    assert count(s) == 20
    send(kit, "/a", 10)
    assert count(p.scrape()) == 30


def test_a_reload_keeps_counts_and_the_buckets_the_node_started_with(prom) -> None:
    p = prom({"routes": [{"id": "r1", "uri": "/a", "plugins": {"prometheus": {}}}]})
    kit = p.kit
    key = status_labels(200, "r1", "/a")
    lab = {"type": "request", "route": "r1", "service": "", "consumer": "",
           "node": "127.0.0.1"}
    send(kit, "/a", 10)
    assert series(p.scrape(), "apisix_http_status")[key] == 10
    # not scraped: the old workers flush these as they drain
    send(kit, "/a", 7)
    path = os.path.join(kit.prefix, "conf", "config.yaml")
    with open(path) as f:
        cfg = yaml.safe_load(f)
    cfg["plugin_attr"]["prometheus"]["default_buckets"] = [10, 20]
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    old = worker_pids(kit)
    os.kill(kit.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 20
    while "reload done" not in kit.log() or worker_pids(kit) & old:
        assert time.monotonic() < deadline, kit.log()[-3000:]
        time.sleep(0.05)
    s = p.scrape()
    assert series(s, "apisix_http_status")[key] == 17
    assert val(s, "pylon_worker_restarts_total") == 0          # a reload is not a crash
    send(kit, "/a", 5)
    s = p.scrape()
    assert series(s, "apisix_http_status")[key] == 22
    buckets, _, count = histogram(s, "apisix_http_latency", **lab)
    assert [b for b, _ in buckets] == DEFAULT_BOUNDS           # until a restart
    assert count == 22
    assert not val(s, "pylon_metrics_series_dropped_total")
    assert "default_buckets changed while the node runs" in kit.log()


def test_upstream_status_reports_health_checked_nodes(prom) -> None:
    dead = free_port()
    p = prom({}, workers=1)
    checks = {"active": {"http_path": "/", "timeout": 1,
                         "healthy": {"interval": 1, "successes": 1},
                         "unhealthy": {"interval": 1, "http_failures": 1, "tcp_failures": 1,
                                       "timeouts": 1}}}
    p.kit.apply({"routes": [{"id": "hc", "uri": "/a", "plugins": {"prometheus": {}},
                             "upstream": {"type": "roundrobin", "checks": checks, "nodes": {
                                 p.kit.upstream.addr: 1, f"127.0.0.1:{dead}": 1}}}]})
    name = "/apisix/routes/hc"
    port = str(p.kit.upstream.port)
    s = p.wait(lambda s: val(s, "apisix_upstream_status", name=name, ip="127.0.0.1",
                             port=port) == 1
               and val(s, "apisix_upstream_status", name=name, ip="127.0.0.1",
                       port=str(dead)) == 0)
    assert len(series(s, "apisix_upstream_status")) == 2


def test_etcd_reachability_and_modify_indexes(prom) -> None:
    with EtcdServer() as etcd:
        p = prom({}, workers=1, node={"deployment": {
            "config_provider": "etcd",
            "etcd": {"host": [etcd.url], "prefix": "/apisix", "timeout": 3}}})
        up = p.kit.upstream.addr
        rev = etcd.put("/apisix/routes/1", json.dumps({
            "id": "1", "uri": "/e", "plugins": {"prometheus": {}},
            "upstream": {"type": "roundrobin", "nodes": {up: 1}}}))
        deadline = time.monotonic() + 15
        while p.kit.get("/e").status != 200:
            assert time.monotonic() < deadline, p.kit.log()[-3000:]
            time.sleep(0.05)
        s = p.wait(lambda s: val(s, "apisix_etcd_modify_indexes", key="routes") == rev)
        assert val(s, "apisix_etcd_reachable") == 1
        assert val(s, "apisix_etcd_modify_indexes", key="max_modify_index") == rev
        assert val(s, "apisix_etcd_modify_indexes", key="x_etcd_index") >= rev
        assert val(s, "apisix_etcd_modify_indexes", key="upstreams") == 0
        assert series(s, "apisix_http_status") == {status_labels(200, "1", "/e"): 1}
        etcd.stop()
        p.wait(lambda s: val(s, "apisix_etcd_reachable") == 0, timeout=20)
        assert p.kit.get("/e").status == 200           # still serving the last config
        etcd.start()
        p.wait(lambda s: val(s, "apisix_etcd_reachable") == 1, timeout=20)


def test_pylon_counts_rate_limit_degradations_and_dropped_log_entries(prom) -> None:
    dead = free_port()
    redis = {"count": 5, "time_window": 60, "policy": "redis", "redis_host": "127.0.0.1",
             "redis_port": dead, "redis_timeout": 300}
    p = prom({"routes": [
        {"id": "deg", "uri": "/deg",
         "plugins": {"limit-count": {**redis, "allow_degradation": True}}},
        {"id": "err", "uri": "/err",
         "plugins": {"limit-count": {**redis, "allow_degradation": False}}},
        {"id": "log", "uri": "/log",
         "plugins": {"http-logger": {"uri": f"http://127.0.0.1:{dead}/logs",
                                     "batch_max_size": 1, "max_retry_count": 1,
                                     "retry_delay": 0, "inactive_timeout": 1}}}]})
    send(p.kit, "/deg", 3)
    send(p.kit, "/err", 2, status=500)
    send(p.kit, "/log", 4)
    s = p.wait(lambda s: val(s, "pylon_log_entries_dropped_total", plugin="http-logger") == 4)
    assert val(s, "pylon_ratelimit_degraded_total", plugin="limit-count") == 3
    assert val(s, "pylon_ratelimit_store_errors_total", plugin="limit-count") == 2
    assert "apisix_http_status" not in {k[0] for k in s}   # no route has the plugin


def test_a_burst_of_new_series_is_published_over_flushes_and_idle_entries_are_forgotten(
        tmp_path, monkeypatch) -> None:
    """In one process: more new (route, code) pairs than one flush takes, and more entries
    than a worker keeps -- every count still reaches the store exactly."""
    from pylon.node import Node
    from pylon.observe import metrics
    from pylon.pdk.runtime import install
    from pylon.plugins import prometheus as plugin
    from pylon.proxy.registry import load

    monkeypatch.setenv("PYLON_SHM_DIR", str(tmp_path))
    monkeypatch.setattr(metrics, "_local", None)
    monkeypatch.setattr(plugin, "_AGG", {})
    monkeypatch.setattr(plugin, "_ready", False)
    monkeypatch.setattr(plugin, "NEW_PER_FLUSH", 7)
    monkeypatch.setattr(plugin, "MAX_ENTRIES", 10)
    old = install(Node(plugins=load(["prometheus"])))
    try:
        plugin.prepare({})

        class Route:
            service_id = name = service_name = None

        class Match:
            def __init__(self, i: int) -> None:
                self.route, self.route_id = Route(), f"r{i}"
                self.matched_uri, self.matched_host = f"/r{i}", ""

        class Down:
            bytes_out = 5

        class Ctx:
            consumer_name = None
            up_addr = "127.0.0.1:80"
            t_start, t_end, t_up_start, up_status, body_in = 1.0, 1.002, 1.001, 200, 3
            down = Down()

        ctx = Ctx()
        for i in range(20):
            ctx.match = Match(i)
            for code in (200, 404):
                ctx.status = code
                plugin.log(False, ctx)
        lc = metrics.local()
        for _ in range(6):                 # 40 new entries, 7 per flush
            lc.flush()
        assert len(plugin._AGG) <= 10      # idle entries forgotten, counts kept in the store
        got = samples(metrics.Reader(metrics.MetricStore(str(tmp_path))).render())
        status = {k: v for k, v in got.items() if k[0] == "apisix_http_status"}
        assert len(status) == 40 and set(status.values()) == {1.0}
    finally:
        install(old)
