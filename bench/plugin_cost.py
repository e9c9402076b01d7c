#!/usr/bin/env python3
"""Cost of authentication per request: key-auth and jwt-auth (HS256) beside a plain route and
nginx, in one interleaved run of the shared harness (../shared/bench/run.py).

    python bench/plugin_cost.py [--runs 3] [--duration 10]

Every target gets the same two request headers (``apikey`` and ``Authorization: Bearer``);
nginx and the plain route ignore them.  The key figure is proxy CPU µs per request; the
difference between a plugin target and ``pylon`` is the plugin's cost.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import jwt

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import HARNESS, Gateway, free_port, http_get, node_config
from pylon_target import BENCH_KEY, BENCH_SECRET, routes_doc


def preflight(plugin: str, headers: dict[str, str]) -> None:
    """The benchmark requests must authenticate as "bench" (not pass as the anonymous
    consumer the readiness probe uses): check once against an echo upstream."""
    from pylon.pdk.testing import EchoUpstream
    echo = EchoUpstream()
    try:
        with Gateway(node_config(free_port()), routes_doc(echo.addr, 1, plugin)) as gw:
            gw.wait_ready("/", headers, timeout=30)
            status, _h, _b = http_get("127.0.0.1", gw.port, "/", headers)
            who = echo.requests[-1]["headers"].get("x-consumer-username")
            if status != 200 or who != "bench":
                raise SystemExit(f"{plugin}: benchmark request answered {status} as {who!r}")
    finally:
        echo.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--harness", default=HARNESS)
    ap.add_argument("--markdown", help="write the result table here")
    a = ap.parse_args()
    token = jwt.encode({"key": "bench"}, BENCH_SECRET, algorithm="HS256")
    headers = {"apikey": BENCH_KEY, "Authorization": f"Bearer {token}"}
    for plugin in ("key-auth", "jwt-auth"):
        preflight(plugin, headers)
    target = f"{sys.executable} {HERE}/pylon_target.py --port {{port}} --upstream {{upstream}}"
    cmd = [sys.executable, a.harness, "nginx",
           "--target", f"pylon={target}",
           "--target", f"pylon-key-auth={target} --plugin key-auth",
           "--target", f"pylon-jwt-auth={target} --plugin jwt-auth",
           "--header", f"apikey: {BENCH_KEY}",
           "--header", f"Authorization: Bearer {token}",
           "--runs", str(a.runs), "--duration", str(a.duration)]
    if a.markdown:
        cmd += ["--markdown", a.markdown]
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
