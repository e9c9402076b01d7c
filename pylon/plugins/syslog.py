"""syslog: log entries sent to a syslog server as RFC 5424 messages, over TCP or UDP (APISIX).

``host``, ``port`` (required), ``sock_type`` (``tcp`` | ``udp``, tcp), ``timeout``
(milliseconds, 3000), ``tls`` (false, tcp only), ``log_format`` (else plugin_metadata's,
else the full log), the batch options (``name`` "sys logger").  ``flush_limit``,
``drop_limit`` and ``pool_size`` are accepted for compatibility (the batch processor bounds
memory instead).  Each entry is one message
``<46>1 TIMESTAMP HOSTNAME apisix PID - - {json}\\n`` (facility syslog, severity info); a
batch goes in one TCP write, or one datagram per message over UDP.
``include_req_body`` / ``include_resp_body`` with their ``*_expr`` and ``max_*_body_bytes``
put the bodies in the entry (``pylon.observe.log_entry``).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from pylon.observe import batch, log_entry
from pylon.observe.log_entry import (  # noqa: F401
    access, body_filter, check, phases, prepare_metadata)
from pylon.plugins.tcp_logger import send_tcp
from pylon.plugins.udp_logger import send_udp

name = "syslog"
priority = 401
version = 0.1

schema = log_entry.logger_schema({
    "host": {"type": "string"},
    "port": {"type": "integer"},
    "flush_limit": {"type": "integer", "minimum": 1, "default": 4096},
    "drop_limit": {"type": "integer", "default": 1048576},
    "timeout": {"type": "integer", "minimum": 1, "default": 3000},
    "sock_type": {"type": "string", "default": "tcp", "enum": ["tcp", "udp"]},
    "pool_size": {"type": "integer", "minimum": 5, "default": 5},
    "tls": {"type": "boolean", "default": False},
}, ["host", "port"], "sys logger")
metadata_schema = log_entry.METADATA_SCHEMA
# check, prepare_metadata, access and body_filter (the body capture hooks) are log_entry's
prepare = log_entry.prepare_logger

PRI = 5 * 8 + 6          # facility syslog (5), severity info (6)


def rfc5424(msg: str, hostname: str = log_entry.HOSTNAME, app: str = "apisix") -> bytes:
    ts = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"
    return f"<{PRI}>1 {stamp} {hostname or '-'} {app} {os.getpid()} - - {msg}\n".encode()


def _sender(conf: dict[str, Any]) -> batch.Sender:
    host, port, tls = conf["host"], conf["port"], conf["tls"]
    timeout = conf["timeout"] / 1000
    udp = conf["sock_type"] == "udp"

    async def send(entries: list[Any]) -> None:
        msgs = [rfc5424(json.dumps(e, default=str)) for e in entries]
        if udp:
            for m in msgs:
                await send_udp(host, port, m, timeout)
        else:
            await send_tcp(host, port, b"".join(msgs), timeout, tls)

    return send


log = log_entry.batch_log(name, _sender)
