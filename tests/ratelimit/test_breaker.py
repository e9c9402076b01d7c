"""api-breaker state (pylon/ratelimit/breaker.py): APISIX's transitions with an injected
clock, exact across processes, a reclaimed record never inherits another key's state -- with
the compare-and-swap path and with the fcntl-lock fallback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from pylon.ratelimit import local
from pylon.ratelimit.breaker import Breakers, Policy, State, fits

T0 = 1_700_000_000.25          # a fixed clock: whole seconds matter, as with ngx.time()


@pytest.fixture(params=["cas", "locks"])
def mode(request, monkeypatch) -> str:
    if request.param == "locks":
        monkeypatch.setattr(local, "_CAS", None)
    elif local._CAS is None:
        pytest.skip("libatomic not available")
    return request.param


@pytest.fixture
def make(tmp_path, mode):
    tables = []

    def make(buckets: int = 64) -> Breakers:
        t = local.SharedTable(f"b{len(tables)}", buckets, str(tmp_path))
        assert (t.cas is None) == (mode == "locks")
        tables.append(t)
        return Breakers(t)
    yield make
    for t in tables:
        t.close()


def test_trips_after_failures_for_two_seconds_then_half_opens(make):
    b, p = make(), Policy(3, 3, 300)
    assert b.failure("k", p, T0) == 1 and b.failure("k", p, T0) == 2
    assert b.open_for("k", p, T0) == 0                     # below `failures`: closed
    assert b.failure("k", p, T0 + 0.5) == 3
    assert b.peek("k", p, T0 + 0.5) == State(3, 0, int(T0))
    # open while ngx.time() <= lasttime + 2
    assert [b.open_for("k", p, T0 + dt) for dt in (0.5, 1, 2.7)] == [2, 2, 2]
    assert b.open_for("k", p, T0 + 2.75) == 0               # int(now) == lasttime + 3
    assert b.open_for("other", p, T0 + 1) == 0


def test_a_failure_after_the_window_reopens_from_the_last_trip_with_a_doubled_window(make):
    b, p = make(), Policy(3, 3, 300)
    for _ in range(3):
        b.failure("k", p, T0)
    t = T0 + 3
    assert b.open_for("k", p, t) == 0                       # half-open
    assert b.failure("k", p, t) == 4                        # ceil(4/3) = 2: 4 s from T0
    assert b.open_for("k", p, t) == 4
    assert b.open_for("k", p, T0 + 4.7) == 4 and b.open_for("k", p, T0 + 5) == 0
    b.failure("k", p, T0 + 5)
    assert b.failure("k", p, T0 + 6) == 6                   # 6 % 3 == 0: a new trip
    assert b.peek("k", p, T0 + 6).lasttime == int(T0 + 6)
    assert b.open_for("k", p, T0 + 6 + 4) == 4 and b.open_for("k", p, T0 + 6 + 5) == 0


def test_windows_double_up_to_max_breaker_sec_which_is_also_lasttimes_ttl(make):
    b, p = make(), Policy(1, 1, 5)
    t = T0
    windows = []
    for _ in range(4):
        b.failure("k", p, t)
        windows.append(b.open_for("k", p, t))
        t += 10
    assert windows == [2, 4, 5, 5]
    last = int(t - 10)
    assert b.open_for("k", p, last + 4.99) == 5
    assert b.open_for("k", p, last + 5) == 0                # the lasttime entry expired
    for _ in range(100):                                    # rounds saturate, nothing wraps
        b.failure("k", p, t)
    assert b.open_for("k", p, t) == 5


def test_successes_close_the_breaker_and_a_failure_restarts_their_count(make):
    b, p = make(), Policy(2, 3, 300)
    assert b.success("k", p, T0) == 0                       # no unhealthy count: ignored
    assert b.peek("k", p, T0) == State(0, 0, 0)
    b.failure("k", p, T0)
    b.failure("k", p, T0)
    t = T0 + 3
    assert b.success("k", p, t) == 1 and b.success("k", p, t) == 2
    assert b.failure("k", p, t) == 3                        # deletes the healthy count
    assert b.peek("k", p, t) == State(3, 0, int(T0))
    assert [b.success("k", p, t) for _ in range(3)] == [1, 2, 3]
    assert b.peek("k", p, t) == State(0, 0, 0)              # everything cleared
    assert b.open_for("k", p, t) == 0
    assert b.failure("k", p, t) == 1 and b.failure("k", p, t) == 2
    assert b.open_for("k", p, t) == 2                       # back to the first window


def test_successes_count_even_while_open_as_in_apisix(make):
    b, p = make(), Policy(1, 1, 300)
    b.failure("k", p, T0)
    assert b.open_for("k", p, T0) == 2
    assert b.success("k", p, T0) == 1                       # e.g. a request in flight
    assert b.open_for("k", p, T0) == 0


def test_a_reclaimed_record_does_not_inherit_the_previous_keys_state(make):
    b, p = make(buckets=1), Policy(1, 1, 300)               # one bucket of 8 records
    for i in range(8):
        b.failure(f"k{i}", p, T0 + i * 10_000)              # idle a day: k0 only, below
    for i in range(8):
        assert b.open_for(f"k{i}", p, T0 + i * 10_000) == 2
    t = T0 + 90_000
    assert b.open_for("new", p, t) == 0
    assert b.failure("new", p, t) == 1                      # k0's record, k0's word: unseen
    assert b.peek("new", p, t) == State(1, 0, int(t))
    assert b.peek("k0", p, t) == State(0, 0, 0)             # evicted
    assert b.peek("k7", p, t).unhealthy == 1


def test_reads_and_successes_never_claim_a_record(make):
    b, p = make(buckets=1), Policy(1, 3, 300)
    for i in range(50):
        b.open_for(f"r{i}", p, T0)
        b.success(f"r{i}", p, T0)
    words = local._BUCKET_S.unpack_from(b.t.mm, 0)
    assert all(words[i * 4] == 0 for i in range(8))


def test_thresholds_must_fit_one_word():
    assert fits(3, 3) and fits(2048, 2048) and fits(1, 1 << 22)
    assert not fits(4096, 2048)
    with pytest.raises(ValueError):
        Policy(4096, 2048, 300)


WORKER = textwrap.dedent('''
    import sys
    from pylon.ratelimit.local import SharedTable
    from pylon.ratelimit.breaker import Breakers, Policy
    b = Breakers(SharedTable("t", 64, sys.argv[1]))
    p = Policy(2048, 3, 300)
    n = int(sys.argv[2])
    for i in range(n):
        b.failure("shared", p)
        b.failure(f"own-{i % 50}", p)           # other keys in the same buckets
    print(n)
''')


def _workers(d: str, procs: int, n: int, env: dict[str, str]) -> list[subprocess.Popen[str]]:
    return [subprocess.Popen([sys.executable, "-c", WORKER, d, str(n)], stdout=subprocess.PIPE,
                             text=True, env={**os.environ, **env}) for _ in range(procs)]


@pytest.fixture(params=["cas", "locks"])
def proc_env(request) -> dict[str, str]:
    if request.param == "cas" and local._CAS is None:
        pytest.skip("libatomic not available")
    return {"PYLON_SHM_LOCKS": "1"} if request.param == "locks" else {}


def test_four_processes_count_failures_exactly(tmp_path, proc_env):
    ps = _workers(str(tmp_path), 4, 400, proc_env)
    assert sum(int(p.communicate(timeout=60)[0]) for p in ps) == 1600
    t = local.SharedTable("t", 64, str(tmp_path))
    try:
        assert Breakers(t).peek("shared", Policy(2048, 3, 300)).unhealthy == 1600
    finally:
        t.close()


def test_a_process_killed_while_counting_blocks_and_corrupts_nothing(tmp_path, proc_env):
    others = _workers(str(tmp_path), 2, 1500, proc_env)
    for _ in range(2):
        v = _workers(str(tmp_path), 1, 10**7, proc_env)[0]
        time.sleep(0.3)
        v.send_signal(signal.SIGKILL)
        v.wait(10)
    assert sum(int(p.communicate(timeout=60)[0]) for p in others) == 3000   # none stuck
    t = local.SharedTable("t", 64, str(tmp_path))
    try:
        st = Breakers(t).peek("shared", Policy(2048, 3, 300))
        assert 3000 <= st.unhealthy < 3000 + 2 * 2048 * 64     # a whole, tagged word
        assert st.healthy == 0
    finally:
        t.close()
