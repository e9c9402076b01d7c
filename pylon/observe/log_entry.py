"""The log entry of the logger plugins (APISIX ``log-util``).

``full_log(ctx)`` is APISIX's default entry (``get_full_log``); ``compile_format(fmt)`` turns
a ``log_format`` (name → ``"$var"`` or a literal) into a function of ctx, as
``get_custom_format_log`` reads it: a value starting with ``$`` is the variable named by the
rest, anything else is itself; ``route_id`` and ``service_id`` are added when a route
matched.  ``entry(conf, ctx, plugin)`` picks the conf's ``log_format``, else the
plugin_metadata's, else the full log.  Everything here runs in the log phase, synchronously,
and produces plain dicts; encoding happens later in the batch processor's task.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pylon
from pylon.pdk import multi_dict

HOSTNAME = socket.gethostname()

#: plugin_metadata ``log_format`` of APISIX (``metadata_schema_log_format``)
METADATA_LOG_FORMAT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "default": {"host": "$host", "@timestamp": "$time_iso8601", "client_ip": "$remote_addr"},
}


def _end(x: Any) -> float:
    return x.t_end or x.loop.time()


def _up_time(x: Any) -> float | None:
    """Seconds from sending upstream to the end (None: no upstream answered)."""
    if not x.up_status or not x.t_up_start:
        return None
    return max(0.0, _end(x) - x.t_up_start)


def compile_format(fmt: dict[str, Any]) -> Callable[[Any], dict[str, Any]]:
    items = [(k, True, v[1:]) if isinstance(v, str) and v.startswith("$") else (k, False, v)
             for k, v in fmt.items()]

    def render(ctx: Any) -> dict[str, Any]:
        entry = {}
        for k, is_var, v in items:
            if is_var:
                v = ctx.var(v)
                if v is None:           # a nil in Lua: the key is absent
                    continue
            entry[k] = v
        route = ctx.route
        if route is not None:
            if route.service_id is not None:
                entry["service_id"] = route.service_id
            entry["route_id"] = route.id
        return entry

    return render


def _headers(pairs: Any) -> dict[str, Any]:
    return multi_dict((k.decode("latin-1").lower(), v.decode("latin-1"))
                      if isinstance(k, bytes) else (k.lower(), v) for k, v in pairs or ())


def _querystring(ctx: Any) -> dict[str, Any]:
    from urllib.parse import parse_qsl
    q = ctx.head.query
    return multi_dict(parse_qsl(q.decode("latin-1"), keep_blank_values=True)) if q else {}


def full_log(ctx: Any) -> dict[str, Any]:
    """APISIX's default log entry."""
    head = ctx.head
    request_uri = head.target.decode("latin-1")
    route = ctx.route
    if route is not None:
        service_id = route.service_id or ""
        route_id = route.id
    else:
        service_id = head.host
        route_id = None
    end = _end(ctx)
    latency = (end - ctx.t_start) * 1000
    entry: dict[str, Any] = {
        "request": {
            "url": f"{ctx.down.scheme}://{head.host}:{ctx.down.server_port_s}{request_uri}",
            "uri": request_uri,
            "method": head.method,
            "headers": _headers(ctx.headers()),
            "querystring": _querystring(ctx),
            "size": int(ctx.body_in),
        },
        "response": {
            "status": int(ctx.status),
            "headers": _headers(ctx.resp_headers),
            "size": int(ctx.down.bytes_out),
        },
        "server": {"hostname": HOSTNAME, "version": pylon.__version__},
        "upstream": ctx.up_addr or None,
        "service_id": service_id,
        "route_id": route_id,
        "client_ip": ctx.remote_addr,
        "start_time": int(ctx.wall_start() * 1000),
        "latency": latency,
    }
    up = _up_time(ctx)
    if up is not None:
        entry["upstream_latency"] = up * 1000
        entry["apisix_latency"] = max(0.0, latency - up * 1000)
    else:
        entry["apisix_latency"] = latency
    name = ctx.consumer_name
    if name:
        entry["consumer"] = {"username": name}
    return {k: v for k, v in entry.items() if v is not None}


def prepare_format(conf: dict[str, Any]) -> Callable[[Any], dict[str, Any]] | None:
    fmt = conf.get("log_format")
    return compile_format(fmt) if fmt else None


#: a logger plugin's ``metadata_schema`` (its ``log_format`` default)
METADATA_SCHEMA: dict[str, Any] = {"type": "object",
                                   "properties": {"log_format": METADATA_LOG_FORMAT_SCHEMA}}


def prepare_logger(conf: dict[str, Any]) -> dict[str, Any]:
    """A logger plugin's ``prepare``: its ``log_format`` compiled, its batch processor's key."""
    from .batch import conf_key
    return {**conf, "_format": prepare_format(conf), "_key": conf_key(conf)}


def prepare_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """For a logger's ``prepare_metadata``: compile the metadata's ``log_format`` once."""
    fmt = meta.get("log_format")
    return {**meta, "_format": compile_format(fmt) if fmt else None}


def entry(conf: dict[str, Any], ctx: Any, plugin: str) -> dict[str, Any]:
    """The conf's ``log_format``, else the plugin_metadata's, else the full log."""
    fmt = conf.get("_format")
    if fmt is None:
        meta = ctx.metadata(plugin)
        if isinstance(meta, dict):
            fmt = meta.get("_format")
    return fmt(ctx) if fmt is not None else full_log(ctx)
