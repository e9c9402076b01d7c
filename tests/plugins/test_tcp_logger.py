"""tcp-logger and its batches, received by a real TCP server."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time

import pytest

from pylon.pdk.testing import Kit


class Receiver(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        self.got: list[bytes] = []
        self.lock = threading.Lock()
        outer = self

        class H(socketserver.BaseRequestHandler):
            def handle(self):
                data = b""
                self.request.settimeout(5)
                while chunk := self.request.recv(65536):
                    data += chunk
                with outer.lock:
                    outer.got.append(data)

        super().__init__(("127.0.0.1", 0), H)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def wait(self, n, timeout=8.0):
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                got = list(self.got)
            if len(got) >= n or time.monotonic() > deadline:
                return got
            time.sleep(0.05)


@pytest.fixture(scope="module")
def rx():
    r = Receiver()
    yield r
    r.shutdown()


@pytest.fixture(scope="module")
def hung():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    yield s.getsockname()[1]
    s.close()


@pytest.fixture(scope="module")
def kit(rx, hung):
    port = rx.server_address[1]
    doc = {"routes": [
        {"id": "one", "uri": "/one", "plugins": {"tcp-logger": {
            "host": "127.0.0.1", "port": port, "batch_max_size": 1}}},
        {"id": "two", "uri": "/two", "plugins": {"tcp-logger": {
            "host": "127.0.0.1", "port": port, "batch_max_size": 2,
            "log_format": {"u": "$uri"}}}},
        {"id": "hung", "uri": "/hung", "plugins": {"tcp-logger": {
            "host": "127.0.0.1", "port": hung, "batch_max_size": 1, "timeout": 500,
            # the kernel completes the TCP handshake on a socket nobody accepts from; the TLS
            # handshake then never answers, so every send really hangs until its timeout
            "tls": True}}},
    ]}
    with Kit(doc) as k:
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
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        arrays = [json.loads(g) for g in rx.got if g.startswith(b"[")]
        if arrays:
            break
        time.sleep(0.05)
    assert arrays == [[{"u": "/two", "route_id": "two"}, {"u": "/two", "route_id": "two"}]]


def test_unresponsive_receiver_does_not_slow_requests(kit):
    worst = 0.0
    for _ in range(10):
        t0 = time.monotonic()
        assert kit.get("/hung").status == 200
        worst = max(worst, time.monotonic() - t0)
    assert worst < 0.5                        # ten sends of 0.5 s each were waiting meanwhile
    deadline = time.monotonic() + 5
    while "exceeded the max_retry_count" not in kit.log():
        assert time.monotonic() < deadline, "the hung sends never timed out"
        time.sleep(0.1)
