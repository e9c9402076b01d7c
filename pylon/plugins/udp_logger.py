"""udp-logger: log entries sent as JSON datagrams in batches (APISIX).

``host``, ``port`` (required), ``timeout`` (seconds, 3), ``log_format`` (else
plugin_metadata's, else the full log) and the batch options.  A batch of one entry is one
JSON object, a larger batch one JSON array, in one datagram.
``include_req_body`` / ``include_resp_body`` with their ``*_expr`` and ``max_*_body_bytes``
put the bodies in the entry (``pylon.observe.log_entry``).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from pylon.observe import batch, log_entry
from pylon.observe.log_entry import (  # noqa: F401
    access, body_filter, check, phases, prepare_metadata)
from pylon.plugins.tcp_logger import encode

name = "udp-logger"
priority = 400
version = 0.1

schema = log_entry.logger_schema({
    **log_entry.SOCKET_PROPERTIES,
    "timeout": {"type": "integer", "minimum": 1, "default": 3},
}, ["host", "port"], "udp logger")
metadata_schema = log_entry.METADATA_SCHEMA
# check, prepare_metadata, access and body_filter (the body capture hooks) are log_entry's
prepare = log_entry.prepare_logger


async def send_udp(host: str, port: int, data: bytes, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM),
                                   timeout)
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.setblocking(False)            # a datagram is queued at once or fails (EAGAIN)
        s.sendto(data, addr)


def _sender(conf: dict[str, Any]) -> batch.Sender:
    host, port, timeout = conf["host"], conf["port"], conf["timeout"]
    size = conf["batch_max_size"]

    async def send(entries: list[Any]) -> None:
        await send_udp(host, port, encode(entries, size), timeout)

    return send


log = log_entry.batch_log(name, _sender)
