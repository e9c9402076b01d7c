#!/usr/bin/env python3
"""How long a node takes to load N routes, and what a worker holds in memory.

    python bench/load_routes.py [--routes 100000] [--format json|yaml]

Starts ``pylon start`` (one worker) on a config of N routes (the same mix as pylon_target.py),
and reports: time from exec to the first proxied answer, the compile time each process logged,
worker and master RSS, and the time for one live change (a route added to the file) to serve.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from pylon_target import routes_doc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(port: int, path: str, host: str = "x") -> int:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        c.request("GET", path, headers={"Host": host})
        r = c.getresponse()
        r.read()
        return r.status
    except OSError:
        return 0


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--routes", type=int, default=100000)
    ap.add_argument("--format", choices=("json", "yaml"), default="json")
    a = ap.parse_args()
    prefix = tempfile.mkdtemp(prefix="pylon-load-")
    os.makedirs(os.path.join(prefix, "conf"))
    port = free_port()
    doc = routes_doc("127.0.0.1:9", a.routes + 1)   # port 9: nothing listens → 502 = routed
    doc["routes"].pop()                             # no catch-all: unknown paths get 404
    name = f"conf/pylon.{a.format}"
    path = os.path.join(prefix, name)
    with open(path, "w") as f:
        if a.format == "json":
            json.dump(doc, f)
        else:
            import yaml
            yaml.safe_dump(doc, f, sort_keys=False)
    with open(os.path.join(prefix, "conf", "config.yaml"), "w") as f:
        json.dump({"pylon": {"node_listen": [{"ip": "127.0.0.1", "port": port}], "workers": 1,
                             "enable_admin": False},
                   "deployment": {"standalone_file": name},
                   "nginx_config": {"error_log_level": "info",
                                    "http": {"enable_access_log": False}}}, f)
    log = open(os.path.join(prefix, "stderr.log"), "w+")
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "pylon.cli", "start", "-p", prefix],
                            stdout=log, stderr=log, start_new_session=True)
    try:
        while status(port, "/api/v1/r0") != 502:
            if proc.poll() is not None or time.monotonic() - t0 > 120:
                raise SystemExit("pylon did not start:\n" + open(log.name).read())
            time.sleep(0.02)
        ready = time.monotonic() - t0
        workers = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)],
                                                  capture_output=True, text=True).stdout.split()]
        w_rss = max(rss_kib(p) for p in workers) / 1024
        m_rss = rss_kib(proc.pid) / 1024
        # one live change: add a route, time until it answers
        doc["routes"].insert(0, {"id": "live", "uri": "/live-change", "upstream_id": "u"})
        t1 = time.monotonic()
        with open(path + ".tmp", "w") as f:
            json.dump(doc, f) if a.format == "json" else __import__("yaml").safe_dump(doc, f)
        os.replace(path + ".tmp", path)
        while status(port, "/live-change") != 502 and time.monotonic() - t1 < 60:
            time.sleep(0.01)
        change = time.monotonic() - t1
        text = open(log.name).read()
        compiled = re.findall(r"revision 1 live: \d+ routes, \d+ rejected, (\d+) ms", text)
        print(f"routes: {a.routes} ({a.format})")
        print(f"start to first proxied answer: {ready:.2f} s "
              f"(worker compile {compiled[0] if compiled else '?'} ms)")
        print(f"worker RSS: {w_rss:.0f} MiB, master RSS: {m_rss:.0f} MiB")
        print(f"one live change (file rewrite) serving after: {change:.2f} s")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
