"""Files replaced atomically: the standalone document, the last-known-good copy, the node
config.

The Admin API is the single writer of the file store (it runs in the master).  A write goes
to a temporary file in the same directory (``.pylon-XXXXXXXX.tmp``), is fsynced, then renamed
over the target, so the file watcher (and any reader) sees either the old or the new content,
never a torn one.  JSON when the path ends in ``.json``, YAML otherwise, always ending with
APISIX's ``#END`` marker (without it the file would not be applied).  A temporary file left by
a write the process did not finish (kill -9) is removed at the next start
(``remove_stale_temps``).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from typing import Any

import msgspec
import yaml

from .loader import END_MARK

try:  # libyaml is bundled in PyYAML's wheels
    _Dumper: type = yaml.CSafeDumper
except AttributeError:  # pragma: no cover
    _Dumper = yaml.SafeDumper

log = logging.getLogger("pylon.config")

_TMP_PREFIX, _TMP_SUFFIX = ".pylon-", ".tmp"
#: the names ``mkstemp`` gives our temporary files, and only those
_TMP_NAME = re.compile(r"\.pylon-[a-z0-9_]{8}\.tmp")
#: when this process started: a temporary file older than that is no write of ours
_BOOT = time.time()


def encode_doc(path: str, doc: Any) -> bytes:
    """The file content for ``doc``: JSON for ``*.json``, YAML ending with ``#END``
    otherwise."""
    if path.endswith(".json"):
        return msgspec.json.format(msgspec.json.encode(doc), indent=2) + b"\n"
    text = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False)
    return (text + END_MARK + "\n").encode("utf-8")


def write_doc_atomically(path: str, doc: Any) -> None:
    """Replace ``path`` with ``doc``, keeping the file's mode."""
    data = encode_doc(path, doc)
    try:
        mode: int | None = os.stat(path).st_mode & 0o7777
    except OSError:
        mode = None
    write_atomically(path, data, mode)


def remove_stale_temps(directory: str) -> list[str]:
    """Remove the temporary files of writes interrupted before this process started (their
    writer was killed between create and rename) from ``directory``; the names removed."""
    removed: list[str] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        if not _TMP_NAME.fullmatch(entry.name):
            continue
        try:
            if not entry.is_file(follow_symlinks=False) \
                    or entry.stat(follow_symlinks=False).st_mtime >= _BOOT:
                continue
            os.unlink(entry.path)
        except OSError as e:
            log.warning("cannot remove the stale temporary file %s: %s", entry.path,
                        e.strerror or e)
            continue
        log.warning("removed %s, left by an interrupted write", entry.path)
        removed.append(entry.name)
    return removed


def write_atomically(path: str, data: bytes, mode: int | None = None) -> None:
    """Replace ``path`` with ``data``: a temporary file in the same directory, fsynced,
    renamed over it, then the directory fsynced -- readers see the old or the new content,
    never a torn one, and a crash leaves one of the two.  ``mode`` is set before the rename
    (a file holding secrets is never readable by others, not even for a moment)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=_TMP_SUFFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(dfd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(dfd)
