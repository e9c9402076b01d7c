"""Metrics for plugins: the node's shared metric store, as the prometheus plugin counts into it.

A process counts in its ``local()`` (``Local``: simple counters with ``inc``, plus flush
callbacks for hot-path aggregates); ``flush`` moves the counts into the node's shared store,
which the master renders on the export address.  The store and its format:
``pylon.observe.metrics``.
"""

from __future__ import annotations

from ..observe.metrics import (
    COUNTER,
    DEFAULT_BUCKETS,
    GAUGE,
    HISTOGRAM,
    Local,
    Writer,
    escape,
    export_settings,
    family_bounds,
    flush_histogram,
    inc,
    labels,
    local,
    max_values,
    metric_prefix,
    valid_label,
    valid_name,
)

__all__ = ["COUNTER", "DEFAULT_BUCKETS", "GAUGE", "HISTOGRAM", "Local", "Writer", "escape",
           "export_settings", "family_bounds", "flush_histogram", "inc", "labels", "local",
           "max_values", "metric_prefix", "valid_label", "valid_name"]
