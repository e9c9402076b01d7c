"""The standalone file (YAML or JSON, APISIX layout) as a config store.

Each content of the file is one revision.  Changes are seen through inotify (watchfiles, 50 ms
debounce) with a 1 s stat poll behind it for filesystems without events, so an edit is live
within a second.  Atomic replaces (rename over the file) and in-place writes both count.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError
from . import loader

log = logging.getLogger("pylon.config")


class YamlStore:
    name = "yaml"

    def __init__(self, path: str) -> None:
        self.path = path
        self._stat: tuple[int, int, int] | None = None

    def read(self, initial: bool) -> Any:
        path = self.path
        try:
            st = os.stat(path)
            # remember what was read even when it is refused: an unchanged broken file is
            # reported once, not on every poll
            self._stat = (st.st_mtime_ns, st.st_size, st.st_ino)
            with open(path, "rb") as f:
                doc = loader.parse_text(f.read(), path)
        except OSError as e:
            raise ConfigError(e.strerror or str(e)) from None
        if doc is None and not initial:
            # an editor that truncates then writes shows an empty file for a moment;
            # never let that drop every route
            raise ConfigError("the file is empty (write 'routes: []' to remove every route)",
                              path)
        if doc is not None and not isinstance(doc, dict):
            raise ConfigError(f"top level must be a mapping, not {type(doc).__name__}", path)
        return doc

    def changed(self) -> bool:
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return (st.st_mtime_ns, st.st_size, st.st_ino) != self._stat

    async def watch(self, on_change: Callable[[], None], stop: asyncio.Event) -> None:
        import watchfiles

        path = os.path.abspath(self.path)
        directory = os.path.dirname(path)

        def check() -> None:
            if self.changed():
                on_change()

        async def events() -> None:
            try:
                async for _changes in watchfiles.awatch(
                        directory, debounce=50, step=20, stop_event=stop,
                        watch_filter=lambda _c, p: os.path.abspath(p) == path,
                        recursive=False):
                    check()
            except Exception as e:  # pragma: no cover - no inotify: the poll below covers
                log.warning("file watch unavailable (%s); polling", e)

        task = asyncio.get_running_loop().create_task(events())
        try:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), 1.0)
                except TimeoutError:
                    check()
        finally:
            task.cancel()
