"""What the rate-limiting plugins share (limit-count, limit-req, limit-conn, api-breaker).

* the Redis policy: ``REDIS_SCHEMA`` (the ``redis_*`` properties, APISIX's), ``check_redis``
  (the fields a policy needs), ``RedisRef`` (the shared limiter of a configuration) and
  ``degraded`` (what Redis being unreachable answers);
* counter identity: ``conf_digest`` (APISIX ``conf_version``) and ``key_fn`` (the limit key of
  a ``key_type`` / ``key``);
* the node's shared-memory tables (``local_table``, ``conn_table``, ``node_dir``) and the
  circuit breakers (``breakers``, ``BreakerPolicy``, ``breaker_fits``).

The Redis client is imported only when a configuration first uses a Redis policy.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from ..observe import metrics
from ..ratelimit import RedisUnavailable
from ..ratelimit.breaker import Breakers, breakers
from ..ratelimit.breaker import Policy as BreakerPolicy
from ..ratelimit.breaker import fits as breaker_fits
from ..ratelimit.local import ConnTable, SharedTable, conn_table, node_dir
from ..ratelimit.local import table as local_table
from .template import compile_template

log = logging.getLogger("pylon.plugin")

#: the ``redis_*`` schema properties of a plugin with a Redis policy (APISIX's)
REDIS_SCHEMA: dict[str, Any] = {
    "redis_host": {"type": "string", "minLength": 2},
    "redis_port": {"type": "integer", "minimum": 1, "default": 6379},
    "redis_username": {"type": "string", "minLength": 1},
    "redis_password": {"type": "string", "minLength": 0},
    "redis_database": {"type": "integer", "minimum": 0, "default": 0},
    "redis_timeout": {"type": "integer", "minimum": 1, "default": 1000},
    "redis_ssl": {"type": "boolean", "default": False},
    "redis_ssl_verify": {"type": "boolean", "default": False},
    "redis_cluster_nodes": {"type": "array", "minItems": 1,
                            "items": {"type": "string", "minLength": 2, "maxLength": 100}},
    "redis_cluster_name": {"type": "string"},
    "redis_cluster_ssl": {"type": "boolean", "default": False},
    "redis_cluster_ssl_verify": {"type": "boolean", "default": False},
    "redis_keepalive_timeout": {"type": "integer", "minimum": 1000, "default": 10000},
    "redis_keepalive_pool": {"type": "integer", "minimum": 1, "default": 100},
}


class _Vars(Protocol):
    """What a limit key reads of the request (``pylon.pdk.Context`` has it)."""

    @property
    def remote_addr(self) -> str: ...

    def var(self, name: str) -> Any: ...


KeyFn = Callable[[Any], str]


def check_redis(conf: dict[str, Any]) -> None:
    """The Redis fields a policy needs (limit-count, limit-req, limit-conn)."""
    if conf["policy"] == "redis" and not conf.get("redis_host"):
        raise ValueError('property "redis_host" is required when policy is redis')
    if conf["policy"] == "redis-cluster" and not (conf.get("redis_cluster_nodes")
                                                   and conf.get("redis_cluster_name")):
        raise ValueError('properties "redis_cluster_nodes" and "redis_cluster_name" are '
                         "required when policy is redis-cluster")


def degraded(plugin: str, allow: bool, error: Exception) -> tuple[int, dict[str, str]] | None:
    """Redis is unreachable: let the request through (``allow_degradation``) or 500, and
    say so in the log either way (and count it: ``pylon_ratelimit_degraded_total`` /
    ``pylon_ratelimit_store_errors_total``)."""
    if allow:
        metrics.inc("pylon_ratelimit_degraded_total", f'plugin="{plugin}"')
        log.error("%s: redis unavailable, letting the request through "
                  "(allow_degradation): %s", plugin, error)
        return None
    metrics.inc("pylon_ratelimit_store_errors_total", f'plugin="{plugin}"')
    log.error("%s: redis unavailable: %s", plugin, error)
    return 500, {"error_msg": f"failed to {plugin.replace('-', ' ')}"}


def conf_digest(conf: dict[str, Any]) -> str:
    """A plugin configuration's version (APISIX ``conf_version``): counters are keyed by it,
    so a route change elsewhere keeps them and a new limit starts over."""
    return hashlib.blake2b(msgspec.json.encode(
        {k: v for k, v in conf.items() if k != "_meta"}, order="sorted"),
        digest_size=6).hexdigest()


class RedisRef:
    """The shared Redis limiter of a configuration, looked up once per worker loop (the
    configuration is prepared before any loop runs it, possibly in a thread)."""

    __slots__ = ("conf", "lim")

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = {k: v for k, v in conf.items() if k.startswith("redis_") or k == "policy"}
        self.lim: Any = None

    def get(self) -> Any:
        """The ``pylon.ratelimit.redis_backend.RedisLimiter`` of this loop."""
        lim = self.lim
        if lim is None or lim.closed:
            from ..ratelimit.redis_backend import get_limiter
            lim = self.lim = get_limiter(self.conf)
        return lim


def key_fn(key_type: str, key: str) -> KeyFn:
    """The limit key of a request: ``constant`` (``key`` itself), ``var_combination`` (a
    template of variables, ``"$remote_addr $consumer_name"``) or ``var`` (one variable; a
    missing value falls back to ``remote_addr``, logged, as APISIX does)."""
    if key_type == "constant":
        return lambda ctx: key
    if key_type == "var_combination":
        return compile_template(key).render
    var = key

    def one(ctx: _Vars) -> str:
        v: str | None = ctx.var(var)
        if v is None or v == "":
            log.warning("limit-count: the value of the configured key %s is empty, "
                        "limiting by remote_addr", var)
            return ctx.remote_addr
        return v
    return one


__all__ = ["REDIS_SCHEMA", "BreakerPolicy", "Breakers", "ConnTable", "KeyFn", "RedisRef",
           "RedisUnavailable", "SharedTable", "breaker_fits", "breakers", "check_redis",
           "conf_digest", "conn_table", "degraded", "key_fn", "local_table", "node_dir"]
