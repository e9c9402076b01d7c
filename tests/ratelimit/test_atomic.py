"""The node-wide counters' compare-and-swap: the C one (built by pip install where a compiler
exists) and libatomic through ctypes behave alike on a shared mapping; the C one is what an
install with a compiler uses."""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.machinery
import mmap
import os
import struct

import pytest

from pylon import _native
from pylon.ratelimit import local

#: this tree was installed with its extensions built (pip install with a compiler): the C
#: compare-and-swap must be there too
BUILT = all(any(os.path.exists(_native.source_path(m)[:-3] + s)
                for s in importlib.machinery.EXTENSION_SUFFIXES) for m in _native.MODULES)


def _cas(kind: str) -> local.Cas:
    if kind == "c":
        try:
            from pylon.ratelimit._atomic import cas64
        except ImportError:
            if BUILT:
                raise AssertionError("the compiled core was built but the C "
                                     "compare-and-swap was not") from None
            pytest.skip("not built here (no install with a compiler)")
        return cas64  # type: ignore[no-any-return]
    lib = ctypes.PyDLL(ctypes.util.find_library("atomic") or "libatomic.so.1")
    fn = lib.__atomic_compare_exchange_8
    fn.restype = ctypes.c_bool
    return local._ctypes_cas(fn)


@pytest.mark.parametrize("kind", ["c", "ctypes"])
def test_a_word_changes_only_when_it_holds_the_expected_value(kind):
    cas = _cas(kind)
    mm = mmap.mmap(-1, 64)
    buf = (ctypes.c_char * 64).from_buffer(mm)
    base = ctypes.addressof(buf)
    try:
        struct.pack_into("<Q", mm, 16, 7)
        assert cas(base + 16, 7, (1 << 63) | 5) is True
        assert struct.unpack_from("<Q", mm, 16)[0] == (1 << 63) | 5
        assert cas(base + 16, 7, 9) is False                    # no longer 7: unchanged
        assert struct.unpack_from("<Q", mm, 16)[0] == (1 << 63) | 5
        assert struct.unpack_from("<Q", mm, 8)[0] == 0           # neighbours untouched
        assert struct.unpack_from("<Q", mm, 24)[0] == 0
    finally:
        del buf
        mm.close()


def test_the_c_compare_and_swap_refuses_a_misaligned_or_null_address():
    cas = _cas("c")
    with pytest.raises(ValueError):
        cas(0, 0, 1)
    with pytest.raises(ValueError):
        cas(12345, 0, 1)
    with pytest.raises(OverflowError):
        cas(8, -1, 1)


@pytest.mark.skipif(not BUILT, reason="not built here (no install with a compiler)")
def test_an_install_with_a_compiler_counts_with_the_c_compare_and_swap():
    want = "locks" if os.environ.get("PYLON_SHM_LOCKS") == "1" else "c"
    kind = local.CAS_KIND
    assert kind == want
