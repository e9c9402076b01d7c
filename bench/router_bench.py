#!/usr/bin/env python
"""Router micro-benchmark: build time and ns/match with 1 route vs 100k routes.

    python bench/router_bench.py [--routes 100000] [--number 100000] [--kind all|<kind>]
    python bench/router_bench.py --update [--ops 1000] [--routes 100000] [--kind ...]

The big table mixes exact uris (/api/v1/r{i}), prefix uris (/svc{i}/*), routes
bound to hosts (exact and wildcard), a few with methods + vars and, for the
parameter kind, parameter uris.  Each scenario is timed against a 1-route
router and against the big one (both contain the target route), so the ratio
shows whether per-request cost stays flat as the table grows.  Timings are the
best of several timeit repeats minus the empty-lambda loop overhead.

``--update`` times ``Router.update`` on the big table instead: ``--ops``
single-route replacements (same uris, then moved uris), adds and removes, each
reported as median / p99 / max ms per call, plus the worst case: adding and
removing a catch-all ``/*``, whose key lies above every first-segment jump
entry and every prefix key.  The table is built, then ``gc.collect()`` +
``gc.freeze()`` as a worker does after loading its config, and gc stays enabled
while updating.  At the end the updated router must answer the match scenarios
like a fresh build of the same routes, and is timed against it.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import random
import statistics
import sys
import time
import timeit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pylon.routing import KINDS, Router, RouteSpec


class Vars:
    __slots__ = ("d",)

    def __init__(self, d: dict[str, str]) -> None:
        self.d = d

    def var(self, name: str) -> str | None:
        return self.d.get(name)


def big_routes(n: int) -> list[RouteSpec]:
    routes: list[RouteSpec] = []
    for i in range(n):
        m = i % 10
        if m < 5:  # 50% exact
            routes.append(RouteSpec(f"e{i}", f"exact-{i}", (f"/api/v1/r{i}",)))
        elif m < 8:  # 30% prefix
            routes.append(RouteSpec(f"p{i}", f"prefix-{i}", (f"/svc{i}/*",)))
        elif m == 8:  # 10% host-bound, half exact host, half wildcard
            host = f"h{i}.example.com" if i % 20 == 8 else f"*.t{i}.example.com"
            routes.append(RouteSpec(f"h{i}", f"host-{i}", (f"/api/v1/r{i}", f"/svc{i}/*"),
                                    hosts=(host,)))
        elif i % 20 == 9:  # 5% methods + vars
            routes.append(RouteSpec(f"c{i}", f"cond-{i}", (f"/api/v1/r{i}",),
                                    methods=frozenset({"GET", "POST"}),
                                    vars=[["arg_v", "==", "1"]]))
        else:  # 5% parameter uris (literal in the non-parameter kinds)
            routes.append(RouteSpec(f"u{i}", f"param-{i}", (f"/u{i}/:id/*rest",)))
    return routes


def scenarios(n: int, kind: str) -> list[tuple[str, list[RouteSpec], tuple]]:
    """(name, one-route table, match args); the big table contains the same route."""
    k = n // 2 // 20 * 20  # a route index in the middle of the table
    src = Vars({"arg_v": "1"})
    out = [
        ("exact", [RouteSpec(f"e{k}", "x", (f"/api/v1/r{k}",))],
         ("GET", "api.local", f"/api/v1/r{k}", src, "10.0.0.1")),
        ("prefix", [RouteSpec(f"p{k + 5}", "x", (f"/svc{k + 5}/*",))],
         ("GET", "api.local", f"/svc{k + 5}/users/42", src, "10.0.0.1")),
        ("exact host + prefix", [RouteSpec(f"h{k + 8}", "x", (f"/svc{k + 8}/*",),
                                           hosts=(f"h{k + 8}.example.com",))],
         ("GET", f"h{k + 8}.example.com", f"/svc{k + 8}/a", src, "10.0.0.1")),
        ("wildcard host + exact", [RouteSpec(f"h{k + 18}", "x", (f"/api/v1/r{k + 18}",),
                                             hosts=(f"*.t{k + 18}.example.com",))],
         ("GET", f"a.t{k + 18}.example.com", f"/api/v1/r{k + 18}", src, "10.0.0.1")),
        ("exact + methods + vars", [RouteSpec(f"c{k + 9}", "x", (f"/api/v1/r{k + 9}",),
                                              methods=frozenset({"GET", "POST"}),
                                              vars=[["arg_v", "==", "1"]])],
         ("GET", "api.local", f"/api/v1/r{k + 9}", src, "10.0.0.1")),
    ]
    if kind == "radixtree_uri_with_parameter":
        spec = RouteSpec(f"u{k + 19}", "x", (f"/u{k + 19}/:id/*rest",))
        out.append(("params /u:id/*rest", [spec],
                    ("GET", "api.local", f"/u{k + 19}/42/a/b", src, "10.0.0.1")))
    out.append(("miss (404)", [RouteSpec(f"e{k}", "x", (f"/api/v1/r{k}",))],
                ("GET", "api.local", "/nope/at/all", src, "10.0.0.1")))
    return out


def ns_per_call(router: Router, args: tuple, number: int) -> float:
    match = router.match
    best = min(timeit.Timer(lambda: match(*args)).repeat(repeat=7, number=number))
    empty = min(timeit.Timer(lambda: None).repeat(repeat=7, number=number))
    return (best - empty) / number * 1e9


def timed_build(routes: list[RouteSpec], kind: str, repeat: int = 1) -> tuple[Router, float]:
    best = float("inf")
    router = None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        router, errors = Router.build(routes, kind)
        best = min(best, time.perf_counter() - t0)
        assert not errors, errors[:3]
    assert router is not None
    return router, best


def calibrate() -> float:
    """ns per iteration of a trivial Python loop: a machine-speed yardstick."""
    def loop() -> None:
        s = 0
        for i in range(1_000_000):
            s += i
    return min(timeit.repeat(loop, number=1, repeat=5)) * 1e3


def run(kind: str, n: int, number: int) -> None:
    routes = big_routes(n)
    big, big_dt = timed_build(routes, kind, repeat=3)
    print(f"\n== {kind}: build {n} routes {big_dt * 1000:.0f} ms "
          f"({big_dt / n * 1e6:.2f} us/route)")
    print(f"{'scenario':26} {'1 route':>9} {f'{n} routes':>14} {'ratio':>6}")
    for name, one_routes, args in scenarios(n, kind):
        one, _ = timed_build(one_routes, kind)
        r1, rn = one.match(*args), big.match(*args)
        if name.startswith("miss"):
            assert r1 is None and rn is None, (name, r1, rn)
        else:
            assert r1 is not None and rn is not None and r1.route_id == rn.route_id, (name, r1, rn)
        t1 = ns_per_call(one, args, number)
        tn = ns_per_call(big, args, number)
        print(f"{name:26} {t1:7.0f}ns {tn:12.0f}ns {tn / t1:6.2f}")


def moved(spec: RouteSpec) -> RouteSpec:
    """The same route on different keys (exact and prefix keys both change)."""
    uris = tuple(u.replace("/api/v1/", "/api/v2/").replace("/*", "/v2/*") for u in spec.uris)
    return dataclasses.replace(spec, uris=uris, payload=("moved", spec.payload))


def timed_updates(router: Router, batches: list[tuple[list[str], list[RouteSpec]]]) -> list[float]:
    """ms per ``router.update`` call; every batch must be accepted."""
    out = []
    for remove, add in batches:
        t0 = time.perf_counter_ns()
        errors = router.update(remove, add)
        out.append((time.perf_counter_ns() - t0) / 1e6)
        assert not errors, errors
    return out


def report(name: str, ms: list[float]) -> None:
    ms = sorted(ms)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(f"{name:34} {statistics.median(ms):8.3f} {p99:8.3f} {ms[-1]:8.3f}   ({len(ms)} calls)")


def run_update(kind: str, n: int, ops: int, number: int) -> None:
    routes = big_routes(n)
    router, dt = timed_build(routes, kind)
    gc.collect()
    gc.freeze()
    print(f"\n== {kind}: update a {n}-route table (build {dt * 1000:.0f} ms)")
    print(f"{'single-route update':34} {'median':>8} {'p99':>8} {'max':>8}  ms per call")
    rnd = random.Random(0)
    picked = rnd.sample(range(n), ops)
    current = {s.id: s for s in routes}
    same = [dataclasses.replace(routes[i], payload=("new", i)) for i in picked]
    report("replace (same uris)", timed_updates(router, [([], [s]) for s in same]))
    far = [moved(routes[i]) for i in picked]
    report("replace (uris moved)", timed_updates(router, [([], [s]) for s in far]))
    current.update((s.id, s) for s in far)
    fresh = big_routes(n + ops)[n:]
    report("add", timed_updates(router, [([], [s]) for s in fresh]))
    report("remove", timed_updates(router, [([s.id], []) for s in fresh]))
    catch_all = RouteSpec("catch-all", "catch-all", ("/*",))
    adds, removes = [], []
    for _ in range(5):
        adds += timed_updates(router, [([], [catch_all])])
        removes += timed_updates(router, [(["catch-all"], [])])
    report("worst case: add '/*'", adds)
    report("worst case: remove '/*'", removes)
    gc.unfreeze()
    assert len(router) == len(current) and set(router.ids()) == set(current)
    rebuilt, _ = timed_build(list(current.values()), kind)
    print(f"{'match after the updates':26} {'updated':>9} {'rebuilt':>9} {'ratio':>6}")
    for name, _one, args in scenarios(n, kind):
        got, want = router.match(*args), rebuilt.match(*args)
        assert (got and got.route_id) == (want and want.route_id), (name, got, want)
        tu, tr = ns_per_call(router, args, number), ns_per_call(rebuilt, args, number)
        print(f"{name:26} {tu:7.0f}ns {tr:7.0f}ns {tu / tr:6.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--routes", type=int, default=100_000)
    ap.add_argument("--number", type=int, default=100_000)
    ap.add_argument("--kind", default="all", choices=("all",) + KINDS)
    ap.add_argument("--update", action="store_true", help="time Router.update instead of match")
    ap.add_argument("--ops", type=int, default=1000, help="updates per kind of change")
    a = ap.parse_args()
    print(f"python {sys.version.split()[0]}; machine yardstick: "
          f"{calibrate():.0f} ns per `s += i` loop iteration")
    for kind in KINDS if a.kind == "all" else (a.kind,):
        if a.update:
            run_update(kind, a.routes, a.ops, a.number)
        else:
            run(kind, a.routes, a.number)


if __name__ == "__main__":
    main()
