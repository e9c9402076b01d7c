"""Slowloris and slow clients against the master's own HTTP servers -- the Admin API, the
Control API and the Prometheus export -- through a real node (issue 13, defect 3).

Each server bounds its connections as the proxy port does: a whole request head within
``client_header_timeout`` (else 408 and close), ``client_body_timeout`` between two reads of
a body, ``keepalive_timeout`` for an idle keep-alive connection, and at most
``max_connections`` open, the connection that waited longest for its client closed to let
a new one in.  So half-open connections cannot lock a real client out."""

from __future__ import annotations

import http.client
import re
import select
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pylon.errors import ConfigError
from pylon.settings import load_settings
from tests.harness import Gateway, free_port

KEY = "slowloris-test-admin-key-0123456789"
METRICS = "/apisix/prometheus/metrics"


def node(aport: int, cport: int, mport: int, **limits: Any) -> dict[str, Any]:
    """Admin API, Control API and metrics export on the given ports; ``limits`` in both
    ``deployment.admin`` and ``apisix.control`` (the export server goes by the latter)."""
    return {"pylon": {"enable_admin": True, "enable_control": True,
                      "control": {"ip": "127.0.0.1", "port": cport, **limits}},
            "deployment": {"admin": {"admin_listen": {"ip": "127.0.0.1", "port": aport},
                                     "admin_key": [{"name": "ops", "key": KEY}], **limits}},
            "plugin_attr": {"prometheus": {"export_addr": {"ip": "127.0.0.1",
                                                           "port": mport}}}}


def real_request(port: int, path: str, key: str | None = None) -> tuple[int, float]:
    """A well-behaved client: (status, seconds from connect to the whole answer)."""
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", path, headers={"X-API-KEY": key} if key else {})
        r = c.getresponse()
        r.read()
        return r.status, time.monotonic() - t0
    finally:
        c.close()


def closed_by_peer(s: socket.socket, wait: float = 0.0) -> bool:
    """Whether the server closed ``s`` (EOF or reset) within ``wait`` seconds."""
    if not select.select([s], [], [], wait)[0]:
        return False
    try:
        return s.recv(65536) == b""
    except OSError:
        return True


def read_until_closed(s: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes (bounded); (bytes, seconds taken)."""
    t0 = time.monotonic()
    got = b""
    while time.monotonic() - t0 < limit:
        if not select.select([s], [], [], 0.05)[0]:
            continue
        try:
            chunk = s.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        got += chunk
    else:
        raise AssertionError(f"not closed within {limit} s; got {got[:200]!r}")
    return got, time.monotonic() - t0


# ------------------------------------------------------------------ slowloris, defaults
def test_300_slowloris_connections_do_not_lock_a_real_client_out(tmp_path: Any) -> None:
    """Default limits (max_connections 256): 300 half-open connections on each of the three
    ports, each sending a header byte every second; then a real request on each gets its
    answer within 2 s, and the longest-waiting slow connections were the ones closed."""
    aport, cport, mport = free_port(), free_port(), free_port()
    gw = Gateway(str(tmp_path), {}, node=node(aport, cport, mport)).start()
    attackers: dict[int, list[socket.socket]] = {aport: [], cport: [], mport: []}
    try:
        for port, socks in attackers.items():
            for _ in range(300):
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.setblocking(False)
                try:
                    s.send(b"GET /apisix/admin/routes HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                except OSError:
                    pass
                socks.append(s)
        for _ in range(3):                          # a header byte a second, 3 times
            time.sleep(1.0)
            for socks in attackers.values():
                for s in socks:
                    try:
                        s.send(b"a")
                    except OSError:
                        pass
        for port, path, key in ((aport, "/apisix/admin/routes", KEY),
                                (cport, "/v1/routes", None), (mport, METRICS, None)):
            try:
                status, took = real_request(port, path, key)
            except (OSError, http.client.HTTPException) as e:
                raise AssertionError(f"port {port} {path}: locked out ({e!r})") from None
            assert status == 200 and took < 2.0, (port, path, status, took)
            # room was made by closing the slow connections waiting longest: the 44 beyond
            # the limit pushed out 44 of the first ones, the real client one more (the
            # kernel's accept queue may reorder a few of them)
            closed = [i for i, s in enumerate(attackers[port]) if closed_by_peer(s)]
            assert len(closed) >= 45 and closed[0] == 0 and 299 not in closed, (port, closed)
    finally:
        for socks in attackers.values():
            for s in socks:
                s.close()
        gw.stop()


# ------------------------------------------------------------------ small limits
@pytest.fixture(scope="module")
def small(tmp_path_factory: Any) -> Iterator[tuple[Gateway, int, int, int]]:
    """A node whose three servers have 1 s timeouts and room for 4 connections."""
    aport, cport, mport = free_port(), free_port(), free_port()
    limits = {"client_header_timeout": "1s", "client_body_timeout": 1,
              "keepalive_timeout": "1000ms", "max_connections": 4}
    gw = Gateway(str(tmp_path_factory.mktemp("small")), {},
                 node=node(aport, cport, mport, **limits)).start()
    try:
        yield gw, aport, cport, mport
    finally:
        gw.stop()


def test_when_full_the_connection_waiting_longest_makes_room(small: Any) -> None:
    gw, aport, _, _ = small
    time.sleep(0.3)                  # connections of other tests are gone
    silent = []
    for _ in range(4):
        silent.append(socket.create_connection(("127.0.0.1", aport), timeout=5))
        time.sleep(0.03)
    port0 = silent[0].getsockname()[1]
    try:
        status, took = real_request(aport, "/apisix/admin/routes", KEY)
        assert status == 200 and took < 1.0
        closed = [closed_by_peer(silent[0], 0.5)] + [closed_by_peer(s) for s in silent[1:]]
        assert closed == [True, False, False, False], (closed, gw.log()[-2000:])
    finally:
        for s in silent:
            s.close()
    assert "Admin API: 4 connections open (max_connections); closing the one that waited " \
        f"longest for its client (127.0.0.1:{port0})" in gw.log()


@pytest.mark.parametrize("which", ["admin", "control", "metrics"])
def test_a_head_slower_than_client_header_timeout_gets_408_and_is_closed(
        small: Any, which: str) -> None:
    _, aport, cport, mport = small
    port = {"admin": aport, "control": cport, "metrics": mport}[which]
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        t0 = time.monotonic()
        s.sendall(b"GET /v1/routes HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        got = b""
        for _ in range(12):                        # a byte every 0.25 s, for 3 s at most
            if select.select([s], [], [], 0.25)[0]:
                got = s.recv(65536)
                break
            s.sendall(b"a")
        took = time.monotonic() - t0
        assert got.startswith(b"HTTP/1.1 408 "), got
        assert 0.8 < took < 2.0, took
        assert b'{"error_msg":"408 Request Timeout"}' in got
        s.shutdown(socket.SHUT_WR)                # (else it lingers 2 s for more input)
        rest, _ = read_until_closed(s, 4.0)       # and it closes
        assert rest == b""
    finally:
        s.close()


def test_a_body_pausing_longer_than_client_body_timeout_gets_408(small: Any) -> None:
    _, aport, _, _ = small
    s = socket.create_connection(("127.0.0.1", aport), timeout=5)
    try:
        s.sendall(b"PUT /apisix/admin/routes/1 HTTP/1.1\r\nHost: x\r\nX-API-KEY: " +
                  KEY.encode() + b"\r\nContent-Length: 40\r\n\r\n{\"uri\":")
        t0 = time.monotonic()
        assert select.select([s], [], [], 3.0)[0]
        took = time.monotonic() - t0
        got = s.recv(65536)
        assert got.startswith(b"HTTP/1.1 408 "), got
        assert 0.8 < took < 2.0, took
        s.shutdown(socket.SHUT_WR)
        assert read_until_closed(s, 4.0)[0] == b""
    finally:
        s.close()


@pytest.mark.parametrize("which", ["admin", "control"])
def test_idle_and_silent_connections_are_closed_after_their_timeouts(small: Any,
                                                                     which: str) -> None:
    _, aport, cport, _ = small
    port, path = (aport, "/apisix/admin/routes") if which == "admin" else (cport, "/v1/routes")
    # a keep-alive connection closes keepalive_timeout after its last answer
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    silent = socket.create_connection(("127.0.0.1", port), timeout=5)
    t_silent = time.monotonic()
    try:
        c.request("GET", path, headers={"X-API-KEY": KEY})
        r = c.getresponse()
        r.read()
        assert r.status == 200 and r.getheader("Connection") == "keep-alive"
        assert c.sock is not None
        got, took = read_until_closed(c.sock, 4.0)
        assert got == b"" and 0.7 < took < 2.0, took
        # a connection that never sends anything closes without an answer
        got, _ = read_until_closed(silent, 4.0)
        assert got == b"" and 0.7 < time.monotonic() - t_silent < 2.5
    finally:
        c.close()
        silent.close()


def test_pipelined_requests_are_answered_in_order_with_timeouts_in_place(small: Any) -> None:
    """Reading pauses while a request is answered; pipelined ones still all get answers,
    and a bad one behind them is answered last, then the connection closes."""
    _, aport, _, _ = small
    s = socket.create_connection(("127.0.0.1", aport), timeout=5)
    try:
        one = (b"GET /apisix/admin/routes HTTP/1.1\r\nHost: x\r\nX-API-KEY: " +
               KEY.encode() + b"\r\n\r\n")
        s.sendall(one * 3 + b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        got, _ = read_until_closed(s, 4.0)
        statuses = [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", got)]
        assert statuses == [200, 200, 200, 400], got
    finally:
        s.close()


# ------------------------------------------------------------------ settings
def _settings(admin: dict[str, Any] | None = None,
              control: dict[str, Any] | None = None) -> Any:
    data = {"apisix": {"control": control or {}}, "deployment": {"admin": admin or {}}}
    return load_settings(data, "/srv/pylon", "/srv/pylon/conf/config.yaml")


def test_server_limits_settings_defaults_and_errors() -> None:
    s, warnings = _settings()
    assert warnings == []
    for lim in (s.admin_limits, s.control_limits):
        assert (lim.header_timeout, lim.body_timeout, lim.idle_timeout,
                lim.max_connections) == (10.0, 10.0, 60.0, 256)
    s, warnings = _settings({"client_header_timeout": "2s", "max_connections": 10},
                            {"keepalive_timeout": 0, "client_body_timeout": "500ms"})
    assert warnings == []
    assert (s.admin_limits.header_timeout, s.admin_limits.max_connections) == (2.0, 10)
    assert (s.control_limits.idle_timeout, s.control_limits.body_timeout) == (0.0, 0.5)
    with pytest.raises(ConfigError) as e:
        _settings({"client_header_timeout": "soon"})
    assert e.value.path == "deployment.admin.client_header_timeout"
    with pytest.raises(ConfigError) as e:
        _settings(control={"client_header_timeout": 0})
    assert e.value.path == "apisix.control.client_header_timeout"
    with pytest.raises(ConfigError) as e:
        _settings({"max_connections": 0})
    assert e.value.path == "deployment.admin.max_connections"
