"""Fuzz (hypothesis): random JSON bodies to every Admin API kind and method of a real node,
and random ``vars`` expressions to the router's compiler.

* Admin API: never a 5xx, never a traceback in the node's log, and the node keeps serving.
* ``compile_expr``: any value either compiles or raises ``ExprError`` -- nothing else -- and
  a compiled predicate evaluates without raising, whatever the variables hold.

Bounded in CI (200 examples each); ``PYLON_SLOW=1`` runs 3000.
"""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pylon.routing.expr import ExprError, compile_expr
from tests.admin.test_admin_gateway import admin_node
from tests.harness import Gateway, Upstream, free_port, route_doc

EXAMPLES = 3000 if os.environ.get("PYLON_SLOW") == "1" else 200
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
KEY = "fuzz-admin-key-0123456789abcdef"
pytestmark = pytest.mark.timeout(3600 if EXAMPLES > 200 else 300)

KINDS = ["routes", "services", "upstreams", "consumers", "consumer_groups", "plugin_configs",
         "global_rules", "ssls", "protos", "stream_routes", "secrets/vault",
         "plugin_metadata", "consumers/jack/credentials"]
FIELDS = ["id", "uri", "uris", "host", "hosts", "methods", "priority", "vars", "plugins",
          "upstream", "upstream_id", "service_id", "plugin_config_id", "nodes", "type",
          "timeout", "retries", "retry_timeout", "labels", "name", "desc", "status",
          "enable_websocket", "username", "group_id", "hash_on", "key", "checks", "scheme",
          "pass_host", "upstream_host", "keepalive_pool", "tls", "cert", "snis", "content",
          "remote_addrs", "create_time", "update_time", "operations", "method", "path",
          "body", "connect", "send", "read", "weight", "port", "uri", "prefix", "token"]
PLUGINS = ["proxy-rewrite", "key-auth", "basic-auth", "jwt-auth", "limit-count", "limit-req",
           "ip-restriction", "response-rewrite", "cors", "redirect", "traffic-split",
           "http-logger", "request-validation", "mocking", "fault-injection", "no-such"]
IDS = ["1", "x", "r-1", ".", "..", "a" * 65, "", "%2e%2e", "a/b", "jack", "http-logger",
       "key-auth"]
WORDS = ["/", "/*", ".", "..", "*", "GET", "roundrobin", "chash", "127.0.0.1:1", "http",
         "vars", "AND", "==", "~~", "arg_x", "[", "{", "\x00", "é", "$uri"]

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70), st.integers(-3, 70000),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
    st.sampled_from(WORDS + FIELDS + PLUGINS + IDS))
keys = st.one_of(st.sampled_from(FIELDS + PLUGINS), st.text(max_size=6))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(keys, inner, max_size=5)),
    max_leaves=30)
bodies = st.one_of(
    st.dictionaries(keys, json_values, max_size=8),
    st.fixed_dictionaries({}, optional={
        "id": st.sampled_from(IDS), "uri": st.sampled_from(WORDS), "priority": scalars,
        "plugins": st.dictionaries(st.sampled_from(PLUGINS), json_values, max_size=2),
        "upstream": st.dictionaries(keys, json_values, max_size=4),
        "nodes": json_values, "vars": json_values, "username": st.sampled_from(IDS)}),
    json_values)
raw_bodies = st.one_of(bodies.map(lambda b: json.dumps(b).encode()),
                       st.binary(max_size=64),
                       st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n))
requests = st.tuples(
    st.sampled_from(["PUT", "POST", "PATCH"]), st.sampled_from(KINDS),
    st.one_of(st.none(), st.sampled_from(IDS)),
    st.one_of(st.just(""), st.sampled_from(["/plugins", "/upstream/nodes", "/labels/a",
                                            "/uri", "/a/b/c"])),
    raw_bodies)


class Client:
    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        for attempt in (0, 1):
            try:
                self.conn.request(method, "/apisix/admin" + path, body=body,
                                  headers={"X-API-KEY": KEY})
                r = self.conn.getresponse()
                data = r.read()
                if r.will_close:
                    self.conn.close()
                return r.status, data
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()                   # the server closed an idle keep-alive
                if attempt:
                    raise
        raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Client]]:
    up = Upstream("u")
    port = free_port()
    gw = Gateway(str(tmp_path_factory.mktemp("fuzz")), route_doc([up], uri="/alive"),
                 node=admin_node(port, admin_key=[{"name": "ops", "key": KEY}]))
    gw.start()
    client = Client(port)
    client.call("PUT", "/consumers", b'{"username": "jack"}')
    yield gw, client
    gw.stop()
    up.close()


def test_random_admin_bodies_never_answer_5xx_nor_log_a_traceback(node):
    gw, client = node

    @FUZZ
    @given(requests)
    # shapes found before (each answered 500 once): always tried
    @example(("PUT", "consumers/jack/credentials", None, "", b"{}"))
    @example(("PUT", "routes", "1", "", b"[" * 1000 + b"]" * 1000))
    @example(("PUT", "routes", "1", "", b'{"uri": "/", "priority": 1' + b"0" * 400 + b"}"))
    @example(("PATCH", "routes", "1", "/labels" + "/a" * 300, b'"x"'))
    def one(req: tuple[str, str, str | None, str, bytes]) -> None:
        method, kind, oid, sub, body = req
        path = f"/{kind}" + (f"/{oid}" if oid is not None else "") + (sub if oid else "")
        status, data = client.call(method, path, body)
        assert status < 500, (method, path, body[:300], status, data[:300])

    one()
    log = gw.log()
    assert "Traceback" not in log, log[-4000:]
    assert gw.get("/alive")[0] == 200
    assert client.call("GET", "/routes")[0] == 200


# -- vars expressions ------------------------------------------------------------------------
OPS = ["AND", "OR", "!AND", "!OR", "and", "==", "~=", ">", ">=", "<", "<=", "~~", "~*", "in",
       "has", "ipmatch", "!", "IN", "Has"]
VARS = ["arg_x", "http_x", "uri", "cookie_a", "post_arg.a", "post_arg.a[1]", "", "remote_addr"]
expr_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(),
    st.text(max_size=10), st.sampled_from(OPS + VARS + [
        "[", "(a", "a(?<n>b)", "\\", "*", "10.0.0.0/8", "::1/129", "1.2.3.4/33", "0x1F",
        " 1e3 ", "nan", "inf"]))
expressions = st.recursive(
    expr_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.tuples(st.sampled_from(VARS), st.sampled_from(OPS), inner).map(list),
        st.tuples(st.sampled_from(OPS[:5]), inner, inner).map(list),
        st.dictionaries(st.text(max_size=3), inner, max_size=2)),
    max_leaves=40)


def deep(depth: int, logic: bool) -> Any:
    e: Any = ["arg_x", "==", "1"]
    for _ in range(depth):
        e = ["AND", e, ["arg_y", "~=", "2"]] if logic else [e]
    return [e]


class Vars:
    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def var(self, name: str) -> Any:
        return self.values.get(name)


var_values = st.dictionaries(st.sampled_from(VARS), st.one_of(
    st.none(), st.text(max_size=8), st.sampled_from(["1", "01", "0x10", "1.2.3.4", "::1"]),
    st.lists(st.text(max_size=3), max_size=3)))


def check_expression(spec: Any, values: dict[str, Any]) -> None:
    try:
        pred = compile_expr(spec)
    except ExprError:
        return
    assert isinstance(pred(Vars(values)), bool)


@FUZZ
@given(expressions, var_values)
def test_random_vars_expressions_raise_only_expr_error(spec: Any, values: dict[str, Any]):
    check_expression(spec, values)


@FUZZ
@given(st.integers(0, 3000), st.booleans(), var_values)
def test_deeply_nested_vars_expressions_raise_only_expr_error(depth: int, logic: bool,
                                                              values: dict[str, Any]):
    check_expression(deep(depth, logic), values)
