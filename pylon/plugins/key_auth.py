"""key-auth: a consumer identified by an API key in a header or the query string (APISIX).

Route: ``header`` (default ``apikey``), ``query`` (default ``apikey``, looked at when the
header is absent), ``hide_credentials``, ``anonymous_consumer``.  Consumer / credential:
``key`` (unique across consumers, stored encrypted).
"""

from __future__ import annotations

from typing import Any

from pylon import pdk

name = "key-auth"
priority = 2500
version = 0.1
type = "auth"

schema = {
    "type": "object",
    "properties": {
        "header": {"type": "string", "default": "apikey"},
        "query": {"type": "string", "default": "apikey"},
        "hide_credentials": {"type": "boolean", "default": False},
        "anonymous_consumer": {"type": "string", "minLength": 1},
    },
}
consumer_schema = {
    "type": "object",
    "properties": {"key": {"type": "string", "minLength": 1}},
    "required": ["key"],
}
encrypt_fields = ("key",)
consumer_key = "key"

MISSING = (401, {"message": "Missing API key in request"})
INVALID = (401, {"message": "Invalid API key in request"})


def prepare(conf: dict[str, Any]) -> dict[str, Any]:
    return {**conf, "_header_b": conf["header"].lower().encode("latin-1")}


def rewrite(conf: dict[str, Any], ctx: pdk.Context) -> Any:
    raw = ctx.head.header(conf["_header_b"])
    from_header = raw is not None
    if raw is not None:
        key: str | None = raw.decode("latin-1")
    else:
        key = ctx.arg(conf["query"])
    if key is None:
        return _anonymous(conf, ctx, MISSING)
    cred = ctx.consumers.find(name, key)
    if cred is None:
        return _anonymous(conf, ctx, INVALID)
    if conf["hide_credentials"]:
        if from_header:
            ctx.remove_header(conf["header"])
        else:
            args = dict(ctx.args())
            args.pop(conf["query"], None)
            ctx.set_args(args)
    pdk.attach_consumer(ctx, cred)
    return None


def _anonymous(conf: dict[str, Any], ctx: pdk.Context, reply: Any) -> Any:
    anon = conf.get("anonymous_consumer")
    if anon is None:
        return reply
    cred = pdk.anonymous_credential(ctx, name, anon)
    if cred is None:
        return 401, {"message": "Invalid user authorization"}
    pdk.attach_consumer(ctx, cred)
    return None
