"""The master's view of the store: every key, its value and revisions, by kind.

It is fed by the store's watch (``apply``) or replaced whole after the watch lost its place
(``replace``, which returns only what differs), and turns both into the deltas the workers
apply.  The Admin API reads from it, so what it answers is what the node serves.

For etcd the state is also written to a local last-known-good file (``write_snapshot``), so a
node can boot and serve while etcd is unreachable.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import msgspec

from .persist import write_atomically
from .store import Event, Item, join_key, split_key

log = logging.getLogger("pylon.config")


class ConfigState:
    def __init__(self) -> None:
        #: kind -> id -> item ("routes" -> "1" -> Item)
        self.kinds: dict[str, dict[str, Item]] = {}
        self.revision = 0

    def __len__(self) -> int:
        return sum(len(b) for b in self.kinds.values())

    def get(self, key: str) -> Item | None:
        kind, oid = split_key(key)
        return self.kinds.get(kind, {}).get(oid)

    def bucket(self, kind: str) -> dict[str, Item]:
        b = self.kinds.get(kind)
        if b is None:
            b = self.kinds[kind] = {}
        return b

    def items(self) -> Iterator[tuple[str, Item]]:
        for kind, bucket in self.kinds.items():
            for oid, item in bucket.items():
                yield join_key(kind, oid), item

    def apply(self, events: list[Event], revision: int) -> list[Event]:
        """Apply watch events; returns those that changed something (an event for a change
        already seen -- e.g. a re-delivery after a reconnect -- is dropped)."""
        out: list[Event] = []
        for ev in events:
            kind, oid = split_key(ev.key)
            bucket = self.bucket(kind)
            cur = bucket.get(oid)
            if cur is not None and cur.modified >= ev.revision:
                continue
            if ev.value is None:
                if cur is None:
                    continue
                del bucket[oid]
            else:
                bucket[oid] = Item(ev.value, ev.created, ev.revision)
            out.append(ev)
        self.revision = max(self.revision, revision)
        return out

    def replace(self, items: dict[str, Item], revision: int) -> list[Event]:
        """Make ``items`` the whole state; the events that lead there from the current one."""
        out: list[Event] = []
        seen: set[str] = set()
        for key, item in items.items():
            seen.add(key)
            cur = self.get(key)
            if cur is not None and cur.modified == item.modified and cur.value == item.value:
                continue
            out.append(Event(key, item.value, item.created, item.modified))
        for key, cur in list(self.items()):
            if key not in seen:
                out.append(Event(key, None, cur.created, revision))
        kinds: dict[str, dict[str, Item]] = {}
        for key, item in items.items():
            kind, oid = split_key(key)
            b = kinds.get(kind)
            if b is None:
                b = kinds[kind] = {}
            b[oid] = item
        self.kinds = kinds
        self.revision = revision
        return out

    def to_doc(self) -> dict[str, Any]:
        """The standalone document of the whole state (what a new worker starts from).  Each
        row carries the id its key gives it (APISIX sets ``value.id`` from the etcd key): a
        value written without one (or with another) must not get a positional id here, or
        the worker would keep it beside the key's later updates and after its deletion."""
        from .yaml_store import KEY_FIELD, items_to_doc
        rows: dict[str, Item] = {}
        for key, item in self.items():
            kind, oid = split_key(key)
            field = KEY_FIELD.get(kind, "id")
            value = item.value
            if kind != "credentials" and isinstance(value, dict) and \
                    str(value.get(field)) != oid:
                item = Item({**value, field: oid}, item.created, item.modified, item.lease)
            rows[key] = item
        return items_to_doc(rows, {})


def write_snapshot(path: str, rows: list[tuple[str, Item]], revision: int) -> None:
    """Atomically write ``rows`` to ``path`` (mode 0600).  Items are replaced, never
    mutated, so a list taken on the loop can be written from a thread."""
    write_atomically(path, msgspec.json.encode({
        "revision": revision,
        "items": {k: [i.value, i.created, i.modified] for k, i in rows}}), 0o600)


def load_snapshot(path: str) -> tuple[dict[str, Item], int] | None:
    """The last-known-good state, or None when there is none (or it is unreadable)."""
    try:
        with open(path, "rb") as f:
            raw = msgspec.json.decode(f.read())
        items = {k: Item(v[0], int(v[1]), int(v[2])) for k, v in raw["items"].items()}
        return items, int(raw["revision"])
    except FileNotFoundError:
        return None
    except (OSError, msgspec.DecodeError, KeyError, TypeError, ValueError, IndexError) as e:
        log.error("last-known-good config %s unusable: %s", path, e)
        return None
