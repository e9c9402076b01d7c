"""The batch processor every log sink shares (APISIX ``batch-processor`` semantics).

A plugin's ``log`` hook builds an entry (a dict) synchronously and ``push``es it; nothing else
happens on the request path.  Entries gather into a batch which is sent, by a background
asyncio task, when

* it holds ``batch_max_size`` entries (default 1000),
* no entry has arrived for ``inactive_timeout`` seconds (default 5),
* its first entry is ``buffer_duration`` seconds old (default 60).

A failed send (the sender raises) is retried ``max_retry_count`` times (default 0),
``retry_delay`` seconds apart (default 1); then the batch is dropped and counted.  Batches of
one processor are sent one after the other.  Everything waiting (the open batch and the
batches queued for sending) is bounded by ``max_pending`` entries: beyond it an entry is
dropped and counted in ``dropped`` — a request never waits for a sink and memory never grows
without bound.  Both kinds of loss are also counted node-wide in the Prometheus counter
``pylon_log_entries_dropped_total{plugin}`` (``observe/metrics.py``).

``processor(plugin, route_id, key, conf, make_sender)`` returns the one processor for that (plugin,
route, configuration) in this process, as APISIX's ``batch-processor-manager`` does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from . import metrics

log = logging.getLogger("pylon.batch")

#: entries waiting per processor (open batch + queued batches) before new ones are dropped
MAX_PENDING = 10000
#: a processor with nothing pending and no entry for this long is forgotten by the manager
STALE_AFTER = 1800.0

Sender = Callable[[list[Any]], Awaitable[Any]]

#: the batch options of APISIX's ``batch_processor_manager:wrap_schema``
SCHEMA_PROPERTIES: dict[str, Any] = {
    "name": {"type": "string"},
    "batch_max_size": {"type": "integer", "minimum": 1, "default": 1000},
    "inactive_timeout": {"type": "integer", "minimum": 1, "default": 5},
    "buffer_duration": {"type": "integer", "minimum": 1, "default": 60},
    "max_retry_count": {"type": "integer", "minimum": 0, "default": 0},
    "retry_delay": {"type": "integer", "minimum": 0, "default": 1},
}


def wrap_schema(schema: dict[str, Any], default_name: str) -> dict[str, Any]:
    """``schema`` with the batch options added (``name`` defaulting to ``default_name``)."""
    props = dict(SCHEMA_PROPERTIES)
    props["name"] = {"type": "string", "default": default_name}
    return {**schema, "properties": {**props, **schema.get("properties", {})}}


class BatchProcessor:
    def __init__(self, sender: Sender, *, name: str = "log buffer", batch_max_size: int = 1000,
                 inactive_timeout: float = 5, buffer_duration: float = 60,
                 max_retry_count: int = 0, retry_delay: float = 1, backoff: float = 1.0,
                 max_pending: int = MAX_PENDING,
                 loop: asyncio.AbstractEventLoop | None = None, plugin: str | None = None
                 ) -> None:
        self.sender = sender
        self.name = name
        #: the label of this processor's drops in ``pylon_log_entries_dropped_total``
        self.drop_labels = f'plugin="{metrics.escape(plugin or name)}"'
        self.batch_max_size = max(1, int(batch_max_size))
        self.inactive_timeout = float(inactive_timeout)
        self.buffer_duration = float(buffer_duration)
        self.max_retry_count = int(max_retry_count)
        self.retry_delay = float(retry_delay)
        #: each retry waits ``backoff`` times longer than the one before (1: a fixed delay)
        self.backoff = float(backoff)
        self.max_pending = max_pending
        self.loop = loop
        self.entries: list[Any] = []
        self.queue: deque[list[Any]] = deque()
        self.queued = 0                # entries in ``queue`` and in the batch being sent
        self.first_at = 0.0
        self.last_at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        # counters (exported by metrics)
        self.dropped = 0               # entries refused because ``max_pending`` was reached
        self.failed = 0                # entries of batches dropped after all retries
        self.sent = 0                  # entries sent successfully
        self.batches = 0               # batches sent successfully

    # -- request path ---------------------------------------------------------------------
    def push(self, entry: Any) -> bool:
        """Add an entry; never blocks.  False when it was dropped (too much pending)."""
        if len(self.entries) + self.queued >= self.max_pending:
            self.dropped += 1
            metrics.inc("pylon_log_entries_dropped_total", self.drop_labels)
            return False
        loop = self.loop
        if loop is None:
            loop = self.loop = asyncio.get_running_loop()
        now = loop.time()
        self.last_at = now
        entries = self.entries
        if not entries:
            self.first_at = now
        entries.append(entry)
        if len(entries) >= self.batch_max_size:
            self._cut()
        elif self._timer is None:
            self._timer = loop.call_later(min(self.inactive_timeout, self.buffer_duration),
                                          self._tick)
        return True

    @property
    def pending(self) -> int:
        return len(self.entries) + self.queued

    # -- background -----------------------------------------------------------------------
    def _tick(self) -> None:
        self._timer = None
        if not self.entries:
            return
        now = self.loop.time()  # type: ignore[union-attr]
        due = min(self.last_at + self.inactive_timeout, self.first_at + self.buffer_duration)
        if now >= due - 0.001:
            self._cut()
        else:
            self._timer = self.loop.call_later(due - now, self._tick)  # type: ignore[union-attr]

    def _cut(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self.entries = self.entries, []
        if not batch:
            return
        self.queue.append(batch)
        self.queued += len(batch)
        if self._task is None or self._task.done():
            self._task = self.loop.create_task(self._run())  # type: ignore[union-attr]

    async def _run(self) -> None:
        while self.queue:
            batch = self.queue.popleft()
            try:
                await self._send(batch)
            finally:
                self.queued -= len(batch)

    async def _send(self, batch: list[Any]) -> None:
        attempt = 0
        while True:
            try:
                await self.sender(batch)
            except asyncio.CancelledError:
                self._lost(len(batch))
                raise
            except Exception as e:  # noqa: BLE001 - any sink failure fails the batch
                final = attempt >= self.max_retry_count
                self._on_failure(e, attempt + 1, final, len(batch))
                if not final:
                    attempt += 1
                    await asyncio.sleep(self.retry_delay * self.backoff ** (attempt - 1))
                    continue
                self._lost(len(batch))
                return
            self.sent += len(batch)
            self.batches += 1
            self._on_sent()
            return

    def _lost(self, n: int) -> None:
        self.failed += n
        self.count_dropped(n)

    def _on_failure(self, e: Exception, attempt: int, final: bool, n: int) -> None:
        """A send failed (``final``: no retry left, the ``n`` entries are dropped).
        Subclasses change what is logged."""
        if final:
            log.error("batch processor[%s] exceeded the max_retry_count[%d], dropping "
                      "%d entries: %s", self.name, self.max_retry_count, n, e)
        else:
            log.warning("batch processor[%s] failed to process entries: %s; retry %d",
                        self.name, e, attempt)

    def _on_sent(self) -> None:
        """A batch went out (subclasses: note recoveries)."""

    def count_dropped(self, n: int) -> None:
        """``n`` entries lost (retries exhausted, or cancelled): counted node-wide."""
        metrics.inc("pylon_log_entries_dropped_total", self.drop_labels, n)

    async def flush(self) -> None:
        """Send what is buffered now and wait until every queued batch is done."""
        if self.entries:
            self._cut()
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            self._task.cancel()

    def stats(self) -> dict[str, Any]:
        return {"name": self.name, "pending": self.pending, "dropped": self.dropped,
                "failed": self.failed, "sent": self.sent, "batches": self.batches}


# -- the manager: one processor per (plugin, route, configuration) --------------------------
_processors: dict[tuple[str, Any, str], BatchProcessor] = {}
_last_sweep = 0.0


def conf_key(conf: dict[str, Any]) -> str:
    """A stable identity of a configuration (compute once, in ``prepare``)."""
    return json.dumps({k: v for k, v in conf.items() if not k.startswith("_")},
                      sort_keys=True, default=str)


def processor(plugin: str, route_id: Any, key: str, conf: dict[str, Any],
              make_sender: Callable[[dict[str, Any]], Sender]) -> BatchProcessor:
    """The processor of (plugin, route_id, key) in this process, made on first use from
    ``conf``'s batch options and ``make_sender(conf)``."""
    k = (plugin, route_id, key)
    p = _processors.get(k)
    if p is not None:
        return p
    _sweep()
    p = BatchProcessor(make_sender(conf), name=conf.get("name") or plugin,
                       batch_max_size=conf.get("batch_max_size", 1000),
                       inactive_timeout=conf.get("inactive_timeout", 5),
                       buffer_duration=conf.get("buffer_duration", 60),
                       max_retry_count=conf.get("max_retry_count", 0),
                       retry_delay=conf.get("retry_delay", 1), plugin=plugin)
    _processors[k] = p
    return p


def _sweep() -> None:
    """Forget processors idle for ``STALE_AFTER`` with nothing pending (old configurations)."""
    global _last_sweep
    now = time.monotonic()
    if now - _last_sweep < 60:
        return
    _last_sweep = now
    for k, p in list(_processors.items()):
        if p.pending == 0 and p.loop is not None and p.loop.time() - p.last_at > STALE_AFTER:
            del _processors[k]


def all_processors() -> list[tuple[tuple[str, Any, str], BatchProcessor]]:
    """(plugin, route_id, key) and processor of every live processor (metrics)."""
    return list(_processors.items())
