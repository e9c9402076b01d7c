"""Declarative configuration → typed resources, with every rejection reported.

Shared by the standalone loader, ``pylon validate`` and (later) the Admin API.  A bad object
is rejected with its kind, id and field path; everything else still applies.  Objects that
reference a rejected or missing object are rejected too, naming what they depend on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from .route import Route, Service
from .upstream import Upstream

#: kinds of the APISIX standalone file this version compiles, in dependency order
KINDS: dict[str, type[msgspec.Struct]] = {
    "upstreams": Upstream,
    "services": Service,
    "routes": Route,
}
#: kinds APISIX defines that later Pylon versions compile; kept verbatim, reported once
LATER_KINDS = ("consumers", "consumer_groups", "plugin_configs", "global_rules", "ssls",
               "protos", "stream_routes", "plugin_metadata", "secrets")


@dataclass(frozen=True, slots=True)
class Rejection:
    kind: str          # "routes"
    id: str | None     # object id when known
    path: str          # "routes[3].upstream.nodes[0].port"
    message: str

    def __str__(self) -> str:
        ident = f" (id {self.id})" if self.id is not None else ""
        return f"{self.path}{ident}: {self.message}"


@dataclass(frozen=True, slots=True)
class Resources:
    """Valid, typed objects by kind and id.  Immutable once built."""

    routes: dict[str, Route] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    upstreams: dict[str, Upstream] = field(default_factory=dict)
    other: dict[str, list[Any]] = field(default_factory=dict)
    #: where each object sits in the document, ``"routes/7" -> "routes[3]"``, so rejections
    #: made later (by the compiler) point into the file like the ones made here
    paths: dict[str, str] = field(default_factory=dict)
    #: well-formed objects rejected only because what they reference is missing or rejected
    #: (``kind -> id -> object``): an incremental update brings them back when it appears
    dangling: dict[str, dict[str, Any]] = field(default_factory=dict)

    def path_of(self, kind: str, oid: str) -> str:
        return self.paths.get(f"{kind}/{oid}", f"{kind}/{oid}")

    def count(self) -> int:
        return len(self.routes) + len(self.services) + len(self.upstreams)


def _msgspec_error(err: msgspec.ValidationError, base: str) -> tuple[str, str]:
    text = str(err)
    sep = " - at `$"
    if sep in text:
        msg, _, rest = text.partition(sep)
        return base + rest.rstrip("`"), msg.replace("`", "")
    return base, text.replace("`", "")


def convert(kind: str, obj: Any, path: str,
            default_id: str | None = None) -> tuple[Any, Rejection | None]:
    """Validate one object of ``kind``; returns (typed object, None) or (None, rejection).
    ``default_id`` names an object without ``id`` in the rejection (``arr_N``)."""
    ident = default_id
    if isinstance(obj, dict):
        raw = obj.get("id")
        if isinstance(raw, (str, int)) and not isinstance(raw, bool):
            ident = str(raw)
    try:
        return msgspec.convert(obj, KINDS[kind]), None
    except msgspec.ValidationError as e:
        p, msg = _msgspec_error(e, path)
        return None, Rejection(kind, ident, p, msg)


def parse_resources(doc: Any) -> tuple[Resources, list[Rejection]]:
    """Build Resources from a parsed standalone document (APISIX layout)."""
    rejected: list[Rejection] = []
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        return Resources(), [Rejection("config", None, "$", "top level must be a mapping")]
    out: dict[str, dict[str, Any]] = {k: {} for k in KINDS}
    dangling: dict[str, dict[str, Any]] = {k: {} for k in KINDS}
    paths: dict[str, str] = {}
    other: dict[str, list[Any]] = {}
    for key in doc:
        if key not in KINDS and key not in LATER_KINDS:
            rejected.append(Rejection("config", None, key, f"unknown top-level key {key!r}"))
    for key in LATER_KINDS:
        if doc.get(key):
            other[key] = list(doc[key]) if isinstance(doc[key], list) else [doc[key]]
    for kind in KINDS:
        items = doc.get(kind) or []
        if not isinstance(items, list):
            rejected.append(Rejection(kind, None, kind, "must be a list"))
            continue
        bucket = out[kind]
        for i, item in enumerate(items):
            path = f"{kind}[{i}]"
            if not isinstance(item, dict):
                rejected.append(Rejection(kind, None, path, "must be a mapping"))
                continue
            obj, rej = convert(kind, item, path,
                               None if "id" in item else f"arr_{i + 1}")
            if rej is not None:
                rejected.append(rej)
                continue
            # APISIX standalone names id-less items "arr_<n>" (1-based)
            oid = str(obj.id) if obj.id is not None else f"arr_{i + 1}"
            if oid in bucket:
                rejected.append(Rejection(kind, oid, path, f"duplicate id {oid!r}"))
                continue
            ref = _check_refs(kind, obj, out)
            if ref:
                rejected.append(Rejection(kind, oid, f"{path}.{ref[0]}", ref[1]))
                if oid not in dangling[kind]:
                    dangling[kind][oid] = obj
                continue
            bucket[oid] = obj
            paths[f"{kind}/{oid}"] = path
    res = Resources(routes=out["routes"], services=out["services"],
                    upstreams=out["upstreams"], other=other, paths=paths, dangling=dangling)
    return res, rejected


def _check_refs(kind: str, obj: Any, out: dict[str, dict[str, Any]]) -> tuple[str, str] | None:
    """(field, message) when ``obj`` references an object that is missing or rejected."""
    return ref_error(obj, out["upstreams"].__contains__, out["services"].__contains__)


def ref_error(obj: Any, upstream_ok: Callable[[str], bool],
              service_ok: Callable[[str], bool]) -> tuple[str, str] | None:
    """(field, message) when ``obj``'s ``upstream_id`` / ``service_id`` names something
    that is not usable (the full parse and the incremental compiler say it alike)."""
    uid = getattr(obj, "upstream_id", None)
    if uid is not None and not upstream_ok(str(uid)):
        return "upstream_id", f"upstream_id {str(uid)!r} not found (or rejected)"
    sid = getattr(obj, "service_id", None)
    if sid is not None and not service_ok(str(sid)):
        return "service_id", f"service_id {str(sid)!r} not found (or rejected)"
    return None
