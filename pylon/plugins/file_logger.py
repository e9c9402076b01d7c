"""file-logger: log entries appended to a file as JSON lines (APISIX).

``path`` (required), ``log_format`` (else plugin_metadata's, else the full log).  Entries
are gathered in the log phase and written off the request path: a batch every 0.1 s (or
1000 entries) in a worker thread, one ``write`` on an ``O_APPEND`` file, opened per batch so
that an external rotation (rename) is followed without a signal.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from pylon import pdk
from pylon.observe import batch, log_entry

name = "file-logger"
priority = 399
version = 0.1

schema = {
    "type": "object",
    "properties": {
        "path": {"type": "string"},
        "log_format": {"type": "object"},
    },
    "required": ["path"],
}
metadata_schema = log_entry.METADATA_SCHEMA
prepare_metadata = log_entry.prepare_metadata

_BATCH = {"name": "file logger", "batch_max_size": 1000, "inactive_timeout": 0.1,
          "buffer_duration": 1, "max_retry_count": 0, "retry_delay": 1}


def prepare(conf: dict[str, Any]) -> dict[str, Any]:
    return {**log_entry.prepare_logger(conf), "_batch": {**_BATCH, "path": conf["path"]}}


def _write(path: str, data: bytes) -> None:
    d = os.path.dirname(path)
    if d and not os.path.isdir(d):
        os.makedirs(d, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _sender(conf: dict[str, Any]) -> batch.Sender:
    path = conf["path"]

    async def send(entries: list[Any]) -> None:
        data = "".join(json.dumps(e, default=str) + "\n" for e in entries).encode()
        await asyncio.get_running_loop().run_in_executor(None, _write, path, data)

    return send


def log(conf: dict[str, Any], ctx: pdk.Context) -> None:
    p = batch.processor(name, ctx.route_id, conf["_key"], conf["_batch"], _sender)
    p.push(log_entry.entry(conf, ctx, name))
