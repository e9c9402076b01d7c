"""Stream plugins on stream routes through a real gateway: ip-restriction, limit-conn,
mqtt-proxy (real mosquitto brokers, hand-built CONNECT frames), syslog, prometheus."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from ..plugins.log_receivers import TcpReceiver, wait_for
from .origins import TcpEcho, free_port, stream_node, talk


@pytest.fixture
def gateway_factory(quick_gateway_factory: Any) -> Any:
    return quick_gateway_factory


@pytest.fixture
def origin() -> Iterator[TcpEcho]:
    o = TcpEcho()
    yield o
    o.close()


def route(o: TcpEcho, plugins: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"stream_routes": [{"id": "1", "plugins": plugins, "upstream": {
        "type": "roundrobin", "nodes": {o.addr: 1}}, **kw}]}


def test_ip_restriction_closes_a_blacklisted_client(gateway_factory: Any,
                                                   origin: TcpEcho) -> None:
    port = free_port()
    gateway_factory(route(origin, {"ip-restriction": {"blacklist": ["127.0.0.0/24"]}}),
                    node=stream_node(tcp=[f"127.0.0.1:{port}"]))
    assert talk(port, b"hello") == b""
    assert origin.accepted == 0


def test_ip_restriction_lets_a_whitelisted_client_through(gateway_factory: Any,
                                                         origin: TcpEcho) -> None:
    port = free_port()
    gateway_factory(route(origin, {"ip-restriction": {"whitelist": ["127.0.0.1"]}}),
                    node=stream_node(tcp=[f"127.0.0.1:{port}"]))
    assert talk(port, b"hello") == b"hello"


def test_limit_conn_refuses_a_second_connection_while_the_first_is_open(
        gateway_factory: Any, origin: TcpEcho) -> None:
    port = free_port()
    gateway_factory(route(origin, {"limit-conn": {
        "conn": 1, "burst": 0, "default_conn_delay": 0.1, "key": "remote_addr"}}),
        node=stream_node(tcp=[f"127.0.0.1:{port}"]))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as first:
        first.sendall(b"a")
        assert first.recv(10) == b"a"
        assert talk(port, b"b") == b""              # over the limit: closed
    # the first one ended: its count is given back
    got = wait_for(lambda: talk(port, b"c"), lambda r: r == b"c", timeout=5)
    assert got == b"c"


# ------------------------------------------------------------------------ MQTT
class Mosquitto:
    def __init__(self) -> None:
        self.port = free_port()
        self.tmp = tempfile.mkdtemp(prefix="pylon-mqtt-")
        conf = os.path.join(self.tmp, "m.conf")
        self.log = os.path.join(self.tmp, "m.log")
        os.chmod(self.tmp, 0o777)           # mosquitto may drop root: it writes its log here
        with open(conf, "w") as f:
            f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                    f"log_dest file {self.log}\nlog_type all\n")
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([binary, "-c", conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "mosquitto did not start"
                time.sleep(0.05)

    def clients(self) -> list[str]:
        """The client ids of the connections the broker accepted (its log)."""
        import re
        try:
            with open(self.log) as f:
                text = f.read()
        except OSError:
            return []
        return re.findall(r"New client connected from \S+ as (\S+)", text)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)
        shutil.rmtree(self.tmp, ignore_errors=True)


def connect_frame(client_id: str, level: int = 4, name: bytes = b"MQTT") -> bytes:
    """An MQTT CONNECT (clean session, keep-alive 60 s), built by hand."""
    cid = client_id.encode()
    var = len(name).to_bytes(2, "big") + name + bytes([level, 0x02]) + (60).to_bytes(2, "big")
    if level == 5:
        var += b"\x00"                            # no properties
    body = var + len(cid).to_bytes(2, "big") + cid
    return bytes([0x10, len(body)]) + body


def connack(port: int, frame: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(frame)
        try:
            return s.recv(4)
        except (ConnectionResetError, TimeoutError):
            return b""


@pytest.mark.skipif(shutil.which("mosquitto") is None and
                    not os.path.exists("/usr/sbin/mosquitto"),
                    reason="mosquitto not installed")
def test_mqtt_proxy_routes_a_client_id_to_the_same_broker(gateway_factory: Any) -> None:
    brokers = [Mosquitto(), Mosquitto()]
    try:
        port = free_port()
        gateway_factory({"stream_routes": [{"id": "1", "plugins": {"mqtt-proxy": {
            "protocol_name": "MQTT", "protocol_level": 4}}, "upstream": {
            "type": "chash", "key": "mqtt_client_id",
            "nodes": {f"127.0.0.1:{b.port}": 1 for b in brokers}}}]},
            node=stream_node(tcp=[f"127.0.0.1:{port}"]))
        for cid in ("sensor-1", "sensor-2", "sensor-3", "sensor-4"):
            for _ in range(3):
                assert connack(port, connect_frame(cid)) == b"\x20\x02\x00\x00"
        # each id reached one broker only, three times; both brokers got some ids
        ids = {f"sensor-{i}" for i in range(1, 5)}
        per = wait_for(lambda: [b.clients() for b in brokers],      # logs written late
                       lambda got: sum(map(len, got)) >= 12)
        for cid in ids:
            counts = [p.count(cid) for p in per]
            assert sorted(counts) == [0, 3], (cid, per)
        assert all(per), per
        # the wrong protocol level: closed before the broker sees it
        assert connack(port, connect_frame("x", level=5)) == b""
    finally:
        for b in brokers:
            b.close()


# ------------------------------------------------------------------------ loggers, metrics
def test_syslog_sends_one_entry_per_connection(gateway_factory: Any, origin: TcpEcho) -> None:
    rx = TcpReceiver()
    try:
        port = free_port()
        gateway_factory(route(origin, {"syslog": {
            "host": "127.0.0.1", "port": rx.port, "batch_max_size": 1}}),
            node=stream_node(tcp=[f"127.0.0.1:{port}"]))
        assert talk(port, b"12345") == b"12345"
        got = rx.wait(1)
        assert got, "no syslog message"
        msg = got[0].decode()
        assert msg.startswith("<46>1 ")
        assert '"route_id": "1"' in msg and '"bytes_received": 5' in msg
        assert f'"upstream": "{origin.addr}"' in msg
    finally:
        rx.close()


def test_prometheus_counts_stream_connections_per_route(gateway_factory: Any,
                                                        origin: TcpEcho) -> None:
    port, mport = free_port(), free_port()
    gateway_factory(route(origin, {"prometheus": {}}),
                    node={**stream_node(tcp=[f"127.0.0.1:{port}"]), "plugin_attr": {
                        "prometheus": {"export_addr": {"ip": "127.0.0.1", "port": mport}}}})
    for _ in range(3):
        assert talk(port, b"x") == b"x"

    def scrape() -> str:
        url = f"http://127.0.0.1:{mport}/apisix/prometheus/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read().decode()
    text = wait_for(scrape, lambda t: 'apisix_stream_connection_total{route="1"} 3' in t)
    assert 'apisix_stream_connection_total{route="1"} 3' in text
