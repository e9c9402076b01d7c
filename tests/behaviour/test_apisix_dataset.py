"""An APISIX data set written straight into etcd, as APISIX (or its Admin API) leaves it, that
uses the transformation plugins of issue 12 on every kind of object -- routes, services,
plugin_configs, consumer groups, consumers, global rules and plugin metadata -- loads into a
Pylon node without an error and is served as APISIX serves it.  Configs are APISIX's doc
examples, unchanged (numbers as header values, ``init_dir`` placeholders, create/update
times stored with the objects)."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.etcd_server import EtcdServer, find_etcd
from tests.harness import Gateway, Upstream

pytestmark = pytest.mark.skipif(find_etcd() is None, reason="no etcd binary (apt install "
                                                           "etcd-server; scripts/test does)")

T = {"create_time": 1700000000, "update_time": 1700000000}


def dataset(origin: str) -> dict[str, Any]:
    """key (below /apisix) -> object, every object as APISIX stores it."""
    up = {"type": "roundrobin", "nodes": {origin: 1}}
    return {
        "upstreams/1": {"id": "1", **up, **T},
        "services/s-gzip": {"id": "s-gzip", "upstream_id": "1", **T, "plugins": {
            "gzip": {"types": ["application/json"], "min_length": 1, "comp_level": 5}}},
        "plugin_configs/pc1": {"id": "pc1", **T, "plugins": {
            "response-rewrite": {"headers": {"set": {"X-Server-id": 3, "X-Server-status": "on",
                                                     "X-Server-balancer-addr":
                                                         "$balancer_ip:$balancer_port"}},
                                 "vars": [["status", "==", 200]]}}},
        "consumer_groups/company_a": {"id": "company_a", **T, "plugins": {
            "proxy-rewrite": {"headers": {"set": {"X-Consumer-Group": "company_a"}}}}},
        "consumers/jack": {"username": "jack", "group_id": "company_a", **T,
                           "plugins": {"key-auth": {"key": "auth-one"}}},
        "global_rules/1": {"id": "1", **T, "plugins": {
            "response-rewrite": {"headers": {"add": ["X-Global-Rule: on"]}}}},
        "plugin_metadata/batch-requests": {"id": "batch-requests", "max_body_size": 4096},
        # proxy-rewrite's doc example, with a plugin_config for the response side
        "routes/1": {"id": "1", **T, "methods": ["GET"], "uri": "/test/index.html",
                     "plugin_config_id": "pc1", "upstream_id": "1", "plugins": {
                         "proxy-rewrite": {
                             "uri": "/test/home.html", "host": "iresty.com",
                             "headers": {"set": {"X-Api-Version": "v1",
                                                 "X-Api-Engine": "apisix",
                                                 "X-Api-useless": ""},
                                         "add": {"X-Request-ID": "112233"},
                                         "remove": ["X-test"]}}}},
        "routes/2": {"id": "2", **T, "uri": "/api/*", "service_id": "s-gzip", "plugins": {
            "key-auth": {},
            "proxy-rewrite": {"regex_uri": ["^/api/(.*)", "/v2/$1"]}}},
        # response-rewrite's doc example: body replaced only when the upstream says 200
        "routes/3": {"id": "3", **T, "uri": "/rewrite-body", "upstream_id": "1", "plugins": {
            "response-rewrite": {"body": "{\"code\":\"ok\",\"message\":\"new json body\"}",
                                 "vars": [["status", "==", 200]]}}},
        "routes/4": {"id": "4", **T, "uri": "/mock", "plugins": {
            "mocking": {"delay": 0, "content_type": "application/json",
                        "response_status": 200,
                        "response_example": "{\"a\":1,\"b\":2}"}}},
        "routes/5": {"id": "5", **T, "uri": "/apisix/batch-requests",
                     "plugins": {"public-api": {}}},
        "routes/6": {"id": "6", **T, "uri": "/apisix/prometheus/metrics",
                     "plugins": {"public-api": {}}},
        "routes/7": {"id": "7", **T, "uri": "/cached", "upstream_id": "1", "plugins": {
            "proxy-cache": {"cache_strategy": "memory", "cache_zone": "memory_cache",
                            "cache_ttl": 300}}},
        "routes/8": {"id": "8", **T, "uri": "/soap", "upstream_id": "1", "plugins": {
            "body-transformer": {"request": {
                "template": "{\"name\":\"{{req.name}}\",\"from\":\"xml\"}",
                "input_format": "xml"}}}},
        "routes/9": {"id": "9", **T, "uri": "/br/*", "upstream_id": "1", "plugins": {
            "brotli": {"types": "*", "min_length": 1},
            "prometheus": {}}},
    }


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Iterator[tuple[Gateway, Upstream]]:
    up = Upstream("origin")
    gw = None
    try:
        with EtcdServer() as etcd:
            for d in ("routes", "services", "upstreams", "consumers", "consumer_groups",
                      "plugin_configs", "global_rules", "plugin_metadata", "ssls", "protos",
                      "stream_routes", "secrets"):
                etcd.put(f"/apisix/{d}", "init_dir")
            for key, obj in dataset(up.addr).items():
                etcd.put(f"/apisix/{key}", json.dumps(obj))
            gw = Gateway(str(tmp_path_factory.mktemp("apisix-dataset")), {}, node={
                "deployment": {"config_provider": "etcd",
                               "etcd": {"host": [etcd.url], "prefix": "/apisix",
                                        "timeout": 3}}}).start()
            deadline = time.monotonic() + 10
            while gw.get("/mock")[0] != 200:
                assert time.monotonic() < deadline, gw.log()
                time.sleep(0.1)
            yield gw, up
    finally:
        if gw is not None:
            gw.stop()
        up.close()


def test_every_object_loads_without_an_error(node):
    gw, _ = node
    log = gw.log()
    assert "0 rejected" in log, log
    assert "Traceback" not in log and " ERROR " not in log, log


def test_proxy_rewrite_doc_example_with_plugin_config_and_global_rule(node):
    gw, up = node
    status, headers, _ = gw.get("/test/index.html", headers={"X-test": "x",
                                                             "X-Api-useless": "y"})
    assert status == 200
    seen = up.requests[-1]
    assert seen["path"] == "/test/home.html"
    h = seen["headers"]
    assert h["host"] == "iresty.com"
    assert (h["x-api-version"], h["x-api-engine"], h["x-request-id"]) == ("v1", "apisix",
                                                                          "112233")
    assert "x-test" not in h and "x-api-useless" not in h
    assert headers["x-server-id"] == "3" and headers["x-server-status"] == "on"
    assert headers["x-server-balancer-addr"] == up.addr
    assert headers["x-global-rule"] == "on"


def test_consumer_group_rewrite_and_service_gzip(node):
    gw, _ = node
    assert gw.get("/api/x")[0] == 401
    status, headers, body = gw.get("/api/users?id=1", headers={"apikey": "auth-one",
                                                               "Accept-Encoding": "gzip"})
    assert status == 200, body
    assert headers["content-encoding"] == "gzip"
    echoed = json.loads(gzip.decompress(body))
    assert echoed["path"] == "/v2/users?id=1"
    assert echoed["headers"]["X-Consumer-Group"] == "company_a"
    assert echoed["headers"]["X-Consumer-Username"] == "jack"


def test_response_rewrite_replaces_the_body_when_vars_match(node):
    gw, _ = node
    status, headers, body = gw.get("/rewrite-body")
    assert status == 200
    assert json.loads(body) == {"code": "ok", "message": "new json body"}
    assert int(headers.get("content-length", len(body))) == len(body)


def test_mocking_answers_without_an_upstream(node):
    gw, _ = node
    status, headers, body = gw.get("/mock")
    assert (status, json.loads(body)) == (200, {"a": 1, "b": 2})
    assert "x-mock-by" in headers


def test_batch_requests_fan_out_through_public_api(node):
    gw, _ = node
    status, _, body = gw.request("POST", "/apisix/batch-requests", body=json.dumps({
        "pipeline": [{"method": "GET", "path": "/mock"},
                     {"method": "GET", "path": "/api/a", "headers": {"apikey": "auth-one"}},
                     {"method": "GET", "path": "/nowhere"}]}).encode(),
        headers={"Content-Type": "application/json"})
    assert status == 200, body
    assert [r["status"] for r in json.loads(body)] == [200, 200, 404]
    # plugin_metadata from etcd: max_body_size 4096
    status, _, body = gw.request("POST", "/apisix/batch-requests", body=b"{" + b" " * 5000 +
                                 b"}", headers={"Content-Type": "application/json"})
    assert status == 413, body


def test_prometheus_metrics_through_public_api(node):
    gw, _ = node
    gw.get("/br/x")
    deadline = time.monotonic() + 5
    while True:
        status, _, body = gw.get("/apisix/prometheus/metrics")
        assert status == 200
        if b'route="9"' in body:
            break
        assert time.monotonic() < deadline, body[:2000]
        time.sleep(0.3)


def test_proxy_cache_memory_zone_hits(node):
    gw, up = node
    first = gw.get("/cached")
    before = len(up.requests)
    second = gw.get("/cached")
    assert first[1]["apisix-cache-status"] == "MISS"
    assert second[1]["apisix-cache-status"] == "HIT"
    assert second[2] == first[2] and len(up.requests) == before


def test_body_transformer_xml_request_to_json(node):
    gw, up = node
    status, _, body = gw.request("POST", "/soap", body=b"<req><name>Spain</name></req>",
                                 headers={"Content-Type": "text/xml"})
    assert status == 200, body
    assert json.loads(up.requests[-1]["body"]) == {"name": "Spain", "from": "xml"}


def test_brotli_compresses(node):
    import brotli
    gw, _ = node
    status, headers, body = gw.get("/br/x", headers={"Accept-Encoding": "br"})
    assert status == 200 and headers["content-encoding"] == "br"
    assert json.loads(brotli.decompress(body))["path"] == "/br/x"
