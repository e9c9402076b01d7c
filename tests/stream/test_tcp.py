"""The stream proxy's TCP side through a real gateway: routes, balancing, retries,
half-close, backpressure, live changes (docs/stream.md)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ..harness import Gateway, dead_port
from .origins import TcpEcho, free_port, stream_node, talk


@pytest.fixture
def gateway_factory(quick_gateway_factory: Any) -> Any:
    return quick_gateway_factory


@pytest.fixture
def echoes() -> Iterator[list[TcpEcho]]:
    made: list[TcpEcho] = []
    yield made
    for e in made:
        e.close()


def echo(echoes: list[TcpEcho], name: bytes = b"") -> TcpEcho:
    e = TcpEcho(name)
    echoes.append(e)
    return e


def up(*origins: TcpEcho, **kw: Any) -> dict[str, Any]:
    return {"type": "roundrobin", "nodes": {o.addr: 1 for o in origins}, **kw}


def start(gateway_factory: Any, doc: dict[str, Any], tcp: list[Any],
          **kw: Any) -> Gateway:
    return gateway_factory(doc, node=stream_node(tcp=tcp), **kw)


def test_bytes_go_through_both_ways_and_eof_is_passed_on(gateway_factory: Any,
                                                         echoes: list[TcpEcho]) -> None:
    o = echo(echoes)
    port = free_port()
    start(gateway_factory, {"stream_routes": [{"id": 1, "upstream": up(o)}]},
          [f"127.0.0.1:{port}"])
    payload = bytes(range(256)) * 4096              # 1 MiB
    assert talk(port, payload, timeout=10) == payload


def test_connection_without_a_route_is_closed(gateway_factory: Any,
                                              echoes: list[TcpEcho]) -> None:
    o = echo(echoes)
    port, other = free_port(), free_port()
    gw = start(gateway_factory, {"stream_routes": [
        {"id": 1, "server_port": other, "upstream": up(o)}]},
        [f"127.0.0.1:{port}", f"127.0.0.1:{other}"])
    assert talk(port, b"hello") == b""
    assert o.accepted == 0
    assert talk(other, b"hello") == b"hello"
    deadline = time.monotonic() + 5
    while "not hit any route" not in gw.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "not hit any route" in gw.log()


def test_first_matching_route_in_id_order_and_remote_addr_cidr(
        gateway_factory: Any, echoes: list[TcpEcho]) -> None:
    a, b, c = echo(echoes, b"A:"), echo(echoes, b"B:"), echo(echoes, b"C:")
    port = free_port()
    start(gateway_factory, {"stream_routes": [
        {"id": "1", "remote_addr": "10.0.0.0/8", "upstream": up(a)},
        {"id": "2", "remote_addr": "127.0.0.0/24", "server_port": port, "upstream": up(b)},
        {"id": "3", "upstream": up(c)}]}, [f"127.0.0.1:{port}"])
    assert talk(port, b"x") == b"B:x"


def test_server_addr_picks_the_route(gateway_factory: Any, echoes: list[TcpEcho]) -> None:
    a, b = echo(echoes, b"A:"), echo(echoes, b"B:")
    port = free_port()
    start(gateway_factory, {"stream_routes": [
        {"id": "1", "server_addr": "127.0.0.2", "upstream": up(a)},
        {"id": "2", "server_addr": "127.0.0.1", "upstream": up(b)}]},
        [f"0.0.0.0:{port}"])
    assert talk(port, b"x") == b"B:x"
    with socket.create_connection(("127.0.0.2", port), timeout=5) as s:
        s.sendall(b"y")
        s.shutdown(socket.SHUT_WR)
        assert _read(s, 3) == b"A:y"


def test_roundrobin_over_nodes_of_an_upstream_object(gateway_factory: Any,
                                                     echoes: list[TcpEcho]) -> None:
    a, b = echo(echoes, b"A"), echo(echoes, b"B")
    port = free_port()
    start(gateway_factory, {"upstreams": [{"id": "u", **up(a, b)}],
                            "stream_routes": [{"id": 1, "upstream_id": "u"}]},
          [f"127.0.0.1:{port}"])
    got = sorted(talk(port, b"")[:1] for _ in range(4))
    assert got == [b"A", b"A", b"B", b"B"]


def test_refused_node_is_retried_on_the_next_one(gateway_factory: Any,
                                                 echoes: list[TcpEcho]) -> None:
    a = echo(echoes, b"A")
    port = free_port()
    dead = dead_port()
    start(gateway_factory, {"stream_routes": [{"id": 1, "upstream": {
        "type": "roundrobin", "nodes": {a.addr: 1, f"127.0.0.1:{dead}": 1}}}]},
        [f"127.0.0.1:{port}"])
    for _ in range(4):
        assert talk(port, b"x") == b"Ax"


def test_every_node_down_closes_the_connection(gateway_factory: Any) -> None:
    port = free_port()
    gw = start(gateway_factory, {"stream_routes": [{"id": 1, "upstream": {
        "nodes": {f"127.0.0.1:{dead_port()}": 1}, "type": "roundrobin"}}]},
        [f"127.0.0.1:{port}"])
    assert talk(port, b"x") == b""
    assert "connect to" in gw.log()


def test_half_close_keeps_the_other_direction_open(gateway_factory: Any,
                                                   echoes: list[TcpEcho]) -> None:
    o = echo(echoes)
    port = free_port()
    start(gateway_factory, {"stream_routes": [{"id": 1, "upstream": up(o)}]},
          [f"127.0.0.1:{port}"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"before-eof")
        s.shutdown(socket.SHUT_WR)         # the client is done sending, still reading
        got = b""
        while True:
            part = s.recv(100)
            if not part:
                break
            got += part
        assert got == b"before-eof"


def test_slow_reader_gets_every_byte(gateway_factory: Any, echoes: list[TcpEcho]) -> None:
    """Backpressure: the client reads slowly while 8 MiB go both ways; nothing is lost and
    the gateway does not buffer it all (it pauses reading the sender)."""
    o = echo(echoes)
    port = free_port()
    start(gateway_factory, {"stream_routes": [{"id": 1, "upstream": up(o)}]},
          [f"127.0.0.1:{port}"])
    total = 8 << 20
    import threading
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        def send() -> None:
            block = b"z" * 65536
            for _ in range(total // len(block)):
                s.sendall(block)
            s.shutdown(socket.SHUT_WR)
        t = threading.Thread(target=send)
        t.start()
        got = 0
        time.sleep(0.5)                    # let buffers fill up before reading
        while True:
            part = s.recv(65536)
            if not part:
                break
            got += len(part)
        t.join(10)
    assert got == total


def test_route_change_keeps_the_open_connection(gateway_factory: Any,
                                                echoes: list[TcpEcho]) -> None:
    a, b = echo(echoes, b"A"), echo(echoes, b"B")
    port = free_port()
    gw = start(gateway_factory, {"stream_routes": [{"id": 1, "upstream": up(a)}]},
               [f"127.0.0.1:{port}"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"1")
        assert _read(s, 2) == b"A1"
        gw.write({"stream_routes": [{"id": 1, "upstream": up(b)}]})
        deadline = time.monotonic() + 10
        while talk(port, b"")[:1] != b"B":
            assert time.monotonic() < deadline, gw.log()
            time.sleep(0.1)
        s.sendall(b"2")                        # the old connection still reaches A
        assert _read(s, 1) == b"2"
    assert b.accepted >= 1


def _read(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        part = s.recv(n - len(out))
        if not part:
            break
        out += part
    return out


def test_idle_connection_is_closed_after_the_upstream_read_timeout(
        gateway_factory: Any, echoes: list[TcpEcho]) -> None:
    o = echo(echoes)
    port = free_port()
    start(gateway_factory, {"stream_routes": [{"id": 1, "upstream": up(
        o, timeout={"connect": 1, "send": 1, "read": 1})}]}, [f"127.0.0.1:{port}"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"x")
        assert s.recv(10) == b"x"
        t0 = time.monotonic()
        assert s.recv(10) == b""               # closed by the gateway, not by us
        assert 0.5 < time.monotonic() - t0 < 4


def test_stream_access_log_has_a_line_per_connection(gateway_factory: Any,
                                                     echoes: list[TcpEcho]) -> None:
    import os
    import re
    o = echo(echoes)
    port = free_port()
    node = stream_node(tcp=[f"127.0.0.1:{port}"])
    node["nginx_config"] = {"stream": {"enable_access_log": True, "access_log_format":
                                       "$remote_addr $protocol $status $bytes_sent "
                                       "$bytes_received $upstream_addr $route_id"}}
    gw = gateway_factory({"stream_routes": [{"id": "7", "upstream": up(o)}]}, node=node)
    assert talk(port, b"12345") == b"12345"
    path = os.path.join(gw.prefix, "logs", "access_stream.log")

    def read() -> str:
        try:
            with open(path) as f:
                return f.read()
        except OSError:
            return ""
    deadline = time.monotonic() + 5
    while not read():
        assert time.monotonic() < deadline, gw.log()
        time.sleep(0.05)
    line = read().splitlines()[0]
    assert re.fullmatch(rf"127\.0\.0\.1 TCP 200 5 5 {o.addr} 7", line), line


def test_active_tcp_health_check_takes_a_dead_node_out(gateway_factory: Any,
                                                       echoes: list[TcpEcho]) -> None:
    """The stream route's inline upstream is checked by the master like an HTTP one: once
    the dead node is found down, every connection reaches the live one (no retries)."""
    a = echo(echoes, b"A")
    port = free_port()
    gw = start(gateway_factory, {"stream_routes": [{"id": 1, "upstream": {
        "type": "roundrobin", "retries": 0,
        "nodes": {a.addr: 1, f"127.0.0.1:{dead_port()}": 1},
        "checks": {"active": {"type": "tcp",
                              "healthy": {"interval": 1, "successes": 1},
                              "unhealthy": {"interval": 1, "tcp_failures": 1}}}}}]},
        [f"127.0.0.1:{port}"])
    deadline = time.monotonic() + 10
    while True:
        got = [talk(port, b"x") for _ in range(6)]
        if got == [b"Ax"] * 6:
            break
        assert time.monotonic() < deadline, (got, gw.log()[-3000:])
        time.sleep(0.3)
