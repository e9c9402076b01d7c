#!/usr/bin/env python3
"""The stream proxy's figures beside nginx's stream module and HAProxy, in the same run
(docs/stream.md, Figures).  Not part of the test suite.

    python bench/stream_proxy.py [--mib 512] [--seconds 5] [--concurrency 16]
        [--only pylon,nginx,haproxy]

Each proxy runs with one worker (nginx ``worker_processes 1``, HAProxy ``nbthread 1``,
Pylon ``workers: 1``) on 127.0.0.1 in front of the same origin (a separate asyncio process:
a sink that counts what it gets, and an echo).  Measured per proxy:

* **throughput**: one connection sends ``--mib`` MiB to the sink through the proxy (256 KiB
  writes), the sink answers the count at EOF; bytes/s, and the proxy processes' CPU time
  (utime + stime of every process of the proxy, from /proc) per MiB;
* **new connections/s**: ``--concurrency`` clients for ``--seconds`` s, each connection
  sends one byte to the echo, reads it back and closes; with the proxy's CPU per 1000.

The client is Python (asyncio): for connections/s it is the limit long before nginx or
HAProxy is, so their figure says mostly what the client manages; the CPU columns are the
comparison that holds.  nginx needs ``libnginx-mod-stream``, HAProxy ``haproxy``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import ROOT, children, free_port, stop_group

CHUNK = 256 * 1024
NGINX_STREAM = "/usr/lib/nginx/modules/ngx_stream_module.so"


# ------------------------------------------------------------------------ origin process
async def _origin(sink_port: int, echo_port: int) -> None:
    async def sink(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        n = 0
        while data := await r.read(1 << 20):
            n += len(data)
        w.write(n.to_bytes(8, "big"))
        await w.drain()
        w.close()

    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while data := await r.read(65536):
            w.write(data)
        w.close()

    s1 = await asyncio.start_server(sink, "127.0.0.1", sink_port, backlog=4096)
    s2 = await asyncio.start_server(echo, "127.0.0.1", echo_port, backlog=4096)
    async with s1, s2:
        await asyncio.Event().wait()


# ------------------------------------------------------------------------ proxies
class Proxy:
    name = ""

    def __init__(self, sink: int, echo: int) -> None:
        self.sink_port, self.echo_port = free_port(), free_port()
        self.tmp = tempfile.mkdtemp(prefix=f"stream-bench-{self.name}-")
        self.proc = subprocess.Popen(self.argv(sink, echo), cwd=ROOT,
                                     stdout=open(os.path.join(self.tmp, "out.log"), "wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_port(self.sink_port, self.proc)
        wait_port(self.echo_port, self.proc)

    def argv(self, sink: int, echo: int) -> list[str]:
        raise NotImplementedError

    def cpu(self) -> float:
        """CPU seconds used so far by the proxy's processes."""
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for pid in [self.proc.pid, *children(self.proc.pid)]:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
            except OSError:
                pass
        return total

    def stop(self) -> None:
        stop_group(self.proc)
        shutil.rmtree(self.tmp, ignore_errors=True)


class Pylon(Proxy):
    name = "pylon"

    def argv(self, sink: int, echo: int) -> list[str]:
        os.makedirs(os.path.join(self.tmp, "conf"))
        node = {"pylon": {"node_listen": [{"ip": "127.0.0.1", "port": free_port()}],
                          "workers": 1, "enable_admin": False, "enable_control": False,
                          "proxy_mode": "stream", "stream_proxy": {"tcp": [
                              f"127.0.0.1:{self.sink_port}", f"127.0.0.1:{self.echo_port}"]}},
                "deployment": {"standalone_file": "conf/pylon.json"},
                "nginx_config": {"error_log_level": "warn"}}
        doc = {"stream_routes": [
            {"id": "1", "server_port": self.sink_port, "upstream": {
                "type": "roundrobin", "nodes": {f"127.0.0.1:{sink}": 1}}},
            {"id": "2", "server_port": self.echo_port, "upstream": {
                "type": "roundrobin", "nodes": {f"127.0.0.1:{echo}": 1}}}]}
        with open(os.path.join(self.tmp, "conf", "config.yaml"), "w") as f:
            json.dump(node, f)
        with open(os.path.join(self.tmp, "conf", "pylon.json"), "w") as f:
            json.dump(doc, f)
        return [sys.executable, "-m", "pylon.cli", "start", "-p", self.tmp]


class Nginx(Proxy):
    name = "nginx"

    def argv(self, sink: int, echo: int) -> list[str]:
        conf = os.path.join(self.tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""load_module {NGINX_STREAM};
worker_processes 1;
pid {self.tmp}/nginx.pid;
error_log {self.tmp}/error.log warn;
events {{ worker_connections 8192; }}
stream {{
    proxy_half_close on;
    server {{ listen 127.0.0.1:{self.sink_port} backlog=4096; proxy_pass 127.0.0.1:{sink}; }}
    server {{ listen 127.0.0.1:{self.echo_port} backlog=4096; proxy_pass 127.0.0.1:{echo}; }}
}}
""")
        return ["nginx", "-p", self.tmp, "-c", conf, "-g", "daemon off;"]


class Haproxy(Proxy):
    name = "haproxy"

    def argv(self, sink: int, echo: int) -> list[str]:
        conf = os.path.join(self.tmp, "haproxy.cfg")
        with open(conf, "w") as f:
            f.write(f"""global
    nbthread 1
    maxconn 8192
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
listen sink
    bind 127.0.0.1:{self.sink_port}
    server s 127.0.0.1:{sink}
listen echo
    bind 127.0.0.1:{self.echo_port}
    server e 127.0.0.1:{echo}
""")
        return ["haproxy", "-db", "-f", conf]


def wait_port(port: int, proc: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"proxy exited ({proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"port {port} never opened") from None
            time.sleep(0.1)


# ------------------------------------------------------------------------ measurements
def throughput(p: Proxy, mib: int) -> tuple[float, float]:
    """(MiB/s, proxy CPU ms per MiB) for ``mib`` MiB on one connection."""
    block = b"\x5a" * CHUNK
    total = mib << 20
    c0 = p.cpu()
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", p.sink_port), timeout=60) as s:
        for _ in range(total // CHUNK):
            s.sendall(block)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while len(got) < 8:
            part = s.recv(8)
            if not part:
                break
            got += part
    elapsed = time.perf_counter() - t0
    cpu = p.cpu() - c0
    if int.from_bytes(got, "big") != total:
        raise SystemExit(f"{p.name}: the sink got {int.from_bytes(got, 'big')} of {total}")
    return mib / elapsed, cpu * 1000 / mib


async def _conns(port: int, seconds: float, concurrency: int) -> int:
    done = 0
    stop = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"x")
            await r.readexactly(1)
            w.close()
            await w.wait_closed()
            done += 1

    await asyncio.gather(*(one() for _ in range(concurrency)))
    return done


def connections(p: Proxy, seconds: float, concurrency: int) -> tuple[float, float]:
    """(new connections/s, proxy CPU ms per 1000 connections)."""
    c0 = p.cpu()
    t0 = time.perf_counter()
    n = asyncio.run(_conns(p.echo_port, seconds, concurrency))
    elapsed = time.perf_counter() - t0
    cpu = p.cpu() - c0
    return n / elapsed, cpu * 1000 / n * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=512)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--only", default="pylon,nginx,haproxy")
    ap.add_argument("--origin", nargs=2, type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.origin:
        asyncio.run(_origin(*a.origin))
        return
    sink, echo = free_port(), free_port()
    origin = subprocess.Popen([sys.executable, __file__, "--origin", str(sink), str(echo)],
                              start_new_session=True)
    try:
        wait_port(sink, origin)
        wait_port(echo, origin)
        kinds = {"pylon": Pylon, "nginx": Nginx, "haproxy": Haproxy}
        print(f"{'proxy':8} {'MiB/s':>8} {'CPU ms/MiB':>11} {'conn/s':>8} "
              f"{'CPU ms/1k conn':>15}")
        for name in a.only.split(","):
            if name == "nginx" and not (shutil.which("nginx") and
                                        os.path.exists(NGINX_STREAM)):
                print(f"{name:8} skipped (nginx / libnginx-mod-stream not installed)")
                continue
            if name == "haproxy" and not shutil.which("haproxy"):
                print(f"{name:8} skipped (haproxy not installed)")
                continue
            p = kinds[name](sink, echo)
            try:
                throughput(p, 16)                              # warm-up
                mibs, cpu_mib = throughput(p, a.mib)
                cps, cpu_k = connections(p, a.seconds, a.concurrency)
                print(f"{name:8} {mibs:8.0f} {cpu_mib:11.2f} {cps:8.0f} {cpu_k:15.1f}",
                      flush=True)
            finally:
                p.stop()
    finally:
        stop_group(origin)


if __name__ == "__main__":
    main()
