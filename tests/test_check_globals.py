"""scripts/check_globals.py: what it flags and what it leaves alone."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_globals",
                                                  ROOT / "scripts" / "check_globals.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["check_globals"] = mod
    spec.loader.exec_module(mod)
    return mod


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path / "pkg"


OWNER = """\
import logging
log = logging.getLogger("pkg")
LIMIT = 5
_cache = {}
current = None

def use(x):
    global current
    current = x
"""


def test_cross_module_reads_writes_and_imports_of_module_variables_are_flagged(tmp_path):
    root = _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": OWNER,
        "pkg/sub/__init__.py": "",
        "pkg/sub/b.py": (
            "from .. import a\n"
            "from ..a import current, _cache\n"
            "import pkg.a\n"
            "def f():\n"
            "    a.current = 3\n"
            "    return pkg.a._cache\n"
        ),
    })
    found = _checker().check([root])
    messages = sorted(p.split(":", 2)[1] + ":" + p.split(":", 2)[2] for p in found)
    assert messages == [
        "2: imports the module-level variable '_cache' of pkg.a",
        "2: imports the module-level variable 'current' of pkg.a",
        "5: writes pkg.a.current: another module's global",
        "6: reads the module-level variable pkg.a._cache",
    ]


def test_constants_fixed_bindings_functions_and_pragma_lines_are_not_flagged(tmp_path):
    root = _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": OWNER,
        "pkg/b.py": (
            "from .a import LIMIT, log, use\n"
            "from . import a\n"
            "def f():\n"
            "    use(LIMIT)\n"
            "    return a.log, a.use\n"
            "x = a.current  # check_globals: ok (test)\n"
        ),
    })
    assert _checker().check([root]) == []
