"""opentelemetry: one SERVER span per request, W3C trace context upstream, OTLP/HTTP export
(APISIX).

Route configuration: ``sampler`` (``name``: ``always_off`` (default), ``always_on``,
``trace_id_ratio`` with ``options.fraction``, ``parent_base`` with ``options.root``),
``additional_attributes`` (variable names → span attributes) and
``additional_header_prefix_attributes`` (request headers, ``x-prefix-*`` for a prefix).
Node-wide (``plugin_attr.opentelemetry`` in conf/config.yaml): ``trace_id_source``,
``resource``, ``collector`` (``address``, ``request_timeout``, ``request_headers``) and
``batch_span_processor``.  See ``docs/tracing.md``.

``rewrite`` reads ``traceparent``, takes the sampling decision and sets ``traceparent`` on
the request sent upstream (sampled or not); only a sampled request makes a span (its request
attributes taken here, before other plugins rewrite the request).  ``log`` finishes the span
and queues it; ``pylon.pdk.tracing`` exports it off the request path.  The
``opentelemetry-proto`` package is imported only when a configuration uses the plugin.
"""

from __future__ import annotations

from typing import Any

from pylon import pdk
from pylon.pdk import tracing

name = "opentelemetry"
priority = 12009
version = 0.1

_FRACTION = {"type": "number", "minimum": 0, "maximum": 1, "default": 0}

schema = {
    "type": "object",
    "properties": {
        "sampler": {
            "type": "object",
            "properties": {
                "name": {"type": "string",
                         "enum": ["always_on", "always_off", "trace_id_ratio", "parent_base"],
                         "default": "always_off"},
                "options": {
                    "type": "object",
                    "properties": {
                        "fraction": _FRACTION,
                        "root": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string",
                                         "enum": ["always_on", "always_off", "trace_id_ratio"],
                                         "default": "always_off"},
                                "options": {
                                    "type": "object",
                                    "properties": {"fraction": _FRACTION},
                                    "default": {"fraction": 0},
                                },
                            },
                            "default": {"name": "always_off", "options": {"fraction": 0}},
                        },
                    },
                    "default": {"fraction": 0, "root": {"name": "always_off"}},
                },
            },
            "default": {"name": "always_off",
                        "options": {"fraction": 0, "root": {"name": "always_off"}}},
        },
        "additional_attributes": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "additional_header_prefix_attributes": {"type": "array",
                                                "items": {"type": "string", "minLength": 1}},
    },
}

_checked: tuple[Any, dict[str, Any]] | None = None    # (plugin_attr object, validated)


def _attr() -> dict[str, Any]:
    """``plugin_attr.opentelemetry`` validated (once per node config), and the protobuf
    package importable; ValueError otherwise."""
    global _checked
    raw = pdk.plugin_attr(name)
    c = _checked
    if c is not None and (c[0] is raw or c[0] == raw):
        return c[1]
    attr = tracing.check_attr(raw)
    tracing.import_proto()
    _checked = (raw, attr)
    return attr


def check(conf: dict[str, Any], schema_type: str) -> None:
    _attr()


class Tracer:
    """A prepared configuration: the sampler, the attribute lists, the exporter."""

    __slots__ = ("exact_headers", "exporter", "header_prefixes", "request_id", "sampler",
                 "var_attrs")

    def __init__(self, conf: dict[str, Any], attr: dict[str, Any]) -> None:
        self.sampler = tracing.make_sampler(conf.get("sampler") or {})
        self.var_attrs = tuple(conf.get("additional_attributes") or ())
        prefixes, exact = [], []
        for h in conf.get("additional_header_prefix_attributes") or ():
            if len(h) >= 2 and h.endswith("*"):
                prefixes.append(h[:-1].lower())
            else:
                exact.append(h.lower())
        self.header_prefixes = tuple(prefixes)
        self.exact_headers = tuple(exact)
        self.request_id = attr["trace_id_source"] == "x-request-id"
        self.exporter = tracing.exporter_for(attr)


def prepare(conf: dict[str, Any]) -> Tracer:
    return Tracer(conf, _attr())


def rewrite(t: Tracer, ctx: pdk.Context) -> None:
    tp = ctx.header("traceparent")
    parent = tracing.parse_traceparent(tp) if tp is not None else None
    ts = ctx.header("tracestate")
    if parent is not None:
        trace_id, parent_id, flags = parent
        sampled = t.sampler(trace_id, bool(flags & 1))
        keep_ts = ts is not None and tracing.valid_tracestate(ts)
    else:
        trace_id = (tracing.trace_id_from_request_id(ctx.header("x-request-id"))
                    if t.request_id else 0) or tracing.new_trace_id()
        parent_id = 0
        sampled = t.sampler(trace_id, None)
        keep_ts = False               # a tracestate belongs to a trace we do not continue
    span_id = tracing.new_span_id()
    header = tracing.format_traceparent(trace_id, span_id, sampled)
    if ts is not None and not keep_ts:
        ctx.set_headers({"traceparent": header, "tracestate": None})
        ts = None
    else:
        ctx.set_header("traceparent", header)   # a valid tracestate goes on unchanged
    if sampled:
        ctx.store[name] = _start_span(t, ctx, trace_id, span_id, parent_id, ts)


def _start_span(t: Tracer, ctx: Any, trace_id: int, span_id: int, parent_id: int,
                ts: str | None) -> tracing.Span:
    method = ctx.method
    attrs: list[tuple[str, Any]] = [
        ("net.host.name", ctx.host), ("http.method", method), ("http.scheme", ctx.scheme),
        ("http.target", ctx.var("request_uri"))]
    ua = ctx.header("user-agent")
    if ua is not None:
        attrs.append(("http.user_agent", ua))
    span_name = method
    route = ctx.route
    if route is not None:
        attrs.append(("apisix.route_id", route.id))
        if route.name:
            attrs.append(("apisix.route_name", route.name))
        m = ctx.match
        if m is not None:
            attrs.append(("http.route", m.matched_uri))
            span_name = f"{method} {m.matched_uri}"
        if route.service_id:
            attrs.append(("apisix.service_id", route.service_id))
            if route.service_name:
                attrs.append(("apisix.service_name", route.service_name))
    for v in t.var_attrs:
        val = ctx.var(v)
        if val is not None:
            attrs.append((v, str(val)))
    if t.header_prefixes or t.exact_headers:
        _header_attrs(t, ctx, attrs)
    start_ns = int(ctx.wall_start() * 1e9)
    return tracing.Span(trace_id, span_id, parent_id, ts, span_name, start_ns, attrs)


def _header_attrs(t: Tracer, ctx: Any, attrs: list[tuple[str, Any]]) -> None:
    found: dict[str, str] = {}
    prefixes, exact = t.header_prefixes, t.exact_headers
    for n, v in ctx.headers():
        ln = n.lower()
        if ln in exact or (prefixes and ln.startswith(prefixes)):
            old = found.get(ln)
            found[ln] = v if old is None else f"{old}, {v}"
    attrs.extend(found.items())


def log(t: Tracer, ctx: pdk.Context) -> None:
    span = ctx.store.get(name)
    if span is None:
        return
    x: Any = ctx
    span.end_ns = span.start_ns + int(((x.t_end or x.loop.time()) - x.t_start) * 1e9)
    attrs = span.attrs
    status = ctx.status
    if status:
        attrs.append(("http.status_code", status))
        attrs.append(("http.response.status_code", status))
    up = ctx.var("upstream_addr")
    if up:
        attrs.append(("pylon.upstream_addr", up))
    up_status = ctx.var("upstream_status")
    if up_status is not None and up_status.isdigit() and int(up_status) >= 500:
        span.status = tracing.STATUS_ERROR
        span.status_msg = f"upstream response status: {up_status}"
    elif status >= 500:
        span.status = tracing.STATUS_ERROR
        span.status_msg = f"response status: {status}"
    t.exporter.push(span)
