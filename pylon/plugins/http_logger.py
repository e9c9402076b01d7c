"""http-logger: log entries POSTed in batches to an HTTP(S) server (APISIX).

``uri`` (required), ``auth_header`` (sent as ``Authorization``; a secret: stored encrypted,
masked in the audit log -- Pylon's, APISIX keeps it in plain text), ``timeout`` (3 s),
``log_format`` (else plugin_metadata's, else the full log), ``concat_method`` ``json`` (one
JSON array per batch, ``Content-Type: application/json``) or ``new_line`` (one JSON object a
line, ``text/plain``), ``ssl_verify`` (false), and the batch options (``batch_max_size``,
``inactive_timeout``, ``buffer_duration``, ``max_retry_count``, ``retry_delay``, ``name``).
A response status >= 400 fails the batch (retried per ``max_retry_count``).
``include_req_body`` / ``include_resp_body`` with their ``*_expr`` and ``max_*_body_bytes``
put the bodies in the entry (``pylon.pdk.logger``).
"""

from __future__ import annotations

import json
from typing import Any

from pylon.pdk import http, logger
from pylon.pdk.logger import access, body_filter, check, phases, prepare_metadata  # noqa: F401

name = "http-logger"
priority = 410
version = 0.1

schema = logger.logger_schema({
    "uri": {"type": "string", "pattern": "^[^\\/]+:\\/\\/([\\da-zA-Z.-]+|\\[[\\da-fA-F:]+\\])"
                                         "(:\\d+)?"},
    "auth_header": {"type": "string"},
    "timeout": {"type": "integer", "minimum": 1, "default": 3},
    "concat_method": {"type": "string", "default": "json", "enum": ["json", "new_line"]},
    "ssl_verify": {"type": "boolean", "default": False},
}, ["uri"], "http logger")
#: Pylon's (APISIX keeps it in plain text): the log server's Authorization value is a secret
encrypt_fields = ("auth_header",)
metadata_schema = logger.METADATA_SCHEMA
# check, prepare_metadata, access and body_filter (the body capture hooks) are pdk.logger's
prepare = logger.prepare_logger


def _sender(conf: dict[str, Any]) -> logger.Sender:
    headers = {"Content-Type": "application/json" if conf["concat_method"] == "json"
               else "text/plain"}
    if conf.get("auth_header"):
        headers["Authorization"] = conf["auth_header"]
    uri, timeout, verify = conf["uri"], conf["timeout"], conf["ssl_verify"]
    as_array = conf["concat_method"] == "json"

    async def send(entries: list[Any]) -> None:
        if as_array:
            body = json.dumps(entries, default=str)
        else:
            body = "\n".join(json.dumps(e, default=str) for e in entries)
        r = await http.request("POST", uri, headers=headers, body=body, timeout=timeout,
                               verify=verify)
        if r.status >= 400:
            raise RuntimeError(f"server returned status code[{r.status}] host[{uri}]")

    return send


log = logger.batch_log(name, _sender)
