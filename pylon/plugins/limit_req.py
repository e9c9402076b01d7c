"""limit-req: a leaky bucket per key (APISIX, lua-resty-limit-traffic's ``limit.req``).

``rate`` requests per second, ``burst`` more are delayed (really: the request waits, other
requests go on) unless ``nodelay``, beyond that ``rejected_code`` (503) / ``rejected_msg``.
``key_type`` ``var`` or ``var_combination``.  Policies ``local`` (node-wide, shared memory,
see ``pylon/ratelimit/local.py``) and ``redis`` / ``redis-cluster`` (across nodes) with
``allow_degradation``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pylon import pdk
from pylon.pdk.ratelimit import (
    REDIS_SCHEMA,
    RedisRef,
    RedisUnavailable,
    check_redis,
    conf_digest,
    degraded,
    key_fn,
    local_table,
)

name = "limit-req"
priority = 1001
version = 0.1

schema = {
    "type": "object",
    "properties": {
        "rate": {"type": "number", "exclusiveMinimum": 0},
        "burst": {"type": "number", "minimum": 0},
        "key": {"type": "string"},
        "key_type": {"type": "string", "enum": ["var", "var_combination"], "default": "var"},
        "rejected_code": {"type": "integer", "minimum": 200, "maximum": 599, "default": 503},
        "rejected_msg": {"type": "string", "minLength": 1},
        "nodelay": {"type": "boolean", "default": False},
        "allow_degradation": {"type": "boolean", "default": False},
        "policy": {"type": "string", "enum": ["local", "redis", "redis-cluster"],
                   "default": "local"},
        **REDIS_SCHEMA,
    },
    "required": ["rate", "burst", "key"],
}
encrypt_fields = ("redis_password",)


def check(conf: dict[str, Any], schema_type: str) -> None:
    check_redis(conf)


class _Conf:
    __slots__ = ("backend", "burst", "code", "degrade", "key_fn", "msg", "nodelay", "rate",
                 "tag")

    def __init__(self, conf: dict[str, Any]) -> None:
        self.rate = float(conf["rate"])
        self.burst = float(conf["burst"])
        self.key_fn = key_fn(conf["key_type"], conf["key"])
        self.code = conf["rejected_code"]
        self.msg = conf.get("rejected_msg")
        self.nodelay = conf["nodelay"]
        self.degrade = conf["allow_degradation"]
        self.tag = "req:" + conf_digest(conf)
        self.backend = RedisRef(conf) if conf["policy"] != "local" else None


def prepare(conf: dict[str, Any]) -> _Conf:
    return _Conf(conf)


def _reject(c: _Conf) -> Any:
    return (c.code, {"error_msg": c.msg}) if c.msg is not None else c.code


def access(c: _Conf, ctx: pdk.Context) -> Any:
    rid = ctx.route_id
    key = ("route" + rid if rid is not None else "global") + ":" + c.tag + ":" + c.key_fn(ctx)
    if c.backend is not None:
        return _access_redis(c, c.backend, key)
    delay = local_table("limit-req").leaky(key, c.rate, c.burst)
    if delay is None:
        return _reject(c)
    if delay >= 0.001 and not c.nodelay:
        return asyncio.sleep(delay)       # this request waits; the worker goes on
    return None


async def _access_redis(c: _Conf, backend: RedisRef, key: str) -> Any:
    try:
        ok, delay, _excess = await backend.get().incoming_req(key, c.rate, c.burst)
    except RedisUnavailable as e:
        return degraded(name, c.degrade, e)
    if not ok:
        return _reject(c)
    if delay >= 0.001 and not c.nodelay:
        await asyncio.sleep(delay)
    return None
