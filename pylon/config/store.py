"""Config stores: where the declarative configuration lives.

One small interface, picked by name from ``deployment.config_provider``.  The master holds the
node's single store instance (one watch per node, fanned out to the workers), so a store
never runs in a worker.  ``yaml`` is the standalone file; the etcd store implements the same
three methods.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import ConfigError


class Store(Protocol):
    name: str

    def read(self, initial: bool) -> Any:
        """The whole current configuration document (APISIX standalone layout).

        Raises ConfigError with a readable location when it cannot be used; the caller keeps
        serving the last good revision."""

    def changed(self) -> bool:
        """Cheap check: has the configuration changed since the last ``read``?"""

    async def watch(self, on_change: Callable[[], None], stop: asyncio.Event) -> None:
        """Call ``on_change`` soon after every change until ``stop`` is set."""


def make_store(settings: Any) -> Store:
    provider = settings.config_provider
    if provider == "yaml":
        from .yaml_store import YamlStore
        return YamlStore(settings.standalone_file)
    raise ConfigError(f"unknown config_provider {provider!r}", "deployment.config_provider")
