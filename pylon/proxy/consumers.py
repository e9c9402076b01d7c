"""Consumers, their credentials and groups, compiled into lookup tables per snapshot.

The tables (``pylon.pdk.consumers``: ``ConsumerIndex``, ``Consumer``, ``Credential``) let
an authentication plugin find who is calling with one dict lookup.  The key field of each
auth plugin is its module's ``consumer_key``; a key used twice for one plugin is refused (the
Admin API refuses the write; a file that has it keeps the first and reports the second).

Secret fields (each plugin's ``encrypt_fields``) are stored encrypted with the node keyring
(APISIX ``data_encryption``) and decrypted here, once per compile.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from ..model.validate import Rejection
from ..pdk.consumers import Consumer, ConsumerIndex, Credential
from .chain import ChainBuilder, Opener, merge
from .registry import PluginConfigError, Registry, map_fields

log = logging.getLogger("pylon.config")


def decrypt_fields(conf: dict[str, Any], fields: Iterable[str],
                   keyring: Opener | None) -> dict[str, Any]:
    """A copy of ``conf`` with encrypted ``fields`` (dotted paths) opened; a value that
    does not decrypt was written in plain text (a hand-edited file) and is used as it is."""
    if keyring is None:
        return conf
    return map_fields(conf, fields, keyring.open)


def compile_consumers(consumers: dict[str, Any], credentials: dict[str, Any],
                      groups: dict[str, Any], builder: ChainBuilder
                      ) -> tuple[ConsumerIndex, list[Rejection]]:
    """Raw consumer / credential / consumer group values → a ConsumerIndex and rejections.

    ``credentials`` is keyed ``"jack/credentials/c1"`` (the store's id form); secret fields
    are opened with the builder's keyring."""
    reg = builder.registry
    keyring = builder.keyring
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
        raw_group = raw.get("group_id")
        group_id = str(raw_group) if raw_group is not None else None
        where = f"consumers/{name}"
        if group_id is not None and group_id not in group_plugins:
            rejected.append(Rejection("consumers", name, f"{where}.group_id",
                                      f"consumer group {group_id!r} not found (or rejected)"))
            continue
        own = raw.get("plugins") or {}
        non_auth = {n: c for n, c in own.items() if not _is_auth(reg, n)}
        err = reg.check_plugins(non_auth) if non_auth else None
        if err:
            rejected.append(Rejection("consumers", name, f"{where}.plugins", err))
            continue
        cons = Consumer(username=name, group_id=group_id, labels=raw.get("labels"),
                        desc=raw.get("desc"),
                        plugins=merge(group_plugins.get(group_id) if group_id else None,
                                      non_auth),
                        merge=builder.merge_consumer)
        idx.consumers[name] = cons
        for plugin, conf in own.items():
            if _is_auth(reg, plugin):
                add(cons, None, plugin, conf, where, "consumers", name)

    for cid in sorted(credentials):
        raw = credentials[cid]
        username, _, cred_id = cid.partition("/credentials/")
        holder = idx.consumers.get(username)
        where = f"consumers/{cid}"
        if holder is None or not isinstance(raw, dict):
            continue            # deleted with (or rejected with) its consumer
        for plugin, conf in (raw.get("plugins") or {}).items():
            if not _is_auth(reg, plugin):
                rejected.append(Rejection("credentials", cid, f"{where}.plugins",
                                          f"plugin {plugin} is not an authentication plugin"))
                continue
            add(holder, cred_id, plugin, conf, where, "credentials", cid)
    return idx, rejected


def _is_auth(reg: Registry, name: str) -> bool:
    spec = reg.get(name)
    return spec is not None and spec.type == "auth"


__all__ = [
    "compile_consumers",
    "decrypt_fields",
]
