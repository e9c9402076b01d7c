"""udp-logger: log entries sent as JSON datagrams in batches (APISIX).

``host``, ``port`` (required), ``timeout`` (seconds, 3), ``log_format`` (else
plugin_metadata's, else the full log) and the batch options.  A batch of one entry is one
JSON object, a larger batch one JSON array, in one datagram.
``include_req_body`` / ``include_resp_body`` with their ``*_expr`` and ``max_*_body_bytes``
put the bodies in the entry (``pylon.pdk.logger``).
"""

from __future__ import annotations

from typing import Any

from pylon.pdk import logger
from pylon.pdk.logger import access, body_filter, check, phases, prepare_metadata  # noqa: F401

name = "udp-logger"
priority = 400
version = 0.1

schema = logger.logger_schema({
    **logger.SOCKET_PROPERTIES,
    "timeout": {"type": "integer", "minimum": 1, "default": 3},
}, ["host", "port"], "udp logger")
metadata_schema = logger.METADATA_SCHEMA
# check, prepare_metadata, access and body_filter (the body capture hooks) are pdk.logger's
prepare = logger.prepare_logger


def _sender(conf: dict[str, Any]) -> logger.Sender:
    host, port, timeout = conf["host"], conf["port"], conf["timeout"]
    size = conf["batch_max_size"]

    async def send(entries: list[Any]) -> None:
        await logger.send_udp(host, port, logger.encode_entries(entries, size), timeout)

    return send


log = logger.batch_log(name, _sender)
