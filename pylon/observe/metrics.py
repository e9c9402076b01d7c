"""Metrics counted in shared memory by every worker of a node, rendered by the master.

APISIX keeps its Prometheus counters in an nginx shared dict that every request updates
under a lock, and renders them on scrape in a worker (or the privileged agent): users see
scrapes take seconds with many routes, and the request path pays for the lock.  Here:

* **Per request** a worker only adds to plain Python numbers in its own memory (the
  prometheus plugin's aggregate, ``plugins/prometheus.py``).  Once a second, when the
  master asks before a scrape, and when the worker drains, the worker *flushes*: it adds
  what changed to the shared store.  Cost per request: a dict lookup and a few additions.
* **The store** is one file mapping (``metrics`` in the node's shared-memory directory)::

      header | index: max_keys x (key offset, value base/count) | key arena | value slots

  A *series* is its exposition text without the value (``apisix_http_status{code="200",
  route="1",...}``); it owns ``n`` consecutive values (a histogram: its cumulative buckets,
  ``+Inf``, sum and count).  The index is append-only and shared: a writer adds a series
  under a POSIX record lock (released by the kernel if the writer dies), writes the key and
  the entry first and publishes it by bumping ``nkeys`` last, so a reader or a writer never
  sees half an entry.  Families (HELP, TYPE) are entries too, so the master needs no other
  channel to learn what exists.
* **Values** live in *writer slots*: one array of float64 per slot; a worker claims a free
  slot with a record lock on the slot's byte and is its only writer, so an update is a
  plain aligned 8-byte store -- no compare-and-swap, no lock, nothing torn when a worker is
  killed.  The master sums the slots.  A worker that exits (or is killed) releases its
  slot; the next worker to claim it *adds to* what is there: a restarted worker's counts
  are neither lost nor doubled (unflushed counts of a SIGKILLed worker -- at most the last
  second's -- are lost).
* **Rendering** (master): new index entries are decoded once into per-family lists of line
  prefixes and value positions; a scrape sums the slots' arrays and formats them with
  C-level ``map`` / slices / ``join`` -- no per-series Python loop.  Values that did not
  change since the last scrape keep their text (when most changed, all are formatted
  again, C-level).
* **Full or conflicting**: a series that does not fit (``max_values``), or whose shape
  differs from what the store has (a histogram family declared again with other buckets by
  a worker of a reload), is not counted, logged once and counted once in
  ``pylon_metrics_series_dropped_total``; the store is never overwritten out of shape.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import re
import struct
from collections.abc import Callable, Iterable
from itertools import accumulate, compress
from operator import add, ne
from typing import Any

log = logging.getLogger("pylon.metrics")

_MAGIC = 0x31544D4E4C5950            # "PYLNMT1"
_HEADER = 4096
_W = struct.Struct("<Q")
_E = struct.Struct("<QQ")
_L = struct.Struct("<I")
# header words
_H_MAGIC, _H_KEYS, _H_ARENA, _H_VALUES, _H_SLOTS, _H_NKEYS, _H_VUSED, _H_AUSED = range(8)
_H_SLOT_USED = 16                    # one word per slot: ever claimed
MAX_SLOTS = 64
NAME = "metrics"
#: the shared store's size in values unless ``plugin_attr.prometheus.max_values`` says
DEFAULT_MAX_VALUES = 1 << 21

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"


def escape(v: Any) -> str:
    """A label value as the exposition format wants it."""
    s = "" if v is None else str(v)
    if "\\" in s or '"' in s or "\n" in s:
        s = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return s


def labels(pairs: Iterable[tuple[str, Any]]) -> str:
    return ",".join(f'{k}="{escape(v)}"' for k, v in pairs)


def fmt_bound(b: float) -> str:
    return repr(float(b)) if b != int(b) else str(int(b))


class StoreFull(Exception):
    pass


class MetricStore:
    """The shared file; opened (and created, the first time) by any process of the node."""

    def __init__(self, directory: str, max_values: int = DEFAULT_MAX_VALUES) -> None:
        self.path = os.path.join(directory, NAME)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX, 1, 0)
            try:
                head = os.pread(fd, 64, 0)
                if len(head) == 64 and _W.unpack_from(head)[0] == _MAGIC:
                    w = struct.unpack_from("<8Q", head)
                    max_keys, arena, max_values = w[_H_KEYS], w[_H_ARENA], w[_H_VALUES]
                else:
                    max_keys = max(max_values // 2, 1024)
                    arena = max_keys * 192
                    size = _HEADER + max_keys * 16 + arena + MAX_SLOTS * max_values * 8
                    os.ftruncate(fd, size)               # sparse: pages appear when used
                    os.pwrite(fd, struct.pack("<8Q", 0, max_keys, arena, max_values,
                                              MAX_SLOTS, 0, 0, 0), 0)
                    os.pwrite(fd, _W.pack(_MAGIC), 0)
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, 0)
            self.max_keys, self.arena_size, self.max_values = max_keys, arena, max_values
            self.index_off = _HEADER
            self.arena_off = _HEADER + max_keys * 16
            self.values_off = self.arena_off + arena
            size = self.values_off + MAX_SLOTS * max_values * 8
            self.mm = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd            # record locks: byte 0 the index, byte 1 + i writer slot i

    def word(self, i: int) -> int:
        w: int = _W.unpack_from(self.mm, i * 8)[0]
        return w

    def set_word(self, i: int, v: int) -> None:
        _W.pack_into(self.mm, i * 8, v)

    def entries(self, start: int) -> Iterable[tuple[int, str, int, int]]:
        """Published index entries from ``start``: (i, key, value base, value count)."""
        mm = self.mm
        for i in range(start, self.word(_H_NKEYS)):
            off, vb = _E.unpack_from(mm, self.index_off + i * 16)
            (n,) = _L.unpack_from(mm, self.arena_off + off)
            key = mm[self.arena_off + off + 4:self.arena_off + off + 4 + n].decode()
            yield i, key, vb >> 8, vb & 0xFF

    def slot_values(self, slot: int) -> memoryview[float]:
        off = self.values_off + slot * self.max_values * 8
        return memoryview(self.mm)[off:off + self.max_values * 8].cast("d")

    def used_slots(self) -> list[int]:
        return [i for i in range(MAX_SLOTS) if self.word(_H_SLOT_USED + i)]

    def close(self) -> None:
        try:
            self.mm.close()
        except BufferError:            # a memoryview still alive (a reader's)
            pass
        os.close(self.fd)


class Writer:
    """One process's writer slot and its view of the index."""

    def __init__(self, store: MetricStore) -> None:
        self.store = store
        self.slot = -1
        for i in range(MAX_SLOTS):
            try:
                fcntl.lockf(store.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 1 + i)
            except OSError:
                continue
            self.slot = i
            break
        if self.slot < 0:
            raise StoreFull(f"all {MAX_SLOTS} metric writer slots are taken")
        store.set_word(_H_SLOT_USED + self.slot, 1)
        self.values = store.slot_values(self.slot)
        #: series key -> value base << 8 | value count
        self.known: dict[str, int] = {}
        #: family name -> its declaration key (kind, bounds, help)
        self.specs: dict[str, str] = {}
        self.seen = 0
        self.full = False
        self.conflicts: set[str] = set()

    def _sync(self) -> None:
        for i, key, base, n in self.store.entries(self.seen):
            self.known[key] = (base << 8) | n
            if key.startswith("#"):
                self.specs.setdefault(key[1:].split("\t", 1)[0], key)
            self.seen = i + 1

    def series(self, key: str, n: int = 1) -> int:
        """The value base of series ``key`` (``n`` values), added to the index if new.
        Raises StoreFull when the store has no room (the caller counts and drops), or when
        the series (or, for a family, its name) exists with another shape: a histogram
        whose buckets changed while the node ran (a reload) keeps the shape it has."""
        v = self.known.get(key)
        if v is not None:
            if v & 0xFF != n:
                raise StoreFull(f"{key} exists with {v & 0xFF} values, not {n}")
            return v >> 8
        st = self.store
        fcntl.lockf(st.fd, fcntl.LOCK_EX, 1, 0)
        try:
            self._sync()
            return self._append(key, n)
        finally:
            fcntl.lockf(st.fd, fcntl.LOCK_UN, 1, 0)

    def series_many(self, items: Iterable[tuple[str, int]]) -> None:
        """Add the series of ``items`` (key, value count) that are new, under one lock (a
        burst of new series -- a new route table -- costs one lock, not one per series).
        Series refused (store full, another shape) are skipped: ``series`` reports them."""
        todo = [(k, n) for k, n in items if k not in self.known]
        if not todo:
            return
        st = self.store
        fcntl.lockf(st.fd, fcntl.LOCK_EX, 1, 0)
        try:
            self._sync()
            for k, n in todo:
                try:
                    self._append(k, n)
                except StoreFull:
                    pass
        finally:
            fcntl.lockf(st.fd, fcntl.LOCK_UN, 1, 0)

    def _append(self, key: str, n: int) -> int:
        """The base of ``key``, added if new; the index lock is held and synced."""
        st = self.store
        v = self.known.get(key)
        if v is not None:
            if v & 0xFF != n:
                raise StoreFull(f"{key} exists with {v & 0xFF} values, not {n}")
            return v >> 8
        if key.startswith("#"):
            name = key[1:].split("\t", 1)[0]
            if name in self.specs:              # declared before, differently
                if name not in self.conflicts:
                    self.conflicts.add(name)
                    log.error("metric family %s exists in the node's store as %r, not "
                              "%r: its series are not counted by this process until "
                              "the node restarts", name, self.specs[name][1:],
                              key[1:])
                raise StoreFull(key)
        nkeys, vused, aused = (st.word(_H_NKEYS), st.word(_H_VUSED), st.word(_H_AUSED))
        raw = key.encode()
        need = (4 + len(raw) + 7) & ~7
        if nkeys >= st.max_keys or vused + n > st.max_values or \
                aused + need > st.arena_size or n > 0xFF:
            if not self.full:
                self.full = True
                log.error("the metric store is full (%d series); new series are dropped"
                          " -- raise plugin_attr.prometheus.max_values", nkeys)
            raise StoreFull(key)
        mm = st.mm
        _L.pack_into(mm, st.arena_off + aused, len(raw))
        mm[st.arena_off + aused + 4:st.arena_off + aused + 4 + len(raw)] = raw
        _E.pack_into(mm, st.index_off + nkeys * 16, aused, (vused << 8) | n)
        st.set_word(_H_VUSED, vused + n)
        st.set_word(_H_AUSED, aused + need)
        st.set_word(_H_NKEYS, nkeys + 1)            # published: complete from here on
        self.known[key] = (vused << 8) | n
        if key.startswith("#"):
            self.specs[key[1:].split("\t", 1)[0]] = key
        self.seen = nkeys + 1
        return vused

    def family(self, name: str, kind: str, help_text: str,
               bounds: Iterable[float] = ()) -> None:
        """Declare a family (HELP / TYPE / histogram bounds) before its series."""
        b = ",".join(fmt_bound(x) for x in bounds)
        self.series(f"#{name}\t{kind}\t{b}\t{help_text}", 0)

    def add(self, base: int, delta: float) -> None:
        self.values[base] += delta

    def close(self) -> None:
        self.values.release()
        try:
            fcntl.lockf(self.store.fd, fcntl.LOCK_UN, 1, 1 + self.slot)
        except OSError:
            pass


# ----------------------------------------------------------------------------- process side
def flush_histogram(w: Writer, base: int, counts: list[int], total: float) -> None:
    """Add one histogram's local deltas (``counts``: per bucket, last = above every bound)
    to its cumulative values, highest bucket first: a reader never sees a lower bucket
    above a higher one."""
    vals = w.values
    nb = len(counts)
    cum = list(accumulate(counts))
    for i in range(nb - 1, -1, -1):
        if cum[i]:
            vals[base + i] += cum[i]
    vals[base + nb] += total
    vals[base + nb + 1] += cum[-1]


DROPPED_SERIES = "pylon_metrics_series_dropped_total"
#: distinct refused series remembered (not retried, counted once); beyond it, every refusal
#: counts
_REFUSED_MAX = 100_000


class Local:
    """This process's metrics: simple counters (``inc``) plus flush callbacks of hot-path
    aggregates (the prometheus plugin's); ``flush()`` moves everything into the store."""

    def __init__(self) -> None:
        self.writer: Writer | None = None
        self.failed = False
        self.counters: dict[str, float] = {}
        self.families: dict[str, tuple[str, str, tuple[float, ...]]] = {}
        self.declared: set[str] = set()
        self.sources: list[Callable[[Local], None]] = []
        #: series refused because the store was full (each counted once)
        self.refused: set[str] = set()
        self.dropped = 0
        self._dropped_base: int | None = None
        #: the store's size should this process be the one creating it (the prometheus plugin
        #: sets it from ``plugin_attr.prometheus.max_values``)
        self.max_values = DEFAULT_MAX_VALUES

    def open(self) -> Writer | None:
        if self.writer is None and not self.failed:
            try:
                from ..ratelimit.local import node_dir
                self.attach(Writer(MetricStore(node_dir(), self.max_values)))
            except Exception:
                self.failed = True
                log.exception("metrics: the shared store could not be opened; metrics off")
        return self.writer

    def attach(self, writer: Writer) -> None:
        """Write through ``writer`` from now on.  The dropped-series counter gets its place
        first, so that a full store can still say how much it drops."""
        self.writer = writer
        if DROPPED_SERIES not in self.families:
            self.declare(DROPPED_SERIES, COUNTER, PYLON_COUNTERS[DROPPED_SERIES])
        self._dropped_base = None
        self._dropped_base = self.series(DROPPED_SERIES, DROPPED_SERIES)

    def declare(self, name: str, kind: str, help_text: str,
                bounds: Iterable[float] = ()) -> None:
        self.families[name] = (kind, help_text, tuple(bounds))

    def inc(self, family: str, label_text: str = "", n: float = 1) -> None:
        """A counter (declared with ``declare``): cheap, flushed later."""
        key = f"{family}{{{label_text}}}" if label_text else family
        self.counters[key] = self.counters.get(key, 0) + n

    def series(self, family: str, key: str, n: int = 1) -> int | None:
        """The store base of ``key`` in ``family`` (declared first); None when the store
        has no room for it -- the series is counted in ``pylon_metrics_series_dropped_total``
        once and not tried again."""
        w = self.writer
        if w is None:
            return None
        if key in self.refused:
            return None
        try:
            if family not in self.declared:
                kind, help_text, bounds = self.families[family]
                w.family(family, kind, help_text, bounds)
                self.declared.add(family)
            return w.series(key, n)
        except StoreFull:
            if len(self.refused) < _REFUSED_MAX:
                self.refused.add(key)
            self.dropped += 1
            if self._dropped_base is not None:
                w.values[self._dropped_base] += 1
            return None

    def prefetch(self, items: Iterable[tuple[str, str, int]]) -> None:
        """Add many (family, key, value count) series at once (one lock); ``series`` then
        finds them known."""
        w = self.writer
        if w is None:
            return
        todo = []
        for family, key, n in items:
            if key in self.refused or key in w.known:
                continue
            if family not in self.declared:
                try:
                    kind, help_text, bounds = self.families[family]
                    w.family(family, kind, help_text, bounds)
                    self.declared.add(family)
                except StoreFull:
                    continue
            todo.append((key, n))
        w.series_many(todo)

    def flush(self) -> None:
        w = self.open()
        if w is None:
            return
        for src in self.sources:
            try:
                src(self)
            except Exception:
                log.exception("metrics: flush failed")
        if self.counters:
            counters, self.counters = self.counters, {}
            for key, n in counters.items():
                family = key.split("{", 1)[0]
                if family not in self.families:
                    log.error("metrics: counter %s was never declared; dropped", family)
                    continue
                base = self.series(family, key)
                if base is not None:
                    w.values[base] += n


_local: Local | None = None


def local() -> Local:
    """This process's metrics (created on first use)."""
    global _local
    if _local is None:
        _local = Local()
        _declare_pylon(_local)
    return _local


def flush() -> None:
    if _local is not None:
        _local.flush()


def inc(family: str, label_text: str = "", n: float = 1) -> None:
    local().inc(family, label_text, n)


def family_bounds(name: str, max_values: int = DEFAULT_MAX_VALUES) -> tuple[float, ...] | None:
    """The bucket bounds histogram family ``name`` has in this node's store, if the node
    (a process started by a master) has declared it already: a worker started by a reload
    keeps counting with the buckets the node started with."""
    from ..ratelimit.local import ENV
    d = os.environ.get(ENV)
    path = os.path.join(d, NAME) if d else ""
    if not d or not os.path.exists(path):
        return None
    try:
        store = MetricStore(d, max_values)
    except (OSError, ValueError):
        return None
    try:
        prefix = f"#{name}\t{HISTOGRAM}\t"
        for _i, key, _b, _n in store.entries(0):
            if key.startswith(prefix):
                b = key[len(prefix):].split("\t", 1)[0]
                return tuple(float(x) for x in b.split(",")) if b else ()
            if key.startswith(f"#{name}\t"):
                return None
        return None
    finally:
        store.close()


_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


def valid_name(s: str) -> bool:
    """A valid metric name (or prefix) of the exposition format."""
    return bool(_NAME_RE.match(s))


def metric_prefix(attr: dict[str, Any], report: bool = False) -> str:
    """``plugin_attr.prometheus.metric_prefix`` when it makes valid names, else ``apisix_``
    (``report``: say so in the error log)."""
    prefix = str(attr.get("metric_prefix") or "apisix_")
    if valid_name(prefix):
        return prefix
    if report:
        log.error("prometheus: metric_prefix %r is not a valid metric name prefix; using "
                  "apisix_", prefix)
    return "apisix_"


def valid_label(s: str) -> bool:
    """A valid label name (``__`` names are reserved)."""
    return bool(_LABEL_RE.match(s)) and not s.startswith("__")


def max_values(attr: dict[str, Any]) -> int:
    """The shared store's size in values from ``plugin_attr.prometheus`` (``max_values``,
    at least 1024; default 2M)."""
    v = attr.get("max_values")
    return int(v) if isinstance(v, int) and v >= 1024 else DEFAULT_MAX_VALUES


def export_settings(attr: dict[str, Any]) -> tuple[bool, str, int, str, str]:
    """(enabled, ip, port, uri, metric prefix) of the export server, from
    ``plugin_attr.prometheus``; ValueError names a bad field."""
    addr = attr.get("export_addr") or {}
    prefix = metric_prefix(attr)            # the plugin logs a bad one
    if not isinstance(addr, dict):
        raise ValueError("plugin_attr.prometheus.export_addr must be {ip, port}")  # noqa: TRY004
    port = addr.get("port") or 9091
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ValueError(f"plugin_attr.prometheus.export_addr.port {port!r} is not a port")
    uri = str(attr.get("export_uri") or "/apisix/prometheus/metrics")
    if not uri.startswith("/"):
        raise ValueError(f"plugin_attr.prometheus.export_uri {uri!r} must start with '/'")
    return (attr.get("enable_export_server", True) is not False,
            str(addr.get("ip") or "127.0.0.1"), port, uri, prefix)


# Pylon's own counters, in every process that counts them
PYLON_COUNTERS = {
    "pylon_log_entries_dropped_total": "Log entries dropped by a log sink (queue full or "
                                       "retries exhausted), by plugin",
    "pylon_ratelimit_degraded_total": "Requests let through because the rate-limit store "
                                      "(Redis) was unavailable (allow_degradation), by plugin",
    "pylon_ratelimit_store_errors_total": "Rate-limit decisions that failed because the store "
                                          "(Redis) was unavailable, by plugin",
    "pylon_metrics_series_dropped_total": "Metric series not counted because the metric store "
                                          "was full",
}


def _declare_pylon(lc: Local) -> None:
    for name, text in PYLON_COUNTERS.items():
        lc.declare(name, COUNTER, text)


# ----------------------------------------------------------------------------- reader
class _Family:
    """One family as the reader renders it: per value, its line prefix (``\\nname{labels} ``)
    and its position in the store; the last scrape's values and their text (unchanged
    values are not formatted again) and the output parts (prefixes and value texts,
    interleaved, joined once)."""

    __slots__ = ("bounds", "head", "help", "kind", "name", "parts", "positions", "prefixes",
                 "texts", "vals")

    def __init__(self, name: str, kind: str, bounds: tuple[str, ...], help_text: str) -> None:
        self.name, self.kind, self.bounds, self.help = name, kind, bounds, help_text
        self.head = f"# HELP {name} {help_text}\n# TYPE {name} {kind}"
        self.prefixes: list[str] = []
        self.positions: list[int] = []
        self.vals: list[float] | None = None
        self.texts: list[str] = []
        self.parts: list[str] | None = None

    def added(self) -> None:
        """Series were added: the caches start over."""
        self.vals = None
        self.parts = None

    def body(self, values: list[float]) -> str:
        """The family's sample lines for the store's summed ``values``."""
        v = list(map(values.__getitem__, self.positions))
        old = self.vals
        texts = self.texts
        if old is not None and len(old) == len(v):
            changed = list(compress(range(len(v)), map(ne, v, old)))
            if len(changed) * 4 < len(v):         # mostly idle series: patch the changes
                for i in changed:
                    texts[i] = _fmt(v[i])
            else:
                texts = _format(self, v)
        else:
            texts = _format(self, v)
        self.vals, self.texts = v, texts
        parts = self.parts
        if parts is None:
            parts = self.parts = [""] * (2 * len(v))
            parts[::2] = self.prefixes
        parts[1::2] = texts
        return "".join(parts)


class Reader:
    """The master's view: decodes new index entries once, renders the exposition text."""

    def __init__(self, store: MetricStore) -> None:
        self.store = store
        self.seen = 0
        self.families: dict[str, _Family] = {}
        self.order: list[_Family] = []
        self.orphans: list[tuple[str, int, int]] = []

    def _family(self, key: str) -> None:
        name, kind, bounds, help_text = key[1:].split("\t", 3)
        if name in self.families:
            return
        f = _Family(name, kind, tuple(bounds.split(",")) if bounds else (), help_text)
        self.families[name] = f
        self.order.append(f)

    def _series(self, key: str, base: int, n: int) -> bool:
        brace = key.find("{")
        name = key if brace < 0 else key[:brace]
        f = self.families.get(name)
        if f is None:
            return False
        f.added()
        if f.kind == HISTOGRAM:
            lab = key[brace + 1:-1] if brace >= 0 else ""
            sep = "," if lab else ""
            for i, b in enumerate((*f.bounds, "+Inf")):
                f.prefixes.append(f'\n{name}_bucket{{{lab}{sep}le="{b}"}} ')
                f.positions.append(base + i)
            suffix = "{" + lab + "}" if lab else ""
            f.prefixes.append(f"\n{name}_sum{suffix} ")
            f.positions.append(base + len(f.bounds) + 1)
            f.prefixes.append(f"\n{name}_count{suffix} ")
            f.positions.append(base + len(f.bounds) + 2)
        else:
            f.prefixes.append("\n" + key + " ")
            f.positions.append(base)
        return True

    def refresh(self) -> None:
        for _i, key, base, n in self.store.entries(self.seen):
            self.seen = _i + 1
            if key.startswith("#"):
                self._family(key)
                pending, self.orphans = self.orphans, []
                for k, b, m in pending:
                    if not self._series(k, b, m):
                        self.orphans.append((k, b, m))
            elif not self._series(key, base, n):
                self.orphans.append((key, base, n))

    def values(self) -> list[float]:
        used = self.store.word(_H_VUSED)
        total: list[float] | None = None
        for slot in self.store.used_slots():
            mv = self.store.slot_values(slot)
            try:
                vals: list[float] = mv[:used].tolist()  # type: ignore[assignment]  # "d" view
            finally:
                mv.release()
            total = vals if total is None else list(map(add, total, vals))
        return total or []

    def render(self, extra: Iterable[tuple[str, str, str, list[tuple[str, float]]]] = ()
               ) -> str:
        """The exposition text: the store's families, then ``extra`` families given as
        (name, type, help, [(label text, value)]) (the master's own gauges)."""
        self.refresh()
        vals = self.values()
        out: list[str] = []
        for f in self.order:
            if not f.prefixes:
                continue
            out.append(f.head)
            out.append(f.body(vals))
            out.append("\n")
        for name, kind, help_text, rows in extra:
            if not rows:
                continue
            out.append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n")
            for lab, v in rows:
                out.append(f"{name}{{{lab}}} {_fmt(v)}\n" if lab else f"{name} {_fmt(v)}\n")
        return "".join(out)


def _fmt(v: float) -> str:
    """One value as text (the master's own gauges; a few changed values)."""
    return str(int(v)) if v.is_integer() and -1e15 < v < 1e15 else repr(v)


_INT = "%d".__mod__            # bucket counts and counts: integral
_NUM = "%.17g".__mod__         # exact, integral values without ".0", C-level


def _format(f: _Family, v: list[float]) -> list[str]:
    """A family's values as text, C-level (``map``, slices): a histogram's counts as
    integers and its sums as ``repr``; counters and gauges with ``%.17g`` (exact)."""
    try:
        if f.kind != HISTOGRAM:
            return list(map(_NUM, v))
        out = list(map(_INT, v))
        nb = len(f.bounds) + 1              # buckets with +Inf; then sum, count
        out[nb::nb + 2] = list(map(repr, v[nb::nb + 2]))
        return out
    except (ValueError, OverflowError):     # NaN / inf: never counted, but stay valid
        return list(map(_fmt, v))


DEFAULT_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000)

__all__ = ["COUNTER", "DEFAULT_BUCKETS", "DEFAULT_MAX_VALUES", "GAUGE", "HISTOGRAM", "Local",
           "MetricStore", "Reader", "StoreFull", "Writer", "escape", "export_settings",
           "family_bounds", "flush", "flush_histogram", "inc", "labels", "local", "max_values",
           "metric_prefix", "valid_label", "valid_name"]
