"""file-logger: log entries appended to a file as JSON lines (APISIX).

``path`` (required), ``log_format`` (else plugin_metadata's, else the full log).  Entries
are gathered in the log phase and written off the request path: a batch every 0.1 s (or
1000 entries) in a worker thread, one ``write`` on an ``O_APPEND`` file, opened per batch so
that an external rotation (rename) is followed without a signal.
``include_req_body`` / ``include_resp_body`` with their ``*_expr`` and ``max_*_body_bytes``
put the bodies in the entry (``pylon.pdk.logger``).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from pylon.pdk import logger
from pylon.pdk.logger import access, body_filter, check, phases, prepare_metadata  # noqa: F401

name = "file-logger"
priority = 399
version = 0.1

schema = logger.logger_schema({"path": {"type": "string"}}, ["path"])
metadata_schema = logger.METADATA_SCHEMA
# check, prepare_metadata, access and body_filter (the body capture hooks) are pdk.logger's

_BATCH = {"name": "file logger", "batch_max_size": 1000, "inactive_timeout": 0.1,
          "buffer_duration": 1, "max_retry_count": 0, "retry_delay": 1}


def prepare(conf: dict[str, Any]) -> dict[str, Any]:
    return {**logger.prepare_logger(conf), "_batch": {**_BATCH, "path": conf["path"]}}


def _write(path: str, data: bytes) -> None:
    d = os.path.dirname(path)
    if d and not os.path.isdir(d):
        os.makedirs(d, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _sender(conf: dict[str, Any]) -> logger.Sender:
    path = conf["path"]

    async def send(entries: list[Any]) -> None:
        data = "".join(json.dumps(e, default=str) + "\n" for e in entries).encode()
        await asyncio.get_running_loop().run_in_executor(None, _write, path, data)

    return send


log = logger.batch_log(name, _sender, "_batch")
