"""Fixtures for the config-store tests: a real etcd per test (``etcd``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..etcd_server import EtcdServer, find_etcd


@pytest.fixture
def etcd() -> Iterator[EtcdServer]:
    """A fresh single-node etcd on free loopback ports, removed after the test.  Skips (does
    not fail) only when no etcd binary is installed."""
    binary = find_etcd()
    if binary is None:
        pytest.skip("no etcd server binary (/usr/bin/etcd or etcd on PATH); "
                    "install it with: apt-get install etcd-server")
    with EtcdServer(binary) as server:
        yield server
