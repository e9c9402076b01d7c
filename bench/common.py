"""Shared pieces of the benchmark scripts: paths, a Pylon node started from a throw-away
prefix, plain HTTP helpers and the shared harness's JSON result.

Used by bench/plugin_cost.py, bench/limit_cost.py, bench/observe_cost.py and
bench/scrape_cost.py.  Every process started here runs in its own session and is stopped
(SIGTERM to the group, SIGKILL after a bound) by ``stop()`` / the context manager.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HARNESS = os.path.join(ROOT, "..", "shared", "bench", "run.py")
for _p in (ROOT, HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def node_config(port: int, workers: int = 1, export_port: int | None = None,
                access_log: bool = False, plugin_attr: dict[str, Any] | None = None
                ) -> dict[str, Any]:
    """A node config listening on 127.0.0.1:port, admin off, access log off; with
    ``export_port`` the Prometheus export server listens there (127.0.0.1)."""
    node: dict[str, Any] = {
        "pylon": {"node_listen": [{"ip": "127.0.0.1", "port": port}], "workers": workers,
                  "enable_admin": False, "enable_control": False},
        "deployment": {"standalone_file": "conf/pylon.json"},
        "nginx_config": {"error_log_level": "warn",
                         "http": {"enable_access_log": access_log,
                                  "keepalive_timeout": "300s"}},
    }
    attr = dict(plugin_attr or {})
    if export_port is not None:
        attr.setdefault("prometheus", {})["export_addr"] = {"ip": "127.0.0.1",
                                                             "port": export_port}
    if attr:
        node["plugin_attr"] = attr
    return node


class Gateway:
    """``python -m pylon.cli start`` on a throw-away prefix (conf/config.yaml + the
    standalone conf/pylon.json), in its own process group; its log in <prefix>/gateway.log."""

    def __init__(self, node: dict[str, Any], doc: dict[str, Any]) -> None:
        self.port = int(node["pylon"]["node_listen"][0]["port"])
        self.prefix = tempfile.mkdtemp(prefix="pylon-bench-")
        os.makedirs(os.path.join(self.prefix, "conf"))
        with open(os.path.join(self.prefix, "conf", "config.yaml"), "w") as f:
            json.dump(node, f)
        with open(os.path.join(self.prefix, "conf", "pylon.json"), "w") as f:
            json.dump(doc, f)
        self.log_path = os.path.join(self.prefix, "gateway.log")
        self._log = open(self.log_path, "wb")
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "pylon.cli", "start", "-p",
                                      self.prefix], cwd=ROOT, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, path: str = "/", headers: dict[str, str] | None = None,
                   timeout: float = 60.0) -> float:
        """Until ``GET path`` gets any HTTP answer; seconds since start."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"the gateway exited ({self.proc.returncode}); log:\n"
                                 + self.log_tail())
            try:
                status, _h, _b = http_get("127.0.0.1", self.port, path, headers, timeout=2)
                return time.monotonic() - self.t_start
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the gateway did not answer within {timeout:.0f} s; "
                                     "log:\n" + self.log_tail()) from None
                time.sleep(0.1)

    def log_tail(self, n: int = 4000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def pids(self) -> list[int]:
        """The master and its workers (children)."""
        return [self.proc.pid, *children(self.proc.pid)]

    def stop(self) -> None:
        stop_group(self.proc)
        self._log.close()
        shutil.rmtree(self.prefix, ignore_errors=True)

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_group(proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    """SIGTERM to the process group, SIGKILL if it is still there after ``timeout``."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:                                    # stragglers of the group (workers)
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the given processes, seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / tick


def http_get(host: str, port: int, path: str, headers: dict[str, str] | None = None,
             timeout: float = 10.0, conn: http.client.HTTPConnection | None = None
             ) -> tuple[int, dict[str, str], bytes]:
    """One GET; (status, lower-cased headers, body).  With ``conn``, on that connection."""
    c = conn or http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        if conn is None:
            c.close()


def harness_summary(path: str) -> tuple[dict[str, dict[int, dict[str, Any]]], dict[str, Any]]:
    """The shared harness's --json output: {target: {round: sample}}, and the document."""
    with open(path) as f:
        doc = json.load(f)
    by: dict[str, dict[int, dict[str, Any]]] = {}
    for s in doc.get("samples", []):
        by.setdefault(s["target"], {})[s["round"]] = s
    return by, doc


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


# ----------------------------------------------------------------------------- Prometheus
EXPORT_URI = "/apisix/prometheus/metrics"


def scrape(port: int, timeout: float = 30.0) -> tuple[float, bytes]:
    """One scrape of the export server on 127.0.0.1:port: (milliseconds, body)."""
    t0 = time.perf_counter()
    status, _h, body = http_get("127.0.0.1", port, EXPORT_URI, timeout=timeout)
    ms = (time.perf_counter() - t0) * 1000
    if status != 200:
        raise SystemExit(f"scrape answered {status}: {body[:200]!r}")
    return ms, body


def parse_metrics(body: bytes) -> list[Any]:
    """The exposition text parsed by prometheus_client (raises on malformed text)."""
    from prometheus_client.parser import text_string_to_metric_families
    return list(text_string_to_metric_families(body.decode()))


def family_total(families: list[Any], name: str) -> float:
    """Sum of a counter family's samples (prometheus_client strips ``_total`` from names)."""
    return sum(s.value for f in families if f.name == name for s in f.samples)


def wait_export(port: int, timeout: float = 30.0) -> None:
    """Until the export server answers (the master starts it beside the workers)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            http_get("127.0.0.1", port, EXPORT_URI, timeout=5)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"no export server on 127.0.0.1:{port} after "
                                 f"{timeout:.0f} s") from None
            time.sleep(0.1)
