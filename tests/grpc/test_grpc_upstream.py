"""HTTP/2 toward upstreams: grpcs (TLS, ALPN h2) with a TLS client (ALPN h2) in front,
connection reuse and ``keepalive_pool``, GOAWAY from the server, many streams at once
(h2load), and plugins on gRPC routes."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from tests.grpc.service import GrpcServer, generated
from tests.grpc.test_grpc_proxy import grpc_doc, logged
from tests.harness import closing_factory, free_port
from tests.tls.certs import CA

pb2, pb2_grpc = generated()


@pytest.fixture
def grpc_server_factory() -> Iterator[Any]:
    yield from closing_factory(GrpcServer)


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA()


def peers(stub: Any, n: int) -> set[str]:
    """The upstream connections (client address as the server saw it) of ``n`` calls."""
    return {stub.Unary(pb2.Msg(text="peer"), timeout=10).text for _ in range(n)}


def test_grpcs_upstream_behind_a_tls_listener_with_alpn_h2(gateway_factory,
                                                           grpc_server_factory, ca):
    up = ca.issue("up.test")
    server = grpc_server_factory(grpc.ssl_server_credentials(
        [(up.key.encode(), up.cert.encode())]))
    port = free_port()
    doc = grpc_doc(server.addr, scheme="grpcs")
    gwc = ca.issue("gw.test")
    doc["ssls"] = [{"id": "1", "cert": gwc.cert, "key": gwc.key, "snis": ["gw.test"]}]
    gateway_factory(doc, node={"pylon": {"ssl": {"listen": [
        {"ip": "127.0.0.1", "port": port, "enable_http2": True}]}}})
    creds = grpc.ssl_channel_credentials(root_certificates=ca.pem.encode())
    with grpc.secure_channel(f"127.0.0.1:{port}", creds, options=[
            ("grpc.ssl_target_name_override", "gw.test")]) as ch:
        stub = pb2_grpc.EchoStub(ch)
        assert stub.Unary(pb2.Msg(text="tls", count=1), timeout=10).count == 2
        assert [m.count for m in stub.Repeat(pb2.Msg(text="s", count=5), timeout=10)] == \
            list(range(5))
        assert len(peers(stub, 10)) == 1           # one pooled TLS connection upstream


def test_one_upstream_connection_carries_calls_until_keepalive_pool_requests(
        gateway_factory, grpc_server_factory):
    server = grpc_server_factory()
    doc = grpc_doc(server.addr)
    doc["routes"][0]["upstream"]["keepalive_pool"] = {"requests": 5, "size": 2,
                                                      "idle_timeout": 30}
    gw = gateway_factory(doc, http2=True)
    with grpc.insecure_channel(f"127.0.0.1:{gw.port}") as ch:
        stub = pb2_grpc.EchoStub(ch)
        assert len(peers(stub, 15)) == 3           # 5 streams per connection
    doc["routes"][0]["upstream"]["keepalive_pool"] = {"requests": 1000}
    gw2 = gateway_factory(doc, http2=True)
    with grpc.insecure_channel(f"127.0.0.1:{gw2.port}") as ch:
        assert len(peers(pb2_grpc.EchoStub(ch), 15)) == 1


def test_an_idle_upstream_connection_closes_after_keepalive_idle_timeout(
        gateway_factory, grpc_server_factory):
    import time
    server = grpc_server_factory()
    doc = grpc_doc(server.addr)
    doc["routes"][0]["upstream"]["keepalive_pool"] = {"idle_timeout": 1}
    gw = gateway_factory(doc, http2=True)
    with grpc.insecure_channel(f"127.0.0.1:{gw.port}") as ch:
        stub = pb2_grpc.EchoStub(ch)
        first = peers(stub, 3)
        assert len(first) == 1
        assert peers(stub, 1) == first          # reused while busy enough
        time.sleep(2.5)                         # idle past idle_timeout (swept each second)
        later = peers(stub, 1)
        assert later and later != first


def test_goaway_from_the_server_moves_new_calls_to_a_new_connection(gateway_factory,
                                                                    grpc_server_factory):
    # the server ends every connection after 300 ms (GOAWAY), letting calls finish
    server = grpc_server_factory(options=[("grpc.max_connection_age_ms", 300),
                                          ("grpc.max_connection_age_grace_ms", 5000)])
    gw = gateway_factory(grpc_doc(server.addr), http2=True)
    import time
    seen: set[str] = set()
    with grpc.insecure_channel(f"127.0.0.1:{gw.port}") as ch:
        stub = pb2_grpc.EchoStub(ch)
        end = time.monotonic() + 2.0
        n = 0
        while time.monotonic() < end:
            futs = [stub.Unary.future(pb2.Msg(text="peer"), timeout=10) for _ in range(5)]
            seen |= {f.result().text for f in futs}     # none fails
            n += 5
    assert len(seen) >= 3, seen
    lines = logged(gw, "/echo.Echo/Unary")
    assert not [ln for ln in lines if '" 200 ' not in ln], lines


def test_h2load_many_streams_over_few_connections(gateway_factory, grpc_server_factory,
                                                  tmp_path):
    if shutil.which("h2load") is None:
        pytest.skip("h2load is not installed")
    server = grpc_server_factory(workers=32)
    gw = gateway_factory(grpc_doc(server.addr), http2=True)
    msg = pb2.Msg(text="load", count=1).SerializeToString()
    body = tmp_path / "req.bin"
    body.write_bytes(b"\0" + len(msg).to_bytes(4, "big") + msg)
    out = subprocess.run(
        ["h2load", "-n", "600", "-c", "3", "-m", "40", "-d", str(body),
         "-H", "content-type: application/grpc", "-H", "te: trailers",
         f"http://127.0.0.1:{gw.port}/echo.Echo/Unary"],
        capture_output=True, text=True, timeout=120, check=False)
    assert "600 succeeded, 0 failed, 0 errored" in out.stdout, out.stdout + out.stderr
    assert "status codes: 600 2xx" in out.stdout, out.stdout


def test_limit_count_on_a_grpc_route_answers_unavailable(gateway_factory,
                                                         grpc_server_factory):
    server = grpc_server_factory()
    doc = grpc_doc(server.addr, plugins={"limit-count": {
        "count": 2, "time_window": 60, "key": "remote_addr", "rejected_code": 429}})
    gw = gateway_factory(doc, http2=True)
    with grpc.insecure_channel(f"127.0.0.1:{gw.port}") as ch:
        stub = pb2_grpc.EchoStub(ch)
        _, call = stub.Unary.with_call(pb2.Msg(text="a"), timeout=10)
        assert ("x-ratelimit-remaining", "1") in call.initial_metadata()
        stub.Unary(pb2.Msg(text="b"), timeout=10)
        with pytest.raises(grpc.RpcError) as e:
            stub.Unary(pb2.Msg(text="c"), timeout=10)
        # the gRPC HTTP-to-status mapping: 429 → UNAVAILABLE
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    lines = logged(gw, '" 429 ')
    ok = [ln for ln in lines if '" 200 ' in ln]
    assert len(ok) == 2 and all(f" {server.addr} 200 " in ln for ln in ok), lines


def test_prometheus_counts_grpc_calls_by_route_and_status(gateway_factory,
                                                          grpc_server_factory):
    server = grpc_server_factory()
    doc = grpc_doc(server.addr, plugins={"prometheus": {}})
    doc["routes"].append({"id": "m", "uri": "/apisix/prometheus/metrics",
                          "plugins": {"public-api": {}}})
    gw = gateway_factory(doc, http2=True)
    with grpc.insecure_channel(f"127.0.0.1:{gw.port}") as ch:
        stub = pb2_grpc.EchoStub(ch)
        for _ in range(3):
            stub.Unary(pb2.Msg(text="p"), timeout=10)
    import time
    deadline = time.monotonic() + 5
    while True:
        status, _, body = gw.get("/apisix/prometheus/metrics")
        assert status == 200
        line = [ln for ln in body.decode().splitlines()
                if ln.startswith("apisix_http_status{") and 'route="g1"' in ln]
        if line and line[0].endswith(" 3"):
            assert 'code="200"' in line[0]
            break
        assert time.monotonic() < deadline, line
        time.sleep(0.2)
