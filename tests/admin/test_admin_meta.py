"""pylon.admin.meta: the Admin API's non-resource endpoints, called directly (no transport)."""

from __future__ import annotations

import asyncio
import json
import types
from typing import Any

import jsonschema
import pytest

from pylon.admin.app import answer
from pylon.admin.checks import validate_object
from pylon.admin.meta import PLUGIN_ATTRS, MetaContext, handle_meta
from pylon.admin.openapi import openapi_document
from pylon.model.kinds import ALIASES, KINDS
from pylon.model.schemas import resource_schema
from pylon.proxy.registry import PluginSpec, Registry

UP = {"type": "roundrobin", "nodes": {"127.0.0.1:1980": 1}}
PEM = "-----BEGIN CERTIFICATE-----\n" + "A" * 200 + "\n-----END CERTIFICATE-----"
KEY = "-----BEGIN PRIVATE KEY-----\n" + "B" * 200 + "\n-----END PRIVATE KEY-----"


def call(method: str, path: str, args: dict[str, str] | None = None, body: Any = None,
         ctx: MetaContext | None = None, raw: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any] | None:
    segs = [s for s in path.split("/") if s]
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    return asyncio.run(answer(handle_meta(method, segs, args or {}, data,
                                          ctx or MetaContext(), headers=headers)))


def fake_registry(table: dict[str, dict[str, Any]]) -> Registry:
    """A registry of plugins made of ``name -> module attributes`` (no code)."""
    specs = []
    for name, attrs in table.items():
        mod = types.ModuleType(f"fake_{name}")
        for k, v in {"name": name, **attrs}.items():
            setattr(mod, k, v)
        specs.append(PluginSpec.from_module(mod, "test"))
    return Registry(specs)


#: kind -> (a valid object, an invalid one, the field path its rejection names)
EXAMPLES: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "routes": ({"uri": "/a/*", "methods": ["GET"], "hosts": ["a.com", "*.b.com"],
                "remote_addrs": ["10.0.0.0/8"], "vars": [["arg_v", "==", "1"]],
                "priority": 3, "upstream": UP, "labels": {"env": "prod"},
                "timeout": {"connect": 1, "send": 2, "read": 3}},
               {"uri": "/a", "upstream": {"nodes": [{"host": "h", "port": "x"}]}},
               "upstream.nodes[0].port"),
    "services": ({"name": "s", "hosts": ["a.com"], "upstream": UP, "enable_websocket": True},
                 {"hosts": [], "upstream": UP}, "hosts"),
    "upstreams": ({"type": "chash", "key": "remote_addr", "hash_on": "vars",
                   "nodes": [{"host": "10.0.0.1", "port": 80, "weight": 2}],
                   "keepalive_pool": {"size": 10}, "scheme": "https"},
                  {"nodes": UP["nodes"], "retries": -1}, "retries"),
    "consumers": ({"username": "jack_1", "desc": "d", "plugins": {}, "labels": {"a": "b"}},
                  {"username": "ja ck"}, "username"),
    "credentials": ({"name": "c", "plugins": {}}, {"name": "c", "secret": 1}, ""),
    "consumer_groups": ({"plugins": {}, "name": "g"}, {"name": "g"}, ""),
    "plugin_configs": ({"plugins": {}, "desc": "d"}, {"plugins": {}, "desc": 1}, "desc"),
    "global_rules": ({"plugins": {}}, {"plugins": []}, "plugins"),
    "ssls": ({"cert": PEM, "key": KEY, "snis": ["a.com", "*.b.com"]},
             {"cert": PEM, "key": KEY, "snis": ["a.com"], "status": 3}, "status"),
    "protos": ({"content": "syntax = \"proto3\";"}, {"content": ""}, "content"),
    "stream_routes": ({"server_port": 9100, "remote_addr": "127.0.0.1", "upstream": UP},
                      {"server_port": 0, "upstream": UP}, "server_port"),
    "secrets": ({"uri": "http://127.0.0.1:8200", "prefix": "kv/apisix", "token": "t"},
                {"uri": "http://127.0.0.1:8200", "prefix": "kv"}, ""),
    "plugin_metadata": ({"log_format": {"host": "$host"}}, {"id": 7}, "id"),
}


def test_every_kind_has_examples() -> None:
    assert set(EXAMPLES) == set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_schema_endpoint_accepts_the_good_and_rejects_the_bad(kind: str) -> None:
    status, schema = call("GET", f"schema/{kind}")  # type: ignore[misc]
    assert status == 200
    jsonschema.Draft7Validator.check_schema(schema)
    v = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
    good, bad, _path = EXAMPLES[kind]
    assert not list(v.iter_errors(good)), list(v.iter_errors(good))
    assert list(v.iter_errors(bad)), f"{kind}: schema accepts {bad}"
    # and the validator the node runs agrees
    assert validate_object(kind, good) is None
    assert validate_object(kind, bad) is not None


def test_singular_names_as_apisix() -> None:
    for alias, canon in ALIASES.items():
        assert call("GET", f"schema/{alias}") == (200, resource_schema(canon))
    assert call("GET", "schema/route")[1]["title"] == "Route"   # type: ignore[index]
    status, body = call("GET", "schema/nothing")  # type: ignore[misc]
    assert status == 404 and "nothing" in body["error_msg"]


@pytest.mark.parametrize("kind", ["routes", "services", "upstreams"])
def test_typed_schemas_agree_with_the_model(kind: str) -> None:
    """Objects the model refuses for reasons stated in __post_init__ are refused by the
    generated schema too."""
    v = jsonschema.Draft7Validator(resource_schema(kind),
                                   format_checker=jsonschema.FormatChecker())
    bad: dict[str, list[dict[str, Any]]] = {
        "routes": [{"upstream": UP}, {"uri": "/a", "uris": ["/b"]},
                   {"uri": "/a", "host": "a", "hosts": ["b"]},
                   {"uri": "/a", "methods": ["GET", "GET"]},
                   {"uri": "/a", "remote_addr": "nope"},
                   {"uri": "/a", "filter_func": "function() end"},
                   {"uri": "/a", "upstream": {"nodes": {"a": 1}, "type": "chash"}},
                   {"uri": "/a", "unknown": 1}],
        "services": [{"script": "x" * 20}, {"upstream": {}}],
        "upstreams": [{}, {"nodes": {"a": 1}, "pass_host": "rewrite"},
                      {"nodes": {"a": 1}, "discovery_type": "dns", "service_name": "a"},
                      {"service_name": "a"},
                      {"nodes": {"a": 1}, "tls": {"client_cert": "c"}},
                      {"nodes": {"a": 1}, "timeout": {"connect": 0, "send": 1, "read": 1}}],
    }[kind]
    for obj in bad:
        assert validate_object(kind, obj) is not None, obj
        assert list(v.iter_errors(obj)), f"schema accepts {obj}"


def test_schema_validate_good_bad_and_unknown() -> None:
    assert call("POST", "schema/validate/routes", body=EXAMPLES["routes"][0]) == (200, None)
    assert call("POST", "schema/validate/route", body=EXAMPLES["routes"][0]) == (200, None)
    for kind, (good, bad, path) in EXAMPLES.items():
        assert call("POST", f"schema/validate/{kind}", body=good) == (200, None), kind
        status, body = call("POST", f"schema/validate/{kind}", body=bad)  # type: ignore[misc]
        assert status == 400 and set(body) == {"error_msg"}, (kind, body)
        if path:
            assert body["error_msg"].startswith(path + ": "), (kind, body)
    assert call("POST", "schema/validate/nothing", body={}) == \
        (404, {"error_msg": "Unsupported resource type: nothing"})
    status, body = call("POST", "schema/validate/routes", raw=b"{nope")  # type: ignore[misc]
    assert status == 400 and body["error_msg"].startswith("invalid request body")
    assert call("POST", "schema/validate/routes")[0] == 400  # type: ignore[index]
    assert call("GET", "schema/validate/routes")[0] == 404  # type: ignore[index]


def test_schema_validate_checks_what_the_compiler_would_refuse() -> None:
    status, body = call("POST", "schema/validate/routes",  # type: ignore[misc]
                        body={"uri": "/a", "upstream": UP, "vars": [["arg_x", "~~", "("]]})
    assert status == 400 and body["error_msg"].startswith("vars: bad regex")
    status, body = call("POST", "schema/validate/routes",  # type: ignore[misc]
                        body={"uri": "/a", "upstream": UP, "plugins": {"nope": {}}})
    assert (status, body) == (400, {"error_msg": "plugins: unknown plugin [nope]"})
    reg = fake_registry({"limit-count": {
        "priority": 1002, "schema": {"type": "object", "required": ["count"]}}})
    ctx = MetaContext(plugins=lambda: reg)
    assert call("POST", "schema/validate/routes", ctx=ctx, body={
        "uri": "/a", "upstream": UP, "plugins": {"limit-count": {"count": 1}}}) == (200, None)
    status, body = call("POST", "schema/validate/routes", ctx=ctx,  # type: ignore[misc]
                        body={"uri": "/a", "upstream": UP, "plugins": {"limit-count": {}}})
    assert status == 400 and body["error_msg"].startswith("plugins.limit-count: ")


GOOD_DOC: dict[str, Any] = {
    "upstreams": [{"id": "u1", **UP}],
    "services": [{"id": "s1", "upstream_id": "u1", "hosts": ["a.com"]}],
    "routes": [{"id": "r1", "uri": "/a", "service_id": "s1"},
               {"uri": "/b", "upstream_id": "u1"}],
    "consumers": [{"username": "jack"}, {"id": "jack/credentials/c1", "plugins": {}}],
    "global_rules": [{"id": "g1", "plugins": {}}],
    "secrets": [{"id": "vault/1", "uri": "http://127.0.0.1:8200", "prefix": "kv",
                 "token": "t"}],
    "protos": [{"id": "p1", "content": "syntax = \"proto3\";"}],
}


def test_configs_validate_a_good_document() -> None:
    assert call("POST", "configs/validate", body=GOOD_DOC) == (200, None)
    import yaml

    text = yaml.safe_dump(GOOD_DOC).encode()
    assert call("POST", "configs/validate", raw=text,
                headers={"content-type": "application/yaml"}) == (200, None)


def test_configs_validate_lists_every_rejection() -> None:
    doc = {
        "upstreams": [{"id": "u1", **UP}, {"id": "u2", "nodes": {"a": "x"}}],
        "routes": [{"id": "r1", "uri": "/a", "upstream_id": "u2"},
                   {"id": "r2", "uri": "/b", "upstream_id": "u1", "vars": [1]},
                   {"id": "r3", "uri": "/c", "upstream_id": "u1", "plugins": {"nope": {}}}],
        "consumers": [{"username": "a b"}, {"username": "ok"}, {"username": "ok"}],
        "secrets": [{"id": "1", "uri": "http://v"}],
        "ssls": [{"id": "s", "cert": "short", "key": "short", "snis": ["a.com"]}],
        "bogus": [],
    }
    status, body = call("POST", "configs/validate", body=doc)  # type: ignore[misc]
    assert status == 400
    paths = [e["path"] for e in body["errors"]]
    for p in ("bogus", "upstreams[1].nodes[...]", "routes[0].upstream_id", "routes[1]",
              "routes[2].plugins", "consumers[0].username", "consumers[2]", "secrets[0].id",
              "ssls[0].cert"):
        assert p in paths, (p, paths)
        assert p + ": " in body["error_msg"]
    assert body["error_msg"].startswith("Configuration validation failed: ")
    dup = next(e for e in body["errors"] if e["path"] == "consumers[2]")
    assert dup == {"resource_type": "consumers", "index": 2, "id": "ok", "path": "consumers[2]",
                   "error": "found duplicate username ok in consumers"}
    route = next(e for e in body["errors"] if e["path"] == "routes[0].upstream_id")
    assert route["resource_type"] == "routes" and route["index"] == 0 and route["id"] == "r1"


def test_configs_validate_accepts_apisix_conf_versions() -> None:
    doc = {**GOOD_DOC, "routes_conf_version": 3, "upstreams_conf_version": 1}
    assert call("POST", "configs/validate", body=doc) == (200, None)
    status, body = call("POST", "configs/validate",  # type: ignore[misc]
                        body={**GOOD_DOC, "routes_conf_version": "x"})
    assert status == 400
    assert body["errors"] == [{"resource_type": "routes", "index": None, "id": None,
                               "path": "routes_conf_version",
                               "error": "routes_conf_version must be a number"}]


def test_configs_validate_refusals() -> None:
    assert call("POST", "configs/validate") == \
        (400, {"error_msg": "invalid request body: empty request body"})
    assert call("POST", "configs/validate", body=[1])[0] == 400  # type: ignore[index]
    status, body = call("POST", "configs/validate", raw=b"{: nope",  # type: ignore[misc]
                        headers={"content-type": "application/yaml"})
    assert status == 400 and body["error_msg"].startswith("invalid yaml request body")
    assert call("GET", "configs/validate") == (404, {"error_msg": "not found"})


def test_plugins_today_none_are_loaded() -> None:
    assert call("GET", "plugins/list") == (200, [])
    assert call("GET", "plugins/list", {"subsystem": "stream"}) == (200, [])
    assert call("GET", "plugins/list", {"subsystem": "x"}) == \
        (400, {"error_msg": "invalid subsystem passed"})
    assert call("GET", "plugins/limit-count") == \
        (404, {"error_msg": "plugin not found in subsystem http"})
    assert call("GET", "plugins/limit-count", {"subsystem": "stream"}) == \
        (404, {"error_msg": "plugin not found in subsystem stream"})
    assert call("GET", "plugins", {"subsystem": "asdf"}) == \
        (400, {"error_msg": "unsupported subsystem: asdf"})
    assert call("GET", "plugins", {"all": "true"}) == (200, {})
    assert call("GET", "plugins") == (404, {"error_msg": "plugin not found in subsystem http"})
    assert call("GET", "schema/plugins/limit-count")[0] == 404  # type: ignore[index]


def test_plugins_with_a_loaded_table() -> None:
    schema = {"type": "object", "properties": {"count": {"type": "integer"}}}
    table = {"key-auth": {"priority": 2500, "type": "auth", "version": 0.1,
                          "schema": {"type": "object"},
                          "consumer_schema": {"type": "object", "required": ["key"]}},
             "limit-count": {"priority": 1002, "schema": schema},
             "echo": {"priority": 412, "schema": {"type": "object"}}}
    reg = fake_registry(table)
    ctx = MetaContext(plugins=lambda: reg)
    published = reg.table()
    schema = published["limit-count"]["schema"]       # with APISIX's _meta added
    assert call("GET", "plugins/list", ctx=ctx) == (200, ["key-auth", "limit-count", "echo"])
    assert call("GET", "plugins/limit-count", ctx=ctx) == (200, schema)
    assert call("GET", "schema/plugins/limit-count", ctx=ctx) == (200, schema)
    assert call("GET", "schema/limit-count", ctx=ctx) == (200, schema)
    assert call("GET", "plugins/key-auth", {"schema_type": "consumer"}, ctx=ctx) == \
        (200, {"type": "object", "required": ["key"]})
    assert call("GET", "plugins/echo", {"schema_type": "metadata"}, ctx=ctx) == \
        (400, {"error_msg": "not found schema"})
    status, body = call("GET", "plugins", {"all": "true"}, ctx=ctx)  # type: ignore[misc]
    assert status == 200 and set(body) == set(table)
    assert body["key-auth"] == {k: v for k, v in published["key-auth"].items()
                                if k in PLUGIN_ATTRS}
    assert "source" not in body["limit-count"]          # not an APISIX attribute


def test_plugins_reload() -> None:
    calls: list[int] = []

    async def reload() -> None:
        calls.append(1)

    ctx = MetaContext(reload_plugins=reload)
    assert call("PUT", "plugins/reload", ctx=ctx) == (200, "done")
    assert calls == [1]
    assert call("PUT", "plugins/reload") == (200, "done")      # nothing to reload
    assert call("GET", "plugins/reload") == (405, {
        "error_msg": "please use PUT method to reload the plugins, GET method is not allowed."})

    async def broken() -> None:
        raise RuntimeError("boom")

    status, body = call("PUT", "plugins/reload",  # type: ignore[misc]
                        ctx=MetaContext(reload_plugins=broken))
    assert status == 503 and "boom" in body["error_msg"]


def test_explain_goes_to_the_context() -> None:
    seen: list[dict[str, str]] = []

    async def explain(args: dict[str, str]) -> tuple[int, Any]:
        seen.append(args)
        return 200, {"matched": None, "candidates": [], "request": {}}

    ctx = MetaContext(explain=explain)
    assert call("GET", "explain", {"uri": "/a", "header_x": "1"}, ctx=ctx) == \
        (200, {"matched": None, "candidates": [], "request": {}})
    assert seen == [{"uri": "/a", "header_x": "1"}]
    assert call("GET", "explain", {}, ctx=ctx) == (400, {"error_msg": "missing uri"})
    assert call("GET", "explain", {"uri": "/a"})[0] == 503  # type: ignore[index]


def test_explain_with_the_real_explainer() -> None:
    from pylon.config.explain import DocExplainer

    doc = {"routes": [{"id": "r1", "uri": "/a/*", "upstream": UP}]}
    ctx = MetaContext(explain=DocExplainer(lambda: doc, "radixtree_host_uri"))
    status, body = call("GET", "explain", {"uri": "/a/b"}, ctx=ctx)  # type: ignore[misc]
    assert status == 200 and body["matched"]["route_id"] == "r1"


def test_openapi_json() -> None:
    status, body = call("GET", "openapi.json")  # type: ignore[misc]
    assert status == 200 and body is openapi_document()
    assert body["openapi"] == "3.0.3"


def test_not_a_meta_path() -> None:
    for path in ("routes/1", "routes", "upstreams/u1/nodes", "schemas"):
        assert call("GET", path) is None
    assert asyncio.run(handle_meta("GET", [], {}, b"", MetaContext())) is None
