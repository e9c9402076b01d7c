"""http-logger: log entries POSTed in batches to an HTTP(S) server (APISIX).

``uri`` (required), ``auth_header`` (sent as ``Authorization``), ``timeout`` (3 s),
``log_format`` (else plugin_metadata's, else the full log), ``concat_method`` ``json`` (one
JSON array per batch, ``Content-Type: application/json``) or ``new_line`` (one JSON object a
line, ``text/plain``), ``ssl_verify`` (false), and the batch options (``batch_max_size``,
``inactive_timeout``, ``buffer_duration``, ``max_retry_count``, ``retry_delay``, ``name``).
A response status >= 400 fails the batch (retried per ``max_retry_count``).
"""

from __future__ import annotations

import json
from typing import Any

from pylon import pdk
from pylon.observe import batch, log_entry
from pylon.pdk import http

name = "http-logger"
priority = 410
version = 0.1

schema = batch.wrap_schema({
    "type": "object",
    "properties": {
        "uri": {"type": "string", "pattern": "^[^\\/]+:\\/\\/([\\da-zA-Z.-]+|\\[[\\da-fA-F:]+\\])"
                                             "(:\\d+)?"},
        "auth_header": {"type": "string"},
        "timeout": {"type": "integer", "minimum": 1, "default": 3},
        "log_format": {"type": "object"},
        "include_req_body": {"type": "boolean", "default": False},
        "include_resp_body": {"type": "boolean", "default": False},
        "concat_method": {"type": "string", "default": "json", "enum": ["json", "new_line"]},
        "ssl_verify": {"type": "boolean", "default": False},
    },
    "required": ["uri"],
}, "http logger")
metadata_schema = log_entry.METADATA_SCHEMA
prepare_metadata = log_entry.prepare_metadata


prepare = log_entry.prepare_logger


def _sender(conf: dict[str, Any]) -> batch.Sender:
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


def log(conf: dict[str, Any], ctx: pdk.Context) -> None:
    p = batch.processor(name, ctx.route_id, conf["_key"], conf, _sender)
    p.push(log_entry.entry(conf, ctx, name))
