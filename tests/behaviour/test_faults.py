"""Fault tests against a real node: origins that reset, hang, stall, send garbage or drop
keep-alive connections at random; etcd and Redis killed (and hung) under load; a worker
killed under load.

Each test prints its figures (``FIGURES <test>: sent=.. ok=.. failed=.. lost=..``; run with
``-s`` to see them); docs/reliability.md ("Faults") lists them with the command.  The
origins are raw sockets (``FaultOrigin``): the test decides every byte and every close.
Everything is bounded: origins give up after ``HOLD`` seconds, clients carry timeouts, load
runs for a fixed time or a fixed number of requests.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.admin.test_admin_gateway import admin, admin_node
from tests.etcd_server import EtcdServer, b64, find_etcd
from tests.harness import Gateway, HTTPReader, Upstream, echo, free_port, rss_bytes
from tests.raw_origin import RawOrigin
from tests.redis_server import RedisServer, find_redis

from .test_processes import alive, wait_workers
from .traffic import Req, Tally, Traffic, constant, status_of

#: the longest an origin handler keeps a connection (a hanging origin is released by then)
HOLD = 8.0
#: the upstream timeouts of the routes that test them (seconds)
TIMEOUT = 1.0
ADMIN_KEY = "faults-admin-key-0123456789abcdef"
BAD_GATEWAY = {"error_msg": "502 Bad Gateway"}
GATEWAY_TIMEOUT = {"error_msg": "504 Gateway Time-out"}


def figures(name: str, tally: Tally, **extra: Any) -> None:
    more = "".join(f" {k}={v}" for k, v in extra.items())
    print(f"\n{tally.line(name)}{more}")


# -- a raw-socket origin -------------------------------------------------------------------------
class FaultOrigin(RawOrigin):
    """``tests/raw_origin.RawOrigin``'s listener, but ``handler(conn, origin)`` owns each
    connection: it decides every byte and every close.  Counts connections and request heads
    (``heads``); ``close()`` releases hanging handlers and shuts every open connection, and a
    handler never outlives ``HOLD`` seconds of silence."""

    def __init__(self, handler: Callable[[socket.socket, FaultOrigin], None]) -> None:
        self.handler = handler
        self.connections = 0
        self.closes = 0               # connections the handler chose to drop
        self.heads: list[bytes] = []
        self.release = threading.Event()
        self._open: set[socket.socket] = set()
        super().__init__()
        self.addr = f"127.0.0.1:{self.port}"

    def _serve(self, c: socket.socket) -> None:
        with self.lock:
            self.connections += 1
            self._open.add(c)
        c.settimeout(HOLD)
        try:
            self.handler(c, self)
        except OSError:
            pass
        finally:
            with self.lock:
                self._open.discard(c)
            c.close()

    def read_head(self, c: socket.socket, buf: bytearray) -> bytes | None:
        """The next request head from ``c`` (bytes after it stay in ``buf``); None at EOF."""
        while b"\r\n\r\n" not in buf:
            data = c.recv(65536)
            if not data:
                return None
            buf += data
        end = buf.index(b"\r\n\r\n") + 4
        head = bytes(buf[:end])
        del buf[:end]
        with self.lock:
            self.heads.append(head)
        return head

    def dropped(self) -> None:
        with self.lock:
            self.closes += 1

    def close(self) -> None:
        self.release.set()
        super().close()
        with self.lock:
            for c in list(self._open):
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)


def reset(c: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), as a crashing process or a middlebox does."""
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def skip_body(c: socket.socket, buf: bytearray, n: int) -> bool:
    while len(buf) < n:
        data = c.recv(65536)
        if not data:
            return False
        buf += data
    del buf[:n]
    return True


# -- origin behaviours ------------------------------------------------------------------------
def reset_after_head(c: socket.socket, o: FaultOrigin) -> None:
    o.read_head(c, bytearray())
    reset(c)


def close_after_head(c: socket.socket, o: FaultOrigin) -> None:
    o.read_head(c, bytearray())
    c.shutdown(socket.SHUT_WR)        # FIN without a byte of answer


def reset_during_upload(c: socket.socket, o: FaultOrigin) -> None:
    o.read_head(c, bytearray())
    c.recv(1000)
    reset(c)


def cut_body(chunked: bool, rst: bool) -> Callable[[socket.socket, FaultOrigin], None]:
    """Answer 200 with some of the body, then close (FIN or RST) mid-body."""
    def handler(c: socket.socket, o: FaultOrigin) -> None:
        o.read_head(c, bytearray())
        if chunked:
            c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"1000\r\n" + b"x" * 4096 + b"\r\n1000\r\n" + b"y" * 1000)
        else:
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 5000)
        time.sleep(0.05)
        if rst:
            reset(c)
        else:
            c.shutdown(socket.SHUT_WR)
    return handler


def hang_before_head(c: socket.socket, o: FaultOrigin) -> None:
    o.read_head(c, bytearray())
    o.release.wait(HOLD)


def stall_mid_body(c: socket.socket, o: FaultOrigin) -> None:
    o.read_head(c, bytearray())
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
    o.release.wait(HOLD)


def never_read(c: socket.socket, o: FaultOrigin) -> None:
    """Take the request head, then read nothing more: the upload fills the buffers."""
    o.read_head(c, bytearray())
    o.release.wait(HOLD)


GARBAGE = {
    "not_http": b"THIS IS NOT HTTP\r\n\r\n",
    "binary": bytes(range(256)),
    "nothing_then_close": b"",
    "http09_body": b"hello world",
    "http2_frame": b"\x00\x00\x12\x04\x00\x00\x00\x00\x00",
    "bad_status_code": b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
    "four_digit_status": b"HTTP/1.1 1000 OK\r\nContent-Length: 0\r\n\r\n",
    "header_without_colon": b"HTTP/1.1 200 OK\r\nBroken header\r\nContent-Length: 0\r\n\r\n",
    "space_in_header_name": b"HTTP/1.1 200 OK\r\nX A: b\r\nContent-Length: 2\r\n\r\nok",
    "nul_in_header_value": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n",
    "content_length_not_a_number": b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
    "negative_content_length": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    "two_content_lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "content_length_and_chunked": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
                                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    # nginx: 'upstream sent unknown "Transfer-Encoding"' -> 502
    "unknown_transfer_encoding": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc",
    "transfer_encoding_gzip_chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked"
                                      b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "http_version_3": b"HTTP/3.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "header_too_large": b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n",
}


def garbage(data: bytes) -> Callable[[socket.socket, FaultOrigin], None]:
    def handler(c: socket.socket, o: FaultOrigin) -> None:
        o.read_head(c, bytearray())
        c.sendall(data)
        time.sleep(0.05)
        c.shutdown(socket.SHUT_WR)
        o.release.wait(0.5)
    return handler


def bad_chunk_mid_body(c: socket.socket, o: FaultOrigin) -> None:
    o.read_head(c, bytearray())
    c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n")
    time.sleep(0.05)
    c.sendall(b"ZZZ\r\nxx\r\n0\r\n\r\n")
    o.release.wait(0.5)


def flaky_keepalive(c: socket.socket, o: FaultOrigin) -> None:
    """Serve keep-alive responses (no ``Connection: close``), and after any of them drop the
    connection at random: at once (FIN), with an RST, a little later, or only when the next
    request has arrived (the idle-timeout race every pooling proxy meets)."""
    rng = random.Random(o.port ^ o.connections)
    buf = bytearray()
    while True:
        head = o.read_head(c, buf)
        if head is None or not skip_body(c, buf, content_length(head)):
            return
        body = b"" if head.startswith(b"HEAD ") else b"ok"
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n" + body)
        r = rng.random()
        if r < 0.45:
            o.dropped()
        if r < 0.15:
            return                                    # FIN right after the answer
        if r < 0.25:
            reset(c)
            return
        if r < 0.35:
            time.sleep(rng.random() * 0.02)
            return
        if r < 0.45:
            o.read_head(c, buf)                       # the next request is never answered
            return


def full_backlog() -> tuple[socket.socket, list[socket.socket]]:
    """A listening socket that never accepts, with its queue full: a connect to it gets no
    SYN-ACK (Linux drops the SYN), i.e. a node that does not answer."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    fillers = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect(srv.getsockname())
        fillers.append(s)
    time.sleep(0.1)
    return srv, fillers


# -- one node for every origin fault ------------------------------------------------------------
ORIGINS: dict[str, Callable[[socket.socket, FaultOrigin], None]] = {
    "reset-after-head": reset_after_head,
    "close-after-head": close_after_head,
    "reset-during-upload": reset_during_upload,
    "cut-cl-fin": cut_body(False, False),
    "cut-cl-rst": cut_body(False, True),
    "cut-chunked-fin": cut_body(True, False),
    "cut-chunked-rst": cut_body(True, True),
    "hang": hang_before_head,
    "stall": stall_mid_body,
    "never-read": never_read,
    "bad-chunk": bad_chunk_mid_body,
    "flaky": flaky_keepalive,
    **{f"garbage-{k}": garbage(v) for k, v in GARBAGE.items()},
}


REDIS_TIMEOUT_MS = 300
FAILED_TO_LIMIT = {"error_msg": "failed to limit count"}


def slow_echo(h: Any, body: bytes) -> None:
    time.sleep(0.03)                  # keeps requests in flight in the worker
    try:
        echo(h, body)
    except OSError:                   # the worker died holding this request
        h.close_connection = True


class Node:
    """One gateway (two workers, Admin API on ``admin_port``) for every fault but etcd's: a
    route per origin fault, the limit-count routes over Redis (when redis-server is
    installed), a slow echo route.  ``routes`` is its standalone document's route list."""

    def __init__(self, gw: Gateway, origins: dict[str, FaultOrigin],
                 redis: RedisServer | None, routes: list[dict[str, Any]],
                 admin_port: int) -> None:
        self.gw = gw
        self.origins = origins
        self.redis = redis
        self.routes = routes
        self.admin_port = admin_port

    def request(self, raw: bytes, timeout: float = 10.0) -> tuple[socket.socket, HTTPReader]:
        s = socket.create_connection(("127.0.0.1", self.gw.port), timeout=timeout)
        s.sendall(raw)
        return s, HTTPReader(s)


def redis_routes(redis: RedisServer, up: Upstream) -> list[dict[str, Any]]:
    conf = {"policy": "redis", "redis_host": "127.0.0.1", "redis_port": redis.port,
            "redis_timeout": REDIS_TIMEOUT_MS, "count": 10_000_000, "time_window": 60}
    ups = {"type": "roundrobin", "nodes": {up.addr: 1}}
    return [{"id": "degrade", "uri": "/degrade", "upstream": ups,
             "plugins": {"limit-count": {**conf, "allow_degradation": True}}},
            {"id": "strict", "uri": "/strict", "upstream": ups,
             "plugins": {"limit-count": conf}}]


@pytest.fixture(scope="module")
def node(tmp_path_factory: Any) -> Iterator[Node]:
    origins = {name: FaultOrigin(h) for name, h in ORIGINS.items()}
    silent, fillers = full_backlog()
    ok, slow = Upstream("ok"), Upstream("slow", behaviour=slow_echo)
    redis = RedisServer().start() if find_redis() is not None else None
    timeouts = {"connect": TIMEOUT, "send": TIMEOUT, "read": TIMEOUT}
    routes = [{"id": name, "uri": f"/{name}", "timeout": timeouts,
               "upstream": {"type": "roundrobin", "nodes": {o.addr: 1}}}
              for name, o in origins.items()]
    routes.append({"id": "no-accept", "uri": "/no-accept", "timeout": timeouts,
                   "upstream": {"type": "roundrobin",
                                "nodes": {f"127.0.0.1:{silent.getsockname()[1]}": 1}}})
    for up in (ok, slow):
        routes.append({"id": up.name, "uri": f"/{up.name}",
                       "upstream": {"type": "roundrobin", "nodes": {up.addr: 1}}})
    if redis is not None:
        routes += redis_routes(redis, ok)
    admin_port = free_port()
    gw = Gateway(str(tmp_path_factory.mktemp("faults")), {"routes": routes}, workers=2,
                 node=admin_node(admin_port, admin_key=[{"key": ADMIN_KEY, "role": "admin"}]))
    try:
        gw.start()
        yield Node(gw, origins, redis, routes, admin_port)
    finally:
        gw.stop()
        for o in origins.values():
            o.close()
        for s in (silent, *fillers):
            s.close()
        for up in (ok, slow):
            up.close()
        if redis is not None:
            redis.close()


def json_is(expected: dict[str, str]) -> Callable[[int, bytes], bool]:
    return lambda _status, body: json.loads(body) == expected


# -- origin resets -------------------------------------------------------------------------------
@pytest.mark.parametrize("origin", ["reset-after-head", "close-after-head"])
def test_origin_dropping_the_connection_before_answering_is_502_for_every_request(node, origin):
    """Nothing was sent to the client yet: every request gets a clean 502 at once (GET,
    and POST with a 64 KiB body), none hangs, the connection stays usable."""
    def plan(_rng: Any, n: int) -> Req:
        if n % 2:
            return Req("POST", f"/{origin}", b"p" * 65536, check=json_is(BAD_GATEWAY))
        return Req("GET", f"/{origin}", check=json_is(BAD_GATEWAY))

    with Traffic(node.gw.port, plan, threads=4, fresh=1, per_thread=25, expect=(502,)) as t:
        t.join()
    tally = t.tally
    figures(f"origin {origin}", tally)
    assert (tally.sent, tally.ok) == (100, 100), tally.errors
    assert tally.max_latency < 2.0
    assert node.gw.get("/ok")[0] == 200


@pytest.mark.parametrize("origin", ["cut-cl-fin", "cut-cl-rst", "cut-chunked-fin",
                                    "cut-chunked-rst"])
def test_origin_dying_mid_body_gives_a_response_the_client_sees_is_truncated(node, origin):
    """The head went out: the client gets what there was and then the close -- a short
    Content-Length body, or a chunked body without its last chunk -- never a body that
    looks complete, and never a hang."""
    cut = 0
    t0 = time.monotonic()
    for _ in range(5):
        s, rd = node.request(f"GET /{origin} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        with s:
            with pytest.raises(EOFError):
                rd.response()
            cut += 1
    took = time.monotonic() - t0
    print(f"\nFIGURES origin {origin}: sent=5 truncated={cut} took={took:.2f}s")
    assert took < 5
    assert node.gw.get("/ok")[0] == 200


def test_origin_bad_chunk_mid_body_truncates_the_response(node):
    s, rd = node.request(b"GET /bad-chunk HTTP/1.1\r\nHost: a\r\n\r\n")
    with s, pytest.raises(EOFError):
        rd.response()
    assert node.gw.get("/ok")[0] == 200


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_origin_reset_during_the_upload_is_502_and_the_connection_closes(node, framing):
    """The origin resets while a 1 MiB body is still coming: the client gets a 502 (no byte
    of an answer was sent yet) with ``Connection: close``, then the close."""
    if framing == "chunked":
        head = (b"POST /reset-during-upload HTTP/1.1\r\nHost: a\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")
        first = b"10000\r\n" + b"u" * 65536 + b"\r\n"
    else:
        head = (b"POST /reset-during-upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n"
                % (1 << 20))
        first = b"u" * 65536
    s, rd = node.request(head + first, timeout=5)
    with s:
        r = rd.response()
        assert (r.status, r.json()) == (502, BAD_GATEWAY)
        assert r.header("connection") == "close"
        assert rd.at_eof(3)


# -- origin hangs ------------------------------------------------------------------------------
def test_hanging_origin_is_504_after_the_read_timeout_for_every_concurrent_request(node):
    """16 requests at once to an origin that never answers: each gets 504 after the route's
    read timeout (1 s), and the worker keeps serving other routes meanwhile."""
    hang = Traffic(node.gw.port, constant(Req("GET", "/hang", check=json_is(GATEWAY_TIMEOUT))),
                   threads=16, fresh=16, per_thread=1, expect=(504,), tally=Tally(keep=True))
    with hang:
        time.sleep(0.3)
        healthy = Traffic(node.gw.port, constant(Req("GET", "/ok")), threads=2, per_thread=20)
        with healthy:
            healthy.join()
        hang.join()
    figures("origin hang", hang.tally)
    figures("healthy route during the hang", healthy.tally)
    assert (hang.tally.sent, hang.tally.ok) == (16, 16), hang.tally.errors
    assert all(TIMEOUT * 0.9 <= r.latency < TIMEOUT + 2 for r in hang.tally.records or [])
    assert healthy.tally.ok == 40 and healthy.tally.max_latency < 0.5


def test_origin_stalling_mid_body_is_cut_after_the_read_timeout(node):
    s, rd = node.request(b"GET /stall HTTP/1.1\r\nHost: a\r\n\r\n")
    t0 = time.monotonic()
    with s, pytest.raises(EOFError, match="short body: 10 of 100"):
        rd.response()
    took = time.monotonic() - t0
    print(f"\nFIGURES origin stall mid-body: cut after {took:.2f}s (read timeout {TIMEOUT}s)")
    assert TIMEOUT * 0.9 <= took < TIMEOUT + 2


def test_node_that_never_accepts_is_504_after_the_connect_timeout(node):
    t0 = time.monotonic()
    status, _, body = node.gw.get("/no-accept")
    took = time.monotonic() - t0
    assert (status, json.loads(body)) == (504, GATEWAY_TIMEOUT)
    assert TIMEOUT * 0.9 <= took < TIMEOUT + 2


def test_origin_that_stops_reading_the_upload_is_504_after_the_send_timeout(node):
    """The origin takes the head and reads nothing more; a 32 MiB upload fills the socket
    buffers and the send timeout answers 504 while the client is still sending."""
    s, rd = node.request(b"POST /never-read HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n"
                         % (32 << 20))
    stop = threading.Event()

    def upload() -> None:
        piece = b"s" * 65536
        try:
            for _ in range(512):
                if stop.is_set():
                    return
                s.sendall(piece)
        except OSError:
            pass

    sender = threading.Thread(target=upload, daemon=True)
    t0 = time.monotonic()
    sender.start()
    with s:
        r = rd.response()
        took = time.monotonic() - t0
        stop.set()
    sender.join(10)
    print(f"\nFIGURES origin never reads the upload: {r.status} after {took:.2f}s")
    assert (r.status, r.json()) == (504, GATEWAY_TIMEOUT)
    assert took < TIMEOUT + 4


# -- origin garbage -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_origin_garbage_is_502(node, kind):
    s, rd = node.request(f"GET /garbage-{kind} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    with s:
        r = rd.response()
    assert (r.status, r.json()) == (502, BAD_GATEWAY)
    assert "Traceback" not in node.gw.log()


# -- origin dropping keep-alive connections --------------------------------------------------------
def test_origin_closing_keepalive_connections_at_random_fails_no_idempotent_request(node):
    """The pooled connections to the origin die at random (FIN, RST, later, or when the next
    request arrives); idempotent requests are retried on a fresh connection, so no client
    sees an error."""
    methods = ["GET", "HEAD", "PUT", "DELETE"]

    def plan(rng: Any, n: int) -> Req:
        m = methods[n % 4]
        return Req(m, f"/flaky?n={n}", b"put-body" if m == "PUT" else None)

    o = node.origins["flaky"]
    with Traffic(node.gw.port, plan, threads=6, fresh=2, per_thread=150) as t:
        t.join(30)
    figures("origin drops keep-alive connections", t.tally, origin_connections=o.connections,
            origin_drops=o.closes)
    assert (t.tally.sent, t.tally.ok) == (900, 900), t.tally.errors
    assert o.closes > 100, "the origin dropped connections"


# -- etcd killed under load ----------------------------------------------------------------------
needs_etcd = pytest.mark.skipif(find_etcd() is None, reason="no etcd binary")
needs_redis = pytest.mark.skipif(find_redis() is None, reason="no redis-server binary")


def etcd_route(uri: str, up: Upstream, **extra: Any) -> str:
    # as a hand-written (non-Admin-API) etcd value: no "id", the key names it (APISIX)
    return json.dumps({"uri": uri, "upstream": {"type": "roundrobin", "nodes": {up.addr: 1}},
                       **extra})


def wait_answer(gw: Gateway, path: str, ok: Callable[[int, dict[str, str]], bool],
                timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        status, headers, _ = gw.get(path)
        if ok(status, headers):
            return time.monotonic() - t0
        time.sleep(0.02)
    raise AssertionError(f"{path} not as expected within {timeout}s")


@needs_etcd
def test_etcd_killed_and_restarted_under_load(gateway_factory, upstream):
    """kill -9 of etcd while requests flow: the node keeps serving the last config (no
    request fails); once etcd is back, changes made after it (a new route, an update and a
    delete of routes the node had from before) go live on every worker."""
    with EtcdServer() as etcd:
        for name in ("r0", "gone"):
            etcd.put(f"/apisix/routes/{name}", etcd_route(f"/{name}", upstream))
        gw = gateway_factory({}, workers=2, node={"deployment": {
            "config_provider": "etcd",
            "etcd": {"host": [etcd.url], "prefix": "/apisix", "timeout": 2}}})
        wait_answer(gw, "/r0", lambda s, _h: s == 200, 5)
        with Traffic(gw.port, constant(Req("GET", "/r0")), threads=4, fresh=2) as load:
            load.wait_for(50)
            t_kill = time.monotonic()
            etcd.kill()
            time.sleep(1.0)
            during = load.tally.ok
            etcd.start()
            etcd.put("/apisix/routes/r1", etcd_route("/r1", upstream))
            etcd.put("/apisix/routes/r0", etcd_route("/r0", upstream, plugins={
                "response-rewrite": {"headers": {"set": {"X-Config": "after-etcd-restart"}}}}))
            etcd.call("/v3/kv/deleterange", {"key": b64("/apisix/routes/gone")})
            t_back = time.monotonic()
            took = wait_answer(gw, "/r1", lambda s, _h: s == 200, 15)
            for _ in range(8):           # every worker: new route, update, delete
                wait_answer(gw, "/r0", lambda s, h: h.get("x-config") == "after-etcd-restart",
                            5)
                wait_answer(gw, "/gone", lambda s, _h: s == 404, 5)
            time.sleep(0.3)
        tally = load.tally
        figures("etcd kill -9 + restart", tally, outage_s=round(t_back - t_kill, 2),
                change_live_after_restart_s=round(took, 2))
        assert tally.failed == tally.lost == 0, tally.errors
        assert during > 50, "requests were served while etcd was down"
        assert "unreachable" in gw.log()


# -- Redis killed and hung under load ------------------------------------------------------------
@pytest.fixture(scope="module")
def redis_node(node: Node) -> Node:
    if node.redis is None:
        pytest.skip("no redis-server binary")
    for _ in range(20):          # every worker has its Redis client before we measure
        for path in ("/degrade", "/strict"):
            node.gw.get(path)
    return node


def redis_traffic(port: int) -> Traffic:
    def plan(_rng: Any, n: int) -> Req:
        if n % 2:
            return Req("GET", "/degrade")
        # the strict route's 500 must be APISIX's (anything else counts as failed)
        return Req("GET", "/strict",
                   check=lambda s, b: s == 200 or json.loads(b) == FAILED_TO_LIMIT)
    return Traffic(port, plan, threads=6, fresh=2, expect=(200, 500), tally=Tally(keep=True))


def wait_strict_flowing(load: Traffic, timeout: float = 10.0) -> None:
    """Both routes answered before the fault: at least 100 requests, one of them a 200 on
    /strict (a loaded machine can take a while to get every client thread going)."""
    load.wait_for(100)
    deadline = time.monotonic() + timeout
    while not any(r.status == 200 for r in load.tally.window(0, time.monotonic(), "/strict")):
        assert time.monotonic() < deadline, f"/strict never answered: {load.tally.figures()}"
        time.sleep(0.01)
    time.sleep(0.1)                 # past the 0.05 s margin of check_redis_outage


def check_redis_outage(tally: Tally, t_fault: float, t_end: float, t_back: float,
                       t_until: float, name: str, **extra: Any) -> float:
    """/degrade always 200; /strict 200 before, 500 during, 200 again soon after; nothing
    lost.  Returns how long /strict took to recover."""
    figures(name, tally, **extra)
    assert tally.failed == tally.lost == 0, tally.errors
    deg = status_of(tally.window(0, t_until, "/degrade"))
    assert set(deg) == {200}, deg
    assert set(status_of(tally.window(0, t_fault - 0.05, "/strict"))) == {200}
    # a request started just before Redis came back may be answered by it: not counted
    during = tally.window(t_fault + 0.1, t_end - 2 * REDIS_TIMEOUT_MS / 1000, "/strict")
    assert during and set(status_of(during)) == {500}, status_of(during)
    bad_after = [r.start for r in tally.window(t_back, t_until, "/strict") if r.status != 200]
    recovered = (max(bad_after) - t_back) if bad_after else 0.0
    assert recovered < 3.0, f"/strict kept failing {recovered:.2f}s after Redis came back"
    assert tally.window(t_back + recovered + 0.01, t_until, "/strict"), "traffic after recovery"
    return recovered


@needs_redis
def test_redis_killed_and_restarted_under_load(redis_node):
    """kill -9 of Redis with limit-count policy redis: allow_degradation lets every request
    through, the strict route answers APISIX's 500 ``failed to limit count`` at once (no
    hang, no reset), and both count again right after Redis is back."""
    rn = redis_node
    with redis_traffic(rn.gw.port) as load:
        wait_strict_flowing(load)
        t_fault = time.monotonic()
        rn.redis.kill()
        time.sleep(1.0)
        t_end = time.monotonic()
        rn.redis.start()
        t_back = time.monotonic()
        time.sleep(1.0)
    t_until = time.monotonic()
    took = check_redis_outage(load.tally, t_fault, t_end, t_back, t_until,
                              "redis kill -9 + restart", outage_s=round(t_back - t_fault, 2))
    print(f"strict route counting again {took:.2f}s after the restart")
    assert load.tally.max_latency < 2 * REDIS_TIMEOUT_MS / 1000 + 1


@needs_redis
def test_redis_hanging_is_bounded_by_redis_timeout(redis_node):
    """Redis stopped (SIGSTOP: connections open, no answers): requests wait at most about
    ``redis_timeout`` (twice when the connection must be re-made), then degrade or 500."""
    rn = redis_node
    assert rn.redis.proc is not None
    with redis_traffic(rn.gw.port) as load:
        wait_strict_flowing(load)
        t_fault = time.monotonic()
        os.kill(rn.redis.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(1.5)
        finally:
            t_end = time.monotonic()
            os.kill(rn.redis.proc.pid, signal.SIGCONT)
        t_back = time.monotonic()
        time.sleep(1.0)
    t_until = time.monotonic()
    slowest = max(r.latency for r in load.tally.window(t_fault, t_end))
    check_redis_outage(load.tally, t_fault, t_end, t_back, t_until, "redis hung (SIGSTOP)",
                       slowest_during_s=round(slowest, 3))
    assert slowest < 2 * REDIS_TIMEOUT_MS / 1000 + 0.5


# -- config changes while connections come and go --------------------------------------------------
def test_connections_alive_at_config_changes_are_freed_after_they_close(node):
    """Regression: every config change froze (``gc.freeze``) all objects alive, so the
    connections open at that moment were never freed once closed (~3.5 KiB each; the soak
    test's workers grew without end).  60 connections open across each of 20 Admin API
    changes and 8 edits of the standalone file, closed after it: the workers' RSS stays."""
    gw = node.gw

    def rss() -> int:
        return sum(rss_bytes(p) for p in gw.worker_pids())

    def change(i: int, file: bool) -> None:
        uri = f"/changed/{i}"
        extra = {"id": "changed", "uri": uri, "upstream": {"type": "roundrobin",
                                                           "nodes": {"127.0.0.1:1": 1}}}
        if file:
            gw.write({"routes": [*node.routes, extra]})
        else:
            assert admin(node.admin_port, "PUT", "/apisix/admin/routes/changed",
                         {k: v for k, v in extra.items() if k != "id"},
                         key=ADMIN_KEY)[0] in (200, 201)
        deadline = time.monotonic() + 5
        while gw.get(uri)[0] != 502:            # live (its node refuses: 502)
            assert time.monotonic() < deadline, "the change did not go live"
        time.sleep(0.05)                        # and on the other worker

    def round_(i: int, file: bool) -> None:
        conns = []
        for _ in range(60):
            s, rd = node.request(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n")
            assert rd.response().status == 200
            conns.append(s)
        change(i, file)
        for s in conns:
            s.close()

    for i in range(3):                          # warm-up: pools, caches, first sizes
        round_(i, False)
        round_(i, True)
    before = rss()
    for i in range(3, 23):
        round_(i, False)
    for i in range(23, 31):
        round_(i, True)
    time.sleep(0.3)
    growth = rss() - before
    print(f"\nFIGURES config changes with connections open: 28 changes x 60 connections, "
          f"worker RSS {growth / 1024:+.0f} KiB")
    assert growth < 3 << 20, f"workers grew {growth >> 10} KiB"


# -- a worker killed under load --------------------------------------------------------------------
def test_worker_killed_under_load_loses_only_requests_in_flight(node):
    """kill -9 of one of two workers: only the requests it had in flight are lost (at most
    one per client connection, all started before the kill); new connections queued on its
    socket wait for the replacement; the replacement serves within seconds."""
    gw = node.gw
    pids = wait_workers(gw, 2)
    threads = 12
    load = Traffic(gw.port, constant(Req("GET", "/slow")), threads=threads, fresh=4,
                   tally=Tally(keep=True))
    with load:
        load.wait_for(100)
        t_kill = time.monotonic()
        os.kill(pids[0], signal.SIGKILL)
        new = wait_workers(gw, 2, exclude={pids[0]})
        t_replaced = time.monotonic()
        time.sleep(0.7)
    tally = load.tally
    lost = [r for r in tally.records or [] if r.status is None]
    figures("worker kill -9", tally, replaced_after_s=round(t_replaced - t_kill, 2))
    assert not alive(pids[0]) and pids[1] in new
    assert tally.failed == 0, tally.errors
    assert len(lost) <= threads, tally.errors
    assert all(r.start < t_kill + 0.01 for r in lost), "only requests in flight are lost"
    after = tally.window(t_replaced, time.monotonic())
    assert after and all(r.status == 200 for r in after)
    assert "exited with -9; starting a new one" in gw.log()
