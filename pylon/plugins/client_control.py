"""client-control: a per-route request body size limit, as APISIX's ``client-control``.

Route: ``max_body_size`` (bytes; 0: no limit from this plugin).  A request whose
Content-Length exceeds it is answered 413 before anything is read or proxied; a chunked body
(no Content-Length) is read through the limit and answered 413 as soon as it goes over, as
nginx does with ``client_max_body_size``.  The answer is the gateway's own 413, the same as
the node-wide ``client_max_body_size`` gives.

Unlike APISIX this cannot raise the limit above the node's ``client_max_body_size`` (the
connection enforces that one before any plugin runs), nor lift it with 0.
"""

from __future__ import annotations

from typing import Any

from pylon import pdk

name = "client-control"
priority = 22000
version = 0.1

schema = {
    "type": "object",
    "properties": {
        "max_body_size": {"type": "integer", "minimum": 0,
                          "description": "Maximum message body size in bytes. "
                                         "No restriction when set to 0."},
    },
}


def rewrite(conf: dict[str, Any], ctx: pdk.Context) -> Any:
    limit = conf.get("max_body_size")
    if not limit:
        return None
    head = ctx.head
    length = head.content_length
    if length is not None:
        if length > limit:
            raise pdk.BodyTooLarge()
        return None
    if head.chunked:
        return _read_through(ctx, limit)
    return None


async def _read_through(ctx: pdk.Context, limit: int) -> None:
    body = await ctx.read_body(limit=limit)   # raises BodyTooLarge (413) past the limit...
    if len(body) > limit:                     # ...unless it had all arrived already
        raise pdk.BodyTooLarge()
