"""The shared metric store (``pylon/observe/metrics.py``) without a gateway: several writer
processes, a writer killed mid-life, a full store, and what the reader renders."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pylon.observe import metrics
from pylon.observe.metrics import COUNTER, HISTOGRAM, Local, MetricStore, Reader, StoreFull, Writer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition text, which must parse and hold no series twice, by
    the name the text gives it (the parser adds ``_total`` to counters that have none)."""
    names = {line.split("{", 1)[0].split(" ", 1)[0] for line in text.splitlines()
             if line and not line.startswith("#")}
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            name = s.name
            if name not in names and name.endswith("_total") and name[:-6] in names:
                name = name[:-6]
            assert name in names, (name, fam.name)
            k = (name, frozenset(s.labels.items()))
            assert k not in out, f"duplicate series {k}"
            out[k] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, frozenset(labels.items())))


@pytest.fixture
def store_dir(tmp_path: Any) -> Iterator[str]:
    yield str(tmp_path)


def _child(store_dir: str, body: str) -> subprocess.Popen[bytes]:
    """A Python process writing to the store in ``store_dir`` (``w`` is its writer)."""
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {ROOT!r})
        from pylon.observe.metrics import MetricStore, Writer
        w = Writer(MetricStore({store_dir!r}, 4096))
        print("slot", w.slot, flush=True)
    """) + textwrap.dedent(body)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stdin=subprocess.PIPE, bufsize=0)


def _line(p: subprocess.Popen[bytes], timeout: float = 20.0) -> str:
    """The next line the process prints (unbuffered: one byte at a time, bounded)."""
    assert p.stdout is not None
    fd = p.stdout.fileno()
    deadline = time.monotonic() + timeout
    out = b""
    while not out.endswith(b"\n"):
        r, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        assert r, f"the writer process said nothing (so far {out!r})"
        b = os.read(fd, 1)
        assert b, f"the writer process exited (so far {out!r})"
        out += b
    return out.decode().strip()


def test_two_processes_writing_at_once_give_exact_sums(store_dir: str) -> None:
    # both create the same series and new ones of their own while the other writes
    body = """
        sys.stdin.readline()                          # both start together
        w.family("jobs_total", "counter", "jobs")
        shared = w.series('jobs_total{kind="shared"}')
        mine = [w.series('jobs_total{kind="own-%d-%d"}' % (w.slot, i)) for i in range(50)]
        for i in range(200000):
            w.add(shared, 1)
            w.add(mine[i % 50], 0.5)
            if i % 10000 == 0:
                w.series('jobs_total{kind="late-%d"}' % (i // 10000))  # both, racing
        late = w.series('jobs_total{kind="late-3"}')
        w.add(late, 7)
        print("done", flush=True)
    """
    procs = [_child(store_dir, body) for _ in range(2)]
    try:
        slots = {_line(p) for p in procs}
        assert len(slots) == 2                           # one writer slot each
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(b"go\n")
        assert [_line(p) for p in procs] == ["done", "done"]
    finally:
        for p in procs:
            p.wait(20)
    store = MetricStore(store_dir, 4096)
    text = Reader(store).render()
    got = samples(text)
    assert value(text, "jobs_total", kind="shared") == 400000
    for slot in slots:
        n = slot.split()[1]
        for i in range(50):
            assert got[("jobs_total", frozenset({("kind", f"own-{n}-{i}")}))] == 2000
    assert value(text, "jobs_total", kind="late-3") == 14     # one series, both added
    assert len(got) == 1 + 100 + 20
    store.close()


def test_a_killed_writer_releases_its_slot_and_the_next_one_adds_to_it(store_dir: str) -> None:
    p = _child(store_dir, """
        w.family("served_total", "counter", "served")
        w.add(w.series("served_total"), 5)
        print("wrote", flush=True)
        time.sleep(60)
    """)
    try:
        slot = int(_line(p).split()[1])
        assert _line(p) == "wrote"
        store = MetricStore(store_dir, 4096)
        other = Writer(store)                      # the slot is held: another one
        assert other.slot != slot
        other.close()
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    w = Writer(store)
    assert w.slot == slot                          # released by the kernel, reused
    w.add(w.series("served_total"), 3)
    text = Reader(store).render()
    assert value(text, "served_total") == 8        # neither lost nor doubled
    w.close()
    store.close()


def test_a_full_store_drops_new_series_counts_them_and_keeps_rendering(store_dir: str) -> None:
    store = MetricStore(store_dir, 1024)             # 1024 values
    lc = Local()
    lc.declare("lat", HISTOGRAM, "latency", (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14))
    lc.declare("hits_total", COUNTER, "hits")
    lc.attach(Writer(store))
    assert lc.writer is not None
    kept = 0
    refused: list[str] = []
    for i in range(80):                              # 17 values each: ~60 fit
        key = f'lat{{route="{i}"}}'
        base = lc.series("lat", key, 17)
        if base is None:
            refused.append(key)
        else:
            metrics.flush_histogram(lc.writer, base, [1] + [0] * 14, 0.5)
            kept += 1
    assert refused and kept >= 50
    for key in refused:                              # asked again: still dropped, counted once
        assert lc.series("lat", key, 17) is None
    with pytest.raises(StoreFull):
        lc.writer.series('lat{route="direct"}', 17)
    lc.inc("hits_total", 'route="x"', 2)             # a small series still has room
    lc.flush()
    text = Reader(store).render()
    assert value(text, "pylon_metrics_series_dropped_total") == len(refused)
    assert value(text, "hits_total", route="x") == 2
    assert value(text, "lat_count", route="0") == 1
    assert value(text, "lat_count", route=str(kept)) is None
    lc.writer.close()
    store.close()


def test_histograms_render_cumulative_buckets_sum_and_count(store_dir: str) -> None:
    store = MetricStore(store_dir, 4096)
    w = Writer(store)
    w.family("req_ms", HISTOGRAM, "latency", (1, 5, 10.5))
    base = w.series('req_ms{route="r"}', 6)
    metrics.flush_histogram(w, base, [1, 0, 2, 1], 30.25)      # per bucket, last: above 10.5
    metrics.flush_histogram(w, base, [0, 3, 0, 0], 9.0)
    text = Reader(store).render()
    assert "# TYPE req_ms histogram" in text
    got = {(k[0], dict(k[1]).get("le")): v for k, v in samples(text).items()}
    assert got == {("req_ms_bucket", "1"): 1, ("req_ms_bucket", "5"): 4,
                   ("req_ms_bucket", "10.5"): 6, ("req_ms_bucket", "+Inf"): 7,
                   ("req_ms_sum", None): 39.25, ("req_ms_count", None): 7}
    assert 'req_ms_bucket{route="r",le="10.5"} 6\n' in text
    assert 'req_ms_bucket{route="r",le="5"} 4\n' in text       # integral bounds as APISIX
    w.close()
    store.close()


def test_label_values_with_quotes_backslashes_and_newlines_parse_back(store_dir: str) -> None:
    store = MetricStore(store_dir, 4096)
    w = Writer(store)
    w.family("odd_total", COUNTER, "odd labels")
    nasty = ['say "hi"', "C:\\path\\", "two\nlines", '\\"\n', ""]
    for i, v in enumerate(nasty):
        w.add(w.series("odd_total{" + metrics.labels([("v", v), ("i", i)]) + "}"), i + 1)
    text = Reader(store).render()
    got = samples(text)
    for i, v in enumerate(nasty):
        assert got[("odd_total", frozenset({("v", v), ("i", str(i))}))] == i + 1
    w.close()
    store.close()


def test_a_reader_sees_series_added_after_its_first_render(store_dir: str) -> None:
    store = MetricStore(store_dir, 4096)
    w = Writer(store)
    reader = Reader(store)
    w.family("a_total", COUNTER, "a")
    w.add(w.series('a_total{x="1"}'), 1)
    assert value(reader.render(), "a_total", x="1") == 1
    w.add(w.series('a_total{x="2"}'), 2)
    w.add(w.series('a_total{x="1"}'), 1)
    text = reader.render([("extra_gauge", "gauge", "from the master",
                           [('k="v"', 3.5), ("", 1.0)])])
    assert value(text, "a_total", x="1") == 2
    assert value(text, "a_total", x="2") == 2
    assert value(text, "extra_gauge", k="v") == 3.5
    assert text.count("# TYPE a_total counter") == 1
    w.close()
    store.close()


def test_render_time_stays_small_with_many_series(store_dir: str) -> None:
    store = MetricStore(store_dir, 1 << 18)
    w = Writer(store)
    w.family("lat", HISTOGRAM, "latency", metrics.DEFAULT_BUCKETS)
    n = len(metrics.DEFAULT_BUCKETS) + 3
    for i in range(2000):                                      # 36k values
        metrics.flush_histogram(w, w.series(f'lat{{route="{i}"}}', n),
                                [i % 3] + [1] * len(metrics.DEFAULT_BUCKETS), i * 0.25)
    reader = Reader(store)
    reader.render()                                            # decodes the index once
    t0 = time.perf_counter()
    text = reader.render()
    took = time.perf_counter() - t0
    assert text.count("\n") == 2000 * n + 2
    assert took < 0.5, took
    # a few series change between scrapes: those values are new, the others unchanged
    for i in (0, 7, 1999):
        metrics.flush_histogram(w, w.series(f'lat{{route="{i}"}}', n),
                                [0] * len(metrics.DEFAULT_BUCKETS) + [2], 1000.5)
    got = samples(reader.render())
    for i in (0, 7, 1999, 8, 1000):
        changed = i in (0, 7, 1999)
        lab = frozenset({("route", str(i))})
        assert got[("lat_count", lab)] == len(metrics.DEFAULT_BUCKETS) + (i % 3) + 2 * changed
        assert got[("lat_sum", lab)] == i * 0.25 + 1000.5 * changed
        assert got[("lat_bucket", lab | {("le", "1")})] == i % 3
    # every value changes: all formatted again
    for i in range(2000):
        w.add(w.series(f'lat{{route="{i}"}}', n) + n - 1, 1)
    got = samples(reader.render())
    assert got[("lat_count", frozenset({("route", "8")}))] == len(metrics.DEFAULT_BUCKETS) + 3
    w.close()
    store.close()


def test_a_family_declared_again_with_other_buckets_is_refused_not_mixed(store_dir: str
                                                                          ) -> None:
    store = MetricStore(store_dir, 4096)
    first = Writer(store)
    first.family("lat", HISTOGRAM, "latency", (10, 20))
    metrics.flush_histogram(first, first.series('lat{r="1"}', 5), [1, 0, 0], 3.0)
    first.close()
    # a process started later with other buckets (a reload after default_buckets changed)
    lc = Local()
    lc.declare("lat", HISTOGRAM, "latency", (5, 10, 20, 50))
    lc.attach(Writer(store))
    assert lc.series("lat", 'lat{r="1"}', 7) is None
    assert lc.series("lat", 'lat{r="2"}', 7) is None
    with pytest.raises(StoreFull):                    # same key, other shape
        assert lc.writer is not None
        lc.writer.series('lat{r="1"}', 7)
    text = Reader(store).render()
    got = samples(text)
    assert value(text, "lat_count", r="1") == 1
    assert [dict(k[1])["le"] for k in got if k[0] == "lat_bucket"] == ["10", "20", "+Inf"]
    assert value(text, "pylon_metrics_series_dropped_total") == 2
    store.close()
