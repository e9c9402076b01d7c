"""Soak (``PYLON_SLOW=1`` only): mixed traffic for ``PYLON_SOAK_SECONDS`` (default 1800 s)
with a configuration change through the Admin API every second; the resident memory of every
process (master and workers) must stay flat and no request may fail.

Traffic: keep-alive and fresh connections; small GETs through a chain of plugins, small and
1 MiB uploads, 1 MiB downloads, and a route the Admin API rewrites every second.  Config
churn: that route's plugin configuration, a PATCH of a busy route, and short-lived routes
and upstreams created and deleted.  RSS of every process is sampled every 10 s into
``rss.csv`` in the test's tmp dir (``elapsed_s,role,pid,rss_kib``) and summarised on stdout.

Flat means, per process: the highest sample of the last quarter of the run is within 10 %
+ 5 MiB of the highest sample of the first quarter after warm-up (the first tenth of the run,
at most 60 s).  Run (docs/reliability.md, "Soak")::

    PYLON_SLOW=1 PYLON_SOAK_SECONDS=300 python -m pytest -q -s -p no:cacheprovider \\
        tests/behaviour/test_soak.py
"""

from __future__ import annotations

import csv
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any, Self

import pytest

from tests.admin.test_admin_gateway import admin, admin_node
from tests.harness import Upstream, echo, free_port, generate_body, rss_bytes

from .test_processes import wait_workers
from .traffic import Req, Traffic

pytestmark = pytest.mark.slow

SECONDS = float(os.environ.get("PYLON_SOAK_SECONDS", "1800"))
SAMPLE_EVERY = 10.0
WARMUP = min(60.0, SECONDS / 10)
MIB = 1 << 20
KEY = "soak-admin-key-0123456789abcdef"
BIG = bytes(range(256)) * (MIB // 256)


def count(h: BaseHTTPRequestHandler, body: bytes) -> None:
    """Answer ``{"received": n}`` for an upload of n bytes."""
    out = json.dumps({"received": len(body)}).encode()
    h.send_response(200)
    h.send_header("Content-Length", str(len(out)))
    h.end_headers()
    h.wfile.write(out)


class QuietUpstream(Upstream):
    """An ``Upstream`` that keeps no record of the requests (a soak sends millions)."""

    def record(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        pass


def upstream_of(u: Upstream) -> dict[str, Any]:
    return {"type": "roundrobin", "nodes": {u.addr: 1}}


def routes(echo_up: Upstream, sink_up: Upstream, big_up: Upstream) -> dict[str, Any]:
    return {"routes": [
        {"id": "chain", "uri": "/chain/*", "upstream": upstream_of(echo_up), "plugins": {
            "proxy-rewrite": {"regex_uri": ["^/chain/(.*)", "/echo/$1"],
                              "headers": {"set": {"X-Soak": "1"}}},
            "response-rewrite": {"headers": {"set": {"X-Gen": "0"}}},
            "limit-count": {"count": 1_000_000_000, "time_window": 60,
                            "key_type": "var", "key": "remote_addr"},
            "request-id": {},
            "cors": {},
            "prometheus": {}}},
        {"id": "upload", "uri": "/upload", "upstream": upstream_of(sink_up), "plugins": {
            "limit-conn": {"conn": 1000, "burst": 0, "default_conn_delay": 0.1,
                           "key_type": "var", "key": "remote_addr"}}},
        {"id": "download", "uri": "/download", "upstream": upstream_of(big_up), "plugins": {
            "proxy-rewrite": {"headers": {"set": {"X-Big": "1"}}}}},
        {"id": "churn", "uri": "/churn", "upstream": upstream_of(echo_up)},
    ]}


def received(size: int) -> Any:
    return lambda _s, body: json.loads(body).get("received") == size


def plan(rng: Any, n: int) -> Req:
    r = rng.random()
    if r < 0.45:
        return Req("GET", f"/chain/{n}?q={r:.3f}")
    if r < 0.60:
        return Req("GET", "/churn")
    if r < 0.75:
        return Req("POST", "/upload", b"s" * 1024, check=received(1024))
    if r < 0.85:
        return Req("POST", "/upload", BIG, check=received(MIB))
    return Req("GET", "/download", check=lambda _s, body: len(body) == MIB)


class Churn:
    """One Admin API change per second, cycling through five kinds; every answer counted."""

    def __init__(self, port: int, echo_up: Upstream) -> None:
        self.port = port
        self.echo_up = echo_up
        self.done = 0
        self.failures: list[str] = []
        self.last_gen = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _call(self, method: str, path: str, body: object = None) -> None:
        try:
            status, out = admin(self.port, method, path, body, key=KEY)
        except Exception as e:  # noqa: BLE001 - every failure is counted
            self.failures.append(f"{method} {path}: {e!r}")
            return
        if status not in (200, 201):
            self.failures.append(f"{method} {path}: {status} {out}")
        else:
            self.done += 1

    def _run(self) -> None:
        i = 0
        while not self._stop.wait(1.0):
            i += 1
            step = i % 5
            if step == 0:
                self._call("PATCH", "/apisix/admin/routes/chain", {"plugins": {
                    "response-rewrite": {"headers": {"set": {"X-Gen": str(i)}}}}})
            elif step in (1, 3):
                self.last_gen = i
                self._call("PUT", "/apisix/admin/routes/churn", {
                    "uri": "/churn", "upstream": upstream_of(self.echo_up),
                    "plugins": {"response-rewrite": {"headers": {"set": {"X-Gen": str(i)}}},
                                "limit-count": {"count": 1_000_000_000, "time_window": 1 + i % 7,
                                                "key_type": "var", "key": "remote_addr"}}})
            elif step == 2:
                n = i % 10
                self._call("PUT", f"/apisix/admin/upstreams/tmp-{n}", upstream_of(self.echo_up))
                self._call("PUT", f"/apisix/admin/routes/tmp-{n}",
                           {"uri": f"/tmp/{n}", "upstream_id": f"tmp-{n}"})
            else:
                n = (i - 2) % 10
                self._call("DELETE", f"/apisix/admin/routes/tmp-{n}")
                self._call("DELETE", f"/apisix/admin/upstreams/tmp-{n}")

    def __enter__(self) -> Self:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join(15)


def roles(gw: Any) -> dict[str, int]:
    assert gw.proc is not None
    out = {"master": gw.proc.pid}
    for i, pid in enumerate(sorted(gw.worker_pids())):
        out[f"worker{i}"] = pid
    return out


def quarter_maxima(rows: list[tuple[float, int]], end: float) -> tuple[int, int]:
    """(max of the first quarter after warm-up, max of the last quarter) of ``rows``."""
    q = (end - WARMUP) / 4
    first = [r for t, r in rows if WARMUP <= t <= WARMUP + q]
    last = [r for t, r in rows if t >= end - q]
    assert first and last, f"too few samples: {rows}"
    return max(first), max(last)


@pytest.mark.timeout(SECONDS + 300)
def test_soak_mixed_traffic_and_config_churn_keep_rss_flat_and_fail_nothing(
        gateway_factory, tmp_path):
    assert SECONDS >= 4 * SAMPLE_EVERY + WARMUP, "PYLON_SOAK_SECONDS too short to judge RSS"
    echo_up, sink_up = QuietUpstream("echo", echo), QuietUpstream("sink", count)
    big_up = QuietUpstream("big", generate_body(MIB))
    port = free_port()
    try:
        gw = gateway_factory(routes(echo_up, sink_up, big_up), workers=2,
                             node=admin_node(port, admin_key=[{"key": KEY, "role": "admin"}]))
        wait_workers(gw, 2)
        procs = roles(gw)
        samples: dict[str, list[tuple[float, int]]] = {role: [] for role in procs}
        csv_path = tmp_path / "rss.csv"
        t0 = time.monotonic()
        traffic = Traffic(gw.port, plan, threads=6, fresh=2, timeout=30)
        with open(csv_path, "w", newline="") as f, traffic, Churn(port, echo_up) as churn:
            out = csv.writer(f)
            out.writerow(["elapsed_s", "role", "pid", "rss_kib"])
            next_at = t0
            while True:
                now = time.monotonic() - t0
                for role, pid in procs.items():
                    rss = rss_bytes(pid)
                    samples[role].append((now, rss))
                    out.writerow([f"{now:.1f}", role, pid, rss // 1024])
                f.flush()
                print(f"[soak {now:7.1f}s] " + " ".join(
                    f"{role}={rss_bytes(pid) / MIB:.1f}MiB" for role, pid in procs.items())
                    + f" requests={traffic.tally.sent} failed="
                      f"{traffic.tally.failed + traffic.tally.lost} admin={churn.done}",
                      flush=True)
                if now >= SECONDS:
                    break
                next_at += SAMPLE_EVERY
                time.sleep(max(0.0, next_at - time.monotonic()))
        end = time.monotonic() - t0
        tally = traffic.tally
        # the last Admin API change is live
        gen = str(churn.last_gen)
        deadline = time.monotonic() + 5
        while gw.get("/churn")[1].get("x-gen") != gen and time.monotonic() < deadline:
            time.sleep(0.05)
        live = gw.get("/churn")[1].get("x-gen") == gen
        after = roles(gw)

        print(f"\nSOAK {end:.0f}s: {tally.line('traffic')}")
        print(f"SOAK admin changes: ok={churn.done} failed={len(churn.failures)}")
        print(f"SOAK RSS (MiB) after {WARMUP:.0f}s warm-up; samples every {SAMPLE_EVERY:.0f}s "
              f"in {csv_path}")
        verdicts = {}
        for role, rows in samples.items():
            first, last = quarter_maxima(rows, end)
            allowed = first * 1.10 + 5 * MIB
            verdicts[role] = last <= allowed
            values = [r for _, r in rows]
            print(f"SOAK   {role:8s} start={values[0] / MIB:6.1f} min={min(values) / MIB:6.1f} "
                  f"max={max(values) / MIB:6.1f} first-quarter-max={first / MIB:6.1f} "
                  f"last-quarter-max={last / MIB:6.1f} allowed={allowed / MIB:6.1f} "
                  f"{'flat' if verdicts[role] else 'GREW'}")
        assert tally.failed == tally.lost == 0, tally.errors
        assert churn.failures == [], churn.failures[:10]
        assert churn.done >= SECONDS * 0.9, "about one Admin API change a second"
        assert live, "the last Admin API change went live"
        assert after == procs, "no process was replaced during the soak"
        assert all(verdicts.values()), verdicts
    finally:
        for u in (echo_up, sink_up, big_up):
            u.close()
