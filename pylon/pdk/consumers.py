"""Consumers, their credentials and groups, as an authentication plugin sees them.

An authentication plugin finds who is calling with one dict lookup:
``ctx.consumers.find("key-auth", key)`` returns the ``Credential`` (consumer, credential id,
prepared consumer configuration) that holds that key.  The tables are built per config
snapshot by ``pylon.proxy.consumers.compile_consumers``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

_C = TypeVar("_C", bound=Hashable)


@dataclass(eq=False, slots=True)
class Consumer:
    username: str
    group_id: str | None = None
    labels: dict[str, str] | None = None
    desc: str | None = None
    #: non-auth plugins of the group merged with the consumer's own (raw configurations)
    plugins: dict[str, Any] = field(default_factory=dict)
    #: route chain -> that chain merged with this consumer's plugins (built on first use)
    chains: dict[Hashable, Any] = field(default_factory=dict)
    #: (route chain, this consumer's plugins) -> the merged chain; set by the compiler
    merge: Callable[[Any, dict[str, Any]], Any] | None = None

    @property
    def username_b(self) -> bytes:
        return self.username.encode("latin-1")

    @property
    def custom_id(self) -> str | None:
        return self.labels.get("custom_id") if self.labels else None

    def chain_for(self, route_chain: _C) -> _C:
        """The route's chain with this consumer's plugins merged in (consumer wins)."""
        c: _C | None = self.chains.get(route_chain)
        if c is None:
            if not self.plugins:
                return route_chain
            assert self.merge is not None
            c = self.merge(route_chain, self.plugins)
            if len(self.chains) > 10_000:
                self.chains.clear()
            self.chains[route_chain] = c
        return c


@dataclass(eq=False, slots=True)
class Credential:
    consumer: Consumer
    id: str | None          # credential id (None: the auth plugin sits on the consumer)
    plugin: str
    conf: Any               # prepared consumer configuration of the auth plugin
    #: what ``attach_consumer`` adds to the upstream request (made on first use)
    headers: tuple[tuple[bytes, bytes], ...] | None = None

    def upstream_headers(self) -> tuple[tuple[bytes, bytes], ...]:
        """``X-Consumer-Username``, ``X-Credential-Identifier`` (with a credential id) and
        ``X-Consumer-Custom-Id`` (with a ``custom_id`` label), as sent upstream."""
        hs = self.headers
        if hs is None:
            cons = self.consumer
            pairs = [(b"X-Consumer-Username", cons.username_b)]
            if self.id is not None:
                pairs.append((b"X-Credential-Identifier", self.id.encode("latin-1")))
            cid = cons.custom_id
            if cid is not None:
                pairs.append((b"X-Consumer-Custom-Id", cid.encode("latin-1")))
            hs = self.headers = tuple(pairs)
        return hs


@dataclass(eq=False)
class ConsumerIndex:
    consumers: dict[str, Consumer] = field(default_factory=dict)
    #: auth plugin -> key -> credential
    by_key: dict[str, dict[str, Credential]] = field(default_factory=dict)
    #: auth plugin -> every credential (plugins without a unique key field, e.g. custom ones)
    all: dict[str, list[Credential]] = field(default_factory=dict)
    #: verification results auth plugins may keep (e.g. a JWT signature already checked):
    #: it dies with this index, i.e. with any change to consumers, so a result never
    #: outlives the key it was checked with.  Bounded by ``remember``.
    memo: dict[Hashable, Any] = field(default_factory=dict)

    def remember(self, key: Hashable, value: Any) -> None:
        memo = self.memo
        if len(memo) >= 10_000:
            memo.clear()
        memo[key] = value

    def find(self, plugin: str, key: str) -> Credential | None:
        d = self.by_key.get(plugin)
        return d.get(key) if d is not None else None

    def credentials(self, plugin: str) -> list[Credential]:
        return self.all.get(plugin, [])


#: the index of a snapshot without consumers
EMPTY_INDEX = ConsumerIndex()

__all__ = ["EMPTY_INDEX", "Consumer", "ConsumerIndex", "Credential"]
