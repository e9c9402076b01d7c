"""Node-wide counters in shared memory: exact across processes, and a process killed in the
middle of counting neither blocks nor corrupts the others -- with the lock-free
compare-and-swap path and with the fcntl-lock fallback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from pylon.ratelimit.local import ConnTable, SharedTable

WORKER = textwrap.dedent('''
    import os, sys
    from pylon.ratelimit.local import SharedTable
    t = SharedTable("t", int(sys.argv[4]), sys.argv[1])
    n, limit = int(sys.argv[2]), int(sys.argv[3])
    ok = sum(1 for _ in range(n) if t.incoming("shared-key", limit, 3600)[0])
    for i in range(n // 10):                      # other keys in the same buckets
        t.incoming(f"k{os.getpid()}-{i}", 10**6, 3600)
    print(ok)
''')


def run_workers(d: str, procs: int, n: int, limit: int, buckets: int,
                env: dict[str, str]) -> list[subprocess.Popen[str]]:
    return [subprocess.Popen([sys.executable, "-c", WORKER, d, str(n), str(limit),
                              str(buckets)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, **env}) for _ in range(procs)]


@pytest.fixture(params=["cas", "locks"])
def mode(request) -> dict[str, str]:
    return {"PYLON_SHM_LOCKS": "1"} if request.param == "locks" else {}


def test_four_processes_counting_one_key_admit_exactly_the_limit(tmp_path, mode):
    ps = run_workers(str(tmp_path), 4, 3000, 5000, 1024, mode)
    total = sum(int(p.communicate(timeout=60)[0]) for p in ps)
    assert total == 5000


def test_a_process_killed_while_counting_blocks_and_corrupts_nothing(tmp_path, mode):
    # one process is killed repeatedly mid-loop while three others count the same key
    victims = []
    others = run_workers(str(tmp_path), 3, 4000, 10**6, 1024, mode)
    for _ in range(3):
        v = run_workers(str(tmp_path), 1, 10**7, 10**6, 1024, mode)[0]
        time.sleep(0.15)
        v.send_signal(signal.SIGKILL)
        v.wait(10)
        victims.append(v)
    counted = sum(int(p.communicate(timeout=60)[0]) for p in others)
    assert counted == 12000                      # nobody was refused or stuck
    t = SharedTable("t", 1024, str(tmp_path))
    ok, remaining, _ = t.incoming("shared-key", 10**6, 3600)
    # the record is whole: the others' 12000 plus whatever the victims counted
    assert ok and 12000 < 10**6 - remaining <= 10**6


def test_fixed_window_restarts_after_the_window(tmp_path):
    t = SharedTable("w", 64, str(tmp_path))
    assert [t.incoming("k", 2, 10, now=1000.0)[0] for _ in range(3)] == [True, True, False]
    assert t.incoming("k", 2, 10, now=1005.0) == (False, 0, 5)
    assert t.incoming("k", 2, 10, now=1010.0)[0] is True


def test_sliding_window_weighs_the_previous_window(tmp_path):
    t = SharedTable("s", 64, str(tmp_path))
    assert all(t.incoming("k", 4, 10, sliding=True, now=1000.0)[0] for _ in range(4))
    # just after the boundary the previous 4 still weigh ~4: refused (a fixed window, aligned
    # the same way, would have restarted)
    assert t.incoming("k", 4, 10, sliding=True, now=1011.0)[0] is False
    # half way through the next window half of them weigh: two more fit
    assert [t.incoming("k", 4, 10, sliding=True, now=1015.0)[0] for _ in range(3)] == \
        [True, True, False]
    assert t.incoming("k", 4, 10, sliding=True, now=1031.0)[0] is True


def test_leaky_bucket_delays_then_rejects(tmp_path):
    t = SharedTable("l", 64, str(tmp_path))
    assert [t.leaky("k", 1, 2, now=100.0) for _ in range(4)] == [0.0, 1.0, 2.0, None]
    assert t.leaky("k", 1, 2, now=102.0) == 1.0          # two drained in two seconds


def test_a_full_bucket_evicts_the_record_expiring_first(tmp_path):
    t = SharedTable("e", 1, str(tmp_path))              # one bucket of 8 records
    for i in range(8):
        t.incoming(f"k{i}", 5, 100 + i, now=1000.0)
    t.incoming("new", 5, 100, now=1000.0)
    assert t.evictions == 1
    assert t.incoming("k7", 5, 107, now=1000.0) == (True, 3, 107)   # kept


CONN_WORKER = textwrap.dedent('''
    import sys, time
    from pylon.ratelimit.local import ConnTable
    t = ConnTable("c", 64, sys.argv[1])
    for _ in range(int(sys.argv[2])):
        assert t.incoming("k", 100, 0) is not None
    print("in", flush=True)
    time.sleep(30)
''')


def test_conn_counts_sum_over_processes_and_die_with_them(tmp_path):
    mine = ConnTable("c", 64, str(tmp_path))
    assert mine.incoming("k", 100, 0) == 1
    p = subprocess.Popen([sys.executable, "-c", CONN_WORKER, str(tmp_path), "3"],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "in"
        assert mine.count("k") == 4
        assert mine.incoming("k", 4, 0) is None          # 5 > 4: refused, not counted
        assert mine.count("k") == 4
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        assert mine.count("k") == 4                      # until the sweep
        assert mine.sweep() == 1
        assert mine.count("k") == 1
        mine.leaving("k")
        assert mine.count("k") == 0
    finally:
        p.kill()


def test_conn_counts_are_shared_under_the_lock_fallback(tmp_path):
    # no libatomic (PYLON_SHM_LOCKS=1 forces it for the whole process): records are found
    # or claimed under the bucket's fcntl lock, and another process's count is seen
    a = ConnTable("c", 64, str(tmp_path))
    b = ConnTable("c", 64, str(tmp_path))
    a.table.cas = b.table.cas = None
    assert a.incoming("k", 100, 0) == 1
    assert b.incoming("k", 100, 0) == 2
    assert b.incoming("k", 1, 0) is None          # over limit + burst: not counted
    b.leaving("k")
    assert a.count("k") == 1
