#!/usr/bin/env python3
"""gRPC unary through the gateway against direct: added latency (p50, p99) and the
gateway's CPU per call.

A real ``grpcio`` server (tests/grpc/echo.proto, compiled here with grpc_tools, in its own
process) and one Pylon worker (h2c listener, ``scheme: grpc`` upstream); the ``grpcio``
client makes ``-n`` sequential unary calls per round, direct and through the gateway, rounds
alternating.  Latency is per call (client clock); the gateway's CPU is its process tree's
user + sys over the gateway rounds ÷ calls.  Then ``h2load`` (``-c 4 -m 50``) for the CPU
per call under concurrency.

    python bench/grpc_unary.py [-n 3000] [--rounds 3]

Kept out of CI.  Figures: docs/grpc.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import grpc
from common import Gateway, cpu_seconds, free_port, median, node_config

from tests.grpc.service import generated

SERVER = """
import sys, time
sys.path.insert(0, {root!r})
from tests.grpc.service import GrpcServer
s = GrpcServer(workers=8)
print(s.port, flush=True)
time.sleep(10**6)
"""


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p * len(s)))]


def calls(port: int, n: int, pb2: Any, pb2_grpc: Any) -> list[float]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = pb2_grpc.EchoStub(ch)
        msg = pb2.Msg(text="bench", count=1)
        for _ in range(200):                     # warm-up: connections, pools, caches
            stub.Unary(msg, timeout=10)
        out = []
        for _ in range(n):
            t = time.perf_counter()
            stub.Unary(msg, timeout=10)
            out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    pb2, pb2_grpc = generated()
    server = subprocess.Popen([sys.executable, "-c", SERVER.format(root=ROOT)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        sport = int(server.stdout.readline())
        port = free_port()
        node = node_config(port)
        node["pylon"]["node_listen"][0]["enable_http2"] = True
        doc = {"routes": [{"id": "g", "uri": "/echo.Echo/*", "upstream": {
            "scheme": "grpc", "type": "roundrobin", "nodes": {f"127.0.0.1:{sport}": 1}}}]}
        with Gateway(node, doc) as gw:
            deadline = time.monotonic() + 60
            while True:
                try:
                    calls(port, 1, pb2, pb2_grpc)
                    break
                except grpc.RpcError:
                    if time.monotonic() > deadline:
                        raise SystemExit("the gateway did not answer:\n" + gw.log_tail()) from None
                    time.sleep(0.2)
            direct: list[float] = []
            via: list[float] = []
            cpu: list[float] = []
            for _ in range(a.rounds):
                direct += calls(sport, a.n, pb2, pb2_grpc)
                c0 = cpu_seconds(gw.pids())
                via += calls(port, a.n, pb2, pb2_grpc)
                cpu.append((cpu_seconds(gw.pids()) - c0) / (a.n + 200) * 1e6)
            us = 1e6
            print(f"unary, {a.rounds} x {a.n} sequential calls")
            print(f"  direct   p50 {pct(direct, .5) * us:7.0f} µs  p99 "
                  f"{pct(direct, .99) * us:7.0f} µs")
            print(f"  gateway  p50 {pct(via, .5) * us:7.0f} µs  p99 {pct(via, .99) * us:7.0f} µs")
            print(f"  added    p50 {(pct(via, .5) - pct(direct, .5)) * us:7.0f} µs  p99 "
                  f"{(pct(via, .99) - pct(direct, .99)) * us:7.0f} µs")
            print(f"  gateway CPU {median(cpu):.0f} µs/call (sequential)")
            if shutil.which("h2load"):
                msg = pb2.Msg(text="bench", count=1).SerializeToString()
                with tempfile.NamedTemporaryFile(delete=False) as f:
                    f.write(b"\0" + len(msg).to_bytes(4, "big") + msg)
                total = 20000
                c0 = cpu_seconds(gw.pids())
                out = subprocess.run(
                    ["h2load", "-n", str(total), "-c", "4", "-m", "50", "-d", f.name,
                     "-H", "content-type: application/grpc", "-H", "te: trailers",
                     f"http://127.0.0.1:{port}/echo.Echo/Unary"],
                    capture_output=True, text=True, timeout=600, check=False)
                used = cpu_seconds(gw.pids()) - c0
                os.unlink(f.name)
                line = next((ln for ln in out.stdout.splitlines()
                             if ln.startswith("finished in")), out.stdout[-300:])
                print(f"  h2load -c 4 -m 50: {line.strip()}; gateway CPU "
                      f"{used / total * 1e6:.0f} µs/call")
    finally:
        server.kill()
        server.wait(5)


if __name__ == "__main__":
    main()
