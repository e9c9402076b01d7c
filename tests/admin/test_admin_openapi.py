"""The OpenAPI document of the Admin API: valid, and true of what answers (schemathesis).

* A real ``pylon start`` with the Admin API enabled is fuzzed from ``openapi_document()``
  (loaded directly: the node serves ``/apisix/admin/openapi.json`` only once ``meta`` is
  wired into the app; until then its meta paths answer a documented 404).
* The meta endpoints are fuzzed in process too, through ``handle_meta`` behind a WSGI shim
  (with a plugin table and the real explainer), so they are checked before the wiring.

Checks: no 5xx, documented status codes, responses that conform to their schemas.  Bounded:
``EXAMPLES`` per operation, deterministic generation, no coverage or stateful phase.

Excluded from the live run by tag: ``explain`` (the node's app answers 503 until it is given
an explainer; the in-process run covers it).  ``batch`` was pending too and conforms now.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate as validate_spec

from pylon.admin.openapi import COMPONENT, openapi_document, to_oas30
from pylon.model.kinds import KINDS
from pylon.model.schemas import resource_schema
from tests.harness import Gateway, free_port, wait_port

KEY = "schemathesis-admin-key-0123456789"
EXAMPLES = 10
#: operations excluded from the live run until the node serves them (by OpenAPI tag)
PENDING_TAGS = ["explain"]


def test_the_document_is_valid_openapi_3_0() -> None:
    doc = openapi_document()
    assert doc is openapi_document()           # built once
    validate_spec(copy.deepcopy(doc))
    assert doc["openapi"] == "3.0.3"
    comps = doc["components"]["schemas"]
    for kind in KINDS:
        assert comps[COMPONENT[kind]] == to_oas30(resource_schema(kind))
    p = doc["paths"]
    assert set(p["/apisix/admin/routes"]) == {"get", "put", "post"}
    assert set(p["/apisix/admin/consumers"]) == {"get", "put"}        # no POST: by username
    assert set(p["/apisix/admin/routes/{id}"]) == {"get", "put", "patch", "delete"}
    assert "patch" in p["/apisix/admin/routes/{id}/{sub_path}"]
    assert set(p["/apisix/admin/secrets/{manager}/{id}"]) == {"get", "put", "patch", "delete"}
    assert "get" in p["/apisix/admin/consumers/{username}/credentials/{id}"]
    assert "post" in p["/apisix/admin/batch"]
    assert doc["components"]["securitySchemes"]["adminKey"] == \
        {"type": "apiKey", "in": "header", "name": "X-API-KEY"}
    params = {x.get("$ref", "").rsplit("/", 1)[-1]
              for x in p["/apisix/admin/routes"]["get"]["parameters"]}
    assert params == {"page", "page_size", "name", "label", "uri", "filter"}
    assert doc["components"]["parameters"]["page_size"]["schema"] == \
        {"type": "integer", "minimum": 10, "maximum": 500}


def test_oas30_conversion() -> None:
    s = {"type": "object", "properties": {"const": {"const": 1},
                                          "n": {"type": "number", "exclusiveMinimum": 0}},
         "propertyNames": {"pattern": "x"}, "additionalProperties": {"exclusiveMaximum": 5}}
    assert to_oas30(s) == {
        "type": "object",
        "properties": {"const": {"enum": [1]},
                       "n": {"type": "number", "minimum": 0, "exclusiveMinimum": True}},
        "additionalProperties": {"maximum": 5, "exclusiveMaximum": True}}


def _config(**over: Any) -> schemathesis.Config:
    raw: dict[str, Any] = {
        "generation": {"mode": "all", "max-examples": EXAMPLES, "deterministic": True,
                       "with-security-parameters": False, "allow-x00": False},
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
        "checks": {"enabled": False,
                   "not_a_server_error": {"enabled": True},
                   "status_code_conformance": {"enabled": True},
                   "response_schema_conformance": {"enabled": True}},
        "headers": {"X-API-KEY": KEY},
        "suppress-health-check": ["all"],
        "request-timeout": 10,
    }
    for k, v in over.items():
        raw[k] = {**raw.get(k, {}), **v}
    return schemathesis.Config.from_dict(raw)


SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))
LIVE = schemathesis.openapi.from_dict(openapi_document(), config=_config()) \
    .exclude(tag=PENDING_TAGS)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    doc: dict[str, Any] = {
        "upstreams": [{"id": "u1", "nodes": {"127.0.0.1:1980": 1}}],
        "services": [{"id": "s1", "upstream_id": "u1"}],
        "routes": [{"id": "1", "uri": "/a", "upstream_id": "u1"}],
        "consumers": [{"username": "jack"}],
    }
    gw = Gateway(str(tmp_path_factory.mktemp("admin-openapi")), doc, node={
        "pylon": {"enable_admin": True},
        "deployment": {"admin": {"admin_listen": {"ip": "127.0.0.1", "port": port},
                                 "admin_key": [{"name": "admin", "key": KEY,
                                                "role": "admin"}]}}})
    gw.start()
    try:
        wait_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        gw.stop()


@LIVE.parametrize()
@SETTINGS
def test_live_node_conforms(case: schemathesis.Case, node: str) -> None:
    case.call_and_validate(base_url=node, headers={"X-API-KEY": KEY})


# -- the meta endpoints, in process (until they are wired into the node's app) ---------------
META_TAGS = ["schema", "configs", "plugins", "openapi", "explain"]
META = schemathesis.openapi.from_dict(openapi_document(), config=_config()) \
    .include(tag=META_TAGS)
_PLUGINS = {"limit-count": {"priority": 1002, "version": 0.4,
                            "schema": {"type": "object", "required": ["count"],
                                       "properties": {"count": {"type": "integer"}}}}}
_DOC = {"upstreams": [{"id": "u1", "nodes": {"127.0.0.1:1980": 1}}],
        "routes": [{"id": "1", "uri": "/a/*", "upstream_id": "u1"},
                   {"id": "2", "uri": "/a/b", "upstream_id": "u1", "methods": ["POST"]}]}


def _meta_wsgi() -> Any:
    """``handle_meta`` behind a minimal WSGI shim, the way ``AdminApp`` will call it."""
    import asyncio
    from urllib.parse import parse_qsl

    import msgspec

    from pylon.admin.app import answer
    from pylon.admin.meta import MetaContext, handle_meta
    from pylon.config.explain import DocExplainer
    from tests.admin.test_admin_meta import fake_registry

    async def reload() -> None:
        return None

    plugins = fake_registry(_PLUGINS)
    ctx = MetaContext(plugins=lambda: plugins, reload_plugins=reload,
                      explain=DocExplainer(lambda: _DOC, "radixtree_host_uri"))

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        size = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(size) if size else b""
        headers = {k[5:].lower().replace("_", "-"): v for k, v in environ.items()
                   if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        segs = [s for s in path[len("/apisix/admin"):].split("/") if s]
        args = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        reply = asyncio.run(answer(handle_meta(environ["REQUEST_METHOD"], segs, args, body,
                                               ctx, headers=headers)))
        status, out = reply if reply is not None else (404, {"error_msg": "not found"})
        payload = b"" if out is None else msgspec.json.encode(out)
        start_response(f"{status} -", [("Content-Type", "application/json"),
                                       ("Content-Length", str(len(payload))),
                                       ("X-API-VERSION", "v3")])
        return [payload]

    return app


@pytest.fixture(scope="module")
def meta_app() -> Any:
    return _meta_wsgi()


@META.parametrize()
@SETTINGS
def test_meta_endpoints_conform(case: schemathesis.Case, meta_app: Any) -> None:
    case.call_and_validate(app=meta_app, headers={"X-API-KEY": KEY})
