"""A deadline that costs nothing to move.

Request handling moves deadlines on every request and every chunk; arming a loop timer each
time would cost a timer allocation per event.  ``Deadline`` keeps one loop timer armed and
only stores the new due time; when the timer fires early it re-arms itself for the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Deadline:
    __slots__ = ("_loop", "_cb", "_handle", "_armed_for", "due")

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._loop = loop
        self._cb = callback
        self._handle: asyncio.TimerHandle | None = None
        self._armed_for = 0.0
        #: loop time at which ``callback`` runs; None = no deadline
        self.due: float | None = None

    def set(self, due: float) -> None:
        self.due = due
        if self._handle is None or due < self._armed_for:
            if self._handle is not None:
                self._handle.cancel()
            self._armed_for = due
            self._handle = self._loop.call_at(due, self._fire)

    def clear(self) -> None:
        self.due = None

    def cancel(self) -> None:
        self.due = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        due = self.due
        if due is None:
            return
        if self._loop.time() >= due - 0.001:
            self.due = None
            self._cb()
        else:
            self._armed_for = due
            self._handle = self._loop.call_at(due, self._fire)
