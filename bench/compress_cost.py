#!/usr/bin/env python3
"""Cost of gzip on a 64 KiB JSON response: Pylon's gzip plugin beside nginx's gzip filter at
the same level, in one interleaved run (plain proxying of both as the reference).

    python bench/compress_cost.py [--runs 3] [--duration 10] [--level 1]

Layout as the shared harness (../shared/bench/run.py): CPU 0 runs wrk (1 thread, 32
connections, ``Accept-Encoding: gzip``) and the origin (nginx, one worker, a 64 KiB JSON file
as ``application/json``); CPU 1 runs the proxy under test, one worker.  Targets, started fresh
for every sample, rounds interleaved:

- ``nginx``        nginx proxy, no gzip (reference)
- ``nginx-gzip``   the same with ``gzip on; gzip_comp_level <level>; gzip_types
                   application/json`` (APISIX's gzip plugin drives this filter)
- ``pylon``        Pylon, one route, no plugin (reference)
- ``pylon-gzip``   the same route with ``gzip: {types: [application/json], comp_level:
                   <level>}``

Every target's answer is checked first (gzip-decoded, it must be the file).  Reported per
target (medians over rounds): requests/s, proxy CPU µs per request (utime+stime of the
target's process tree / requests: the key figure), response bytes, and the compression
throughput (64 KiB / CPU time per request, MB/s per core); for the gzip targets also the CPU
gzip adds to the same proxy's plain request.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
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
    stop_group,
)

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SIZE = 64 * 1024
PATH = "/data.json"
AE = {"Accept-Encoding": "gzip"}

ORIGIN_CONF = """worker_processes 1; daemon off; pid {d}/origin.pid;
error_log {d}/origin-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off; server_tokens off; sendfile on; tcp_nodelay on;
    keepalive_timeout 300s; keepalive_requests 10000000;
    client_body_temp_path {d}/tmp/ob; proxy_temp_path {d}/tmp/op;
    fastcgi_temp_path {d}/tmp/of; uwsgi_temp_path {d}/tmp/ou; scgi_temp_path {d}/tmp/os;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {d}/www;
        location = {path} {{ default_type application/json; }}
    }}
}}
"""

# the harness's nginx peer (bench/peers/nginx.conf), plus the gzip lines when asked
PROXY_CONF = """worker_processes 1; daemon off; pid {d}/{name}.pid;
error_log {d}/{name}-error.log warn;
events {{ worker_connections 4096; multi_accept on; }}
http {{
    access_log off; server_tokens off; tcp_nodelay on;
    keepalive_timeout 300s; keepalive_requests 10000000;
    client_body_temp_path {d}/tmp/{name}b; proxy_temp_path {d}/tmp/{name}p;
    fastcgi_temp_path {d}/tmp/{name}f; uwsgi_temp_path {d}/tmp/{name}u;
    scgi_temp_path {d}/tmp/{name}s;
    {gzip}
    upstream backend {{
        server 127.0.0.1:{origin}; keepalive 64;
        keepalive_requests 10000000; keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://backend; proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffer_size 8k; proxy_buffers 16 8k;
        }}
    }}
}}
"""
GZIP_LINES = ("gzip on; gzip_comp_level {level}; gzip_types application/json; "
              "gzip_min_length 20; gzip_buffers 32 4k;")


def json_body(size: int = SIZE) -> bytes:
    """A deterministic JSON array of API-like records, exactly ``size`` bytes."""
    rnd = random.Random(12)
    words = ["alpha", "beta", "gamma", "delta", "omega", "pending", "active", "closed",
             "north", "south", "east", "west", "red", "green", "blue", "amber"]
    items: list[dict[str, Any]] = []
    out = b"[]"
    while True:
        i = len(items)
        items.append({"id": i, "uuid": f"{rnd.getrandbits(128):032x}",
                      "name": f"{rnd.choice(words)}-{rnd.choice(words)}-{rnd.randint(1, 999)}",
                      "status": rnd.choice(words[5:8]), "score": round(rnd.random() * 100, 3),
                      "tags": rnd.sample(words, 3), "created": 1_700_000_000 + i * 37})
        nxt = json.dumps(items, separators=(",", ":")).encode()
        if len(nxt) > size - 2:
            break
        out = nxt
    return out[:-1] + b" " * (size - len(out)) + b"]"     # padded to the exact size


def pin(pids: list[int], cpu: int) -> None:
    for pid in pids:
        subprocess.run(["taskset", "-a", "-cp", str(cpu), str(pid)], check=False,
                       capture_output=True)


class Nginx:
    def __init__(self, conf: str, d: str, name: str, cpu: int) -> None:
        self.path = os.path.join(d, f"{name}.conf")
        with open(self.path, "w") as f:
            f.write(conf)
        self.proc = subprocess.Popen(["taskset", "-c", str(cpu), NGINX, "-e",
                                      os.path.join(d, f"{name}-error.log"), "-c", self.path],
                                     start_new_session=True, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    def pids(self) -> list[int]:
        return [self.proc.pid, *children(self.proc.pid)]

    def stop(self) -> None:
        stop_group(self.proc)


def wait_ok(port: int, want: bytes, gzipped: bool, timeout: float = 60.0) -> int:
    """Until the target answers the file (gzip-encoded when ``gzipped``); the bytes sent."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            status, h, body = http_get("127.0.0.1", port, PATH, AE, timeout=5)
            enc = h.get("content-encoding")
            plain = gzip.decompress(body) if enc == "gzip" else body
            if status == 200 and plain == want and (enc == "gzip") == gzipped:
                return len(body)
            last = f"status {status}, encoding {enc}, {len(plain)} bytes"
        except OSError as e:
            last = repr(e)
        time.sleep(0.1)
    raise SystemExit(f"target on :{port} not ready: {last}")


def wrk(port: int, seconds: int, conns: int) -> tuple[float, int, float]:
    """(requests/s, requests, p50 ms) of one wrk run pinned to CPU 0."""
    out = subprocess.run(["taskset", "-c", "0", "wrk", "-t1", f"-c{conns}", f"-d{seconds}s",
                          "--latency", "-H", "Accept-Encoding: gzip",
                          f"http://127.0.0.1:{port}{PATH}"],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    n = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    p50 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)] if m else 0.0
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")
    return rps, n, p50


def sample(name: str, a: argparse.Namespace, d: str, origin: int,
           want: bytes) -> dict[str, float]:
    port = free_port()
    gz = name.endswith("-gzip")
    target: Any
    if name.startswith("nginx"):
        conf = PROXY_CONF.format(d=d, name=name, port=port, origin=origin,
                                 gzip=GZIP_LINES.format(level=a.level) if gz else "")
        target = Nginx(conf, d, name, 1)
    else:
        plugins = {"gzip": {"types": ["application/json"], "comp_level": a.level}} if gz else {}
        doc = {"upstreams": [{"id": "u", "nodes": {f"127.0.0.1:{origin}": 1},
                              "keepalive_pool": {"requests": 100_000_000,
                                                 "idle_timeout": 300}}],
               "routes": [{"id": "r", "uri": "/*", "upstream_id": "u", "plugins": plugins}]}
        target = Gateway(node_config(port), doc)
    try:
        size = wait_ok(port, want, gz)
        pin(target.pids(), 1)
        wrk(port, a.warmup, a.connections)
        pids = target.pids()
        c0 = cpu_seconds(pids)
        rps, n, p50 = wrk(port, a.duration, a.connections)
        cpu_us = (cpu_seconds(pids) - c0) / n * 1e6
    except SystemExit:
        if isinstance(target, Gateway):
            print(f"{name} log:\n{target.log_tail()}", file=sys.stderr)
        raise
    finally:
        target.stop()
    return {"rps": rps, "cpu_us": cpu_us, "p50_ms": p50, "bytes": size}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--level", type=int, default=1, help="gzip level, both sides (1..9)")
    ap.add_argument("--markdown", help="also write the table here")
    a = ap.parse_args()
    targets = ["nginx", "nginx-gzip", "pylon", "pylon-gzip"]
    d = tempfile.mkdtemp(prefix="pylon-compress-")
    os.chmod(d, 0o755)                      # nginx workers read www/ unprivileged
    os.makedirs(os.path.join(d, "www"))
    os.makedirs(os.path.join(d, "tmp"))
    want = json_body()
    with open(os.path.join(d, "www", PATH.lstrip("/")), "wb") as f:
        f.write(want)
    os.chmod(os.path.join(d, "www", PATH.lstrip("/")), 0o644)
    origin_port = free_port()
    origin = Nginx(ORIGIN_CONF.format(d=d, port=origin_port, path=PATH), d, "origin", 0)
    results: dict[str, list[dict[str, float]]] = {t: [] for t in targets}
    try:
        http_ok = False
        for _ in range(100):
            try:
                http_ok = http_get("127.0.0.1", origin_port, PATH)[0] == 200
                break
            except OSError:
                time.sleep(0.1)
        if not http_ok:
            raise SystemExit("the origin nginx did not start")
        for r in range(a.runs):
            for t in targets:
                s = sample(t, a, d, origin_port, want)
                results[t].append(s)
                print(f"round {r + 1} {t:11s} {s['rps']:9.0f} req/s  {s['cpu_us']:8.1f} µs/req"
                      f"  {s['bytes']:6d} B", flush=True)
    finally:
        origin.stop()
        shutil.rmtree(d, ignore_errors=True)
    med = {t: {k: median([s[k] for s in results[t]]) for k in results[t][0]} for t in targets}
    lines = [(f"gzip level {a.level}, {SIZE} B JSON response, {a.runs} rounds x {a.duration} s,"
              " medians; proxy CPU per request on one core"),
             "",
             ("| target | req/s | proxy CPU µs/req | p50 ms | response bytes | MB/s per core "
              "| gzip adds µs/req |"),
             "|---|---:|---:|---:|---:|---:|---:|"]
    for t in targets:
        m = med[t]
        base = med[t.removesuffix("-gzip")]["cpu_us"]
        add = f"{m['cpu_us'] - base:.1f}" if t.endswith("-gzip") else ""
        lines.append(f"| {t} | {m['rps']:.0f} | {m['cpu_us']:.1f} | {m['p50_ms']:.2f} | "
                     f"{m['bytes']:.0f} | {SIZE / m['cpu_us']:.0f} | {add} |")
    ratio = med["pylon-gzip"]["cpu_us"] / med["nginx-gzip"]["cpu_us"]
    lines += ["", f"pylon-gzip / nginx-gzip CPU per request: {ratio:.2f}x"]
    text = "\n".join(lines)
    print("\n" + text)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
