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
import time
from collections.abc import Callable
from typing import Any

import pylon

HOSTNAME = socket.gethostname()

#: plugin_metadata ``log_format`` of APISIX (``metadata_schema_log_format``)
METADATA_LOG_FORMAT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "default": {"host": "$host", "@timestamp": "$time_iso8601", "client_ip": "$remote_addr"},
}


def _bytes_sent(x: Any) -> int:
    return int(getattr(x.down, "bytes_out", 0) or 0)


def _up_time(x: Any) -> float | None:
    if not x.up_status or not x.t_up_start:
        return None
    return max(0.0, (x.t_end or x.loop.time()) - x.t_up_start)


def _end(x: Any) -> float:
    return x.t_end or x.loop.time()


#: nginx variables the log phase knows beyond ``ctx.var`` (values as nginx gives them)
_EXTRA: dict[str, Callable[[Any], Any]] = {
    "status": lambda x: str(x.status),
    "request_time": lambda x: f"{_end(x) - x.t_start:.3f}",
    "upstream_addr": lambda x: x.up_addr or None,
    "upstream_status": lambda x: str(x.up_status) if x.up_status else None,
    "upstream_response_time": lambda x: None if _up_time(x) is None else f"{_up_time(x):.3f}",
    "bytes_sent": lambda x: str(_bytes_sent(x)),
    "body_bytes_sent": lambda x: str(_bytes_sent(x)),
    "request_length": lambda x: str(x.body_in),
    "msec": lambda x: f"{x.wall_start():.3f}",
    "time_iso8601": lambda x: time.strftime("%Y-%m-%dT%H:%M:%S%z",
                                            time.localtime(x.wall_start())),
    "time_local": lambda x: time.strftime("%d/%b/%Y:%H:%M:%S %z",
                                          time.localtime(x.wall_start())),
    "hostname": lambda x: HOSTNAME,
    "request": lambda x: f"{x.head.method} {x.head.target.decode('latin-1')} "
                         f"HTTP/{x.head.version}",
    "http_host": lambda x: x.head.host,
}


def var(ctx: Any, name: str) -> Any:
    f = _EXTRA.get(name)
    if f is not None:
        return f(ctx)
    if name.startswith("sent_http_"):
        return ctx.resp_header(name[10:].replace("_", "-"))
    return ctx.var(name)


def compile_format(fmt: dict[str, Any]) -> Callable[[Any], dict[str, Any]]:
    items = [(k, True, v[1:]) if isinstance(v, str) and v.startswith("$") else (k, False, v)
             for k, v in fmt.items()]

    def render(ctx: Any) -> dict[str, Any]:
        entry = {}
        for k, is_var, v in items:
            if is_var:
                v = var(ctx, v)
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
    out: dict[str, Any] = {}
    for k, v in pairs or ():
        if isinstance(k, bytes):
            k = k.decode("latin-1")
            v = v.decode("latin-1")
        k = k.lower()
        old = out.get(k)
        if old is None:
            out[k] = v
        elif isinstance(old, list):
            old.append(v)
        else:
            out[k] = [old, v]
    return out


def _querystring(ctx: Any) -> dict[str, Any]:
    from urllib.parse import parse_qsl
    q = ctx.head.query
    out: dict[str, Any] = {}
    if not q:
        return out
    for k, v in parse_qsl(q.decode("latin-1"), keep_blank_values=True):
        old = out.get(k)
        if old is None:
            out[k] = v
        elif isinstance(old, list):
            old.append(v)
        else:
            out[k] = [old, v]
    return out


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
            "size": _bytes_sent(ctx),
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
