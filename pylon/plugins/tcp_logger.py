"""tcp-logger: log entries sent as JSON over TCP (optionally TLS) in batches (APISIX).

``host``, ``port`` (required), ``tls`` (false), ``tls_options`` (accepted, unused: SNI is
the host), ``timeout`` (milliseconds, 1000), ``log_format`` (else plugin_metadata's, else
the full log) and the batch options.  A batch of one entry is sent as a JSON object, a
larger batch as one JSON array, on a new connection.
``include_req_body`` / ``include_resp_body`` with their ``*_expr`` and ``max_*_body_bytes``
put the bodies in the entry (``pylon.observe.log_entry``).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

from pylon.observe import batch, log_entry
from pylon.observe.log_entry import (  # noqa: F401
    access, body_filter, check, phases, prepare_metadata)

name = "tcp-logger"
priority = 405
version = 0.1

schema = log_entry.logger_schema({
    **log_entry.SOCKET_PROPERTIES,
    "tls": {"type": "boolean", "default": False},
    "tls_options": {"type": "string"},
    "timeout": {"type": "integer", "minimum": 1, "default": 1000},
}, ["host", "port"], "tcp logger")
metadata_schema = log_entry.METADATA_SCHEMA
# check, prepare_metadata, access and body_filter (the body capture hooks) are log_entry's
prepare = log_entry.prepare_logger


def encode(entries: list[Any], batch_max_size: int) -> bytes:
    if batch_max_size == 1:
        return json.dumps(entries[0], default=str).encode()
    return json.dumps(entries, default=str).encode()


async def send_tcp(host: str, port: int, data: bytes, timeout: float,
                   tls: bool = False) -> None:
    async def go() -> None:
        ctx = None
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        _, w = await asyncio.open_connection(host, port, ssl=ctx,
                                             server_hostname=host if tls else None)
        try:
            w.write(data)
            await w.drain()
        finally:
            w.close()
    await asyncio.wait_for(go(), timeout)


def _sender(conf: dict[str, Any]) -> batch.Sender:
    host, port, tls = conf["host"], conf["port"], conf["tls"]
    timeout = conf["timeout"] / 1000
    size = conf["batch_max_size"]

    async def send(entries: list[Any]) -> None:
        await send_tcp(host, port, encode(entries, size), timeout, tls)

    return send


log = log_entry.batch_log(name, _sender)
