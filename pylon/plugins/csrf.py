"""csrf: double-submit-cookie CSRF protection, as APISIX's ``csrf`` plugin.

Route: ``key`` (the signing secret; stored encrypted), ``expires`` (7200 s; 0 or less: tokens
never expire), ``name`` (``apisix-csrf-token``: the cookie and the header).

Every response carries a fresh token cookie (``Set-Cookie: <name>=<token>;path=/;
SameSite=Lax;Expires=...``).  ``GET``, ``HEAD`` and ``OPTIONS`` pass; any other method needs
the header ``<name>`` equal to the cookie ``<name>``, the token signed with ``key`` and not
older than ``expires`` seconds; otherwise 401 with APISIX's ``{"error_msg": ...}``.

The token is APISIX's, so tokens interoperate: base64 of the JSON ``{"random": <number>,
"expires": <issue time, epoch seconds>, "sign": <hex>}`` where ``sign`` is
``sha256("{expires:<expires>,random:<random>,key:<key>}")`` in lower-case hex, numbers
written as Lua writes them (``%.14g``).  Comparisons are constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random as _random
import time
from typing import Any

from pylon import pdk

name = "csrf"
priority = 2980
version = 0.1

schema = {
    "type": "object",
    "properties": {
        "key": {"type": "string", "description": "use to generate csrf token"},
        "expires": {"type": "integer", "default": 7200},
        "name": {"type": "string", "default": "apisix-csrf-token"},
    },
    "required": ["key"],
}
encrypt_fields = ("key",)

SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))
NO_HEADER = (401, {"error_msg": "no csrf token in headers"})
NO_COOKIE = (401, {"error_msg": "no csrf cookie"})
MISMATCH = (401, {"error_msg": "csrf token mismatch"})
BAD_SIGN = (401, {"error_msg": "Failed to verify the csrf token signature"})

_rng = _random.SystemRandom()
_WEEK = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class Conf:
    __slots__ = ("cookie_prefix", "expires", "key", "name")

    def __init__(self, conf: dict[str, Any]) -> None:
        self.key: str = conf["key"]
        self.expires: int = conf["expires"]
        self.name: str = conf["name"]
        self.cookie_prefix = self.name + "="


def prepare(conf: dict[str, Any]) -> Conf:
    return Conf(conf)


def _lua_num(v: float) -> str:
    """A number as Lua's tostring writes it (``%.14g``)."""
    return format(float(v), ".14g")


def _sign(random: str, expires: str, key: str) -> str:
    return hashlib.sha256(
        ("{expires:" + expires + ",random:" + random + ",key:" + key + "}").encode()
    ).hexdigest()


def gen_token(key: str, now: int | None = None) -> str:
    """A token as APISIX issues it (``now``: the issue time, epoch seconds)."""
    random = _lua_num(_rng.random())
    issued = int(time.time()) if now is None else now
    expires = _lua_num(issued)
    payload = ('{"random":' + random + ',"expires":' + expires + ',"sign":"'
               + _sign(random, expires, key) + '"}')
    return base64.b64encode(payload.encode()).decode()


def _as_lua_str(v: Any) -> str | None:
    """What Lua's ``..`` makes of a JSON value (None where Lua raises)."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return _lua_num(v)
    if isinstance(v, str):
        return v
    return None


def verify_token(conf: Conf, token: str, now: float | None = None) -> bool:
    try:
        data = json.loads(pdk.b64decode(token))
    except (ValueError, UnicodeDecodeError):
        return False
    if not isinstance(data, dict):
        return False
    random = _as_lua_str(data.get("random"))
    expires_v = data.get("expires")
    expires = _as_lua_str(expires_v)
    if random is None or expires is None:
        return False
    if conf.expires > 0:
        try:
            issued = float(expires_v)  # type: ignore[arg-type]  # not a number: handled
        except (TypeError, ValueError):
            return False
        if int(time.time() if now is None else now) - issued > conf.expires:
            return False
    sign = data.get("sign")
    if not isinstance(sign, str):
        return False
    return pdk.secure_equal(sign, _sign(random, expires, conf.key))


def access(conf: Conf, ctx: pdk.Context) -> Any:
    if ctx.method in SAFE_METHODS:
        return None
    header_token = ctx.header(conf.name)
    if not header_token:
        return NO_HEADER
    cookie_token = ctx.cookie(conf.name)
    if cookie_token is None:
        return NO_COOKIE
    if not pdk.secure_equal(header_token, cookie_token):
        return MISMATCH
    if not verify_token(conf, cookie_token):
        return BAD_SIGN
    return None


def cookie_time(t: float) -> str:
    """nginx's ``ngx.cookie_time``: ``Thu, 18-Nov-10 11:27:35 GMT``."""
    tm = time.gmtime(t)
    year = tm.tm_year if tm.tm_year > 2037 else tm.tm_year % 100
    return (f"{_WEEK[tm.tm_wday]}, {tm.tm_mday:02d}-{_MONTHS[tm.tm_mon - 1]}-{year:02d} "
            f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} GMT")


def header_filter(conf: Conf, ctx: pdk.Context) -> None:
    now = int(time.time())
    ctx.add_resp_header("Set-Cookie", conf.cookie_prefix + gen_token(conf.key, now)
                        + ";path=/;SameSite=Lax;Expires=" + cookie_time(now + conf.expires))

