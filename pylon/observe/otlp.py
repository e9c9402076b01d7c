"""OpenTelemetry traces: W3C trace context, samplers, spans, OTLP/HTTP protobuf export.

What the ``opentelemetry`` plugin (``pylon/plugins/opentelemetry.py``) builds on; see
``docs/tracing.md``.

* **Trace context** (W3C ``traceparent`` / ``tracestate``): ``parse_traceparent`` accepts
  exactly ``00-<32 hex>-<16 hex>-<2 hex>`` in lower case with non-zero ids (anything else is
  no parent: a new trace starts), ``format_traceparent`` writes one, ``valid_tracestate``
  checks the list-member grammar.
* **Samplers** per the OpenTelemetry spec, as functions ``(trace_id, parent_sampled) ->
  bool`` where ``parent_sampled`` is None without a parent: ``always_on``, ``always_off``,
  ``trace_id_ratio`` (the trace id's lower 64 bits below ``fraction * 2**64``, so every
  service using the same fraction takes the same decision for a trace) and ``parent_base``
  (the parent's sampled flag; the ``root`` sampler when there is no parent).
* **Spans** are small slotted objects (``Span``) made only for sampled requests.
* **Export**: ``exporter_for(attr)`` is the process's one ``Exporter`` for a node-wide
  configuration (``plugin_attr.opentelemetry``).  Spans are pushed on the request path (a
  list append) and sent off it by a ``pylon.observe.batch`` processor: encoded to an OTLP
  ``ExportTraceServiceRequest`` and POSTed to ``<collector>/v1/traces`` with
  ``Content-Type: application/x-protobuf``.  A failed export is retried (3 attempts, 0.5 s
  then 1 s apart), then dropped; spans beyond the bounded queue are dropped; both counted, and
  logged at most once per ``LOG_EVERY`` seconds.

The ``opentelemetry-proto`` package is imported only when an exporter is made (a route
configures the plugin), never when this module is imported.
"""

from __future__ import annotations

import json
import logging
import random
import re
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from .batch import BatchProcessor

log = logging.getLogger("pylon.opentelemetry")

MISSING_PACKAGE = "opentelemetry needs the 'otel' extra: pip install pylon-gateway[otel]"
MASK64 = (1 << 64) - 1
#: instrumentation scope of the spans Pylon makes
SCOPE_NAME = "pylon"
#: export attempts per batch, and the pause before the first retry (doubled after each)
EXPORT_ATTEMPTS = 3
RETRY_DELAY = 0.5
#: failures and drops are logged at most this often (seconds), with counts in between
LOG_EVERY = 30.0

# ----------------------------------------------------------------------------- trace context
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_TS_KEY = r"(?:[a-z][a-z0-9_*/-]{0,255}|[a-z0-9][a-z0-9_*/-]{0,240}@[a-z][a-z0-9_*/-]{0,13})"
_TS_MEMBER = re.compile(_TS_KEY + r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}"
                        r"[\x21-\x2b\x2d-\x3c\x3e-\x7e]")


def parse_traceparent(value: str) -> tuple[int, int, int] | None:
    """``(trace_id, parent_span_id, flags)`` of a W3C ``traceparent`` header, or None when
    it is not a valid version-00 header (bad length, version, case or characters, or an
    all-zero id): the caller then starts a new trace."""
    m = _TRACEPARENT.fullmatch(value.strip(" \t"))
    if m is None:
        return None
    trace_id = int(m.group(1), 16)
    span_id = int(m.group(2), 16)
    if trace_id == 0 or span_id == 0:
        return None
    return trace_id, span_id, int(m.group(3), 16)


def format_traceparent(trace_id: int, span_id: int, sampled: bool) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}"


def valid_tracestate(value: str) -> bool:
    """A W3C ``tracestate``: at most 32 comma-separated ``key=value`` members (empty
    members allowed), each by the spec's grammar."""
    n = 0
    for part in value.split(","):
        part = part.strip(" \t")
        if not part:
            continue
        n += 1
        if n > 32 or _TS_MEMBER.fullmatch(part) is None:
            return False
    return True


# ----------------------------------------------------------------------------- ids
_bits = random.getrandbits


def new_trace_id() -> int:
    return _bits(128) or 1


def new_span_id() -> int:
    return _bits(64) or 1


def trace_id_from_request_id(value: str | None) -> int | None:
    """A request id usable as a trace id: 32 hex digits, dashes allowed (a UUID), not all
    zero; None otherwise."""
    if not value:
        return None
    v = value.replace("-", "")
    if len(v) != 32:
        return None
    try:
        tid = int(v, 16)
    except ValueError:
        return None
    return tid or None


# ----------------------------------------------------------------------------- samplers
Sampler = Callable[[int, "bool | None"], bool]


def _always_on(trace_id: int, parent_sampled: bool | None) -> bool:
    return True


def _always_off(trace_id: int, parent_sampled: bool | None) -> bool:
    return False


def ratio_bound(fraction: float) -> int:
    """Trace ids whose lower 64 bits are below this are sampled (OTel ``TraceIdRatioBased``)."""
    return round(max(0.0, min(1.0, fraction)) * (MASK64 + 1))


def _ratio(fraction: float) -> Sampler:
    bound = ratio_bound(fraction)

    def trace_id_ratio(trace_id: int, parent_sampled: bool | None) -> bool:
        return (trace_id & MASK64) < bound

    return trace_id_ratio


def make_sampler(conf: dict[str, Any]) -> Sampler:
    """The sampler of a plugin configuration's ``sampler`` object (defaults filled in)."""
    name = conf.get("name", "always_off")
    opts = conf.get("options") or {}
    if name == "always_on":
        return _always_on
    if name == "always_off":
        return _always_off
    if name == "trace_id_ratio":
        return _ratio(float(opts.get("fraction", 0)))
    if name == "parent_base":
        root_conf = opts.get("root") or {"name": "always_off"}
        if root_conf.get("name") == "parent_base":
            raise ValueError("parent_base cannot be its own root sampler")
        root = make_sampler(root_conf)

        def parent_base(trace_id: int, parent_sampled: bool | None) -> bool:
            if parent_sampled is None:
                return root(trace_id, None)
            return parent_sampled

        return parent_base
    raise ValueError(f"unknown sampler {name!r}")


# ----------------------------------------------------------------------------- spans
STATUS_UNSET = 0
STATUS_ERROR = 2


class Span:
    """One sampled SERVER span: made in ``rewrite``, finished in ``log``, encoded when sent."""

    __slots__ = ("attrs", "end_ns", "name", "parent_id", "remote", "span_id", "start_ns",
                 "status", "status_msg", "trace_id", "tracestate")

    def __init__(self, trace_id: int, span_id: int, parent_id: int, tracestate: str | None,
                 name: str, start_ns: int, attrs: list[tuple[str, Any]]) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id          # 0: a root span
        self.remote = parent_id != 0        # the parent came in the request (traceparent)
        self.tracestate = tracestate
        self.name = name
        self.start_ns = start_ns
        self.end_ns = start_ns
        self.attrs = attrs
        self.status = STATUS_UNSET
        self.status_msg = ""


# ----------------------------------------------------------------------------- configuration
#: ``plugin_attr.opentelemetry`` (APISIX's attr schema; defaults from APISIX's
#: config-default.yaml)
ATTR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "trace_id_source": {"type": "string", "enum": ["x-request-id", "random"],
                            "default": "random"},
        "resource": {"type": "object",
                     "additionalProperties": {"type": ["boolean", "number", "string"]}},
        "collector": {
            "type": "object",
            "properties": {
                "address": {"type": "string", "minLength": 1, "default": "127.0.0.1:4318"},
                "request_timeout": {"type": "integer", "minimum": 1, "default": 3},
                "request_headers": {
                    "type": "object",
                    "additionalProperties": {"type": ["boolean", "number", "string"]},
                },
            },
            "default": {"address": "127.0.0.1:4318", "request_timeout": 3},
        },
        "batch_span_processor": {
            "type": "object",
            "properties": {
                "drop_on_queue_full": {"type": "boolean", "default": False},
                "max_queue_size": {"type": "integer", "minimum": 1, "default": 1024},
                "batch_timeout": {"type": "number", "exclusiveMinimum": 0, "default": 2},
                "inactive_timeout": {"type": "number", "exclusiveMinimum": 0, "default": 1},
                "max_export_batch_size": {"type": "integer", "minimum": 1, "default": 16},
            },
            "default": {},
        },
        "set_ngx_var": {"type": "boolean", "default": False},
    },
}

_attr_validator: Callable[[Any], Any] | None = None


def check_attr(attr: Any) -> dict[str, Any]:
    """``plugin_attr.opentelemetry`` validated, defaults filled in (a copy); ValueError with
    the reason otherwise."""
    global _attr_validator
    import fastjsonschema
    if _attr_validator is None:
        _attr_validator = fastjsonschema.compile(ATTR_SCHEMA)
    attr = json.loads(json.dumps(attr if attr is not None else {}))
    try:
        out = _attr_validator(attr)
    except fastjsonschema.JsonSchemaValueException as e:
        from ..model.schema_errors import lua_error
        raise ValueError(f"plugin_attr.opentelemetry: {lua_error(e, attr)}") from None
    col = out.setdefault("collector", {})
    col.setdefault("address", "127.0.0.1:4318")
    col.setdefault("request_timeout", 3)
    bsp = out.setdefault("batch_span_processor", {})
    for k, v in (("drop_on_queue_full", False), ("max_queue_size", 1024), ("batch_timeout", 2),
                 ("inactive_timeout", 1), ("max_export_batch_size", 16)):
        bsp.setdefault(k, v)
    collector_url(col["address"])          # raises ValueError when unusable
    return out


def collector_url(address: str) -> str:
    """The OTLP/HTTP traces URL of ``collector.address``: ``host:port`` →
    ``http://host:port/v1/traces``; a URL with a scheme and no path gets ``/v1/traces``."""
    if "://" in address:
        u = urlsplit(address)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"plugin_attr.opentelemetry: collector.address {address!r} is "
                             "not host:port or an http(s) URL")
        return address.rstrip("/") + "/v1/traces" if u.path in ("", "/") else address
    u = urlsplit("http://" + address)
    try:
        u.port  # noqa: B018 - validates the port
    except ValueError:
        raise ValueError(f"plugin_attr.opentelemetry: collector.address {address!r} has a "
                         "bad port") from None
    if not u.hostname or u.path:
        raise ValueError(f"plugin_attr.opentelemetry: collector.address {address!r} is not "
                         "host:port")
    return f"http://{address}/v1/traces"


def import_proto() -> Any:
    """The OTLP protobuf modules (``trace_service_pb2``, ``trace_pb2``, ``common_pb2``,
    ``resource_pb2``); ValueError(MISSING_PACKAGE) when ``opentelemetry-proto`` is not
    installed (or broken)."""
    try:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
        from opentelemetry.proto.common.v1 import common_pb2
        from opentelemetry.proto.resource.v1 import resource_pb2
        from opentelemetry.proto.trace.v1 import trace_pb2
    except Exception as e:  # noqa: BLE001 - ImportError, protobuf version errors
        raise ValueError(f"{MISSING_PACKAGE} ({type(e).__name__}: {e})") from None
    return trace_service_pb2, trace_pb2, common_pb2, resource_pb2


# ----------------------------------------------------------------------------- export
class _Notes:
    """Export failures and drops, logged without flooding: the first one at once, then a
    summary at most every ``LOG_EVERY`` seconds; a recovery once."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.failing = False
        self.last_log = -LOG_EVERY
        self.failed_attempts = 0
        self.dropped_failed = 0
        self.dropped_full = 0
        self.last_error = ""

    def _due(self) -> bool:
        now = time.monotonic()
        if now - self.last_log >= LOG_EVERY:
            self.last_log = now
            return True
        return False

    def attempt_failed(self, err: BaseException) -> None:
        self.failed_attempts += 1
        self.last_error = str(err) or type(err).__name__
        if not self.failing:
            self.failing = True
            self.last_log = time.monotonic()
            log.error("opentelemetry: export to %s failed: %s; retrying (failures are "
                      "reported every %gs until it works again)", self.url, self.last_error,
                      LOG_EVERY)
            self._reset()
        elif self._due():
            self._report()

    def batch_dropped(self, n: int) -> None:
        self.dropped_failed += n
        if self._due():
            self._report()

    def queue_full(self) -> None:
        self.dropped_full += 1
        if self._due():
            self._report()

    def ok(self) -> None:
        if self.failing:
            log.warning("opentelemetry: export to %s works again (%d failed attempts, %d "
                        "spans dropped since the last report)", self.url, self.failed_attempts,
                        self.dropped_failed + self.dropped_full)
            self.failing = False
            self._reset()

    def _report(self) -> None:
        if self.failing:
            log.error("opentelemetry: export to %s still failing: %s (since the last report: "
                      "%d failed attempts, %d spans dropped after %d attempts, %d dropped on "
                      "a full queue)", self.url, self.last_error, self.failed_attempts,
                      self.dropped_failed, EXPORT_ATTEMPTS, self.dropped_full)
        else:
            log.error("opentelemetry: span queue full (the collector %s is slow), %d spans "
                      "dropped since the last report", self.url, self.dropped_full)
        self._reset()

    def _reset(self) -> None:
        self.failed_attempts = self.dropped_failed = self.dropped_full = 0


class _SpanBatches(BatchProcessor):
    """The shared batch processor, logging through ``_Notes`` (first failure, then a
    summary at most every LOG_EVERY seconds, then recovery) instead of once per attempt."""

    notes: _Notes

    def _on_failure(self, e: Exception, attempt: int, final: bool, n: int) -> None:
        self.notes.attempt_failed(e)
        if final:
            self.notes.batch_dropped(n)

    def _on_sent(self) -> None:
        self.notes.ok()


class Exporter:
    """Spans of this process to one collector (one per node-wide configuration)."""

    def __init__(self, attr: dict[str, Any]) -> None:
        (self._svc, self._pb, self._common, self._resource_pb) = import_proto()
        col = attr["collector"]
        self.url = collector_url(col["address"])
        self.timeout = float(col["request_timeout"])
        self.headers = {str(k): _header_value(v)
                        for k, v in (col.get("request_headers") or {}).items()}
        self.headers["Content-Type"] = "application/x-protobuf"
        self.resource = self._make_resource(attr.get("resource") or {})
        self.scope = self._common.InstrumentationScope(name=SCOPE_NAME, version=_version())
        bsp = attr["batch_span_processor"]
        self.proc = _SpanBatches(self._post, name="opentelemetry",
                                 batch_max_size=bsp["max_export_batch_size"],
                                 inactive_timeout=bsp["inactive_timeout"],
                                 buffer_duration=bsp["batch_timeout"],
                                 max_retry_count=EXPORT_ATTEMPTS - 1, retry_delay=RETRY_DELAY,
                                 backoff=2.0,
                                 max_pending=bsp["max_queue_size"])
        self.proc.notes = self.notes = _Notes(self.url)

    # -- request path ---------------------------------------------------------------------
    def push(self, span: Span) -> None:
        if not self.proc.push(span):
            self.notes.queue_full()

    # -- background -----------------------------------------------------------------------
    async def _post(self, spans: list[Span]) -> None:
        from ..upstream import client as http
        body = self.encode(spans)
        r = await http.request("POST", self.url, headers=self.headers, body=body,
                               timeout=self.timeout, verify=True)
        if not 200 <= r.status < 300:
            raise RuntimeError(f"collector answered {r.status}")

    def encode(self, spans: list[Span]) -> bytes:
        """``spans`` as one serialized OTLP ``ExportTraceServiceRequest``."""
        pb = self._pb
        kv = self._kv
        server = pb.Span.SPAN_KIND_SERVER
        out = []
        for s in spans:
            flags = 0x101 | (0x200 if s.remote else 0)    # sampled, has is_remote (+ remote)
            span = pb.Span(trace_id=s.trace_id.to_bytes(16, "big"),
                           span_id=s.span_id.to_bytes(8, "big"),
                           parent_span_id=s.parent_id.to_bytes(8, "big") if s.parent_id
                           else b"",
                           trace_state=s.tracestate or "", flags=flags, name=s.name,
                           kind=server, start_time_unix_nano=s.start_ns,
                           end_time_unix_nano=s.end_ns,
                           attributes=[kv(k, v) for k, v in s.attrs])
            if s.status:
                span.status.code = s.status
                span.status.message = s.status_msg
            out.append(span)
        req = self._svc.ExportTraceServiceRequest(resource_spans=[pb.ResourceSpans(
            resource=self.resource, scope_spans=[pb.ScopeSpans(scope=self.scope, spans=out)])])
        return req.SerializeToString()

    def _kv(self, key: str, value: Any) -> Any:
        c = self._common
        if isinstance(value, bool):
            av = c.AnyValue(bool_value=value)
        elif isinstance(value, int):
            av = c.AnyValue(int_value=value)
        elif isinstance(value, float):
            av = c.AnyValue(double_value=value)
        else:
            av = c.AnyValue(string_value=str(value))
        return c.KeyValue(key=key, value=av)

    def _make_resource(self, extra: dict[str, Any]) -> Any:
        attrs: dict[str, Any] = {"telemetry.sdk.language": "python",
                                 "telemetry.sdk.name": "pylon",
                                 "telemetry.sdk.version": _version(),
                                 "hostname": socket.gethostname(),
                                 "service.name": "APISIX"}
        attrs.update(extra)
        return self._resource_pb.Resource(attributes=[self._kv(k, v) for k, v in attrs.items()])

    def stats(self) -> dict[str, Any]:
        return {**self.proc.stats(), "url": self.url}


def _header_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _version() -> str:
    from .. import __version__
    return __version__


_exporters: dict[str, Exporter] = {}


def exporter_for(attr: dict[str, Any]) -> Exporter:
    """The process's exporter for a validated ``plugin_attr.opentelemetry`` (made once per
    distinct configuration; every route with the plugin shares it)."""
    key = json.dumps(attr, sort_keys=True, default=str)
    e = _exporters.get(key)
    if e is None:
        e = _exporters[key] = Exporter(attr)
    return e
