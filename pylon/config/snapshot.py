"""The immutable config snapshot a request runs against, and its holder.

A worker builds a complete new ``Snapshot`` beside the current one and swaps it in with one
attribute assignment.  Each request reads ``holder.current`` once and keeps that object to the
end, so a change never affects a request half way through.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..routing.router import Router
from ..upstream.runtime import UpstreamRuntime
from .compiler import Compiled


@dataclass(frozen=True, slots=True)
class Snapshot:
    revision: int
    compiled: Compiled
    upstreams: dict[str, UpstreamRuntime]

    @property
    def router(self) -> Router:
        return self.compiled.router


class SnapshotHolder:
    __slots__ = ("current",)

    def __init__(self, initial: Snapshot) -> None:
        self.current = initial

    def swap(self, new: Snapshot) -> Snapshot:
        old, self.current = self.current, new
        return old
