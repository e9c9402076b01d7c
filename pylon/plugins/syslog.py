"""syslog: log entries sent to a syslog server as RFC 5424 messages, over TCP or UDP (APISIX).

``host``, ``port`` (required), ``sock_type`` (``tcp`` | ``udp``, tcp), ``timeout``
(milliseconds, 3000), ``tls`` (false, tcp only), ``log_format`` (else plugin_metadata's,
else the full log), the batch options (``name`` "sys logger").  ``flush_limit``,
``drop_limit`` and ``pool_size`` are accepted for compatibility (the batch processor bounds
memory instead).  Each entry is one message
``<46>1 TIMESTAMP HOSTNAME apisix PID - - {json}\\n`` (facility syslog, severity info); a
batch goes in one TCP write, or one datagram per message over UDP.
``include_req_body`` / ``include_resp_body`` with their ``*_expr`` and ``max_*_body_bytes``
put the bodies in the entry (``pylon.pdk.logger``).  On a stream route, one entry per
connection (``stream_log``: client, upstream, route, latency, bytes; docs/stream.md).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from pylon.pdk import logger
from pylon.pdk.logger import access, body_filter, check, phases, prepare_metadata  # noqa: F401

name = "syslog"
priority = 401
version = 0.1

schema = logger.logger_schema({
    "host": {"type": "string"},
    "port": {"type": "integer"},
    "flush_limit": {"type": "integer", "minimum": 1, "default": 4096},
    "drop_limit": {"type": "integer", "default": 1048576},
    "timeout": {"type": "integer", "minimum": 1, "default": 3000},
    "sock_type": {"type": "string", "default": "tcp", "enum": ["tcp", "udp"]},
    "pool_size": {"type": "integer", "minimum": 5, "default": 5},
    "tls": {"type": "boolean", "default": False},
}, ["host", "port"], "sys logger")
metadata_schema = logger.METADATA_SCHEMA
# check, prepare_metadata, access and body_filter (the body capture hooks) are pdk.logger's
prepare = logger.prepare_logger

PRI = 5 * 8 + 6          # facility syslog (5), severity info (6)


def rfc5424(msg: str, hostname: str = logger.HOSTNAME, app: str = "apisix") -> bytes:
    ts = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"
    return f"<{PRI}>1 {stamp} {hostname or '-'} {app} {os.getpid()} - - {msg}\n".encode()


def _sender(conf: dict[str, Any]) -> logger.Sender:
    host, port, tls = conf["host"], conf["port"], conf["tls"]
    timeout = conf["timeout"] / 1000
    udp = conf["sock_type"] == "udp"

    async def send(entries: list[Any]) -> None:
        msgs = [rfc5424(json.dumps(e, default=str)) for e in entries]
        if udp:
            for m in msgs:
                await logger.send_udp(host, port, m, timeout)
        else:
            await logger.send_tcp(host, port, b"".join(msgs), timeout, tls)

    return send


log = logger.batch_log(name, _sender)
#: stream routes (APISIX's stream syslog): one entry per connection, when it ends
stream_log = logger.batch_stream_log(name, _sender)
