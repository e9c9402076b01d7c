"""Tracing for plugins: W3C trace context and the OTLP exporter (the opentelemetry plugin).

``parse_traceparent`` / ``format_traceparent`` / ``valid_tracestate`` read and write the W3C
headers; ``Span`` is one finished span; ``exporter_for(attr)`` is the process's exporter for a
``plugin_attr.opentelemetry`` (checked by ``check_attr``), which batches spans and sends them
off the request path.  The implementation: ``pylon.observe.otlp``.
"""

from __future__ import annotations

from ..observe.otlp import (
    STATUS_ERROR,
    Exporter,
    Span,
    check_attr,
    exporter_for,
    format_traceparent,
    import_proto,
    make_sampler,
    new_span_id,
    new_trace_id,
    parse_traceparent,
    trace_id_from_request_id,
    valid_tracestate,
)

__all__ = ["STATUS_ERROR", "Exporter", "Span", "check_attr", "exporter_for",
           "format_traceparent", "import_proto", "make_sampler", "new_span_id", "new_trace_id",
           "parse_traceparent", "trace_id_from_request_id", "valid_tracestate"]
