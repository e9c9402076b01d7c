"""prometheus: APISIX's request metrics, counted per worker and shared node-wide.

Route conf (APISIX): ``prefer_name`` -- label ``route`` / ``service`` with their names
instead of ids.  Node config ``plugin_attr.prometheus`` (APISIX): ``export_addr`` (ip, port;
127.0.0.1:9091), ``export_uri`` (``/apisix/prometheus/metrics``), ``enable_export_server``
(true), ``metric_prefix`` (``apisix_``), ``default_buckets`` (the latency histogram's bounds,
milliseconds), ``metrics.{http_status,http_latency,bandwidth}.extra_labels`` (``[{label:
"$var"}]``).  Pylon adds ``max_values`` (the shared store's size in values, default 2M).

Series, with APISIX's names and labels so existing dashboards work:

* ``apisix_http_status{code, route, matched_uri, matched_host, service, consumer, node}``
* ``apisix_http_latency{type="request|upstream|apisix", route, service, consumer, node}``
  (histogram, ms; ``upstream`` only when an upstream answered; ``apisix`` = request -
  upstream)
* ``apisix_bandwidth{type="ingress|egress", route, service, consumer, node}`` (bytes)
* ``apisix_stream_connection_total{route}``: connections of the stream routes that name the
  plugin (APISIX's stream prometheus), counted when they end

The log hook only adds to numbers in this worker's memory, keyed by what the request
matched; ``flush`` (once a second, before every scrape, when the worker drains) turns them
into series in the node's shared store (``pylon/observe/metrics.py``), which the master
renders on the export address.  Node-level series (connections, etcd, node info, upstream
health, Pylon's own) are added by the master at scrape time (``server/exporter.py``).
"""

from __future__ import annotations

from bisect import bisect_left
from operator import add
from typing import Any

from pylon import pdk
from pylon.pdk import metrics

name = "prometheus"
priority = 500
version = 0.2

schema = {
    "type": "object",
    "properties": {"prefer_name": {"type": "boolean", "default": False}},
}

_AGG: dict[tuple[Any, ...], list[Any]] = {}
#: entries replaced while holding unflushed counts (their route changed)
_RETIRED: list[tuple[tuple[Any, ...], list[Any]]] = []
_B: tuple[float, ...] = tuple(float(b) for b in metrics.DEFAULT_BUCKETS)
_NB = len(_B) + 1
_EXTRA: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
_VAR_NAMES: tuple[str, ...] = ()
_prefix = "apisix_"
_ready = False


def _setup() -> None:
    """Node-wide attributes, read once per process (they change only with a restart)."""
    global _B, _NB, _EXTRA, _VAR_NAMES, _prefix, _ready
    attr = pdk.plugin_attr(name)
    lc = metrics.local()
    lc.max_values = metrics.max_values(attr)        # should this process create the store
    _prefix = metrics.metric_prefix(attr, report=True)
    b = attr.get("default_buckets")
    if isinstance(b, list) and b and all(isinstance(x, (int, float)) and
                                         not isinstance(x, bool) for x in b):
        _B = tuple(sorted({float(x) for x in b}))       # a bound given twice: one bucket
    have = metrics.family_bounds(_prefix + "http_latency", lc.max_values)
    if have is not None and have != _B:
        pdk.log.warning("prometheus: default_buckets changed while the node runs; its "
                        "latency histograms keep the buckets they started with until a "
                        "restart")
        _B = have
    _NB = len(_B) + 1
    names: list[str] = []
    extra = []
    for metric, builtin in (("http_status", _STATUS_LABELS), ("http_latency", _LAT_LABELS),
                            ("bandwidth", _LAT_LABELS)):
        rows = ((attr.get("metrics") or {}).get(metric) or {}).get("extra_labels") or []
        pairs: list[tuple[str, str]] = []
        for row in rows:
            for label, var in (row or {}).items() if isinstance(row, dict) else ():
                label, var = str(label), str(var)
                if not metrics.valid_label(label) or label in builtin or \
                        any(label == p[0] for p in pairs):
                    pdk.log.error("prometheus: metrics.%s.extra_labels: %r is not a valid "
                                  "label name or is taken; ignored", metric, label)
                    continue
                pairs.append((label, var.removeprefix("$")))
                if pairs[-1][1] not in names:
                    names.append(pairs[-1][1])
        extra.append((metric, tuple(pairs)))
    _EXTRA = tuple(extra)
    _VAR_NAMES = tuple(names)
    lc.declare(_prefix + "http_status", metrics.COUNTER,
               "HTTP status codes per service in APISIX")
    lc.declare(_prefix + "http_latency", metrics.HISTOGRAM,
               "HTTP request latency in milliseconds per service in APISIX", _B)
    lc.declare(_prefix + "bandwidth", metrics.COUNTER,
               "Total bandwidth in bytes consumed per service in APISIX")
    lc.declare(_prefix + "stream_connection_total", metrics.COUNTER,
               "Total number of connections handled per stream route in APISIX")
    if _flush not in lc.sources:
        lc.sources.append(_flush)
    _ready = True


_STATUS_LABELS = ("code", "route", "matched_uri", "matched_host", "service", "consumer",
                  "node")
_LAT_LABELS = ("type", "route", "service", "consumer", "node", "le")


def prepare(conf: dict[str, Any]) -> bool:
    """The hook's conf is just ``prefer_name`` (it goes into the aggregate's key)."""
    if not _ready:
        _setup()
    return bool(conf.get("prefer_name"))


# an aggregate entry: the route it was made for, the request / upstream / apisix latency
# histograms (local, non-cumulative), request and upstream latency sums (the apisix sum is
# their difference), ingress and egress bytes, and the entry's series once resolved
_ROUTE, _REQ, _UP, _APX, _RSUM, _USUM, _IN, _OUT, _KEYS = range(9)


def _new(key: tuple[Any, ...], route: Any) -> list[Any]:
    old = _AGG.get(key)
    if old is not None and any(old[_REQ]):
        _RETIRED.append((key, old))
    e = [route, [0] * _NB, [0] * _NB, [0] * _NB, 0.0, 0.0, 0, 0, None]
    _AGG[key] = e
    return e


def stream_log(prefer_name: bool, sctx: pdk.StreamContext) -> None:
    metrics.local().inc(_prefix + "stream_connection_total",
                        metrics.labels((("route", sctx.route_id or ""),)))


def log(prefer_name: bool, ctx: Any) -> None:
    m = ctx.match
    if m is not None:
        route = m.route
        key = (m.route_id, m.matched_uri, m.matched_host, ctx.consumer_name, ctx.up_addr,
               ctx.status, prefer_name)
    else:
        route = None
        key = ("", "", "", ctx.consumer_name, ctx.up_addr, ctx.status, False)
    if _VAR_NAMES:
        key += tuple(ctx.var(v) or "" for v in _VAR_NAMES)
    e = _AGG.get(key)
    if e is None or e[0] is not route:
        e = _new(key, route)
    t1 = ctx.t_end
    req = (t1 - ctx.t_start) * 1000.0
    e[1][bisect_left(_B, req)] += 1
    e[4] += req
    if ctx.up_status:
        up = (t1 - ctx.t_up_start) * 1000.0
        e[2][bisect_left(_B, up)] += 1
        e[5] += up
        req -= up
    e[3][bisect_left(_B, req)] += 1
    e[6] += ctx.body_in
    e[7] += ctx.down.bytes_out      # = ctx.bytes_sent, without the property call (hot)


# ----------------------------------------------------------------------------- api
def api() -> list[dict[str, Any]]:
    """``GET <export_uri>`` for ``public-api`` when the export server is off (APISIX: the
    endpoint exists only then): the node's metrics exactly as the export server renders
    them (the master renders, every worker flushed first)."""
    try:
        on, _, _, uri, _ = metrics.export_settings(pdk.plugin_attr(name))
    except ValueError:                    # logged by the master
        return []
    return [] if on else [{"methods": ["GET"], "uri": uri, "handler": _collect}]


async def _collect(ctx: Any) -> tuple[int, Any, dict[str, str]]:
    text = await pdk.node().ask_master("scrape")
    if text is None:
        return 500, {"message": "An unexpected error occurred"}, {}
    return 200, text.encode(), {"Content-Type": "text/plain"}


# ----------------------------------------------------------------------------- flush
def _labels(key: tuple[Any, ...], route: Any) -> tuple[str, str, str, str, str, str, str]:
    rid, muri, mhost, consumer, addr, status, prefer = key[:7]
    svc = ""
    if route is not None:
        svc = route.service_id or ""
        if prefer:
            rid = route.name or rid
            svc = route.service_name or svc
    node = addr.rpartition(":")[0] if addr else ""
    if node.startswith("[") and node.endswith("]"):
        node = node[1:-1]
    return (str(status), rid, muri, mhost, svc, consumer or "", node)


def _extra(metric: int, key: tuple[Any, ...]) -> str:
    pairs = _EXTRA[metric][1]
    if not pairs:
        return ""
    vals = dict(zip(_VAR_NAMES, key[7:], strict=False))
    return "," + metrics.labels((label, vals.get(var, "")) for label, var in pairs)


def _keys(e: list[Any], key: tuple[Any, ...]) -> list[Any]:
    """An entry's six series: [(family, series key, value count, base or None)]."""
    code, rid, muri, mhost, svc, consumer, node = _labels(key, e[0])
    esc = metrics.escape
    common = (f'route="{esc(rid)}",service="{esc(svc)}",consumer="{esc(consumer)}",'
              f'node="{esc(node)}"')
    st, lat, bw = _prefix + "http_status", _prefix + "http_latency", _prefix + "bandwidth"
    lx, bx, n = _extra(1, key), _extra(2, key), _NB + 2
    status = (f'{st}{{code="{code}",route="{esc(rid)}",matched_uri="{esc(muri)}",'
              f'matched_host="{esc(mhost)}",service="{esc(svc)}",consumer="{esc(consumer)}",'
              f'node="{esc(node)}"{_extra(0, key)}}}')
    return [[st, status, 1, None],
            [lat, f'{lat}{{type="request",{common}{lx}}}', n, None],
            [lat, f'{lat}{{type="upstream",{common}{lx}}}', n, None],
            [lat, f'{lat}{{type="apisix",{common}{lx}}}', n, None],
            [bw, f'{bw}{{type="ingress",{common}{bx}}}', 1, None],
            [bw, f'{bw}{{type="egress",{common}{bx}}}', 1, None]]


def _base(lc: metrics.Local, s: list[Any]) -> int | None:
    if s[3] is None:
        s[3] = lc.series(s[0], s[1], s[2])
    return s[3]


def _flush_entry(lc: metrics.Local, key: tuple[Any, ...], e: list[Any],
                 hists: dict[int, list[Any]]) -> None:
    """Add an entry's counters to the store; its histograms go into ``hists`` (store base
    -> [bucket counts, sum]) so that the entries of one route (one per status code) write
    each histogram once."""
    w = lc.writer
    assert w is not None
    ks = e[_KEYS]
    if ks is None:
        ks = e[_KEYS] = _keys(e, key)
    vals = w.values
    req, up, apx = e[_REQ], e[_UP], e[_APX]
    b = _base(lc, ks[0])
    if b is not None:
        vals[b] += sum(req)
    rsum, usum = e[_RSUM], e[_USUM]
    for i, (h, total) in enumerate(((req, rsum), (up, usum), (apx, rsum - usum))):
        if any(h):
            b = _base(lc, ks[1 + i])
            if b is not None:
                acc = hists.get(b)
                if acc is None:
                    hists[b] = [h, total]          # the entry gets fresh lists below
                else:
                    acc[0] = list(map(add, acc[0], h))
                    acc[1] += total
    for i in (_IN, _OUT):
        b = _base(lc, ks[i - 2])
        if b is not None:
            vals[b] += e[i]
    e[_REQ], e[_UP], e[_APX] = [0] * _NB, [0] * _NB, [0] * _NB
    e[_RSUM] = e[_USUM] = 0.0
    e[_IN] = e[_OUT] = 0


#: entries seen for the first time whose series one flush resolves at most (the rest wait
#: for the next second, counts kept): a burst of new routes never holds a worker for long
NEW_PER_FLUSH = 5_000
#: aggregate entries kept in a worker before the idle ones are forgotten
MAX_ENTRIES = 200_000


def _flush(lc: metrics.Local) -> None:
    w = lc.writer
    if w is None:
        return
    hists: dict[int, list[Any]] = {}
    while _RETIRED:
        key, e = _RETIRED.pop()
        _flush_entry(lc, key, e, hists)
    dirty = []
    want = []
    idle = []
    known = w.known
    fresh = 0
    for key, e in _AGG.items():
        if not any(e[_REQ]):
            idle.append(key)
            continue
        ks = e[_KEYS]
        if ks is None:
            fresh += 1
            if fresh > NEW_PER_FLUSH:
                continue
            ks = e[_KEYS] = _keys(e, key)
        for i, sr in enumerate(ks):
            if sr[3] is None and sr[1] not in known and (
                    i != 2 or any(e[_UP])):      # no upstream series before one answered
                want.append((sr[0], sr[1], sr[2]))
        dirty.append((key, e))
    if want:
        lc.prefetch(want)            # new series: one lock for all of them
    for key, e in dirty:
        _flush_entry(lc, key, e, hists)
    for b, (counts, total) in hists.items():
        metrics.flush_histogram(w, b, counts, total)
    if len(_AGG) > MAX_ENTRIES:      # keys of routes long gone: forget the idle ones (their
        for key in idle:             # counts are in the store; a new request makes a new one)
            del _AGG[key]
