"""ip-restriction: allow or deny by client address (APISIX).

``whitelist`` or ``blacklist`` (exactly one): IPv4 / IPv6 addresses and CIDRs.  ``message``
(default ``Your IP address is not allowed``), ``response_code`` (403 or 404, default 403).
The address checked is ``$remote_addr``, so a ``real-ip`` plugin (which runs earlier, in
rewrite) decides it.  Runs in the access phase; on a stream route, when the connection
starts (closed when refused).
"""

from __future__ import annotations

from typing import Any

from pylon import pdk
from pylon.pdk.match import IpMatcher, valid_cidr

name = "ip-restriction"
priority = 3000
version = 0.1

_IPS = {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}}

schema = {
    "type": "object",
    "properties": {
        "message": {"type": "string", "minLength": 1, "maxLength": 1024,
                    "default": "Your IP address is not allowed"},
        "response_code": {"type": "integer", "minimum": 403, "maximum": 404, "default": 403},
        "whitelist": _IPS,
        "blacklist": _IPS,
    },
    "oneOf": [
        {"required": ["whitelist"]},
        {"required": ["blacklist"]},
    ],
}


def check(conf: dict[str, Any], schema_type: str) -> None:
    for key in ("whitelist", "blacklist"):
        for item in conf.get(key) or ():
            if not valid_cidr(item):
                raise ValueError(f"invalid ip address: {item}")


class Prepared:
    __slots__ = ("allow", "matcher", "reply")

    def __init__(self, conf: dict[str, Any]) -> None:
        white = conf.get("whitelist")
        self.allow = white is not None
        self.matcher = IpMatcher(white if white is not None else conf["blacklist"])
        self.reply = (conf["response_code"], {"message": conf["message"]})


def prepare(conf: dict[str, Any]) -> Prepared:
    return Prepared(conf)


def access(conf: Prepared, ctx: pdk.Context) -> Any:
    if conf.matcher.match(ctx.remote_addr) is not conf.allow:
        return conf.reply
    return None


def stream_preread(conf: Prepared, sctx: pdk.StreamContext) -> int | None:
    """Stream routes (APISIX's stream ip-restriction): a refused client's connection is
    closed (``response_code`` is its stream status, in the log)."""
    if conf.matcher.match(sctx.remote_addr) is not conf.allow:
        return int(conf.reply[0])
    return None
