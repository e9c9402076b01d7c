"""pylon.ratelimit.redis_backend against real redis-server processes (no mocks).

Standalone tests share one module-scoped server and use a fresh key each; tests that stop,
kill or freeze Redis get a private server.  The cluster is three real cluster-enabled masters.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest
import uvloop

from pylon.ratelimit import RedisUnavailable
from pylon.ratelimit import redis_backend as rb
from pylon.ratelimit.redis_backend import (
    RedisConfig,
    RedisLimiter,
    close_all,
    get_limiter,
)
from tests.redis_server import RedisCluster, RedisServer, free_port


def run(coro: Coroutine[Any, Any, Any], timeout: float = 20.0) -> Any:
    return uvloop.run(asyncio.wait_for(coro, timeout))


def conf_for(server: RedisServer, **extra: Any) -> dict[str, Any]:
    return {"policy": "redis", "redis_host": server.host, "redis_port": server.port, **extra}


def cluster_conf(cluster: RedisCluster, **extra: Any) -> dict[str, Any]:
    return {"policy": "redis-cluster", "redis_cluster_nodes": cluster.addresses,
            "redis_cluster_name": "test-cluster", **extra}


@contextlib.asynccontextmanager
async def limiter(conf: dict[str, Any]) -> AsyncIterator[RedisLimiter]:
    lim = RedisLimiter(conf)
    try:
        yield lim
    finally:
        await lim.aclose()


#: for the tests about exactness under concurrency, not latency: a generous timeout keeps
#: them green on an overloaded machine (hundreds of connects at once, CPU starved)
PATIENT = {"redis_timeout": 5000}


def new_key() -> str:
    return f"route&{uuid.uuid4().hex[:8]}:1:127.0.0.1"


def server_ms(server: RedisServer) -> int:
    sec, usec = server.command("TIME")
    return int(sec) * 1000 + int(usec) // 1000


# -- configuration -------------------------------------------------------------------------------
def test_config_from_apisix_fields() -> None:
    c = RedisConfig.from_conf({"policy": "redis", "redis_host": "10.0.0.1", "count": 5,
                               "redis_username": "u", "redis_password": ""})
    assert (c.host, c.port, c.database, c.timeout_ms, c.keepalive_pool) == \
        ("10.0.0.1", 6379, 0, 1000, 100)
    # like APISIX: no AUTH at all when the password is empty
    assert c.username is None and c.password is None
    c = RedisConfig.from_conf({"policy": "redis-cluster", "redis_cluster_name": "c1",
                               "redis_cluster_nodes": ["127.0.0.1:7000", "[::1]:7001", "h"],
                               "redis_cluster_ssl": True, "redis_timeout": 50})
    assert c.cluster_nodes == (("127.0.0.1", 7000), ("::1", 7001), ("h", 6379))
    assert c.ssl and not c.ssl_verify and c.timeout_ms == 50
    with pytest.raises(ValueError):
        RedisConfig.from_conf({"policy": "redis"})
    with pytest.raises(ValueError):
        RedisConfig.from_conf({"policy": "local"})


def test_argument_checks(redis_server: RedisServer) -> None:
    async def go() -> None:
        async with limiter(conf_for(redis_server)) as lim:
            with pytest.raises(ValueError):
                await lim.incoming("k", 10, 1, cost=0)
            with pytest.raises(ValueError):
                await lim.incoming("k", 0, 1)
            with pytest.raises(ValueError):
                await lim.incoming_req("k", 0, 1)
    run(go())


# -- limit-count, fixed window -------------------------------------------------------------------
def test_fixed_window_is_apisix_script(redis_server: RedisServer) -> None:
    key = new_key()

    async def go() -> list[tuple[bool, int, int]]:
        async with limiter(conf_for(redis_server)) as lim:
            return [await lim.incoming(key, 3, 10) for _ in range(4)] + \
                [await lim.incoming(key + "c", 5, 10, cost=2) for _ in range(3)]

    got = run(go())
    assert got[0] == (True, 2, 10)
    assert [g[:2] for g in got[1:4]] == [(True, 1), (True, 0), (False, 0)]
    assert all(8 <= g[2] <= 10 for g in got[1:4])
    assert [g[:2] for g in got[4:]] == [(True, 3), (True, 1), (False, 0)]
    # APISIX's layout: "plugin-limit-count" .. key, counting down (rejections included)
    raw = "plugin-limit-count" + key
    assert redis_server.command("GET", raw) == b"-1"
    assert 0 < redis_server.command("TTL", raw) <= 10


def test_concurrent_callers_are_exact(redis_server: RedisServer) -> None:
    key = new_key()

    async def go() -> list[tuple[bool, int, int]]:
        async with limiter(conf_for(redis_server, **PATIENT)) as lim:
            return await asyncio.gather(*(lim.incoming(key, 50, 30) for _ in range(200)))

    got = run(go())
    allowed = [g for g in got if g[0]]
    assert len(allowed) == 50
    assert sorted(g[1] for g in allowed) == list(range(50))
    assert all(g == (False, 0, g[2]) for g in got if not g[0])


def test_two_nodes_share_one_redis(redis_server: RedisServer) -> None:
    """Two limiters with their own clients (two gateway nodes) stay exact together."""
    key = new_key()

    async def go() -> tuple[list[Any], list[Any]]:
        async with limiter(conf_for(redis_server, **PATIENT)) as a, \
                limiter(conf_for(redis_server, redis_keepalive_pool=7, **PATIENT)) as b:
            both = await asyncio.gather(
                asyncio.gather(*(a.incoming(key, 60, 30) for _ in range(100))),
                asyncio.gather(*(b.incoming(key, 60, 30) for _ in range(100))),
                asyncio.gather(*(a.incoming(key, 20, 30, sliding=True) for _ in range(50))),
                asyncio.gather(*(b.incoming(key, 20, 30, sliding=True) for _ in range(50))),
            )
            assert a._client is not None and b._client is not None
            assert a._client is not b._client
            return both[0] + both[1], both[2] + both[3]

    fixed, sliding = run(go())
    assert sum(1 for g in fixed if g[0]) == 60
    assert sum(1 for g in sliding if g[0]) == 20


# -- limit-count, sliding window -----------------------------------------------------------------
def test_sliding_vs_fixed_over_a_2s_window(redis_server: RedisServer) -> None:
    """limit 4 / 2 s.  Fill both early in a window; just after the boundary the fixed window
    is fresh but the sliding one still weighs the previous window (4 * ~0.95 -> reject);
    ~1.05 s into the new window the previous one weighs 4 * ~0.475 = 1.9 -> exactly 2 pass
    (n pass while 4 * (2000 - e) / 2000 + n <= 4, i.e. n <= e / 500)."""
    fkey, skey = new_key(), new_key()
    window_ms = 2000

    async def sleep_until_into_window(at_ms: int, next_window: bool = False) -> None:
        # until the server clock is `at_ms` into this (or the next) window: < 2 windows
        into = server_ms(redis_server) % window_ms
        wait = at_ms - into
        if next_window or wait < 0:
            wait += window_ms
        await asyncio.sleep(wait / 1000)

    async def burst(lim: RedisLimiter, key: str, sliding: bool, n: int) -> list[Any]:
        return [await lim.incoming(key, 4, 2, sliding=sliding) for _ in range(n)]

    async def go() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with limiter(conf_for(redis_server)) as lim:
            await sleep_until_into_window(100)
            out["fixed0"] = await burst(lim, fkey, False, 5)
            out["sliding0"] = await burst(lim, skey, True, 5)
            # the next window: sliding still rejects while e < 500 ms ...
            await sleep_until_into_window(100, next_window=True)
            out["sliding1"] = await burst(lim, skey, True, 2)
            # ... while the fixed counter's TTL (2 s from its first hit) has run out
            await sleep_until_into_window(300)
            out["fixed1"] = await burst(lim, fkey, False, 5)
            # 1000 <= e < 1500: exactly 2 pass
            await sleep_until_into_window(1050)
            out["sliding2"] = await burst(lim, skey, True, 4)
        return out

    out = run(go(), timeout=15)
    assert [g[0] for g in out["fixed0"]] == [True] * 4 + [False]
    assert [g[:2] for g in out["sliding0"]] == \
        [(True, 3), (True, 2), (True, 1), (True, 0), (False, 0)]
    assert out["sliding0"][4][2] == 2  # ~1.9 s to the end of the window
    # after the boundary: fixed is reset, sliding still remembers the previous window
    assert [g[0] for g in out["fixed1"]] == [True] * 4 + [False]
    # ~100 ms in: 4 * 1900 / 2000 = 3.8 -> 3.8 + 1 > 4; ~1.9 s to the window's end
    assert out["sliding1"] == [(False, 0, 2)] * 2
    # ~1.05 s in: prev weight ~1.9; 1.9 + 1 <= 4, 2.9 + 1 <= 4, 3.9 + 1 > 4
    assert [g[0] for g in out["sliding2"]] == [True, True, False, False]
    assert out["sliding2"][0][1:] == (1, 1)  # floor(4 - 1.9 - 1); ~0.95 s left
    fields = redis_server.command("HGETALL", "plugin-limit-count" + skey + ":sliding")
    assert len(fields) == 4  # only the current and the previous window are kept


def test_sliding_with_cost(redis_server: RedisServer) -> None:
    key = new_key()

    async def go() -> list[Any]:
        async with limiter(conf_for(redis_server)) as lim:
            return [await lim.incoming(key, 10, 60, cost=4, sliding=True) for _ in range(3)]

    got = run(go())
    # rejected: not counted; remaining = floor(limit - estimate) as the local backend says
    assert [g[:2] for g in got] == [(True, 6), (True, 2), (False, 2)]


# -- connections, pool, failures -----------------------------------------------------------------
def test_pool_of_two_waits_under_load(own_redis_server: RedisServer) -> None:
    key = new_key()

    async def go() -> tuple[list[Any], int]:
        async with limiter(conf_for(own_redis_server, redis_keepalive_pool=2,
                                    **PATIENT)) as lim:
            got = await asyncio.gather(*(lim.incoming(key, 1000, 30) for _ in range(100)),
                                       *(lim.incoming_req(key, 1000, 1000) for _ in range(50)))
            info = own_redis_server.command("INFO", "clients").decode()
            clients = int(info.split("connected_clients:")[1].split()[0])
            return got, clients - 1  # minus the helper's own connection

    got, clients = run(go())
    assert len(got) == 150
    assert sorted(g[1] for g in got[:100]) == list(range(900, 1000))
    assert all(g[0] for g in got[100:])
    assert clients <= 2


def test_stopped_redis_raises_promptly_and_recovers(own_redis_server: RedisServer) -> None:
    key = new_key()

    async def go() -> list[float]:
        timings = []
        async with limiter(conf_for(own_redis_server, redis_timeout=500)) as lim:
            assert (await lim.incoming(key, 5, 30))[:2] == (True, 4)
            for stop in (own_redis_server.stop, own_redis_server.kill):
                stop()
                for _ in range(3):
                    t0 = time.monotonic()
                    with pytest.raises(RedisUnavailable) as err:
                        await lim.incoming(key, 5, 30)
                    timings.append(time.monotonic() - t0)
                assert "redis 127.0.0.1" in str(err.value)
                own_redis_server.start()
                # no persistence: a fresh counter, and the same limiter works again at once
                assert (await lim.incoming(key, 5, 30))[:2] == (True, 4)
                assert (await lim.incoming_req(key, 1, 0))[0] is True
        return timings

    timings = run(go())
    assert max(timings) < 0.5


def test_frozen_redis_times_out(own_redis_server: RedisServer) -> None:
    """A server that accepts but never answers (SIGSTOP): RedisUnavailable once the
    timeout is spent, also for callers queued behind the busy pool."""
    key = new_key()
    assert own_redis_server.proc is not None
    pid = own_redis_server.proc.pid

    async def go() -> tuple[list[Any], float]:
        async with limiter(conf_for(own_redis_server, redis_timeout=200,
                                    redis_keepalive_pool=1)) as lim:
            await lim.incoming(key, 5, 30)
            os.kill(pid, signal.SIGSTOP)
            try:
                t0 = time.monotonic()
                got = await asyncio.gather(*(lim.incoming(key, 5, 30) for _ in range(3)),
                                           return_exceptions=True)
                took = time.monotonic() - t0
            finally:
                os.kill(pid, signal.SIGCONT)
            assert (await lim.incoming(key, 5, 30))[0] is True
            return got, took

    got, took = run(go())
    assert all(isinstance(g, RedisUnavailable) for g in got), got
    assert took < 1.5


def test_unreachable(redis_server: RedisServer) -> None:
    async def go() -> None:
        dead = {"policy": "redis", "redis_host": "127.0.0.1", "redis_port": free_port()}
        async with limiter(dead) as lim:
            t0 = time.monotonic()
            with pytest.raises(RedisUnavailable):
                await lim.incoming("k", 1, 1)
            with pytest.raises(RedisUnavailable):
                await lim.conn_incoming("k", 1)
            assert time.monotonic() - t0 < 0.5

    run(go())


def test_auth_acl_user_and_database() -> None:
    from tests.redis_server import find_redis
    if find_redis() is None:
        pytest.skip("redis-server not installed")
    key = new_key()
    with RedisServer(args=["--requirepass", "sekret"], auth=("sekret",)) as server:
        server.command("ACL", "SETUSER", "alice", "on", ">wonder", "~*", "&*", "+@all")

        async def go() -> None:
            for bad in ({"redis_password": "nope"},
                        {"redis_username": "alice", "redis_password": "nope"},
                        {}):  # no password at all: NOAUTH on the script
                async with limiter(conf_for(server, **bad)) as lim:
                    with pytest.raises(RedisUnavailable):
                        await lim.incoming(key, 2, 30)
            async with limiter(conf_for(server, redis_password="sekret")) as lim:
                assert (await lim.incoming(key, 2, 30))[:2] == (True, 1)
            async with limiter(conf_for(server, redis_username="alice",
                                        redis_password="wonder", redis_database=3)) as lim:
                assert (await lim.incoming(key, 2, 30))[:2] == (True, 1)

        run(go())
        raw = "plugin-limit-count" + key
        assert server.command("GET", raw) == b"1"  # db 0
        in_db3 = server.command("EVAL", "redis.call('select', 3) "
                                "return redis.call('get', KEYS[1])", 1, raw)
        assert in_db3 == b"1"


def test_tls(tmp_path: Any) -> None:
    """redis_ssl: TLS to the server; redis_ssl_verify checks its certificate (a self-signed
    one here, which the system trust store rejects)."""
    from tests.harness import self_signed_cert
    from tests.redis_server import find_redis
    if find_redis() is None:
        pytest.skip("redis-server not installed")
    key = new_key()
    with RedisServer(tls=self_signed_cert(str(tmp_path))) as server:
        async def go() -> None:
            async with limiter(conf_for(server, redis_ssl=True)) as lim:
                assert (await lim.incoming(key, 2, 30))[:2] == (True, 1)
            for bad in ({"redis_ssl": True, "redis_ssl_verify": True}, {}):
                async with limiter(conf_for(server, redis_timeout=500, **bad)) as lim:
                    with pytest.raises(RedisUnavailable):
                        await lim.incoming(key, 2, 30)

        run(go())
        assert server.command("GET", "plugin-limit-count" + key) == b"1"


def test_noscript_falls_back_and_reloads(redis_server: RedisServer) -> None:
    key = new_key()

    async def go() -> None:
        async with limiter(conf_for(redis_server)) as lim:
            assert (await lim.incoming(key, 3, 30))[:2] == (True, 2)
            redis_server.command("SCRIPT", "FLUSH")
            assert redis_server.command("SCRIPT", "EXISTS", rb._FIXED.sha) == [0]
            assert (await lim.incoming(key, 3, 30))[:2] == (True, 1)
            assert redis_server.command("SCRIPT", "EXISTS", rb._FIXED.sha) == [1]

    run(go())


def test_get_limiter_shares_per_config_and_loop(redis_server: RedisServer) -> None:
    async def go() -> RedisLimiter:
        a = get_limiter(conf_for(redis_server, count=5, time_window=1))
        b = get_limiter(conf_for(redis_server, count=9, key="remote_addr"))
        c = get_limiter(conf_for(redis_server, redis_timeout=999))
        assert a is b and a is not c
        assert (await a.incoming(new_key(), 1, 1))[0] is True
        await close_all()
        assert a.closed and c.closed
        with pytest.raises(RedisUnavailable):
            await a.incoming("k", 1, 1)
        d = get_limiter(conf_for(redis_server))
        assert d is not a and not d.closed
        assert (await d.incoming(new_key(), 1, 1))[0] is True
        await close_all()
        return d

    first = run(go())
    # another event loop (a test, a worker) gets its own client

    async def other() -> None:
        e = get_limiter(conf_for(redis_server))
        assert e is not first
        assert (await e.incoming(new_key(), 1, 1))[0] is True
        await close_all()

    run(other())


# -- limit-req -----------------------------------------------------------------------------------
def test_limit_req_leaky_bucket(redis_server: RedisServer) -> None:
    key = new_key()

    async def go() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with limiter(conf_for(redis_server, **PATIENT)) as lim:
            # one request per 10 s, 2 of burst: delays 0, ~10 s, ~20 s, then rejected
            out["seq"] = [await lim.incoming_req(key, 0.1, 2) for _ in range(4)]
            out["peek"] = await lim.incoming_req(key + "p", 1, 0, commit=False)
            out["peek2"] = await lim.incoming_req(key + "p", 1, 0, commit=False)
            # rate 2/s, no burst: the second at once is rejected, 600 ms later one passes
            out["fast"] = [await lim.incoming_req(key + "f", 2, 0) for _ in range(2)]
            await asyncio.sleep(0.6)
            out["fast"].append(await lim.incoming_req(key + "f", 2, 0))
            # 50 at once, 0.1/s with 9 of burst: exactly 10 admitted, delays 0, 10, .. 90 s
            out["many"] = await asyncio.gather(*(lim.incoming_req(key + "m", 0.1, 9)
                                                 for _ in range(50)))
        return out

    out = run(go())
    seq = out["seq"]
    assert seq[0] == (True, 0.0, 0.0)
    assert seq[1][0] and 9.5 < seq[1][1] <= 10.0 and 0.95 < seq[1][2] <= 1.0
    assert seq[2][0] and 19.5 < seq[2][1] <= 20.0
    assert seq[3][0] is False and 2.95 < seq[3][2] <= 3.0
    assert out["peek"] == out["peek2"] == (True, 0.0, 0.0)  # commit=False stores nothing
    assert redis_server.command("EXISTS", "limit_req:" + key + "p") == 0
    assert [g[0] for g in out["fast"]] == [True, False, True]
    many = out["many"]
    allowed = sorted(g[1] for g in many if g[0])
    assert len(allowed) == 10
    assert [round(d / 10) for d in allowed] == list(range(10))
    # the state expires once the bucket has drained (+1 s): never a leak
    pttl = redis_server.command("PTTL", "limit_req:" + key + "m")
    assert 90_000 < pttl <= 101_000


# -- limit-conn ----------------------------------------------------------------------------------
def test_limit_conn_in_and_out(redis_server: RedisServer) -> None:
    key = new_key()

    async def go() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with limiter(conf_for(redis_server, **PATIENT)) as lim:
            got = [await lim.conn_incoming(key, 2, 1) for _ in range(4)]
            out["in"] = [g[:2] for g in got]
            out["peek"] = (await lim.conn_incoming(key, 2, 1, commit=False))[:2]
            out["left"] = await lim.conn_leaving(key, got[0][2])
            out["again"] = (await lim.conn_incoming(key, 2, 1, req_id="r-1"))
            out["left2"] = [await lim.conn_leaving(key, rid) for rid in
                            (got[1][2], got[2][2], "r-1")]
            # 40 concurrent with 5 allowed
            many = await asyncio.gather(*(lim.conn_incoming(key + "m", 5, 0)
                                          for _ in range(40)))
            out["many"] = sum(1 for g in many if g[0])
            # a crashed node never calls leaving: its entries expire after key_ttl
            for _ in range(3):
                await lim.conn_incoming(key + "t", 3, 0, key_ttl=1)
            out["full"] = (await lim.conn_incoming(key + "t", 3, 0, key_ttl=1))[:2]
            await asyncio.sleep(1.1)
            out["after_ttl"] = (await lim.conn_incoming(key + "t", 3, 0, key_ttl=1))[:2]
        return out

    out = run(go())
    assert out["in"] == [(True, 1), (True, 2), (True, 3), (False, 3)]
    assert out["peek"] == (True, 4)  # what a commit would count; nothing recorded
    assert out["left"] == 2
    assert out["again"] == (True, 3, "r-1")
    assert out["left2"] == [2, 1, 0]
    assert out["many"] == 5
    assert out["full"] == (False, 3)
    assert out["after_ttl"] == (True, 1)
    assert 0 < redis_server.command("PTTL", "limit_conn:" + key + "t") <= 1000
    assert redis_server.command("EXISTS", "limit_conn:" + key) == 0 or \
        redis_server.command("ZCARD", "limit_conn:" + key) == 0


# -- the cluster ---------------------------------------------------------------------------------
def test_cluster_spreads_keys_and_counts_exactly(redis_cluster: RedisCluster) -> None:
    keys = [new_key() for _ in range(24)]

    async def go() -> list[list[Any]]:
        async with limiter(cluster_conf(redis_cluster, **PATIENT)) as lim:
            return await asyncio.gather(*(
                asyncio.gather(*(lim.incoming(k, 7, 30) for _ in range(20))) for k in keys))

    results = run(go())
    assert all(sum(1 for g in res if g[0]) == 7 for res in results)
    owners = {}
    for k in keys:
        raw = "plugin-limit-count" + k
        node = redis_cluster.slot_owner(raw)
        assert node.command("GET", raw) == b"-13"  # 7 - 20: APISIX counts rejections down
        owners[raw] = node.port
    assert len(set(owners.values())) == 3


def test_cluster_sliding_req_conn(redis_cluster: RedisCluster) -> None:
    key = new_key()

    async def go() -> dict[str, Any]:
        async with limiter(cluster_conf(redis_cluster, redis_keepalive_pool=2,
                                        **PATIENT)) as lim:
            sliding = await asyncio.gather(*(lim.incoming(key, 30, 60, sliding=True)
                                             for _ in range(80)))
            req = await asyncio.gather(*(lim.incoming_req(key, 1, 4) for _ in range(20)))
            conn = await asyncio.gather(*(lim.conn_incoming(key, 3, 2) for _ in range(20)))
            left = await lim.conn_leaving(key, next(g[2] for g in conn if g[0]))
            return {"sliding": sum(1 for g in sliding if g[0]),
                    "req": sum(1 for g in req if g[0]),
                    "conn": sum(1 for g in conn if g[0]), "left": left}

    assert run(go()) == {"sliding": 30, "req": 5, "conn": 5, "left": 4}


def test_cluster_down_raises(redis_cluster: RedisCluster) -> None:
    """A cluster whose nodes all refuse connections: RedisUnavailable, promptly."""
    nodes = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]

    async def go() -> float:
        conf = {"policy": "redis-cluster", "redis_cluster_nodes": nodes,
                "redis_cluster_name": "gone", "redis_timeout": 300}
        async with limiter(conf) as lim:
            t0 = time.monotonic()
            with pytest.raises(RedisUnavailable):
                await lim.incoming("k", 1, 1)
            return time.monotonic() - t0

    assert run(go()) < 1.0


def test_cluster_node_killed_and_back() -> None:
    """A master dies: its keys fail fast with RedisUnavailable (the plugin degrades or
    answers 500), the other masters' keys keep counting; back on its port, it serves again."""
    from tests.redis_server import find_redis
    if find_redis() is None:
        pytest.skip("redis-server not installed")
    with RedisCluster(3) as cluster:
        keys: dict[int, str] = {}
        while len(keys) < 3:  # one key per master
            k = new_key()
            keys.setdefault(cluster.slot_owner("plugin-limit-count" + k).port, k)
        victim = cluster.nodes[1]
        conf = cluster_conf(cluster, redis_timeout=500)

        async def go() -> None:
            async with limiter(conf) as lim:
                for k in keys.values():
                    assert (await lim.incoming(k, 5, 60))[:2] == (True, 4)
                victim.kill()
                t0 = time.monotonic()
                with pytest.raises(RedisUnavailable):
                    await lim.incoming(keys[victim.port], 5, 60)
                assert time.monotonic() - t0 < 1.0
                for port, k in keys.items():
                    if port != victim.port:
                        assert (await lim.incoming(k, 5, 60))[:2] == (True, 3)
                victim.start()  # same port and nodes.conf: it rejoins with its slots
                await asyncio.to_thread(cluster.wait_ok)
                # its data is gone (no persistence): a fresh counter
                assert (await lim.incoming(keys[victim.port], 5, 60))[:2] == (True, 4)

        run(go(), timeout=30)
