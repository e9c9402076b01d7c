"""limit-req through a real gateway: rate, burst (really delayed), nodelay, rejection."""

from __future__ import annotations

import threading
import time

import pytest

from pylon.pdk.testing import Kit

DOC = {"routes": [
    {"id": "d", "uri": "/delay", "plugins": {"limit-req": {
        "rate": 2, "burst": 2, "key": "remote_addr", "rejected_code": 429}}},
    {"id": "n", "uri": "/nodelay", "plugins": {"limit-req": {
        "rate": 1, "burst": 1, "key": "remote_addr", "nodelay": True,
        "rejected_msg": "too many"}}},
    {"id": "c", "uri": "/combo", "plugins": {"limit-req": {
        "rate": 1, "burst": 0, "key": "$http_user $arg_x", "key_type": "var_combination"}}},
]}


@pytest.fixture(scope="module")
def kit():
    with Kit(DOC, workers=2) as k:
        yield k


def test_burst_requests_are_delayed_not_refused_and_beyond_is_rejected(kit):
    out: list[tuple[int, float]] = []
    lock = threading.Lock()
    t0 = time.monotonic()

    def one() -> None:
        s = kit.get("/delay").status
        with lock:
            out.append((s, time.monotonic() - t0))

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
        time.sleep(0.02)
    for t in threads:
        t.join(10)
    ok = sorted(d for s, d in out if s == 200)
    assert sorted(s for s, _ in out) == [200, 200, 200, 429]
    # rate 2/s: the first goes at once, the burst ones wait ~0.5 s and ~1 s
    assert ok[0] < 0.3 and 0.35 < ok[1] < 0.9 and 0.8 < ok[2] < 1.5


def test_a_delayed_request_does_not_hold_up_other_requests(kit):
    kit.get("/combo?x=slow", headers={"User": "a"})
    t0 = time.monotonic()
    assert kit.get("/nodelay?fresh=1", headers={"X-Forwarded-For": "x"}).status in (200, 503)
    assert time.monotonic() - t0 < 0.3


def test_nodelay_answers_burst_at_once_and_rejects_with_message(kit):
    time.sleep(1.1)
    t0 = time.monotonic()
    rs = [kit.get("/nodelay") for _ in range(3)]
    assert [r.status for r in rs] == [200, 200, 503]
    assert rs[2].json() == {"error_msg": "too many"}
    assert time.monotonic() - t0 < 0.5


def test_var_combination_keys_are_limited_separately(kit):
    assert kit.get("/combo?x=1", headers={"User": "u"}).status == 200
    assert kit.get("/combo?x=1", headers={"User": "u"}).status == 503
    assert kit.get("/combo?x=2", headers={"User": "u"}).status == 200
