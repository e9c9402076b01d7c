"""Rate-limiting backends shared by limit-count, limit-req and limit-conn.

``pylon.ratelimit.local`` keeps the node's counters in shared memory (``policy: local``);
``pylon.ratelimit.redis_backend`` keeps them in Redis (``policy: redis`` / ``redis-cluster``)
so several gateway nodes share one quota.  Plugins reach both through ``pylon.pdk.ratelimit``.
"""

from __future__ import annotations

from ..errors import PylonError


class RedisUnavailable(PylonError):
    """Redis could not answer (refused, timed out, pool exhausted, cluster down, error reply).

    The plugin lets the request through when ``allow_degradation`` is set, else answers 500.
    ``__cause__`` is the underlying redis-py / OS error.  (Defined here, not in
    ``redis_backend``, so that catching it does not import the Redis client.)
    """


__all__ = ["RedisUnavailable"]
