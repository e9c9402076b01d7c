"""stream_routes through the Admin API: APISIX's validation and error_msg, live on the
stream listeners without a restart."""

from __future__ import annotations

import time
from typing import Any

import pytest

from ..admin.test_admin_gateway import admin, admin_node
from .origins import TcpEcho, free_port, stream_node, talk

KEY = "s" * 32


@pytest.fixture
def gateway_factory(quick_gateway_factory: Any) -> Any:
    return quick_gateway_factory


def node(aport: int, tcp: list[Any]) -> dict[str, Any]:
    n = admin_node(aport, admin_key=[{"name": "ops", "key": KEY}])
    n["pylon"].update(stream_node(tcp=tcp)["pylon"])
    return n


def test_stream_route_put_through_the_admin_api_is_live(gateway_factory: Any) -> None:
    o = TcpEcho(b"o:")
    try:
        port, aport = free_port(), free_port()
        gateway_factory({}, node=node(aport, [f"127.0.0.1:{port}"]))
        assert talk(port, b"x") == b""                     # no route yet
        status, body = admin(aport, "PUT", "/apisix/admin/stream_routes/1", {
            "server_port": port, "upstream": {"type": "roundrobin",
                                              "nodes": {o.addr: 1}}}, key=KEY)
        assert status == 201, body
        assert body["key"] == "/apisix/stream_routes/1"
        deadline = time.monotonic() + 5
        while talk(port, b"x") != b"o:x":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        status, _ = admin(aport, "DELETE", "/apisix/admin/stream_routes/1", key=KEY)
        assert status == 200
        deadline = time.monotonic() + 5
        while talk(port, b"x") != b"":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        o.close()


@pytest.mark.parametrize(("conf", "error"), [
    ({"remote_addr": "not-an-ip", "upstream_id": "1"},
     'invalid configuration: property "remote_addr" validation failed: object matches '
     "none of the required"),
    ({"server_port": 70000, "upstream_id": "1"},
     'invalid configuration: property "server_port" validation failed: expected 70000 to '
     "be at most 65535"),
    ({"upstream_id": "404"},
     "failed to fetch upstream info by upstream id [404], response code: 404"),
    ({"service_id": "404", "upstream_id": "1"},
     "failed to fetch service info by service id [404], response code: 404"),
    ({"upstream_id": "1", "plugins": {"key-auth": {}}}, "unknown plugin [key-auth]"),
    ({"upstream_id": "1", "protocol": {"name": "redis"}}, "unknown protocol [redis]"),
    ({"upstream_id": "1", "plugins": {"mqtt-proxy": {"protocol_name": "MQTT"}}},
     "failed to check the configuration of plugin mqtt-proxy err: property "
     '"protocol_level" is required'),
])
def test_bad_stream_route_gets_apisix_error_msg(gateway_factory: Any, conf: dict[str, Any],
                                                error: str) -> None:
    port, aport = free_port(), free_port()
    gateway_factory({"upstreams": [{"id": "1", "nodes": {"127.0.0.1:1": 1},
                                    "type": "roundrobin"}]},
                    node=node(aport, [f"127.0.0.1:{port}"]))
    status, body = admin(aport, "PUT", "/apisix/admin/stream_routes/1", conf, key=KEY)
    assert status == 400, body
    assert body["error_msg"].startswith(error), body


def test_mqtt_proxy_is_unknown_on_an_http_route(gateway_factory: Any) -> None:
    port, aport = free_port(), free_port()
    gateway_factory({}, node=node(aport, [f"127.0.0.1:{port}"]))
    status, body = admin(aport, "PUT", "/apisix/admin/routes/1", {
        "uri": "/x", "plugins": {"mqtt-proxy": {"protocol_name": "MQTT",
                                                "protocol_level": 4}},
        "upstream": {"type": "roundrobin", "nodes": {"127.0.0.1:1": 1}}}, key=KEY)
    assert status == 400
    assert body == {"error_msg": "unknown plugin [mqtt-proxy]"}


def test_plugin_list_of_the_stream_subsystem(gateway_factory: Any) -> None:
    port, aport = free_port(), free_port()
    gateway_factory({}, node=node(aport, [f"127.0.0.1:{port}"]))
    status, stream = admin(aport, "GET", "/apisix/admin/plugins/list?subsystem=stream",
                           key=KEY)
    assert status == 200
    assert {"ip-restriction", "limit-conn", "mqtt-proxy", "syslog", "prometheus"} <= set(stream)
    assert "key-auth" not in stream
    status, http = admin(aport, "GET", "/apisix/admin/plugins/list", key=KEY)
    assert status == 200 and "key-auth" in http and "mqtt-proxy" not in http
    status, body = admin(aport, "GET", "/apisix/admin/plugins/mqtt-proxy?subsystem=stream",
                         key=KEY)
    assert status == 200 and body["required"] == ["protocol_name", "protocol_level"]


def test_control_api_schema_lists_the_stream_plugins(gateway_factory: Any) -> None:
    import json
    import urllib.request
    port, cport = free_port(), free_port()
    n = stream_node(tcp=[f"127.0.0.1:{port}"])
    n["pylon"].update({"enable_control": True, "control": {"ip": "127.0.0.1", "port": cport}})
    gateway_factory({}, node=n)
    with urllib.request.urlopen(f"http://127.0.0.1:{cport}/v1/schema", timeout=5) as r:
        schema = json.loads(r.read())
    assert schema["stream_plugins"]["mqtt-proxy"]["priority"] == 1000
    assert "mqtt-proxy" not in schema["plugins"]


def test_stream_route_is_not_patched(gateway_factory: Any) -> None:
    """As APISIX (``unsupported_methods = {"patch"}``): a stream route is replaced whole."""
    port, aport = free_port(), free_port()
    gateway_factory({"upstreams": [{"id": "1", "nodes": {"127.0.0.1:1": 1},
                                    "type": "roundrobin"}],
                     "stream_routes": [{"id": "1", "upstream_id": "1"}]},
                    node=node(aport, [f"127.0.0.1:{port}"]))
    status, body = admin(aport, "PATCH", "/apisix/admin/stream_routes/1",
                         {"server_port": port}, key=KEY)
    assert (status, body) == (405, {"error_msg": "not supported `PATCH` method for stream "
                                                 "route"})
