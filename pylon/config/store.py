"""Config stores: where the declarative configuration lives.

The configuration is a set of keys, laid out as APISIX lays them out in etcd (prefix stripped):
``routes/1``, ``upstreams/7``, ``consumers/jack``, ``consumers/jack/credentials/c1``,
``secrets/vault/1``, ``plugin_metadata/http-logger``, each holding one JSON object.  Every
change gets a revision (etcd's own revision; a counter for the file store) and every key
carries the revision that created it and the one that last changed it -- the ``createdIndex``
and ``modifiedIndex`` of the Admin API.

One small interface, two stores, picked by ``deployment.config_provider``:

* ``yaml`` -- the standalone file (``YamlStore``), also writable through the Admin API;
* ``etcd`` -- etcd v3 (``EtcdStore``), shared by a cluster of nodes.

The master holds the node's single store instance: one connection and one watch per node,
fanned out to the workers as deltas (APISIX opens a long-poll per worker).  A store never runs
in a worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import ConfigError, PylonError


@dataclass(slots=True)
class Item:
    """One key's current value and its revisions."""

    value: dict[str, Any]
    created: int
    modified: int
    #: etcd lease id (0: none) -- informational; the store owns expiry
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Event:
    """A key changed at ``revision``: ``value`` None means it was deleted."""

    key: str
    value: dict[str, Any] | None
    created: int
    revision: int


@dataclass(frozen=True, slots=True)
class Op:
    """One write of a transaction.

    ``value`` None deletes ``key``.  ``expect`` guards against lost updates: ``None`` writes
    unconditionally, ``0`` requires that the key does not exist, ``n`` that its modified
    revision is still ``n``.  ``ttl`` (seconds) makes a put expire, as ``?ttl=`` in APISIX.
    """

    key: str
    value: dict[str, Any] | None
    expect: int | None = None
    ttl: int | None = None


class StoreError(PylonError):
    """The store could not be reached or refused the operation (Admin API: 503)."""


class Conflict(StoreError):
    """An ``Op.expect`` did not hold: somebody else changed the key first (Admin API: 503)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"{key} was changed concurrently; retry with the current version")
        self.key = key


class WatchSink(Protocol):
    """Where a store's watch delivers what it sees (the master)."""

    def events(self, events: list[Event], revision: int) -> None:
        """Changes in revision order; ``revision`` is the store revision after them."""

    def reset(self, items: dict[str, Item], revision: int) -> None:
        """The complete state replaces what was known (after a compaction made the watch
        lose its place, or an edit made behind the store's back).  The sink diffs it."""

    def status(self, ok: bool, detail: str) -> None:
        """Reachability changed (``ok`` False: serving the last config, retrying)."""


class Store(Protocol):
    name: str
    #: human-readable location for messages ("conf/apisix.yaml", "etcd http://...:2379/apisix")
    where: str

    async def load(self) -> tuple[dict[str, Item], int]:
        """Every key with its item, and the store revision they are current at.

        Raises ConfigError (bad content, with a location) or StoreError (unreachable)."""

    async def watch(self, revision: int, sink: WatchSink, stop: asyncio.Event) -> None:
        """Deliver every change after ``revision`` to ``sink`` until ``stop`` is set.
        Never raises: outages are retried with back-off and reported through
        ``sink.status``; a lost position is recovered with ``sink.reset``."""

    async def commit(self, ops: Sequence[Op]) -> int:
        """Apply ``ops`` all-or-nothing; returns the revision of the change.  The change is
        also delivered through the watch.  Raises Conflict or StoreError."""

    async def close(self) -> None:
        """Release connections."""


# -- keys ------------------------------------------------------------------------------------
def split_key(key: str) -> tuple[str, str]:
    """``"routes/1"`` -> ``("routes", "1")``; credentials are their own kind:
    ``"consumers/jack/credentials/c1"`` -> ``("credentials", "jack/credentials/c1")``."""
    kind, _, oid = key.partition("/")
    if kind == "consumers" and "/credentials/" in oid:
        return "credentials", oid
    return kind, oid


def join_key(kind: str, oid: str) -> str:
    return f"consumers/{oid}" if kind == "credentials" else f"{kind}/{oid}"


def make_store(settings: Any) -> Store:
    provider = settings.config_provider
    if provider == "yaml":
        from .yaml_store import YamlStore
        return YamlStore(settings.standalone_file)
    if provider == "etcd":
        from .etcd_store import EtcdStore
        return EtcdStore(settings.etcd)
    raise ConfigError(f"unknown config_provider {provider!r}", "deployment.config_provider")
