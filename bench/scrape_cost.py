#!/usr/bin/env python3
"""Cost of a Prometheus scrape with many series: a real node with ``--routes`` routes (10,000),
each with the prometheus plugin, every route answered with 10 distinct status codes.

    python bench/scrape_cost.py [--routes 10000] [--workers 2] [--scrapes 10]

What it does:

1. starts an upstream nginx (one worker, on a free port) that answers ``/<anything>/<code>``
   with that status code (200 201 202 203 206 400 401 403 404 500), and a Pylon node
   (``--workers``) whose routes ``/r<i>/*`` all carry ``prometheus``; the export server on a
   free port;
2. populates: wrk (bounded: ``--threads`` × ``--connections`` keep-alive connections) walks
   every (route, code) pair in a fixed order, in chunks, until every pair was sent -- 10 ×
   routes ``apisix_http_status`` series, plus each route's latency histograms and bandwidth;
3. times scrapes of ``/apisix/prometheus/metrics``: the first (cold: the master decodes
   every series once), ``--scrapes`` steady ones without traffic, and ``--scrapes`` while
   wrk sends traffic to 1 % of the routes; reports ms (median / max), the response size and
   the series count (the cold scrape is parsed with prometheus_client's parser, which also
   validates it; every status series must be there);
4. measures the workers' CPU while idle (each flushes its aggregate once a second) and, in
   this process, the plugin's flush and the master's render on a store of the same shape
   (the worker-side cost hidden inside a scrape's time).

Target: < 200 ms per scrape.  Every process started is stopped at the end (finally).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import (
    Gateway,
    children,
    cpu_seconds,
    free_port,
    http_get,
    median,
    node_config,
    parse_metrics,
    scrape,
    stop_group,
    wait_export,
)

CODES = (200, 201, 202, 203, 206, 400, 401, 403, 404, 500)
TARGET_MS = 200.0

UPSTREAM_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    server_tokens off;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    default_type text/plain;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
{locations}
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""

# wrk: thread k (of T) sends pair numbers k + j*T for j = start, start+1, ...; pair p is
# route p % R with code CODES[p // R % 10]; done() prints how far every thread got
POPULATE_LUA = """
local R, T, START = {routes}, {threads}, {start}
local codes = {{{codes}}}
local threads = {{}}
local n = 0
function setup(thread)
    thread:set("id", n); n = n + 1
    table.insert(threads, thread)
end
function init(args)
    k = wrk.thread:get("id"); j = START
end
function request()
    local p = (k + j * T) % (R * 10)
    j = j + 1
    return wrk.format("GET", "/r" .. (p % R) .. "/" .. codes[math.floor(p / R) % 10 + 1])
end
function done(summary, latency, requests)
    local s = ""
    for _, t in ipairs(threads) do s = s .. " " .. t:get("j") end
    io.write("ISSUED" .. s .. "\\n")
    io.write("REQS " .. summary.requests .. " ERR " .. (summary.errors.connect +
             summary.errors.read + summary.errors.write + summary.errors.timeout) .. "\\n")
end
"""

# traffic on the first `hot` routes, codes cycling
HOT_LUA = """
local H = {hot}
local codes = {{{codes}}}
local i = 0
function request()
    i = i + 1
    return wrk.format("GET", "/r" .. (i % H) .. "/" .. codes[(math.floor(i / H) % 10) + 1])
end
"""


class Upstream:
    """nginx answering /<...>/<code> with <code>."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="scrape-upstream-")
        self.port = free_port()
        locs = "\n".join(f'        location ~ /{c}$ {{ return {c} "{c}\\n"; }}' for c in CODES)
        with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
            f.write(UPSTREAM_CONF.format(dir=self.dir, port=self.port, locations=locs))
        self.proc = subprocess.Popen(["nginx", "-e", f"{self.dir}/error.log", "-c",
                                      f"{self.dir}/nginx.conf"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                if http_get("127.0.0.1", self.port, "/x/404", timeout=2)[0] == 404:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("the upstream nginx did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        stop_group(self.proc, 5)
        shutil.rmtree(self.dir, ignore_errors=True)


def routes_doc(upstream: str, n: int) -> dict[str, Any]:
    up = {"nodes": {upstream: 1}, "keepalive_pool": {"requests": 100000000, "idle_timeout": 300}}
    return {"upstreams": [{"id": "u", **up}],
            "routes": [{"id": f"r{i}", "uri": f"/r{i}/*", "upstream_id": "u",
                        "plugins": {"prometheus": {}}} for i in range(n)]}


def populate(port: int, routes: int, threads: int, conns: int, chunk: int,
             workdir: str) -> tuple[int, float]:
    """wrk over every (route, code) pair; (requests sent, seconds)."""
    pairs = routes * len(CODES)
    need = -(-pairs // threads)                    # pairs per thread
    start = 0
    sent = 0
    t0 = time.monotonic()
    script = os.path.join(workdir, "populate.lua")
    while start < need:
        with open(script, "w") as f:
            f.write(POPULATE_LUA.format(routes=routes, threads=threads, start=start,
                                        codes=",".join(map(str, CODES))))
        out = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{chunk}s", "-s", script,
                              f"http://127.0.0.1:{port}/"], capture_output=True, text=True,
                             timeout=chunk + 60, check=True).stdout
        issued = [int(x) for x in re.search(r"ISSUED ([\d ]+)", out).group(1).split()]
        m = re.search(r"REQS (\d+) ERR (\d+)", out)
        sent += int(m.group(1))
        if int(m.group(2)):
            print(f"  populate: {m.group(2)} socket errors in a chunk", flush=True)
        # requests still in flight when wrk stopped (at most one per connection) are sent
        # again by the next chunk
        start = max(start, min(issued) - -(-conns // threads))
        print(f"  populate: {sent:,} requests, {min(start, need) * threads:,} of {pairs:,} "
              f"pairs covered, {time.monotonic() - t0:.0f} s", flush=True)
    return sent, time.monotonic() - t0


def count_series(body: bytes) -> tuple[int, int, dict[str, int], list[dict[str, str]]]:
    """(samples, series, series per family, status series other than the populated pairs)
    of an exposition text (histogram series are counted once, not per bucket)."""
    fams = parse_metrics(body)
    codes = {str(c) for c in CODES}
    other = [s.labels for f in fams if f.name == "apisix_http_status" for s in f.samples
             if s.labels.get("code") not in codes or not s.labels.get("route", "")[1:].isdigit()]
    samples = 0
    series = 0
    per: dict[str, int] = {}
    for f in fams:
        samples += len(f.samples)
        if f.type == "histogram":
            n = sum(1 for s in f.samples if s.name.endswith("_count"))
        else:
            n = len(f.samples)
        per[f.name] = n
        series += n
    return samples, series, per, other


def timed_scrapes(port: int, n: int, gap: float) -> tuple[list[float], int]:
    ms: list[float] = []
    size = 0
    for _ in range(n):
        t, body = scrape(port)
        ms.append(t)
        size = len(body)
        time.sleep(gap)
    return ms, size


def fmt_ms(xs: list[float]) -> str:
    return f"median {median(xs):.1f} ms, max {max(xs):.1f} ms (n={len(xs)})"


# ----------------------------------------------------------------------------- in-process
def flush_cost(routes: int, hot_share: float) -> list[tuple[str, float]]:
    """The prometheus plugin's worker-side flush and the master's render, in this process,
    on a private store of the same shape as the live node's (routes × codes)."""
    from pylon.observe import metrics
    from pylon.plugins import prometheus as prom
    shm = tempfile.mkdtemp(prefix="scrape-shm-")
    os.environ["PYLON_SHM_DIR"] = shm
    try:
        prom.prepare({})
        lc = metrics.local()
        lc.open()
        up = SimpleNamespace(bytes_out=0)
        ctxs = []
        for i in range(routes):
            route = SimpleNamespace(service_id=None, name=None, service_name=None)
            match = SimpleNamespace(route=route, route_id=f"r{i}", matched_uri=f"/r{i}/*",
                                    matched_host="")
            for c in CODES:
                ctxs.append(SimpleNamespace(match=match, consumer_name=None,
                                            up_addr="127.0.0.1:18080", status=c,
                                            t_start=0.0, t_end=0.0042, up_status=c,
                                            t_up_start=0.0011, body_in=0, down=up))
        for ctx in ctxs:
            up.bytes_out = 120
            prom.log(False, ctx)
        res = []
        t0 = time.perf_counter()
        lc.flush()
        res.append(("worker flush, every pair new (series created in the store)",
                    time.perf_counter() - t0))
        for ctx in ctxs:
            prom.log(False, ctx)
        t0 = time.perf_counter()
        lc.flush()
        res.append(("worker flush, every pair counted again", time.perf_counter() - t0))
        hot = ctxs[:max(1, int(len(ctxs) * hot_share))]
        for ctx in hot:
            prom.log(False, ctx)
        t0 = time.perf_counter()
        lc.flush()
        res.append((f"worker flush, {hot_share:.0%} of the pairs counted",
                    time.perf_counter() - t0))
        t0 = time.perf_counter()
        lc.flush()
        res.append(("worker flush, nothing counted (the once-a-second tick when idle)",
                    time.perf_counter() - t0))
        reader = metrics.Reader(metrics.MetricStore(shm, metrics.DEFAULT_MAX_VALUES))
        t0 = time.perf_counter()
        text = reader.render()
        res.append((f"master render, cold ({len(text) / 1e6:.1f} MB)", time.perf_counter() - t0))
        t0 = time.perf_counter()
        reader.render()
        res.append(("master render, warm", time.perf_counter() - t0))
        return res
    finally:
        shutil.rmtree(shm, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--routes", type=int, default=10000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--scrapes", type=int, default=10)
    ap.add_argument("--gap", type=float, default=0.5, help="seconds between scrapes")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads (populating)")
    ap.add_argument("--connections", type=int, default=64, help="wrk connections "
                    "(populating; bounded)")
    ap.add_argument("--chunk", type=int, default=15, help="seconds per populating wrk run")
    ap.add_argument("--hot-connections", type=int, default=8,
                    help="wrk connections of the 1 %% traffic during scrapes")
    a = ap.parse_args()
    if a.routes < 100:
        raise SystemExit("--routes: at least 100 (1 % of them carry traffic)")

    workdir = tempfile.mkdtemp(prefix="scrape-cost-")
    upstream = gw = hot = None
    try:
        upstream = Upstream()
        export = free_port()
        gw = Gateway(node_config(free_port(), a.workers, export_port=export),
                     routes_doc(f"127.0.0.1:{upstream.port}", a.routes))
        ready = gw.wait_ready("/r0/200", timeout=300)
        wait_export(export, 60)
        while len(children(gw.proc.pid)) < a.workers:
            time.sleep(0.1)
        # every worker must serve the full table (the probe reached only one of them)
        for _ in range(20 * a.workers):
            http_get("127.0.0.1", gw.port, "/r0/200")
        print(f"node: {a.routes:,} routes with prometheus, {a.workers} workers, serving after "
              f"{ready:.1f} s; upstream nginx answers {len(CODES)} codes", flush=True)

        sent, secs = populate(gw.port, a.routes, a.threads, a.connections, a.chunk, workdir)
        print(f"populated: {sent:,} requests in {secs:.0f} s ({sent / secs:,.0f} req/s)",
              flush=True)
        time.sleep(1.5)                              # the workers' once-a-second flush

        cold_ms, body = scrape(export, timeout=120)
        t0 = time.perf_counter()
        samples, series, per, other = count_series(body)
        parse_s = time.perf_counter() - t0
        status_series = per.get("apisix_http_status", 0)
        lines = body.count(b"\n")
        print(f"\ncold scrape: {cold_ms:.1f} ms, {len(body) / 1e6:.1f} MB, {lines:,} lines; "
              f"{series:,} series ({samples:,} samples) -- apisix_http_status "
              f"{status_series:,}, apisix_http_latency {per.get('apisix_http_latency', 0):,} "
              f"histograms, apisix_bandwidth {per.get('apisix_bandwidth', 0):,} "
              f"(prometheus_client parsed it in {parse_s:.1f} s)", flush=True)
        want = a.routes * len(CODES)
        if other:
            print(f"  status series besides the populated pairs: {len(other)}, e.g. "
                  f"{other[:3]}", flush=True)
        if status_series < want:
            print(f"WARNING: {status_series:,} status series, {want:,} expected", flush=True)

        steady, size = timed_scrapes(export, a.scrapes, a.gap)
        print(f"steady scrapes, no traffic: {fmt_ms(steady)}, {size / 1e6:.1f} MB", flush=True)

        # workers' idle CPU: each flushes its aggregate once a second
        wpids = children(gw.proc.pid)
        c0, t0 = cpu_seconds(wpids), time.monotonic()
        time.sleep(5)
        idle = (cpu_seconds(wpids) - c0) / (time.monotonic() - t0) / len(wpids) * 1000
        print(f"idle workers: {idle:.1f} ms CPU per second each (the once-a-second flush "
              f"walks {want:,} aggregate entries)", flush=True)

        hot_routes = a.routes // 100
        script = os.path.join(workdir, "hot.lua")
        with open(script, "w") as f:
            f.write(HOT_LUA.format(hot=hot_routes, codes=",".join(map(str, CODES))))
        dur = int(a.scrapes * (a.gap + 1) + 10)
        hot = subprocess.Popen(["wrk", "-t1", f"-c{a.hot_connections}", f"-d{dur}s", "-s",
                                script, f"http://127.0.0.1:{gw.port}/"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               start_new_session=True)
        time.sleep(2)
        busy, size = timed_scrapes(export, a.scrapes, a.gap)
        os.killpg(hot.pid, signal.SIGINT)          # wrk stops and prints its summary
        try:
            out = hot.communicate(timeout=15)[0] or ""
        except subprocess.TimeoutExpired:
            out = ""
        m = re.search(r"Requests/sec:\s+([\d.]+)", out)
        rps = f"{float(m.group(1)):,.0f} req/s" if m else "rate not reported (stopped early)"
        print(f"scrapes while wrk ({a.hot_connections} connections, {rps}) hits "
              f"{hot_routes} routes (1 %): {fmt_ms(busy)}, {size / 1e6:.1f} MB", flush=True)
        hot = None

        worst = max([cold_ms, *steady, *busy])
        print(f"\ntarget: every scrape < {TARGET_MS:.0f} ms -- cold {cold_ms:.0f} ms, steady "
              f"max {max(steady):.0f} ms, under 1 % traffic max {max(busy):.0f} ms: "
              + ("MET" if worst < TARGET_MS else "NOT MET"), flush=True)
    finally:
        if hot is not None:
            stop_group(hot, 5)
        if gw is not None:
            gw.stop()
        if upstream is not None:
            upstream.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    print("\nin this process, a store of the same shape (worker-side flush, master render):")
    for label, s in flush_cost(a.routes, 0.01):
        print(f"  {label:62s} {s * 1000:8.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
