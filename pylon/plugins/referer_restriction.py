"""referer-restriction: allow or deny by the host of the Referer (APISIX).

``whitelist`` or ``blacklist`` (exactly one): host names, ``*.example.com`` matching any
subdomain (a suffix match on ``.example.com``; not ``example.com`` itself).
``bypass_missing`` (false): let requests without a (well-formed) Referer through.
``message`` (default ``Your referer host is not allowed``).  A denied request is a 403
``{"message": ...}``.  The Referer must look like ``http://host...``, ``https://host...``
or ``//host...`` (lua-resty-http's ``parse_uri``); anything else counts as missing.
"""

from __future__ import annotations

import re
from typing import Any

from pylon import pdk

name = "referer-restriction"
priority = 2990
version = 0.1

#: APISIX core.schema.host_def
_HOST = {"type": "string", "pattern": r"^\*?[0-9a-zA-Z-._\[\]:]+$"}
_HOSTS = {"type": "array", "minItems": 1, "items": _HOST}

schema = {
    "type": "object",
    "properties": {
        "bypass_missing": {"type": "boolean", "default": False},
        "whitelist": _HOSTS,
        "blacklist": _HOSTS,
        "message": {"type": "string", "minLength": 1, "maxLength": 1024,
                    "default": "Your referer host is not allowed"},
    },
    "oneOf": [
        {"required": ["whitelist"]},
        {"required": ["blacklist"]},
    ],
}

#: the head of lua-resty-http's parse_uri pattern (http/https or no scheme, then //host);
#: what follows the host (port, path, query) always matches, so it decides nothing
_URI = re.compile(r"(?:https?:)?//([^\[\]:/?]+|\[.+\])")


class Prepared:
    __slots__ = ("allow", "bypass_missing", "exact", "reply", "suffixes")

    def __init__(self, conf: dict[str, Any]) -> None:
        hosts = conf.get("whitelist")
        self.allow = hosts is not None
        if hosts is None:
            hosts = conf["blacklist"]
        self.exact = frozenset(h for h in hosts if not h.startswith("*"))
        self.suffixes = tuple(h[1:] for h in hosts if h.startswith("*"))
        self.bypass_missing = conf["bypass_missing"]
        self.reply = (403, {"message": conf["message"]})

    def match(self, host: str) -> bool:
        return host in self.exact or (bool(self.suffixes) and host.endswith(self.suffixes))


def prepare(conf: dict[str, Any]) -> Prepared:
    return Prepared(conf)


def referer_host(referer: str | None) -> str | None:
    """The host of a Referer, or None when absent or malformed."""
    if referer is None:
        return None
    m = _URI.match(referer)
    return m.group(1) if m is not None else None


def access(conf: Prepared, ctx: pdk.Context) -> Any:
    host = referer_host(ctx.header("Referer"))
    if host is None:
        block = not conf.bypass_missing
    else:
        block = conf.match(host) is not conf.allow
    return conf.reply if block else None
