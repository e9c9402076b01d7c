#!/usr/bin/env python
"""Config change propagation and apply cost (issue 3's benchmark).

    python bench/config_apply.py [--routes 10000] [--changes 200] [--big 100000]

1. **Cluster propagation**: one real etcd and two Pylon nodes on loopback, ``--routes``
   routes loaded.  Each change is a PUT of a new route through node A's Admin API; the time
   is measured from just before the PUT until *both* nodes route a request to the new uri
   (each polled over a keep-alive connection).  Reports p50/p90/p99/max over ``--changes``.
2. **Single-change apply at ``--big`` routes**: ``ConfigModel.apply`` of one changed route in
   this process (the work a worker does per change), median and p99 over 200 changes, next
   to a full compile of the same table; then end to end on one node over etcd (PUT until
   routed), p50/p99 over 50 changes.
3. **Memory per worker** (RSS) at ``--routes`` and ``--big`` routes.

Needs the etcd binary (Debian ``etcd-server``).  Runs from the repository root.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

from tests.etcd_server import EtcdServer
from tests.harness import Gateway, Upstream, free_port

KEY = "bench-admin-key-0123456789abcdef"


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def route_value(i: int, addr: str) -> dict[str, Any]:
    uri = f"/api/v1/r{i}" if i % 2 else f"/svc{i}/*"
    return {"id": f"r{i}", "uri": uri, "upstream": {"type": "roundrobin", "nodes": {addr: 1}}}


def load_routes(etcd: EtcdServer, n: int, addr: str) -> None:
    """Write n routes straight into etcd, 128 per transaction (etcd's default limit)."""
    t0 = time.perf_counter()
    for start in range(0, n, 128):
        ops = [{"request_put": {"key": b64(f"/apisix/routes/r{i}"),
                                "value": b64(json.dumps(route_value(i, addr)))}}
               for i in range(start, min(n, start + 128))]
        etcd.call("/v3/kv/txn", {"success": ops}, timeout=30)
    print(f"  loaded {n} routes into etcd in {time.perf_counter() - t0:.1f} s", flush=True)


def node_cfg(etcd: EtcdServer, admin_port: int | None, workers: int) -> dict[str, Any]:
    dep: dict[str, Any] = {"config_provider": "etcd",
                           "etcd": {"host": [etcd.url], "prefix": "/apisix", "timeout": 10}}
    node: dict[str, Any] = {"deployment": dep,
                            "nginx_config": {"error_log_level": "info",
                                             "http": {"enable_access_log": False}}}
    if admin_port:
        node["pylon"] = {"enable_admin": True}
        dep["admin"] = {"admin_listen": {"ip": "127.0.0.1", "port": admin_port},
                        "admin_key": [{"name": "bench", "key": KEY}], "audit_log": None}
    return node


def start_node(tmp: str, etcd: EtcdServer, admin_port: int | None, workers: int,
               timeout: float = 300) -> Gateway:
    gw = Gateway(tmp, {}, workers=workers, node=node_cfg(etcd, admin_port, workers))
    gw.start(wait=False)
    gw.wait_ready(timeout)
    return gw


class Poller:
    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def status(self, path: str) -> int:
        try:
            self.conn.request("GET", path)
            r = self.conn.getresponse()
            r.read()
            return r.status
        except (OSError, http.client.HTTPException):
            self.conn.close()
            return 0


def put_route(admin: http.client.HTTPConnection, rid: str, uri: str, addr: str) -> None:
    body = json.dumps({"uri": uri, "upstream": {"nodes": {addr: 1}}})
    admin.request("PUT", f"/apisix/admin/routes/{rid}", body=body,
                  headers={"X-API-KEY": KEY, "Content-Type": "application/json"})
    r = admin.getresponse()
    r.read()
    if r.status not in (200, 201):
        raise RuntimeError(f"PUT {rid}: {r.status}")


def until_routed(pollers: list[Poller], path: str, timeout: float = 10.0) -> None:
    deadline = time.perf_counter() + timeout
    pending = list(pollers)
    while pending:
        pending = [p for p in pending if p.status(path) != 200]
        if time.perf_counter() > deadline:
            raise TimeoutError(path)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def fmt(ms: list[float]) -> str:
    return (f"p50 {pct(ms, 50):.1f} ms  p90 {pct(ms, 90):.1f} ms  p99 {pct(ms, 99):.1f} ms  "
            f"max {max(ms):.1f} ms  (n={len(ms)})")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def propagation(n_routes: int, changes: int, up: Upstream) -> None:
    print(f"\n== two nodes + etcd, {n_routes} routes: PUT on A until A and B route it ==")
    with EtcdServer() as etcd, tempfile.TemporaryDirectory() as ta, \
            tempfile.TemporaryDirectory() as tb:
        load_routes(etcd, n_routes, up.addr)
        pa = free_port()
        a = start_node(ta, etcd, pa, workers=2)
        b = start_node(tb, etcd, None, workers=2)
        try:
            admin = http.client.HTTPConnection("127.0.0.1", pa, timeout=10)
            pollers = [Poller(a.port), Poller(b.port)]
            times = []
            for i in range(changes):
                t0 = time.perf_counter()
                put_route(admin, f"chg{i}", f"/chg{i}", up.addr)
                until_routed(pollers, f"/chg{i}")
                times.append((time.perf_counter() - t0) * 1000)
            print("  " + fmt(times))
            print(f"  target p99 < 100 ms: {'met' if pct(times, 99) < 100 else 'NOT met'}")
            for name, gw in (("A", a), ("B", b)):
                print(f"  node {name} worker RSS at {n_routes} routes: " + ", ".join(
                    f"{rss_mib(p):.0f} MiB" for p in gw.worker_pids()))
        finally:
            a.stop()
            b.stop()


def apply_in_process(n: int) -> None:
    from pylon.config.compiler import ConfigModel
    print(f"\n== ConfigModel at {n} routes (the work of one worker) ==")
    doc = {"routes": [route_value(i, "127.0.0.1:80") for i in range(n)]}
    model = ConfigModel()
    t0 = time.perf_counter()
    model.load(doc)
    full = time.perf_counter() - t0
    times = []
    for i in range(200):
        v = route_value(i, "127.0.0.1:81")
        v["uri"] = f"/moved{i}/*"
        t = time.perf_counter()
        model.apply([(f"routes/r{i}", v)], [])
        times.append((time.perf_counter() - t) * 1000)
    print(f"  full compile {full * 1000:.0f} ms; one change: median "
          f"{statistics.median(times):.2f} ms, p99 {pct(times, 99):.2f} ms, "
          f"max {max(times):.2f} ms")


def big_end_to_end(n: int, up: Upstream) -> None:
    print(f"\n== one node + etcd, {n} routes: PUT until routed ==")
    with EtcdServer() as etcd, tempfile.TemporaryDirectory() as t:
        load_routes(etcd, n, up.addr)
        pa = free_port()
        t0 = time.perf_counter()
        gw = start_node(t, etcd, pa, workers=2)
        print(f"  node started (etcd list + compile, 2 workers) in "
              f"{time.perf_counter() - t0:.1f} s")
        try:
            admin = http.client.HTTPConnection("127.0.0.1", pa, timeout=30)
            poller = Poller(gw.port)
            times = []
            for i in range(50):
                t1 = time.perf_counter()
                put_route(admin, f"chg{i}", f"/chg{i}", up.addr)
                until_routed([poller], f"/chg{i}")
                times.append((time.perf_counter() - t1) * 1000)
            print("  " + fmt(times))
            print(f"  target < 50 ms: {'met' if pct(times, 50) < 50 else 'NOT met'} (p50)")
            print(f"  worker RSS at {n} routes: " + ", ".join(
                f"{rss_mib(p):.0f} MiB" for p in gw.worker_pids()))
            applied = [ln for ln in gw.log().splitlines() if "(1 put, 0 deleted)" in ln]
            ms = [float(ln.rsplit(", ", 1)[1].split()[0]) for ln in applied]
            if ms:
                print(f"  worker-side apply of one change (from the workers' log): median "
                      f"{statistics.median(ms):.2f} ms, max {max(ms):.2f} ms")
        finally:
            gw.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--routes", type=int, default=10_000)
    ap.add_argument("--changes", type=int, default=200)
    ap.add_argument("--big", type=int, default=100_000)
    ap.add_argument("--only", choices=("propagation", "apply", "big"), default=None)
    args = ap.parse_args()
    up = Upstream("bench")
    try:
        if args.only in (None, "propagation"):
            propagation(args.routes, args.changes, up)
        if args.only in (None, "apply"):
            apply_in_process(args.big)
        if args.only in (None, "big"):
            big_end_to_end(args.big, up)
    finally:
        up.close()


if __name__ == "__main__":
    main()
