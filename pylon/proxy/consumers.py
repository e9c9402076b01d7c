"""Consumers, their credentials and groups, compiled into lookup tables per snapshot.

An authentication plugin finds who is calling with one dict lookup:
``ctx.consumers.find("key-auth", key)`` returns the ``Credential`` (consumer, credential id,
prepared consumer configuration) that holds that key.  The key field of each auth plugin is
its module's ``consumer_key``; a key used twice for one plugin is refused (the Admin API
refuses the write; a file that has it keeps the first and reports the second).

Secret fields (each plugin's ``encrypt_fields``) are stored encrypted with the node keyring
(APISIX ``data_encryption``) and decrypted here, once per compile.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..model.validate import Rejection
from .chain import EMPTY, Chain, ChainBuilder, merge
from .registry import PluginConfigError, map_fields

log = logging.getLogger("pylon.config")

#: the keyring that opens encrypted fields (set by the process at start; None: stored plain)
KEYRING: Any = None


@dataclass(eq=False, slots=True)
class Consumer:
    username: str
    group_id: str | None = None
    labels: dict[str, str] | None = None
    desc: str | None = None
    #: non-auth plugins of the group merged with the consumer's own (raw configurations)
    plugins: dict[str, Any] = field(default_factory=dict)
    #: route chain -> that chain merged with this consumer's plugins (built on first use)
    chains: dict[Chain, Chain] = field(default_factory=dict)
    builder: ChainBuilder | None = None

    @property
    def username_b(self) -> bytes:
        return self.username.encode("latin-1")

    @property
    def custom_id(self) -> str | None:
        return self.labels.get("custom_id") if self.labels else None

    def chain_for(self, route_chain: Chain) -> Chain:
        """The route's chain with this consumer's plugins merged in (consumer wins)."""
        c = self.chains.get(route_chain)
        if c is None:
            if not self.plugins:
                return route_chain
            assert self.builder is not None
            merged = self.builder.build(merge(route_chain.confs or {}, self.plugins))
            mine = frozenset(self.plugins)
            c = Chain(merged.rewrite, merged.access, merged.before_proxy,
                      merged.header_filter, merged.body_filter, merged.log, merged.confs,
                      merged.names, tuple(h for h in merged.rewrite if h.name in mine),
                      merged.upstreams)
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
    memo: dict[Any, Any] = field(default_factory=dict)

    def remember(self, key: Any, value: Any) -> None:
        memo = self.memo
        if len(memo) >= 10_000:
            memo.clear()
        memo[key] = value

    def find(self, plugin: str, key: str) -> Credential | None:
        d = self.by_key.get(plugin)
        return d.get(key) if d is not None else None

    def credentials(self, plugin: str) -> list[Credential]:
        return self.all.get(plugin, [])


EMPTY_INDEX = ConsumerIndex()


def decrypt_fields(conf: dict[str, Any], fields: Iterable[str], keyring: Any) -> dict[str, Any]:
    """A copy of ``conf`` with encrypted ``fields`` (dotted paths) opened; a value that
    does not decrypt was written in plain text (a hand-edited file) and is used as it is."""
    if keyring is None:
        return conf
    return map_fields(conf, fields, keyring.open)


def encrypt_fields(conf: dict[str, Any], fields: Iterable[str], keyring: Any) -> dict[str, Any]:
    """A copy of ``conf`` with ``fields`` encrypted (values already encrypted are kept)."""
    return map_fields(conf, fields, keyring.seal)


def compile_consumers(consumers: dict[str, Any], credentials: dict[str, Any],
                      groups: dict[str, Any], builder: ChainBuilder,
                      keyring: Any = None) -> tuple[ConsumerIndex, list[Rejection]]:
    """Raw consumer / credential / consumer group values → a ConsumerIndex and rejections.

    ``credentials`` is keyed ``"jack/credentials/c1"`` (the store's id form)."""
    reg = builder.registry
    rejected: list[Rejection] = []
    idx = ConsumerIndex()
    owner: dict[tuple[str, str], str] = {}      # (plugin, key) -> "consumers/jack..."

    def add(cons: Consumer, cred_id: str | None, plugin: str, raw: Any, where: str,
            kind: str, oid: str) -> None:
        spec = reg.get(plugin)
        if spec is None:
            rejected.append(Rejection(kind, oid, f"{where}.plugins",
                                      f"unknown plugin [{plugin}]"))
            return
        conf = decrypt_fields(raw, spec.encrypt_fields, keyring) if isinstance(raw, dict) \
            else raw
        try:
            prepared = builder.prepare_consumer(plugin, conf)
        except (PluginConfigError, ValueError) as e:
            rejected.append(Rejection(kind, oid, f"{where}.plugins.{plugin}", str(e)))
            return
        cred = Credential(cons, cred_id, plugin, prepared)
        kf = spec.consumer_key
        if kf is not None:
            key = conf.get(kf) if isinstance(conf, dict) else None
            if isinstance(key, str):
                prev = owner.get((plugin, key))
                if prev is not None:
                    rejected.append(Rejection(kind, oid, f"{where}.plugins.{plugin}.{kf}",
                                              f"duplicate key found with consumer: {prev}"))
                    return
                owner[(plugin, key)] = cons.username
                idx.by_key.setdefault(plugin, {})[key] = cred
        idx.all.setdefault(plugin, []).append(cred)

    group_plugins: dict[str, dict[str, Any]] = {}
    for gid, g in groups.items():
        plugins = g.get("plugins") if isinstance(g, dict) else None
        err = reg.check_plugins(plugins) if plugins else None
        if err:
            rejected.append(Rejection("consumer_groups", gid, f"consumer_groups/{gid}.plugins",
                                      err))
            continue
        group_plugins[gid] = {n: c for n, c in (plugins or {}).items()
                              if not _is_auth(reg, n)}

    for name in sorted(consumers):
        raw = consumers[name]
        if not isinstance(raw, dict):
            continue
        gid = raw.get("group_id")
        gid = str(gid) if gid is not None else None
        where = f"consumers/{name}"
        if gid is not None and gid not in group_plugins:
            rejected.append(Rejection("consumers", name, f"{where}.group_id",
                                      f"consumer group {gid!r} not found (or rejected)"))
            continue
        own = raw.get("plugins") or {}
        non_auth = {n: c for n, c in own.items() if not _is_auth(reg, n)}
        err = reg.check_plugins(non_auth) if non_auth else None
        if err:
            rejected.append(Rejection("consumers", name, f"{where}.plugins", err))
            continue
        cons = Consumer(username=name, group_id=gid, labels=raw.get("labels"),
                        desc=raw.get("desc"),
                        plugins=merge(group_plugins.get(gid) if gid else None, non_auth),
                        builder=builder)
        idx.consumers[name] = cons
        for plugin, conf in own.items():
            if _is_auth(reg, plugin):
                add(cons, None, plugin, conf, where, "consumers", name)

    for cid in sorted(credentials):
        raw = credentials[cid]
        username, _, cred_id = cid.partition("/credentials/")
        cons = idx.consumers.get(username)
        where = f"consumers/{cid}"
        if cons is None or not isinstance(raw, dict):
            continue            # deleted with (or rejected with) its consumer
        for plugin, conf in (raw.get("plugins") or {}).items():
            if not _is_auth(reg, plugin):
                rejected.append(Rejection("credentials", cid, f"{where}.plugins",
                                          f"plugin {plugin} is not an authentication plugin"))
                continue
            add(cons, cred_id, plugin, conf, where, "credentials", cid)
    return idx, rejected


def _is_auth(reg: Any, name: str) -> bool:
    spec = reg.get(name)
    return spec is not None and spec.type == "auth"


__all__ = [
    "EMPTY",
    "EMPTY_INDEX",
    "Consumer",
    "ConsumerIndex",
    "Credential",
    "compile_consumers",
    "decrypt_fields",
    "encrypt_fields",
]
