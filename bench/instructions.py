#!/usr/bin/env python3
"""Instructions per request of the proxy's hot path, counted by callgrind: deterministic, so
a change's effect shows on a machine busy with other work (CPU-time figures move ±30 % there).

``bench/hotpath.py``'s in-memory request/response loop runs under ``valgrind
--tool=callgrind`` twice, with ``-n`` and ``-n + 5000`` requests; the difference over 5000 is
what one request executes (start-up and warm-up cancel out).  Instructions are not time
(cache misses, branch mispredictions), but a change that removes work shows here first.

    python bench/instructions.py [--plugin key-auth] [--access-log]   # ~1.5 min per figure
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
EXTRA = 5000


def _child(n: int, plugin: str | None, access_log: str | None) -> None:
    sys.path.insert(0, HERE)
    import uvloop
    from hotpath import REQ, run
    uvloop.run(run(n, 1, False, REQ, plugin, access_log))


def count(n: int, plugin: str | None, access_log: bool) -> int:
    with tempfile.TemporaryDirectory() as d:
        cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
               sys.executable, os.path.abspath(__file__), "--child", str(n)]
        if plugin:
            cmd += ["--plugin", plugin]
        if access_log:
            cmd += ["--log-path", os.path.join(d, "access.log")]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=True)
    m = re.search(r"Collected : (\d+)", out.stderr)
    if not m:
        raise SystemExit(f"callgrind printed no total:\n{out.stderr[-2000:]}")
    return int(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--plugin", help="as bench/hotpath.py --plugin")
    ap.add_argument("--access-log", action="store_true", help="the default format to a file")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--log-path", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child is not None:
        _child(a.child, a.plugin, a.log_path)
        return
    small = count(a.n, a.plugin, a.access_log)
    big = count(a.n + EXTRA, a.plugin, a.access_log)
    what = (a.plugin or "plain route") + (", access log on" if a.access_log else "")
    print(f"{what}: {(big - small) / EXTRA:,.0f} instructions per request")


if __name__ == "__main__":
    main()
