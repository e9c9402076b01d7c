#!/usr/bin/env python3
"""Python cost of one proxied request, without sockets: µs per request on the hot path.

Drives a real ``H1Connection`` and a real pooled ``UpstreamConnection`` with in-memory
transports: request bytes in → route → pool → upstream request bytes out; response bytes in →
client response bytes out.  The kernel's share (read/write syscalls, loopback TCP) is not in
this figure; ../shared/bench/run.py measures the whole thing beside nginx.

    python bench/hotpath.py [--routes N] [--profile] [--plugin NAME (see pylon_target.PLUGINS)]
                            [--access-log PATH (the default format, written to PATH)]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time

sys.path.insert(0, __file__.rsplit("/bench/", 1)[0])

from pylon.pdk.testing import MemoryTransport
from pylon.server.worker import Worker

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from pylon_target import PLUGINS

from pylon.settings import load_settings
from pylon.upstream.pool import UpstreamConnection

REQ = b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:18081\r\n\r\n"      # what wrk sends
#: what a browser-ish client sends: 9 headers
REQ_REAL = (b"GET /api/items?page=2 HTTP/1.1\r\nHost: api.example.com\r\n"
            b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0\r\n"
            b"Accept: application/json\r\nAccept-Language: en-US,en;q=0.5\r\n"
            b"Accept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\n"
            b"Cookie: session=abc123; theme=dark\r\nX-Request-Id: 6f1c2a\r\n"
            b"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.x\r\n\r\n")
RESP = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 21 Nov 2026 11:00:00 GMT\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 13\r\nConnection: keep-alive\r\n\r\n"
        b"hello, world\n")


async def run(n: int, routes: int, profile: bool, req: bytes = REQ,
              plugin: str | None = None, access_log: str | None = None) -> float:
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    from pylon_target import BENCH_KEY, BENCH_SECRET, routes_doc

    from pylon.node import Node
    from pylon.pdk.runtime import install
    from pylon.proxy.registry import load
    if plugin and "key-auth" in plugin:
        req = req.replace(b"\r\n\r\n", b"\r\napikey: " + BENCH_KEY.encode() + b"\r\n\r\n")
    elif plugin == "jwt-auth":
        import jwt
        token = jwt.encode({"key": "bench"}, BENCH_SECRET, algorithm="HS256")
        req = req.replace(b"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.x\r\n", b"")
        req = req.replace(b"\r\n\r\n", b"\r\nAuthorization: Bearer " + token.encode() +
                          b"\r\n\r\n")

    loop = asyncio.get_running_loop()
    http = {"enable_access_log": access_log is not None, "access_log": access_log or "off"}
    settings, _ = load_settings({"nginx_config": {"http": http}}, "/tmp", "bench")
    node = Node(settings, load())
    install(node)
    w = Worker(node, loop)
    await w.apply(1, routes_doc("127.0.0.1:18080", routes, plugin))
    from pylon.server.h1 import H1Connection
    conn = H1Connection(w)
    conn.connection_made(MemoryTransport(("127.0.0.1", 40000), ("127.0.0.1", 18081)))
    rt = next(iter(w.holder.current.upstreams.values()))
    pool = next(iter(rt.pools.values()))
    up = UpstreamConnection(pool)
    up.connection_made(MemoryTransport(("127.0.0.1", 18080), ("127.0.0.1", 50000)))
    pool.put(up)
    ct, ut = conn.transport, up.transport

    def one() -> None:
        conn.data_received(req)
        up.data_received(RESP)

    for _ in range(2000):
        one()
    assert ct.out[-1].endswith(b"hello, world\n"), ct.out[-1]
    prof = cProfile.Profile() if profile else None
    if prof:
        prof.enable()
    t0 = time.process_time()     # CPU time: robust against other load on the machine
    for _ in range(n):
        one()
        ct.out.clear()
        ut.out.clear()
    dt = time.process_time() - t0
    if prof:
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    return dt / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--routes", type=int, default=1)
    ap.add_argument("-n", type=int, default=100000)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--plugin", choices=sorted(PLUGINS),
                    help="the route authenticates with this plugin (the request carries "
                         "the credentials)")
    ap.add_argument("--access-log", metavar="PATH",
                    help="log each request in the default format to PATH (default: off)")
    ap.add_argument("--real-headers", action="store_true",
                    help="a 9-header browser-like request instead of wrk's Host-only one")
    a = ap.parse_args()
    import uvloop
    us = uvloop.run(run(a.n, a.routes, a.profile, REQ_REAL if a.real_headers else REQ,
                        a.plugin, a.access_log))
    kind = "9-header request" if a.real_headers else "Host-only request"
    if a.plugin:
        kind += f", {a.plugin}"
    if a.access_log:
        kind += ", access log on"
    print(f"hot path: {us:.2f} µs/request (Python only, {a.routes} routes, {kind})")


if __name__ == "__main__":
    main()
