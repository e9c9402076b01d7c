"""HTTP/2 toward clients: how a connection starts (h2c prior knowledge, Upgrade: h2c),
settings, flow control, streams, and the defences (rapid reset, CONTINUATION and control
frame floods, concurrency, idle connections, graceful GOAWAY on drain)."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import threading
import time

import h2.config
import h2.connection
import h2.events
import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import ContinuationFrame, HeadersFrame, PingFrame

from tests.h2client import H2Client, Resp
from tests.harness import (
    BLOCK,
    RSSSampler,
    chunked_response,
    counter,
    generate_body,
    hang,
    node,
    origin_factory,
    route_doc,
)

__all__ = ["origin_factory"]


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    return subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True,
                          text=True, timeout=20, check=False)


def test_curl_with_prior_knowledge_and_with_upgrade(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), http2=True)
    url = f"http://127.0.0.1:{gw.port}/x"
    out = curl("--http2-prior-knowledge", "-i", url)
    assert out.stdout.startswith("HTTP/2 200"), out.stdout + out.stderr
    out = curl("--http2", "-i", url)           # HTTP/1.1 + Upgrade: h2c, then HTTP/2
    assert "HTTP/1.1 101 Switching Protocols" in out.stdout
    assert "\nHTTP/2 200" in out.stdout.replace("\r", ""), out.stdout + out.stderr
    assert len(upstream.requests) == 2
    # a request with a body is not upgraded: it stays HTTP/1.1 (as curl -d --http2 sends)
    out = curl("--http2", "-i", "-d", "abc", url)
    assert out.stdout.startswith("HTTP/1.1 200"), out.stdout
    assert upstream.requests[-1]["body"] == b"abc"


def test_listener_without_enable_http2_answers_the_preface_505(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]))
    out = curl("--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
               f"http://127.0.0.1:{gw.port}/x")
    assert out.returncode != 0 or out.stdout != "200"
    raw = gw.raw(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 505 ")
    out = curl("--http2", "-i", f"http://127.0.0.1:{gw.port}/x")   # Upgrade ignored
    assert out.stdout.startswith("HTTP/1.1 200"), out.stdout


def test_settings_advertise_the_node_limits(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), http2=True,
                         http={"http2_max_concurrent_streams": 7,
                               "http2_body_preread_size": "32k"})
    with H2Client(gw.port) as c:
        r = c.request("GET", "/x")
        assert r.status == 200
        s = c.remote_settings
        assert s[SettingCodes.MAX_CONCURRENT_STREAMS] == 7
        assert s[SettingCodes.INITIAL_WINDOW_SIZE] == 32768
        assert s[SettingCodes.MAX_HEADER_LIST_SIZE] == 32768


def test_streams_past_max_concurrent_are_refused(gateway_factory, upstream_factory):
    release = threading.Event()
    slow = upstream_factory("slow", behaviour=hang(release))
    gw = gateway_factory(route_doc([slow]), http2=True,
                         http={"http2_max_concurrent_streams": 4})
    try:
        with H2Client(gw.port) as c:
            c.pump(lambda: SettingCodes.MAX_CONCURRENT_STREAMS in c.remote_settings)
            c.conn.unlimited = True      # (the client's h2 would hold the fifth back)
            sids = [c.send_request("GET", f"/s{i}") for i in range(5)]
            c.pump(lambda: c.resps[sids[4]].reset is not None)
            assert c.resps[sids[4]].reset == ErrorCodes.REFUSED_STREAM
            release.set()
            c.pump(lambda: all(c.resps[s].done for s in sids[:4]))
            assert [c.resps[s].status for s in sids[:4]] == [200] * 4
            assert c.request("GET", "/after").status == 200      # the connection goes on
    finally:
        release.set()


def test_many_concurrent_streams_on_one_connection(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), http2=True)
    with H2Client(gw.port) as c:
        sids = [c.send_request("GET", f"/n/{i}") for i in range(100)]
        c.pump(lambda: all(c.resps[s].done for s in sids), timeout=30)
        assert all(c.resps[s].status == 200 for s in sids)
        paths = sorted(r["path"] for r in upstream.requests)
        assert paths == sorted(f"/n/{i}" for i in range(100))


def test_h2load_100_streams_per_connection(gateway_factory, upstream):
    if shutil.which("h2load") is None:
        pytest.skip("h2load (nghttp2-client) is not installed")
    gw = gateway_factory({"routes": [{"id": "m", "uri": "/m", "plugins": {"mocking": {
        "response_example": "ok", "content_type": "text/plain"}}}]}, http2=True)
    out = subprocess.run(["h2load", "-n", "2000", "-c", "2", "-m", "100",
                          f"http://127.0.0.1:{gw.port}/m"], capture_output=True, text=True,
                         timeout=120, check=False)
    assert "2000 succeeded, 0 failed, 0 errored" in out.stdout, out.stdout
    assert "status codes: 2000 2xx" in out.stdout


def test_malformed_requests_are_stream_errors(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), http2=True)
    with H2Client(gw.port) as c:
        c.conn.config.validate_outbound_headers = False
        c.conn.config.normalize_outbound_headers = False
        bad = [
            [("x-Upper", "1")],                      # upper case name
            [("connection", "keep-alive")],          # connection-specific
            [("te", "gzip")],                        # te other than trailers
            [("x-a", " padded")],                    # leading space in a value
        ]
        for extra in bad:
            sid = c.send_request("GET", "/x", extra)
            c.pump(lambda s=sid: c.resps[s].done)
            assert c.resps[sid].reset == ErrorCodes.PROTOCOL_ERROR, extra
        sid = c.send_raw([(b":method", b"GET"), (b":scheme", b"http"),     # no :path
                          (b":authority", b"a")])
        c.pump(lambda: c.resps[sid].done)
        assert c.resps[sid].reset == ErrorCodes.PROTOCOL_ERROR
        r = c.request("GET", "/fine", [("te", "trailers")])
        assert r.status == 200
    assert len(upstream.requests) == 1


def test_missing_authority_and_host_is_400(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), http2=True)
    with H2Client(gw.port) as c:
        c.conn.config.validate_outbound_headers = False
        sid = c.send_raw([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/x")])
        c.pump(lambda: c.resps[sid].done)
        assert c.resps[sid].status == 400
        r = c.request("GET", "/x", [("host", "h.test")], authority="h.test")
        assert r.status == 200
    assert upstream.requests[-1]["headers"]["host"] == "h.test"


def test_cookies_are_joined_and_host_is_the_authority(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), http2=True)
    with H2Client(gw.port) as c:
        r = c.request("GET", "/c", [("cookie", "a=1"), ("cookie", "b=2")],
                      authority="api.test:81")
        assert r.status == 200
    h = upstream.requests[-1]["headers"]
    assert h["cookie"] == "a=1; b=2"
    assert h["host"] == "api.test:81"


def test_response_trailers_pass_through(gateway_factory, upstream_factory):
    up = upstream_factory("t", behaviour=chunked_response(
        [b"ab", b"cd"], trailers=[("grpc-status", "0"), ("x-t", "1")]))
    gw = gateway_factory(route_doc([up]), http2=True)
    with H2Client(gw.port) as c:
        r = c.request("GET", "/t")
        assert r.status == 200 and bytes(r.body) == b"abcd"
        assert r.trailers == [(b"grpc-status", b"0"), (b"x-t", b"1")]
        assert r.header("transfer-encoding") is None and r.header("trailer") is None


def test_a_small_client_window_still_gets_the_whole_response(gateway_factory,
                                                             origin_factory):
    total = 2 << 20
    src = origin_factory("src", behaviour=generate_body(total))
    gw = gateway_factory(route_doc([src]), http2=True)
    with H2Client(gw.port, settings={SettingCodes.INITIAL_WINDOW_SIZE: 1000}) as c:
        r = c.request("GET", "/big")
        assert r.status == 200 and r.ended
        assert bytes(r.body) == (BLOCK * 32)[:total]
        assert max(len(e.data) for e in c.events
                   if isinstance(e, h2.events.DataReceived)) <= 16384


def test_a_client_that_does_not_read_holds_the_response_in_bounded_memory(
        gateway_factory, origin_factory):
    total = 32 << 20
    src = origin_factory("src", behaviour=generate_body(total))
    gw = gateway_factory(route_doc([src]), http2=True)
    with H2Client(gw.port, auto_credit=False,
                  settings={SettingCodes.INITIAL_WINDOW_SIZE: 65535}) as c:
        sid = c.send_request("GET", "/big")
        r = c.resps[sid]
        c.pump(lambda: len(r.body) >= 65535)
        time.sleep(1.0)                  # nothing more may come without a WINDOW_UPDATE
        c.pump(lambda: True)
        assert len(r.body) == 65535
        got = len(r.body)
        while not r.done:                # now read it all, crediting as we go
            c.credit(sid, 1 << 20)
            c.pump(lambda n=got: len(r.body) > n or r.done)
            got = len(r.body)
        assert len(r.body) == total


def test_request_body_over_client_max_body_size_is_413(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), http2=True,
                         http={"client_max_body_size": "1k"})
    with H2Client(gw.port) as c:
        r = c.request("POST", "/x", [("content-length", "2048")], b"x" * 2048)
        assert r.status == 413
        sid = c.send_request("POST", "/y", None, b"y" * 4096, end=False)   # no length
        c.pump(lambda: c.resps[sid].done)
        assert c.resps[sid].status == 413
        assert c.request("GET", "/z").status == 200
    assert [r["path"] for r in upstream.requests] == ["/z"]


def test_rapid_reset_gets_goaway_enhance_your_calm(gateway_factory, upstream_factory):
    release = threading.Event()
    slow = upstream_factory("slow", behaviour=hang(release, 5))
    gw = gateway_factory(route_doc([slow]), http2=True)
    try:
        with H2Client(gw.port) as c:
            # open and cancel at once (CVE-2023-44487), 50 streams per write: under the
            # new-streams-per-read bound, over the resets-per-second one
            with contextlib.suppress(OSError):
                for _ in range(10):
                    for _ in range(50):
                        sid = c.conn.get_next_available_stream_id()
                        c.conn.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"http"),
                                                  (b":authority", b"a"), (b":path", b"/r")])
                        c.conn.reset_stream(sid, ErrorCodes.CANCEL)
                    c.flush()
                    time.sleep(0.02)
            c.wait_closed()
            assert c.goaway is not None
            assert c.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    finally:
        release.set()
    assert "too many streams reset by the client" in gw.log()


def test_too_many_new_streams_in_one_read_gets_goaway(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), http2=True,
                         http={"http2_max_concurrent_streams": 10})
    with H2Client(gw.port) as c:
        for _ in range(40):              # 40 streams opened and cancelled in one write
            sid = c.conn.get_next_available_stream_id()
            c.conn.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"http"),
                                      (b":authority", b"a"), (b":path", b"/r")])
            c.conn.reset_stream(sid, ErrorCodes.CANCEL)
        with contextlib.suppress(OSError):
            c.flush()
        c.wait_closed()
        assert c.goaway is not None and c.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert "too many new streams in one read" in gw.log()


def test_continuation_flood_closes_the_connection(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), http2=True)
    with H2Client(gw.port) as c:
        hf = HeadersFrame(1)
        hf.data = c.conn.encoder.encode([(b":method", b"GET"), (b":scheme", b"http"),
                                         (b":path", b"/"), (b":authority", b"a")])
        c.sock.sendall(hf.serialize())
        with pytest.raises(OSError):
            for _ in range(10000):           # CONTINUATION frames that never end
                cf = ContinuationFrame(1)
                cf.data = b"\x40\x01a\x01b"  # literal a: b, again and again
                c.sock.sendall(cf.serialize())
        # (the gateway closed before the flood was through)
        c.wait_closed()
        assert c.goaway is None or c.goaway.error_code in (
            ErrorCodes.ENHANCE_YOUR_CALM, ErrorCodes.PROTOCOL_ERROR)
    assert gw.get("/ok")[0] == 200


def test_ping_flood_gets_goaway_enhance_your_calm(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), http2=True)
    with H2Client(gw.port) as c:
        flood = b"".join(PingFrame(0, opaque_data=b"%08d" % i).serialize()
                         for i in range(1500))
        try:
            c.sock.sendall(flood)
        except OSError:
            pass
        c.wait_closed()
        assert c.goaway is not None
        assert c.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM


def test_idle_connection_gets_goaway_after_keepalive_timeout(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), http2=True, http={"keepalive_timeout": "1s"})
    with H2Client(gw.port) as c:
        assert c.request("GET", "/x").status == 200
        t0 = time.monotonic()
        c.wait_closed(timeout=5)
        assert 0.8 <= time.monotonic() - t0 < 4
        assert c.goaway is not None and c.goaway.error_code == ErrorCodes.NO_ERROR


def test_drain_sends_goaway_and_finishes_open_streams(gateway_factory, upstream_factory):
    release = threading.Event()
    slow = upstream_factory("slow", behaviour=hang(release, 5))
    gw = gateway_factory(route_doc([slow]), http2=True)
    try:
        with H2Client(gw.port) as c:
            sid = c.send_request("GET", "/slow")
            deadline = time.monotonic() + 5
            while not slow.requests and time.monotonic() < deadline:
                time.sleep(0.02)
            gw.signal(signal.SIGTERM)           # the worker drains
            c.pump(lambda: c.goaway is not None)
            assert c.goaway.error_code == ErrorCodes.NO_ERROR
            assert c.goaway.last_stream_id == sid
            release.set()
            c.pump(lambda: c.resps[sid].done)
            assert c.resps[sid].status == 200 and c.resps[sid].ended
            c.wait_closed()
    finally:
        release.set()


def test_upgrade_h2c_with_the_http_client(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), http2=True)
    probe = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    settings = probe.initiate_upgrade_connection()
    assert settings is not None
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    s.sendall(b"GET /up HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade, HTTP2-Settings\r\n"
              b"Upgrade: h2c\r\nHTTP2-Settings: " + settings + b"\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    with H2Client(gw.port, sock=s, upgraded=True) as c:
        c.resps[1] = Resp()
        c.pump(lambda: c.resps[1].done)
        assert c.resps[1].status == 200
        assert c.request("GET", "/second").status == 200
    assert [r["path"] for r in upstream.requests] == ["/up", "/second"]


def test_one_stream_failing_does_not_hurt_the_others(gateway_factory, upstream_factory):
    from http.server import BaseHTTPRequestHandler

    def truncated(h: BaseHTTPRequestHandler, body: bytes) -> None:
        h.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        h.wfile.flush()
        h.close_connection = True

    cut = upstream_factory("cut", behaviour=truncated)
    ok = upstream_factory("ok")
    gw = gateway_factory({"routes": [
        {"id": "cut", "uri": "/cut", "upstream": {"nodes": [node(cut.port)]}},
        {"id": "ok", "uri": "/ok", "upstream": {"nodes": [node(ok.port)]}}]}, http2=True)
    with H2Client(gw.port) as c:
        a = c.send_request("GET", "/cut")
        b = c.send_request("GET", "/ok")
        c.pump(lambda: c.resps[a].done and c.resps[b].done)
        assert c.resps[a].reset == ErrorCodes.INTERNAL_ERROR      # cut short: RST_STREAM
        assert c.resps[b].status == 200 and c.resps[b].ended
        assert c.request("GET", "/ok").status == 200


def test_h2_over_tls_when_alpn_chooses_it(gateway_factory, upstream, tmp_path):
    from tests.harness import free_port
    from tests.tls.certs import CA

    ca = CA()
    pem = ca.issue("a.test")
    port = free_port()
    doc = route_doc([upstream], uri="/*")
    doc["ssls"] = [{"id": "1", "cert": pem.cert, "key": pem.key, "snis": ["a.test"]}]
    gateway_factory(doc, node={"pylon": {"ssl": {"listen": [
        {"ip": "127.0.0.1", "port": port, "enable_http2": True}]}}})
    cafile = tmp_path / "ca.pem"
    cafile.write_text(ca.pem)
    out = curl("--http2", "-i", "--cacert", str(cafile), "--resolve",
               f"a.test:{port}:127.0.0.1", f"https://a.test:{port}/tls?q=1")
    assert out.stdout.startswith("HTTP/2 200"), out.stdout + out.stderr
    seen = upstream.requests[-1]
    assert seen["path"] == "/tls?q=1"
    assert seen["headers"]["x-forwarded-proto"] == "https"
    assert seen["headers"]["host"] == f"a.test:{port}"
    out = curl("--http1.1", "-i", "--cacert", str(cafile), "--resolve",
               f"a.test:{port}:127.0.0.1", f"https://a.test:{port}/tls")
    assert out.stdout.startswith("HTTP/1.1 200"), out.stdout + out.stderr


MiB = 1 << 20


def test_slow_upstream_pauses_an_h2_upload_in_bounded_memory(gateway_factory, origin_factory):
    """The sink reads slower than the client sends: the stream's window is credited back
    only as the upstream takes the bytes, so the worker holds little of the 64 MiB."""
    total = 64 * MiB
    sink = origin_factory("sink", behaviour=counter(0.0005), read_body=False)
    gw = gateway_factory(route_doc([sink]), http2=True)
    pids = gw.worker_pids()
    with RSSSampler(pids) as rss, H2Client(gw.port, timeout=120) as c:
        r = c.request("POST", "/up", [("content-length", str(total))], BLOCK * 1024)
        assert r.status == 200 and json.loads(bytes(r.body)) == {"received": total}
    assert rss.growth() < 32 * MiB, f"worker RSS grew {rss.growth() / MiB:.1f} MiB"


def test_slow_h2_client_pauses_the_upstream_in_bounded_memory(gateway_factory,
                                                              origin_factory):
    total = 64 * MiB
    src = origin_factory("src", behaviour=generate_body(total))
    gw = gateway_factory(route_doc([src]), http2=True)
    pids = gw.worker_pids()
    with RSSSampler(pids) as rss, H2Client(gw.port, timeout=120, keep_body=False) as c:
        sid = c.send_request("GET", "/down")
        r = c.resps[sid]
        deadline = time.monotonic() + 120
        while not r.done and time.monotonic() < deadline:
            c.pump(lambda n=r.received: r.received > n or r.done)
            time.sleep(0.0005)
        assert r.status == 200 and r.ended and r.received == total
    assert rss.growth() < 32 * MiB, f"worker RSS grew {rss.growth() / MiB:.1f} MiB"


def test_a_header_list_over_the_limit_ends_the_connection(gateway_factory, upstream):
    """A header block larger than max_header_bytes cannot be answered per stream (HPACK
    state would be lost): GOAWAY ENHANCE_YOUR_CALM; the gateway serves on."""
    gw = gateway_factory(route_doc([upstream]), http2=True,
                         http={"max_header_bytes": "8k"})
    with H2Client(gw.port) as c:
        c.pump(lambda: SettingCodes.MAX_HEADER_LIST_SIZE in c.remote_settings)
        assert c.remote_settings[SettingCodes.MAX_HEADER_LIST_SIZE] == 8192
        assert c.request("GET", "/small", [("x-a", "a" * 4000)]).status == 200
        with contextlib.suppress(OSError):
            c.send_request("GET", "/big", [(f"x-{i}", "b" * 1000) for i in range(12)])
        c.wait_closed()
        assert c.goaway is not None and c.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert [r["path"] for r in upstream.requests] == ["/small"]
    with H2Client(gw.port) as c:
        assert c.request("GET", "/after").status == 200


class RawOrigin:
    """An origin that keeps the raw bytes of one request (to see its framing and trailers)
    and answers 200 once the chunked body's last chunk and trailer section are in."""

    def __init__(self) -> None:
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.raw = b""
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.srv.settimeout(10)
        conn, _ = self.srv.accept()
        conn.settimeout(10)
        with conn:
            while b"\r\n0\r\n" not in self.raw or not self.raw.endswith(b"\r\n\r\n"):
                data = conn.recv(65536)
                if not data:
                    break
                self.raw += data
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            self.done.set()

    def close(self) -> None:
        self.srv.close()


def test_request_trailers_reach_the_upstream(gateway_factory):
    origin = RawOrigin()
    try:
        gw = gateway_factory({"routes": [{"id": "t", "uri": "/t", "upstream": {
            "nodes": [node(origin.port)]}}]}, http2=True)
        with H2Client(gw.port) as c:
            sid = c.send_request("POST", "/t", [("te", "trailers")], b"part", end=False)
            c.conn.send_headers(sid, [(b"x-checksum", b"abc")], end_stream=True)
            c.flush()
            c.pump(lambda: c.resps[sid].done)
            assert c.resps[sid].status == 200 and bytes(c.resps[sid].body) == b"ok"
        head, _, body = origin.raw.partition(b"\r\n\r\n")
        assert b"\r\nTransfer-Encoding: chunked\r\n" in head + b"\r\n"
        assert body == b"4\r\npart\r\n0\r\nx-checksum: abc\r\n\r\n"
    finally:
        origin.close()


def test_a_preface_split_over_reads_still_starts_http2(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), http2=True)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                header_encoding=None))
    conn.initiate_connection()
    conn.send_headers(1, [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a"),
                          (b":path", b"/split")], end_stream=True)
    data = conn.data_to_send()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(data[:5])             # "PRI *": the gateway's first read
        time.sleep(0.2)
        s.sendall(data[5:])
        status = None
        deadline = time.monotonic() + 5
        while status is None and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            for ev in conn.receive_data(chunk):
                if isinstance(ev, h2.events.ResponseReceived):
                    status = dict(ev.headers)[b":status"]
            s.sendall(conn.data_to_send())
    assert status == b"200"
    assert upstream.requests[-1]["path"] == "/split"


def test_a_stream_whose_window_stays_shut_is_reset_after_send_timeout(gateway_factory,
                                                                       origin_factory):
    src = origin_factory("src", behaviour=generate_body(4 << 20))
    gw = gateway_factory(route_doc([src]), http2=True, http={"send_timeout": "1s"})
    with H2Client(gw.port, auto_credit=False) as c:
        sid = c.send_request("GET", "/big")
        r = c.resps[sid]
        t0 = time.monotonic()
        c.pump(lambda: r.done, timeout=6)
        assert r.reset == ErrorCodes.CANCEL and len(r.body) == 65535
        assert 0.9 <= time.monotonic() - t0 < 4
        c.auto_credit = True
        assert c.request("GET", "/x", [("range", "bytes=0-9")]).status in (200, 206)
    assert "opened no window" in gw.log()
