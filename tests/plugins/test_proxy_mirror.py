"""proxy-mirror through a real gateway and a real mirror service (a thread)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pylon.pdk.testing import Kit, free_port, read_request_body
from pylon.plugins import proxy_mirror
from pylon.proxy import registry


class _Mirror(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def _handle(self) -> None:
        body = read_request_body(self)
        self.server.record({"method": self.command, "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body})
        time.sleep(float(self.headers.get("X-Mirror-Sleep") or 0))
        out = b"mirror says hi"
        self.send_response(500)               # the gateway must ignore whatever it answers
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _MirrorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Mirror)
        self.seen: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def record(self, rec: dict[str, Any]) -> None:
        with self.lock:
            self.seen.append(rec)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def find(self, prefix: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.seen if r["path"].startswith(prefix)]

    def wait_for(self, prefix: str, n: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.find(prefix)
            if len(got) >= n:
                return got
            time.sleep(0.02)
        return self.find(prefix)

    def settle(self, prefix: str, quiet: float = 0.5, timeout: float = 10.0) -> int:
        """The number of requests under ``prefix`` once none arrived for ``quiet`` s."""
        deadline = time.monotonic() + timeout
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            n = len(self.find(prefix))
            if n != last:
                last, since = n, time.monotonic()
            elif time.monotonic() - since >= quiet:
                break
            time.sleep(0.05)
        return last


@pytest.fixture(scope="module")
def mirror():
    srv = _MirrorServer()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _doc(mirror: _MirrorServer, dead_port: int, upstream_addr: str) -> dict[str, Any]:
    host = mirror.url
    return {"routes": [
        {"id": "all", "uri": "/all/*", "plugins": {"proxy-mirror": {"host": host}}},
        {"id": "replace", "uri": "/replace/*",
         "plugins": {"proxy-mirror": {"host": host, "path": "/mirrored"}}},
        {"id": "prefix", "uri": "/prefix/*",
         "plugins": {"proxy-mirror": {"host": host, "path": "/copy",
                                      "path_concat_mode": "prefix"}}},
        {"id": "half", "uri": "/half/*",
         "plugins": {"proxy-mirror": {"host": host, "sample_ratio": 0.5}}},
        {"id": "dead", "uri": "/dead/*",
         "plugins": {"proxy-mirror": {"host": f"http://127.0.0.1:{dead_port}"}}},
        {"id": "refused", "uri": "/refused/*",
         "plugins": {"proxy-mirror": {"host": host},
                     "ip-restriction": {"blacklist": ["127.0.0.1"]}}},
        {"id": "rewrite-host", "uri": "/rewrite-host/*",
         "plugins": {"proxy-mirror": {"host": host}},
         "upstream": {"nodes": {upstream_addr: 1}, "type": "roundrobin",
                      "pass_host": "rewrite", "upstream_host": "backend.example"}},
        {"id": "grpc", "uri": "/grpc/*",
         "plugins": {"proxy-mirror": {"host": "grpc://127.0.0.1:50051"}}},
    ]}


@pytest.fixture(scope="module")
def kit(mirror):
    with Kit() as k:
        k.apply(_doc(mirror, free_port(), k.upstream.addr))
        yield k


def test_mirror_gets_method_path_query_headers_and_body(kit, mirror):
    r = kit.post("/all/one?a=1&b=two", body=b"hello mirror",
                 headers={"X-Test": "yes", "Content-Type": "text/plain"})
    assert r.status == 200
    up = r.json()
    assert up["path"] == "/all/one?a=1&b=two" and up["body"] == "hello mirror"
    got = mirror.wait_for("/all/one")
    assert len(got) == 1
    m = got[0]
    assert m["method"] == "POST"
    assert m["path"] == "/all/one?a=1&b=two"
    assert m["body"] == b"hello mirror"
    assert m["headers"]["x-test"] == "yes"
    assert m["headers"]["content-type"] == "text/plain"
    assert m["headers"]["content-length"] == "12"
    assert m["headers"]["host"] == f"127.0.0.1:{kit.port}"       # $upstream_host: the client's


def test_get_without_body_is_mirrored_without_one(kit, mirror):
    assert kit.get("/all/get?x=1").status == 200
    m = mirror.wait_for("/all/get")[0]
    assert m["method"] == "GET" and m["body"] == b""
    assert "content-length" not in m["headers"]
    assert "transfer-encoding" not in m["headers"]


def test_client_never_waits_for_a_slow_mirror(kit, mirror):
    t0 = time.monotonic()
    r = kit.post("/all/slow", body=b"payload for a slow mirror",
                 headers={"X-Mirror-Sleep": "2"})
    took = time.monotonic() - t0
    assert r.status == 200 and r.json()["body"] == "payload for a slow mirror"
    assert took < 1.0, f"the client waited {took:.2f} s for the mirror"
    # and the next request on the gateway is not held up either
    t0 = time.monotonic()
    assert kit.get("/all/after-slow").status == 200
    assert time.monotonic() - t0 < 1.0
    m = mirror.wait_for("/all/slow")
    assert len(m) == 1 and m[0]["body"] == b"payload for a slow mirror"


def test_chunked_request_body_reaches_upstream_and_mirror(kit, mirror):
    body = b"first-part|second-part"
    with socket.create_connection(("127.0.0.1", kit.port), timeout=5) as s:
        s.sendall(b"POST /all/chunked HTTP/1.1\r\nHost: chunky.example\r\n"
                  b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                  b"b\r\nfirst-part|\r\nb\r\nsecond-part\r\n0\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 200")
    assert b'"body": "first-part|second-part"' in data
    m = mirror.wait_for("/all/chunked")[0]
    assert m["body"] == body
    assert m["headers"]["host"] == "chunky.example"


def test_path_replace_mode_keeps_the_query(kit, mirror):
    assert kit.get("/replace/some/thing?k=v").status == 200
    assert kit.get("/replace/noquery").status == 200
    got = {m["path"] for m in mirror.wait_for("/mirrored", 2)}
    assert got == {"/mirrored?k=v", "/mirrored"}
    assert kit.last_upstream_request()["path"] == "/replace/noquery"   # upstream unchanged


def test_path_prefix_mode_prepends_the_path(kit, mirror):
    assert kit.get("/prefix/a/b?q=1").status == 200
    m = mirror.wait_for("/copy/")
    assert [x["path"] for x in m] == ["/copy/prefix/a/b?q=1"]


def test_sample_ratio_mirrors_about_that_share(kit, mirror):
    n = 300
    for i in range(n):
        assert kit.get(f"/half/{i}").status == 200
    got = mirror.settle("/half/")
    # binomial(300, 0.5): sd 8.7; +-60 is about seven standard deviations
    assert 90 <= got <= 210, got


def test_unreachable_mirror_never_affects_the_client(kit, mirror):
    for _ in range(3):
        r = kit.post("/dead/x", body=b"data")
        assert r.status == 200 and r.json()["body"] == "data"
    deadline = time.monotonic() + 5
    while "request to mirror" not in kit.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "proxy-mirror: POST request to mirror" in kit.log()


def test_request_refused_by_a_later_plugin_is_not_mirrored(kit, mirror):
    assert kit.get("/refused/x").status == 403
    assert kit.get("/all/marker").status == 200            # sent after, mirrored
    mirror.wait_for("/all/marker")
    assert mirror.find("/refused/") == []


def test_host_header_follows_pass_host_rewrite(kit, mirror):
    r = kit.get("/rewrite-host/x")
    assert r.status == 200 and r.json()["headers"]["host"] == "backend.example"
    m = mirror.wait_for("/rewrite-host/x")[0]
    assert m["headers"]["host"] == "backend.example"


def test_grpc_mirror_host_is_accepted_but_not_mirrored(kit):
    assert kit.get("/grpc/x").status == 200
    assert "gRPC mirroring is not supported" in kit.log()


def test_schema_as_apisix():
    spec = registry.load(["proxy-mirror"]).get("proxy-mirror")
    assert spec.priority == 1010
    conf = spec.check_conf({"host": "http://127.0.0.1:9797"})
    assert conf["path_concat_mode"] == "replace" and conf["sample_ratio"] == 1
    for ok in ("https://mirror.example", "grpc://10.0.0.1:50051", "http://[::1]:8080"):
        spec.check_conf({"host": ok})
    spec.check_conf({"host": "http://m.example", "path": "/a/b", "path_concat_mode": "prefix"})
    bad = [
        {},                                                  # host is required
        {"host": "127.0.0.1:9797"},                          # no scheme
        {"host": "http://127.0.0.1:9797/"},                  # no path in host
        {"host": "http://127.0.0.1:9797/path"},
        {"host": "ftp://127.0.0.1"},
        {"host": "http://127.0.0.1:9797\n"},
        {"host": "http://m.example", "path": "relative"},
        {"host": "http://m.example", "path": "/a?b=1"},
        {"host": "http://m.example", "path_concat_mode": "append"},
        {"host": "http://m.example", "sample_ratio": 0},
        {"host": "http://m.example", "sample_ratio": 1.5},
    ]
    for conf in bad:
        with pytest.raises(registry.PluginConfigError):
            spec.check_conf(conf)
    with pytest.raises(registry.PluginConfigError) as e:
        spec.check_conf({"host": "http://x/"})
    assert 'property "host" validation failed: failed to match pattern' in str(e.value)


def test_in_flight_mirror_requests_are_bounded(mirror, monkeypatch):
    """Beyond MAX_INFLIGHT copies in flight, new ones are dropped, not queued."""
    monkeypatch.setattr(proxy_mirror, "MAX_INFLIGHT", 2)
    conf = proxy_mirror.prepare({"host": mirror.url, "path_concat_mode": "replace",
                                 "sample_ratio": 1})

    async def run() -> int:
        for i in range(3):
            proxy_mirror._spawn(conf, "GET", f"{mirror.url}/bounded/{i}",
                                [("X-Mirror-Sleep", "0.5")], None)
        n = len(proxy_mirror._inflight)
        await asyncio.wait_for(asyncio.gather(*proxy_mirror._inflight), 5)
        return n

    assert asyncio.run(run()) == 2
    assert proxy_mirror._inflight == set()           # done tasks are let go
    assert sorted(m["path"] for m in mirror.wait_for("/bounded/", 2)) == \
        ["/bounded/0", "/bounded/1"]
    time.sleep(0.2)
    assert len(mirror.find("/bounded/")) == 2


def test_no_plugin_failure_in_the_gateway_log(kit):
    assert "plugin proxy-mirror failed" not in kit.log()
    assert "Traceback" not in kit.log()
