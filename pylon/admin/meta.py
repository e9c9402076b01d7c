"""The Admin API's endpoints that are not resources (APISIX v3 behaviour), transport-free.

Endpoints (paths relative to ``/apisix/admin``):

* ``GET schema/{kind}`` -- the JSON Schema (draft-07) of a resource kind.  Plural (``routes``)
  and APISIX's singular names (``route``, ``ssl``, ``global_rule``...) are accepted;
  ``schema/plugins/{name}`` is a plugin's schema, as in APISIX, and so is ``schema/{name}``
  when ``name`` is a loaded plugin and not a kind.  Routes, services and upstreams are
  generated from ``pylon.model`` (so the schema says exactly what a PUT accepts); the other
  kinds are written from the fields APISIX defines (``apisix/schema_def.lua``); all of them
  are in ``pylon.model.schemas``.
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
``None`` for anything that is not one of its paths, e.g. ``["routes", "1"]``.  A refusal is
raised (``pylon.errors.AdminError``) and answered by ``pylon.admin.app.answer``.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from ..errors import InvalidRequest, MethodNotAllowed, NotFound, Unavailable
from ..model.kinds import canonical_kind
from ..model.schemas import resource_schema
from ..proxy.registry import Registry
from .checks import validate_document, validate_object

Reply = tuple[int, Any]
PluginTable = Mapping[str, Mapping[str, Any]]


def _no_plugins() -> PluginTable:
    return {}


@dataclass(slots=True)
class MetaContext:
    """What the meta endpoints need from the node.

    * ``plugins()``: the loaded HTTP plugins (the node's ``Registry``, read at each request:
      a plugin reload swaps it).  Empty until plugins land.
    * ``stream_plugins()``: the stream subsystem's, ``name -> info`` where info carries at
      least ``priority`` and ``schema`` (APISIX's plugin attributes).
    * ``reload_plugins()``: awaited by ``PUT plugins/reload``; None = nothing to reload (the
      answer is still ``"done"``).  An exception is answered 503 with its text.
    * ``explain(args)``: awaited by ``GET explain`` with the query; returns ``(status, body)``
      (``pylon.config.explain.DocExplainer`` is one).  None = 503.
    * ``router_kind``: the node's ``router.http``; ``configs/validate`` compiles with it.
    """

    plugins: Callable[[], Registry] = Registry
    stream_plugins: Callable[[], PluginTable] = _no_plugins
    reload_plugins: Callable[[], Awaitable[Any]] | None = None
    explain: Callable[[dict[str, str]], Awaitable[Reply]] | None = None
    router_kind: str = "radixtree_host_uri"


def decode_body(body: bytes) -> Any:
    """A JSON request body (None when empty); APISIX's ``invalid request body: ...`` is
    raised (``InvalidRequest``).  Nesting and integers are bounded (``loader.shape_error``):
    a body of a thousand nested arrays is a 400, not a RecursionError further on."""
    from ..config.loader import MAX_DEPTH, shape_error

    if not body.strip():
        return None
    try:
        value = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as e:
        raise InvalidRequest(f"invalid request body: {e}") from None
    except RecursionError:                 # msgspec stops at Python's recursion limit
        err: str | None = f"objects and arrays nested deeper than {MAX_DEPTH} levels"
    else:
        err = shape_error(value)
        if err is None:
            return value
    raise InvalidRequest(f"invalid request body: {err}")


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
            raise NotFound("not found")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, _configs_validate, body, ctx, headers or {})
    if head == "openapi.json" and len(segs) == 1:
        if method != "GET":
            raise NotFound("not found")
        from .openapi import openapi_document

        return 200, openapi_document()
    if head == "explain" and len(segs) == 1:
        if method != "GET":
            raise NotFound("not found")
        if ctx.explain is None:
            raise Unavailable("explain is not available on this node")
        if not args.get("uri"):
            raise InvalidRequest("missing uri")
        return await ctx.explain(dict(args))
    return None


def _schema(method: str, rest: list[str], args: Mapping[str, str], body: bytes,
            ctx: MetaContext) -> Reply:
    if rest[:1] == ["validate"]:
        if method != "POST":
            raise NotFound("not found")
        if len(rest) != 2:
            raise NotFound("Unsupported resource type: " + ("/".join(rest[1:]) or "none"))
        kind = canonical_kind(rest[1])
        if kind is None:
            raise NotFound(f"Unsupported resource type: {rest[1]}")
        conf = decode_body(body)
        if conf is None:
            raise InvalidRequest("invalid configuration: must be an object")
        err = validate_object(kind, conf, ctx.plugins(), ctx.router_kind)
        if err:
            raise InvalidRequest(err)
        return 200, None
    if method != "GET":
        raise NotFound("not found")
    if len(rest) == 2 and rest[0] == "plugins":
        return _plugin_schema(rest[1], args, ctx)
    if len(rest) != 1:
        raise NotFound("not found")
    kind = canonical_kind(rest[0])
    if kind is not None:
        return 200, resource_schema(kind)
    if rest[0] in ctx.plugins():                 # as APISIX: /schema/<plugin name>
        return _plugin_schema(rest[0], args, ctx)
    raise NotFound(f"schema not found: {rest[0]} is neither a resource kind nor a loaded "
                   "plugin")


def _subsystem(args: Mapping[str, str]) -> str:
    sub = args.get("subsystem") or "http"
    if sub not in ("http", "stream"):
        raise InvalidRequest(f"unsupported subsystem: {sub}")
    return sub


def _table(ctx: MetaContext, sub: str) -> PluginTable:
    return ctx.stream_plugins() if sub == "stream" else ctx.plugins().table()


def _plugin_schema(name: str, args: Mapping[str, str], ctx: MetaContext) -> Reply:
    sub = _subsystem(args)
    info = _table(ctx, sub).get(name)
    if info is None:
        raise NotFound(f"plugin not found in subsystem {sub}")
    which = {"consumer": "consumer_schema", "metadata": "metadata_schema"}.get(
        args.get("schema_type", ""), "schema")
    schema = info.get(which)
    if schema is None:
        raise InvalidRequest("not found schema")
    return 200, copy.deepcopy(schema)


#: the plugin attributes ``GET plugins?all=true`` publishes
PLUGIN_ATTRS = ("version", "priority", "schema", "metadata_schema", "consumer_schema", "type",
                "scope")


async def _plugins(method: str, rest: list[str], args: Mapping[str, str],
                   ctx: MetaContext) -> Reply:
    if rest == ["reload"]:
        if method != "PUT":
            raise MethodNotAllowed("please use PUT method to reload the plugins, "
                                   f"{method} method is not allowed.")
        if ctx.reload_plugins is not None:
            try:
                await ctx.reload_plugins()
            except Exception as e:
                raise Unavailable(f"failed to reload plugins: {e}") from e
        return 200, "done"
    if method != "GET" or len(rest) > 1:
        raise NotFound("not found")
    if rest == ["list"]:
        sub = args.get("subsystem") or "http"
        if sub not in ("http", "stream"):
            raise InvalidRequest("invalid subsystem passed")
        table = _table(ctx, sub)
        names = sorted(table, key=lambda n: -plugin_priority(table[n]))
        return 200, names
    sub = _subsystem(args)
    if not rest:
        if args.get("all") == "true":
            table = _table(ctx, sub)
            return 200, {name: {k: copy.deepcopy(info[k]) for k in PLUGIN_ATTRS if k in info}
                         for name, info in table.items()}
        raise NotFound(f"plugin not found in subsystem {sub}")
    return _plugin_schema(rest[0], args, ctx)


def plugin_priority(info: Mapping[str, Any]) -> int:
    """A plugin's priority from its published attributes (0 when it has none)."""
    p = info.get("priority", 0)
    return p if isinstance(p, int) and not isinstance(p, bool) else 0


# -------------------------------------------------------------------------- configs/validate

#: cap on rejections spelled out in ``error_msg`` (``errors`` lists them all)
MAX_LISTED = 50


def _configs_validate(body: bytes, ctx: MetaContext, headers: Mapping[str, str]) -> Reply:
    if not body.strip():
        raise InvalidRequest("invalid request body: empty request body")
    ctype = (headers.get("content-type") or "").lower()
    doc: Any
    if ctype.startswith(("application/yaml", "application/x-yaml")):
        doc = _yaml(body)
    else:
        try:
            doc = decode_body(body)
        except InvalidRequest:
            try:
                doc = _yaml(body)           # lenient: a YAML document sent as JSON
            except InvalidRequest:
                doc = None
            if not isinstance(doc, dict):
                raise
    if not isinstance(doc, dict):
        raise InvalidRequest("invalid request body: the document must be an object")
    errors = validate_document(doc, ctx.router_kind, ctx.plugins())
    if not errors:
        return 200, None
    listed = [f"{e['path']}: {e['error']}" for e in errors[:MAX_LISTED]]
    more = len(errors) - len(listed)
    msg = "Configuration validation failed: " + "; ".join(listed)
    if more > 0:
        msg += f"; ... and {more} more"
    raise InvalidRequest(msg, errors=errors)


def _yaml(body: bytes) -> Any:
    from ..config.loader import ConfigError, parse_text

    try:
        return parse_text(body.decode("utf-8"), "request body")
    except (ConfigError, UnicodeDecodeError, ValueError) as e:
        raise InvalidRequest(f"invalid yaml request body: {e}") from None
