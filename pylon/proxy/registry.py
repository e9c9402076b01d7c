"""The plugin registry: which plugins this node loads, their schemas, their hooks.

A plugin is one Python module (see ``docs/writing-a-plugin.md``)::

    name = "key-auth"            # unique
    priority = 2500              # unique; higher runs first (APISIX's number where it has one)
    version = 0.1
    type = "auth"                # optional: an authentication plugin (consumers, multi-auth)
    schema = {...}               # JSON Schema of the route/service/global configuration
    consumer_schema = {...}      # optional: the consumer / credential configuration
    metadata_schema = {...}      # optional: plugin_metadata
    encrypt_fields = ("key",)    # optional: secret fields (dotted paths): stored encrypted,
                                 # masked in the audit log and for viewer keys
    consumer_key = "key"         # auth plugins: the consumer field that identifies a consumer

    def check(conf, schema_type): ...      # optional: what JSON Schema cannot say (raise)
    def prepare(conf): ...                 # optional: compile once per config snapshot
    def prepare_consumer(conf): ...        # optional: the same for consumer configurations
    def rewrite(conf, ctx): ...            # phase hooks, each optional
    def access(conf, ctx): ...
    def before_proxy(conf, ctx): ...
    def header_filter(conf, ctx): ...
    def body_filter(conf, ctx, chunk, last): ...   # returns the chunk to send on
    def log(conf, ctx): ...
    def stream_preread(conf, sctx): ...    # stream subsystem (stream_routes, docs/stream.md):
    def stream_log(conf, sctx): ...        # a connection's start and end; sctx: pdk.StreamContext

Plugins come from three places: ``pylon.plugins`` (built in), directories named in the node
config (``pylon.extra_plugin_dirs``) and installed packages (entry point group
``pylon.plugins``).  The node config's ``plugins:`` list (APISIX-style) says which load; without
it every plugin found loads.  ``load`` builds a new ``Registry``; the node holds it
(``pylon.node.Node.plugins``) and a plugin reload swaps it for a new one.  A compiled config
snapshot keeps references to the hooks it was compiled with, so a reload never changes a
request in flight.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import logging
import os
import pkgutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import fastjsonschema

from ..errors import PylonError

log = logging.getLogger("pylon.plugins")

PHASES = ("rewrite", "access", "before_proxy", "header_filter", "body_filter", "log")
#: the stream subsystem's phases (APISIX's stream plugins: ``preread`` and ``log``); a
#: plugin with either hook may be named in a stream route's ``plugins``
STREAM_PHASES = ("stream_preread", "stream_log")
SCHEMA_TYPES = ("route", "consumer", "metadata")

#: ``_meta`` accepted in every plugin configuration (APISIX injects the same property)
META_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "disable": {"type": "boolean"},
        "priority": {"type": "integer", "description": "overrides the plugin's priority"},
        "filter": {"type": "array", "description": "a vars expression; the plugin runs only "
                                                   "when it matches"},
        "error_response": {"oneOf": [{"type": "string"}, {"type": "object"}]},
    },
    "additionalProperties": False,
}
_meta_validator = fastjsonschema.compile(META_SCHEMA)


class PluginConfigError(PylonError, ValueError):
    """A plugin configuration does not validate; ``str()`` is APISIX's error text."""


@dataclass(eq=False)
class PluginSpec:
    name: str
    priority: int
    module: ModuleType
    version: Any = 0.1
    type: str = "other"
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    consumer_schema: dict[str, Any] | None = None
    metadata_schema: dict[str, Any] | None = None
    encrypt_fields: tuple[str, ...] = ()
    consumer_key: str | None = None
    hooks: dict[str, Callable[..., Any]] = field(default_factory=dict)
    #: the stream subsystem's hooks (``STREAM_PHASES``); empty: not a stream plugin
    stream_hooks: dict[str, Callable[..., Any]] = field(default_factory=dict)
    #: the module's ``subsystems``: where it may be configured -- "http" (routes,
    #: services, consumers, global rules) and/or "stream" (stream routes, with stream hooks)
    subsystems: tuple[str, ...] = ("http",)
    check: Callable[[dict[str, Any], str], Any] | None = None
    prepare: Callable[[dict[str, Any]], Any] | None = None
    prepare_consumer: Callable[[dict[str, Any]], Any] | None = None
    prepare_metadata: Callable[[dict[str, Any]], Any] | None = None
    #: ``phases(prepared conf)`` -> the phases this configuration needs (None: all hooks);
    #: a hook its configuration does not need is left out of the chain -- zero cost
    phases: Callable[[Any], Any] | None = None
    #: ``api()`` -> the HTTP endpoints the plugin exposes (``[{methods, uri, handler}]``)
    api: Callable[[], Any] | None = None
    source: str = "builtin"
    _validators: dict[str, Callable[[Any], Any]] = field(default_factory=dict)

    @classmethod
    def from_module(cls, mod: ModuleType, source: str) -> PluginSpec:
        name = getattr(mod, "name", None)
        prio = getattr(mod, "priority", None)
        if not isinstance(name, str) or not name:
            raise ValueError(f"{mod.__name__}: a plugin module needs a string `name`")
        if not isinstance(prio, int) or isinstance(prio, bool):
            raise ValueError(f"plugin {name}: `priority` must be an integer")  # noqa: TRY004
        hooks = {ph: getattr(mod, ph) for ph in PHASES if callable(getattr(mod, ph, None))}
        schema = getattr(mod, "schema", None) or {"type": "object"}
        secret = getattr(mod, "encrypt_fields", ()) or ()
        if isinstance(secret, str) or not all(isinstance(p, str) and p for p in secret):
            raise ValueError(f"plugin {name}: `encrypt_fields` must be a tuple of field paths")
        spec = cls(name=name, priority=prio, module=mod,
                   version=getattr(mod, "version", 0.1), type=getattr(mod, "type", "other"),
                   schema=schema, consumer_schema=getattr(mod, "consumer_schema", None),
                   metadata_schema=getattr(mod, "metadata_schema", None),
                   encrypt_fields=tuple(secret),
                   consumer_key=getattr(mod, "consumer_key", None), hooks=hooks,
                   stream_hooks={ph: getattr(mod, ph) for ph in STREAM_PHASES
                                 if callable(getattr(mod, ph, None))},
                   subsystems=tuple(getattr(mod, "subsystems", ("http", "stream"))),
                   check=getattr(mod, "check", None), prepare=getattr(mod, "prepare", None),
                   prepare_consumer=getattr(mod, "prepare_consumer", None),
                   prepare_metadata=getattr(mod, "prepare_metadata", None),
                   phases=getattr(mod, "phases", None),
                   api=mod.api if callable(getattr(mod, "api", None)) else None,
                   source=source)
        for st in SCHEMA_TYPES:                 # a broken schema fails the load, not a request
            spec.validator(st)
        return spec

    def serves(self, subsystem: str) -> bool:
        """Whether the plugin may be configured on ``subsystem``'s objects ("http":
        routes, services, consumers, global rules; "stream": stream routes)."""
        if subsystem == "stream":
            return bool(self.stream_hooks) and "stream" in self.subsystems
        return "http" in self.subsystems

    # -- configuration -------------------------------------------------------------------
    def schema_for(self, schema_type: str = "route") -> dict[str, Any] | None:
        if schema_type == "consumer":
            return self.consumer_schema
        if schema_type == "metadata":
            return self.metadata_schema
        return self.schema

    def validator(self, schema_type: str) -> Callable[[Any], Any] | None:
        v = self._validators.get(schema_type)
        if v is None:
            schema = self.schema_for(schema_type)
            if schema is None:
                return None
            try:
                v = fastjsonschema.compile(schema)
            except fastjsonschema.JsonSchemaDefinitionException as e:
                raise ValueError(f"plugin {self.name}: bad {schema_type} schema: {e}") from None
            self._validators[schema_type] = v
        return v

    def check_conf(self, conf: Any, schema_type: str = "route") -> dict[str, Any]:
        """The configuration with schema defaults filled in (a copy), or PluginConfigError
        with APISIX's wording."""
        if not isinstance(conf, dict):
            raise PluginConfigError(_bad_conf(self.name, conf))
        conf = copy.deepcopy(conf)
        meta = conf.pop("_meta", None) if schema_type == "route" else None
        if meta is not None:
            try:
                _meta_validator(meta)
            except fastjsonschema.JsonSchemaValueException as e:
                from ..model.schema_errors import schema_message
                raise PluginConfigError(self._err('property "_meta" validation failed: '
                                                  + schema_message(META_SCHEMA, meta, e))
                                        ) from None
            if meta.get("filter") is not None:
                from ..routing.expr import ExprError, compile_expr
                try:
                    compile_expr(meta["filter"], "_meta.filter")
                except ExprError as e:      # as APISIX: no plugin prefix
                    raise PluginConfigError("failed to validate the 'vars' expression: "
                                            + e.message) from None
        v = self.validator(schema_type)
        if v is None:
            if schema_type == "route":
                v = _any_object
            else:
                raise PluginConfigError(f"plugin {self.name} has no {schema_type} schema")
        try:
            conf = v(conf)
        except fastjsonschema.JsonSchemaValueException as e:
            from ..model.schema_errors import schema_message
            raise PluginConfigError(self._err(schema_message(self.schema_for(schema_type),
                                                             conf, e))) from None
        if self.check is not None:
            try:
                self.check(conf, schema_type)
            except (ValueError, TypeError, KeyError) as e:
                raise PluginConfigError(self._err(str(e))) from None
        if meta is not None:
            conf["_meta"] = meta
        return conf

    def _err(self, msg: str) -> str:
        return f"failed to check the configuration of plugin {self.name} err: {msg}"

    def info(self) -> dict[str, Any]:
        """APISIX's plugin attributes, as the Admin API publishes them."""
        out: dict[str, Any] = {"version": self.version, "priority": self.priority,
                               "schema": _with_meta(self.schema), "type": self.type,
                               "scope": "global", "source": self.source}
        if self.consumer_schema is not None:
            out["consumer_schema"] = self.consumer_schema
        if self.metadata_schema is not None:
            out["metadata_schema"] = self.metadata_schema
        return out


def map_fields(conf: dict[str, Any], fields: Iterable[str],
               fn: Callable[[Any], Any]) -> dict[str, Any]:
    """A copy of ``conf`` with ``fn`` applied to the value (not None) at each dotted path
    present; the objects on the way are copied, the rest is shared."""
    out = dict(conf)
    for path in fields:
        *parents, last = path.split(".")
        cur: Any = out
        for p in parents:
            nxt = cur.get(p)
            if not isinstance(nxt, dict):
                break
            cur[p] = dict(nxt)
            cur = cur[p]
        else:
            if cur.get(last) is not None:
                cur[last] = fn(cur[last])
    return out


def _with_meta(schema: dict[str, Any]) -> dict[str, Any]:
    s = copy.deepcopy(schema)
    if s.get("type") == "object":
        s.setdefault("properties", {})["_meta"] = copy.deepcopy(META_SCHEMA)
    return s


def _any_object(conf: Any) -> Any:
    return conf


def _bad_conf(name: str, conf: Any) -> str:
    """APISIX's text for a plugin configuration that is not an object."""
    import json
    return f"invalid plugin conf {json.dumps(conf, separators=(',', ':'))} for plugin [{name}]"


class Registry:
    """The loaded plugins by name (immutable once built)."""

    def __init__(self, specs: Iterable[PluginSpec] = ()) -> None:
        self.plugins: dict[str, PluginSpec] = {s.name: s for s in specs}
        self.errors: list[str] = []
        #: the node config's ``plugin_attr`` (name -> attributes), set by ``configure``
        self.attrs: dict[str, dict[str, Any]] = {}
        #: the plugins' endpoints (``api()``): exact URIs, and ``prefix*`` ones longest first;
        #: built at the first lookup (``api()`` may read ``plugin_attr``)
        self._api: tuple[dict[str, list[ApiRoute]], list[ApiRoute]] | None = None

    def get(self, name: str) -> PluginSpec | None:
        return self.plugins.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self.plugins

    def table(self, subsystem: str = "http") -> dict[str, dict[str, Any]]:
        """The plugins ``subsystem`` may configure ("http" or "stream") and their
        attributes (the Admin API's ``plugins?subsystem=``)."""
        return {n: s.info() for n, s in self.plugins.items() if s.serves(subsystem)}

    def api_match(self, method: str, path: str) -> ApiRoute | None:
        """The plugin endpoint serving ``method path`` (APISIX ``api_router.match``, what
        ``public-api`` exposes): an exact URI before the longest ``prefix*`` one."""
        table = self._api
        if table is None:
            table = self._api = _api_table(self.plugins.values())
        exact, prefixed = table
        for r in exact.get(path, ()):
            if r.methods is None or method in r.methods:
                return r
        for r in prefixed:
            if path.startswith(r.uri[:-1]) and (r.methods is None or method in r.methods):
                return r
        return None

    def check_plugins(self, plugins: Any, schema_type: str = "route") -> str | None:
        """APISIX's error text for the first plugin entry that is unknown or invalid."""
        if not plugins:
            return None
        if not isinstance(plugins, dict):
            return "plugins must be an object"
        for name, conf in plugins.items():
            if not isinstance(conf, dict):
                return _bad_conf(name, conf)
            spec = self.plugins.get(name)
            if spec is None or not spec.serves("stream" if schema_type == "stream"
                                               else "http"):
                return f"unknown plugin [{name}]"
            if schema_type == "stream":
                schema_type_here = "route"      # a stream plugin's schema is its route one
            elif schema_type == "consumer" and spec.consumer_schema is None:
                schema_type_here = "route"      # non-auth plugins on a consumer: route schema
            else:
                schema_type_here = schema_type
            try:
                spec.check_conf(conf, schema_type_here)
            except PluginConfigError as e:
                return str(e)
        return None

    def map_secrets(self, kind: str, value: Any, fn: Callable[[Any], Any],
                    unknown: Callable[[Any], Any] | None = None) -> Any:
        """A copy of ``value``, a stored object of resource ``kind`` (``routes``,
        ``consumers``, ``plugin_metadata`` ...), with ``fn`` applied to every secret its
        plugins declare (``encrypt_fields``): in its ``plugins`` map or, for a
        plugin_metadata, in the object itself.  ``unknown``, when given, replaces the
        configuration of a plugin this registry does not know (its secrets cannot be told).
        The objects on the way are copied, the rest is shared."""
        if not isinstance(value, dict):
            return value
        if kind == "plugin_metadata":
            spec = self.plugins.get(str(value.get("id")))
            if spec is None:
                return value if unknown is None else \
                    {k: v if k == "id" else unknown(v) for k, v in value.items()}
            return map_fields(value, spec.encrypt_fields, fn)
        plugins = value.get("plugins")
        if not isinstance(plugins, dict):
            return value
        out = {}
        for name, conf in plugins.items():
            spec = self.plugins.get(name)
            if spec is None:
                conf = conf if unknown is None else unknown(conf)
            elif spec.encrypt_fields and isinstance(conf, dict):
                conf = map_fields(conf, spec.encrypt_fields, fn)
            out[name] = conf
        return {**value, "plugins": out}


@dataclass(frozen=True, slots=True)
class ApiRoute:
    """One endpoint of a plugin's ``api()``: ``handler(ctx)`` answers like a hook does (a
    status, ``(status, body[, headers])``, or None to let the request go on; may be async)."""

    plugin: str
    uri: str
    methods: frozenset[str] | None
    handler: Callable[[Any], Any]


def _api_table(specs: Iterable[PluginSpec]) -> tuple[dict[str, list[ApiRoute]], list[ApiRoute]]:
    exact: dict[str, list[ApiRoute]] = {}
    prefixed: list[ApiRoute] = []
    for spec in specs:
        if spec.api is None:
            continue
        try:
            rows = list(spec.api())
            routes = []
            for row in rows:
                uri, handler, methods = row["uri"], row["handler"], row.get("methods")
                if not isinstance(uri, str) or not uri.startswith("/") or not callable(handler):
                    raise ValueError(f"bad endpoint {row!r}: needs a uri starting with '/' "
                                     "and a callable handler")
                routes.append(ApiRoute(spec.name, uri, frozenset(m.upper() for m in methods)
                                       if methods else None, handler))
        except Exception as e:  # noqa: BLE001 - one broken plugin must not hide the others
            log.error("plugin %s: api() failed: %s: %s", spec.name, type(e).__name__, e)
            continue
        for r in routes:
            if r.uri.endswith("*"):
                prefixed.append(r)
            else:
                exact.setdefault(r.uri, []).append(r)
    prefixed.sort(key=lambda r: -len(r.uri))
    return exact, prefixed


# ----------------------------------------------------------------------------- loading
_BUILTIN_PACKAGE = "pylon.plugins"
_EXT_PREFIX = "pylon_ext_plugins."
ENTRY_POINT_GROUP = "pylon.plugins"


def _builtin_modules(reload: bool) -> list[tuple[ModuleType, str]]:
    import pylon.plugins as pkg
    out = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_"):
            continue
        modname = f"{_BUILTIN_PACKAGE}.{info.name}"
        mod = sys.modules.get(modname)
        mod = importlib.reload(mod) if (mod is not None and reload) else \
            importlib.import_module(modname)
        out.append((mod, "builtin"))
    return out


def _dir_modules(dirs: Iterable[str]) -> list[tuple[ModuleType, str]]:
    out = []
    for d in dirs:
        if not os.path.isdir(d):
            raise ValueError(f"plugin directory {d!r} does not exist")
        for fn in sorted(os.listdir(d)):
            if not fn.endswith(".py") or fn.startswith("_"):
                continue
            path = os.path.join(d, fn)
            modname = _EXT_PREFIX + fn[:-3].replace("-", "_")
            spec = importlib.util.spec_from_file_location(modname, path)
            if spec is None or spec.loader is None:     # pragma: no cover
                continue
            mod = importlib.util.module_from_spec(spec)
            sys.modules[modname] = mod                  # always a fresh execution: reload
            spec.loader.exec_module(mod)
            out.append((mod, path))
    return out


def _entry_point_modules(reload: bool) -> list[tuple[ModuleType, str]]:
    from importlib.metadata import entry_points
    out = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        mod = ep.load()
        if not isinstance(mod, ModuleType):
            mod = sys.modules.get(getattr(mod, "__module__", ""), mod)
        if reload and isinstance(mod, ModuleType):
            mod = importlib.reload(mod)
        out.append((mod, f"entry point {ep.value}"))
    return out


def load(names: list[str] | None = None, dirs: Iterable[str] = (), *,
         reload: bool = False, stream_names: list[str] | None = None) -> Registry:
    """Discover plugins and keep those in ``names`` (every one found when None) and in
    ``stream_names`` (APISIX's ``stream_plugins``: the ones stream routes may name; None:
    every one with stream hooks).  A plugin in one list only serves that subsystem.

    A module that fails to import, a duplicate name or priority, or a name in ``names``
    that no module provides is reported in ``Registry.errors`` (and logged) and skipped:
    the node still starts with the rest, as APISIX does."""
    errors: list[str] = []
    found: dict[str, PluginSpec] = {}
    sources: list[Callable[[], list[tuple[ModuleType, str]]]] = [
        lambda: _builtin_modules(reload), lambda: _dir_modules(dirs),
        lambda: _entry_point_modules(reload)]
    for src in sources:
        try:
            mods = src()
        except Exception as e:  # noqa: BLE001 - a broken plugin must not stop the node
            errors.append(f"failed to load plugins: {type(e).__name__}: {e}")
            continue
        for mod, where in mods:
            try:
                spec = PluginSpec.from_module(mod, where)
            except Exception as e:  # noqa: BLE001
                errors.append(f"{where}: {e}")
                continue
            if spec.name in found and found[spec.name].source != "builtin":
                errors.append(f"plugin {spec.name} from {where} ignored: already loaded from "
                              f"{found[spec.name].source}")
                continue
            found[spec.name] = spec          # a custom plugin may replace a built-in one
    wanted = list(found) if names is None else list(names)
    wanted += [n for n in stream_names or () if n not in wanted]
    out: list[PluginSpec] = []
    prios: dict[int, str] = {}
    for name in wanted:
        chosen = found.get(name)
        if chosen is None:
            where = "plugins" if names is None or name in names else "stream_plugins"
            errors.append(f"plugin {name} is listed in `{where}` but no module provides it")
            continue
        listed = {"http": names is None or name in names,
                  "stream": stream_names is None or name in stream_names}
        chosen.subsystems = tuple(s for s in chosen.subsystems if listed.get(s, True))
        if not chosen.subsystems:
            continue
        other = prios.get(chosen.priority)
        if other is not None and other != name:
            errors.append(f"plugin {name} not loaded: priority {chosen.priority} is already "
                          f"used by {other}")
            continue
        prios[chosen.priority] = name
        out.append(chosen)
    reg = Registry(sorted(out, key=lambda s: -s.priority))
    reg.errors = errors
    for msg in errors:
        log.error("%s", msg)
    return reg


def configure(reg: Registry, plugin_attr: dict[str, dict[str, Any]] | None) -> None:
    """Give the plugins of ``reg`` the node config's ``plugin_attr`` (name -> attributes)."""
    reg.attrs = dict(plugin_attr or {})
