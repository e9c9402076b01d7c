"""gRPC through the gateway: the real ``grpcio`` client and server, the gateway between them
speaking HTTP/2 both ways (h2c from the client, ``scheme: grpc`` upstreams over pooled
HTTP/2 connections)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from tests.grpc.service import GrpcServer, generated
from tests.h2client import H2Client, Resp
from tests.harness import closing_factory, dead_port

pb2, pb2_grpc = generated()


@pytest.fixture
def grpc_server_factory() -> Iterator[Any]:
    yield from closing_factory(GrpcServer)


@pytest.fixture
def grpc_server(grpc_server_factory: Any) -> GrpcServer:
    return grpc_server_factory()


def logged(gw: Any, *needles: str, timeout: float = 5.0) -> list[str]:
    """The access log once every needle is in it (the log is written in batches)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = gw.access_log()
        if all(any(n in ln for ln in lines) for n in needles) or time.monotonic() > deadline:
            return lines


def bare_call(port: int, msg: Any, headers: list[tuple[str, str]] | None = None,
              path: str = "/echo.Echo/Unary") -> Resp:
    """One unary call as a plain HTTP/2 request (frames and fields as they are)."""
    data = msg.SerializeToString()
    with H2Client(port) as c:
        return c.request("POST", path, body=b"\0" + len(data).to_bytes(4, "big") + data,
                         headers=[("content-type", "application/grpc"), ("te", "trailers"),
                                  *(headers or [])])


def grpc_doc(addr: str, scheme: str = "grpc", **route: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"id": "g1", "uri": "/echo.Echo/*",
                         "upstream": {"scheme": scheme, "type": "roundrobin",
                                      "nodes": {addr: 1}}}
    r.update(route)
    return {"routes": [r]}


@pytest.fixture
def stub_for() -> Iterator[Any]:
    channels: list[grpc.Channel] = []

    def make(port: int) -> Any:
        ch = grpc.insecure_channel(f"127.0.0.1:{port}")
        channels.append(ch)
        return pb2_grpc.EchoStub(ch)

    yield make
    for ch in channels:
        ch.close()


def test_all_four_call_kinds_pass_through_with_their_trailers(gateway_factory, grpc_server,
                                                              stub_for):
    gw = gateway_factory(grpc_doc(grpc_server.addr), http2=True)
    stub = stub_for(gw.port)
    reply, call = stub.Unary.with_call(pb2.Msg(text="hi", count=41, blob=b"\0" * 10),
                                       timeout=10)
    assert (reply.text, reply.count, reply.blob) == ("hi", 42, b"\0" * 10)
    assert ("x-trailer", "t1") in call.trailing_metadata()
    assert ("x-initial", "i1") in call.initial_metadata()

    got = stub.Collect(iter([pb2.Msg(text=t) for t in "abcde"]), timeout=10)
    assert (got.text, got.count) == ("abcde", 5)

    stream = stub.Repeat(pb2.Msg(text="r", count=50, blob=b"x" * 1000), timeout=10)
    msgs = list(stream)
    assert [m.count for m in msgs] == list(range(50))
    assert ("x-sent", "50") in stream.trailing_metadata()

    out = list(stub.Chat(iter([pb2.Msg(text=t, count=i) for i, t in enumerate("xyz")]),
                         timeout=10))
    assert [(m.text, m.count) for m in out] == [("X", 0), ("Y", 1), ("Z", 2)]
    lines = logged(gw, "/echo.Echo/Chat")
    assert any('"POST /echo.Echo/Chat HTTP/2.0" 200' in ln for ln in lines), lines


def test_an_upstream_error_status_message_and_trailers_reach_the_client(
        gateway_factory, grpc_server, stub_for):
    gw = gateway_factory(grpc_doc(grpc_server.addr), http2=True)
    with pytest.raises(grpc.RpcError) as e:
        stub_for(gw.port).Unary(pb2.Msg(text="fail"), timeout=10)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert e.value.details() == "no such thing: é"
    assert ("x-why", "asked-to-fail") in e.value.trailing_metadata()
    # a Trailers-Only answer (an unknown method) stays one HEADERS frame ending the stream
    r = bare_call(gw.port, pb2.Msg(text="x"), path="/echo.Echo/Nope")
    assert r.status == 200 and r.trailers is None and not r.body, (r.headers, r.trailers)
    assert r.header("grpc-status") == "12"


def test_large_messages_both_ways_go_through_flow_control(gateway_factory, grpc_server,
                                                          stub_for):
    gw = gateway_factory(grpc_doc(grpc_server.addr), http2=True)
    blob = bytes(range(256)) * 4096            # 1 MiB: many windows' worth
    reply = stub_for(gw.port).Unary(pb2.Msg(text="big", blob=blob), timeout=20)
    assert reply.blob == blob
    msgs = list(stub_for(gw.port).Chat(iter([pb2.Msg(text="b", blob=blob)] * 4), timeout=30))
    assert [m.text for m in msgs] == ["B"] * 4


def test_concurrent_calls_share_pooled_upstream_connections(gateway_factory, grpc_server,
                                                           stub_for):
    gw = gateway_factory(grpc_doc(grpc_server.addr), http2=True)
    stub = stub_for(gw.port)
    futs = [stub.Unary.future(pb2.Msg(text=f"m{i}", count=i), timeout=20) for i in range(200)]
    assert [f.result().count for f in futs] == [i + 1 for i in range(200)]
    # many calls at once: streams of one upstream connection (the first ones wait for it)
    futs = [stub.Unary.future(pb2.Msg(text="peer"), timeout=20) for _ in range(100)]
    assert len({f.result().text for f in futs}) == 1


def test_forwarding_headers_go_upstream(gateway_factory, grpc_server,
                                                         stub_for):
    gw = gateway_factory(grpc_doc(grpc_server.addr), http2=True)
    reply = stub_for(gw.port).Unary(pb2.Msg(text="metadata"), timeout=10)
    keys, xff, host = reply.text.split("|")
    assert keys.split(",") == ["x-forwarded-for", "x-forwarded-host", "x-forwarded-port",
                               "x-forwarded-proto", "x-real-ip"]
    assert (xff, host) == ("127.0.0.1", "127.0.0.1")


def test_the_call_deadline_ends_the_upstream_call_with_deadline_exceeded(
        gateway_factory, grpc_server, stub_for):
    gw = gateway_factory(grpc_doc(grpc_server.addr), http2=True)
    # the gateway's own enforcement: a bare HTTP/2 request with grpc-timeout (no client
    # timer) to a call that takes longer
    r = bare_call(gw.port, pb2.Msg(text="sleep", count=3000), [("grpc-timeout", "300m")])
    fields = {k.decode(): v.decode() for k, v in [*r.headers, *(r.trailers or [])]}
    assert r.status == 200
    assert fields.get("grpc-status") == "4", (r.headers, r.trailers)


def test_gateway_answers_are_grpc_statuses(gateway_factory, grpc_server, stub_for):
    doc = grpc_doc(grpc_server.addr, plugins={"key-auth": {}})
    doc["routes"].append({"id": "dead", "uri": "/echo.Dead/*", "upstream": {
        "scheme": "grpc", "type": "roundrobin", "nodes": {f"127.0.0.1:{dead_port()}": 1}}})
    doc["consumers"] = [{"username": "jack", "plugins": {"key-auth": {"key": "k1"}}}]
    gw = gateway_factory(doc, http2=True)
    stub = stub_for(gw.port)
    with pytest.raises(grpc.RpcError) as e:
        stub.Unary(pb2.Msg(text="x"), timeout=10)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert e.value.details() == "Missing API key in request"
    assert stub.Unary(pb2.Msg(text="x"), metadata=(("apikey", "k1"),), timeout=10).count == 1
    ch = grpc.insecure_channel(f"127.0.0.1:{gw.port}")
    try:
        unknown = ch.unary_unary("/other.Svc/M")
        with pytest.raises(grpc.RpcError) as e:
            unknown(b"", timeout=10)
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED      # 404: no route
        dead = ch.unary_unary("/echo.Dead/M")
        with pytest.raises(grpc.RpcError) as e:
            dead(b"", timeout=10)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE        # 502: unreachable
    finally:
        ch.close()
    lines = logged(gw, "/echo.Dead/M")
    assert any("/echo.Echo/Unary HTTP/2.0\" 401 " in ln for ln in lines), lines
    assert any("/echo.Dead/M HTTP/2.0\" 502 " in ln for ln in lines), lines
