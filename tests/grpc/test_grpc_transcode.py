"""protos objects and grpc-transcode as APISIX: JSON / query arguments over HTTP/1.1 to a
real gRPC server (unary), the reply as JSON, gRPC statuses as HTTP statuses, status details,
pb_option; the Admin API's proto checks (compile errors, references, no PATCH)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2

from pylon.pdk.protos import compile_proto
from tests.admin.test_admin_gateway import admin, admin_node
from tests.grpc.service import PROTO, GrpcServer
from tests.h2client import H2Client
from tests.harness import closing_factory, dead_port, free_port

PROTO_TEXT = Path(PROTO).read_text()
KEY = "k" * 32


@pytest.fixture
def grpc_server() -> Iterator[GrpcServer]:
    yield from closing_factory(GrpcServer)


def transcode_doc(addr: str, **conf: Any) -> dict[str, Any]:
    plugin = {"proto_id": "1", "service": "echo.Echo", "method": "Unary", **conf}
    return {"protos": [{"id": "1", "content": PROTO_TEXT}],
            "routes": [{"id": "1", "uri": "/grpctest", "plugins": {"grpc-transcode": plugin},
                        "upstream": {"scheme": "grpc", "type": "roundrobin",
                                     "nodes": {addr: 1}}}]}


def test_query_arguments_and_json_bodies_become_a_unary_call(gateway_factory, grpc_server):
    server = grpc_server()
    gw = gateway_factory(transcode_doc(server.addr))
    status, headers, body = gw.get("/grpctest?text=hi&count=41&kind=LOUD")
    assert status == 200, body
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"text": "hi", "count": 42, "blob": "", "big": 0,
                                "kind": "LOUD"}
    status, _, body = gw.request("POST", "/grpctest", json.dumps(
        {"text": "j", "big": 9007199254740993, "inner": {"note": "n"}, "extra": 1}).encode(),
        headers={"Content-Type": "application/json"})
    assert status == 200, body
    doc = json.loads(body)
    assert (doc["text"], doc["count"], doc["big"], doc["inner"]) == \
        ("j", 1, 9007199254740993, {"note": "n"})
    status, _, body = gw.request("POST", "/grpctest", b"text=form&count=2",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (status, json.loads(body)["count"]) == (200, 3)


def test_pb_option_int64_as_string_enum_as_value_no_default_values(gateway_factory,
                                                                   grpc_server):
    server = grpc_server()
    gw = gateway_factory(transcode_doc(server.addr, pb_option=[
        "int64_as_string", "enum_as_value", "no_default_values"]))
    status, _, body = gw.get("/grpctest?text=x&big=5&kind=1")
    assert status == 200, body
    assert json.loads(body) == {"text": "x", "count": 1, "big": "5", "kind": 1}


def test_grpc_errors_become_http_statuses_and_details_are_shown_when_asked(
        gateway_factory, grpc_server):
    server = grpc_server()
    doc = transcode_doc(server.addr)
    doc["routes"].append({**doc["routes"][0], "id": "2", "uri": "/detailed"})
    doc["routes"][1]["plugins"] = {"grpc-transcode": {
        "proto_id": "1", "service": "echo.Echo", "method": "Unary",
        "show_status_in_body": True, "status_detail_type": "echo.Inner"}}
    doc["routes"].append({**doc["routes"][0], "id": "3", "uri": "/nomethod"})
    doc["routes"][2]["plugins"] = {"grpc-transcode": {
        "proto_id": "1", "service": "echo.Echo", "method": "Nope"}}
    doc["routes"].append({**doc["routes"][0], "id": "4", "uri": "/deadup", "upstream": {
        "scheme": "grpc", "type": "roundrobin", "nodes": {f"127.0.0.1:{dead_port()}": 1}}})
    gw = gateway_factory(doc, http2=True)
    status, headers, _ = gw.get("/grpctest?text=denied")
    assert status == 403                         # PERMISSION_DENIED
    assert headers["grpc-status"] == "7"
    status, _, body = gw.get("/detailed?text=denied")
    assert status == 403
    assert json.loads(body) == {"error": {"code": 7, "message": "not for you",
                                          "details": [{"note": "ask the admin"}]}}
    assert gw.get("/nomethod?text=x")[0] == 503        # no such method in the proto
    # over HTTP/2 too: the client is not a gRPC client, the answer stays HTTP
    with H2Client(gw.port) as c:
        assert c.request("GET", "/nomethod?text=x").status == 503
        r = c.request("GET", "/deadup?text=x")          # (after the request became gRPC)
        assert r.status == 502 and b"error_msg" in bytes(r.body)
        r = c.request("GET", "/grpctest?text=h2")
        assert r.status == 200 and json.loads(bytes(r.body))["text"] == "h2"


def test_deadline_becomes_grpc_timeout(gateway_factory, grpc_server):
    server = grpc_server()
    gw = gateway_factory(transcode_doc(server.addr, deadline=200))
    assert gw.get("/grpctest?text=sleep&count=1500")[0] == 504
    assert gw.get("/grpctest?text=sleep&count=10")[0] == 200


def test_admin_api_compiles_protos_and_guards_the_ones_routes_use(gateway_factory,
                                                                  grpc_server):
    server = grpc_server()
    aport = free_port()
    gw = gateway_factory({}, node=admin_node(aport, admin_key=[{"name": "a", "key": KEY}]))
    st, body = admin(aport, "PUT", "/apisix/admin/protos/1",
                     {"content": "syntax = \"proto3\"; message M { strin x = 1; }"}, key=KEY)
    assert st == 400 and body["error_msg"].startswith("invalid content: "), body
    assert "strin" in body["error_msg"]
    st, body = admin(aport, "PUT", "/apisix/admin/protos/1", {"content": PROTO_TEXT}, key=KEY)
    assert st in (200, 201), body
    # another proto imports it by id; a base64 descriptor set is accepted too
    st, body = admin(aport, "PUT", "/apisix/admin/protos/2", {"content": (
        'syntax = "proto3"; package other; import "1.proto";\n'
        "service S { rpc Get(echo.Msg) returns (echo.Inner); }")}, key=KEY)
    assert st in (200, 201), body
    fds = compile_proto(PROTO_TEXT).files
    raw = descriptor_pb2.FileDescriptorSet(file=fds).SerializeToString()
    st, body = admin(aport, "PUT", "/apisix/admin/protos/3",
                     {"content": base64.b64encode(raw).decode()}, key=KEY)
    assert st in (200, 201), body
    st, body = admin(aport, "PATCH", "/apisix/admin/protos/3", {"desc": "x"}, key=KEY)
    assert (st, body["error_msg"]) == (405, "not supported `PATCH` method for proto")
    route = transcode_doc(server.addr)["routes"][0]
    st, body = admin(aport, "PUT", "/apisix/admin/routes/1", route, key=KEY)
    assert st in (200, 201), body
    st, body = admin(aport, "DELETE", "/apisix/admin/protos/1", key=KEY)
    assert (st, body) == (400, {"error_msg": "can not delete this proto, route [1] is still "
                                             "using it now"})
    deadline = time.monotonic() + 5           # the route is live on the worker
    while gw.get("/grpctest?text=live")[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    st, _ = admin(aport, "DELETE", "/apisix/admin/protos/3", key=KEY)
    assert st == 200
