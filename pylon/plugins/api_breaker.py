"""api-breaker: stop proxying to an upstream that keeps failing, for a growing time (APISIX).

``access``: when the breaker is open the request is answered with ``break_response_code``
(and, only when ``break_response_body`` is set, that body and ``break_response_headers``,
whose values may use ``$var`` / ``${var}``) without reaching the upstream.  ``log``: the
upstream's status (``$upstream_status``: what the upstream answered, 502 / 504 when it could
not be reached or timed out; nothing when the gateway answered without it, e.g. the breaker
itself) is counted.

APISIX's rules exactly (``apisix/plugins/api-breaker.lua``): a status in
``unhealthy.http_statuses`` adds one to the unhealthy count ``U`` and clears the healthy
count; every ``unhealthy.failures``-th one (``U % failures == 0``) trips the breaker: it is
open while ``now <= lasttime + min(2 ^ ceil(U / failures), max_breaker_sec)`` (whole
seconds): 2 s after the first trip, then 4, 8, ... up to ``max_breaker_sec``.  After the
window requests go through again (half-open: all of them, as in APISIX); a status in
``healthy.http_statuses`` then counts towards ``healthy.successes``, which clears
everything (closed).  Another failure instead keeps counting: the window is computed from
the new ``U`` and the last trip, and the next trip (``failures`` more) sets a new one.

The state is node-wide (every worker shares it, as APISIX's ``ngx.shared`` dict) and
crash-safe: ``pylon/ratelimit/breaker.py``.  Its key is APISIX's (the request's host and
``$uri``) within the route and this plugin configuration's digest (as limit-count's
counters): a change elsewhere in the route keeps the state, new thresholds start afresh.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

import msgspec

from pylon import pdk
from pylon.pdk.ratelimit import BreakerPolicy, breaker_fits, breakers
from pylon.pdk.template import compile_template

name = "api-breaker"
priority = 1005
version = 0.1

schema = {
    "type": "object",
    "properties": {
        "break_response_code": {"type": "integer", "minimum": 200, "maximum": 599},
        "break_response_body": {"type": "string"},
        "break_response_headers": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "key": {"type": "string", "minLength": 1},
                    "value": {"type": "string", "minLength": 1},
                },
                "required": ["key", "value"],
            },
        },
        "max_breaker_sec": {"type": "integer", "minimum": 3, "default": 300},
        "unhealthy": {
            "type": "object",
            "properties": {
                "http_statuses": {
                    "type": "array", "minItems": 1,
                    "items": {"type": "integer", "minimum": 500, "maximum": 599},
                    "uniqueItems": True, "default": [500],
                },
                "failures": {"type": "integer", "minimum": 1, "default": 3},
            },
            "default": {"http_statuses": [500], "failures": 3},
        },
        "healthy": {
            "type": "object",
            "properties": {
                "http_statuses": {
                    "type": "array", "minItems": 1,
                    "items": {"type": "integer", "minimum": 200, "maximum": 499},
                    "uniqueItems": True, "default": [200],
                },
                "successes": {"type": "integer", "minimum": 1, "default": 3},
            },
            "default": {"http_statuses": [200], "successes": 3},
        },
    },
    "required": ["break_response_code"],
}

# core.utils.resolve_var: $name or ${name}, not after a backslash
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_UNSAFE = re.compile(r"[\r\n\x00]")
_INFO = logging.INFO


def check(conf: dict[str, Any], schema_type: str) -> None:
    for i, h in enumerate(conf.get("break_response_headers") or ()):
        if not _TOKEN.match(h["key"]):
            raise ValueError(f'property "break_response_headers" validation failed: item '
                             f"{i + 1}: bad header name {h['key']!r}")
        if _UNSAFE.search(h["value"]):
            raise ValueError(f'property "break_response_headers" validation failed: item '
                             f"{i + 1}: the value contains a control character")
    if not breaker_fits(conf["unhealthy"]["failures"], conf["healthy"]["successes"]):
        raise ValueError('property "unhealthy.failures" and "healthy.successes" are too '
                         "large together (at most 22 bits between them, e.g. both <= 2048)")


def _render(tpl: Any, ctx: pdk.Context) -> str:
    return _UNSAFE.sub("", tpl.render(ctx)) if tpl.has_vars else tpl.literal


class _Conf:
    __slots__ = ("body", "code", "headers", "healthy", "policy", "tag", "unhealthy")

    @staticmethod
    def digest(conf: dict[str, Any]) -> str:
        """This plugin configuration's version: the state is keyed by it."""
        return hashlib.blake2b(msgspec.json.encode(
            {k: v for k, v in conf.items() if k != "_meta"}, order="sorted"),
            digest_size=6).hexdigest()

    def __init__(self, conf: dict[str, Any]) -> None:
        self.tag = self.digest(conf)
        self.code: int = conf["break_response_code"]
        self.body: str | None = conf.get("break_response_body")
        self.headers = tuple((h["key"], compile_template(h["value"]))
                             for h in conf.get("break_response_headers") or ())
        self.unhealthy = frozenset(conf["unhealthy"]["http_statuses"])
        self.healthy = frozenset(conf["healthy"]["http_statuses"])
        self.policy = BreakerPolicy(conf["unhealthy"]["failures"],
                                    conf["healthy"]["successes"], conf["max_breaker_sec"])


def prepare(conf: dict[str, Any]) -> _Conf:
    return _Conf(conf)


def _key(c: _Conf, ctx: pdk.Context) -> str:
    rid = ctx.route_id
    return f"{'global' if rid is None else 'route' + rid}:{c.tag}:{ctx.host}{ctx.uri}"


def access(c: _Conf, ctx: pdk.Context) -> Any:
    bt = breakers().open_for(_key(c, ctx), c.policy)
    if not bt:
        return None
    if pdk.log.isEnabledFor(_INFO):
        pdk.log.info("api-breaker: breaker_time: %d", bt)
    if c.body is None:                    # APISIX: headers only come with a body
        return c.code
    return c.code, c.body, [(k, _render(v, ctx)) for k, v in c.headers]


def log(c: _Conf, ctx: pdk.Context) -> None:
    raw = ctx.var("upstream_status")
    if raw is None:
        return
    st = int(raw)
    if st in c.unhealthy:
        key = _key(c, ctx)
        n = breakers().failure(key, c.policy)
        if pdk.log.isEnabledFor(_INFO):
            pdk.log.info("api-breaker: unhealthy_key: %s count: %d", key, n)
        return
    if st not in c.healthy:
        return
    key = _key(c, ctx)
    n = breakers().success(key, c.policy)
    if n >= c.policy.successes and pdk.log.isEnabledFor(_INFO):
        pdk.log.info("api-breaker: change to normal, %s %d", key, n)
