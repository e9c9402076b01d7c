"""tcp-logger and its batches, received by a real TCP server."""

from __future__ import annotations

import json
import time

import pytest

from pylon.pdk.testing import Kit

from .log_receivers import HungListener, TcpReceiver, wait_for


@pytest.fixture(scope="module")
def rx():
    with TcpReceiver() as r:
        yield r


@pytest.fixture(scope="module")
def kit(rx):
    port = rx.port
    hung = HungListener()
    doc = {"routes": [
        {"id": "one", "uri": "/one", "plugins": {"tcp-logger": {
            "host": "127.0.0.1", "port": port, "batch_max_size": 1}}},
        {"id": "two", "uri": "/two", "plugins": {"tcp-logger": {
            "host": "127.0.0.1", "port": port, "batch_max_size": 2,
            "log_format": {"u": "$uri"}}}},
        {"id": "hung", "uri": "/hung", "plugins": {"tcp-logger": {
            "host": "127.0.0.1", "port": hung.port, "batch_max_size": 1, "timeout": 500,
            # the kernel completes the TCP handshake on a socket nobody accepts from; the TLS
            # handshake then never answers, so every send really hangs until its timeout
            "tls": True}}},
    ]}
    with hung, Kit(doc) as k:
        yield k


def test_single_entry_batch_is_one_json_object(kit, rx):
    before = len(rx.got)
    kit.get("/one?x=1")
    got = rx.wait(before + 1)
    e = json.loads(got[before])
    assert e["route_id"] == "one" and e["request"]["querystring"] == {"x": "1"}
    assert e["response"]["status"] == 200


def test_larger_batch_is_a_json_array(kit, rx):
    kit.get("/two")
    kit.get("/two")
    arrays = wait_for(lambda: [json.loads(g) for g in rx.wait(0) if g.startswith(b"[")], bool)
    assert arrays == [[{"u": "/two", "route_id": "two"}, {"u": "/two", "route_id": "two"}]]


def test_unresponsive_receiver_does_not_slow_requests(kit):
    took = []
    for _ in range(10):
        t0 = time.monotonic()
        assert kit.get("/hung").status == 200
        took.append(time.monotonic() - t0)
    # ten sends of 0.5 s each were waiting meanwhile: a request that waited for one would take
    # >= 0.5 s, and all ten >= 5 s (median and sum, not the worst: a loaded CI machine may
    # delay any one request by itself)
    assert sorted(took)[5] < 0.25 and sum(took) < 2.5, took
    deadline = time.monotonic() + 5
    while "exceeded the max_retry_count" not in kit.log():
        assert time.monotonic() < deadline, "the hung sends never timed out"
        time.sleep(0.1)
