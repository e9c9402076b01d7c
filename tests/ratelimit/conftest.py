from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.redis_server import RedisCluster, RedisServer, find_redis


def _need_redis() -> None:
    if find_redis() is None:
        pytest.skip("redis-server not installed (scripts/test installs it)")


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A standalone redis-server shared by a module's tests (use distinct keys per test)."""
    _need_redis()
    with RedisServer() as server:
        yield server


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A private redis-server for tests that stop, kill or restart it."""
    _need_redis()
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisCluster]:
    """Three cluster-enabled masters, all 16384 slots assigned, ``cluster_state:ok``."""
    _need_redis()
    with RedisCluster(3) as cluster:
        yield cluster
