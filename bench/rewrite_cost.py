#!/usr/bin/env python3
"""Cost of proxy-rewrite (uri + headers) and response-rewrite per request, beside a plain route
and nginx, in one interleaved run of the shared harness (../shared/bench/run.py).

    python bench/rewrite_cost.py [--runs 3] [--duration 10] [--path /hello]

Targets: ``pylon`` (plain route), ``pylon-proxy-rewrite`` (``regex_uri`` + ``headers.set`` with
a variable + ``headers.remove``), ``pylon-response-rewrite`` (two response headers set, one
with ``$status``: the body streams untouched) and ``pylon-response-rewrite-filters`` (a
global regex replace on the body: the body is buffered and rewritten).  The key figure is
proxy CPU µs per request; the difference from ``pylon`` is the plugin's cost.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import HARNESS

PLUGINS = ("proxy-rewrite", "response-rewrite", "response-rewrite-filters")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--path", default="/hello")
    ap.add_argument("--harness", default=HARNESS)
    ap.add_argument("--markdown", help="write the result table here")
    a = ap.parse_args()
    target = f"{sys.executable} {HERE}/pylon_target.py --port {{port}} --upstream {{upstream}}"
    cmd = [sys.executable, a.harness, "nginx", "--target", f"pylon={target}"]
    for p in PLUGINS:
        cmd += ["--target", f"pylon-{p}={target} --plugin {p}"]
    cmd += ["--runs", str(a.runs), "--duration", str(a.duration), "--path", a.path]
    if a.markdown:
        cmd += ["--markdown", a.markdown]
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
