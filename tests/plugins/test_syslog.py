"""syslog: RFC 5424 messages over UDP and TCP to real sockets."""

from __future__ import annotations

import json
import re

import pytest

from pylon.pdk.testing import Kit

from .log_receivers import TcpReceiver, UdpReceiver

LINE = re.compile(rb"^<46>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \S+ apisix \d+ - - (.*)$")


@pytest.fixture(scope="module")
def udp():
    with UdpReceiver() as r:
        yield r


@pytest.fixture(scope="module")
def tcp():
    with TcpReceiver() as r:
        yield r


@pytest.fixture(scope="module")
def kit(udp, tcp):
    doc = {"routes": [
        {"id": "u", "uri": "/u", "plugins": {"syslog": {
            "host": "127.0.0.1", "port": udp.port, "sock_type": "udp",
            "batch_max_size": 1}}},
        {"id": "t", "uri": "/t", "plugins": {"syslog": {
            "host": "127.0.0.1", "port": tcp.port, "batch_max_size": 2,
            "log_format": {"u": "$uri"}}}},
    ]}
    with Kit(doc) as k:
        yield k


def test_udp_message_is_rfc5424_with_json_entry(kit, udp):
    kit.get("/u")
    m = LINE.match(udp.recv().rstrip(b"\n"))
    assert m, "not an RFC 5424 line"
    e = json.loads(m.group(1))
    assert e["route_id"] == "u" and e["response"]["status"] == 200


def test_tcp_batch_is_one_line_per_entry(kit, tcp):
    kit.get("/t")
    kit.get("/t")
    got = tcp.wait(1)                  # one connection, one write for the batch
    assert len(got) == 1
    lines = got[0].splitlines()
    assert len(lines) == 2
    assert [json.loads(LINE.match(x).group(1)) for x in lines] == [
        {"u": "/t", "route_id": "t"}, {"u": "/t", "route_id": "t"}]
