"""fault-injection: delay requests and/or answer them without the upstream (APISIX).

``delay`` {``duration`` (seconds, decimals allowed), ``percentage`` (0-100), ``vars``} waits
before the request goes on (an ``asyncio`` sleep: other requests are not held up).
``abort`` {``http_status`` (>= 200), ``body``, ``headers``, ``percentage``, ``vars``} answers
the request itself; ``body`` and header values may use ``$var`` / ``${var}`` (nginx variables,
as APISIX's ``core.utils.resolve_var``: an unknown variable becomes the empty string, ``\\$x``
is left as it is).

``vars`` is a list of lua-resty-expr expressions, OR-ed: the fault applies when one of them
matches (an empty list never matches, as in APISIX).  The delay comes first, then the abort;
both decisions about ``vars`` are taken before the delay.  Runs in ``rewrite`` at priority
11000, before every other plugin.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable
from typing import Any

from pylon import pdk
from pylon.pdk.template import compile_template

name = "fault-injection"
priority = 11000
version = 0.1

_VARS_SCHEMA = {"type": "array", "maxItems": 20, "items": {"type": "array"}}

schema = {
    "type": "object",
    "properties": {
        "abort": {
            "type": "object",
            "properties": {
                "http_status": {"type": "integer", "minimum": 200},
                "body": {"type": "string", "minLength": 0},
                "headers": {
                    "type": "object",
                    "minProperties": 1,
                    "patternProperties": {
                        "^[^:]+$": {"oneOf": [{"type": "string"}, {"type": "number"}]},
                    },
                },
                "percentage": {"type": "integer", "minimum": 0, "maximum": 100},
                "vars": _VARS_SCHEMA,
            },
            "required": ["http_status"],
        },
        "delay": {
            "type": "object",
            "properties": {
                "duration": {"type": "number", "minimum": 0},
                "percentage": {"type": "integer", "minimum": 0, "maximum": 100},
                "vars": _VARS_SCHEMA,
            },
            "required": ["duration"],
        },
    },
    "minProperties": 1,
}

# core.utils.resolve_var: $name, ${name} (each brace optional), not after a backslash
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_UNSAFE = re.compile(r"[\r\n\x00]")
_ESCAPES = {"\r": "%0D", "\n": "%0A", "\x00": "%00"}

_rand = random.random


# ----------------------------------------------------------------------------- config
def _or_vars(spec: list[Any], where: str) -> Callable[[Any], bool]:
    """``vars``: a list of expressions, the first that matches wins (none: no match)."""
    preds = [pdk.compile_expr(v, f"{where}[{i}]") for i, v in enumerate(spec)]
    if len(preds) == 1:
        return preds[0]
    return lambda ctx: any(p(ctx) for p in preds)


def check(conf: dict[str, Any], schema_type: str) -> None:
    for part in ("abort", "delay"):
        sub = conf.get(part)
        if sub and sub.get("vars") is not None:
            _or_vars(sub["vars"], f"{part}.vars")       # ExprError is a ValueError
    for hname, value in ((conf.get("abort") or {}).get("headers") or {}).items():
        if not _TOKEN.match(hname):
            raise ValueError(f'property "abort" validation failed: bad header name {hname!r}')
        if isinstance(value, str) and _UNSAFE.search(value):
            raise ValueError(f'property "abort" validation failed: header {hname!r} value '
                             "contains a control character")


def _lua_tostring(v: Any) -> str:
    if isinstance(v, float):
        return format(v, ".14g")
    return str(v)


def _render(tpl: Any, ctx: pdk.Context) -> str:
    return tpl.render(ctx, _lua_tostring)


class _Fault:
    __slots__ = ("percentage", "when")

    def __init__(self, sub: dict[str, Any], where: str) -> None:
        self.percentage: int | None = sub.get("percentage")
        vs = sub.get("vars")
        self.when = None if vs is None else _or_vars(vs, f"{where}.vars")

    def hit(self) -> bool:
        p = self.percentage
        # APISIX: math.random(1, 100) <= percentage
        return p is None or int(_rand() * 100) + 1 <= p


class _Abort(_Fault):
    __slots__ = ("body", "headers", "status")

    def __init__(self, sub: dict[str, Any]) -> None:
        super().__init__(sub, "abort")
        self.status: int = sub["http_status"]
        body = sub.get("body")
        self.body = None if body is None else compile_template(body)
        self.headers = [(n, compile_template(_lua_tostring(v)))
                        for n, v in (sub.get("headers") or {}).items()]


class _Delay(_Fault):
    __slots__ = ("duration",)

    def __init__(self, sub: dict[str, Any]) -> None:
        super().__init__(sub, "delay")
        self.duration = float(sub["duration"])


class _Conf:
    __slots__ = ("abort", "delay")
    abort: _Abort | None
    delay: _Delay | None


def prepare(conf: dict[str, Any]) -> _Conf:
    c = _Conf()
    c.abort = _Abort(conf["abort"]) if conf.get("abort") else None
    c.delay = _Delay(conf["delay"]) if conf.get("delay") else None
    return c


# ----------------------------------------------------------------------------- request
def rewrite(conf: _Conf, ctx: pdk.Context) -> Any:
    abort = conf.abort
    delay = conf.delay
    # both vars decisions come first, on the request as it arrived (as APISIX)
    abort_ok = abort is not None and (abort.when is None or abort.when(ctx))
    if delay is not None and (delay.when is None or delay.when(ctx)) and delay.hit():
        return _delayed(delay.duration, abort if abort_ok else None, ctx)
    if abort_ok and abort is not None and abort.hit():
        return _reply(abort, ctx)
    return None


async def _delayed(duration: float, abort: _Abort | None, ctx: pdk.Context) -> Any:
    await asyncio.sleep(duration)
    if abort is not None and abort.hit():
        return _reply(abort, ctx)
    return None


def _safe(v: str) -> str:
    """A header value from request variables (a decoded query argument may hold CR/LF):
    control characters are percent-escaped, never sent raw."""
    if _UNSAFE.search(v):
        return _UNSAFE.sub(lambda m: _ESCAPES[m.group(0)], v)
    return v


def _reply(abort: _Abort, ctx: pdk.Context) -> Any:
    body = None if abort.body is None else _render(abort.body, ctx)
    if not abort.headers:
        return abort.status, body
    headers = [(n, _safe(_render(t, ctx))) for n, t in abort.headers]
    return abort.status, body, headers
