"""What the Admin API checks before it stores an object, in APISIX's order and words.

One formatter for every kind (``check_resource``), following ``apisix/admin/<kind>.lua``:

* the kind's schema (``pylon.model.apisix``), ``invalid configuration: <api7 text>``;
* an inline upstream (``apisix.upstream.check_upstream_conf``): ``pass_host``/``rewrite``,
  the ``chash`` key (none needed with ``hash_on: consumer``);
* the objects it references: ``failed to fetch upstream info by upstream id [x], response
  code: 404``;
* its plugins (``apisix.plugin.check_schema``): ``failed to check the configuration of plugin
  limit-req err: ...`` -- on consumers and credentials prefixed ``invalid plugins
  configuration: ``;
* a route's ``vars``: ``failed to validate the 'vars' expression: ...``;
* then what Pylon itself refuses beyond APISIX (the typed models: Lua ``filter_func``,
  service discovery...), as ``<field path>: <message>``.

``check_forbidden`` is APISIX's refusal of ``create_time``/``update_time`` in a PUT or POST.

The schema endpoints' checks are here too: ``check_object`` / ``validate_object`` (one
object: its shape, ``pylon.model.schemas.check_shape``, then its plugins) and
``validate_document`` (a whole standalone document, ``POST configs/validate``).  The plugins
are always the node's current ``Registry``, passed in.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..model.apisix import HASH_KEY, SCHEMAS
from ..model.kinds import BY_NAME, KINDS, TYPED_KINDS, canonical_kind, ref_names
from ..model.schema_errors import api7_error
from ..model.schemas import (
    Problem,
    check_shape,
    fmt_problem,
    resource_schema,
    schema_problem,
    secret_schema,
    secret_schemas,
    validator,
)
from ..proxy.registry import PluginConfigError, Registry

#: (kind, id) -> whether the object exists
Exists = Callable[[str, str], bool]

_FORBIDDEN = ("create_time", "update_time")


def schema_error(kind: str, conf: Any) -> str | None:
    """The api7 text for ``conf`` against ``kind``'s APISIX schema (no prefix)."""
    schema = SCHEMAS.get(kind)
    if schema is None:
        if kind == "secrets":           # APISIX checks against the manager's own schema
            schema = secret_schema(str(conf.get("id", "")).split("/", 1)[0])
        schema = schema or resource_schema(kind)
    return api7_error(schema, conf)


def check_forbidden(conf: dict[str, Any]) -> str | None:
    """``create_time``/``update_time`` given in a PUT or POST body (APISIX: the node sets
    them; a PATCH may carry them)."""
    for where, obj in (("", conf), ("upstream.", conf.get("upstream")),
                       ("plugins.", conf.get("plugins"))):
        if isinstance(obj, dict):
            for f in _FORBIDDEN:
                if obj.get(f) not in (None, False):
                    return f"the property is forbidden:  {where}{f}"
    return None


def check_upstream(conf: dict[str, Any]) -> str | None:
    """``apisix.upstream.check_upstream_conf`` after its schema check."""
    if conf.get("pass_host") == "rewrite" and not conf.get("upstream_host"):
        return "`upstream_host` can't be empty when `pass_host` is `rewrite`"
    if conf.get("type") != "chash":
        return None
    hash_on = conf.get("hash_on") or "vars"
    if hash_on != "consumer" and not conf.get("key"):
        return "missing key"
    key_schema = HASH_KEY.get(hash_on)
    if key_schema is not None:
        err = api7_error(key_schema, conf.get("key"))
        if err is not None:
            return "invalid configuration: " + err
    return None


def check_plugins(kind: str, plugins: Any, reg: Registry) -> str | None:
    """``apisix.plugin.check_schema`` over ``plugins`` (consumer schemas on consumers and
    credentials) with the loaded plugins ``reg``."""
    consumer_side = kind in ("consumers", "credentials")
    err = reg.check_plugins(plugins, "consumer" if consumer_side else
                            "stream" if kind == "stream_routes" else "route")
    if err is not None:
        return f"invalid plugins configuration: {err}" if consumer_side else err
    if kind == "credentials":
        for name in plugins:
            spec = reg.get(name)
            if spec is None or spec.type != "auth":
                return "only supports auth type plugins in consumer credential"
    return None


def client_cert_error(up: Any, lookup: Callable[[str, str], Any] | None) -> str | None:
    """APISIX's check of an upstream's ``tls.client_cert_id``: an ssl object of type
    client."""
    tls = up.get("tls") if isinstance(up, dict) else None
    cid = tls.get("client_cert_id") if isinstance(tls, dict) else None
    if cid is None or lookup is None:
        return None
    value = lookup("ssls", str(cid))
    if value is None:
        return f"failed to fetch ssl info by ssl id [{cid}], response code: 404"
    if not isinstance(value, dict) or value.get("type") != "client":
        return f"failed to fetch ssl info by ssl id [{cid}], wrong ssl type"
    return None


def check_resource(kind: str, conf: dict[str, Any], exists: Exists, reg: Registry,
                   router_kind: str = "radixtree_host_uri",
                   duplicate: Callable[[], str | None] | None = None,
                   lookup: Callable[[str, str], Any] | None = None) -> str | None:
    """The first thing APISIX (then Pylon) refuses in ``conf`` of ``kind``, or None, with
    the loaded plugins ``reg``.  ``duplicate`` is the consumer key check, run where APISIX
    runs it."""
    if kind == "routes":
        if conf.get("host") is not None and conf.get("hosts") is not None:
            return "only one of host or hosts is allowed"
        if conf.get("remote_addr") is not None and conf.get("remote_addrs") is not None:
            return "only one of remote_addr or remote_addrs is allowed"
    if kind == "plugin_metadata":
        return _metadata_error(conf, reg)
    err = schema_error(kind, conf)
    if err is not None:
        return "invalid configuration: " + err
    if kind == "upstreams":
        err = check_upstream(conf) or client_cert_error(conf, lookup)
    elif kind in ("routes", "services", "stream_routes") and \
            isinstance(conf.get("upstream"), dict):
        err = check_upstream(conf["upstream"]) or client_cert_error(conf["upstream"], lookup)
    elif kind == "ssls":
        from ..tls.certs import check_ssl_conf
        err = check_ssl_conf(conf)
    elif kind == "protos":
        err = check_proto(conf, lookup)
    if err is not None:
        return err
    refs = ref_names(kind) if kind in BY_NAME else ()
    if kind != "consumers":
        err = _ref_error(conf, refs, exists)
        if err is not None:
            return err
    if conf.get("plugins"):
        err = check_plugins(kind, conf["plugins"], reg)
        if err is not None:
            return err
    if kind == "stream_routes" and isinstance(conf.get("protocol"), dict):
        # APISIX's xRPC check with no protocol enabled (Pylon has none: docs/stream.md)
        return f"unknown protocol [{conf['protocol'].get('name')}]"
    if duplicate is not None:
        err = duplicate()
        if err is not None:
            return err
    if kind == "consumers":
        err = _ref_error(conf, refs, exists)
        if err is not None:
            return err
    if kind == "routes" and conf.get("vars"):
        from ..routing.expr import ExprError, compile_expr
        try:
            compile_expr(conf["vars"])
        except ExprError as e:
            return "failed to validate the 'vars' expression: " + e.message
    return _pylon_error(kind, conf, router_kind)


def check_proto(conf: dict[str, Any], lookup: Callable[[str, str], Any] | None
                ) -> str | None:
    """``apisix/admin/protos.lua``: the content must compile (``invalid content: ...``);
    imports of other proto objects (``"<id>.proto"``) are read from the store."""
    from ..pdk.protos import ProtoError, compile_proto

    def other(oid: str) -> str | None:
        v = lookup("protos", oid) if lookup is not None else None
        return v.get("content") if isinstance(v, dict) else None
    try:
        compile_proto(conf["content"], other)
    except ProtoError as e:
        return "invalid content: " + e.message
    return None


def _ref_error(conf: dict[str, Any], refs: tuple[tuple[str, str, str], ...],
               exists: Exists) -> str | None:
    for fld, target, what in refs:
        ref = conf.get(fld)
        if ref is not None and not exists(target, str(ref)):
            return f"failed to fetch {what} info by {what} id [{ref}], response code: 404"
    return None


def _metadata_error(conf: dict[str, Any], reg: Registry) -> str | None:
    """``apisix/admin/plugin_metadata.lua``: the plugin's metadata schema, then its own
    checks (``conf["id"]`` is the plugin's name)."""
    name = str(conf.get("id"))
    spec = reg.get(name)
    if spec is None:
        return "invalid plugin name"
    if spec.metadata_schema is None:
        return f"no metadata schema for plugin {name}"
    body = {k: v for k, v in conf.items() if k != "id"}
    err = api7_error(spec.metadata_schema, body)
    if err is not None:
        return "invalid configuration: " + err
    try:
        spec.check_conf(body, "metadata")
    except PluginConfigError as e:
        return "invalid configuration: " + str(e)
    return None


def _pylon_error(kind: str, conf: dict[str, Any], router_kind: str) -> str | None:
    """What Pylon refuses beyond APISIX (its typed models, its router, its schemas of the
    kinds APISIX does not publish one for)."""
    return fmt_problem(check_shape(kind, conf, router_kind))


def _plugin_problem(obj: Any, reg: Registry, canon: str = "routes") -> Problem | None:
    """The first plugin entry that is unknown or does not validate, checked by the loaded
    plugin itself (its schema with defaults, ``_meta``, its ``check``)."""
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
    consumer_side = canon in ("consumers", "credentials")
    for name, conf in obj["plugins"].items():
        spec = reg.get(name)
        if spec is None:
            return "plugins", f"unknown plugin [{name}]"
        if canon == "credentials" and spec.type != "auth":
            return "plugins", ("only supports auth type plugins in consumer credential, "
                               f"{name} is not")
        st = "consumer" if consumer_side and spec.type == "auth" and \
            spec.consumer_schema is not None else "route"
        try:
            spec.check_conf(conf, st)
        except PluginConfigError as e:
            return f"plugins.{name}", str(e)
    return None


def check_object(kind: str, obj: Any, plugins: Registry | None = None,
                 router_kind: str = "radixtree_host_uri") -> Problem | None:
    """``None`` when ``obj`` is a valid ``kind`` (plural or singular), else
    ``(field path, message)``: its shape (``pylon.model.schemas.check_shape``), then, when
    ``plugins`` is given, its plugin names and configurations."""
    problem = check_shape(kind, obj, router_kind)
    if problem is None and plugins is not None:
        return _plugin_problem(obj, plugins, canonical_kind(kind) or kind)
    return problem


def validate_object(kind: str, obj: Any, plugins: Registry | None = None,
                    router_kind: str = "radixtree_host_uri") -> str | None:
    """``check_object`` as one string, ``"path: message"`` (what ``error_msg`` says)."""
    return fmt_problem(check_object(kind, obj, plugins, router_kind))


# -------------------------------------------------------------------------- configs/validate

_INDEX = re.compile(r"^[a-z_]+\[(\d+)\]")
_CONF_VERSION = "_conf_version"


def validate_document(doc: dict[str, Any], router_kind: str,
                      plugins: Registry) -> list[dict[str, Any]]:
    """Every rejection of a standalone document, as ``{"resource_type", "index", "id",
    "path", "error"}`` rows in document order (empty when it would load whole), with the
    node's ``plugins``.

    Routes, services and upstreams: ``parse_resources`` then ``compile_resources`` (so
    references and plugins are checked as the node checks them).  The other kinds: their
    schema, duplicate ids, and plugin names."""
    from ..config.compiler import PluginSet, compile_resources
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
    compiled = compile_resources(res, router_kind, PluginSet(plugins))
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


def _later_item(kind: str, item: Any, plugins: Registry
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
        s = secret_schemas().get(manager)
        if s is None:
            why = f"unknown secret manager {manager!r} (vault, aws, gcp)"
            return kind, ident, ("id", why)
        import fastjsonschema

        return kind, ident, schema_problem(fastjsonschema.compile(s), conf)
    if kind == "plugin_metadata":
        if ident is None:
            return kind, None, ("id", "the plugin's name is required")
        if ident not in plugins:
            return kind, ident, ("id", f"unknown plugin [{ident}]")
        return kind, ident, schema_problem(validator(kind), item)
    return kind, ident, check_object(kind, item, plugins)
