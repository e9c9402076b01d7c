"""limit-conn: at most ``conn`` requests in flight per key, ``burst`` more delayed
(APISIX, lua-resty-limit-traffic's ``limit.conn``).

``conn``, ``burst``, ``default_conn_delay`` (seconds per ``conn`` excess requests),
``only_use_default_delay``, ``key_type`` ``var`` / ``var_combination``, ``key``,
``rejected_code`` (503), ``rejected_msg``, ``allow_degradation``, ``policy`` ``local``
(node-wide; a killed worker's requests stop counting within a second: see
``pylon/ratelimit/local.py`` ``ConnTable``) or ``redis`` / ``redis-cluster``.  A request
leaves (its count is given back) in the log phase, when its response is complete.  On a
stream route a connection counts (``key``: ``remote_addr``, ``server_addr``, ... stream
variables) until it closes.
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
    conn_table,
    degraded,
    key_fn,
)

name = "limit-conn"
priority = 1003
version = 0.1

schema = {
    "type": "object",
    "properties": {
        "conn": {"type": "integer", "exclusiveMinimum": 0},
        "burst": {"type": "integer", "minimum": 0},
        "default_conn_delay": {"type": "number", "exclusiveMinimum": 0},
        "only_use_default_delay": {"type": "boolean", "default": False},
        "key": {"type": "string"},
        "key_type": {"type": "string", "enum": ["var", "var_combination"], "default": "var"},
        "rejected_code": {"type": "integer", "minimum": 200, "maximum": 599, "default": 503},
        "rejected_msg": {"type": "string", "minLength": 1},
        "allow_degradation": {"type": "boolean", "default": False},
        "key_ttl": {"type": "integer", "minimum": 1, "default": 3600},
        "policy": {"type": "string", "enum": ["local", "redis", "redis-cluster"],
                   "default": "local"},
        **REDIS_SCHEMA,
    },
    "required": ["conn", "burst", "default_conn_delay", "key"],
}
encrypt_fields = ("redis_password",)


def check(conf: dict[str, Any], schema_type: str) -> None:
    check_redis(conf)


class _Conf:
    __slots__ = ("backend", "burst", "code", "conn", "degrade", "delay", "key_fn", "key_ttl",
                 "msg", "tag")

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conn = conf["conn"]
        self.burst = conf["burst"]
        self.delay = float(conf["default_conn_delay"])
        self.key_fn = key_fn(conf["key_type"], conf["key"])
        self.code = conf["rejected_code"]
        self.msg = conf.get("rejected_msg")
        self.degrade = conf["allow_degradation"]
        self.tag = "conn:" + conf_digest(conf)
        self.backend = RedisRef(conf) if conf["policy"] != "local" else None
        self.key_ttl = conf["key_ttl"]


def prepare(conf: dict[str, Any]) -> _Conf:
    return _Conf(conf)


#: an HTTP request or a stream connection (both have route_id, var(), store)
Ctx = pdk.Context | pdk.StreamContext


def _key(c: _Conf, ctx: Ctx) -> str:
    rid = ctx.route_id
    return ("route" + rid if rid is not None else "global") + ":" + c.tag + ":" + c.key_fn(ctx)


def _after(c: _Conf, ctx: Ctx, key: str, conn: int | None, held: Any = None) -> Any:
    if conn is None:
        return (c.code, {"error_msg": c.msg}) if c.msg is not None else c.code
    ctx.store["limit-conn"] = ctx.store.get("limit-conn", ()) + ((c, key, held),)
    if conn > c.conn:       # lua-resty-limit-traffic: wait a unit per `conn` excess
        delay = c.delay * ((conn - 1) // c.conn)
        if delay >= 0.001:
            return asyncio.sleep(delay)
    return None


def access(c: _Conf, ctx: Ctx) -> Any:
    key = _key(c, ctx)
    if c.backend is not None:
        return _access_redis(c, c.backend, ctx, key)
    return _after(c, ctx, key, conn_table().incoming(key, c.conn, c.burst))


async def _access_redis(c: _Conf, backend: RedisRef, ctx: Ctx, key: str) -> Any:
    try:
        ok, conn, req_id = await backend.get().conn_incoming(key, c.conn, c.burst,
                                                             key_ttl=c.key_ttl)
    except RedisUnavailable as e:
        return degraded(name, c.degrade, e)
    r = _after(c, ctx, key, conn if ok else None, req_id)
    if r is not None and not isinstance(r, tuple) and not isinstance(r, int):
        await r
        return None
    return r


def log(c: _Conf, ctx: Ctx) -> None:
    st = ctx.store_if_any
    held = st.pop("limit-conn", None) if st is not None else None
    for conf, key, req_id in held or ():
        if conf.backend is not None:
            _spawn(_leave(conf.backend, key, req_id))
        else:
            conn_table().leaving(key)


#: stream routes (APISIX's stream limit-conn): a connection counts from its start to its
#: end; refused: closed, delayed: the upstream is connected after the delay
stream_preread = access
stream_log = log


async def _leave(backend: RedisRef, key: str, req_id: str) -> None:
    try:
        await backend.get().conn_leaving(key, req_id)
    except RedisUnavailable as e:      # the entry expires after key_ttl
        pdk.log.warning("limit-conn: redis unavailable on leaving: %s", e)


_pending: set[asyncio.Task[Any]] = set()


def _spawn(coro: Any) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    _pending.add(task)
    task.add_done_callback(_pending.discard)
