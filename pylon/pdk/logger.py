"""The logger plugins' base (APISIX ``log-util`` + ``batch-processor``).

A logger plugin is a handful of lines on top of this: its ``schema`` from ``logger_schema``
(the batch options and ``log_format`` / body options added), ``prepare = prepare_logger``,
``log = batch_log(name, make_sender)`` (the entry, queued in the plugin's batch processor,
sent off the request by ``make_sender(conf)``'s coroutine), and the body-capture hooks
``access`` / ``body_filter`` / ``phases`` with ``check`` and ``prepare_metadata`` re-exported
as module attributes.  ``send_tcp`` / ``send_udp`` / ``encode_entries`` are what the socket
loggers (tcp-logger, udp-logger, syslog) share.  The entry itself: ``pylon.observe.log_entry``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from typing import Any

from ..observe.batch import BatchProcessor, Sender
from ..observe.log_entry import (
    HOSTNAME,
    METADATA_SCHEMA,
    SOCKET_PROPERTIES,
    access,
    batch_log,
    batch_stream_log,
    body_filter,
    check,
    entry,
    full_log,
    logger_schema,
    phases,
    prepare_logger,
    prepare_metadata,
)


def encode_entries(entries: list[Any], batch_max_size: int) -> bytes:
    """A batch as sent on a socket: one JSON object when batches are of one entry, else one
    JSON array."""
    if batch_max_size == 1:
        return json.dumps(entries[0], default=str).encode()
    return json.dumps(entries, default=str).encode()


async def send_tcp(host: str, port: int, data: bytes, timeout: float,
                   tls: bool = False) -> None:
    """``data`` on a new TCP (or TLS, unverified, SNI the host) connection, within
    ``timeout`` seconds."""
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


async def send_udp(host: str, port: int, data: bytes, timeout: float) -> None:
    """``data`` as one datagram (the name resolved within ``timeout`` seconds)."""
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM),
                                   timeout)
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.setblocking(False)            # a datagram is queued at once or fails (EAGAIN)
        s.sendto(data, addr)


__all__ = ["HOSTNAME", "METADATA_SCHEMA", "SOCKET_PROPERTIES", "BatchProcessor", "Sender",
           "access", "batch_log", "batch_stream_log", "body_filter", "check",
           "encode_entries", "entry", "full_log", "logger_schema", "phases", "prepare_logger",
           "prepare_metadata",
           "send_tcp", "send_udp"]
