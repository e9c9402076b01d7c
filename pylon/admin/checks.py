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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..model.apisix import HASH_KEY, SCHEMAS
from ..model.schema_errors import api7_error

#: (kind, id) -> whether the object exists
Exists = Callable[[str, str], bool]

#: references checked on write, in APISIX's order: (field, kind it names, how it is named)
REFS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "routes": (("upstream_id", "upstreams", "upstream"), ("service_id", "services", "service"),
               ("plugin_config_id", "plugin_configs", "plugin config")),
    "services": (("upstream_id", "upstreams", "upstream"),),
    "stream_routes": (("upstream_id", "upstreams", "upstream"),
                      ("service_id", "services", "service")),
    "consumers": (("group_id", "consumer_groups", "consumer group"),),
}
_FORBIDDEN = ("create_time", "update_time")


def schema_error(kind: str, conf: Any) -> str | None:
    """The api7 text for ``conf`` against ``kind``'s APISIX schema (no prefix)."""
    schema = SCHEMAS.get(kind)
    if schema is None:
        from .meta import resource_schema, secret_schema
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


def check_plugins(kind: str, plugins: Any) -> str | None:
    """``apisix.plugin.check_schema`` over ``plugins`` (consumer schemas on consumers and
    credentials)."""
    from ..proxy.registry import current
    reg = current()
    consumer_side = kind in ("consumers", "credentials")
    err = reg.check_plugins(plugins, "consumer" if consumer_side else "route")
    if err is not None:
        return f"invalid plugins configuration: {err}" if consumer_side else err
    if kind == "credentials":
        for name in plugins:
            spec = reg.get(name)
            if spec is None or spec.type != "auth":
                return "only supports auth type plugins in consumer credential"
    return None


def check_resource(kind: str, conf: dict[str, Any], exists: Exists,
                   router_kind: str = "radixtree_host_uri",
                   duplicate: Callable[[], str | None] | None = None) -> str | None:
    """The first thing APISIX (then Pylon) refuses in ``conf`` of ``kind``, or None.
    ``duplicate`` is the consumer key check, run where APISIX runs it."""
    if kind == "routes":
        if conf.get("host") is not None and conf.get("hosts") is not None:
            return "only one of host or hosts is allowed"
        if conf.get("remote_addr") is not None and conf.get("remote_addrs") is not None:
            return "only one of remote_addr or remote_addrs is allowed"
    if kind == "plugin_metadata":
        return _metadata_error(conf)
    err = schema_error(kind, conf)
    if err is not None:
        return "invalid configuration: " + err
    if kind == "upstreams":
        err = check_upstream(conf)
    elif kind in ("routes", "services") and isinstance(conf.get("upstream"), dict):
        err = check_upstream(conf["upstream"])
    if err is not None:
        return err
    refs = REFS.get(kind, ())
    if kind != "consumers":
        err = _ref_error(conf, refs, exists)
        if err is not None:
            return err
    if conf.get("plugins"):
        err = check_plugins(kind, conf["plugins"])
        if err is not None:
            return err
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


def _ref_error(conf: dict[str, Any], refs: tuple[tuple[str, str, str], ...],
               exists: Exists) -> str | None:
    for fld, target, what in refs:
        ref = conf.get(fld)
        if ref is not None and not exists(target, str(ref)):
            return f"failed to fetch {what} info by {what} id [{ref}], response code: 404"
    return None


def _metadata_error(conf: dict[str, Any]) -> str | None:
    """``apisix/admin/plugin_metadata.lua``: the plugin's metadata schema, then its own
    checks (``conf["id"]`` is the plugin's name)."""
    from ..proxy.registry import PluginConfigError, current
    name = str(conf.get("id"))
    spec = current().get(name)
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
    from .meta import check_object
    problem = check_object(kind, conf, None, router_kind)
    if problem is None:
        return None
    path, message = problem
    return f"{path}: {message}" if path else message
