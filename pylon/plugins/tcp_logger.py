"""tcp-logger: log entries sent as JSON over TCP (optionally TLS) in batches (APISIX).

``host``, ``port`` (required), ``tls`` (false), ``tls_options`` (accepted, unused: SNI is
the host), ``timeout`` (milliseconds, 1000), ``log_format`` (else plugin_metadata's, else
the full log) and the batch options.  A batch of one entry is sent as a JSON object, a
larger batch as one JSON array, on a new connection.
``include_req_body`` / ``include_resp_body`` with their ``*_expr`` and ``max_*_body_bytes``
put the bodies in the entry (``pylon.pdk.logger``).
"""

from __future__ import annotations

from typing import Any

from pylon.pdk import logger
from pylon.pdk.logger import access, body_filter, check, phases, prepare_metadata  # noqa: F401

name = "tcp-logger"
priority = 405
version = 0.1

schema = logger.logger_schema({
    **logger.SOCKET_PROPERTIES,
    "tls": {"type": "boolean", "default": False},
    "tls_options": {"type": "string"},
    "timeout": {"type": "integer", "minimum": 1, "default": 1000},
}, ["host", "port"], "tcp logger")
metadata_schema = logger.METADATA_SCHEMA
# check, prepare_metadata, access and body_filter (the body capture hooks) are pdk.logger's
prepare = logger.prepare_logger


def _sender(conf: dict[str, Any]) -> logger.Sender:
    host, port, tls = conf["host"], conf["port"], conf["tls"]
    timeout = conf["timeout"] / 1000
    size = conf["batch_max_size"]

    async def send(entries: list[Any]) -> None:
        await logger.send_tcp(host, port, logger.encode_entries(entries, size), timeout, tls)

    return send


log = logger.batch_log(name, _sender)
