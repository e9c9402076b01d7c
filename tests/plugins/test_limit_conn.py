"""limit-conn through a real gateway: requests in flight per key across two workers, burst
delayed, beyond rejected, counts given back when responses complete -- and a killed
worker's in-flight requests stop counting."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import threading
import time

import pytest

from pylon.pdk.testing import Kit

DOC = {"routes": [
    {"id": "c", "uri": "/c", "plugins": {"limit-conn": {
        "conn": 2, "burst": 1, "default_conn_delay": 0.3, "key": "http_user",
        "rejected_code": 429, "rejected_msg": "busy"}}},
]}


@pytest.fixture(scope="module")
def kit():
    with Kit(DOC, workers=2) as k:
        yield k


def concurrent(kit, n: int, user: str, delay: float) -> list[tuple[int, float]]:
    out: list[tuple[int, float]] = []
    lock = threading.Lock()
    t0 = time.monotonic()

    def one() -> None:
        r = kit.get("/c", headers={"User": user, "X-Echo-Delay": str(delay)})
        with lock:
            out.append((r.status, time.monotonic() - t0))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
        time.sleep(0.03)
    for t in threads:
        t.join(20)
    return out


def test_conn_in_flight_then_burst_delayed_then_rejected(kit):
    out = concurrent(kit, 4, "a", 1.0)
    statuses = sorted(s for s, _ in out)
    assert statuses == [200, 200, 200, 429]
    # the burst request waited default_conn_delay before going upstream
    ok_times = sorted(t for s, t in out if s == 200)
    assert ok_times[-1] > 1.25


def test_counts_are_given_back_when_responses_complete(kit):
    concurrent(kit, 3, "b", 0.2)
    assert sorted(s for s, _ in concurrent(kit, 3, "b", 0.2)) == [200, 200, 200]


def test_keys_are_independent(kit):
    out = concurrent(kit, 3, "c", 0.5) + concurrent(kit, 2, "d", 0.1)
    assert [s for s, _ in out].count(429) == 0


def test_a_killed_workers_requests_stop_counting():
    doc = {"routes": [{"id": "k", "uri": "/k", "plugins": {"limit-conn": {
        "conn": 2, "burst": 0, "default_conn_delay": 0.1, "key": "http_user"}}}]}
    with Kit(doc, workers=1) as k:
        held = [threading.Thread(target=lambda: _quiet(k)) for _ in range(2)]
        for t in held:
            t.start()
        time.sleep(0.5)                       # both in flight, holding the two places
        assert k.get("/k", headers={"User": "u"}).status == 503
        pid = int(subprocess.run(["pgrep", "-P", str(k.proc.pid)], capture_output=True, check=False,
                                 text=True).stdout.split()[0])
        os.kill(pid, signal.SIGKILL)
        for t in held:
            t.join(15)
        deadline = time.monotonic() + 5
        while True:                          # the new worker, after its first sweep
            try:
                if k.get("/k", headers={"User": "u"}, timeout=3).status == 200:
                    break
            except (OSError, http.client.HTTPException):
                pass
            assert time.monotonic() < deadline, "the dead worker's counts never went away"
            time.sleep(0.2)


def _quiet(k) -> None:
    try:
        k.get("/k", headers={"User": "u", "X-Echo-Delay": "5"}, timeout=10)
    except (OSError, http.client.HTTPException):
        pass
