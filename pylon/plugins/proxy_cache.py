"""proxy-cache: cache upstream responses by key (APISIX ``proxy-cache``).

Zones come from the node config (``apisix.proxy_cache.zones``): a zone with a ``disk_path``
keeps its entries in files there (shared by the workers, kept across restarts, at most
``disk_size``); a zone without one keeps them in the node's shared memory (tmpfs, shared by
the workers, at most ``memory_size``).  ``cache_strategy`` chooses the semantics, as in
APISIX: ``disk`` behaves like nginx's ``proxy_cache`` (TTL from ``Cache-Control`` /
``Expires``, else the node's ``cache_ttl``; ``cache_bypass`` skips the lookup but stores),
``memory`` like APISIX's memory handler (the plugin's ``cache_ttl``, ``cache_control``).

A response is stored as it streams to the client (its body goes to a temporary file chunk by
chunk; nothing is held back) and the entry appears once the response is complete.  A hit is
answered locally, without the upstream; the other plugins' response phases still run on it.
``Apisix-Cache-Status`` tells MISS / HIT / EXPIRED / STALE / BYPASS; ``PURGE`` on the same
URI removes the entry (200, or 404 when there was none).
"""

from __future__ import annotations

import logging
import os
import re
import time
from email.utils import parsedate_to_datetime
from typing import Any

from pylon import pdk
from pylon.pdk.cache import FileCache, Writer
from pylon.pdk.ratelimit import node_dir
from pylon.pdk.template import Template

name = "proxy-cache"
priority = 1085
version = 0.2

_log = logging.getLogger("pylon.plugin.proxy-cache")

STRATEGY_DISK = "disk"
STRATEGY_MEMORY = "memory"
DEFAULT_CACHE_ZONE = "disk_cache_one"
_VAR_ITEM = r"(^[^\$].+$|^\$[0-9a-zA-Z_]+$)"

schema = {
    "type": "object",
    "properties": {
        "cache_zone": {"type": "string", "minLength": 1, "maxLength": 100,
                       "default": DEFAULT_CACHE_ZONE},
        "cache_strategy": {"type": "string", "enum": [STRATEGY_DISK, STRATEGY_MEMORY],
                           "default": STRATEGY_DISK},
        "cache_key": {"type": "array", "minItems": 1,
                      "items": {"description": "a key for caching", "type": "string",
                                "pattern": _VAR_ITEM},
                      "default": ["$host", "$request_uri"]},
        "cache_http_status": {"type": "array", "minItems": 1,
                              "items": {"description": "http response status",
                                        "type": "integer", "minimum": 200, "maximum": 599},
                              "uniqueItems": True, "default": [200, 301, 404]},
        "cache_method": {"type": "array", "minItems": 1,
                         "items": {"description": "supported http method", "type": "string",
                                   "enum": ["GET", "POST", "HEAD"]},
                         "uniqueItems": True, "default": ["GET", "HEAD"]},
        "hide_cache_headers": {"type": "boolean", "default": False},
        "cache_control": {"type": "boolean", "default": False},
        "cache_bypass": {"type": "array", "minItems": 1,
                         "items": {"type": "string", "pattern": _VAR_ITEM}},
        "no_cache": {"type": "array", "minItems": 1,
                     "items": {"type": "string", "pattern": _VAR_ITEM}},
        "cache_ttl": {"type": "integer", "minimum": 1, "default": 300},
    },
}

#: APISIX's ``apisix.proxy_cache`` defaults (a process without a node config)
_DEFAULT_NODE = {"cache_ttl": 10.0, "zones": {
    "disk_cache_one": {"name": "disk_cache_one", "memory_size": 50 << 20, "disk_size": 1 << 30,
                       "disk_path": "/tmp/disk_cache_one", "cache_levels": "1:2"},
    "memory_cache": {"name": "memory_cache", "memory_size": 50 << 20, "disk_size": None,
                     "disk_path": None, "cache_levels": "1:2"}}}
#: entries unused this long are dropped (APISIX's ``proxy_cache_path ... inactive=1d``)
INACTIVE = 86400.0
#: not kept with an entry: hop-by-hop, framing, and the cache's own answer
_NOT_STORED = frozenset((b"connection", b"keep-alive", b"proxy-authenticate",
                         b"proxy-authorization", b"te", b"trailer", b"trailers",
                         b"transfer-encoding", b"upgrade", b"content-length",
                         b"apisix-cache-status"))
_CACHE_HEADERS = frozenset((b"cache-control", b"expires"))
_STATUS = {s: [(b"Apisix-Cache-Status", s.encode())]
           for s in ("MISS", "HIT", "EXPIRED", "STALE", "BYPASS")}
_DIRECTIVE = re.compile(r"^\s*([^=]+?)\s*(?:=\s*(.+?)\s*)?$")


def _node() -> dict[str, Any]:
    return pdk.node_setting("proxy_cache") or _DEFAULT_NODE


def check(conf: dict[str, Any], schema_type: str) -> None:
    for key in conf["cache_key"]:
        if key == "$request_method":
            raise ValueError(f"cache_key variable {key} unsupported")
    if conf["cache_zone"] not in _node()["zones"]:
        raise ValueError(f"cache_zone {conf['cache_zone']} not found")
    if conf["cache_strategy"] == STRATEGY_MEMORY and conf["cache_zone"] == DEFAULT_CACHE_ZONE:
        raise ValueError("invalid or empty cache_zone for cache_strategy: "
                         + conf["cache_strategy"])


def _complex_value(items: list[str] | None) -> Template | None:
    """APISIX's ``generate_complex_value``: ``$name`` items are variables, others literal
    text, all joined."""
    if not items:
        return None
    parts = tuple((it[1:],) if it.startswith("$") else it for it in items)
    if all(isinstance(p, str) for p in parts):
        return Template(None, "".join(parts))   # type: ignore[arg-type]
    return Template(parts, "")


_zones: dict[tuple[Any, ...], FileCache] = {}


def _zone(zone: dict[str, Any]) -> FileCache:
    """The zone's store, one per process (shared by every route and snapshot)."""
    disk = zone.get("disk_path")
    if disk:
        path, size = disk, zone.get("disk_size") or zone["memory_size"]
    else:
        path, size = os.path.join(node_dir(), "proxy-cache", zone["name"]), zone["memory_size"]
    k = (path, size, zone.get("cache_levels") or "1:2")
    fc = _zones.get(k)
    if fc is None:
        fc = _zones[k] = FileCache(path, size, k[2], INACTIVE)
    return fc


class Conf:
    __slots__ = ("bypass", "cache", "cache_control", "disk", "hide", "key", "methods",
                 "no_cache", "statuses", "ttl", "zone")

    def __init__(self, conf: dict[str, Any]) -> None:
        node = _node()
        self.zone = node["zones"].get(conf["cache_zone"])
        self.disk = conf["cache_strategy"] == STRATEGY_DISK
        self.key = _complex_value(conf["cache_key"])
        self.bypass = _complex_value(conf.get("cache_bypass"))
        self.no_cache = _complex_value(conf.get("no_cache"))
        self.methods = frozenset(conf["cache_method"])
        self.statuses = frozenset(conf["cache_http_status"])
        self.hide = conf["hide_cache_headers"]
        self.cache_control = conf["cache_control"]
        self.ttl = float(node["cache_ttl"] if self.disk else conf["cache_ttl"])
        self.cache: FileCache | None = None

    def store(self) -> FileCache | None:
        fc = self.cache
        if fc is None and self.zone is not None:
            try:
                fc = self.cache = _zone(self.zone)
            except OSError as e:
                _log.error("proxy-cache: cannot open cache zone %s: %s", self.zone["name"], e)
                self.zone = None          # logged once; the route works without a cache
        return fc


def prepare(conf: dict[str, Any]) -> Conf:
    return Conf(conf)


class _Req:
    """What one request carries from ``access`` to the response phases."""

    __slots__ = ("complete", "key", "writer")

    def __init__(self, key: str) -> None:
        self.key = key
        self.writer: Writer | None = None
        self.complete = False


def _truthy(t: Template | None, ctx: pdk.Context) -> bool:
    if t is None:
        return False
    v = t.render(ctx)
    return v != "" and v != "0"


def _directives(value: str | None) -> dict[str, Any]:
    """``Cache-Control`` → {directive: number, text or True}."""
    out: dict[str, Any] = {}
    if not value:
        return out
    for part in value.split(","):
        m = _DIRECTIVE.match(part)
        if m is None:
            continue
        v = m.group(2)
        if v is None:
            out[m.group(1).lower()] = True
            continue
        v = v.strip('"')
        try:
            out[m.group(1).lower()] = int(v)
        except ValueError:
            out[m.group(1).lower()] = v
    return out


def _num(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _expires_in(value: str | None, now: float) -> float | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp() - now
    except (TypeError, ValueError, IndexError, OverflowError):
        return 0.0                  # an invalid Expires means "already expired" (RFC 9111)


def _status(ctx: pdk.Context, s: str) -> None:
    ctx.set_resp_headers(_STATUS[s])


def access(c: Conf, ctx: pdk.Context) -> Any:
    method = ctx.method
    fc = c.store()
    if fc is None:
        return None
    key = c.key.render(ctx)   # type: ignore[union-attr]
    if method == "PURGE":
        return 200 if fc.delete(key) else 404
    cc = _directives(ctx.header("cache-control")) if c.cache_control and not c.disk else None
    if c.disk:
        if _truthy(c.bypass, ctx) or method not in c.methods:
            _status(ctx, "BYPASS")          # no lookup; the response may still be stored
            ctx.store[name] = _Req(key)
            return None
    else:
        if method not in c.methods:
            _status(ctx, "MISS")
            return None
        if _truthy(c.bypass, ctx) or (cc and (cc.get("no-store") or cc.get("no-cache"))):
            _status(ctx, "BYPASS")
            return None
    ctx.store[name] = _Req(key)
    got = fc.get(key)
    if got is not None and not _vary_matches(got[0], ctx):
        got = None
    if got is None:
        _status(ctx, "MISS")
        if cc and cc.get("only-if-cached"):
            return 504
        return None
    meta, body = got
    now = time.time()
    age = now - meta["t"]
    ttl = meta["ttl"]
    if age > ttl:
        _status(ctx, "EXPIRED")
        return None
    if cc:
        max_age, max_stale, min_fresh = (_num(cc.get("max-age")), _num(cc.get("max-stale")),
                                         _num(cc.get("min-fresh")))
        if (max_age is not None and age > max_age) or \
                (max_stale is not None and age - ttl > max_stale) or \
                (min_fresh is not None and ttl - age < min_fresh):
            _status(ctx, "STALE")
            return None
    del ctx.store[name]                 # a hit: nothing to store
    headers: list[tuple[bytes, bytes]] = []
    for n, v in meta["h"]:
        nb = n.encode("latin-1")
        if c.hide and nb.lower() in _CACHE_HEADERS:
            continue
        headers.append((nb, v.encode("latin-1")))
    if not c.disk:
        headers.append((b"Age", str(int(age)).encode()))
    _status(ctx, "HIT")
    return meta["s"], body, headers


def _vary_matches(meta: dict[str, Any], ctx: pdk.Context) -> bool:
    """The stored response's ``Vary`` headers have the values this request has."""
    for n, v in meta.get("v") or ():
        if (ctx.header(n) or "") != v:
            return False
    return True


def header_filter(c: Conf, ctx: pdk.Context) -> None:
    hs = ctx.resp_headers
    r = ctx.store.get(name)
    if r is not None and r.writer is None and hs is not None:
        _start_store(c, ctx, r, hs)
    if c.hide and hs:
        hs[:] = [(n, v) for n, v in hs if n.lower() not in _CACHE_HEADERS]


def _start_store(c: Conf, ctx: pdk.Context, r: _Req, hs: list[tuple[bytes, bytes]]) -> None:
    """Decide whether this response is stored; if so, open the entry's writer."""
    status = ctx.status
    method = ctx.method
    if status not in c.statuses or method not in c.methods or method == "HEAD":
        return                          # a HEAD response has no body to keep
    if _truthy(c.no_cache, ctx):
        return
    lower = {n.lower(): v for n, v in hs}
    if b"set-cookie" in lower:          # per-client: never shared (nginx, APISIX)
        return
    cc = _directives(lower[b"cache-control"].decode("latin-1")) \
        if b"cache-control" in lower else {}
    if cc.get("private") or cc.get("no-store") or cc.get("no-cache"):
        return
    vary = [v.strip().lower() for v in lower.get(b"vary", b"").decode("latin-1").split(",")
            if v.strip()]
    if "*" in vary:
        return
    now = time.time()
    ttl: float | None
    if c.disk or c.cache_control:
        ttl = _response_ttl(cc, lower, now, c.disk)
        if ttl is None:
            ttl = c.ttl
        if ttl <= 0:
            return
    else:
        ttl = c.ttl
    meta = {"s": status, "t": now, "ttl": ttl,
            "h": [(n.decode("latin-1"), v.decode("latin-1")) for n, v in hs
                  if n.lower() not in _NOT_STORED],
            "v": [(h, ctx.header(h) or "") for h in sorted(set(vary))]}
    fc = c.cache
    if fc is not None:
        r.writer = fc.writer(r.key, meta)


def _response_ttl(cc: dict[str, Any], lower: dict[bytes, bytes], now: float,
                  disk: bool) -> float | None:
    """The freshness the response gives itself (nginx: ``X-Accel-Expires``, then
    ``Cache-Control`` ``s-maxage``/``max-age``, then ``Expires``); None when it gives none.
    The memory strategy with ``cache_control`` takes none as 0 (not stored), as APISIX."""
    if disk:
        xa = lower.get(b"x-accel-expires")
        if xa is not None:
            s = xa.decode("latin-1").strip()
            try:
                return float(s[1:]) - now if s.startswith("@") else float(s)
            except ValueError:
                pass
    age = _num(cc.get("s-maxage"))
    if age is None:
        age = _num(cc.get("max-age"))
    if age is not None:
        return float(age)
    exp = lower.get(b"expires")
    if exp is not None:
        return _expires_in(exp.decode("latin-1"), now)
    return None if disk else 0.0


def body_filter(c: Conf, ctx: pdk.Context, chunk: bytes, last: bool) -> None:
    r = ctx.store.get(name)
    if r is None or r.writer is None:
        return
    if chunk and not r.writer.write(chunk):
        r.writer = None                 # too large for the zone: not kept
    elif last:
        # the upstream's answer is whole: the entry goes live before its last bytes reach
        # the client, so a request the client sends next (maybe to another worker) hits it
        r.complete = True
        r.writer.commit()


def log(c: Conf, ctx: pdk.Context) -> None:
    r = ctx.store.get(name)
    if r is None or r.writer is None:
        return
    if not r.complete:                  # the response broke off: nothing is kept
        r.writer.abort()
