"""udp-logger: log entries sent as JSON datagrams in batches (APISIX).

``host``, ``port`` (required), ``timeout`` (seconds, 3), ``log_format`` (else
plugin_metadata's, else the full log) and the batch options.  A batch of one entry is one
JSON object, a larger batch one JSON array, in one datagram.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from pylon import pdk
from pylon.observe import batch, log_entry
from pylon.plugins.tcp_logger import encode

name = "udp-logger"
priority = 400
version = 0.1

schema = batch.wrap_schema({
    "type": "object",
    "properties": {
        "host": {"type": "string"},
        "port": {"type": "integer", "minimum": 0},
        "timeout": {"type": "integer", "minimum": 1, "default": 3},
        "log_format": {"type": "object"},
        "include_req_body": {"type": "boolean", "default": False},
    },
    "required": ["host", "port"],
}, "udp logger")
metadata_schema = log_entry.METADATA_SCHEMA
prepare_metadata = log_entry.prepare_metadata


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


def log(conf: dict[str, Any], ctx: pdk.Context) -> None:
    p = batch.processor(name, ctx.route_id, conf["_key"], conf, _sender)
    p.push(log_entry.entry(conf, ctx, name))
