"""Redis / Redis Cluster backend for limit-count, limit-req and limit-conn.

One ``RedisLimiter`` per Redis configuration (APISIX's ``policy: redis`` /
``policy: redis-cluster`` fields); every decision is ONE Lua script run atomically on the
server that owns the key (``EVALSHA``; on ``NOSCRIPT`` the script is sent once with ``EVAL``,
which also caches it server-side), so any number of gateway workers and nodes sharing the
Redis stay exact.  Scripts that need a clock read Redis' ``TIME``: every node then agrees on
window boundaries and bucket levels even when the gateway hosts' clocks drift.

Configuration (the names and defaults of APISIX's ``apisix/utils/redis-schema.lua``)::

    policy: redis                         policy: redis-cluster
      redis_host         (required)         redis_cluster_nodes  ["host:port", ...] (required)
      redis_port         6379               redis_cluster_name   (required by APISIX; only
      redis_username                                             part of the client identity)
      redis_password                        redis_password
      redis_database     0                  redis_cluster_ssl         false
      redis_ssl          false              redis_cluster_ssl_verify  false
      redis_ssl_verify   false
      redis_timeout      1000 (ms)          redis_timeout        1000 (ms)
      redis_keepalive_pool  100             redis_keepalive_pool 100 (per node)
      redis_keepalive_timeout 10000 (ms)    redis_keepalive_timeout 10000 (ms)

As in APISIX, ``redis_username``/``redis_password`` are only sent (``AUTH``) when the password
is non-empty, and ``SELECT`` only happens for a database other than 0.

Connections: a standalone Redis gets a ``BlockingConnectionPool`` of ``redis_keepalive_pool``
connections -- a caller that finds them all busy waits up to ``redis_timeout`` for one instead
of failing.  A cluster gets a ``redis.asyncio.cluster.RedisCluster`` (``redis_keepalive_pool``
connections per node) behind a semaphore of the same size, which gives the same waiting
behaviour.  Socket connect/read timeouts are ``redis_timeout``; redis-py's own retries are off
(a standalone client never re-sends a script, so a reply lost with its connection can never be
counted twice; the cluster client still follows MOVED/ASK redirections), and the whole command
is bounded by ``2 x redis_timeout`` (plus, on a cluster, up to ``redis_timeout`` waiting for a
slot).  Every failure -- connection refused, timeout, pool
exhausted for ``redis_timeout``, cluster down, an error reply -- is raised as
``RedisUnavailable`` so the plugin can apply ``allow_degradation``.

Workers share clients through ``get_limiter(conf)``: a cache keyed by the frozen configuration
(``RedisConfig``) per event loop (asyncio clients belong to one loop); ``close_all()`` closes
the current loop's clients.  ``redis_keepalive_timeout`` is accepted (and part of the identity)
but idle pooled connections are not reaped on a timer.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import uuid
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import BlockingConnectionPool, Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from . import RedisUnavailable

__all__ = [
    "LIMIT_CONN_PREFIX",
    "LIMIT_COUNT_PREFIX",
    "LIMIT_REQ_PREFIX",
    "RedisConfig",
    "RedisLimiter",
    "close_all",
    "get_limiter",
]

#: APISIX: ``"plugin-" .. plugin_name`` prepended to the limit key (no separator)
LIMIT_COUNT_PREFIX = "plugin-limit-count"
#: the sliding-window counters live in a hash at ``prefix .. key .. SLIDING_SUFFIX``
SLIDING_SUFFIX = ":sliding"
#: APISIX: ``"limit_req" .. ":" .. key``
LIMIT_REQ_PREFIX = "limit_req"
#: APISIX: ``"limit_conn" .. ":" .. key``
LIMIT_CONN_PREFIX = "limit_conn"


# -- configuration -------------------------------------------------------------------------------
def _opt(conf: Any, name: str, default: Any = None) -> Any:
    value = conf.get(name) if isinstance(conf, Mapping) else getattr(conf, name, None)
    return default if value is None else value


def parse_addr(addr: str, default_port: int = 6379) -> tuple[str, int]:
    """``"host:port"`` / ``"[v6]:port"`` / ``"host"`` -> ``(host, port)``."""
    addr = addr.strip()
    if addr.startswith("["):
        host, _, rest = addr[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif addr.count(":") == 1:
        host, _, port = addr.partition(":")
    else:
        host, port = addr, ""
    if not host:
        raise ValueError(f"bad redis address {addr!r}")
    try:
        return host, int(port) if port else default_port
    except ValueError:
        raise ValueError(f"bad redis address {addr!r}") from None


@dataclass(frozen=True, slots=True)
class RedisConfig:
    """The connection-relevant part of a plugin configuration, hashable (the cache key)."""

    policy: str  # "redis" | "redis-cluster"
    host: str = "127.0.0.1"
    port: int = 6379
    username: str | None = None
    password: str | None = None
    database: int = 0
    timeout_ms: int = 1000
    ssl: bool = False
    ssl_verify: bool = False
    keepalive_timeout_ms: int = 10000
    keepalive_pool: int = 100
    cluster_nodes: tuple[tuple[str, int], ...] = ()
    cluster_name: str = ""

    @classmethod
    def from_conf(cls, conf: Any) -> RedisConfig:
        """Build from a plugin configuration (dict or object with the APISIX field names).

        ``policy`` picks the mode; without it, ``redis_cluster_nodes`` means a cluster.
        """
        if isinstance(conf, RedisConfig):
            return conf
        policy = _opt(conf, "policy")
        if policy not in ("redis", "redis-cluster"):
            if policy not in (None, "local") or not (_opt(conf, "redis_cluster_nodes")
                                                     or _opt(conf, "redis_host")):
                raise ValueError(f"not a redis policy: {policy!r}")
            policy = "redis-cluster" if _opt(conf, "redis_cluster_nodes") else "redis"
        password = _opt(conf, "redis_password") or None
        username = (_opt(conf, "redis_username") or None) if password else None
        common: dict[str, Any] = {
            "policy": policy,
            "username": username,
            "password": password,
            "timeout_ms": int(_opt(conf, "redis_timeout", 1000)),
            "keepalive_timeout_ms": int(_opt(conf, "redis_keepalive_timeout", 10000)),
            "keepalive_pool": int(_opt(conf, "redis_keepalive_pool", 100)),
        }
        if common["timeout_ms"] < 1 or common["keepalive_pool"] < 1:
            raise ValueError("redis_timeout and redis_keepalive_pool must be >= 1")
        if policy == "redis-cluster":
            nodes = _opt(conf, "redis_cluster_nodes", ())
            if not nodes:
                raise ValueError("redis_cluster_nodes is required for policy redis-cluster")
            return cls(
                cluster_nodes=tuple(parse_addr(str(n)) for n in nodes),
                cluster_name=str(_opt(conf, "redis_cluster_name", "")),
                ssl=bool(_opt(conf, "redis_cluster_ssl", False)),
                ssl_verify=bool(_opt(conf, "redis_cluster_ssl_verify", False)),
                **common,
            )
        host = _opt(conf, "redis_host")
        if not host:
            raise ValueError("redis_host is required for policy redis")
        return cls(
            host=str(host),
            port=int(_opt(conf, "redis_port", 6379)),
            database=int(_opt(conf, "redis_database", 0)),
            ssl=bool(_opt(conf, "redis_ssl", False)),
            ssl_verify=bool(_opt(conf, "redis_ssl_verify", False)),
            **common,
        )

    def describe(self) -> str:
        if self.policy == "redis-cluster":
            nodes = ",".join(f"{h}:{p}" for h, p in self.cluster_nodes)
            return f"redis-cluster {self.cluster_name or '-'} ({nodes})"
        return f"redis {self.host}:{self.port}/{self.database}"


# -- scripts -------------------------------------------------------------------------------------
class _Script:
    __slots__ = ("sha", "src")

    def __init__(self, src: str) -> None:
        self.src = src
        self.sha = hashlib.sha1(src.encode()).hexdigest()


#: APISIX's limit-count commit script (util.lua): the first hit of a window SETs
#: ``limit - cost`` with ``EX window``; later hits ``INCRBY -cost``.  A negative result means
#: rejected (the counter keeps going down, as in APISIX).  Returns {remaining, ttl}.
_FIXED = _Script("""
local cost = tonumber(ARGV[3])
local ttl = redis.call('ttl', KEYS[1])
if ttl < 0 then
  local remaining = tonumber(ARGV[1]) - cost
  redis.call('set', KEYS[1], remaining, 'EX', ARGV[2])
  return {remaining, tonumber(ARGV[2])}
end
return {redis.call('incrby', KEYS[1], 0 - cost), ttl}
""")

#: Sliding window over one hash: field = window id, value = hits admitted in that window.
#: ARGV: limit, window_ms, cost.  Returns {allowed, remaining, ms left in the current window}.
_SLIDING = _Script("""
local limit = tonumber(ARGV[1])
local win = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cur = math.floor(now / win)
local left = win - (now - cur * win)
local cur_f = string.format('%d', cur)
local prev_f = string.format('%d', cur - 1)
local got = redis.call('HMGET', KEYS[1], cur_f, prev_f)
local curr = tonumber(got[1]) or 0
local prev = tonumber(got[2]) or 0
if prev > limit then prev = limit end
local estimate = prev * left / win + curr
if estimate + cost > limit then
  local remaining = math.floor(limit - estimate)
  if remaining < 0 then remaining = 0 end
  return {0, remaining, left}
end
curr = curr + cost
redis.call('HSET', KEYS[1], cur_f, curr)
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if f ~= cur_f and f ~= prev_f then redis.call('HDEL', KEYS[1], f) end
end
redis.call('PEXPIRE', KEYS[1], left + win)
return {1, math.floor(limit - estimate - cost), left}
""")

#: limit-req's leaky bucket (APISIX limit-req/util.lua, in milli-requests): ARGV: rate*1000,
#: burst*1000, commit.  Returns {allowed, excess} (excess as a string: Lua numbers would be
#: truncated to integers on the way out).
_LEAKY = _Script("""
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local got = redis.call('HMGET', KEYS[1], 'excess', 'last')
local excess = 0
if got[1] and got[2] then
  excess = tonumber(got[1]) - rate * math.abs(now - tonumber(got[2])) / 1000 + 1000
  if excess < 0 then excess = 0 end
  if excess > burst then return {0, string.format('%.17g', excess)} end
end
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], 'excess', string.format('%.17g', excess),
             'last', string.format('%.3f', now))
  redis.call('PEXPIRE', KEYS[1], math.ceil((excess + 1000) * 1000 / rate) + 1000)
end
return {1, string.format('%.17g', excess)}
""")

#: limit-conn (APISIX limit-conn/util.lua): a sorted set of in-flight request ids scored by
#: their expiry, so a node that dies mid-request leaks a slot for ``key_ttl`` at most.
#: ARGV: max (conn + burst), key_ttl, req_id, commit.  Returns {allowed, conn}.
_CONN_IN = _Script("""
local max = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.6f', now))
local count = redis.call('ZCARD', KEYS[1])
if ARGV[4] ~= '1' then return {1, count + 1} end
if count >= max then return {0, count} end
redis.call('ZADD', KEYS[1], string.format('%.6f', now + ttl), ARGV[3])
redis.call('EXPIRE', KEYS[1], ttl)
return {1, redis.call('ZCARD', KEYS[1])}
""")

#: ARGV: req_id.  Returns the connections still in flight.
_CONN_OUT = _Script("""
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.6f', now))
return redis.call('ZCARD', KEYS[1])
""")


# -- the limiter ---------------------------------------------------------------------------------
class RedisLimiter:
    """Counters for one Redis (or Redis Cluster) configuration; see the module docstring."""

    def __init__(self, conf: Any) -> None:
        self.config = RedisConfig.from_conf(conf)
        #: seconds; socket connect/read timeout and the longest wait for a pooled connection
        self.timeout = self.config.timeout_ms / 1000.0
        #: seconds; bound on one command once it has a connection slot
        self.deadline = 2 * self.timeout
        self._client: Redis | RedisCluster | None = None
        self._sem: asyncio.Semaphore | None = None
        self.closed = False

    # -- connections ---------------------------------------------------------------------------
    def _make_client(self) -> Redis | RedisCluster:
        c = self.config
        if c.policy == "redis-cluster":
            ssl_kw: dict[str, Any] = {}
            if c.ssl:
                ssl_kw = {"ssl": True, "ssl_cert_reqs": "required" if c.ssl_verify else "none",
                          "ssl_check_hostname": c.ssl_verify}
            self._sem = asyncio.Semaphore(c.keepalive_pool)
            return RedisCluster(
                startup_nodes=[ClusterNode(h, p) for h, p in c.cluster_nodes],
                username=c.username, password=c.password,
                socket_timeout=self.timeout, socket_connect_timeout=self.timeout,
                max_connections=c.keepalive_pool,
                # never re-send a script: a reply lost with its connection (redis-py drops node
                # connections when it rebuilds the slot map) may belong to a script that ran.
                # MOVED/ASK are still followed; the next call re-reads the slot map.
                retry=Retry(NoBackoff(), 0),
                require_full_coverage=True,
                **ssl_kw,
            )
        kw: dict[str, Any] = {}
        if c.ssl:
            kw = {"connection_class": SSLConnection,
                  "ssl_cert_reqs": "required" if c.ssl_verify else "none",
                  "ssl_check_hostname": c.ssl_verify}
        pool = BlockingConnectionPool(
            max_connections=c.keepalive_pool, timeout=self.timeout,
            **({"connection_class": Connection} | kw),
            host=c.host, port=c.port, db=c.database,
            username=c.username, password=c.password,
            socket_timeout=self.timeout, socket_connect_timeout=self.timeout,
            retry=Retry(NoBackoff(), 0),
        )
        return Redis(connection_pool=pool)

    def _fail(self, what: str, err: BaseException) -> RedisUnavailable:
        detail = str(err) or type(err).__name__
        return RedisUnavailable(f"{self.config.describe()}: {what}: {detail}")

    async def _call(self, op: Callable[[Any], Awaitable[Any]]) -> Any:
        """Run ``op(client)`` with a connection slot and the deadline; errors -> unavailable."""
        if self.closed:
            raise RedisUnavailable(f"{self.config.describe()}: limiter closed")
        client = self._client
        if client is None:
            client = self._client = self._make_client()
        sem = self._sem
        if sem is not None:
            try:
                async with asyncio.timeout(self.timeout):
                    await sem.acquire()
            except TimeoutError as e:
                raise self._fail("no connection available", e) from e
        try:
            async with asyncio.timeout(self.deadline):
                if isinstance(client, RedisCluster):
                    # a no-op once the slot map is known; without it, commands issued before
                    # the first CLUSTER SLOTS go to any node and bounce on MOVED, and enough
                    # MOVEDs make redis-py rebuild its node connections under callers' feet
                    await client.initialize()
                return await op(client)
        except TimeoutError as e:
            raise self._fail(f"timed out after {self.deadline:g}s", e) from e
        except (RedisError, RedisClusterException, OSError) as e:
            raise self._fail(type(e).__name__, e) from e
        finally:
            if sem is not None:
                sem.release()

    async def _eval(self, script: _Script, key: str, *args: Any) -> Any:
        async def run(client: Any) -> Any:
            try:
                return await client.evalsha(script.sha, 1, key, *args)
            except NoScriptError:
                return await client.eval(script.src, 1, key, *args)

        return await self._call(run)

    async def ping(self) -> None:
        """Raise ``RedisUnavailable`` unless Redis (every cluster master) answers."""
        await self._call(lambda client: client.ping())

    async def aclose(self) -> None:
        """Close the connections; the limiter refuses further calls."""
        self.closed = True
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if isinstance(client, RedisCluster):
                await client.aclose()
            else:
                await client.aclose()
                await client.connection_pool.disconnect()
        except (RedisError, RedisClusterException, OSError):
            pass

    # -- limit-count ---------------------------------------------------------------------------
    async def incoming(self, key: str, limit: int, window: int, cost: int = 1,
                       sliding: bool = False, *,
                       prefix: str = LIMIT_COUNT_PREFIX) -> tuple[bool, int, int]:
        """Count ``cost`` hits against ``limit`` per ``window`` seconds for ``key``.

        Returns ``(allowed, remaining, reset_seconds)`` -- what limit-count puts in
        ``X-RateLimit-Remaining`` / ``X-RateLimit-Reset`` (APISIX shows remaining 0 on a
        rejection whatever is returned).

        Fixed window (APISIX's script, key ``prefix .. key``): the first hit of a window sets
        the counter to ``limit - cost`` with a TTL of ``window``; every later hit decrements it
        by ``cost`` -- rejected hits included, as in APISIX -- and is allowed while the result is
        ``>= 0``.  ``reset`` is the key's TTL (``window`` on the first hit).

        Sliding window (key ``prefix .. key .. ":sliding"``, a hash of per-window counts;
        Redis ``TIME`` is the clock).  With ``W = window``, ``now`` in ms::

            cur       = floor(now / W)              # current fixed window id
            elapsed   = now - cur * W               # time into it (0 <= elapsed < W)
            prev      = min(count[cur - 1], limit)  # previous window's admitted hits
            estimate  = prev * (W - elapsed) / W + count[cur]
            allowed   = estimate + cost <= limit    # then count[cur] += cost
            remaining = floor(limit - estimate - cost)  if allowed
                        max(floor(limit - estimate), 0) if rejected
            reset     = ceil((W - elapsed) / 1000)      # seconds to the window's end

        Rejected hits are not counted.  This is exactly what the local (shared-memory)
        backend computes (``pylon.ratelimit.local``), with Redis' clock instead of the
        host's.  The whole decision is one script, so concurrent callers on any number of
        nodes never admit more than the formula allows.
        """
        if limit <= 0 or window <= 0:
            raise ValueError("limit and window must be > 0")
        if cost < 1:
            raise ValueError("cost must be at least 1")
        if sliding:
            res = await self._eval(_SLIDING, f"{prefix}{key}{SLIDING_SUFFIX}",
                                   limit, int(window * 1000), cost)
            allowed, remaining, ms = int(res[0]), int(res[1]), int(res[2])
            return allowed == 1, max(remaining, 0), max(1, math.ceil(ms / 1000))
        res = await self._eval(_FIXED, f"{prefix}{key}", limit, window, cost)
        remaining, ttl = int(res[0]), int(res[1])
        if remaining < 0:
            return False, 0, ttl
        return True, remaining, ttl

    # -- limit-req -----------------------------------------------------------------------------
    async def incoming_req(self, key: str, rate: float, burst: float, *, commit: bool = True,
                           prefix: str = LIMIT_REQ_PREFIX) -> tuple[bool, float, float]:
        """limit-req's leaky bucket: ``rate`` requests/s, ``burst`` extra requests queued.

        Returns ``(allowed, delay_seconds, excess)``; the plugin sleeps ``delay`` (unless
        ``nodelay``) when allowed and answers ``rejected_code`` otherwise.  APISIX's algorithm,
        in milli-requests: ``excess = max(excess - rate * |now - last| + 1, 0)`` for a known
        key (0 for a new one); rejected when ``excess > burst`` (state untouched); otherwise the
        state is stored (with ``commit``) and ``delay = excess / rate``.  Unlike APISIX the state
        is one hash (``prefix:key`` with fields ``excess``/``last``, so one script can update it
        atomically, also on a cluster) that expires once the bucket has drained.
        """
        if rate <= 0 or burst < 0:
            raise ValueError("rate must be > 0 and burst >= 0")
        rate_m = float(rate) * 1000
        res = await self._eval(_LEAKY, f"{prefix}:{key}", repr(rate_m),
                               repr(float(burst) * 1000), "1" if commit else "0")
        excess = float(res[1])
        if int(res[0]) != 1:
            return False, 0.0, excess / 1000
        return True, excess / rate_m, excess / 1000

    # -- limit-conn ----------------------------------------------------------------------------
    async def conn_incoming(self, key: str, max_conn: float, burst: float = 0, *,
                            key_ttl: int = 3600, req_id: str | None = None,
                            commit: bool = True,
                            prefix: str = LIMIT_CONN_PREFIX) -> tuple[bool, int, str]:
        """Admit one connection for ``key`` unless ``max_conn + burst`` are in flight.

        Returns ``(allowed, conn, req_id)``: ``conn`` counts this request; pass ``req_id`` to
        ``conn_leaving``.  As in APISIX (``limit_conn:key`` sorted set), each request is a
        member scored with its expiry ``now + key_ttl`` -- requests of a crashed node drop out
        after ``key_ttl`` seconds -- and expired members are purged on every call.  The delay
        for ``conn > max_conn`` (``unit_delay * floor((conn - 1) / max_conn)``) is the plugin's.
        With ``commit=False`` nothing is recorded and ``conn`` is what a commit would give.
        """
        if max_conn <= 0 or burst < 0 or key_ttl < 1:
            raise ValueError("max_conn must be > 0, burst >= 0, key_ttl >= 1")
        rid = req_id or uuid.uuid4().hex
        res = await self._eval(_CONN_IN, f"{prefix}:{key}", repr(float(max_conn + burst)),
                               int(key_ttl), rid, "1" if commit else "0")
        return int(res[0]) == 1, int(res[1]), rid

    async def conn_leaving(self, key: str, req_id: str, *,
                           prefix: str = LIMIT_CONN_PREFIX) -> int:
        """The request ``req_id`` is done; returns the connections still in flight."""
        return int(await self._eval(_CONN_OUT, f"{prefix}:{key}", req_id))


# -- per-worker sharing --------------------------------------------------------------------------
#: id(loop) -> (weakref to the loop, {RedisConfig: RedisLimiter})
_CACHE: dict[int, tuple[weakref.ref[asyncio.AbstractEventLoop],
                        dict[RedisConfig, RedisLimiter]]] = {}


def _prune() -> None:
    for lid, (ref, _) in list(_CACHE.items()):
        loop = ref()
        if loop is None or loop.is_closed():
            del _CACHE[lid]


def get_limiter(conf: Any) -> RedisLimiter:
    """The shared ``RedisLimiter`` for this configuration in the running event loop."""
    cfg = RedisConfig.from_conf(conf)
    loop = asyncio.get_running_loop()
    entry = _CACHE.get(id(loop))
    if entry is None or entry[0]() is not loop:
        _prune()
        entry = _CACHE[id(loop)] = (weakref.ref(loop), {})
    limiters = entry[1]
    lim = limiters.get(cfg)
    if lim is None or lim.closed:
        lim = limiters[cfg] = RedisLimiter(cfg)
    return lim


async def close_all() -> None:
    """Close every shared limiter of the running loop (worker shutdown, config reload)."""
    entry = _CACHE.pop(id(asyncio.get_running_loop()), None)
    _prune()
    if entry is not None:
        await asyncio.gather(*(lim.aclose() for lim in entry[1].values()),
                             return_exceptions=True)
