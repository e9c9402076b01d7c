"""The standalone file (YAML or JSON, APISIX layout) as a config store.

The file holds one list per kind (``routes:``, ``upstreams:`` ...); each object is one key
(``routes/<id>``; objects without an id are ``arr_<n>`` as in APISIX).  Revisions are a
counter owned by this store: a key keeps its revisions while its value is unchanged, so
re-reading the file after our own write, or an edit elsewhere in it, does not touch it.

* Edits made behind our back are seen through inotify (watchfiles, 50 ms debounce) with a
  1 s stat poll behind it, re-read whole, and handed to the sink as a ``reset`` (the master
  diffs it, and workers get only what changed).  As in APISIX, a YAML file applies only when
  it ends with ``#END`` (a file still being written has none): until then the last good
  config keeps serving and a warning says why, once per change of the file.  At start, a
  file without the marker is refused like one that does not parse.
* ``commit`` (the Admin API) checks every ``Op.expect`` against the current keys -- after
  re-reading the file if it changed on disk since we last read it, so an external edit is
  never overwritten -- then rewrites the file atomically (tmp + fsync + rename) in a thread,
  so the master's loop keeps serving.  ``ttl`` keys are expired by this process (the file
  has no leases); a restart forgets pending expiries -- documented in docs/config-model.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError
from . import loader
from .persist import remove_stale_temps, write_doc_atomically
from .store import Conflict, Event, Item, Op, StoreError, WatchSink, split_key

log = logging.getLogger("pylon.config")

#: kinds written back to the file, in the order APISIX documents them
FILE_KINDS = ("routes", "services", "upstreams", "consumers", "consumer_groups",
              "plugin_configs", "global_rules", "ssls", "protos", "stream_routes",
              "plugin_metadata", "secrets")
#: the field that names an object in its list (everything else: ``id``)
KEY_FIELD = {"consumers": "username", "plugin_metadata": "id"}


def doc_to_items(doc: Any) -> dict[str, dict[str, Any]]:
    """Keys and values of a standalone document.  Unknown top-level keys and non-object
    rows are left to the workers' validation, which reports them with their position."""
    values: dict[str, dict[str, Any]] = {}
    if not isinstance(doc, dict):
        return values
    for kind, rows in doc.items():
        if not isinstance(rows, list):
            continue
        field = KEY_FIELD.get(kind, "id")
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                continue
            raw = row.get(field)
            if kind == "consumers" and raw is None and isinstance(row.get("id"), str) \
                    and "/credentials/" in row["id"]:
                raw = row["id"]                  # a credential: id "jack/credentials/c1"
                row = {**row, "id": raw.rsplit("/", 1)[-1]}    # stored as the Admin API has it
            oid = str(raw) if isinstance(raw, (str, int)) and not isinstance(raw, bool) \
                else f"arr_{i + 1}"
            key = f"{kind}/{oid}"
            if key not in values:                # duplicates: the workers reject the 2nd
                values[key] = row
    return values


def items_to_doc(items: dict[str, Item], base: dict[str, Any]) -> dict[str, Any]:
    """The standalone document holding ``items``; other top-level keys of ``base`` kept."""
    lists: dict[str, list[Any]] = {}
    for key, item in items.items():
        kind, oid = split_key(key)
        value = item.value
        if kind == "credentials":            # a consumers row: id "jack/credentials/c1"
            kind = "consumers"
            value = {**value, "id": oid} if isinstance(value, dict) else value
        lists.setdefault(kind, []).append(value)
    out = {k: v for k, v in base.items() if k not in lists and k not in FILE_KINDS}
    for kind in FILE_KINDS:
        if kind in lists:
            out[kind] = lists.pop(kind)
        elif kind in base:
            out[kind] = []
    out.update(lists)
    return out


class YamlStore:
    name = "yaml"

    def __init__(self, path: str) -> None:
        self.path = path
        self.where = path
        self.revision = 0
        self.items: dict[str, Item] = {}
        self.doc: dict[str, Any] = {}
        self._stat: tuple[int, int, int] | None = None
        self._sink: WatchSink | None = None
        self._lock = asyncio.Lock()
        self._expiry: dict[str, float] = {}

    # -- reading ---------------------------------------------------------------------------
    def read_doc(self, initial: bool) -> Any:
        """Parse the file (raises ConfigError with a location)."""
        path = self.path
        try:
            st = os.stat(path)
            # remember what was read even when it is refused: an unchanged broken file is
            # reported once, not on every poll
            self._stat = (st.st_mtime_ns, st.st_size, st.st_ino)
            with open(path, "rb") as f:
                doc = loader.parse_standalone(f.read(), path)
        except OSError as e:
            raise ConfigError(e.strerror or str(e), path) from None
        if doc is None and not initial:
            # an editor that truncates then writes shows an empty file for a moment;
            # never let that drop every route
            raise ConfigError("the file is empty (write 'routes: []' to remove every route)",
                              path)
        if doc is not None and not isinstance(doc, dict):
            raise ConfigError(f"top level must be a mapping, not {type(doc).__name__}", path)
        return doc or {}

    def _take(self, doc: dict[str, Any]) -> list[Event]:
        """Make ``doc`` the current content; the events that turn the old keys into it."""
        values = doc_to_items(doc)
        old = self.items
        new: dict[str, Item] = {}
        events: list[Event] = []
        bumped = False
        for key, value in values.items():
            prev = old.get(key)
            if prev is not None and prev.value == value:
                new[key] = prev
                continue
            if not bumped:
                self.revision += 1
                bumped = True
            item = Item(value, prev.created if prev else self.revision, self.revision)
            new[key] = item
            events.append(Event(key, value, item.created, self.revision))
        for key, prev in old.items():
            if key not in values:
                if not bumped:
                    self.revision += 1
                    bumped = True
                events.append(Event(key, None, prev.created, self.revision))
                self._expiry.pop(key, None)
        self.items = new
        self.doc = doc
        return events

    async def load(self) -> tuple[dict[str, Item], int]:
        # temporary files of a write interrupted by a kill -9 of the previous master
        remove_stale_temps(os.path.dirname(os.path.abspath(self.path)))  # noqa: ASYNC240
        self._take(self.read_doc(initial=True))
        return dict(self.items), self.revision

    def changed(self) -> bool:
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return (st.st_mtime_ns, st.st_size, st.st_ino) != self._stat

    def _reread(self) -> bool:
        """Pick up an edit made behind our back; True when the content changed."""
        try:
            doc = self.read_doc(initial=False)
        except ConfigError as e:
            # a missing #END is most often a write in progress: APISIX warns about it
            level = logging.WARNING if isinstance(e, loader.MissingEndMark) else logging.ERROR
            log.log(level, "config %s not applied, revision %d keeps serving: %s", self.path,
                    self.revision, e)
            return False
        events = self._take(doc)
        if events and self._sink is not None:
            self._sink.reset(dict(self.items), self.revision)
        return bool(events)

    # -- watching --------------------------------------------------------------------------
    async def watch(self, revision: int, sink: WatchSink, stop: asyncio.Event) -> None:
        import watchfiles

        self._sink = sink
        if revision != self.revision:            # changed between load and watch
            sink.reset(dict(self.items), self.revision)
        path = os.path.abspath(self.path)  # noqa: ASYNC240 - a name, no file is read
        directory = os.path.dirname(path)

        def check() -> None:
            if self.changed() and not self._lock.locked():
                self._reread()

        async def events() -> None:
            try:
                async for _changes in watchfiles.awatch(
                        directory, debounce=50, step=20, stop_event=stop,
                        watch_filter=lambda _c, p: os.path.abspath(p) == path,
                        recursive=False):
                    check()
            except Exception as e:  # noqa: BLE001 # pragma: no cover - no inotify: polled
                log.warning("file watch unavailable (%s); polling", e)

        task = asyncio.get_running_loop().create_task(events())
        try:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), 1.0)
                except TimeoutError:
                    check()
                    await self._expire()
        finally:
            task.cancel()
            self._sink = None

    async def _expire(self) -> None:
        now = time.monotonic()
        due = [k for k, t in self._expiry.items() if t <= now]
        if due:
            try:
                await self.commit([Op(k, None) for k in due if k in self.items])
            except StoreError as e:
                log.error("could not expire %s: %s", ", ".join(due), e)

    # -- writing ---------------------------------------------------------------------------
    async def commit(self, ops: Sequence[Op]) -> int:
        async with self._lock:
            if self.changed():
                self._reread()                   # never overwrite an edit made elsewhere
            items = dict(self.items)
            for op in ops:
                cur = items.get(op.key)
                if op.expect is not None and (cur.modified if cur else 0) != op.expect:
                    raise Conflict(op.key)
                if op.value is None:
                    items.pop(op.key, None)
                else:
                    items[op.key] = Item(op.value, cur.created if cur else 0, 0)
            rev = self.revision + 1
            events: list[Event] = []
            for op in ops:
                item = items.get(op.key)
                if item is None:
                    prev = self.items.get(op.key)
                    if prev is not None:
                        events.append(Event(op.key, None, prev.created, rev))
                    continue
                item.created = item.created or rev
                item.modified = rev
                events.append(Event(op.key, item.value, item.created, rev))
            doc = items_to_doc(items, self.doc)
            try:
                await asyncio.to_thread(write_doc_atomically, self.path, doc)
                st = os.stat(self.path)
            except OSError as e:
                raise StoreError(f"cannot write {self.path}: {e.strerror or e}") from None
            self._stat = (st.st_mtime_ns, st.st_size, st.st_ino)
            self.revision = rev
            self.items = items
            self.doc = doc
            now = time.monotonic()
            for op in ops:
                if op.value is None or not op.ttl:
                    self._expiry.pop(op.key, None)
                else:
                    self._expiry[op.key] = now + op.ttl
        if self._sink is not None and events:
            self._sink.events(events, rev)
        return rev

    async def close(self) -> None:
        return None


__all__ = ["YamlStore", "doc_to_items", "items_to_doc"]
