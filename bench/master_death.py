"""Kill -9 of the master under load, then ``pylon start`` again after a restart delay (as
systemd's ``Restart=always`` / ``RestartSec=`` would): requests sent, failed, and how long
the port refused connections.  Figures in docs/reliability.md.

    python bench/master_death.py [--runs 3] [--threads 4] [--restart-delay 0.1]

The tree measured is the ``pylon`` package the started processes import (set PYTHONPATH
to measure another checkout; run from outside the repository then)."""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.harness import Gateway, Upstream, route_doc


def run_once(threads: int, delay: float, after: float) -> dict[str, float]:
    up = Upstream("u")
    tmp = tempfile.mkdtemp(prefix="pylon-master-death-")
    gw = Gateway(tmp, route_doc([up]), workers=2,
                 node={"nginx_config": {"worker_shutdown_timeout": "3s"}})
    gw.start()
    pgids = [gw.proc.pid]
    stop = threading.Event()
    lock = threading.Lock()
    ok: list[float] = []
    failed: list[float] = []

    def loop() -> None:
        while not stop.is_set():
            c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
            try:
                c.request("GET", "/x")
                r = c.getresponse()
                r.read()
                good = r.status == 200
            except OSError:
                good = False
            finally:
                c.close()
            with lock:
                (ok if good else failed).append(time.monotonic())
            if not good:
                time.sleep(0.005)            # a refused port answers at once: do not spin

    ts = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    try:
        for t in ts:
            t.start()
        time.sleep(1.0)
        gw.proc.send_signal(signal.SIGKILL)
        gw.proc.wait(5)
        t_kill = time.monotonic()
        time.sleep(delay)
        gw.start(wait=False)
        pgids.append(gw.proc.pid)
        gw.wait_ready(30)
        time.sleep(after)
        stop.set()
        for t in ts:
            t.join(10)
    finally:
        for g in pgids:
            try:
                os.killpg(g, signal.SIGKILL)
            except OSError:
                pass
        up.close()
    window = (max(failed) - min(failed)) if failed else 0.0
    return {"sent": len(ok) + len(failed), "failed": len(failed),
            "refused_s": window,
            "first_fail_after_kill_s": (min(failed) - t_kill) if failed else -1.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--restart-delay", type=float, default=0.1)
    ap.add_argument("--after", type=float, default=5.0,
                    help="seconds of load after the new master is up (orphans drain)")
    a = ap.parse_args()
    for i in range(a.runs):
        r = run_once(a.threads, a.restart_delay, a.after)
        first = r["first_fail_after_kill_s"]
        print(f"run {i + 1}: sent {r['sent']}, failed {r['failed']}, port refused "
              f"{r['refused_s']:.2f} s" + (f" (first failure {first:.2f} s after the kill)"
                                           if first >= 0 else ""), flush=True)


if __name__ == "__main__":
    main()
