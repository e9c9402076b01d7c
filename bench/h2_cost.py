"""HTTP/2 toward clients: proxy CPU µs per request with h2load, Pylon beside nginx.

Both proxies (one worker each, on CPU 1) forward to the same origin nginx (CPU 0, with
h2load) over HTTP/1.1 keep-alive; the client speaks h2c with prior knowledge
(``h2load -n N -c 10 -m 100``: 10 connections, 100 streams each).  The figure is the
proxy's process tree CPU (user + sys) over the run ÷ requests, which does not depend on
which side was the bottleneck.  Rounds alternate between the targets.

    python bench/h2_cost.py [--requests 100000] [--runs 3]

Needs nginx and h2load (nghttp2-client).  Figures: docs/http2.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

from common import Gateway, cpu_seconds, free_port, median, node_config, stop_group

ORIGIN_CONF = """
worker_processes 1; daemon off; pid {d}/origin.pid; error_log {d}/origin.err;
events {{ worker_connections 4096; }}
http {{ access_log off;
  server {{ listen 127.0.0.1:{port}; keepalive_requests 100000;
    location / {{ return 200 "hello, world\\n"; }} }} }}
"""

PROXY_CONF = """
worker_processes 1; daemon off; pid {d}/proxy.pid; error_log {d}/proxy.err;
events {{ worker_connections 4096; }}
http {{ access_log off;
  upstream origin {{ server 127.0.0.1:{origin}; keepalive 64; }}
  server {{ listen 127.0.0.1:{port} http2; keepalive_requests 100000;
    location / {{ proxy_pass http://origin; proxy_http_version 1.1;
                 proxy_set_header Connection ""; }} }} }}
"""


def nginx(conf: str, d: str, name: str, cpu: int) -> subprocess.Popen[Any]:
    path = os.path.join(d, name + ".conf")
    with open(path, "w") as f:
        f.write(conf)
    return subprocess.Popen(["taskset", "-c", str(cpu), "nginx", "-p", d, "-c", path],
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def wait_h2(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["h2load", "-n", "1", f"http://127.0.0.1:{port}/hello"],
                             capture_output=True, text=True, timeout=30, check=False)
        if "1 succeeded" in out.stdout:
            return
        time.sleep(0.2)
    raise SystemExit(f"nothing answers HTTP/2 on {port}")


def run(port: int, pids: list[int], n: int) -> dict[str, float]:
    cpu0 = cpu_seconds(pids)
    out = subprocess.run(["taskset", "-c", "0", "h2load", "-n", str(n), "-c", "10", "-m",
                          "100", f"http://127.0.0.1:{port}/hello"],
                         capture_output=True, text=True, timeout=600, check=False)
    cpu = cpu_seconds(pids) - cpu0
    ok = re.search(r"(\d+) succeeded", out.stdout)
    rps = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out.stdout)
    if ok is None or int(ok.group(1)) != n:
        raise SystemExit("h2load failed:\n" + out.stdout + out.stderr)
    return {"rps": float(rps.group(1)) if rps else 0.0, "us": cpu / n * 1e6}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=100000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    for tool in ("nginx", "h2load", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    d = tempfile.mkdtemp(prefix="h2-bench-")
    origin_port, nginx_port, pylon_port = free_port(), free_port(), free_port()
    procs = [nginx(ORIGIN_CONF.format(d=d, port=origin_port), d, "origin", 0),
             nginx(PROXY_CONF.format(d=d, port=nginx_port, origin=origin_port), d, "proxy", 1)]
    node = node_config(pylon_port)
    node["pylon"]["node_listen"][0]["enable_http2"] = True
    doc = {"routes": [{"id": "h", "uri": "/*", "upstream": {
        "type": "roundrobin", "nodes": [{"host": "127.0.0.1", "port": origin_port,
                                         "weight": 1}]}}]}
    gw = Gateway(node, doc)
    try:
        gw.wait_ready("/hello")
        for pid in gw.pids():
            subprocess.run(["taskset", "-a", "-p", "-c", "1", str(pid)],
                           capture_output=True, check=False)
        wait_h2(nginx_port)
        wait_h2(pylon_port)
        targets = {"nginx": (nginx_port, [procs[1].pid, *children_of(procs[1].pid)]),
                   "pylon": (pylon_port, gw.pids())}
        res: dict[str, list[dict[str, float]]] = {k: [] for k in targets}
        for port, pids in targets.values():        # warm-up
            run(port, pids, min(a.requests, 20000))
        for _ in range(a.runs):
            for name, (port, pids) in targets.items():
                res[name].append(run(port, pids, a.requests))
        base = median([r["us"] for r in res["nginx"]])
        print(f"h2load -n {a.requests} -c 10 -m 100, h2c, {a.runs} runs (median)")
        print("| target | req/s | proxy CPU µs/req | vs nginx |")
        print("|---|--:|--:|--:|")
        for name, rs in res.items():
            us = median([r["us"] for r in rs])
            print(f"| {name} | {median([r['rps'] for r in rs]):,.0f} | {us:.1f} | "
                  f"{us / base:.2f}× |")
        sys.stdout.flush()
    finally:
        gw.stop()
        for p in procs:
            stop_group(p)
        shutil.rmtree(d, ignore_errors=True)


def children_of(pid: int) -> list[int]:
    from common import children
    return children(pid)


if __name__ == "__main__":
    main()
