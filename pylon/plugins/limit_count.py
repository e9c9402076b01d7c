"""limit-count: at most ``count`` requests per ``time_window`` seconds per key (APISIX).

``key_type`` ``var`` (an nginx variable, default ``remote_addr``; a missing value falls back
to ``remote_addr`` as APISIX does), ``var_combination`` (``"$remote_addr $consumer_name"``)
or ``constant``; ``rejected_code`` (503) / ``rejected_msg``; ``show_limit_quota_header``
(``X-RateLimit-Limit`` / ``-Remaining`` / ``-Reset``); ``group`` (routes with the same group
share one counter); ``rules`` (several limits, each with its own key; all must pass).
``window_type``: ``fixed`` (default; the window starts with the key's first request) or
``sliding`` (the previous window weighted by its overlap, plus the current one).

Policies: ``local`` -- exact across every worker of the node, in shared memory that a
killed worker cannot lock or corrupt (``pylon/ratelimit/local.py``); ``redis`` and
``redis-cluster`` -- exact across nodes (``pylon/ratelimit/redis_backend.py``; both reached
through ``pylon.pdk.ratelimit``), with
``allow_degradation`` deciding whether requests pass while Redis is unreachable.

Counter identity is APISIX's: the owner (route, or ``group``) plus a digest of this plugin's
configuration, so a change elsewhere in the route keeps the count and a change of the limit
starts a new one.
"""

from __future__ import annotations

from typing import Any

from pylon import pdk
from pylon.pdk.ratelimit import (
    REDIS_SCHEMA,
    KeyFn,
    RedisRef,
    RedisUnavailable,
    SharedTable,
    check_redis,
    conf_digest,
    degraded,
    key_fn,
    local_table,
)

name = "limit-count"
priority = 1002
version = 0.5

schema = {
    "type": "object",
    "properties": {
        "count": {"type": "integer", "exclusiveMinimum": 0},
        "time_window": {"type": "integer", "exclusiveMinimum": 0},
        "window_type": {"type": "string", "enum": ["fixed", "sliding"], "default": "fixed"},
        "group": {"type": "string"},
        "key": {"type": "string", "default": "remote_addr"},
        "key_type": {"type": "string", "enum": ["var", "var_combination", "constant"],
                     "default": "var"},
        "rejected_code": {"type": "integer", "minimum": 200, "maximum": 599, "default": 503},
        "rejected_msg": {"type": "string", "minLength": 1},
        "policy": {"type": "string", "enum": ["local", "redis", "redis-cluster"],
                   "default": "local"},
        "allow_degradation": {"type": "boolean", "default": False},
        "show_limit_quota_header": {"type": "boolean", "default": True},
        "rules": {
            "type": "array", "minItems": 1,
            "items": {"type": "object", "properties": {
                "count": {"type": "integer", "exclusiveMinimum": 0},
                "time_window": {"type": "integer", "exclusiveMinimum": 0},
                "key": {"type": "string"},
                "header_prefix": {"type": "string"}},
                "required": ["count", "time_window", "key"]},
        },
        **REDIS_SCHEMA,
    },
}
encrypt_fields = ("redis_password",)

_SLIDING_MAX = 0xFFFFFF


def check(conf: dict[str, Any], schema_type: str) -> None:
    if conf.get("rules") is None and (conf.get("count") is None
                                      or conf.get("time_window") is None):
        raise ValueError('property "count" and "time_window" are required when "rules" '
                         "is not set")
    check_redis(conf)
    if conf["window_type"] == "sliding":
        counts = [conf.get("count") or 0] + [r["count"] for r in conf.get("rules") or ()]
        if max(counts) > _SLIDING_MAX:
            raise ValueError(f"a sliding window counts at most {_SLIDING_MAX} requests")


class _Rule:
    __slots__ = ("by_addr", "count", "h_limit", "h_remaining", "h_reset", "key", "key_fn",
                 "last_reset", "limit_b", "limit_pair", "prefix", "reset_pair", "window")

    def __init__(self, count: int, window: int, key_fn: KeyFn, key: str,
                 prefix: str, by_addr: bool = False) -> None:
        self.count = count
        self.window = window
        self.key_fn = key_fn
        self.key = key
        #: the key is ``$remote_addr`` (the default): read directly, not through ``var``
        self.by_addr = by_addr
        self.prefix = prefix
        p = ("X-" + prefix + "-" if prefix else "X-").encode()
        self.h_limit = p + b"RateLimit-Limit"
        self.h_remaining = p + b"RateLimit-Remaining"
        self.h_reset = p + b"RateLimit-Reset"
        self.limit_b = str(count).encode()
        self.limit_pair = (self.h_limit, self.limit_b)
        #: the last X-RateLimit-Reset header made (it changes once a second per key)
        self.last_reset = -1
        self.reset_pair = (self.h_reset, b"")

    def quota(self, remaining: int, reset: int) -> list[tuple[bytes, bytes]]:
        """The X-RateLimit-* headers of a result."""
        rp = self.reset_pair
        if reset != self.last_reset:
            rp = self.reset_pair = (self.h_reset, b"%d" % reset)
            self.last_reset = reset
        return [self.limit_pair, (self.h_remaining, b"%d" % remaining), rp]


class _Conf:
    __slots__ = ("backend", "code", "degrade", "group", "headers", "msg", "owners", "rules",
                 "sliding", "table", "tag")

    def __init__(self, conf: dict[str, Any]) -> None:
        self.tag = conf_digest(conf)
        self.group = conf.get("group")
        self.code = conf["rejected_code"]
        self.msg = conf.get("rejected_msg")
        self.headers = conf["show_limit_quota_header"]
        self.degrade = conf["allow_degradation"]
        self.sliding = conf["window_type"] == "sliding"
        if conf.get("rules"):
            self.rules = tuple(
                _Rule(r["count"], r["time_window"], key_fn("var_combination", r["key"]),
                      r["key"], r.get("header_prefix") or str(i + 1))
                for i, r in enumerate(conf["rules"]))
        else:
            self.rules = (_Rule(conf["count"], conf["time_window"],
                                key_fn(conf["key_type"], conf["key"]), conf["key"], "",
                                conf["key_type"] == "var" and conf["key"] == "remote_addr"),)
        self.backend = RedisRef(conf) if conf["policy"] != "local" else None
        self.table: SharedTable | None = None    # this process's node-wide table
        self.owners: dict[str | None, str] = {}  # route id -> counter key prefix


def prepare(conf: dict[str, Any]) -> _Conf:
    return _Conf(conf)


def _owner(c: _Conf, ctx: pdk.Context) -> str:
    route = ctx.route
    rid = route.id if route is not None else None
    owner = c.owners.get(rid)
    if owner is None:
        if c.group is not None:
            owner = c.group + ":"
        else:
            owner = ("route" + rid if rid is not None else "global") + ":" + c.tag + ":"
        if len(c.owners) < 10_000:
            c.owners[rid] = owner
    return owner


def access(c: _Conf, ctx: pdk.Context) -> Any:
    if c.backend is not None:
        return _access_redis(c, c.backend, ctx)
    t = c.table
    if t is None:
        t = c.table = local_table()
    route = ctx.route
    owner = c.owners.get(route.id if route is not None else None) or _owner(c, ctx)
    for rule in c.rules:
        # the default key ($remote_addr) without the variable lookup; an empty one goes
        # through key_fn, which says so in the log
        key = ctx.remote_addr if rule.by_addr else ""
        ok, remaining, reset = t.incoming(owner + (key or rule.key_fn(ctx)), rule.count,
                                          rule.window, 1, c.sliding)
        if ok and c.headers:                        # the common case: through, with quota
            ctx.set_resp_headers(rule.quota(remaining, reset))
            continue
        r = _result(c, ctx, rule, ok, remaining, reset)
        if r is not None:
            return r
    return None


async def _access_redis(c: _Conf, backend: RedisRef, ctx: pdk.Context) -> Any:
    owner = _owner(c, ctx)
    for rule in c.rules:
        key = owner + rule.key_fn(ctx)
        try:
            ok, remaining, reset = await backend.get().incoming(
                key, rule.count, rule.window, 1, c.sliding)
        except RedisUnavailable as e:
            return degraded(name, c.degrade, e)
        r = _result(c, ctx, rule, ok, remaining, reset)
        if r is not None:
            return r
    return None


def _result(c: _Conf, ctx: pdk.Context, rule: _Rule, ok: bool, remaining: int,
            reset: int) -> Any:
    if c.headers:
        ctx.set_resp_headers(rule.quota(remaining, reset))
    if ok:
        return None
    if c.msg is not None:
        return c.code, {"error_msg": c.msg}
    return c.code
