"""The Admin API's endpoints that are not resources (APISIX v3 behaviour), transport-free.

Endpoints (paths relative to ``/apisix/admin``):

* ``GET schema/{kind}`` -- the JSON Schema (draft-07) of a resource kind.  Plural (``routes``)
  and APISIX's singular names (``route``, ``ssl``, ``global_rule``...) are accepted;
  ``schema/plugins/{name}`` is a plugin's schema, as in APISIX, and so is ``schema/{name}``
  when ``name`` is a loaded plugin and not a kind.  Routes, services and upstreams are
  generated from ``pylon.model`` (so the schema says exactly what a PUT accepts); the other
  kinds are written from the fields APISIX defines (``apisix/schema_def.lua``).
* ``POST schema/validate/{kind}`` -- validate the body as that kind without storing it:
  200 with an empty body (as APISIX), or 400 ``{"error_msg": "<field path>: <message>"}``;
  404 ``{"error_msg": "Unsupported resource type: x"}`` for an unknown kind.  Beyond the
  schema, what the node would refuse later is refused here too: plugin names not loaded
  (``plugins: unknown plugin [x]``) and, for routes, what the router refuses (bad ``vars``).
* ``POST configs/validate`` -- validate a whole standalone document (APISIX layout: a list
  per kind, optional ``<kind>_conf_version`` numbers), JSON or, with ``Content-Type:
  application/yaml``, YAML: 200 with an empty body when everything would load, else 400
  ``{"error_msg": "Configuration validation failed: <path>: <message>; ...", "errors":
  [{"resource_type", "index", "id", "path", "error"}...]}`` (APISIX's shape, plus paths).
  Parsing and compiling run in the default executor, off the event loop.
* ``GET plugins/list[?subsystem=http|stream]`` -- the loaded plugins' names, highest priority
  first: a bare JSON **array** as APISIX; ``GET plugins/{name}[?subsystem=][&schema_type=
  consumer|metadata]`` -- that plugin's schema, 404 ``{"error_msg": "plugin not found in
  subsystem http"}``; ``GET plugins?all=true[&subsystem=]`` -- ``{name: attributes}``;
  ``PUT plugins/reload`` -- reloads and answers the JSON **string** ``"done"`` (other methods
  405, as APISIX).
* ``GET openapi.json`` -- the OpenAPI 3.0.3 document of this Admin API.
* ``GET explain?uri=&method=&host=&remote_addr=&header_X=&arg_X=&cookie_X=`` -- why a
  request matches the route it matches (see ``pylon.config.explain``).

How ``AdminApp`` calls it: after ``allow_admin`` and the API key check, and *before* the body
is decoded as JSON (``configs/validate`` takes YAML too) and before resource dispatch::

    segs = [s for s in path[len(PREFIX):].split("/") if s]
    reply = await handle_meta(method, segs, args, body, self.meta, headers=headers)
    if reply is not None:
        return reply                  # (status, body): body is a dict, a list, a str or None

``args`` is the parsed query (``dict(parse_qsl(query, keep_blank_values=True))``), ``headers``
lower-case keyed (optional: only ``content-type`` is read).  A ``None`` body means an empty
200 answer (``render`` already writes no payload for ``None``).  ``handle_meta`` returns
``None`` for anything that is not one of its paths, e.g. ``["routes", "1"]``.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

Reply = tuple[int, Any]
PluginTable = Mapping[str, Mapping[str, Any]]


def _no_plugins() -> PluginTable:
    return {}


@dataclass(slots=True)
class MetaContext:
    """What the meta endpoints need from the node.

    * ``plugins()``: the loaded HTTP plugins, ``name -> info`` where info carries at least
      ``priority`` and ``schema`` and may carry ``consumer_schema``, ``metadata_schema``,
      ``type``, ``scope``, ``version`` (APISIX's plugin attributes).  Empty until plugins land.
    * ``stream_plugins()``: the same for the stream subsystem.
    * ``reload_plugins()``: awaited by ``PUT plugins/reload``; None = nothing to reload (the
      answer is still ``"done"``).  An exception is answered 503 with its text.
    * ``explain(args)``: awaited by ``GET explain`` with the query; returns ``(status, body)``
      (``pylon.config.explain.DocExplainer`` is one).  None = 503.
    * ``router_kind``: the node's ``router.http``; ``configs/validate`` compiles with it.
    """

    plugins: Callable[[], PluginTable] = _no_plugins
    stream_plugins: Callable[[], PluginTable] = _no_plugins
    reload_plugins: Callable[[], Awaitable[Any]] | None = None
    explain: Callable[[dict[str, str]], Awaitable[Reply]] | None = None
    router_kind: str = "radixtree_host_uri"


# ---------------------------------------------------------------------------------- kinds

#: canonical kind names, the order the schemas and the OpenAPI document list them in
KINDS: tuple[str, ...] = (
    "routes", "services", "upstreams", "consumers", "credentials", "consumer_groups",
    "plugin_configs", "global_rules", "ssls", "protos", "stream_routes", "secrets",
    "plugin_metadata",
)
TYPED_KINDS = ("routes", "services", "upstreams")
#: every accepted name -> canonical (APISIX's ``core.schema`` uses the singular names)
ALIASES: dict[str, str] = {k: k for k in KINDS}
ALIASES.update({
    "route": "routes", "service": "services", "upstream": "upstreams",
    "consumer": "consumers", "credential": "credentials", "consumer_group": "consumer_groups",
    "plugin_config": "plugin_configs", "global_rule": "global_rules", "ssl": "ssls",
    "proto": "protos", "stream_route": "stream_routes", "secret": "secrets",
})


def canonical_kind(name: str) -> str | None:
    return ALIASES.get(name)


# ------------------------------------------------------------------------------- schemas

ID_PATTERN = r"^[a-zA-Z0-9\-_.]+$"
_ID: dict[str, Any] = {"anyOf": [
    {"type": "string", "minLength": 1, "maxLength": 64, "pattern": ID_PATTERN},
    {"type": "integer", "minimum": 1},
]}
_NAME: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 256}
_DESC: dict[str, Any] = {"type": "string", "maxLength": 256}
_TS: dict[str, Any] = {"type": "integer", "description": "epoch seconds; set by the node"}
_PLUGINS: dict[str, Any] = {
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
    from ..model.route import Route, Service
    from ..model.upstream import Upstream

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
    for gone in ("discovery_type", "service_name"):   # service discovery: not supported yet
        upp.pop(gone, None)
    upp["nodes"]["description"] = ("a list of {host, port, weight, priority} or a map "
                                   "\"host[:port]\" -> weight")
    up["required"] = ["nodes"]
    up["allOf"] = [
        _absent_or("type", ["chash"], {"anyOf": [
            {"required": ["key"], "properties": {"key": {"minLength": 1}}},
            {"required": ["hash_on"], "properties": {"hash_on": {"enum": ["consumer"]}}}]}),
        _absent_or("pass_host", ["rewrite"], {"required": ["upstream_host"]}),
    ]
    tls = defs["UpstreamTLS"]
    tls["properties"].pop("client_cert_id", None)
    tls["anyOf"] = [
        {"required": ["client_cert", "client_key"]},
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


def _secret_schemas() -> dict[str, dict[str, Any]]:
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
    from ..model.apisix import LABELS
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
            "group_id": copy.deepcopy(_ID), "plugins": copy.deepcopy(_PLUGINS),
            "labels": copy.deepcopy(labels), "desc": copy.deepcopy(_DESC),
            "create_time": copy.deepcopy(_TS), "update_time": copy.deepcopy(_TS),
        }, ["username"], title="Consumer"),
        "credentials": _obj({**c(), "plugins": {
            **copy.deepcopy(_PLUGINS), "maxProperties": 1,
            "description": "one authentication plugin and its consumer configuration"}},
            title="Credential"),
        "consumer_groups": _obj({**c(), "plugins": copy.deepcopy(_PLUGINS)}, ["plugins"],
                                title="ConsumerGroup"),
        "plugin_configs": _obj({**c(), "plugins": copy.deepcopy(_PLUGINS)}, ["plugins"],
                               title="PluginConfig"),
        "global_rules": _obj({"id": copy.deepcopy(_ID), "plugins": copy.deepcopy(_PLUGINS),
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
            "service_id": copy.deepcopy(_ID), "plugins": copy.deepcopy(_PLUGINS),
            "protocol": _obj({"name": {"type": "string"}, "superior_id": copy.deepcopy(_ID),
                              "conf": {"type": "object"},
                              "logger": {"type": "array", "items": {"type": "object"}}},
                             ["name"], closed=False),
        }, None, closed=False, title="StreamRoute"),
        "secrets": {"title": "Secret", "type": "object",
                    "description": "a secret manager's configuration: vault, aws or gcp",
                    "anyOf": list(_secret_schemas().values())},
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
    s = _secret_schemas().get(manager)
    return copy.deepcopy(s) if s is not None else None


# ------------------------------------------------------------------------------ validation

@functools.cache
def _validator(kind: str) -> Callable[[Any], Any]:
    import fastjsonschema

    return fastjsonschema.compile(_all_schemas()[kind])  # type: ignore[no-any-return]


#: a rejection: (field path, "" for the object itself; message)
Problem = tuple[str, str]


def _fmt(problem: Problem | None) -> str | None:
    if problem is None:
        return None
    path, msg = problem
    return f"{path}: {msg}" if path else msg


def _schema_problem(validate: Callable[[Any], Any], obj: Any) -> Problem | None:
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


def _plugin_problem(obj: Any, plugins: PluginTable, canon: str = "routes") -> Problem | None:
    """The first plugin entry that is unknown or does not validate: checked by the loaded
    plugin itself (its schema with defaults, ``_meta``, its ``check``) when it is in the
    current registry, else against the published schema."""
    from ..proxy.registry import PluginConfigError, current
    reg = current()
    if canon == "plugin_metadata":
        if not isinstance(obj, dict) or obj.get("id") is None:
            return None                  # the shape alone (schema/validate without an id)
        name = str(obj["id"])
        spec = reg.get(name)
        if spec is None:
            return "", "invalid plugin name"
        if spec.metadata_schema is None:
            return "", f"no metadata schema for plugin {name}"
        try:
            spec.check_conf({k: v for k, v in obj.items() if k != "id"}, "metadata")
        except PluginConfigError as e:
            return "", str(e)
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("plugins"), dict):
        return None
    import fastjsonschema

    consumer_side = canon in ("consumers", "credentials")
    for name, conf in obj["plugins"].items():
        info = plugins.get(name)
        if info is None:
            return "plugins", f"unknown plugin [{name}]"
        spec = reg.get(name)
        if spec is not None:
            if canon == "credentials" and spec.type != "auth":
                return "plugins", ("only supports auth type plugins in consumer credential, "
                                   f"{name} is not")
            st = "consumer" if consumer_side and spec.type == "auth" and \
                spec.consumer_schema is not None else "route"
            try:
                spec.check_conf(conf, st)
            except PluginConfigError as e:
                return f"plugins.{name}", str(e)
            continue
        schema = info.get("schema")
        if isinstance(schema, dict):
            try:
                problem = _schema_problem(fastjsonschema.compile(schema), conf)
            except fastjsonschema.JsonSchemaDefinitionException:
                continue
            if problem:
                return f"plugins.{name}", (f"failed to check the configuration of plugin "
                                           f"{name} err: {_fmt(problem)}")
    return None


def check_object(kind: str, obj: Any, plugins: PluginTable | None = None,
                 router_kind: str = "radixtree_host_uri") -> Problem | None:
    """``None`` when ``obj`` is a valid ``kind`` (plural or singular), else
    ``(field path, message)``.

    Routes, services and upstreams go through ``pylon.model.validate.convert`` (what a PUT
    runs) and, for routes, the router's own checks (uri patterns, ``vars`` expressions) as
    the compiler would make them; the other kinds through their JSON Schema.  Plugin names
    (and configurations, when the plugin has a schema) are checked against ``plugins`` when
    given."""
    canon = canonical_kind(kind)
    if canon is None:
        raise KeyError(kind)
    if canon in TYPED_KINDS:
        from ..model.validate import convert

        rej = convert(canon, obj, "")[1]
        if rej is not None:
            return rej.path.lstrip(".").lstrip("$").lstrip("."), rej.message
        if canon == "routes" and isinstance(obj, dict):
            problem = _route_matcher_problem(obj, router_kind)
            if problem:
                return problem
    else:
        problem = _schema_problem(_validator(canon), obj)
        if problem:
            return _explain_any_of(canon, obj, problem)
    if plugins is not None:
        return _plugin_problem(obj, plugins, canon)
    return None


def validate_object(kind: str, obj: Any, plugins: PluginTable | None = None,
                    router_kind: str = "radixtree_host_uri") -> str | None:
    """``check_object`` as one string, ``"path: message"`` (what ``error_msg`` says)."""
    return _fmt(check_object(kind, obj, plugins, router_kind))


def _route_matcher_problem(obj: dict[str, Any], router_kind: str) -> Problem | None:
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


def _explain_any_of(kind: str, obj: Any, problem: Problem) -> Problem:
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
        for manager, schema in _secret_schemas().items():
            p = _schema_problem(fastjsonschema.compile(schema), obj)
            parts.append(f"as {manager}: {_fmt(p)}")
        return "", "not a valid secret manager configuration (" + "; ".join(parts) + ")"
    if kind == "ssls":
        return "", ("needs cert and key, and sni or snis unless type is client "
                    "(cert/key: PEM text of at least 128 characters, or a $secret:// / "
                    "$env:// reference)")
    return problem


# ---------------------------------------------------------------------------- the handler

def decode_body(body: bytes) -> tuple[Any, str | None]:
    """A JSON request body (None when empty), or APISIX's ``invalid request body: ...``.
    Nesting and integers are bounded (``loader.shape_error``): a body of a thousand nested
    arrays is a 400, not a RecursionError further on."""
    from ..config.loader import MAX_DEPTH, shape_error

    if not body.strip():
        return None, None
    try:
        value = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as e:
        return None, f"invalid request body: {e}"
    except RecursionError:                 # msgspec stops at Python's recursion limit
        err: str | None = f"objects and arrays nested deeper than {MAX_DEPTH} levels"
    else:
        err = shape_error(value)
        if err is None:
            return value, None
    return None, f"invalid request body: {err}"


def _not_found() -> Reply:
    return 404, {"error_msg": "not found"}


async def handle_meta(method: str, segs: list[str], args: Mapping[str, str], body: bytes,
                      ctx: MetaContext, headers: Mapping[str, str] | None = None
                      ) -> Reply | None:
    """``(status, body)`` for a meta endpoint, ``None`` when ``segs`` is not one of them.
    See the module docstring for the endpoints and how to call this."""
    if not segs:
        return None
    head = segs[0]
    method = method.upper()
    if head == "schema":
        return _schema(method, segs[1:], args, body, ctx)
    if head == "plugins":
        return await _plugins(method, segs[1:], args, ctx)
    if head == "configs" and len(segs) == 2 and segs[1] == "validate":
        if method != "POST":
            return _not_found()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, _configs_validate, body, ctx, headers or {})
    if head == "openapi.json" and len(segs) == 1:
        if method != "GET":
            return _not_found()
        from .openapi import openapi_document

        return 200, openapi_document()
    if head == "explain" and len(segs) == 1:
        if method != "GET":
            return _not_found()
        if ctx.explain is None:
            return 503, {"error_msg": "explain is not available on this node"}
        if not args.get("uri"):
            return 400, {"error_msg": "missing uri"}
        return await ctx.explain(dict(args))
    return None


def _schema(method: str, rest: list[str], args: Mapping[str, str], body: bytes,
            ctx: MetaContext) -> Reply:
    if rest[:1] == ["validate"]:
        if method != "POST":
            return _not_found()
        if len(rest) != 2:
            return 404, {"error_msg": "Unsupported resource type: "
                                      + ("/".join(rest[1:]) or "none")}
        kind = canonical_kind(rest[1])
        if kind is None:
            return 404, {"error_msg": f"Unsupported resource type: {rest[1]}"}
        conf, err = decode_body(body)
        if err:
            return 400, {"error_msg": err}
        if conf is None:
            return 400, {"error_msg": "invalid configuration: must be an object"}
        err = validate_object(kind, conf, ctx.plugins(), ctx.router_kind)
        if err:
            return 400, {"error_msg": err}
        return 200, None
    if method != "GET":
        return _not_found()
    if len(rest) == 2 and rest[0] == "plugins":
        return _plugin_schema(rest[1], args, ctx)
    if len(rest) != 1:
        return _not_found()
    kind = canonical_kind(rest[0])
    if kind is not None:
        return 200, resource_schema(kind)
    if rest[0] in ctx.plugins():                 # as APISIX: /schema/<plugin name>
        return _plugin_schema(rest[0], args, ctx)
    return 404, {"error_msg": f"schema not found: {rest[0]} is neither a resource kind nor "
                              "a loaded plugin"}


def _subsystem(args: Mapping[str, str]) -> tuple[str, Reply | None]:
    sub = args.get("subsystem") or "http"
    if sub not in ("http", "stream"):
        return sub, (400, {"error_msg": f"unsupported subsystem: {sub}"})
    return sub, None


def _table(ctx: MetaContext, sub: str) -> PluginTable:
    return ctx.stream_plugins() if sub == "stream" else ctx.plugins()


def _plugin_schema(name: str, args: Mapping[str, str], ctx: MetaContext) -> Reply:
    sub, bad = _subsystem(args)
    if bad:
        return bad
    info = _table(ctx, sub).get(name)
    if info is None:
        return 404, {"error_msg": f"plugin not found in subsystem {sub}"}
    which = {"consumer": "consumer_schema", "metadata": "metadata_schema"}.get(
        args.get("schema_type", ""), "schema")
    schema = info.get(which)
    if schema is None:
        return 400, {"error_msg": "not found schema"}
    return 200, copy.deepcopy(schema)


_ATTRS = ("version", "priority", "schema", "metadata_schema", "consumer_schema", "type",
          "scope")


async def _plugins(method: str, rest: list[str], args: Mapping[str, str],
                   ctx: MetaContext) -> Reply:
    if rest == ["reload"]:
        if method != "PUT":
            return 405, {"error_msg": "please use PUT method to reload the plugins, "
                                      f"{method} method is not allowed."}
        if ctx.reload_plugins is not None:
            try:
                await ctx.reload_plugins()
            except Exception as e:  # noqa: BLE001 - any failure is the answer's text
                return 503, {"error_msg": f"failed to reload plugins: {e}"}
        return 200, "done"
    if method != "GET" or len(rest) > 1:
        return _not_found()
    if rest == ["list"]:
        sub = args.get("subsystem") or "http"
        if sub not in ("http", "stream"):
            return 400, {"error_msg": "invalid subsystem passed"}
        table = _table(ctx, sub)
        names = sorted(table, key=lambda n: -_priority(table[n]))
        return 200, names
    sub, bad = _subsystem(args)
    if bad:
        return bad
    if not rest:
        if args.get("all") == "true":
            table = _table(ctx, sub)
            return 200, {name: {k: copy.deepcopy(info[k]) for k in _ATTRS if k in info}
                         for name, info in table.items()}
        return 404, {"error_msg": f"plugin not found in subsystem {sub}"}
    return _plugin_schema(rest[0], args, ctx)


def _priority(info: Mapping[str, Any]) -> int:
    p = info.get("priority", 0)
    return p if isinstance(p, int) and not isinstance(p, bool) else 0


# -------------------------------------------------------------------------- configs/validate

_INDEX = re.compile(r"^[a-z_]+\[(\d+)\]")
_CONF_VERSION = "_conf_version"
#: cap on rejections spelled out in ``error_msg`` (``errors`` lists them all)
MAX_LISTED = 50


def _configs_validate(body: bytes, ctx: MetaContext, headers: Mapping[str, str]) -> Reply:
    if not body.strip():
        return 400, {"error_msg": "invalid request body: empty request body"}
    ctype = (headers.get("content-type") or "").lower()
    doc: Any
    if ctype.startswith(("application/yaml", "application/x-yaml")):
        doc, err = _yaml(body)
    else:
        doc, err = decode_body(body)
        if err:
            ydoc, yerr = _yaml(body)        # lenient: a YAML document sent as JSON
            if yerr is None and isinstance(ydoc, dict):
                doc, err = ydoc, None
    if err:
        return 400, {"error_msg": err}
    if not isinstance(doc, dict):
        return 400, {"error_msg": "invalid request body: the document must be an object"}
    errors = validate_document(doc, ctx.router_kind, ctx.plugins())
    if not errors:
        return 200, None
    listed = [f"{e['path']}: {e['error']}" for e in errors[:MAX_LISTED]]
    more = len(errors) - len(listed)
    msg = "Configuration validation failed: " + "; ".join(listed)
    if more > 0:
        msg += f"; ... and {more} more"
    return 400, {"error_msg": msg, "errors": errors}


def _yaml(body: bytes) -> tuple[Any, str | None]:
    from ..config.loader import ConfigError, parse_text

    try:
        return parse_text(body.decode("utf-8"), "request body"), None
    except (ConfigError, UnicodeDecodeError, ValueError) as e:
        return None, f"invalid yaml request body: {e}"


def validate_document(doc: dict[str, Any], router_kind: str = "radixtree_host_uri",
                      plugins: PluginTable | None = None) -> list[dict[str, Any]]:
    """Every rejection of a standalone document, as ``{"resource_type", "index", "id",
    "path", "error"}`` rows in document order (empty when it would load whole).

    Routes, services and upstreams: ``parse_resources`` then ``compile_resources`` (so
    references and plugins are checked as the node checks them).  The other kinds: their
    schema, duplicate ids, and plugin names."""
    from ..config.compiler import compile_resources
    from ..model.validate import parse_resources

    rows: list[dict[str, Any]] = []
    # APISIX's standalone layout may carry "<kind>_conf_version" numbers beside the lists
    versions = [k for k in doc if isinstance(k, str) and k.endswith(_CONF_VERSION)
                and k[:-len(_CONF_VERSION)] in KINDS]
    for k in versions:
        v = doc[k]
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            rows.append({"resource_type": k[:-len(_CONF_VERSION)], "index": None, "id": None,
                         "path": k, "error": f"{k} must be a number"})
    res, rejected = parse_resources({k: v for k, v in doc.items() if k not in versions})
    compiled = compile_resources(res, router_kind)
    for r in list(rejected) + list(compiled.rejected):
        m = _INDEX.match(r.path)
        rows.append({"resource_type": r.kind, "index": int(m.group(1)) if m else None,
                     "id": r.id, "path": r.path, "error": r.message})
    for kind in KINDS:
        if kind in TYPED_KINDS or kind == "credentials":
            continue
        items = doc.get(kind)
        if not isinstance(items, list):
            continue          # parse_resources reports a non-list
        seen: set[str] = set()
        for i, item in enumerate(items):
            path = f"{kind}[{i}]"
            sub_kind, ident, problem = _later_item(kind, item, plugins)
            if problem:
                where_, msg = problem
                rows.append({"resource_type": kind, "index": i, "id": ident,
                             "path": f"{path}.{where_}" if where_ else path, "error": msg})
            if ident is not None:
                key = f"{sub_kind}:{ident}"
                if key in seen:
                    field_ = "username" if kind == "consumers" and sub_kind == kind else "id"
                    rows.append({"resource_type": kind, "index": i, "id": ident, "path": path,
                                 "error": f"found duplicate {field_} {ident} in {kind}"})
                seen.add(key)
    where = {k: i for i, k in enumerate(doc)}
    rows.sort(key=lambda r: (where.get(r["resource_type"], -1),
                             r["index"] if r["index"] is not None else -1))
    return rows


def _later_item(kind: str, item: Any, plugins: PluginTable | None
                ) -> tuple[str, str | None, Problem | None]:
    """(sub-kind, identity, problem) of one item of a kind parse_resources keeps verbatim."""
    if not isinstance(item, dict):
        return kind, None, ("", "must be a mapping")
    raw_id = item.get("id")
    ident = str(raw_id) if isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool) \
        else None
    conf = {k: v for k, v in item.items() if k != "id"}
    if kind == "consumers":
        if ident is not None and "/credentials/" in ident:
            # APISIX standalone keeps credentials in the consumers list: <user>/credentials/<id>
            return "credentials", ident, check_object("credentials", conf, plugins)
        user = item.get("username")
        ident = str(user) if isinstance(user, str) else ident
        return kind, ident, check_object(kind, conf, plugins)
    if kind == "secrets":
        if ident is None or "/" not in ident:
            why = f"invalid secret id: {ident or ''} (expected manager/id)"
            return kind, ident, ("id", why)
        manager = ident.split("/", 1)[0]
        s = _secret_schemas().get(manager)
        if s is None:
            why = f"unknown secret manager {manager!r} (vault, aws, gcp)"
            return kind, ident, ("id", why)
        import fastjsonschema

        return kind, ident, _schema_problem(fastjsonschema.compile(s), conf)
    if kind == "plugin_metadata":
        if ident is None:
            return kind, None, ("id", "the plugin's name is required")
        if plugins is not None and ident not in plugins:
            return kind, ident, ("id", f"unknown plugin [{ident}]")
        return kind, ident, _schema_problem(_validator(kind), item)
    return kind, ident, check_object(kind, item, plugins)
