"""Master and workers: several workers serve, a dead worker is replaced, reloads and
restarts lose no request, shutdown drains in-flight requests, one master per prefix."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.harness import route_doc

from .loadgen import Load


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(cond, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_workers(gw, n: int, exclude: set[int] = frozenset(), timeout: float = 15.0):
    """Wait until the master has exactly ``n`` live workers, none of them in ``exclude``."""
    def ok():
        pids = [p for p in gw.worker_pids() if alive(p)]
        return pids if len(pids) == n and not set(pids) & set(exclude) else None
    return wait_until(ok, timeout, f"{n} workers not in {sorted(exclude)}")


def cli(gw, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pylon.cli", *args, "-p", gw.prefix],
                          capture_output=True, check=False, text=True, timeout=timeout)


def slow(seconds: float):
    def behaviour(h, body):
        time.sleep(seconds)
        try:
            h.send_response(200)
            h.send_header("Content-Length", "4")
            h.end_headers()
            h.wfile.write(b"slow")
        except OSError:                       # the gateway gave up on us: expected here
            h.close_connection = True
    return behaviour


def test_two_workers_both_serve(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), workers=2,
                         http={"access_log_format": "$pid $status"})
    pids = wait_workers(gw, 2)
    for _ in range(40):                       # new connections: the kernel spreads them
        assert gw.get("/x")[0] == 200
    lines = wait_until(lambda: len(gw.access_log()) >= 40 and gw.access_log(), 5,
                       "access log lines")
    served = {int(line.split()[0]) for line in lines}
    assert served == set(pids)


def test_killed_worker_is_replaced_and_requests_keep_succeeding(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), workers=2)
    pids = wait_workers(gw, 2)
    victim = pids[0]
    os.kill(victim, signal.SIGKILL)
    # connections hashed to the dead worker's slot wait on its socket for the replacement
    for _ in range(30):
        assert gw.get("/x", timeout=15)[0] == 200
    new = wait_workers(gw, 2, exclude={victim})
    assert pids[1] in new
    assert "exited with -9; starting a new one" in gw.log()
    with Load(gw.port, "/x", fresh=2, keepalive=1) as load:
        load.wait_for(30)
    assert load.failures == [], load.summary()


def test_sighup_replaces_every_worker_without_failing_a_request(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), workers=2)
    old = wait_workers(gw, 2)
    t0 = time.monotonic()
    with Load(gw.port, "/x", fresh=2, keepalive=2) as load:
        load.wait_for(20)
        time.sleep(0.8)
        gw.signal(signal.SIGHUP)
        wait_until(lambda: "reload done" in gw.log(), 15, "reload done")
        new = wait_workers(gw, 2, exclude=set(old))
        time.sleep(max(0.5, 4 - (time.monotonic() - t0)))
    assert load.failures == [], load.summary()
    assert load.ok > 100, load.summary()
    assert set(new).isdisjoint(old)
    assert gw.proc.poll() is None


def test_sighup_rereads_the_node_config(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), workers=1)
    wait_workers(gw, 1)
    import yaml
    cfg = dict(gw.node_cfg)
    cfg["pylon"] = dict(cfg["pylon"], workers=2)
    with open(gw.conf_path, "w") as f:
        yaml.safe_dump(cfg, f)
    gw.signal(signal.SIGHUP)
    wait_until(lambda: "reload done: 2 workers" in gw.log(), 15, "reload done")
    wait_workers(gw, 2)
    assert gw.get("/x")[0] == 200


def test_sighup_with_an_invalid_node_config_keeps_running(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), workers=1)
    old = wait_workers(gw, 1)
    with open(gw.conf_path, "a") as f:
        f.write("nginx_config: [not, a, mapping\n")
    gw.signal(signal.SIGHUP)
    wait_until(lambda: "reload refused" in gw.log(), 10, "reload refused")
    assert gw.worker_pids() == old
    assert gw.get("/x")[0] == 200


def test_pylon_reload_command_replaces_workers_under_load(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), workers=1)
    old = wait_workers(gw, 1)
    with Load(gw.port, "/x", fresh=2, keepalive=1) as load:
        load.wait_for(20)
        time.sleep(0.5)
        r = cli(gw, "reload")
        assert r.returncode == 0, r.stderr
        assert f"pid {gw.proc.pid}" in r.stdout
        wait_until(lambda: "reload done" in gw.log(), 15, "reload done")
        wait_workers(gw, 1, exclude=set(old))
        time.sleep(0.3)
    assert load.failures == [], load.summary()


def test_sigterm_finishes_the_request_in_flight_refuses_new_ones_and_exits_0(
        gateway_factory, upstream_factory):
    up = upstream_factory("slow", behaviour=slow(1.5))
    gw = gateway_factory(route_doc([up]), workers=1)
    result: dict = {}

    def client():
        try:
            result["r"] = gw.get("/slow", timeout=10)
        except Exception as e:  # noqa: BLE001
            result["e"] = e

    t = threading.Thread(target=client)
    t.start()
    wait_until(lambda: up.requests, 5, "the upstream to see the request")
    t_sig = time.monotonic()
    gw.signal(signal.SIGTERM)

    def refused():
        try:
            socket.create_connection(("127.0.0.1", gw.port), timeout=0.5).close()
            return False
        except ConnectionRefusedError:
            return True
    wait_until(refused, 1.0, "new connections to be refused")
    assert t.is_alive(), "the refusal was checked while the slow request was in flight"
    t.join(10)
    assert "e" not in result, result
    status, headers, body = result["r"]
    assert (status, body) == (200, b"slow")
    assert headers.get("connection") == "close"
    assert gw.proc.wait(10) == 0
    assert time.monotonic() - t_sig < 5
    assert "stopped" in gw.log()
    assert not os.path.exists(os.path.join(gw.prefix, "logs", "pylon.pid"))


def test_shutdown_cuts_requests_at_worker_shutdown_timeout(gateway_factory, upstream_factory):
    up = upstream_factory("stuck", behaviour=slow(8))
    gw = gateway_factory(route_doc([up]), workers=1,
                         node={"nginx_config": {"worker_shutdown_timeout": "1s"}})
    result: dict = {}

    def client():
        try:
            result["r"] = gw.get("/stuck", timeout=15)
        except Exception as e:  # noqa: BLE001
            result["e"] = e

    t = threading.Thread(target=client)
    t.start()
    wait_until(lambda: up.requests, 5, "the upstream to see the request")
    t0 = time.monotonic()
    gw.signal(signal.SIGTERM)
    assert gw.proc.wait(10) == 0
    assert time.monotonic() - t0 < 4, "the master waited longer than the drain deadline"
    t.join(5)
    assert "e" in result, "the request was cut at the deadline"


def test_idle_keepalive_connections_do_not_delay_shutdown(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), workers=1)
    c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
    c.request("GET", "/x")
    r = c.getresponse()
    r.read()
    assert r.status == 200 and not r.will_close
    s = c.sock
    t0 = time.monotonic()
    gw.signal(signal.SIGTERM)
    assert gw.proc.wait(10) == 0
    assert time.monotonic() - t0 < 3
    s.settimeout(2)
    assert s.recv(100) == b"", "the idle connection was closed"
    s.close()


def test_pylon_stop_command_drains_and_stops(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), workers=2)
    workers = wait_workers(gw, 2)
    r = cli(gw, "stop", "--timeout", "20")
    assert r.returncode == 0, r.stderr
    assert "stopped" in r.stdout
    assert gw.proc.wait(5) == 0
    wait_until(lambda: not any(alive(p) for p in workers), 5, "workers to exit")


# A killed master's workers serve on until a new master takes over: test_master_death.py


def test_second_start_on_the_same_prefix_is_refused(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), workers=1)
    r = subprocess.run([sys.executable, "-m", "pylon.cli", "start", "-p", gw.prefix],
                       capture_output=True, check=False, text=True, timeout=30)
    assert r.returncode == 1
    assert "already running" in r.stderr
    assert str(gw.proc.pid) in r.stderr
    assert gw.get("/x")[0] == 200
    assert gw.proc.poll() is None


def test_stale_pid_file_does_not_block_start(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), workers=1, start=False)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    os.makedirs(os.path.join(gw.prefix, "logs"), exist_ok=True)
    with open(os.path.join(gw.prefix, "logs", "pylon.pid"), "w") as f:
        f.write(f"{dead.pid}\n")
    gw.start()
    assert gw.get("/x")[0] == 200


@pytest.mark.parametrize("sig", [signal.SIGINT])
def test_sigint_stops_like_sigterm(gateway_factory, upstream, sig):
    gw = gateway_factory(route_doc([upstream]), workers=1)
    gw.signal(sig)
    assert gw.proc.wait(10) == 0


def test_sigusr1_reopens_the_access_and_error_logs_after_rotation(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream], uri="/a"), workers=1)
    logs = os.path.join(gw.prefix, "logs")
    assert gw.get("/a")[0] == 200
    wait_until(gw.access_log, 5, "the first access log line")
    for name in ("access.log", "error.log"):
        os.rename(os.path.join(logs, name), os.path.join(logs, name + ".1"))
    gw.signal(signal.SIGUSR1)

    def rotated():
        gw.get("/a")
        return os.path.exists(os.path.join(logs, "access.log")) and gw.access_log()
    wait_until(rotated, 5, "a new access.log")
    # the worker's error log is reopened too: its next message lands in the new file
    gw.write(route_doc([upstream], uri="/b"))
    error_log = os.path.join(logs, "error.log")
    wait_until(lambda: os.path.exists(error_log) and "#worker 0: worker 0: config revision 2 live"
               in Path(error_log).read_text(), 5, "the worker's line in the new error.log")
    assert "revision 2" not in Path(error_log + ".1").read_text()
