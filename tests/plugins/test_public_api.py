"""public-api through a real gateway: plugin endpoints (``api()``) served on data-plane routes,
with and without ``uri``, behind the route's other plugins (APISIX docs and
t/plugin/public-api.t)."""

from __future__ import annotations

import pytest

from pylon.pdk.testing import Kit, free_port

METRICS = "/apisix/prometheus/metrics"
DOC = {
    "consumers": [{"username": "jack", "plugins": {"key-auth": {"key": "jack-key"}}}],
    "routes": [
        # the APISIX doc's example: the export server is off (Kit's default), metrics on 9080
        {"id": "prometheus-metrics", "uri": "/prometheus_metrics",
         "plugins": {"public-api": {"uri": METRICS}}},
        {"id": "direct", "uri": METRICS, "plugins": {"public-api": {}}},
        {"id": "batch-requests", "uri": "/apisix/batch-requests", "plugins": {"public-api": {}}},
        {"id": "custom-batch", "uri": "/batch-requests",
         "plugins": {"public-api": {"uri": "/apisix/batch-requests"}}},
        {"id": "no-endpoint", "uri": "/apisix/plugin/none", "plugins": {"public-api": {}}},
        {"id": "guarded", "uri": "/guarded_metrics",
         "plugins": {"public-api": {"uri": METRICS}, "key-auth": {}}},
        {"id": "counted", "uri": "/counted", "plugins": {"prometheus": {}}},
    ],
}
ADMIN_KEY = "p" * 32

# a plugin of one's own exposing endpoints (docs/writing-a-plugin.md)
HELLO = """
name = "hello-api"
priority = 1


def api():
    return [{"methods": ["GET"], "uri": "/apisix/plugin/hello", "handler": hello},
            {"uri": "/apisix/plugin/files/*", "handler": files},
            {"methods": ["GET"], "uri": "/apisix/plugin/pass", "handler": lambda ctx: None}]


def hello(ctx):
    return 200, {"hello": ctx.arg("name") or "world"}


async def files(ctx):
    return 200, {"path": ctx.uri, "method": ctx.method}
"""
DOC["routes"] += [
    {"id": "hello", "uri": "/hello", "plugins": {"public-api": {"uri": "/apisix/plugin/hello"}}},
    {"id": "files", "uri": "/apisix/plugin/files/*", "plugins": {"public-api": {}}},
    {"id": "pass", "uri": "/pass", "plugins": {"public-api": {"uri": "/apisix/plugin/pass"}}},
]


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    plugins = tmp_path_factory.mktemp("plugins")
    (plugins / "hello_api.py").write_text(HELLO)
    with Kit(DOC, admin_key=ADMIN_KEY, plugin_dirs=[str(plugins)]) as k:
        yield k


def test_own_plugin_endpoint_answers_like_a_hook(kit):
    r = kit.get("/hello?name=pylon")
    assert (r.status, r.json()) == (200, {"hello": "pylon"})


def test_prefix_endpoint_serves_every_path_under_it_for_any_method(kit):
    r = kit.request("DELETE", "/apisix/plugin/files/a/b")
    assert (r.status, r.json()) == (200, {"path": "/apisix/plugin/files/a/b",
                                          "method": "DELETE"})


def test_handler_answering_nothing_lets_the_request_go_upstream(kit):
    r = kit.get("/pass")
    assert r.status == 200
    assert r.json()["path"] == "/pass"              # the echo upstream answered


def test_route_uri_differs_from_the_endpoint_with_uri(kit):
    assert kit.get("/counted").status == 200
    r = kit.get("/prometheus_metrics")
    assert r.status == 200
    assert r.headers["content-type"] == "text/plain"
    assert "# TYPE apisix_http_status counter" in r.text
    assert 'apisix_http_status{code="200",route="counted"' in r.text
    # node-level families rendered by the master, as on the export server
    assert "apisix_node_info{" in r.text
    assert "apisix_nginx_http_current_connections{" in r.text


def test_route_uri_is_the_endpoint_without_uri(kit):
    r = kit.get(METRICS)
    assert r.status == 200
    assert "apisix_http_requests_total" in r.text


def test_endpoint_of_another_plugin_without_uri(kit):
    r = kit.post("/apisix/batch-requests", {"pipeline": [{"path": "/counted"}]})
    assert r.status == 200
    assert [s["status"] for s in r.json()] == [200]


def test_custom_path_maps_to_the_endpoint(kit):
    r = kit.post("/batch-requests", {"pipeline": [{"path": "/counted"}]})
    assert r.status == 200
    assert r.json()[0]["status"] == 200


def test_no_endpoint_at_the_path_is_404(kit):
    assert kit.get("/apisix/plugin/none").status == 404


def test_method_the_endpoint_does_not_serve_is_404(kit):
    assert kit.get("/batch-requests").status == 404          # batch-requests: POST only
    assert kit.post("/prometheus_metrics", "x").status == 404  # metrics: GET only


def test_route_plugins_guard_the_endpoint(kit):
    r = kit.get("/guarded_metrics")
    assert r.status == 401
    assert r.json() == {"message": "Missing API key in request"}
    r = kit.get("/guarded_metrics", headers={"apikey": "jack-key"})
    assert r.status == 200
    assert "apisix_node_info" in r.text


def test_endpoints_are_not_reachable_without_a_route(kit):
    assert kit.get("/apisix/prometheus/metrics/x").status == 404


def test_bad_uri_type_is_refused_with_apisix_error(kit):
    r = kit.admin("PUT", "/routes/bad", {"uri": "/bad", "plugins": {"public-api": {"uri": 3233}}})
    assert r.status == 400
    assert r.json() == {"error_msg": "failed to check the configuration of plugin public-api "
                                     "err: property \"uri\" validation failed: wrong type: "
                                     "expected string, got number"}


def test_metrics_endpoint_absent_while_the_export_server_runs():
    doc = {"routes": [{"uri": "/m", "plugins": {"public-api": {"uri": METRICS}}}]}
    node = {"plugin_attr": {"prometheus": {"enable_export_server": True,
                                           "export_addr": {"ip": "127.0.0.1",
                                                           "port": free_port()}}}}
    with Kit(doc, node=node) as k:
        assert k.get("/m").status == 404
