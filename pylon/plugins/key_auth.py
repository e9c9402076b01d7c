"""key-auth: a consumer identified by an API key in a header or the query string (APISIX).

Route: ``header`` (default ``apikey``), ``query`` (default ``apikey``, looked at when the
header is absent), ``hide_credentials``, ``anonymous_consumer``, ``realm`` (APISIX >= 3.15,
default ``key``: every 401 carries ``WWW-Authenticate: apikey realm="<realm>"``).  Consumer /
credential: ``key`` (unique across consumers, stored encrypted).

With ``hide_credentials``, the key is removed before proxying also when authentication failed
and the anonymous consumer is used instead (a wrong key is not forwarded upstream either).
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
        "realm": {"type": "string", "minLength": 1, "default": "key"},
    },
}
consumer_schema = {
    "type": "object",
    "properties": {"key": {"type": "string", "minLength": 1}},
    "required": ["key"],
}
encrypt_fields = ("key",)
consumer_key = "key"

MISSING = "Missing API key in request"
INVALID = "Invalid API key in request"


def prepare(conf: dict[str, Any]) -> dict[str, Any]:
    return {**conf, "_header_b": conf["header"].lower().encode("latin-1"),
            "_challenge": pdk.challenge("apikey", conf["realm"])}


def rewrite(conf: dict[str, Any], ctx: pdk.Context) -> Any:
    raw = ctx.head.header(conf["_header_b"])
    from_header = raw is not None
    if raw is not None:
        key: str | None = raw.decode("latin-1")
    else:
        key = ctx.arg(conf["query"])
    cred = None if key is None else ctx.consumers.find(name, key)
    if cred is None:
        anon = conf.get("anonymous_consumer")
        if anon is None:
            return 401, {"message": MISSING if key is None else INVALID}, conf["_challenge"]
        cred = pdk.anonymous_credential(ctx, name, anon)
        if cred is None:
            return 401, {"message": "Invalid user authorization"}, conf["_challenge"]
    if conf["hide_credentials"] and key is not None:
        if from_header:
            ctx.remove_header(conf["header"])
        else:
            args = dict(ctx.args())
            args.pop(conf["query"], None)
            ctx.set_args(args)
    pdk.attach_consumer(ctx, cred)
    return None
