"""Files replaced atomically: the standalone document, the last-known-good copy, the node
config.

The Admin API is the single writer of the file store (it runs in the master).  A write goes
to a temporary file in the same directory, is fsynced, then renamed over the target, so the
file watcher (and any reader) sees either the old or the new content, never a torn one.
JSON when the path ends in ``.json``, YAML otherwise; APISIX's trailing ``#END`` marker is
kept when the previous file had one.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import msgspec
import yaml

try:  # libyaml is bundled in PyYAML's wheels
    _Dumper: type = yaml.CSafeDumper
except AttributeError:  # pragma: no cover
    _Dumper = yaml.SafeDumper

END_MARK = "#END"


def _had_end_mark(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64))
            tail = f.read()
    except OSError:
        return False
    return tail.rstrip().endswith(END_MARK.encode())


def encode_doc(path: str, doc: Any, end_mark: bool = False) -> bytes:
    """The file content for ``doc``: JSON for ``*.json``, YAML otherwise."""
    if path.endswith(".json"):
        return msgspec.json.format(msgspec.json.encode(doc), indent=2) + b"\n"
    text = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False)
    if end_mark:
        text += END_MARK + "\n"
    return text.encode("utf-8")


def write_doc_atomically(path: str, doc: Any) -> None:
    """Replace ``path`` with ``doc``, keeping the file's mode."""
    data = encode_doc(path, doc, end_mark=not path.endswith(".json") and _had_end_mark(path))
    try:
        mode: int | None = os.stat(path).st_mode & 0o7777
    except OSError:
        mode = None
    write_atomically(path, data, mode)


def write_atomically(path: str, data: bytes, mode: int | None = None) -> None:
    """Replace ``path`` with ``data``: a temporary file in the same directory, fsynced,
    renamed over it, then the directory fsynced -- readers see the old or the new content,
    never a torn one, and a crash leaves one of the two.  ``mode`` is set before the rename
    (a file holding secrets is never readable by others, not even for a moment)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".pylon-", suffix=".tmp", dir=directory)
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
