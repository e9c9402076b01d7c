"""The compiled core (``pylon/_native.py``): used when built and current, else the sources.

Each case runs a fresh interpreter (the choice is made once per process, at import) on a copy
of the package, so editing or deleting files there cannot disturb the suite's own import.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import shutil
import subprocess
import sys

import pytest

import pylon
from pylon import _native

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(pylon.__file__)))
PROBE = ("import pylon, pylon._native as n, pylon.proxy.exchange as e, pylon.wire.h1 as w; "
         "print(n.STATE['mode']); print(e.__file__); print(w.__file__); print(n.describe())")
BUILT = all(any(os.path.exists(_native.source_path(m)[:-3] + s)
                for s in importlib.machinery.EXTENSION_SUFFIXES) for m in _native.MODULES)


def probe(root: str, **env: str) -> list[str]:
    e = {k: v for k, v in os.environ.items() if k not in ("PYLON_PURE_PYTHON", "PYTHONPATH")}
    e.update(env, PYTHONPATH=root)
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=root, env=e, capture_output=True,
                         text=True, timeout=60, check=True)
    return out.stdout.splitlines()


@pytest.fixture()
def tree(tmp_path):
    """A copy of the installed package (extensions, build record and the shared
    ``pylon__mypyc`` library included) that a test may edit."""
    shutil.copytree(os.path.join(ROOT, "pylon"), tmp_path / "pylon",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in os.listdir(ROOT):
        if name.startswith("pylon__mypyc"):
            shutil.copy(os.path.join(ROOT, name), tmp_path / name)
    return str(tmp_path)


def test_the_running_suite_says_which_core_it_runs():
    assert _native.STATE["mode"] in ("compiled", "pure")
    assert _native.describe().startswith(("compiled core", "pure Python ("))
    if os.environ.get("PYLON_PURE_PYTHON") == "1":
        assert _native.STATE["mode"] == "pure"


@pytest.mark.skipif(not BUILT, reason="compiled core not built here (no C compiler at install)")
def test_an_install_with_a_compiler_runs_the_compiled_core(tree):
    mode, exchange, h1, desc = probe(tree)
    assert mode == "compiled", desc
    assert not exchange.endswith(".py") and not h1.endswith(".py")
    assert desc == "compiled core (mypyc)"


def test_pure_python_switch_runs_every_source(tree):
    mode, exchange, h1, desc = probe(tree, PYLON_PURE_PYTHON="1")
    assert (mode, exchange.endswith(".py"), h1.endswith(".py")) == ("pure", True, True)
    assert desc == "pure Python (PYLON_PURE_PYTHON=1)"


@pytest.mark.skipif(not BUILT, reason="compiled core not built here (no C compiler at install)")
def test_an_edited_source_runs_pure_until_rebuilt(tree):
    path = _native.source_path("pylon.proxy.exchange", os.path.join(tree, "pylon"))
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n# edited after the build\n")
    mode, exchange, h1, desc = probe(tree)
    # all of the core runs pure, not only the edited module: compiled and interpreted
    # halves of one class hierarchy would not agree
    assert (mode, exchange.endswith(".py"), h1.endswith(".py")) == ("pure", True, True)
    assert "pylon.proxy.exchange" in desc and "reinstall" in desc


@pytest.mark.skipif(not BUILT, reason="compiled core not built here (no C compiler at install)")
def test_a_missing_extension_runs_everything_pure(tree):
    for s in importlib.machinery.EXTENSION_SUFFIXES:
        p = _native.source_path("pylon.wire.h1", os.path.join(tree, "pylon"))[:-3] + s
        if os.path.exists(p):
            os.remove(p)
    mode, exchange, _, desc = probe(tree)
    assert (mode, exchange.endswith(".py")) == ("pure", True)
    assert "pylon.wire.h1 not built" in desc


@pytest.mark.skipif(not BUILT, reason="compiled core not built here (no C compiler at install)")
def test_the_build_record_names_every_compiled_module():
    with open(os.path.join(ROOT, "pylon", _native.RECORD), encoding="utf-8") as f:
        assert sorted(json.load(f)) == sorted(_native.MODULES)
