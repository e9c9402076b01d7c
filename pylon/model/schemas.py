"""The published JSON Schemas (draft-07) of every resource kind, and the checks of an object
against its kind that need no plugin: what ``GET /apisix/admin/schema/{kind}`` answers and
what ``schema/validate`` and ``configs/validate`` run before the plugins are looked at.

Routes, services and upstreams are generated from the typed models (``pylon.model.route`` /
``upstream``: the schema says exactly what a PUT accepts); the other kinds are written from
the fields APISIX defines (``apisix/schema_def.lua``).  The kinds themselves are listed in
``pylon.model.kinds``.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from .kinds import ID_PATTERN, TYPED_KINDS, canonical_kind

_ID: dict[str, Any] = {"anyOf": [
    {"type": "string", "minLength": 1, "maxLength": 64, "pattern": ID_PATTERN},
    {"type": "integer", "minimum": 1},
]}
_NAME: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 256}
_DESC: dict[str, Any] = {"type": "string", "maxLength": 256}
_TS: dict[str, Any] = {"type": "integer", "description": "epoch seconds; set by the node"}
PLUGINS_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": {"type": "object"},
    "description": "plugin name -> its configuration (checked against the plugin's schema)",
}
_SECRET_REF = r"^\$(secret|env)://"
_CERT: dict[str, Any] = {"anyOf": [
    {"type": "string", "minLength": 128, "maxLength": 65536},
    {"type": "string", "pattern": _SECRET_REF},
]}
_IPV4_CIDR = (r"^(([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])\.){3}"
              r"([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])/([12]?[0-9]|3[0-2])$")
_IPV6_CIDR = r"^([a-fA-F0-9]{0,4}:){1,8}(:[a-fA-F0-9]{0,4}){0,8}([a-fA-F0-9]{0,4})?/[0-9]{1,3}$"
_IP: dict[str, Any] = {"type": "string", "description": "IPv4/IPv6 address or CIDR",
                       "anyOf": [{"format": "ipv4"}, {"format": "ipv6"},
                                 {"pattern": _IPV4_CIDR}, {"pattern": _IPV6_CIDR}]}
_URI_DEF: dict[str, Any] = {"type": "string",
                            "pattern": r"^[^\/]+:\/\/([\da-zA-Z.-]+|\[[\da-fA-F:]+\])(:\d+)?"}


def _object_hook(t: type) -> dict[str, Any]:
    if t is object:
        return {"description": "any JSON value"}
    raise NotImplementedError


def _strip_nulls(node: Any) -> Any:
    """msgspec's ``X | None = None`` is ``anyOf [X, null]`` with ``default: null``: an absent
    field.  The published schema describes the object as written, so null is dropped."""
    if isinstance(node, list):
        return [_strip_nulls(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strip_nulls(v) for k, v in node.items()}
    opts = out.get("anyOf")
    if isinstance(opts, list) and {"type": "null"} in opts:
        rest = [o for o in opts if o != {"type": "null"}]
        del out["anyOf"]
        if len(rest) == 1:
            out = {**rest[0], **out}
        else:
            out["anyOf"] = rest
    if "default" in out and out["default"] is None:
        del out["default"]
    if out.get("required") == []:
        del out["required"]
    return out


def _inline(node: Any, defs: Mapping[str, Any]) -> Any:
    if isinstance(node, list):
        return [_inline(x, defs) for x in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/definitions/"):
        target = _inline(copy.deepcopy(defs[ref.rsplit("/", 1)[1]]), defs)
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return {**target, **_inline(rest, defs)}
    return {k: _inline(v, defs) for k, v in node.items()}


def _absent_or(field_: str, values: list[Any], then: dict[str, Any]) -> dict[str, Any]:
    """``if field in values then <then>`` without draft-07 ``if`` (OpenAPI 3.0 lacks it)."""
    return {"anyOf": [{"not": {"required": [field_], "properties": {field_: {"enum": values}}}},
                      then]}


def _typed_definitions() -> dict[str, dict[str, Any]]:
    from .route import Route, Service
    from .upstream import Upstream

    _, defs = msgspec.json.schema_components(
        [Route, Service, Upstream], schema_hook=_object_hook,
        ref_template="#/definitions/{name}")
    defs = {k: _strip_nulls(v) for k, v in defs.items()}

    # what __post_init__ checks, said in schema terms
    route = defs["Route"]
    rp = route["properties"]
    for gone in ("filter_func", "script"):     # Lua: always refused
        rp.pop(gone, None)
    rp["methods"]["uniqueItems"] = True
    rp["remote_addr"] = copy.deepcopy(_IP)
    rp["remote_addrs"]["items"] = copy.deepcopy(_IP)
    rp["vars"]["description"] = "lua-resty-expr rules, e.g. [[\"arg_v\", \"==\", \"1\"]]"
    rp["uri"]["description"] = "exact path, prefix (/a/*), or with :name / *name params"
    route["allOf"] = [
        {"oneOf": [{"required": ["uri"]}, {"required": ["uris"]}]},
        {"not": {"required": ["host", "hosts"]}},
        {"not": {"required": ["remote_addr", "remote_addrs"]}},
    ]
    defs["Service"]["properties"].pop("script", None)

    up = defs["Upstream"]
    upp = up["properties"]
    upp["discovery_type"]["description"] = ("dns, consul, consul_kv, nacos, eureka or "
                                            "kubernetes (configured in the node config's "
                                            "discovery: section)")
    upp["nodes"]["description"] = ("a list of {host, port, weight, priority} or a map "
                                   "\"host[:port]\" -> weight")
    up["oneOf"] = [{"required": ["nodes"]}, {"required": ["service_name", "discovery_type"]}]
    up["allOf"] = [
        _absent_or("type", ["chash"], {"anyOf": [
            {"required": ["key"], "properties": {"key": {"minLength": 1}}},
            {"required": ["hash_on"], "properties": {"hash_on": {"enum": ["consumer"]}}}]}),
        _absent_or("pass_host", ["rewrite"], {"required": ["upstream_host"]}),
    ]
    tls = defs["UpstreamTLS"]
    tls["anyOf"] = [
        {"required": ["client_cert", "client_key"], "not": {"required": ["client_cert_id"]}},
        {"not": {"anyOf": [{"required": ["client_cert"]}, {"required": ["client_key"]}]}},
    ]
    return {k: _inline(v, defs) for k, v in defs.items()}


def _obj(props: dict[str, Any], required: list[str] | None = None,
         closed: bool = True, **extra: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        s["required"] = required
    if closed:
        s["additionalProperties"] = False
    s.update(extra)
    return s


def _common(labels: dict[str, Any]) -> dict[str, Any]:
    return {"id": copy.deepcopy(_ID), "name": copy.deepcopy(_NAME),
            "desc": copy.deepcopy(_DESC), "labels": copy.deepcopy(labels),
            "create_time": copy.deepcopy(_TS), "update_time": copy.deepcopy(_TS)}


def secret_schemas() -> dict[str, dict[str, Any]]:
    base = {"id": {"type": "string", "description": "manager/id, set by the node"},
            "create_time": copy.deepcopy(_TS), "update_time": copy.deepcopy(_TS)}
    return {
        "vault": _obj({**base, "uri": copy.deepcopy(_URI_DEF), "prefix": {"type": "string"},
                       "token": {"type": "string"}, "namespace": {"type": "string"}},
                      ["uri", "prefix", "token"], title="vault"),
        "aws": _obj({**base, "access_key_id": {"type": "string"},
                     "secret_access_key": {"type": "string"},
                     "session_token": {"type": "string"},
                     "region": {"type": "string", "default": "us-east-1"},
                     "endpoint_url": copy.deepcopy(_URI_DEF)},
                    ["access_key_id", "secret_access_key"], title="aws"),
        "gcp": _obj({**base,
                     "auth_config": _obj({
                         "client_email": {"type": "string"},
                         "private_key": {"type": "string"},
                         "project_id": {"type": "string"},
                         "token_uri": {"type": "string"},
                         "entries_uri": {"type": "string"},
                         "scope": {"type": "array", "items": {"type": "string"}},
                     }, ["client_email", "private_key", "project_id"], closed=False),
                     "auth_file": {"type": "string"},
                     "ssl_verify": {"type": "boolean", "default": True}},
                    None, title="gcp",
                    oneOf=[{"required": ["auth_config"]}, {"required": ["auth_file"]}]),
    }


@functools.lru_cache(maxsize=1)
def _all_schemas() -> dict[str, dict[str, Any]]:
    typed = _typed_definitions()
    route, service, upstream = typed["Route"], typed["Service"], typed["Upstream"]
    from .apisix import LABELS
    labels = LABELS                  # APISIX's labels_def (its wording on failure)
    c = functools.partial(_common, labels)
    sni = {"type": "string", "pattern": r"^\*?[0-9a-zA-Z-.]+$"}
    out: dict[str, dict[str, Any]] = {
        "routes": route,
        "services": service,
        "upstreams": upstream,
        "consumers": _obj({
            "username": {"type": "string", "minLength": 1, "maxLength": 64,
                         "pattern": r"^[a-zA-Z0-9_\-]+$"},
            "group_id": copy.deepcopy(_ID), "plugins": copy.deepcopy(PLUGINS_SCHEMA),
            "labels": copy.deepcopy(labels), "desc": copy.deepcopy(_DESC),
            "create_time": copy.deepcopy(_TS), "update_time": copy.deepcopy(_TS),
        }, ["username"], title="Consumer"),
        "credentials": _obj({**c(), "plugins": {
            **copy.deepcopy(PLUGINS_SCHEMA), "maxProperties": 1,
            "description": "one authentication plugin and its consumer configuration"}},
            title="Credential"),
        "consumer_groups": _obj({**c(), "plugins": copy.deepcopy(PLUGINS_SCHEMA)}, ["plugins"],
                                title="ConsumerGroup"),
        "plugin_configs": _obj({**c(), "plugins": copy.deepcopy(PLUGINS_SCHEMA)}, ["plugins"],
                               title="PluginConfig"),
        "global_rules": _obj({"id": copy.deepcopy(_ID), "plugins": copy.deepcopy(PLUGINS_SCHEMA),
                              "create_time": copy.deepcopy(_TS),
                              "update_time": copy.deepcopy(_TS)},
                             ["plugins"], title="GlobalRule"),
        "ssls": _obj({
            **c(),
            "type": {"type": "string", "enum": ["server", "client"], "default": "server"},
            "cert": copy.deepcopy(_CERT), "key": copy.deepcopy(_CERT),
            "sni": copy.deepcopy(sni),
            "snis": {"type": "array", "items": copy.deepcopy(sni), "minItems": 1},
            "certs": {"type": "array", "items": copy.deepcopy(_CERT)},
            "keys": {"type": "array", "items": copy.deepcopy(_CERT)},
            "client": _obj({
                "ca": copy.deepcopy(_CERT),
                "depth": {"type": "integer", "minimum": 0, "default": 1},
                "skip_mtls_uri_regex": {"type": "array", "minItems": 1, "uniqueItems": True,
                                        "items": {"type": "string"}},
            }, ["ca"], closed=False),
            "status": {"type": "integer", "enum": [1, 0], "default": 1},
            "ssl_protocols": {"type": "array", "maxItems": 3, "uniqueItems": True,
                              "items": {"enum": ["TLSv1.1", "TLSv1.2", "TLSv1.3"]}},
            "validity_start": copy.deepcopy(_TS), "validity_end": copy.deepcopy(_TS),
        }, None, title="SSL", anyOf=[
            # type server (the default) needs sni or snis; client certificates do not
            {"allOf": [{"not": {"required": ["type"], "properties": {
                "type": {"enum": ["client"]}}}},
                {"oneOf": [{"required": ["sni", "key", "cert"]},
                           {"required": ["snis", "key", "cert"]}]}]},
            {"required": ["type", "key", "cert"],
             "properties": {"type": {"enum": ["client"]}}},
        ]),
        "protos": _obj({**c(), "content": {"type": "string", "minLength": 1,
                                           "maxLength": 1024 * 1024}},
                       ["content"], title="Proto"),
        "stream_routes": _obj({
            **c(), "remote_addr": copy.deepcopy(_IP), "server_addr": copy.deepcopy(_IP),
            "server_port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "sni": {"type": "string", "pattern": r"^\*?[0-9a-zA-Z-._]+$"},
            "upstream": copy.deepcopy(upstream), "upstream_id": copy.deepcopy(_ID),
            "service_id": copy.deepcopy(_ID), "plugins": copy.deepcopy(PLUGINS_SCHEMA),
            "protocol": _obj({"name": {"type": "string"}, "superior_id": copy.deepcopy(_ID),
                              "conf": {"type": "object"},
                              "logger": {"type": "array", "items": {"type": "object"}}},
                             ["name"], closed=False),
        }, None, closed=False, title="StreamRoute"),
        "secrets": {"title": "Secret", "type": "object",
                    "description": "a secret manager's configuration: vault, aws or gcp",
                    "anyOf": list(secret_schemas().values())},
        "plugin_metadata": {"title": "PluginMetadata", "type": "object",
                            "properties": {"id": {"type": "string",
                                                  "description": "the plugin's name"}},
                            "description": "fields of the plugin's metadata_schema"},
    }
    return out


def resource_schema(kind: str) -> dict[str, Any]:
    """The draft-07 JSON Schema of ``kind`` (plural or APISIX singular).  A fresh copy."""
    canon = canonical_kind(kind)
    if canon is None:
        raise KeyError(kind)
    return copy.deepcopy(_all_schemas()[canon])


def secret_schema(manager: str) -> dict[str, Any] | None:
    s = secret_schemas().get(manager)
    return copy.deepcopy(s) if s is not None else None


# ------------------------------------------------------------------------------ validation

@functools.cache
def validator(kind: str) -> Callable[[Any], Any]:
    import fastjsonschema

    return fastjsonschema.compile(_all_schemas()[kind])


#: a rejection: (field path, "" for the object itself; message)
Problem = tuple[str, str]


def fmt_problem(problem: Problem | None) -> str | None:
    if problem is None:
        return None
    path, msg = problem
    return f"{path}: {msg}" if path else msg


def schema_problem(validate: Callable[[Any], Any], obj: Any) -> Problem | None:
    import fastjsonschema

    try:
        validate(obj)
    except fastjsonschema.JsonSchemaValueException as e:
        name = e.name or "data"
        msg = e.message
        if msg.startswith(name + " "):
            msg = msg[len(name) + 1:]
        path = name[len("data"):].lstrip(".") if name.startswith("data") else name
        return path, msg
    return None


def route_matcher_problem(obj: dict[str, Any], router_kind: str) -> Problem | None:
    """What the router refuses in a route that passed the model (bad ``vars`` expression, a
    uri pattern the router kind cannot parse): the compiler would drop the route."""
    from ..routing.router import Router, RouteSpec

    uris = [obj["uri"]] if obj.get("uri") is not None else list(obj.get("uris") or ())
    hosts = [obj["host"]] if obj.get("host") is not None else list(obj.get("hosts") or ())
    addrs = [obj["remote_addr"]] if obj.get("remote_addr") is not None \
        else list(obj.get("remote_addrs") or ())
    spec = RouteSpec(id=str(obj.get("id", "route")), payload=None, uris=tuple(uris),
                     hosts=tuple(h.lower() for h in hosts),
                     methods=frozenset(obj.get("methods") or ()),
                     remote_addrs=tuple(addrs), vars=obj.get("vars") or None,
                     priority=obj.get("priority", 0))
    try:
        _router, errors = Router.build([spec], router_kind)
    except ValueError:          # an unknown router kind: nothing to check against
        return None
    if errors:
        msg = errors[0][1]
        if msg.startswith("invalid vars: "):
            return "vars", msg[len("invalid vars: "):]
        if msg.startswith("bad uri"):
            return ("uri" if obj.get("uri") is not None else "uris"), msg
        return "", msg
    return None


def explain_any_of(kind: str, obj: Any, problem: Problem) -> Problem:
    """The schema's "cannot be validated by any definition" at the top, said usefully."""
    path, msg = problem
    if not msg.startswith("cannot be validated by any definition"):
        return problem
    if kind == "ssls" and path and re.search(r"(^|\.)(cert|key|ca|certs\[\d+\]|keys\[\d+\])$",
                                             path):
        return path, ("must be PEM text of 128 characters to 64 KiB, or a $secret:// / "
                      "$env:// reference")
    if path:
        return problem
    if kind == "secrets" and isinstance(obj, dict):
        import fastjsonschema

        parts = []
        for manager, schema in secret_schemas().items():
            p = schema_problem(fastjsonschema.compile(schema), obj)
            parts.append(f"as {manager}: {fmt_problem(p)}")
        return "", "not a valid secret manager configuration (" + "; ".join(parts) + ")"
    if kind == "ssls":
        return "", ("needs cert and key, and sni or snis unless type is client "
                    "(cert/key: PEM text of at least 128 characters, or a $secret:// / "
                    "$env:// reference)")
    return problem


def check_shape(kind: str, obj: Any, router_kind: str = "radixtree_host_uri") -> Problem | None:
    """``None`` when ``obj`` is a valid ``kind`` (plural or singular) leaving its plugins
    aside, else ``(field path, message)``.

    Routes, services and upstreams go through ``pylon.model.validate.convert`` (what a PUT
    runs) and, for routes, the router's own checks (uri patterns, ``vars`` expressions) as
    the compiler would make them; the other kinds through their JSON Schema."""
    canon = canonical_kind(kind)
    if canon is None:
        raise KeyError(kind)
    if canon in TYPED_KINDS:
        from .validate import convert

        rej = convert(canon, obj, "")[1]
        if rej is not None:
            return rej.path.lstrip(".").lstrip("$").lstrip("."), rej.message
        if canon == "routes" and isinstance(obj, dict):
            return route_matcher_problem(obj, router_kind)
        return None
    problem = schema_problem(validator(canon), obj)
    return explain_any_of(canon, obj, problem) if problem else None
