"""Per-route plugin chains, compiled once per snapshot.

A chain holds, for each phase, the tuple of bound plugin hooks to run in order.  Phases with
no hooks cost nothing per request: the pipeline checks one boolean.  The plugin system
(registry, PDK, merging of global rules, plugin_configs, services and consumers) fills these
tuples; until plugins are loaded every chain is ``EMPTY``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PHASES = ("rewrite", "access", "before_proxy", "header_filter", "body_filter", "log")


@dataclass(frozen=True, slots=True)
class Chain:
    rewrite: tuple[Any, ...] = ()
    access: tuple[Any, ...] = ()
    before_proxy: tuple[Any, ...] = ()
    header_filter: tuple[Any, ...] = ()
    body_filter: tuple[Any, ...] = ()
    log: tuple[Any, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.rewrite or self.access or self.before_proxy or self.header_filter
                    or self.body_filter or self.log)


EMPTY = Chain()
