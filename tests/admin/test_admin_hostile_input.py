"""Hostile Admin API input: deep nesting, unreachable ids, out-of-range numbers, YAML bombs.
Each is a clear 400 in APISIX's shape, nothing is stored, no traceback reaches the log and
the node keeps serving."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pylon.config.persist import write_atomically
from tests.admin.test_admin_gateway import admin_node, wait_status
from tests.harness import Gateway, Upstream, free_port, route_doc

KEY = "hostile-input-admin-key-0123456789"
UP = {"nodes": {"127.0.0.1:1": 1}, "type": "roundrobin"}


class Node:
    def __init__(self, gw: Gateway, port: int) -> None:
        self.gw, self.port = gw, port

    def call(self, method: str, path: str, raw: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request(method, "/apisix/admin" + path, body=raw,
                      headers={"X-API-KEY": KEY, **(headers or {})})
            r = c.getresponse()
            data = r.read()
            return r.status, json.loads(data) if data else None
        finally:
            c.close()

    def put(self, path: str, body: Any) -> tuple[int, Any]:
        return self.call("PUT", path, json.dumps(body).encode())


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    up = Upstream("u")
    port = free_port()
    gw = Gateway(str(tmp_path_factory.mktemp("hostile")), route_doc([up], uri="/alive"),
                 node=admin_node(port, admin_key=[{"name": "ops", "key": KEY}]))
    gw.start()
    yield Node(gw, port)
    gw.stop()
    up.close()


@pytest.fixture(autouse=True)
def _still_serving(node: Node) -> Iterator[None]:
    start = len(node.gw.log())
    yield
    assert node.gw.get("/alive")[0] == 200
    log = node.gw.log()[start:]
    assert "Traceback" not in log and "exited" not in log, log[-3000:]


DOTS = {"error_msg": 'invalid configuration: property "id" validation failed: '
                     '"." and ".." are not allowed'}


def nested(depth: int, kind: str = "object") -> bytes:
    if kind == "object":
        return b'{"a":' * depth + b"1" + b"}" * depth
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("method,path", [
    ("PUT", "/routes/deep"), ("POST", "/routes"), ("PATCH", "/routes/r1"),
    ("PUT", "/upstreams/deep"), ("PUT", "/consumers"), ("PUT", "/global_rules/deep"),
    ("PUT", "/plugin_metadata/http-logger"), ("POST", "/batch"),
    ("POST", "/configs/validate"), ("PUT", "/secrets/vault/deep"),
])
@pytest.mark.parametrize("shape", ["object", "array"])
def test_deeply_nested_json_is_a_clear_400(node: Node, method: str, path: str, shape: str):
    status, body = node.call(method, path, nested(1000, shape))
    assert status == 400, body
    assert body["error_msg"].startswith("invalid request body: ")
    assert "nested deeper than 100 levels" in body["error_msg"]


@pytest.mark.parametrize("depth", [99, 100, 101, 500, 5000])
def test_nesting_inside_a_route_is_capped_cheaply(node: Node, depth: int):
    inner = b'{"a":' * (depth - 4) + b"1" + b"}" * (depth - 4)     # the route: 4 levels
    raw = (b'{"uri": "/deep", "upstream": {"nodes": {"127.0.0.1:1": 1}},'
           b' "plugins": {"proxy-rewrite": {"headers": {"set": ' + inner + b"}}}}")
    t0 = time.monotonic()
    status, body = node.call("PUT", "/routes/deep", raw)
    assert time.monotonic() - t0 < 2
    if depth <= 100:
        assert status == 400 and "invalid request body" not in body["error_msg"], body
    else:
        assert (status, body["error_msg"]) == (
            400, "invalid request body: objects and arrays nested deeper than 100 levels")
    assert node.call("GET", "/routes/deep")[0] == 404


def test_patch_sub_path_cannot_build_a_deep_object(node: Node):
    node.put("/routes/sub", {"uri": "/sub", "upstream": UP})
    status, body = node.call("PATCH", "/routes/sub/labels" + "/a" * 300, b'"x"')
    assert status == 400 and "nested deeper than 100 levels" in body["error_msg"], body
    assert "a" not in node.call("GET", "/routes/sub")[1]["value"].get("labels", {})


@pytest.mark.parametrize("oid", [".", ".."])
@pytest.mark.parametrize("kind,body", [
    ("routes", {"uri": "/dot", "upstream": UP}), ("upstreams", UP),
    ("services", {"upstream": UP}), ("plugin_configs", {"plugins": {}}),
    ("global_rules", {"plugins": {}}), ("consumer_groups", {"plugins": {}}),
])
def test_ids_dot_and_dotdot_are_refused_in_body_and_url(node: Node, oid: str, kind: str,
                                                         body: dict[str, Any]):
    status, reply = node.put(f"/{kind}", {**body, "id": oid})
    assert status == 400, reply
    assert reply == DOTS
    status, reply = node.put(f"/{kind}/{oid}", body)
    assert status in (400, 404), reply
    listed = node.call("GET", f"/{kind}")[1]["list"]
    assert [i for i in listed if i["value"].get("id") in (".", "..")] == []


def test_credential_put_without_id_is_a_400(node: Node):
    node.put("/consumers", {"username": "jack"})
    assert node.put("/consumers/jack/credentials", {}) == (
        400, {"error_msg": "missing credential id"})


def test_secret_and_credential_ids_dot_are_refused(node: Node):
    node.put("/consumers", {"username": "jack"})
    # a URL's dot segments are resolved before routing; a batch path is taken as written
    for path, body in (("consumers/jack/credentials/..", {"plugins": {}}),
                       ("secrets/vault/.", {"uri": "http://127.0.0.1:8200", "prefix": "kv",
                                            "token": "t"})):
        status, reply = node.call("POST", "/batch", json.dumps({"operations": [
            {"method": "PUT", "path": f"/apisix/admin/{path}", "body": body}]}).encode())
        assert status == 400 and reply["error_msg"].endswith(DOTS["error_msg"]), reply


@pytest.mark.parametrize("field,value", [
    ("priority", int("9" * 400)), ("priority", -int("9" * 400)), ("priority", 2**53),
], ids=["400-digits", "minus-400-digits", "2**53"])
def test_out_of_range_integers_are_refused(node: Node, field: str, value: int):
    status, body = node.put("/routes/big", {"uri": "/big", "upstream": UP, field: value})
    assert status == 400, body
    assert body["error_msg"].startswith("invalid request body: integer ")
    assert "out of range" in body["error_msg"]
    assert node.call("GET", "/routes/big")[0] == 404


@pytest.mark.parametrize("body", [
    {"nodes": {"127.0.0.1:1": 10**30}, "type": "roundrobin"},
    {"nodes": [{"host": "127.0.0.1", "port": 10**20, "weight": 1}]},
    {"nodes": {"127.0.0.1:1": 1}, "retries": 10**19},
])
def test_out_of_range_numbers_in_an_upstream_are_refused(node: Node, body: dict[str, Any]):
    status, reply = node.put("/upstreams/big", body)
    assert status == 400 and "out of range" in reply["error_msg"], reply


def test_largest_exact_integer_is_accepted(node: Node):
    status, body = node.put("/routes/edge", {"uri": "/edge", "upstream": UP,
                                             "priority": 2**53 - 1})
    assert status in (200, 201), body
    assert node.call("DELETE", "/routes/edge")[0] == 200


@pytest.mark.parametrize("text,expect", [
    ("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)), "too many values"),
    ("routes:\n  - &r [*r]\n", "nested deeper"),
    ("routes:\n  ? [a]\n  : 1\n", "a key must be a scalar"),
    ("routes:\n" + "  " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", "nested deeper"),
    ("a: " + "[" * 200000 + "]" * 200000, "nested deeper"),
    ("- " * 200000 + "x\n", "indented deeper"),
], ids=["alias-bomb", "alias-cycle", "list-as-key", "3000-maps", "200k-flow", "200k-seq"])
def test_hostile_yaml_to_configs_validate_is_a_400(node: Node, text: str, expect: str):
    t0 = time.monotonic()
    status, body = node.call("POST", "/configs/validate", text.encode(),
                             headers={"Content-Type": "application/yaml"})
    assert time.monotonic() - t0 < 2
    assert status == 400 and expect in body["error_msg"], body


def wait_count(gw: Gateway, text: str, more_than: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while gw.log().count(text) <= more_than:
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{gw.log()[-2000:]}"
        time.sleep(0.05)


def test_deep_yaml_in_the_standalone_file_keeps_the_last_good_config(node: Node):
    gw = node.gw
    good = Path(gw.doc_path).read_bytes()
    msg = "nested deeper than 100 levels"
    try:
        for n, deep in enumerate(("{a: " * 1000 + "1" + "}" * 1000,
                                  "[" * 1000 + "]" * 1000, "{a: " * 150 + "1" + "}" * 150)):
            before = gw.log().count(msg)
            write_atomically(gw.doc_path, f"routes:\n  - id: r{n}\n    uri: /x\n"
                                          f"    labels: {deep}\n#END\n".encode())
            wait_count(gw, msg, before)
            assert gw.get("/alive")[0] == 200
    finally:
        write_atomically(gw.doc_path, good)
    wait_status(gw, "/alive", 200)
