"""ua-restriction: allow or deny by User-Agent (APISIX).

``allowlist`` or ``denylist`` (exactly one): PCRE regexes searched in the User-Agent (trimmed).
``bypass_missing`` (false): let requests without a User-Agent through instead of denying
them.  ``message`` (default ``Not allowed``).  A denied request is a 403
``{"message": ...}``.  With several User-Agent headers, one allowed value lets the request
through (allowlist) and one denied value stops it (denylist), as APISIX.

The regexes are compiled once per configuration; results are cached per User-Agent value
(bounded in count and value length), as APISIX's LRU cache does.
"""

from __future__ import annotations

import re
from typing import Any

from pylon import pdk
from pylon.pdk.match import compile_pcre

name = "ua-restriction"
priority = 2999
version = 0.1

_RULES = {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}}

schema = {
    "type": "object",
    "properties": {
        "bypass_missing": {"type": "boolean", "default": False},
        "allowlist": _RULES,
        "denylist": _RULES,
        "message": {"type": "string", "minLength": 1, "maxLength": 1024,
                    "default": "Not allowed"},
    },
    "oneOf": [
        {"required": ["allowlist"]},
        {"required": ["denylist"]},
    ],
}

#: what Lua's stringx.strip removes (ASCII whitespace only)
_WS = " \t\r\n\v\f"
_CACHE_MAX = 4096
#: longer values are checked every time rather than kept (bounds the cache's memory)
_CACHE_VALUE_MAX = 512


def _compile(rule: str) -> re.Pattern[str]:
    try:
        return compile_pcre(rule)
    except (re.error, ValueError, OverflowError) as e:
        raise ValueError(f"failed to compile regex {rule!r}: {e}") from None


def check(conf: dict[str, Any], schema_type: str) -> None:
    for rule in conf.get("allowlist") or conf.get("denylist") or ():
        _compile(rule)


class Prepared:
    __slots__ = ("allow", "bypass_missing", "cache", "reply", "rules")

    def __init__(self, conf: dict[str, Any]) -> None:
        allow = conf.get("allowlist")
        self.allow = allow is not None
        self.rules = tuple(_compile(r) for r in (allow if allow is not None
                                                  else conf["denylist"]))
        self.bypass_missing = conf["bypass_missing"]
        self.reply = (403, {"message": conf["message"]})
        #: User-Agent -> passes
        self.cache: dict[bytes, bool] = {}

    def passes(self, ua: bytes) -> bool:
        ok = self.cache.get(ua)
        if ok is None:
            s = ua.decode("latin-1").strip(_WS)
            hit = any(r.search(s) for r in self.rules)
            ok = hit if self.allow else not hit
            if len(ua) <= _CACHE_VALUE_MAX:
                if len(self.cache) >= _CACHE_MAX:
                    self.cache.clear()
                self.cache[ua] = ok
        return ok


def prepare(conf: dict[str, Any]) -> Prepared:
    return Prepared(conf)


def access(conf: Prepared, ctx: pdk.Context) -> Any:
    values = [v for n, v in ctx.head.headers if n.lower() == b"user-agent"]
    if not values:
        return None if conf.bypass_missing else conf.reply
    if len(values) == 1:
        ok = conf.passes(values[0])
    elif conf.allow:
        ok = any(conf.passes(v) for v in values)
    else:
        ok = all(conf.passes(v) for v in values)
    return None if ok else conf.reply
