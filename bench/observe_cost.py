#!/usr/bin/env python3
"""Cost of observability per request: seed 004's scenario (APISIX benchmarked with
limit-count + prometheus, and + key-auth) beside nginx, in one interleaved run of the shared
harness (../shared/bench/run.py).

    python bench/observe_cost.py [--runs 3] [--duration 8] [--workers 1]

Targets, measured round by round: nginx; Pylon on a plain route; the route with limit-count
(``local``, a limit never reached) + prometheus; the route with limit-count + prometheus +
key-auth.  Every target gets the same ``apikey`` header (nginx and the other routes ignore
it).  Before the run a preflight proves, on a real node with its export server, that the
benchmark requests authenticate as the consumer and that prometheus really counts them
(``apisix_http_status`` grows by exactly the number of requests sent).

Printed: proxy CPU µs/request per target per round, medians, the ratio to nginx (median of
the per-round ratios) against the target (three-plugin route ≤ 1.6× nginx), and the
Python-only hot path (``bench/hotpath.py --plugin ...``, best of three) of the same
scenarios.  When the target is not met, a profile of the three-plugin hot path
(``bench/hotpath.py --plugin limit-count+prometheus+key-auth --profile``) follows: the top
functions by own time, in µs per request.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import (
    HARNESS,
    Gateway,
    family_total,
    free_port,
    harness_summary,
    http_get,
    node_config,
    parse_metrics,
    scrape,
    wait_export,
)
from pylon_target import BENCH_KEY, routes_doc

TARGET_RATIO = 1.6
THREE = "limit-count+prometheus+key-auth"
#: (harness target name, pylon_target --plugin or None)
TARGETS = [("pylon", None),
           ("pylon-limit+prom", "limit-count+prometheus"),
           ("pylon-limit+prom+key", THREE)]
HEADERS = {"apikey": BENCH_KEY}


def preflight(plugin: str, n: int, workers: int) -> str:
    """A real node (echo upstream, export server on a free port): ``n`` benchmark requests
    must pass limit-count, authenticate as "bench" when key-auth is on, and be counted."""
    from pylon.pdk.testing import EchoUpstream
    echo = EchoUpstream()
    export = free_port()
    try:
        with Gateway(node_config(free_port(), workers, export_port=export),
                     routes_doc(echo.addr, 1, plugin)) as gw:
            gw.wait_ready("/", HEADERS, timeout=30)
            wait_export(export)
            before = family_total(parse_metrics(scrape(export)[1]), "apisix_http_status")
            import http.client
            conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
            try:
                for _ in range(n):
                    status, h, _b = http_get("", 0, "/hello", HEADERS, conn=conn)
                    if status != 200 or "x-ratelimit-remaining" not in h:
                        raise SystemExit(f"{plugin}: benchmark request answered {status}, "
                                         f"headers {sorted(h)}")
            finally:
                conn.close()
            if "key-auth" in plugin:
                who = echo.requests[-1]["headers"].get("x-consumer-username")
                if who != "bench":
                    raise SystemExit(f"{plugin}: benchmark requests pass as {who!r}")
            fams = parse_metrics(scrape(export)[1])
            delta = family_total(fams, "apisix_http_status") - before
            if delta != n:
                raise SystemExit(f"{plugin}: apisix_http_status grew by {delta:g} for {n} "
                                 "requests")
            consumers = {s.labels.get("consumer") for f in fams if f.name == "apisix_http_status"
                         for s in f.samples}
    finally:
        echo.close()
    return (f"preflight {plugin}: {n} requests answered 200 with X-RateLimit-* headers"
            + (", authenticated as consumer 'bench'" if "key-auth" in plugin else "")
            + f"; apisix_http_status grew by exactly {n} (consumers in the series: "
            f"{sorted(c or '' for c in consumers)})")


def hotpath(plugin: str | None, n: int, tries: int = 3) -> float:
    """bench/hotpath.py: best of ``tries`` (CPU time, µs/request)."""
    best = float("inf")
    for _ in range(tries):
        cmd = [sys.executable, f"{HERE}/hotpath.py", "-n", str(n)]
        if plugin:
            cmd += ["--plugin", plugin]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                             timeout=600).stdout
        best = min(best, float(re.search(r"hot path: ([\d.]+) µs", out).group(1)))
    return best


_ROW = re.compile(r"^\s*(\d+)(?:/\d+)?\s+([\d.]+)\s+[\d.]+\s+([\d.]+)\s+[\d.]+\s+(.*)$")


def profile(n: int, top: int) -> list[str]:
    """The three-plugin hot path under cProfile: top functions by own time, per request."""
    out = subprocess.run([sys.executable, f"{HERE}/hotpath.py", "--plugin", THREE,
                          "--profile", "-n", str(n)], capture_output=True, text=True,
                         check=True, timeout=900).stdout
    rows = []
    for line in out.splitlines():
        m = _ROW.match(line)
        if m:
            calls, tot, cum, where = m.groups()
            rows.append((float(tot), int(calls), float(cum), where.strip()))
    total = sum(r[0] for r in rows)
    by_file: dict[str, float] = {}
    for tot, _c, _cum, where in rows:
        f = re.sub(r"^.*/(pylon|bench)/", r"\1/", where.split(":", 1)[0])
        by_file[f] = by_file.get(f, 0.0) + tot
    lines = [f"{'own µs/req':>10} {'cum µs/req':>10} {'calls/req':>9}  function"]
    for tot, calls, cum, where in rows[:top]:
        where = re.sub(r"^.*/(pylon|bench)/", r"\1/", where)
        lines.append(f"{tot / n * 1e6:10.2f} {cum / n * 1e6:10.2f} {calls / n:9.2f}  {where}")
    lines.append(f"(the {len(rows)} functions pstats printed: {total / n * 1e6:.1f} µs/req of "
                 "own time, under the profiler's overhead)")
    lines.append("own time of those functions by file: " + ", ".join(
        f"{f} {t / n * 1e6:.1f}" for f, t in sorted(by_file.items(), key=lambda kv: -kv[1])))
    m = re.search(r"hot path: .*", out)
    if m:
        lines.append(m.group(0) + "  [profiled]")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1, help="Pylon workers (all on the "
                    "harness's proxy CPU)")
    ap.add_argument("--harness", default=HARNESS)
    ap.add_argument("--markdown", help="also write the harness's tables here")
    ap.add_argument("--json", help="keep the harness's raw samples here")
    ap.add_argument("--preflight-requests", type=int, default=500)
    ap.add_argument("--hotpath-n", type=int, default=100000)
    ap.add_argument("--profile", choices=("auto", "always", "never"), default="auto",
                    help="profile the three-plugin hot path (auto: when the target is missed)")
    a = ap.parse_args()

    for _name, plugin in TARGETS[1:]:
        print(preflight(plugin, a.preflight_requests, a.workers), flush=True)

    out_json = a.json or tempfile.mktemp(prefix="observe-cost-", suffix=".json")
    target = (f"{sys.executable} {HERE}/pylon_target.py --port {{port}} "
              f"--upstream {{upstream}} --workers {a.workers}")
    cmd = [sys.executable, a.harness, "nginx"]
    for name, plugin in TARGETS:
        cmd += ["--target", f"{name}={target}" + (f" --plugin {plugin}" if plugin else "")]
    cmd += ["--header", f"apikey: {BENCH_KEY}", "--runs", str(a.runs),
            "--duration", str(a.duration), "--warmup", str(a.warmup), "--json", out_json]
    if a.markdown:
        cmd += ["--markdown", a.markdown]
    print("$ " + " ".join(cmd), flush=True)
    rc = subprocess.call(cmd)
    try:
        by, doc = harness_summary(out_json)
    finally:
        if not a.json and os.path.exists(out_json):
            os.unlink(out_json)
    names = ["nginx"] + [n for n, _ in TARGETS]
    rounds = sorted({r for t in by.values() for r in t})
    print("\nproxy CPU µs/request (round by round; ratio = target ÷ nginx of the same round)")
    print("| round | " + " | ".join(names) + " |")
    print("|---|" + "--:|" * len(names))
    for r in rounds:
        cells = []
        base = by.get("nginx", {}).get(r, {}).get("proxy_cpu_us_per_req")
        for n in names:
            v = by.get(n, {}).get(r, {}).get("proxy_cpu_us_per_req")
            if v is None:
                cells.append("–")
            elif n == "nginx" or not base:
                cells.append(f"{v:.1f}")
            else:
                cells.append(f"{v:.1f} ({v / base:.2f}×)")
        print(f"| {r} | " + " | ".join(cells) + " |")
    summary = {row["target"]: row for row in doc.get("summary", {}).get("/hello", [])}
    cells = []
    for n in names:
        row = summary.get(n)
        if row is None:
            cells.append("–")
        elif n == "nginx":
            cells.append(f"{row['proxy_cpu_us_per_req']:.1f}")
        else:
            cells.append(f"{row['proxy_cpu_us_per_req']:.1f} ({row['cpu_ratio']:.2f}×)")
    print("| median | " + " | ".join(cells) + " |")
    rps = " / ".join(f"{n} {summary[n]['rps']:,.0f}" for n in names if n in summary)
    print(f"req/s medians: {rps}")
    three = summary.get("pylon-limit+prom+key")
    met = bool(three and three["cpu_ratio"] <= TARGET_RATIO)
    if three:
        print(f"\ntarget: limit-count + prometheus + key-auth ≤ {TARGET_RATIO}× nginx CPU per "
              f"request -- measured {three['cpu_ratio']:.2f}× (median of per-round ratios): "
              + ("MET" if met else "NOT MET"))
    plain, lp = summary.get("pylon"), summary.get("pylon-limit+prom")
    if plain and lp and three:
        p0 = plain["proxy_cpu_us_per_req"]
        print(f"over the plain route (medians): limit-count+prometheus "
              f"{lp['proxy_cpu_us_per_req'] - p0:+.1f} µs, limit-count+prometheus+key-auth "
              f"{three['proxy_cpu_us_per_req'] - p0:+.1f} µs")

    print("\nhot path, Python only (bench/hotpath.py, best of 3, CPU time, no sockets):")
    base_hp = None
    for label, plugin in [("plain route", None), *[(p, p) for _n, p in TARGETS[1:]]]:
        us = hotpath(plugin, a.hotpath_n)
        if base_hp is None:
            base_hp = us
            print(f"  {label:34s} {us:7.2f} µs/request")
        else:
            print(f"  {label:34s} {us:7.2f} µs/request  (+{us - base_hp:.2f})")

    if a.profile == "always" or (a.profile == "auto" and not met):
        print(f"\nprofile: python bench/hotpath.py --plugin {THREE} --profile "
              f"(top functions by own time)")
        for line in profile(min(a.hotpath_n, 50000), 25):
            print("  " + line)
    return rc


if __name__ == "__main__":
    sys.exit(main())
