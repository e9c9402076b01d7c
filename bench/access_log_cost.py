#!/usr/bin/env python3
"""What the access log costs per request: ``bench/hotpath.py`` with the default format written
to a file against the same with the log off, interleaved rounds in one process (CPU µs, the
median of each and their difference), and the Python calls per request it adds (cProfile,
noise-free).  The figure includes rendering, queueing and the batched ``write``.

    python bench/access_log_cost.py [-n 50000] [--rounds 5] [--real-headers]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import uvloop
from hotpath import REQ, REQ_REAL, run

from pylon.observe.access_log import FLUSH_LINES

WARMUP = 2000       # the requests hotpath.run makes before it measures


def calls_per_request(n: int, req: bytes, access_log: str | None) -> float:
    prof = cProfile.Profile()
    prof.enable()
    uvloop.run(run(n, 1, False, req, None, access_log))
    prof.disable()
    return pstats.Stats(prof).total_calls / (n + WARMUP)  # type: ignore[attr-defined]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=50000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--real-headers", action="store_true",
                    help="a 9-header browser-like request instead of wrk's Host-only one")
    a = ap.parse_args()
    req = REQ_REAL if a.real_headers else REQ
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "access.log")
        on: list[float] = []
        off: list[float] = []
        for _ in range(a.rounds):
            off.append(uvloop.run(run(a.n, 1, False, req, None, None)))
            on.append(uvloop.run(run(a.n, 1, False, req, None, path)))
            os.truncate(path, 0)
        m = 8 * FLUSH_LINES - WARMUP     # whole batches: every line rendered and written
        calls = calls_per_request(m, req, path) - calls_per_request(m, req, None)
    diffs = ", ".join(f"{b - c:.2f}" for b, c in zip(on, off, strict=True))
    print(f"log off {statistics.median(off):.2f} µs/request, on {statistics.median(on):.2f}: "
          f"the access log costs {statistics.median(on) - statistics.median(off):.2f} µs "
          f"(per-round differences {diffs}), {calls:.1f} Python calls per request")


if __name__ == "__main__":
    main()
