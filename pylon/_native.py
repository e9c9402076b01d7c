"""The compiled core: which modules mypyc compiles, and whether this process runs them.

``pip install`` (``setup.py``) compiles the hot-path modules listed in ``MODULES`` with mypyc
where a C compiler and the Python headers exist, and records the hash of each source it
compiled in ``_native_build.json``.  At import (``pylon/__init__.py`` calls ``select()``
once per process) the compiled core is used only when every extension is present and every
source still hashes to what was compiled; otherwise -- or with ``PYLON_PURE_PYTHON=1`` --
the ``.py`` sources run, all of them, so compiled and interpreted modules never mix (a
native class and a Python subclass of the same name would disagree on layout).

Both ways run the same code: mypyc compiles these files as they are, and the test command
runs the suite compiled and a behaviour subset pure (``scripts/test``).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import shutil
import sys
import sysconfig
from types import ModuleType
from typing import Final

#: the hot path: wire parsing, the HTTP/1.1 server, the exchange, the pool, the timer
MODULES: Final = (
    "pylon.timer",
    "pylon.wire.head",
    "pylon.wire.h1",
    "pylon.pdk.context",
    "pylon.proxy.exchange",
    "pylon.proxy.variables",
    "pylon.observe.access_log",
    "pylon.server.h1",
    "pylon.upstream.pool",
)
RECORD: Final = "_native_build.json"
_HERE: Final = os.path.dirname(os.path.abspath(__file__))

#: what this process runs: "compiled" or "pure", and why when pure
STATE: dict[str, str] = {"mode": "pure", "why": "not selected yet"}


def source_path(module: str, root: str = _HERE) -> str:
    """The ``.py`` file of one of ``MODULES`` under the package directory ``root``."""
    return os.path.join(root, *module.split(".")[1:]) + ".py"


def source_hashes(root: str = _HERE) -> dict[str, str]:
    """sha256 of each compiled module's source: what ``setup.py`` records at build time."""
    out = {}
    for m in MODULES:
        with open(source_path(m, root), "rb") as f:
            out[m] = hashlib.sha256(f.read()).hexdigest()
    return out


def can_compile() -> str | None:
    """None when this interpreter can build the compiled core, else why not."""
    if os.environ.get("PYLON_COMPILE", "") == "0":
        return "PYLON_COMPILE=0"
    if sys.implementation.name != "cpython":
        return f"{sys.implementation.name} is not CPython"
    cc = sysconfig.get_config_var("CC") or "cc"
    if shutil.which(cc.split()[0]) is None:
        return f"no C compiler ({cc.split()[0]})"
    inc = sysconfig.get_paths().get("include") or ""
    if not os.path.exists(os.path.join(inc, "Python.h")):
        return "no Python headers (Python.h; Debian: python3-dev)"
    return None


def _extension(module: str) -> str | None:
    """The built extension file of ``module`` next to its source, if any."""
    base = source_path(module)[:-3]
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        if os.path.exists(base + suffix):
            return base + suffix
    return None


def _why_pure() -> str | None:
    if os.environ.get("PYLON_PURE_PYTHON", "") == "1":
        return "PYLON_PURE_PYTHON=1"
    if sys.implementation.name != "cpython":
        return f"{sys.implementation.name} runs the sources"
    missing = [m for m in MODULES if _extension(m) is None]
    if len(missing) == len(MODULES):
        return "not compiled (no C compiler at install, or PYLON_COMPILE=0)"
    if missing:
        return f"compiled core incomplete: {', '.join(missing)} not built"
    try:
        with open(os.path.join(_HERE, RECORD), encoding="utf-8") as f:
            recorded = json.load(f)
    except (OSError, ValueError):
        return f"no build record ({RECORD})"
    stale = [m for m, h in source_hashes().items() if recorded.get(m) != h]
    if stale:
        return f"sources changed since the build: {', '.join(stale)} (reinstall to recompile)"
    return None


class _Sources(importlib.machinery.PathFinder):
    """Finds ``MODULES`` as their ``.py`` sources even where an extension sits beside them."""

    @classmethod
    def find_spec(cls, fullname: str, path: object = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MODULES:
            return None
        src = source_path(fullname)
        return importlib.util.spec_from_file_location(fullname, src)


def select() -> None:
    """Decide once per process, before any of ``MODULES`` is imported."""
    if STATE["why"] != "not selected yet":
        return
    why = _why_pure()
    if why is None:
        STATE.update(mode="compiled", why="")
        return
    STATE.update(mode="pure", why=why)
    if not any(isinstance(f, type) and issubclass(f, _Sources) for f in sys.meta_path):
        sys.meta_path.insert(0, _Sources)


def describe() -> str:
    """One line for ``pylon version`` and the start-up log."""
    if STATE["mode"] == "compiled":
        return "compiled core (mypyc)"
    return f"pure Python ({STATE['why']})"
