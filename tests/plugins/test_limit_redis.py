"""limit-count / limit-req / limit-conn with policy redis and redis-cluster: exact across two
gateway nodes sharing a real Redis (and a real 3-node Redis Cluster); Redis stopped in the
middle, with and without allow_degradation."""

from __future__ import annotations

import threading
import time

import pytest

from pylon.pdk.testing import Kit
from tests.redis_server import RedisCluster, RedisServer, find_redis

pytestmark = pytest.mark.skipif(find_redis() is None, reason="redis-server not installed")


def routes(redis: dict) -> dict:
    lc = lambda **kw: {"limit-count": {"time_window": 60, **redis, **kw}}  # noqa: E731
    return {"routes": [
        {"id": "shared", "uri": "/shared", "plugins": lc(count=30, key_type="constant",
                                                         key="all")},
        {"id": "strict", "uri": "/strict", "plugins": lc(count=1000)},
        {"id": "degrade", "uri": "/degrade", "plugins": lc(count=1000,
                                                           allow_degradation=True)},
        {"id": "req", "uri": "/req", "plugins": {"limit-req": {
            "rate": 1, "burst": 0, "key": "remote_addr", "nodelay": True, **redis}}},
    ]}


def hammer(kits: list[Kit], path: str, n: int) -> list[int]:
    out: list[int] = []
    lock = threading.Lock()

    def client(k: Kit) -> None:
        for _ in range(n):
            s = k.get(path).status
            with lock:
                out.append(s)

    threads = [threading.Thread(target=client, args=(k,)) for k in kits for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


@pytest.fixture(scope="module")
def redis():
    with RedisServer() as r:
        yield r


@pytest.fixture(scope="module")
def nodes(redis):
    conf = {"policy": "redis", "redis_host": "127.0.0.1", "redis_port": redis.port,
            "redis_timeout": 300}
    with Kit(routes(conf), workers=2) as a, Kit(routes(conf), workers=1) as b:
        yield a, b


def test_two_nodes_share_one_exact_count(nodes):
    out = hammer(list(nodes), "/shared", 10)
    assert len(out) == 60 and out.count(200) == 30 and out.count(503) == 30


def test_limit_req_over_redis_is_shared_by_the_nodes(nodes):
    a, b = nodes
    assert a.get("/req").status == 200
    assert b.get("/req").status == 503


def test_redis_down_refuses_or_degrades_as_configured(nodes, redis):
    a, _ = nodes
    assert a.get("/strict").status == 200
    redis.stop()
    try:
        r = a.get("/strict")
        assert r.status == 500 and r.json() == {"error_msg": "failed to limit count"}
        assert a.get("/degrade").status == 200
        assert "redis unavailable" in a.log()
    finally:
        redis.restart()
    deadline = time.monotonic() + 5          # the pool reconnects on the next calls
    while a.get("/strict").status != 200:
        assert time.monotonic() < deadline, "never recovered after redis came back"
        time.sleep(0.1)


def test_redis_cluster_counts_exactly_across_nodes():
    with RedisCluster(3) as cluster:
        conf = {"policy": "redis-cluster", "redis_cluster_nodes": cluster.addresses,
                "redis_cluster_name": "test", "redis_timeout": 1000}
        with Kit(routes(conf)) as a, Kit(routes(conf)) as b:
            out = hammer([a, b], "/shared", 10)
            assert out.count(200) == 30 and out.count(503) == 30
