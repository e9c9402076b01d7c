"""One node's link to its config store: the state, the one watch, and writes.

``ConfigHub`` owns the store instance and the ``ConfigState`` the watch keeps current, and is
the store's ``WatchSink``.  Whoever needs changes subscribes (the master forwards them to its
workers as deltas); the Admin API reads the state and writes through ``commit``, which returns
once the watch has delivered the write, so a client that reads after writing sees its write
(read-your-writes, on this node).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ConfigError
from .state import ConfigState, load_snapshot, write_snapshot
from .store import Event, Item, Op, Store, StoreError

log = logging.getLogger("pylon.config")

#: subscriber(events, revision, whole): ``whole`` True when the state was replaced by an
#: external edit of the file (subscribers resend everything), False for a delta
Subscriber = Callable[[list[Event], int, bool], None]


class ConfigHub:
    def __init__(self, store: Store, snapshot_path: str | None = None) -> None:
        self.store = store
        self.state = ConfigState()
        #: the last-known-good copy (etcd only): written after changes, read at boot when
        #: the store is unreachable
        self.snapshot_path = snapshot_path
        self.ok = True
        self.detail = ""
        self.subscribers: list[Subscriber] = []
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._snapshot_pending = False
        self._watch: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    # -- start / stop ----------------------------------------------------------------------
    async def load(self) -> None:
        """Read the whole store.  Unreachable etcd: the last-known-good copy; bad content
        or no copy: ConfigError naming the store."""
        store = self.store
        try:
            items, rev = await store.load()
        except StoreError as e:
            snap = load_snapshot(self.snapshot_path) if self.snapshot_path else None
            if snap is None:
                raise ConfigError(f"cannot load {store.where}: {e}") from None
            items, rev = snap
            self.status(False, str(e))
            log.error("serving the last-known-good copy %s (revision %d, %d keys) until "
                      "%s is back", self.snapshot_path, rev, len(items), store.where)
        except ConfigError as e:
            raise ConfigError(f"cannot load {store.where}: {e}") from None
        self.state.replace(items, rev)
        log.info("config revision %d read from %s (%d keys)", rev, store.where, len(items))

    def start_watch(self) -> None:
        self._stop = asyncio.Event()
        self._watch = asyncio.get_running_loop().create_task(
            self.store.watch(self.state.revision, self, self._stop))

    async def close(self) -> None:
        self._stop.set()
        if self._watch is not None:
            try:
                await asyncio.wait_for(self._watch, 5.0)
            except (TimeoutError, asyncio.CancelledError):
                self._watch.cancel()
            except Exception:  # pragma: no cover - watch() never raises by contract
                log.exception("config watch failed")
        await self.store.close()

    # -- WatchSink ---------------------------------------------------------------------------
    def events(self, events: list[Event], revision: int) -> None:
        changed = self.state.apply(events, revision)
        if changed:
            self._publish(changed, revision, False)
        self._seen(revision)

    def reset(self, items: dict[str, Item], revision: int) -> None:
        changed = self.state.replace(items, revision)
        whole = self.store.name == "yaml"
        if changed or whole:
            log.info("config revision %d re-read from %s: %d changes", revision,
                     self.store.where, len(changed))
            self._publish(changed, revision, whole)
        self._seen(revision)

    def status(self, ok: bool, detail: str) -> None:
        if ok and not self.ok:
            log.warning("%s reachable again; config follows it from revision %d",
                        self.store.where, self.state.revision)
        elif not ok and self.ok:
            log.error("%s unreachable (%s): serving config revision %d, retrying",
                      self.store.where, detail, self.state.revision)
        self.ok = ok
        self.detail = detail

    def _publish(self, events: list[Event], revision: int, whole: bool) -> None:
        for sub in self.subscribers:
            try:
                sub(events, revision, whole)
            except Exception:
                log.exception("config subscriber failed")
        if self.snapshot_path:
            self._schedule_snapshot(self.snapshot_path)

    # -- writes --------------------------------------------------------------------------------
    async def commit(self, ops: Sequence[Op], timeout: float = 5.0) -> int:
        """Write ``ops`` all-or-nothing; return once this node's watch delivered them."""
        rev = await self.store.commit(ops)
        if not await self.wait_revision(rev, timeout):
            log.warning("write at revision %d not seen by the watch within %.0f s", rev,
                        timeout)
        return rev

    def _seen(self, revision: int) -> None:
        if not self._waiters:
            return
        keep = []
        for r, fut in self._waiters:
            if r <= revision:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((r, fut))
        self._waiters = keep

    async def wait_revision(self, revision: int, timeout: float) -> bool:
        if self.state.revision >= revision:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((revision, fut))
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            return False

    def _schedule_snapshot(self, path: str) -> None:
        """Save the last-known-good copy to ``path`` at most once a second, in a thread."""
        if self._snapshot_pending:
            return
        self._snapshot_pending = True

        async def save() -> None:
            await asyncio.sleep(1.0)
            self._snapshot_pending = False
            rows = list(self.state.items())
            try:
                await asyncio.to_thread(write_snapshot, path, rows, self.state.revision)
            except OSError as e:
                log.error("cannot save the last-known-good config %s: %s",
                          self.snapshot_path, e)

        asyncio.get_running_loop().create_task(save())


def make_hub(settings: Any) -> ConfigHub:
    from .store import make_store
    store = make_store(settings)
    return ConfigHub(store, settings.etcd_snapshot if store.name == "etcd" else None)
