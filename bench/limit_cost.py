#!/usr/bin/env python3
"""Cost of rate limiting per request, and a node held exactly at its configured rate.

    python bench/limit_cost.py [--runs 3] [--duration 10]       # beside nginx, one run
    python bench/limit_cost.py --held --rate 2000 --duration 5  # admitted req/s under load

The first form runs the shared harness (../shared/bench/run.py) with nginx, Pylon on a plain
route, the same route with limit-count ``local`` (node-wide, shared memory) and with
limit-count ``redis`` (a redis-server this script starts on a free port); the limit is never
reached, so the figure is the cost of counting.  The second form puts wrk's full load on a
route limited to ``--rate`` requests per 1 s window and reports how many were admitted per
second (exactness: it should be the rate, to the request).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import HARNESS, Gateway, free_port, node_config


def cost(a: argparse.Namespace) -> int:
    from tests.redis_server import RedisServer
    with RedisServer() as redis:
        target = f"{sys.executable} {HERE}/pylon_target.py --port {{port}} --upstream {{upstream}}"
        cmd = [sys.executable, a.harness, "nginx",
               "--target", f"pylon={target}",
               "--target", f"pylon-limit-local={target} --plugin limit-count",
               "--target", f"pylon-limit-redis={target} --plugin limit-count-redis "
                           f"--redis {redis.address}",
               "--runs", str(a.runs), "--duration", str(a.duration)]
        if a.markdown:
            cmd += ["--markdown", a.markdown]
        return subprocess.call(cmd)


def held(a: argparse.Namespace) -> int:
    """wrk against a route limited to ``rate`` per second: admitted per second."""
    from pylon.pdk.testing import EchoUpstream
    echo = EchoUpstream()
    doc = {"routes": [{"id": "r", "uri": "/*", "upstream": {"nodes": {echo.addr: 1}},
                       "plugins": {"limit-count": {
                           "count": a.rate, "time_window": 1, "key_type": "constant",
                           "key": "all", "rejected_code": 429}}}]}
    port = free_port()
    gw = Gateway(node_config(port, workers=a.workers), doc)
    try:
        time.sleep(2)
        t0 = time.time()
        out = subprocess.run(["wrk", "-t2", "-c64", f"-d{a.duration}s",
                              f"http://127.0.0.1:{port}/x"], capture_output=True, text=True,
                             timeout=a.duration + 30).stdout
        wall = time.time() - t0
        total = int(re.search(r"(\d+) requests in", out).group(1))
        m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        refused = int(m.group(1)) if m else 0
        admitted = total - refused
        # the window starts with the first request: int(wall) full windows, then a partial
        full = int(wall)
        rest = admitted - a.rate * full
        print(f"offered {total / wall:,.0f} req/s for {wall:.2f} s against a limit of "
              f"{a.rate} per second: admitted {admitted} = {full} full windows x {a.rate} "
              f"+ {rest} in the last, partial window")
        if total / wall < 1.5 * a.rate:
            print("the load did not exceed the limit enough to test it (the Python echo "
                  "upstream caps it): use a lower --rate")
        else:
            print("exact" if 0 <= rest <= a.rate else "NOT EXACT")
    finally:
        gw.stop()
        echo.close()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--harness", default=HARNESS)
    ap.add_argument("--markdown")
    ap.add_argument("--held", action="store_true")
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    return held(a) if a.held else cost(a)


if __name__ == "__main__":
    sys.exit(main())
