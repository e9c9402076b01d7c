"""Build the compiled core (``pylon/_native.py`` lists its modules) with mypyc where it can.

Everything else about the package is in ``pyproject.toml``.  Without a C compiler, without
the Python headers, with ``PYLON_COMPILE=0``, or when mypyc fails, the package installs as
pure Python and runs the same sources (``pylon version`` says which).
"""

import importlib.util
import json
import os
import sys

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("_pylon_native",
                                               os.path.join(HERE, "pylon", "_native.py"))
assert _spec is not None and _spec.loader is not None
native = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(native)


def _drop_stale() -> None:
    """Extension files of modules no longer compiled (an earlier build of this checkout) would
    shadow their sources: remove them."""
    import importlib.machinery
    keep = {native.source_path(m, os.path.join(HERE, "pylon"))[:-3] for m in native.MODULES}
    for d, _, files in os.walk(os.path.join(HERE, "pylon")):
        for f in files:
            for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                if f.endswith(suffix):
                    if os.path.join(d, f[:-len(suffix)]) not in keep:
                        os.remove(os.path.join(d, f))
                    break


def _compiled() -> list:
    _drop_stale()
    why = native.can_compile()
    if why is not None:
        print(f"pylon: pure Python install ({why})", file=sys.stderr)
        return []
    try:
        from mypyc.build import mypycify
        os.chdir(HERE)
        paths = [os.path.relpath(native.source_path(m, os.path.join(HERE, "pylon")), HERE)
                 for m in native.MODULES]
        exts = mypycify(["--ignore-missing-imports", "--no-warn-unused-ignores",
                         "--no-warn-unused-configs", *paths],
                        opt_level="3", group_name="pylon")
    except (Exception, SystemExit) as e:  # noqa: BLE001 -- any failure: install pure
        # (mypyc exits on a type error of the sources)
        print(f"pylon: compiled core not built ({type(e).__name__}: {e}); pure Python",
              file=sys.stderr)
        return []
    for ext in exts:                # a failed C compile leaves that module pure (not the build)
        ext.optional = True
    with open(os.path.join(HERE, "pylon", native.RECORD), "w", encoding="utf-8") as f:
        json.dump(native.source_hashes(os.path.join(HERE, "pylon")), f, indent=1, sort_keys=True)
    return exts


def _atomic() -> list:
    """``pylon.ratelimit._atomic``: the node-wide counters' compare-and-swap in C (optional:
    without a compiler they call libatomic through ctypes)."""
    if os.environ.get("PYLON_COMPILE") == "0":
        return []
    from setuptools import Extension
    return [Extension("pylon.ratelimit._atomic", ["pylon/ratelimit/_atomic.c"], optional=True)]


setup(ext_modules=_compiled() + _atomic())
