"""The master's death does not stop the node (issue 13, defect 10; docs/operations.md).

Workers whose master is killed keep serving the last config; a master started again on the
same prefix takes their listening sockets over, starts its own workers, then has the
orphans drain — under load, without a failed request.  A stale pid file does not block the
restart (whatever process its pid now names), a live master still does."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.harness import Gateway, route_doc

from .loadgen import Load
from .test_processes import alive, wait_until, wait_workers

#: drain deadline of the gateways here: an orphan told to drain is gone well within it
DRAIN = 3.0


@pytest.fixture
def gateway_factory(quick_gateway_factory):
    return quick_gateway_factory


@contextlib.contextmanager
def group_killed(gw: Gateway) -> Iterator[None]:
    """Whatever happens, the processes of the master started now (its workers, and the
    orphans they become) are gone after the block."""
    assert gw.proc is not None
    pgid = gw.proc.pid
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def node(gw_factory, doc, workers: int = 2) -> Gateway:
    return gw_factory(doc, workers=workers,
                      node={"nginx_config": {"worker_shutdown_timeout": f"{DRAIN:.0f}s",
                                             "error_log_level": "info"}})


def kill_master(gw: Gateway) -> list[int]:
    """SIGKILL the master; its workers' pids."""
    workers = wait_workers(gw, gw.workers)
    assert gw.proc is not None
    gw.proc.send_signal(signal.SIGKILL)
    gw.proc.wait(5)
    return workers


def test_killed_master_new_master_takes_over_under_load_without_a_failed_request(
        gateway_factory, upstream):
    """Also: the new master adopts the orphans' shared memory, so a limit-count window is
    not reset by the master's death (nor are the metrics counters)."""
    doc = route_doc([upstream])
    doc["routes"].append({"id": "r2", "uri": "/limited", "upstream": doc["routes"][0]["upstream"],
                          "plugins": {"limit-count": {"count": 5, "time_window": 60,
                                                      "rejected_code": 503,
                                                      "key": "remote_addr"}}})
    gw = node(gateway_factory, doc)
    with group_killed(gw), Load(gw.port, "/x", fresh=3, keepalive=3) as load:
        for _ in range(3):
            assert gw.get("/limited")[0] == 200
        load.wait_for(50)
        orphans = kill_master(gw)
        t_kill = time.monotonic()
        # before the fix the workers stopped about a second after their master: serve on
        time.sleep(1.5)
        assert all(alive(p) for p in orphans), "orphaned workers exited"
        assert gw.get("/limited")[0] == 200   # an orphan counts the 4th
        before = load.ok
        load.wait_for(before + 50)
        gw.start()                            # the same prefix, as systemd would restart it
        with group_killed(gw):
            t_started = time.monotonic()
            wait_until(lambda: not any(alive(p) for p in orphans), DRAIN + 10,
                       "the orphans to drain and exit")
            t_gone = time.monotonic()
            new = wait_workers(gw, 2)
            assert not set(new) & set(orphans)
            n = load.ok
            load.wait_for(n + 100)            # served by the new master's workers alone
            load.stop()
            print(f"\nmaster killed; new master up {t_started - t_kill:.1f} s later; orphans "
                  f"gone {t_gone - t_started:.1f} s after that; requests sent "
                  f"{load.ok + len(load.failures)}, failed {len(load.failures)}")
            assert not load.failures, load.summary()
            log = gw.log()
            assert log.count("taking over orphaned worker") == 2
            assert log.count("a new master took over; draining") == 2
            wait_until(lambda: gw.log().count("drained and exited") == 2, 5,
                       "the master to see both orphans go")
            status, headers, _ = gw.get("/limited")
            assert status == 200 and headers["x-ratelimit-remaining"] == "0"
            assert gw.get("/limited")[0] == 503


def test_orphaned_workers_serve_until_their_own_sigterm_or_pylon_stop(gateway_factory,
                                                                      upstream):
    gw = node(gateway_factory, route_doc([upstream]))
    with group_killed(gw):
        orphans = kill_master(gw)
        time.sleep(1.5)
        for _ in range(20):                   # fresh connections reach every orphan
            assert gw.get("/x")[0] == 200
        assert all(alive(p) for p in orphans)
        assert gw.log().count("master went away; serving config revision 1") == 2
        os.kill(orphans[0], signal.SIGTERM)
        wait_until(lambda: not alive(orphans[0]), DRAIN + 5, "the orphan to exit on SIGTERM")
        assert alive(orphans[1])
        assert gw.get("/x")[0] == 200
        # no master: `pylon stop` drains the orphans instead
        r = subprocess.run([sys.executable, "-m", "pylon.cli", "stop", "-p", gw.prefix],
                           check=False, capture_output=True, text=True, timeout=DRAIN + 30)
        assert r.returncode == 0, r.stderr
        assert "no master; drained 1 orphaned workers" in r.stdout
        assert not alive(orphans[1])


def test_a_pid_file_naming_an_unrelated_live_process_does_not_block_start(
        gateway_factory, upstream):
    """The pid may have been recycled: only a master holding the pid file's lock counts."""
    gw = gateway_factory(route_doc([upstream]), workers=1, start=False)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        os.makedirs(os.path.join(gw.prefix, "logs"), exist_ok=True)
        with open(os.path.join(gw.prefix, "logs", "pylon.pid"), "w") as f:
            f.write(f"{other.pid}\n")
        gw.start()
        assert gw.get("/x")[0] == 200
        r = subprocess.run([sys.executable, "-m", "pylon.cli", "start", "-p", gw.prefix],
                           check=False, capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and "already running" in r.stderr
        assert f"pid {gw.proc.pid}" in r.stderr
        assert other.poll() is None           # nobody signalled it
    finally:
        other.kill()
        other.wait()


def test_a_dead_masters_shared_memory_is_removed_only_once_no_process_uses_it(tmp_path):
    """Orphans hold their node's directory (a shared flock): a master starting elsewhere
    must not remove it under them because the pid in its name is dead."""
    from pylon.ratelimit.local import _remove_stale
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    d = tmp_path / f"pylon-{dead.pid}"
    d.mkdir()
    (d / "metrics").write_bytes(b"x")
    holder = subprocess.Popen(
        [sys.executable, "-c", ("import sys; from pylon.ratelimit.local import hold; "
                                f"hold({str(d)!r}); print('held', flush=True); "
                                "sys.stdin.read()")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        _remove_stale(str(tmp_path))
        assert (d / "metrics").exists()
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)
    _remove_stale(str(tmp_path))
    assert not d.exists()
