"""udp-logger, received by a real UDP socket."""

from __future__ import annotations

import json
import time

import pytest

from pylon.pdk.testing import Kit

from .log_receivers import UdpReceiver


@pytest.fixture(scope="module")
def rx():
    with UdpReceiver() as r:
        yield r


@pytest.fixture(scope="module")
def kit(rx):
    port = rx.port
    doc = {"routes": [
        {"id": "one", "uri": "/one", "plugins": {"udp-logger": {
            "host": "127.0.0.1", "port": port, "batch_max_size": 1}}},
        {"id": "idle", "uri": "/idle", "plugins": {"udp-logger": {
            "host": "127.0.0.1", "port": port, "batch_max_size": 50, "inactive_timeout": 1,
            "log_format": {"m": "$request_method", "s": "$status"}}}},
    ]}
    with Kit(doc) as k:
        yield k


def test_entry_arrives_as_one_datagram(kit, rx):
    kit.get("/one", headers={"X-A": "b"})
    e = json.loads(rx.recv())
    assert e["route_id"] == "one" and e["request"]["headers"]["x-a"] == "b"
    assert e["response"]["status"] == 200 and e["upstream"] == kit.upstream.addr


def test_partial_batch_is_sent_after_inactive_timeout(kit, rx):
    t0 = time.monotonic()
    kit.get("/idle")
    kit.post("/idle", body="x")
    got = json.loads(rx.recv())
    assert time.monotonic() - t0 >= 0.9
    assert got == [{"m": "GET", "s": "200", "route_id": "idle"},
                   {"m": "POST", "s": "200", "route_id": "idle"}]
