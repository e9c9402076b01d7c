"""Rate-limit counters shared by every worker of a node, exact and crash-safe.

nginx shares counters between workers through a shared dict guarded by a spin lock; a
worker that dies holding it, or half way through an update, leaves the data in a strange
state.  Here:

* The table lives in a file mapping (``/dev/shm/pylon-<master pid>/<name>``) that every
  worker maps.  It is a fixed array of buckets of 8 records of 32 bytes:
  ``fingerprint, expires_at, a, b`` (unsigned 64-bit).  A key hashes to one bucket; a record
  is free when its fingerprint is 0 or it has expired, so the table never grows and needs
  no sweeping.
* Each update holds a POSIX record lock (``fcntl``) on the bucket's byte in a lock file.
  The kernel releases such a lock when its holder dies -- a killed worker cannot leave a
  bucket locked.
* Every state change that matters is ONE aligned 64-bit store (a counter and its window
  packed into one word), so a worker killed between two stores leaves each record either as
  it was or as it should be, never torn.  A new record is filled in before its fingerprint is
  written; a window roll writes the old count to ``b`` before the new window to ``a``, and
  redoing the roll from that state gives the same result.

Keys are hashed with blake2b (stable across processes, unlike ``hash()``), 8 bytes, cached
per key string in the process (bounded).  Per request: one hash lookup, two ``fcntl`` calls,
one 256-byte read and one or two 8-byte writes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import hashlib
import math
import mmap
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Callable
from typing import Any, cast

_REC = 32
_PER_BUCKET = 8
_BUCKET = _REC * _PER_BUCKET
_Q = struct.Struct("<Q")
_BUCKET_S = struct.Struct("<32Q")
_PROCS_S = struct.Struct("<64Q")
_MASK32 = 0xFFFFFFFF

ENV = "PYLON_SHM_DIR"


Cas = Callable[[int, int, int], bool]
_SEQ_CST = 5


def _load_cas() -> tuple[Cas | None, str]:
    """The compare-and-swap of an aligned 64-bit word (address, expected, new) -> bool, and
    which one it is: ``pylon.ratelimit._atomic`` (C, built by ``pip install`` where a
    compiler exists, ~0.05 µs), else ``__atomic_compare_exchange_8`` from libatomic (Debian
    ``libatomic1``) through ctypes (~1 µs), else None: the tables then use per-bucket
    ``fcntl`` locks (~2.5 µs).  ``PYLON_SHM_LOCKS=1`` forces the locks, ``PYLON_SHM_CAS=ctypes``
    the ctypes path (tests)."""
    if os.environ.get("PYLON_SHM_LOCKS") == "1":
        return None, "locks"
    if os.environ.get("PYLON_SHM_CAS") != "ctypes":
        try:
            from ._atomic import cas64  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            pass
        else:
            return cast("Cas", cas64), "c"
    try:
        lib = ctypes.PyDLL(ctypes.util.find_library("atomic") or "libatomic.so.1")
        fn = lib.__atomic_compare_exchange_8
    except (OSError, AttributeError):
        return None, "locks"
    fn.restype = ctypes.c_bool
    return _ctypes_cas(fn), "ctypes"


def _ctypes_cas(fn: Any) -> Cas:
    """libatomic's CAS as a ``Cas``: loaded as a ``PyDLL`` (the call never blocks: no GIL
    release and re-acquire around it) and called without ``argtypes``, with ready-made ctypes
    arguments (the per-argument conversions were most of the call's cost)."""
    expected = ctypes.c_uint64(0)
    new = ctypes.c_uint64(0)
    pexp = ctypes.c_void_p(ctypes.addressof(expected))

    def cas(addr: int, old: int, desired: int) -> bool:
        expected.value = old
        new.value = desired
        return bool(fn(ctypes.c_void_p(addr), pexp, new, 0, _SEQ_CST, _SEQ_CST))
    return cas


_CAS, CAS_KIND = _load_cas()


def node_dir(create_for_pid: int | None = None, adopt: str | None = None) -> str:
    """The node's shared-memory directory: the master creates it (``create_for_pid``), or
    adopts the one its orphaned workers use (``adopt``: a master taking over from one that
    died, ``server/takeover.py``), and passes it to workers in ``$PYLON_SHM_DIR``; a process
    without one (a benchmark, a single process) gets a private directory."""
    d = os.environ.get(ENV)
    if d and create_for_pid is None:
        return d
    if create_for_pid is None:
        d = tempfile.mkdtemp(prefix="pylon-shm-")
    else:
        base = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
        _remove_stale(base)
        if adopt and os.path.isdir(adopt):
            d = adopt
        else:
            d = os.path.join(base, f"pylon-{create_for_pid}")
            n = 0
            while in_use(d):             # orphans of another node whose master had our pid
                n += 1
                d = os.path.join(base, f"pylon-{create_for_pid}-{n}")
            remove_node_dir(d)           # a previous master with the same pid: start clean
            os.makedirs(d, mode=0o700, exist_ok=True)
        hold(d)
    os.environ[ENV] = d
    return d


#: node directories this process uses, each with its shared ``flock`` held (``hold``)
_held: dict[str, int] = {}


def hold(d: str) -> None:
    """Mark ``d`` in use by this process until it exits (a shared ``flock`` on the
    directory, which the kernel drops with the process): every process of a node holds
    one, so no master removes a directory that orphaned workers still use."""
    if d in _held:
        return
    try:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    fcntl.flock(fd, fcntl.LOCK_SH)
    _held[d] = fd


def in_use(d: str) -> bool:
    """Whether a live process (this one included) holds ``d``."""
    try:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def release_node_dir(d: str) -> None:
    """A master that stops: its hold goes, and the directory too unless a process it did
    not take over (an orphan) still uses it."""
    fd = _held.pop(d, None)
    if fd is not None:
        os.close(fd)
    if not in_use(d):
        remove_node_dir(d)


def _remove_stale(base: str) -> None:
    """Directories of masters that are gone (killed without cleaning up), unless orphaned
    workers still use them."""
    try:
        names = os.listdir(base)
    except OSError:
        return
    for n in names:
        pid = n[6:].split("-", 1)[0]
        if not n.startswith("pylon-") or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            path = os.path.join(base, n)
            if not in_use(path):
                remove_node_dir(path)
        except PermissionError:
            pass


def remove_node_dir(d: str) -> None:
    """The directory and what it holds (tables, and the proxy-cache memory zones' files)."""
    shutil.rmtree(d, ignore_errors=True)


class SharedTable:
    """A bucketed hash table of 32-byte records in shared memory (see the module doc)."""

    def __init__(self, name: str, buckets: int = 8192, directory: str | None = None) -> None:
        d = directory or node_dir()
        self.path = os.path.join(d, name)
        self.buckets = buckets
        size = buckets * _BUCKET
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(fd).st_size < size:
            os.ftruncate(fd, size)       # zero-filled; every process asks for the same size
        self.mm = mmap.mmap(fd, size)
        os.close(fd)
        #: the table as 64-bit words: a read or write of one is one index (the hot path's
        #: loads and stores, cheaper than struct calls)
        self.words = memoryview(self.mm).cast("Q")
        self.cas: Cas | None = _CAS
        self.base = 0
        self._buf: Any = None
        if self.cas is not None:
            # the mapping's address: the CAS takes base + offset (the buffer export keeps
            # the mapping in place until close)
            self._buf = (ctypes.c_char * size).from_buffer(self.mm)
            self.base = ctypes.addressof(self._buf)
        self.lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._fp: dict[str, int] = {}
        #: key -> (fingerprint, word index of its home record): ``incoming``'s lookup
        self._loc: dict[str, tuple[int, int]] = {}
        #: records evicted while still live (a full bucket): a metric for an undersized table
        self.evictions = 0

    def close(self) -> None:
        self._buf = None
        self.words.release()
        self.mm.close()
        os.close(self.lock_fd)

    def fingerprint(self, key: str) -> int:
        fp = self._fp.get(key)
        if fp is None:
            fp = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(),
                                "little") or 1
            if len(self._fp) >= 100_000:
                self._fp.clear()
            self._fp[key] = fp
        return fp

    # -- one locked update --------------------------------------------------------------
    def _find(self, fp: int, now: int) -> tuple[int, bool]:
        """(record offset, existed) for ``fp`` in its (locked) bucket; a new record is
        claimed from a free or expired slot, else the one expiring first is evicted."""
        base = (fp % self.buckets) * _BUCKET
        words = _BUCKET_S.unpack_from(self.mm, base)
        free = -1
        oldest = -1
        oldest_exp = 1 << 64
        for i in range(_PER_BUCKET):
            f = words[i * 4]
            exp = words[i * 4 + 1]
            if f == fp and exp >= now:
                return base + i * _REC, True
            if free < 0 and (f == 0 or exp < now):
                free = i
            if exp < oldest_exp:
                oldest_exp, oldest = exp, i
        if free < 0:
            free = oldest
            self.evictions += 1
        return base + free * _REC, False

    def _claim(self, off: int, fp: int, expires: int, a: int, b: int) -> None:
        mm = self.mm
        _Q.pack_into(mm, off, 0)                # unclaimed while being filled in
        _Q.pack_into(mm, off + 16, a)
        _Q.pack_into(mm, off + 24, b)
        _Q.pack_into(mm, off + 8, expires)
        _Q.pack_into(mm, off, fp)               # visible now, complete

    def _lock(self, fp: int) -> int:
        bucket = fp % self.buckets
        fcntl.lockf(self.lock_fd, fcntl.LOCK_EX, 1, bucket)
        return bucket

    def _unlock(self, bucket: int) -> None:
        fcntl.lockf(self.lock_fd, fcntl.LOCK_UN, 1, bucket)

    # -- lock-free path (compare-and-swap) ---------------------------------------------
    def _cas(self, off: int, old: int, new: int) -> bool:
        """Set the word at ``off`` to ``new`` if it still holds ``old``."""
        assert self.cas is not None
        return self.cas(self.base + off, old, new)

    def _slot(self, fp: int, now: int) -> int:
        """The record of ``fp`` (claimed with one CAS on the fingerprint when new)."""
        mm = self.mm
        base = (fp % self.buckets) * _BUCKET
        home = base + (fp >> 40) % _PER_BUCKET * _REC
        (f,) = _Q.unpack_from(mm, home)
        if f == fp:
            return home
        words = _BUCKET_S.unpack_from(mm, base)
        for i in range(_PER_BUCKET):
            if words[i * 4] == fp:
                return base + i * _REC
        while True:
            words = _BUCKET_S.unpack_from(mm, base)
            victim, oldest = -1, 1 << 64
            for j in range(_PER_BUCKET):
                i = ((fp >> 40) + j) % _PER_BUCKET
                f, exp = words[i * 4], words[i * 4 + 1]
                if f == fp:
                    return base + i * _REC
                if f == 0 or exp < now:
                    victim = i
                    break
                if exp < oldest:
                    victim, oldest = i, exp
            if words[victim * 4 + 1] >= now and words[victim * 4] != 0:
                self.evictions += 1
            off = base + victim * _REC
            if self._cas(off, words[victim * 4], fp):
                # the counter word keeps the old key's value until someone resets it with
                # a CAS; it carries its own window start, so it reads as expired
                _Q.pack_into(mm, off + 8, now + 1)
                return off

    # -- limit-count ---------------------------------------------------------------------
    def incoming(self, key: str, limit: int, window: int, cost: int = 1,
                 sliding: bool = False, now: float | None = None) -> tuple[bool, int, int]:
        """Count ``cost`` against ``limit`` per ``window`` seconds for ``key``:
        (allowed, remaining, seconds until reset).  A refused request is not counted.

        Fixed window: windows are aligned to the key's first request (APISIX: the counter
        expires ``window`` seconds after it was created).  Sliding window: the previous
        window's count weighted by how much of it still overlaps the last ``window``
        seconds, plus the current window's count."""
        t = time.time() if now is None else now
        cas = self.cas
        if cas is None:
            return self._incoming_locked(key, limit, window, cost, sliding, t)
        # the lock-free path (compare-and-swap), inline: limit-count calls it per request
        it = int(t)
        loc = self._loc.get(key) or self._locate(key)
        words = self.words
        rec = loc[1] if words[loc[1]] == loc[0] else self._slot(loc[0], it) >> 3
        wi = rec + 2                         # the counter word
        while True:
            word = words[wi]
            if not sliding:
                start, count = word >> 32, word & _MASK32
                if start + window <= it or start > it + 1:   # expired (or another key's)
                    start, count = it, 0
                reset = start + window - it
                if count + cost > limit:
                    return False, max(limit - count, 0), reset
                # self._cas(woff, word, new), inlined (the hot path of limit-count)
                if cas(self.base + (wi << 3), word, (start << 32) | (count + cost)):
                    words[rec + 1] = start + window     # advisory, self-healing
                    return True, limit - count - cost, reset
                continue
            # sliding: [window index mod 2^16 | current 24 bits | previous 24 bits]
            cur_w = it // window
            w, cur, prev = word >> 48, (word >> 24) & 0xFFFFFF, word & 0xFFFFFF
            if w != cur_w & 0xFFFF:
                prev = cur if w == (cur_w - 1) & 0xFFFF else 0
                cur = 0
            elapsed = t - cur_w * window
            estimate = prev * (window - elapsed) / window + cur
            reset = int(math.ceil((cur_w + 1) * window - t))
            if estimate + cost > limit:
                return False, max(int(limit - estimate), 0), reset
            new = ((cur_w & 0xFFFF) << 48) | ((cur + cost) << 24) | prev
            if self._cas(wi << 3, word, new):
                words[rec + 1] = (cur_w + 2) * window
                return True, max(int(limit - estimate - cost), 0), reset

    def _locate(self, key: str) -> tuple[int, int]:
        """(fingerprint, word index of its home record) of ``key``, kept for the next call
        (bounded)."""
        fp = self.fingerprint(key)
        loc = (fp, ((fp % self.buckets) * _BUCKET + (fp >> 40) % _PER_BUCKET * _REC) >> 3)
        if len(self._loc) >= 100_000:
            self._loc.clear()
        self._loc[key] = loc
        return loc

    def _incoming_locked(self, key: str, limit: int, window: int, cost: int,
                         sliding: bool, t: float) -> tuple[bool, int, int]:
        """``incoming`` without the CAS: under the bucket's ``fcntl`` lock."""
        it = int(t)
        fp = self.fingerprint(key)
        bucket = self._lock(fp)
        try:
            off, existed = self._find(fp, it)
            mm = self.mm
            if not sliding:
                if existed:
                    (word,) = _Q.unpack_from(mm, off + 16)
                    start, count = word >> 32, word & _MASK32
                    if start + window <= it:     # expired but not yet reclaimed
                        start, count = it, 0
                else:
                    start, count = it, 0
                reset = start + window - it
                if count + cost > limit:
                    if not existed:
                        self._claim(off, fp, start + window, start << 32, 0)
                    return False, max(limit - count, 0), reset
                count += cost
                if existed and start + window > it:
                    _Q.pack_into(mm, off + 16, (start << 32) | count)
                else:
                    self._claim(off, fp, start + window, (start << 32) | count, 0)
                return True, limit - count, reset
            # sliding: windows aligned to multiples of ``window``
            cur_w = it // window
            if existed:
                word, prev = struct.unpack_from("<QQ", mm, off + 16)
                w, cur = word >> 32, word & _MASK32
                if w != cur_w:
                    prev = cur if w == cur_w - 1 else 0
                    cur = 0
                    _Q.pack_into(mm, off + 24, prev)          # the roll, redo-safe
                    _Q.pack_into(mm, off + 16, cur_w << 32)
            else:
                prev = cur = 0
            elapsed = t - cur_w * window
            estimate = prev * (window - elapsed) / window + cur
            reset = int(math.ceil((cur_w + 1) * window - t))
            if estimate + cost > limit:
                if not existed:
                    self._claim(off, fp, (cur_w + 2) * window, cur_w << 32, 0)
                return False, max(int(limit - estimate), 0), reset
            cur += cost
            if existed:
                _Q.pack_into(mm, off + 16, (cur_w << 32) | cur)
                _Q.pack_into(mm, off + 8, (cur_w + 2) * window)
            else:
                self._claim(off, fp, (cur_w + 2) * window, (cur_w << 32) | cur, 0)
            return True, max(int(limit - estimate - cost), 0), reset
        finally:
            self._unlock(bucket)

    # -- limit-req (leaky bucket, nginx's limit_req) -----------------------------------
    def leaky(self, key: str, rate: float, burst: float, commit: bool = True,
              now: float | None = None) -> float | None:
        """``limit-req`` (lua-resty-limit-traffic's leaky bucket, as nginx's limit_req): None
        when the request exceeds ``rate`` + ``burst`` (reject), else the delay in seconds it
        should wait (0 when within ``rate``).  ``excess`` and
        the last time are kept in milli-requests / milliseconds, one word each; the pair is
        written excess first, then time, so a torn update only forgets one request."""
        t = time.time() if now is None else now
        ms = int(t * 1000)
        fp = self.fingerprint(key)
        bucket = self._lock(fp)
        try:
            off, existed = self._find(fp, int(t))
            mm = self.mm
            rate_m = rate * 1000.0             # milli-requests per second
            if existed:                        # lua-resty-limit-traffic's limit.req
                excess, last = struct.unpack_from("<QQ", mm, off + 16)
                excess = max(excess - rate_m * abs(ms - last) / 1000.0 + 1000.0, 0.0)
            else:
                excess = 0.0
            if excess > burst * 1000.0:
                return None
            delay = excess / rate_m if rate_m > 0 else 0.0
            if commit:
                expires = int(t + (excess / rate_m if rate_m > 0 else 1) + 2)
                if existed:
                    _Q.pack_into(mm, off + 16, int(excess))
                    _Q.pack_into(mm, off + 24, ms)
                    _Q.pack_into(mm, off + 8, expires)
                else:
                    self._claim(off, fp, expires, int(excess), ms)
            return delay
        finally:
            self._unlock(bucket)

    # -- introspection (tests, control API) ----------------------------------------------
    def peek(self, key: str, now: float | None = None) -> tuple[int, int] | None:
        it = int(time.time() if now is None else now)
        fp = self.fingerprint(key)
        bucket = self._lock(fp)
        try:
            off, existed = self._find(fp, it)
            if not existed:
                return None
            a, b = struct.unpack_from("<QQ", self.mm, off + 16)
            return a, b
        finally:
            self._unlock(bucket)


class ConnTable:
    """In-flight counts per key for limit-conn, node-wide, that a dead worker cannot leak.

    Each process counts its own requests in its own records (key + its registration slot),
    so it is the only writer of them; a key's count is the sum over the registered
    processes.  A process registers its pid in one of 64 slots of a small registry the first
    time it counts; ``sweep`` (every second, from each worker's timer) frees the slots of
    processes that are gone, and with them every count they held: a killed worker's
    in-flight requests stop counting within a second, with nothing to repair.  Admission
    increments first and sums after, so two workers racing at the limit may both refuse
    (never both admit)."""

    SLOTS = 64

    def __init__(self, name: str = "limit-conn", buckets: int = 8192,
                 directory: str | None = None) -> None:
        d = directory or node_dir()
        self.table = SharedTable(name, buckets, d)
        path = os.path.join(d, name + ".procs")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(fd).st_size < self.SLOTS * 8:
            os.ftruncate(fd, self.SLOTS * 8)
        self.procs = mmap.mmap(fd, self.SLOTS * 8)
        os.close(fd)
        self.slot = -1
        self._keys: dict[str, int] = {}       # this process's counts (to give back)

    def _register(self) -> int:
        if self.slot >= 0:
            return self.slot
        pid = os.getpid()
        for i in range(self.SLOTS):
            (p,) = _Q.unpack_from(self.procs, i * 8)
            if p == 0 or not _alive(p):
                # a registry slot is claimed under the lock of byte i of the procs file
                fd = self.table.lock_fd
                fcntl.lockf(fd, fcntl.LOCK_EX, 1, 1 << 40 | i)
                try:
                    (p,) = _Q.unpack_from(self.procs, i * 8)
                    if p == 0 or not _alive(p):
                        _Q.pack_into(self.procs, i * 8, pid)
                        self.slot = i
                        return i
                finally:
                    fcntl.lockf(fd, fcntl.LOCK_UN, 1, 1 << 40 | i)
        raise RuntimeError("limit-conn: more than 64 processes count connections")

    def _rec(self, key: str, slot: int, now: int, create: bool) -> int | None:
        t = self.table
        fp = t.fingerprint(f"{key}\0{slot}")
        if create:
            if t.cas is not None:
                return t._slot(fp, now)
            bucket = t._lock(fp)              # the lock fallback: find or claim, locked
            try:
                off, existed = t._find(fp, now)
                if not existed:
                    t._claim(off, fp, now + 86400, 0, 0)
            finally:
                t._unlock(bucket)
            return off
        base = (fp % t.buckets) * _BUCKET
        words = _BUCKET_S.unpack_from(t.mm, base)
        for i in range(_PER_BUCKET):
            if words[i * 4] == fp:
                return base + i * _REC
        return None

    def count(self, key: str) -> int:
        """In-flight requests for ``key`` over every live registered process."""
        total = 0
        now = int(time.time())
        mm = self.table.mm
        for i, p in enumerate(_PROCS_S.unpack_from(self.procs, 0)):
            if p == 0:
                continue
            off = self._rec(key, i, now, False)
            if off is not None:
                (word,) = _Q.unpack_from(mm, off + 16)
                if word >> 32 == p & _MASK32:     # written by this slot's current owner
                    total += word & _MASK32
        return total

    def _add(self, key: str, delta: int) -> int:
        slot = self._register()
        now = int(time.time())
        off = self._rec(key, slot, now, True)
        assert off is not None
        mine = self._keys.get(key, 0) + delta
        if mine <= 0:
            self._keys.pop(key, None)
            mine = 0
        else:
            self._keys[key] = mine
        mm = self.table.mm
        pid = os.getpid() & _MASK32
        _Q.pack_into(mm, off + 8, now + 86400)
        _Q.pack_into(mm, off + 16, pid << 32 | mine)   # one store: owner and count
        return mine

    def incoming(self, key: str, limit: int, burst: int) -> int | None:
        """Count a request in: its position (1 = the first in flight), or None when it is
        over ``limit + burst`` (not counted)."""
        self._add(key, 1)
        conn = self.count(key)
        if conn > limit + burst:
            self._add(key, -1)
            return None
        return conn

    def leaving(self, key: str) -> None:
        self._add(key, -1)

    def sweep(self) -> int:
        """Free the registry slots of processes that are gone; returns how many."""
        freed = 0
        for i in range(self.SLOTS):
            (p,) = _Q.unpack_from(self.procs, i * 8)
            if p and p != os.getpid() and not _alive(p):
                fd = self.table.lock_fd
                fcntl.lockf(fd, fcntl.LOCK_EX, 1, 1 << 40 | i)
                try:
                    (q,) = _Q.unpack_from(self.procs, i * 8)
                    if q == p:
                        _Q.pack_into(self.procs, i * 8, 0)
                        freed += 1
                finally:
                    fcntl.lockf(fd, fcntl.LOCK_UN, 1, 1 << 40 | i)
        return freed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_tables: dict[str, SharedTable] = {}
_conns: ConnTable | None = None


def conn_table() -> ConnTable:
    global _conns
    if _conns is None:
        _conns = ConnTable()
    return _conns


def sweep() -> None:
    """Called every second by each worker: forget the counts of dead processes."""
    if _conns is not None:
        _conns.sweep()


def table(name: str = "limit-count", buckets: int = 8192) -> SharedTable:
    """This process's mapping of the node-wide table ``name`` (opened once)."""
    t = _tables.get(name)
    if t is None:
        t = _tables[name] = SharedTable(name, buckets)
    return t


def reset_tables() -> None:
    for t in _tables.values():
        t.close()
    _tables.clear()


__all__ = ["ENV", "ConnTable", "SharedTable", "conn_table", "node_dir", "remove_node_dir",
           "reset_tables", "sweep", "table"]
