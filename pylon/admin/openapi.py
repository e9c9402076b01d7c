"""The OpenAPI 3.0.3 description of the Admin API as Pylon serves it.

``openapi_document()`` builds it once (from the resource catalogue ``pylon.model.kinds`` and
the JSON Schemas of ``pylon.model.schemas``) and returns the same object afterwards: treat it
as read-only.  Served at ``GET /apisix/admin/openapi.json``.

The resource schemas are draft-07; OpenAPI 3.0 Schema Objects are a subset, so
they are converted here: numeric ``exclusiveMinimum`` becomes ``minimum`` +
``exclusiveMinimum: true``, ``const`` becomes a one-value ``enum``, and ``propertyNames`` /
``patternProperties`` (no 3.0 equivalent) are dropped -- label keys are still checked by the
node.  Request bodies reference the kinds' schemas; the ``value`` of a reply is described as
an object (it is the object as stored: as written, plus ``id`` and the timestamps).
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from ..model.kinds import ALIASES, CATALOGUE, ID_PATTERN, KINDS
from ..model.schemas import resource_schema

PREFIX = "/apisix/admin"
JSON = "application/json"

#: component name of each kind's schema
COMPONENT = {k.name: k.title for k in CATALOGUE}
SECRET_MANAGERS = ("vault", "aws", "gcp")
_SCHEMA_KEYS = ("additionalProperties", "items", "not")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf")
_DROPPED = ("propertyNames", "patternProperties", "$schema", "$id", "definitions",
            "dependencies", "examples", "if", "then", "else")


def to_oas30(node: Any) -> Any:
    """A draft-07 schema as an OpenAPI 3.0 Schema Object (see the module docstring)."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k in _DROPPED:
            continue
        if k == "const":
            out["enum"] = [v]
        elif k in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(v, bool):
            out["minimum" if k == "exclusiveMinimum" else "maximum"] = v
            out[k] = True
        elif k == "properties" and isinstance(v, dict):
            out[k] = {name: to_oas30(s) for name, s in v.items()}
        elif k in _SCHEMA_KEYS and isinstance(v, dict):
            out[k] = to_oas30(v)
        elif k in _SCHEMA_LISTS and isinstance(v, list):
            out[k] = [to_oas30(s) for s in v]
        else:
            out[k] = copy.deepcopy(v)
    return out


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "headers": {"X-API-VERSION": {
        "$ref": "#/components/headers/ApiVersion"}},
        "content": {JSON: {"schema": schema}}}


def _resp(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/responses/{name}"}


def _param(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/parameters/{name}"}


def _path_param(name: str, description: str, schema: dict[str, Any] | None = None
                ) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema or {"type": "string", "minLength": 1, "maxLength": 64,
                                 "pattern": ID_PATTERN}}


def _errors(*codes: int) -> dict[str, Any]:
    names = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
             405: "MethodNotAllowed", 413: "PayloadTooLarge", 503: "Unavailable"}
    return {str(c): _resp(names[c]) for c in codes}


_READ_ERRORS = (400, 401, 403, 404)
_WRITE_ERRORS = (400, 401, 403, 404, 413, 503)


def _kinds() -> list[dict[str, Any]]:
    """The served kinds (the catalogue, in its order), with what the paths need."""
    return [{"name": k.name, "kind": k.kind, "key": k.key_field, "post": k.post,
             "patch": k.patch, "two_part": k.two_part_id} for k in CATALOGUE]


def _schemas(kinds: list[dict[str, Any]]) -> dict[str, Any]:
    schemas: dict[str, Any] = {
        "Error": {"type": "object", "required": ["error_msg"],
                  "properties": {"error_msg": {"type": "string"},
                                 "description": {"type": "string"}}},
        "KeyNotFound": {"type": "object", "required": ["message"],
                        "properties": {"message": {"type": "string",
                                                   "example": "Key not found"}}},
        "Deleted": {"type": "object", "required": ["deleted", "key"],
                    "properties": {"deleted": {"type": "string", "example": "1"},
                                   "key": {"type": "string"}}},
        "AnyObject": {"type": "object", "description": "a JSON object"},
        "JSONSchema": {"type": "object", "description": "a JSON Schema (draft-07)"},
        "ValidationErrors": {
            "type": "object", "required": ["error_msg"],
            "properties": {
                "error_msg": {"type": "string"},
                "errors": {"type": "array", "items": {
                    "type": "object", "required": ["resource_type", "error"],
                    "properties": {
                        "resource_type": {"type": "string"},
                        "index": {"type": "integer", "nullable": True},
                        "id": {"type": "string", "nullable": True},
                        "path": {"type": "string"},
                        "error": {"type": "string"}}}}}},
        "StandaloneDocument": {
            "type": "object",
            "description": "APISIX standalone layout: one list per kind",
            "properties": {k: {"type": "array", "items": {"type": "object"}}
                           for k in KINDS if k != "credentials"}},
        "BatchRequest": {
            "type": "object", "required": ["operations"],
            "properties": {"operations": {
                "type": "array", "minItems": 1, "maxItems": 1000,
                "items": {"type": "object", "required": ["method", "path"],
                          "properties": {
                              "method": {"type": "string",
                                         "enum": ["PUT", "PATCH", "DELETE", "POST"]},
                              "path": {"type": "string",
                                       "description": "/routes/1 or /apisix/admin/routes/1"},
                              "body": {"description": "the operation's body"}}}}}},
        "BatchReply": {
            "type": "object", "required": ["results"],
            "properties": {"results": {"type": "array", "items": {
                "type": "object", "required": ["status"],
                "properties": {"status": {"type": "integer"},
                               "body": {"description": "what the operation alone answers"}}}}}},
        "ExplainReply": {
            "type": "object", "required": ["request", "matched", "candidates"],
            "properties": {
                "request": {"type": "object"},
                "matched": {"type": "object", "nullable": True},
                "candidates": {"type": "array", "items": {"type": "object"}},
                "not_listed": {"type": "integer"}}},
    }
    for k in kinds:
        comp = COMPONENT[k["name"]]
        schemas[comp] = to_oas30(resource_schema(k["name"]))
        # as written by the client (a typed kind may carry nulls the model reads as absent,
        # a document edited by hand may carry an integer id): an object, not the schema
        stored = {"type": "object", "description": f"the {k['kind']} as stored"}
        key = {"type": "string", "pattern": f"^/apisix/{_key_prefix(k['name'])}/"}
        schemas[comp + "Reply"] = {"type": "object", "required": ["key", "value"],
                                   "properties": {"key": key, "value": stored}}
        schemas[comp + "Node"] = {
            "type": "object", "required": ["key", "value", "createdIndex", "modifiedIndex"],
            "properties": {"key": key, "value": stored, "createdIndex": {"type": "integer"},
                           "modifiedIndex": {"type": "integer"}}}
        schemas[comp + "List"] = {
            "type": "object", "required": ["list", "total"],
            "properties": {"list": {"type": "array", "items": _ref(comp + "Node")},
                           "total": {"type": "integer", "minimum": 0}}}
    return schemas


def _key_prefix(name: str) -> str:
    return "consumers" if name == "credentials" else name


def _body(schema: dict[str, Any], description: str, required: bool = True) -> dict[str, Any]:
    return {"required": required, "description": description,
            "content": {JSON: {"schema": schema}}}


def _op(op_id: str, summary: str, tags: list[str], responses: dict[str, Any],
        params: list[dict[str, Any]] | None = None, body: dict[str, Any] | None = None,
        **extra: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": op_id, "summary": summary, "tags": tags}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = body
    op["responses"] = responses
    op.update(extra)
    return op


def _resource_paths(k: dict[str, Any]) -> dict[str, Any]:
    name, comp, kind, keyf = k["name"], COMPONENT[k["name"]], k["kind"], k["key"]
    title = comp
    tags = [name]
    ok = _json(_ref(comp + "Reply"), "stored: {key, value}")
    created = _json(_ref(comp + "Reply"), "created: {key, value}")
    node = _json(_ref(comp + "Node"), "{key, value, createdIndex, modifiedIndex}")
    listing = _json(_ref(comp + "List"), "{list: [...], total}")
    list_params = [_param(p) for p in ("page", "page_size", "name", "label", "uri", "filter")]
    write_params = [_param("ttl")]
    merge_body = _body(_ref("AnyObject"), "JSON merge patch (RFC 7386): objects merge, "
                       "null deletes a field, anything else replaces")
    sub_body = _body({"description": "the new value at the sub-path"},
                     "replaces the value at the sub-path (missing objects on the way are "
                     "created)")
    paths: dict[str, Any] = {}

    if name == "credentials":
        base = f"{PREFIX}/consumers/{{username}}/credentials"
        owner = _path_param("username", "the consumer")
        one = [owner, _path_param("id", "credential id")]
        paths[base] = {"get": _op("listCredentials", "List a consumer's credentials", tags,
                                  {"200": listing, **_errors(*_READ_ERRORS)},
                                  [owner, *list_params])}
        item = f"{base}/{{id}}"
    elif k["two_part"]:
        base = f"{PREFIX}/{name}"
        paths[base] = {"get": _op(f"list{title}s", f"List {name}", tags,
                                  {"200": listing, **_errors(*_READ_ERRORS)}, list_params)}
        one = [_path_param("manager", "secret manager",
                           {"type": "string", "enum": list(SECRET_MANAGERS)}),
               _path_param("id", f"{kind} id")]
        item = f"{base}/{{manager}}/{{id}}"
    else:
        base = f"{PREFIX}/{name}"
        pname = {"username": "username", "id": "id"}[keyf]
        if name == "plugin_metadata":
            pname = "plugin_name"
        one = [_path_param(pname, f"{kind} {keyf}")]
        keyed = {"allOf": [_ref(comp), {"required": [keyf]}]}
        ops: dict[str, Any] = {
            "get": _op(f"list{title}s", f"List {name}", tags,
                       {"200": listing, **_errors(*_READ_ERRORS)}, list_params),
            "put": _op(f"put{title}Keyed", f"Create or replace a {kind}, {keyf} in the body",
                       tags, {"200": ok, "201": created, **_errors(*_WRITE_ERRORS)},
                       write_params, _body(keyed, f"the {kind}, with its {keyf}")),
        }
        if k["post"]:
            ops["post"] = _op(f"post{title}", f"Create a {kind} with a generated id", tags,
                              {"201": created, **_errors(*_WRITE_ERRORS)}, write_params,
                              _body({"allOf": [_ref(comp), {"not": {"required": ["id"]}}]},
                                    f"the {kind}, without an id"))
        paths[base] = ops
        item = f"{base}/{{{pname}}}"

    # as APISIX: a credential, a proto or a stream route is replaced whole, never patched (405)
    patch_answers = _errors(400, 401, 403, 405) if not k["patch"] else \
        {"200": ok, **_errors(*_WRITE_ERRORS)}
    paths[item] = {
        "get": _op(f"get{title}", f"Get one {kind}", tags,
                   {"200": node, **_errors(*_READ_ERRORS)}, one),
        "put": _op(f"put{title}", f"Create or replace a {kind}", tags,
                   {"200": ok, "201": created, **_errors(*_WRITE_ERRORS)},
                   [*one, *write_params], _body(_ref(comp), f"the {kind}")),
        "patch": _op(f"patch{title}", f"Update fields of a {kind}", tags,
                     patch_answers, one, merge_body),
        "delete": _op(f"delete{title}", f"Delete a {kind}", tags,
                      {"200": _json(_ref("Deleted"), "{deleted, key}"),
                       **_errors(400, 401, 403, 404, 503)},
                      [*one, _param("force")]),
    }
    paths[item + "/{sub_path}"] = {
        "patch": _op(f"patch{title}SubPath", f"Replace one field of a {kind}", tags,
                     patch_answers,
                     [*one, _path_param("sub_path", "field name (a/b/c for nested ones)",
                                        {"type": "string", "minLength": 1,
                                         "pattern": r"^[A-Za-z0-9_.\-]+$"})],
                     sub_body),
    }
    return paths


def _meta_paths() -> dict[str, Any]:
    kind_names = sorted(ALIASES)
    resource_param = _path_param("resource", "resource kind, plural or APISIX singular",
                                 {"type": "string", "enum": kind_names})
    plugin_param = _path_param("plugin_name", "plugin name",
                               {"type": "string", "minLength": 1,
                                "pattern": r"^[a-zA-Z0-9_\-]+$"})
    subsystem = {"name": "subsystem", "in": "query", "required": False,
                 "schema": {"type": "string", "enum": ["http", "stream"], "default": "http"}}
    empty_ok = {"description": "valid (an empty body, as APISIX)",
                "headers": {"X-API-VERSION": {"$ref": "#/components/headers/ApiVersion"}}}
    return {
        f"{PREFIX}/schema/{{resource}}": {"get": _op(
            "getResourceSchema", "JSON Schema of a resource kind", ["schema"],
            {"200": _json(_ref("JSONSchema"), "the schema"), **_errors(*_READ_ERRORS)},
            [resource_param])},
        f"{PREFIX}/schema/plugins/{{plugin_name}}": {"get": _op(
            "getPluginSchemaByKind", "JSON Schema of a plugin", ["schema"],
            {"200": _json(_ref("JSONSchema"), "the plugin's schema"),
             **_errors(*_READ_ERRORS)},
            [plugin_param, subsystem, _param("schema_type")])},
        f"{PREFIX}/schema/validate/{{resource}}": {"post": _op(
            "validateResource", "Validate an object as a kind, without storing it",
            ["schema"], {"200": empty_ok, **_errors(400, 401, 403, 404, 413)},
            [resource_param], _body({"description": "the object"}, "the object to check"))},
        f"{PREFIX}/configs/validate": {"post": _op(
            "validateConfigs", "Validate a whole standalone document", ["configs"],
            {"200": empty_ok,
             "400": _json(_ref("ValidationErrors"), "every rejection, with its path"),
             **_errors(401, 403, 404, 413)},
            None, {"required": True, "description": "the document (JSON or YAML)",
                   "content": {JSON: {"schema": _ref("StandaloneDocument")},
                               "application/yaml": {"schema": {"type": "string"}}}})},
        f"{PREFIX}/plugins/list": {"get": _op(
            "listPluginNames", "Names of the loaded plugins, highest priority first",
            ["plugins"],
            {"200": _json({"type": "array", "items": {"type": "string"}}, "names"),
             **_errors(*_READ_ERRORS)}, [subsystem])},
        f"{PREFIX}/plugins": {"get": _op(
            "getAllPlugins", "All plugins' attributes (all=true)", ["plugins"],
            {"200": _json({"type": "object", "additionalProperties": {"type": "object"}},
                          "name -> {version, priority, schema, ...}"),
             **_errors(*_READ_ERRORS)},
            [{"name": "all", "in": "query", "required": False,
              "schema": {"type": "string", "enum": ["true"]}}, subsystem])},
        f"{PREFIX}/plugins/{{plugin_name}}": {"get": _op(
            "getPluginSchema", "A plugin's schema", ["plugins"],
            {"200": _json(_ref("JSONSchema"), "the schema"),
             **_errors(400, 401, 403, 404, 405)},
            [plugin_param, subsystem, _param("schema_type")])},
        f"{PREFIX}/plugins/reload": {"put": _op(
            "reloadPlugins", "Reload the plugins", ["plugins"],
            {"200": _json({"type": "string", "enum": ["done"]}, "the string \"done\""),
             **_errors(400, 401, 403, 404, 503)})},
        f"{PREFIX}/openapi.json": {"get": _op(
            "getOpenAPI", "This document", ["openapi"],
            {"200": _json({"type": "object"}, "the OpenAPI document"),
             **_errors(*_READ_ERRORS)})},
        f"{PREFIX}/explain": {"get": _op(
            "explainMatch", "Why a request matches the route it matches", ["explain"],
            {"200": _json(_ref("ExplainReply"), "the verdict and every candidate"),
             **_errors(400, 401, 403, 404, 503)},
            [{"name": "uri", "in": "query", "required": True,
              "schema": {"type": "string", "minLength": 1},
              "description": "path, may carry ?query"},
             {"name": "method", "in": "query", "schema": {"type": "string", "default": "GET"}},
             {"name": "host", "in": "query", "schema": {"type": "string"}},
             {"name": "remote_addr", "in": "query",
              "schema": {"type": "string", "default": "127.0.0.1"}},
             {"name": "verbose", "in": "query", "schema": {"type": "string",
                                                          "enum": ["0", "1"]},
              "description": "1: also list the routes whose uri does not match (capped)"},
             {"name": "vars", "in": "query", "style": "form", "explode": True,
              "description": "header_<name>, arg_<name>, cookie_<name>: request variables",
              "schema": {"type": "object", "additionalProperties": {"type": "string"}}}])},
        f"{PREFIX}/batch": {"post": _op(
            "batch", "Several writes in one transaction: all are applied or none",
            ["batch"],
            {"200": _json(_ref("BatchReply"), "every operation's own reply"),
             **_errors(400, 401, 403, 404, 405, 413, 503)},
            None, _body(_ref("BatchRequest"), "the operations, in order"))},
        PREFIX: {"head": _op(
            "ping", "Is the Admin API up (no key needed)", ["meta"],
            {"200": {"description": "up"}}, security=[])},
    }


@functools.lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    from .. import __version__

    kinds = _kinds()
    paths: dict[str, Any] = {}
    for k in kinds:
        paths.update(_resource_paths(k))
    paths.update(_meta_paths())
    error = _ref("Error")
    err_resp = {code: _json(error, text) for code, text in (
        ("BadRequest", "refused: {error_msg} names the field path"),
        ("Forbidden", "the client address is not in allow_admin"),
        ("MethodNotAllowed", "method not supported here"),
        ("PayloadTooLarge", "the body is larger than 1.5 MiB"),
        ("Unavailable", "the configuration store refused or is down; nothing changed"),
    )}
    err_resp["Unauthorized"] = _json(
        {"allOf": [error, {"required": ["description"]}]},
        "missing or wrong API key, or a viewer key on a write: "
        "{error_msg: \"failed to check token\", description}")
    err_resp["NotFound"] = _json({"anyOf": [_ref("KeyNotFound"), error]},
                                 "{message: \"Key not found\"} for a missing object, "
                                 "{error_msg} for an unknown path")
    tags = [{"name": k["name"], "description": f"{k['kind']} objects"} for k in kinds]
    tags += [{"name": t, "description": d} for t, d in (
        ("schema", "JSON Schemas and object validation"),
        ("configs", "whole-document validation"),
        ("plugins", "loaded plugins"),
        ("openapi", "this document"),
        ("explain", "route matching diagnosis"),
        ("batch", "transactions"),
        ("meta", "the Admin API itself"),
    )]
    return {
        "openapi": "3.0.3",
        "info": {"title": "Pylon Admin API", "version": __version__,
                 "description": "Apache APISIX Admin API v3 compatible. Every answer is JSON "
                                "with the header X-API-VERSION: v3."},
        "servers": [{"url": "http://127.0.0.1:9180",
                     "description": "the default deployment.admin.admin_listen"}],
        "security": [{"adminKey": []}, {"adminKeyQuery": []}, {"adminKeyCookie": []}],
        "tags": tags,
        "paths": paths,
        "components": {
            "securitySchemes": {
                "adminKey": {"type": "apiKey", "in": "header", "name": "X-API-KEY"},
                "adminKeyQuery": {"type": "apiKey", "in": "query", "name": "api_key"},
                "adminKeyCookie": {"type": "apiKey", "in": "cookie", "name": "X-API-KEY"},
            },
            "headers": {"ApiVersion": {"description": "always v3",
                                       "schema": {"type": "string", "enum": ["v3"]}}},
            "parameters": {
                "page": {"name": "page", "in": "query", "required": False,
                         "description": "page number (with page_size)",
                         "schema": {"type": "integer", "minimum": 1}},
                "page_size": {"name": "page_size", "in": "query", "required": False,
                              "description": "items per page (with page)",
                              "schema": {"type": "integer", "minimum": 10, "maximum": 500}},
                "name": {"name": "name", "in": "query", "required": False,
                         "description": "objects whose name contains this",
                         "schema": {"type": "string"}},
                "label": {"name": "label", "in": "query", "required": False,
                          "description": "objects with this label key (k) or pair (k:v)",
                          "schema": {"type": "string"}},
                "uri": {"name": "uri", "in": "query", "required": False,
                        "description": "routes whose uri contains this",
                        "schema": {"type": "string"}},
                "filter": {"name": "filter", "in": "query", "required": False,
                           "description": "url-encoded field=value pairs, e.g. "
                                          "service_id%3D1",
                           "schema": {"type": "string"}},
                "force": {"name": "force", "in": "query", "required": False,
                          "description": "true: delete even while referenced",
                          "schema": {"type": "string", "enum": ["true", "false"]}},
                "ttl": {"name": "ttl", "in": "query", "required": False,
                        "description": "seconds until the object expires",
                        "schema": {"type": "integer", "minimum": 1}},
                "schema_type": {"name": "schema_type", "in": "query", "required": False,
                                "schema": {"type": "string",
                                           "enum": ["consumer", "metadata"]}},
            },
            "responses": err_resp,
            "schemas": _schemas(kinds),
        },
    }
