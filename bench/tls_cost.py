#!/usr/bin/env python3
"""TLS cost beside nginx, same certificate (ECDSA P-256), same machine, rounds interleaved.

    python3 bench/tls_cost.py [--runs 3] [--duration 8] [--json out.json]

Per target (Pylon: one worker, TLS listener with the certificate as an ssl object; nginx:
one worker, ``listen ssl`` with the same files), pinned to CPU 1, with the upstream nginx and
the load on CPU 0 (../shared/bench's layout):

* **new handshakes**: two ``openssl s_time -new`` clients (full handshakes, TLS 1.3, no
  session reuse; s_time sends no SNI, so Pylon finds the object through ``fallback_sni``);
  figure: the target's CPU µs per handshake (Σ utime+stime of its process tree ÷
  handshakes) and its inverse, handshakes/s per core;
* **HTTPS keep-alive**: ``wrk -t1 -c32`` on ``https://localhost:port/hello`` (wrk sends the
  URL's host as SNI; proxied to the upstream);
  figure: the target's CPU µs per request.

Reuses the process and /proc helpers of ../shared/bench/run.py.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.environ.get("PYLON_SHARED_BENCH", os.path.join(ROOT, "..", "..", "shared", "bench"))
if not os.path.isdir(SHARED):
    SHARED = "/work/shared/bench"
sys.path.insert(0, SHARED)

import run as harness  # type: ignore[import-not-found]

UPSTREAM_PORT, TARGET_PORT = 18080, 18443

NGINX_TLS = """worker_processes 1;
daemon off;
pid @RUNDIR@/nginx-tls.pid;
error_log @RUNDIR@/nginx-tls-error.log warn;
events { worker_connections 4096; multi_accept on; }
http {
    access_log off;
    server_tokens off;
    tcp_nodelay on;
    keepalive_timeout 300s;
    keepalive_requests 10000000;
    client_body_temp_path @RUNDIR@/nginx-tls-tmp/body;
    proxy_temp_path       @RUNDIR@/nginx-tls-tmp/proxy;
    fastcgi_temp_path     @RUNDIR@/nginx-tls-tmp/fastcgi;
    uwsgi_temp_path       @RUNDIR@/nginx-tls-tmp/uwsgi;
    scgi_temp_path        @RUNDIR@/nginx-tls-tmp/scgi;
    upstream backend {
        server 127.0.0.1:@UPSTREAM_PORT@;
        keepalive 64;
        keepalive_requests 10000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:@PORT@ ssl backlog=4096;
        ssl_certificate @RUNDIR@/bench.crt;
        ssl_certificate_key @RUNDIR@/bench.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_tickets off;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
"""


def make_cert(rundir: str) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("bench.test"),
                                                        x509.DNSName("localhost")]), False)
            .sign(key, hashes.SHA256()))
    cpem = cert.public_bytes(serialization.Encoding.PEM).decode()
    kpem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()
    for path, text in ((f"{rundir}/bench.crt", cpem), (f"{rundir}/bench.key", kpem)):
        with open(path, "w") as f:
            f.write(text)
    return cpem, kpem


def pylon_prefix(rundir: str, cpem: str, kpem: str) -> str:
    prefix = os.path.join(rundir, "pylon")
    os.makedirs(os.path.join(prefix, "conf"), exist_ok=True)
    node = {
        "pylon": {"node_listen": [{"ip": "127.0.0.1", "port": TARGET_PORT + 1}], "workers": 1,
                  "enable_admin": False,
                  "ssl": {"listen": [{"ip": "127.0.0.1", "port": TARGET_PORT}],
                          "fallback_sni": "bench.test"}},
        "deployment": {"standalone_file": "conf/pylon.json"},
        "nginx_config": {"error_log_level": "warn",
                         "http": {"enable_access_log": False, "keepalive_timeout": "300s"}},
    }
    doc = {"routes": [{"id": "1", "uri": "/*", "upstream": {
        "nodes": {f"127.0.0.1:{UPSTREAM_PORT}": 1},
        "keepalive_pool": {"requests": 100000000, "idle_timeout": 300}}}],
        "ssls": [{"id": "1", "cert": cpem, "key": kpem, "snis": ["bench.test", "localhost"]}]}
    with open(os.path.join(prefix, "conf", "config.yaml"), "w") as f:
        json.dump(node, f)
    with open(os.path.join(prefix, "conf", "pylon.json"), "w") as f:
        json.dump(doc, f)
    return prefix


def https_ready(proc: harness.Proc, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
        r = subprocess.run(["curl", "-sk", "--max-time", "2", "--resolve",
                            f"bench.test:{TARGET_PORT}:127.0.0.1",
                            f"https://bench.test:{TARGET_PORT}/hello"],
                           capture_output=True, text=True, timeout=10, check=False)
        if r.stdout == "hello, world\n":
            return
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name} not ready:\n{proc.log_tail()}")


def handshakes(proc: harness.Proc, seconds: int) -> dict[str, float]:
    pids = proc.pids()
    c0 = harness.cpu_ticks(pids)
    clients = [subprocess.Popen(
        ["taskset", "-c", "0", "openssl", "s_time", "-connect", f"127.0.0.1:{TARGET_PORT}",
         "-new", "-tls1_3", "-time", str(seconds)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [c.communicate(timeout=seconds + 30)[0] for c in clients]
    c1 = harness.cpu_ticks(proc.pids())
    n = 0
    for out in outs:
        m = re.search(r"(\d+) connections in [\d.]+s", out)
        if not m:
            raise RuntimeError("s_time: " + out[-500:])
        n += int(m.group(1))
    us = (c1 - c0) / os.sysconf("SC_CLK_TCK") * 1e6 / max(n, 1)
    return {"handshakes": n, "cpu_us_per_handshake": us, "handshakes_per_core_s": 1e6 / us}


def keepalive(proc: harness.Proc, seconds: int) -> dict[str, float]:
    subprocess.run(["taskset", "-c", "0", "wrk", "-t1", "-c32", "-d2s",
                    f"https://localhost:{TARGET_PORT}/hello"], capture_output=True, check=False)
    c0 = harness.cpu_ticks(proc.pids())
    out = subprocess.run(["taskset", "-c", "0", "wrk", "-t1", "-c32", f"-d{seconds}s",
                          f"https://localhost:{TARGET_PORT}/hello"],
                         capture_output=True, text=True, check=False).stdout
    c1 = harness.cpu_ticks(proc.pids())
    m = re.search(r"(\d+) requests in", out)
    if not m or "Non-2xx" in out or int(m.group(1)) == 0:
        raise RuntimeError("wrk: " + out)
    n = int(m.group(1))
    return {"requests": n, "cpu_us_per_req": (c1 - c0) / os.sysconf("SC_CLK_TCK") * 1e6 / n}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--json")
    a = ap.parse_args()
    rundir = tempfile.mkdtemp(prefix="tlsbench-")
    results: dict[str, list[dict[str, float]]] = {"nginx": [], "pylon": []}
    try:
        os.makedirs(f"{rundir}/www")
        for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.makedirs(f"{rundir}/upstream-tmp/{d}")
            os.makedirs(f"{rundir}/nginx-tls-tmp/{d}")
        harness.render(os.path.join(SHARED, "upstream", "nginx.conf"),
                       f"{rundir}/upstream.conf", {"port": UPSTREAM_PORT, "rundir": rundir})
        with open(f"{rundir}/nginx-tls.tmpl", "w") as f:
            f.write(NGINX_TLS)
        harness.render(f"{rundir}/nginx-tls.tmpl", f"{rundir}/nginx-tls.conf",
                       {"port": TARGET_PORT, "rundir": rundir, "upstream_port": UPSTREAM_PORT})
        cpem, kpem = make_cert(rundir)
        prefix = pylon_prefix(rundir, cpem, kpem)
        up = harness.Proc("upstream", f"nginx -e {rundir}/upstream-error.log -c "
                          f"{rundir}/upstream.conf", 0, os.environ.copy(),
                          f"{rundir}/upstream.log", rundir)
        harness.wait_ready(up, UPSTREAM_PORT, "/hello", 13)
        env = {**os.environ, "PYTHONPATH": ROOT}
        cmds = {"nginx": f"nginx -e {rundir}/nginx-tls-error.log -c {rundir}/nginx-tls.conf",
                "pylon": f"{sys.executable} -m pylon.cli start -p {prefix}"}
        for r in range(a.runs):
            for name, cmd in cmds.items():
                p = harness.Proc(name, cmd, 1, env, f"{rundir}/{name}.log", rundir)
                try:
                    https_ready(p)
                    row = {**handshakes(p, a.duration), **keepalive(p, a.duration)}
                finally:
                    p.stop()
                results[name].append(row)
                harness.log(f"round {r + 1} {name}: " + ", ".join(
                    f"{k}={v:.1f}" for k, v in row.items()))
        up.stop()
    finally:
        harness.stop_all()
        shutil.rmtree(rundir, ignore_errors=True)
    summary = {name: {k: statistics.median(row[k] for row in rows) for k in rows[0]}
               for name, rows in results.items() if rows}
    for name, s in summary.items():
        print(f"{name:6s} handshake {s['cpu_us_per_handshake']:7.1f} µs "
              f"({s['handshakes_per_core_s']:6.0f}/s per core)   "
              f"HTTPS keep-alive {s['cpu_us_per_req']:6.1f} µs/req")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"runs": results, "median": summary}, f, indent=1)


if __name__ == "__main__":
    main()
