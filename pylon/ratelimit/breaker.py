"""Circuit-breaker state for ``api-breaker``, shared by every worker of a node.

APISIX keeps three entries per key in ``ngx.shared["plugin-api-breaker"]``: the unhealthy
count ``U`` (no expiry), the healthy count ``H`` (no expiry) and ``lasttime`` ``L``, the
second the breaker last tripped (expires ``max_breaker_sec`` after it was set).  Here the
three live in ONE 64-bit word of a ``SharedTable`` record (``pylon/ratelimit/local.py``), so
every transition is one compare-and-swap (or one store under the bucket's ``fcntl`` lock
when libatomic is missing): a worker killed half way leaves the state as it was or as it
should be, never torn, and nobody is left holding a lock.

Word layout, high bit first (the widths of ``rem`` and ``H`` follow the configuration, which
is part of the key, so one key always has one layout)::

    L (32) | R (6) | rem (bitlen(failures-1)) | H (bitlen(successes-1)) | tag (the rest)

``U`` is kept as ``R = U // failures`` (saturating at 63: ``2^63`` seconds is beyond any
``max_breaker_sec``) and ``rem = U % failures`` -- exactly what APISIX's ``ceil(U/failures)``
and ``U % failures == 0`` need.  ``H`` is below ``successes`` (reaching it resets
everything).  ``tag`` is taken from the key's fingerprint: a record reclaimed for another
key still holds the previous key's word, which reads as empty because its tag differs (with
``2^-tag_bits`` odds of a false match; at least 4 bits, 22 with the default config).
``failures`` and ``successes`` together may use at most 22 bits (e.g. both up to 2048).

Records are found with ``SharedTable``'s lookup; reads (``open_for``, every request) and
successes on an unknown key never claim a record, only a failure does.  A record's expiry
is advisory (eviction order when a bucket is full, as the LRU of a shared dict): one day
after its last failure or success, at once after a reset to healthy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from .local import _BUCKET, _BUCKET_S, _PER_BUCKET, _Q, _REC, SharedTable, table

_R_BITS = 6
_R_MAX = (1 << _R_BITS) - 1
_LOW_BITS = 32 - _R_BITS             # rem + H + tag
MIN_TAG_BITS = 4
MAX_COUNT_BITS = _LOW_BITS - MIN_TAG_BITS
_IDLE = 86400                        # eviction priority of a live record after its last update
_MASK32 = 0xFFFFFFFF

TABLE_NAME = "api-breaker"
TABLE_BUCKETS = 4096                 # 32768 keys, 1 MiB (APISIX: lua_shared_dict 10m)


class State(NamedTuple):
    unhealthy: int        # APISIX's unhealthy count (0: absent)
    healthy: int          # healthy count (0: absent)
    lasttime: int         # second of the last trip (0: absent or expired)


def fits(failures: int, successes: int) -> bool:
    """Whether ``failures`` and ``successes`` fit one state word (see the module doc)."""
    return (failures - 1).bit_length() + (successes - 1).bit_length() <= MAX_COUNT_BITS


class Policy:
    """One api-breaker configuration's thresholds and its word layout (build once)."""

    __slots__ = ("failures", "h_mask", "h_shift", "max_sec", "rem_mask", "rem_shift",
                 "successes", "tag_mask")

    def __init__(self, failures: int, successes: int, max_sec: int) -> None:
        if failures < 1 or successes < 1 or max_sec < 1:
            raise ValueError("failures, successes and max_breaker_sec must be positive")
        if not fits(failures, successes):
            raise ValueError(
                "unhealthy.failures and healthy.successes are too large together: their "
                f"bit lengths may sum to at most {MAX_COUNT_BITS} (e.g. both up to 2048)")
        rb = (failures - 1).bit_length()
        hb = (successes - 1).bit_length()
        tb = _LOW_BITS - rb - hb
        self.failures = failures
        self.successes = successes
        self.max_sec = max_sec
        self.tag_mask = (1 << tb) - 1
        self.h_shift = tb
        self.h_mask = (1 << hb) - 1
        self.rem_shift = tb + hb
        self.rem_mask = (1 << rb) - 1

    # -- the word --------------------------------------------------------------------------
    def tag(self, fp: int) -> int:
        return (fp >> 16) & self.tag_mask

    def decode(self, word: int, tag: int) -> tuple[int, int, int, int]:
        """(L, R, rem, H) of ``word``, all zero when it is another key's (tag mismatch)."""
        if word == 0 or word & self.tag_mask != tag:
            return 0, 0, 0, 0
        low = word & _MASK32
        return (word >> 32, low >> _LOW_BITS, (low >> self.rem_shift) & self.rem_mask,
                (low >> self.h_shift) & self.h_mask)

    def encode(self, lasttime: int, rounds: int, rem: int, healthy: int, tag: int) -> int:
        if not (lasttime or rounds or rem or healthy):
            return 0
        return ((lasttime & _MASK32) << 32 | rounds << _LOW_BITS | rem << self.rem_shift
                | healthy << self.h_shift | tag)

    # -- APISIX's rules ----------------------------------------------------------------------
    def live_lasttime(self, lasttime: int, now: float) -> int:
        """``lasttime`` unless its shared-dict entry has expired (``max_breaker_sec``)."""
        return lasttime if lasttime and now < lasttime + self.max_sec else 0

    def breaker_time(self, rounds: int, rem: int) -> int:
        """``min(2 ^ max(ceil(U / failures), 1), max_breaker_sec)``."""
        times = max(rounds + (1 if rem else 0), 1)
        return min(1 << times, self.max_sec)

    def after_failure(self, word: int, tag: int, now: float) -> tuple[int, int]:
        """(new word, new unhealthy count): ``incr(U)``, ``delete(H)``, and ``L = now`` when
        ``U % failures == 0``."""
        lt, r, rem, _ = self.decode(word, tag)
        rem += 1
        if rem == self.failures:
            rem = 0
            r = min(r + 1, _R_MAX)
        lt = int(now) if rem == 0 else self.live_lasttime(lt, now)
        return self.encode(lt, r, rem, 0, tag), r * self.failures + rem

    def after_success(self, word: int, tag: int, now: float) -> tuple[int | None, int]:
        """(new word or None when nothing changes, healthy count): nothing without an
        unhealthy count; else ``incr(H)``, and everything deleted at ``successes``."""
        lt, r, rem, h = self.decode(word, tag)
        if not (r or rem):
            return None, 0
        h += 1
        if h >= self.successes:
            return 0, h
        return self.encode(self.live_lasttime(lt, now), r, rem, h, tag), h


class Breakers:
    """The node's breaker states (``breakers()`` gives this process's one)."""

    def __init__(self, shared: SharedTable) -> None:
        self.t = shared

    def _lookup(self, fp: int) -> int | None:
        """The record of ``fp``, without claiming one."""
        t = self.t
        base = (fp % t.buckets) * _BUCKET
        home = base + (fp >> 40) % _PER_BUCKET * _REC        # where _slot puts it first
        if _Q.unpack_from(t.mm, home)[0] == fp:
            return home
        words = _BUCKET_S.unpack_from(t.mm, base)
        for i in range(_PER_BUCKET):
            if words[i * 4] == fp:
                return base + i * _REC
        return None

    def _word(self, key: str) -> tuple[int, int]:
        fp = self.t.fingerprint(key)
        off = self._lookup(fp)
        if off is None:
            return 0, fp
        (word,) = _Q.unpack_from(self.t.mm, off + 16)
        return word, fp

    # -- reads ------------------------------------------------------------------------------
    def open_for(self, key: str, p: Policy, now: float | None = None) -> int:
        """APISIX's access check: the breaker time (2, 4, ... seconds) when the breaker of
        ``key`` is open now, else 0."""
        t = time.time() if now is None else now
        word, fp = self._word(key)
        if word == 0:
            return 0
        lt, r, rem, _ = p.decode(word, p.tag(fp))
        if not (r or rem):
            return 0
        lt = p.live_lasttime(lt, t)
        if not lt:
            return 0
        bt = p.breaker_time(r, rem)
        return bt if lt + bt >= int(t) else 0

    def peek(self, key: str, p: Policy, now: float | None = None) -> State:
        t = time.time() if now is None else now
        word, fp = self._word(key)
        lt, r, rem, h = p.decode(word, p.tag(fp))
        return State(r * p.failures + rem, h, p.live_lasttime(lt, t))

    # -- updates (log phase) ----------------------------------------------------------------
    def failure(self, key: str, p: Policy, now: float | None = None) -> int:
        """An upstream status from ``unhealthy.http_statuses``: the new unhealthy count."""
        t = time.time() if now is None else now
        it = int(t)
        tab = self.t
        fp = tab.fingerprint(key)
        tag = p.tag(fp)
        expires = it + p.max_sec + _IDLE
        if tab.cas is None:
            return self._locked(fp, tag, expires, it, True,
                                lambda w: p.after_failure(w, tag, t))
        mm = tab.mm
        for _ in range(4):
            off = tab._slot(fp, it)                    # claims the record when new
            woff = off + 16
            while True:
                (word,) = _Q.unpack_from(mm, woff)
                new, count = p.after_failure(word, tag, t)
                if tab._cas(woff, word, new):
                    break
            _Q.pack_into(mm, off + 8, expires)         # advisory (eviction order)
            (f,) = _Q.unpack_from(mm, off)
            if f == fp:
                return count
            # the record was reclaimed for another key while we counted: count again
        return count

    def success(self, key: str, p: Policy, now: float | None = None) -> int:
        """An upstream status from ``healthy.http_statuses``: the new healthy count (0 when
        there was no unhealthy count; ``successes`` when the state was reset)."""
        t = time.time() if now is None else now
        it = int(t)
        tab = self.t
        fp = tab.fingerprint(key)
        tag = p.tag(fp)
        off = self._lookup(fp)
        if off is None:                                # no failure counted: nothing to do
            return 0
        if tab.cas is None:
            return self._locked(fp, tag, it + p.max_sec + _IDLE, it, False,
                                lambda w: p.after_success(w, tag, t))
        mm = tab.mm
        woff = off + 16
        while True:
            (word,) = _Q.unpack_from(mm, woff)
            new, count = p.after_success(word, tag, t)
            if new is None:
                return 0
            if tab._cas(woff, word, new):
                break
        # healthy again: the record may be reused at once (unless it counted again since)
        _Q.pack_into(mm, off + 8, 0 if new == 0 else it + p.max_sec + _IDLE)
        if new == 0 and _Q.unpack_from(mm, woff)[0] != 0:
            _Q.pack_into(mm, off + 8, it + p.max_sec + _IDLE)
        return count

    def _locked(self, fp: int, tag: int, expires: int, it: int, create: bool,
                step: Callable[[int], tuple[int | None, int]]) -> int:
        """The fcntl-lock fallback: the same transition under the bucket's lock."""
        tab = self.t
        bucket = tab._lock(fp)
        try:
            off = self._lookup(fp)
            word = 0
            if off is not None:
                (word,) = _Q.unpack_from(tab.mm, off + 16)
            new, count = step(word)
            if new is None:
                return 0
            if off is None:
                if not create:
                    return 0
                off, _ = tab._find(fp, it)
                tab._claim(off, fp, expires, new, 0)
                return count
            _Q.pack_into(tab.mm, off + 16, new)
            _Q.pack_into(tab.mm, off + 8, expires if new else 0)
            return count
        finally:
            tab._unlock(bucket)


_breakers: Breakers | None = None


def breakers() -> Breakers:
    """This process's mapping of the node-wide breaker table (opened on first use)."""
    global _breakers
    shared = table(TABLE_NAME, TABLE_BUCKETS)
    if _breakers is None or _breakers.t is not shared:
        _breakers = Breakers(shared)
    return _breakers


__all__ = ["Breakers", "Policy", "State", "breakers", "fits"]
