#!/usr/bin/env python3
"""Start Pylon as a benchmark target: one worker, one route (or N), access log off.

    python bench/pylon_target.py --port 18081 --upstream 127.0.0.1:18080 [--routes 100000]
        [--plugin key-auth|jwt-auth]

Writes a throw-away prefix (conf/config.yaml + conf/pylon.json) and execs ``pylon start`` in the
foreground, as ../shared/bench/run.py expects of a --target command.  With --routes N the
config holds N routes (exact, prefix and host routes mixed) and the benchmark path matches the
last one inserted, so matching cost is measured against a full table.  With --plugin the
benchmark route carries that auth plugin and the file one consumer (key ``BENCH_KEY`` for
key-auth; key ``bench`` and HS256 secret ``BENCH_SECRET`` for jwt-auth): send
``apikey: <BENCH_KEY>`` / ``Authorization: Bearer <token>`` (see bench/plugin_cost.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

BENCH_KEY = "bench-api-key-0123456789"
BENCH_SECRET = "bench-jwt-secret-0123456789-0123456789-abcdef"
# The harness's readiness probe sends no extra headers: requests without credentials pass as
# the consumer "anon" (anonymous_consumer), the benchmark requests carry real credentials and
# take the full authentication path.
PLUGINS = {
    "key-auth": ({"key-auth": {"anonymous_consumer": "anon"}},
                 {"key-auth": {"key": BENCH_KEY}}),
    "jwt-auth": ({"jwt-auth": {"anonymous_consumer": "anon"}},
                 {"jwt-auth": {"key": "bench", "secret": BENCH_SECRET, "algorithm": "HS256"}}),
    # a limit never reached: the cost of counting, node-wide in shared memory / in Redis
    "limit-count": ({"limit-count": {"count": 1_000_000_000, "time_window": 3600}}, None),
    "limit-count-redis": ({"limit-count": {"count": 1_000_000_000, "time_window": 3600,
                                           "policy": "redis", "redis_host": "127.0.0.1",
                                           "redis_port": 6379}}, None),
    "prometheus": ({"prometheus": {}}, None),
    # issue 12: transformation plugins (bench/rewrite_cost.py)
    "proxy-rewrite": ({"proxy-rewrite": {
        "regex_uri": ["^/(.*)$", "/$1"],
        "headers": {"set": {"X-Api-Version": "v1", "X-Client-Addr": "$remote_addr"},
                    "remove": ["X-Unwanted"]}}}, None),
    "response-rewrite": ({"response-rewrite": {
        "headers": {"set": {"X-Server": "pylon", "X-Upstream-Status": "$status"}}}}, None),
    "response-rewrite-filters": ({"response-rewrite": {
        "filters": [{"regex": "a", "replace": "b", "scope": "global"}]}}, None),
    # seed 004's scenario: APISIX benchmarked with limit-count + prometheus (+ key-auth)
    "limit-count+prometheus": ({"limit-count": {"count": 1_000_000_000, "time_window": 3600},
                                "prometheus": {}}, None),
    "limit-count+prometheus+key-auth": (
        {"limit-count": {"count": 1_000_000_000, "time_window": 3600}, "prometheus": {},
         "key-auth": {"anonymous_consumer": "anon"}},
        {"key-auth": {"key": BENCH_KEY}}),
}


def routes_doc(upstream: str, n: int, plugin: str | None = None,
               redis: str | None = None) -> dict:
    up = {"nodes": {upstream: 1}, "keepalive_pool": {"requests": 100000000, "idle_timeout": 300}}
    doc: dict = {"upstreams": [{"id": "u", **up}], "routes": []}
    routes = doc["routes"]
    for i in range(max(n - 1, 0)):
        kind = i % 4
        if kind == 0:
            r = {"uri": f"/api/v1/r{i}"}
        elif kind == 1:
            r = {"uri": f"/svc{i}/*"}
        elif kind == 2:
            r = {"uri": f"/h{i}/*", "hosts": [f"h{i}.example.com"]}
        else:
            r = {"uris": [f"/m{i}", f"/m{i}/x"], "methods": ["GET", "POST"]}
        routes.append({"id": f"r{i}", "upstream_id": "u", **r})
    routes.append({"id": "bench", "uri": "/*", "upstream_id": "u"})
    if plugin:
        route_conf, consumer_conf = PLUGINS[plugin]
        routes[-1]["plugins"] = json.loads(json.dumps(route_conf))
        if redis and "limit-count" in routes[-1]["plugins"]:
            host, _, port = redis.rpartition(":")
            routes[-1]["plugins"]["limit-count"].update(redis_host=host, redis_port=int(port))
        if consumer_conf is not None:
            doc["consumers"] = [{"username": "bench", "plugins": consumer_conf},
                                {"username": "anon"}]
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True, help="host:port or http://host:port")
    ap.add_argument("--routes", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--access-log", action="store_true")
    ap.add_argument("--plugin", choices=sorted(PLUGINS), help="plugin on the route")
    ap.add_argument("--redis", help="host:port of the Redis for limit-count-redis")
    a = ap.parse_args()
    upstream = a.upstream.split("://", 1)[-1].rstrip("/")
    prefix = tempfile.mkdtemp(prefix="pylon-bench-")
    os.makedirs(os.path.join(prefix, "conf"))
    node = {
        "pylon": {"node_listen": [{"ip": "127.0.0.1", "port": a.port}], "workers": a.workers,
                  "enable_admin": False},
        "deployment": {"standalone_file": "conf/pylon.json"},
        "nginx_config": {"error_log_level": "warn",
                         "http": {"enable_access_log": a.access_log, "keepalive_timeout": "300s"}},
    }
    with open(os.path.join(prefix, "conf", "config.yaml"), "w") as f:
        json.dump(node, f)
    with open(os.path.join(prefix, "conf", "pylon.json"), "w") as f:
        json.dump(routes_doc(upstream, a.routes, a.plugin, a.redis), f)
    os.execvp(sys.executable, [sys.executable, "-m", "pylon.cli", "start", "-p", prefix])


if __name__ == "__main__":
    main()
