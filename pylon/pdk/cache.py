"""A bounded key → (meta, body) cache in files, shared by every process that opens the same
directory (``proxy-cache``'s zones; nginx's ``proxy_cache_path`` in spirit).

* One file per key at ``<dir>/<levels>/<md5(key)>`` (nginx's layout: ``cache_levels`` "1:2"
  takes the last hex digit, then the two before it, as directory names).  The file holds a
  short header, the meta (JSON) and the body.
* Writes never show a half-written entry: the body streams into a temporary file next to the
  entry (``Writer``), which is renamed over it when complete.
* The total size is bounded: every process adds what it writes to a shared counter
  (``<dir>/.size``, 8 bytes under ``flock``).  When the total goes over the bound, the
  process that noticed scans the zone and removes the least recently used entries (a hit
  touches its file's mtime) until the zone is back under 90 % of it; the scan also resets the
  counter to the true total, so a crashed writer's drift does not last.
* A disk zone survives a restart (the files and the counter are on disk); a memory zone lives
  in the node's shared-memory directory (tmpfs) and goes with the node.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import logging
import os
import struct
import time
from typing import Any

import msgspec

log = logging.getLogger("pylon.cache")

_MAGIC = b"PYC1"
_HEAD = struct.Struct("<4sI")          # magic, meta length
_Q = struct.Struct("<Q")
_json_enc = msgspec.json.Encoder()
_json_dec = msgspec.json.Decoder()
_seq = itertools.count()
#: a scan keeps the zone under this share of its bound (room for the next writes)
LOW_WATER = 0.9
#: temporary files older than this are a dead writer's: removed by scans
STALE_TMP = 600.0


class FileCache:
    """One zone.  ``get`` / ``delete`` / ``writer`` per request; all are plain blocking
    file calls on small files (the cost of an ``open`` and a ``read``)."""

    def __init__(self, path: str, max_bytes: int, levels: str = "1:2",
                 inactive: float = 86400.0, max_entry: int | None = None) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.levels = [int(n) for n in levels.split(":")] if levels else []
        self.inactive = inactive
        #: the largest entry kept (a response larger than this streams through uncached)
        self.max_entry = max_entry if max_entry is not None else max(max_bytes // 4, 1)
        os.makedirs(path, exist_ok=True)
        self._size_fd = -1

    # -- layout ------------------------------------------------------------------------------
    def filename(self, key: str) -> str:
        digest = hashlib.md5(key.encode("utf-8", "surrogateescape"),
                             usedforsecurity=False).hexdigest()
        parts = [self.path]
        end = len(digest)
        for n in self.levels:
            parts.append(digest[end - n:end])
            end -= n
        parts.append(digest)
        return os.path.join(*parts)

    # -- reading -----------------------------------------------------------------------------
    def get(self, key: str) -> tuple[dict[str, Any], bytes] | None:
        """The entry's meta and body, or None (absent, unreadable, another key's)."""
        path = self.filename(key)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            size = os.fstat(fd).st_size
            data = os.read(fd, size) if size else b""
            while len(data) < size:
                more = os.read(fd, size - len(data))
                if not more:
                    break
                data += more
            with contextlib.suppress(OSError):
                os.utime(fd)                   # recently used: the last to be evicted
        except OSError:
            return None
        finally:
            os.close(fd)
        return _decode(data, key)

    def delete(self, key: str) -> bool:
        """Remove the entry; False when there was none."""
        path = self.filename(key)
        try:
            size = os.stat(path).st_size
            os.unlink(path)
        except OSError:
            return False
        self._account(-size)
        return True

    # -- writing -----------------------------------------------------------------------------
    def writer(self, key: str, meta: dict[str, Any]) -> Writer | None:
        """A writer for ``key``'s new entry (None when the zone cannot take files now)."""
        path = self.filename(key)
        head = _encode_head(key, meta)
        if len(head) > self.max_entry:
            return None
        tmp = f"{os.path.dirname(path)}/.{os.path.basename(path)}.{os.getpid()}.{next(_seq)}"
        try:
            fd = _open_new(tmp)
        except OSError as e:
            log.error("proxy cache %s: cannot write %s: %s", self.path, tmp, e)
            return None
        w = Writer(self, path, tmp, fd)
        if not w.write(head):
            return None
        return w

    def put(self, key: str, meta: dict[str, Any], body: bytes) -> bool:
        w = self.writer(key, meta)
        return w is not None and w.write(body) and w.commit()

    # -- size accounting and eviction ---------------------------------------------------------
    def _counter(self) -> int:
        fd = self._size_fd
        if fd < 0:
            fd = self._size_fd = os.open(os.path.join(self.path, ".size"),
                                         os.O_RDWR | os.O_CREAT, 0o600)
        return fd

    def _account(self, delta: int) -> None:
        """Add ``delta`` to the zone's total; over the bound, evict (under the lock)."""
        try:
            fd = self._counter()
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as e:
            log.error("proxy cache %s: size counter: %s", self.path, e)
            return
        try:
            raw = os.pread(fd, 8, 0)
            if len(raw) < 8:                   # a new zone (or a lost counter): count it
                total = self._scan(None)
            else:
                total = max(_Q.unpack(raw)[0] + delta, 0)
            if total > self.max_bytes:
                total = self._scan(int(self.max_bytes * LOW_WATER))
            os.pwrite(fd, _Q.pack(total), 0)
        except OSError as e:
            log.error("proxy cache %s: size counter: %s", self.path, e)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _scan(self, target: int | None) -> int:
        """The zone's true total; with ``target``, least recently used entries removed until
        the total is at most that.  Entries unused for ``inactive`` seconds and dead
        writers' temporary files go in any case."""
        now = time.time()
        entries: list[tuple[float, int, str]] = []
        total = 0
        for root, _dirs, files in os.walk(self.path):
            for fn in files:
                p = os.path.join(root, fn)
                try:
                    st = os.stat(p)
                except OSError:
                    continue
                if fn.startswith("."):
                    if fn != ".size" and now - st.st_mtime > STALE_TMP:
                        with contextlib.suppress(OSError):
                            os.unlink(p)
                    continue
                if now - st.st_mtime > self.inactive:
                    with contextlib.suppress(OSError):
                        os.unlink(p)
                    continue
                entries.append((st.st_mtime, st.st_size, p))
                total += st.st_size
        if target is not None and total > target:
            entries.sort()
            for _mtime, size, p in entries:
                if total <= target:
                    break
                with contextlib.suppress(OSError):
                    os.unlink(p)
                    total -= size
        return total

    def close(self) -> None:
        if self._size_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._size_fd)
            self._size_fd = -1


class Writer:
    """An entry being written: ``write`` chunks as they come, then ``commit`` (or
    ``abort``).  Past the zone's ``max_entry`` the writer gives up by itself."""

    __slots__ = ("cache", "done", "fd", "path", "size", "tmp")

    def __init__(self, cache: FileCache, path: str, tmp: str, fd: int) -> None:
        self.cache = cache
        self.path = path
        self.tmp = tmp
        self.fd = fd
        self.size = 0
        self.done = False

    def write(self, data: bytes) -> bool:
        """False (and the writer aborted) when the entry grew too large or the write failed."""
        if self.done:
            return False
        if not data:
            return True
        self.size += len(data)
        if self.size > self.cache.max_entry:
            self.abort()
            return False
        try:
            view = memoryview(data)
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
        except OSError as e:
            log.error("proxy cache %s: write failed: %s", self.cache.path, e)
            self.abort()
            return False
        return True

    def commit(self) -> bool:
        if self.done:
            return False
        self.done = True
        try:
            os.close(self.fd)
            try:
                old = os.stat(self.path).st_size
            except OSError:
                old = 0
            os.replace(self.tmp, self.path)
        except OSError as e:
            log.error("proxy cache %s: cannot store an entry: %s", self.cache.path, e)
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
            return False
        self.cache._account(self.size - old)
        return True

    def abort(self) -> None:
        if self.done:
            return
        self.done = True
        with contextlib.suppress(OSError):
            os.close(self.fd)
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)


def _open_new(tmp: str) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        return os.open(tmp, flags, 0o600)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(tmp), exist_ok=True)
        return os.open(tmp, flags, 0o600)


def _encode_head(key: str, meta: dict[str, Any]) -> bytes:
    raw = _json_enc.encode({"key": key, "meta": meta})
    return _HEAD.pack(_MAGIC, len(raw)) + raw


def _decode(data: bytes, key: str) -> tuple[dict[str, Any], bytes] | None:
    if len(data) < _HEAD.size:
        return None
    magic, n = _HEAD.unpack_from(data)
    if magic != _MAGIC or _HEAD.size + n > len(data):
        return None
    try:
        head = _json_dec.decode(data[_HEAD.size:_HEAD.size + n])
    except msgspec.DecodeError:
        return None
    if not isinstance(head, dict) or head.get("key") != key:
        return None
    return head.get("meta") or {}, data[_HEAD.size + n:]


__all__ = ["FileCache", "Writer"]
