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


class _Conf:
    """The prepared route configuration: what a request reads, as attributes."""

    __slots__ = ("anon", "challenge", "header", "header_b", "hide", "query")

    def __init__(self, conf: dict[str, Any]) -> None:
        self.header: str = conf["header"]
        self.header_b = self.header.lower().encode("latin-1")
        self.query: str = conf["query"]
        self.hide: bool = conf["hide_credentials"]
        self.anon: str | None = conf.get("anonymous_consumer")
        self.challenge = pdk.challenge("apikey", conf["realm"])

    def __eq__(self, other: object) -> bool:     # same configuration, same behaviour
        return isinstance(other, _Conf) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)

    __hash__ = None  # type: ignore[assignment]


def prepare(conf: dict[str, Any]) -> _Conf:
    return _Conf(conf)


def rewrite(c: _Conf, ctx: pdk.Context) -> Any:
    raw = ctx.head.header(c.header_b)
    if raw is not None:
        key: str | None = raw.decode("latin-1")
    else:
        key = ctx.arg(c.query)
    cred = None if key is None else ctx.consumers.find(name, key)
    if cred is None:
        if c.anon is None:
            return 401, {"message": MISSING if key is None else INVALID}, c.challenge
        cred = pdk.anonymous_credential(ctx, name, c.anon)
        if cred is None:
            return 401, {"message": "Invalid user authorization"}, c.challenge
    if c.hide and key is not None:
        if raw is not None:
            ctx.remove_header(c.header)
        else:
            args = dict(ctx.args())
            args.pop(c.query, None)
            ctx.set_args(args)
    pdk.attach_consumer(ctx, cred)
    return None
