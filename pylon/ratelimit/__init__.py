"""Rate-limiting backends shared by limit-count, limit-req and limit-conn.

``pylon.ratelimit.redis_backend`` keeps the counters in Redis (``policy: redis`` /
``redis-cluster``) so several gateway nodes share one quota.
"""
