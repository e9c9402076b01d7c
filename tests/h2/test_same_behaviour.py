"""One gateway, two wire protocols: the same routes, plugins, variables, streaming and
error answers over HTTP/1.1 and HTTP/2 (h2c with prior knowledge on a listener with
``enable_http2``).  Each test runs once per client protocol."""

from __future__ import annotations

import hashlib
import json
import threading
import time

import pytest

from tests.h2client import fetch
from tests.harness import (
    BLOCK,
    count_body,
    dead_port,
    generate_body,
    hang,
    node,
    origin_factory,
    route_doc,
)

__all__ = ["origin_factory"]

PROTOS = ["h1", "h2"]


@pytest.mark.parametrize("proto", PROTOS)
def test_request_is_proxied_with_forwarded_headers(gateway_factory, upstream, proto):
    gw = gateway_factory(route_doc([upstream]), http2=True)
    status, _, body = fetch(proto, gw.port, "POST", "/hello?x=1", b"payload",
                            headers={"X-Forwarded-For": "10.0.0.1", "X-Custom": "v",
                                     "Cookie": "a=1"})
    assert status == 200
    seen = upstream.requests[-1]
    assert seen["method"] == "POST" and seen["path"] == "/hello?x=1"
    assert seen["body"] == b"payload"
    h = seen["headers"]
    assert h["host"] == f"127.0.0.1:{gw.port}"
    assert h["x-forwarded-for"] == "10.0.0.1, 127.0.0.1"
    assert h["x-real-ip"] == "127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-host"] == "127.0.0.1"
    assert h["x-forwarded-port"] == str(gw.port)
    assert h["x-custom"] == "v" and h["cookie"] == "a=1"
    assert h["content-length"] == "7"


@pytest.mark.parametrize("proto", PROTOS)
def test_unknown_path_gets_404_route_not_found(gateway_factory, upstream, proto):
    gw = gateway_factory(route_doc([upstream], uri="/only"), http2=True)
    status, headers, body = fetch(proto, gw.port, "GET", "/other")
    assert status == 404
    assert body == b'{"error_msg":"404 Route Not Found"}'
    assert headers["content-type"].startswith("application/json")
    assert headers["server"].startswith("Pylon/")


@pytest.mark.parametrize("proto", PROTOS)
def test_a_plugin_reply_and_a_plugin_pass(gateway_factory, upstream, proto):
    gw = gateway_factory({
        "routes": [{"id": "r", "uri": "/k", "plugins": {"key-auth": {}},
                    "upstream": {"nodes": [node(upstream.port)]}}],
        "consumers": [{"username": "jack", "plugins": {"key-auth": {"key": "jack-key"}}}],
    }, http2=True)
    status, _, body = fetch(proto, gw.port, "GET", "/k")
    assert status == 401 and json.loads(body) == {"message": "Missing API key in request"}
    status, _, _ = fetch(proto, gw.port, "GET", "/k", headers={"apikey": "jack-key"})
    assert status == 200
    assert upstream.requests[-1]["headers"]["x-consumer-username"] == "jack"


@pytest.mark.parametrize("proto", PROTOS)
def test_large_bodies_stream_both_ways(gateway_factory, origin_factory, proto):
    total = 8 << 20
    sink = origin_factory("sink", behaviour=count_body, read_body=False)
    source = origin_factory("source", behaviour=generate_body(total, chunked=True))
    gw = gateway_factory({"routes": [
        {"id": "up", "uri": "/upload", "upstream": {"nodes": [node(sink.port)]}},
        {"id": "down", "uri": "/download", "upstream": {"nodes": [node(source.port)]}},
    ]}, http2=True)
    status, _, body = fetch(proto, gw.port, "POST", "/upload", BLOCK * 128, timeout=60)
    assert status == 200 and json.loads(body) == {"received": total}
    status, _, body = fetch(proto, gw.port, "GET", "/download", timeout=60)
    assert status == 200 and len(body) == total
    assert hashlib.sha256(body).digest() == hashlib.sha256(BLOCK * 128).digest()


@pytest.mark.parametrize("proto", PROTOS)
def test_gateway_errors_502_and_504(gateway_factory, upstream_factory, proto):
    release = threading.Event()
    slow = upstream_factory("slow", behaviour=hang(release))
    gw = gateway_factory({"routes": [
        {"id": "dead", "uri": "/dead", "upstream": {"nodes": [node(dead_port())]}},
        {"id": "slow", "uri": "/slow", "timeout": {"connect": 2, "send": 2, "read": 0.5},
         "upstream": {"nodes": [node(slow.port)]}},
    ]}, http2=True)
    try:
        status, headers, body = fetch(proto, gw.port, "GET", "/dead")
        assert status == 502 and json.loads(body) == {"error_msg": "502 Bad Gateway"}
        assert headers["x-apisix-upstream-status"] == "502"
        t0 = time.monotonic()
        status, _, body = fetch(proto, gw.port, "GET", "/slow")
        assert status == 504 and json.loads(body) == {"error_msg": "504 Gateway Time-out"}
        assert 0.4 <= time.monotonic() - t0 < 2.5
    finally:
        release.set()


@pytest.mark.parametrize("proto", PROTOS)
def test_access_log_names_the_protocol(gateway_factory, upstream, proto):
    gw = gateway_factory(route_doc([upstream]), http2=True, http={
        "access_log_format": "$server_protocol|$request|$status|$http_x_tag"})
    assert fetch(proto, gw.port, "GET", "/p?q=1", headers={"X-Tag": "t"})[0] == 200
    want = "HTTP/2.0|GET /p?q=1 HTTP/2.0|200|t" if proto == "h2" else \
        "HTTP/1.1|GET /p?q=1 HTTP/1.1|200|t"
    deadline = time.monotonic() + 5
    while want not in gw.access_log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert want in gw.access_log()
