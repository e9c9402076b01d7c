"""pylon.pdk.http against a real local HTTP/1.1 server (threads, loopback only)."""

from __future__ import annotations

import asyncio
import datetime
import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pylon.pdk import http
from pylon.pdk.testing import free_port


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        self.server.seen.append((self.command, self.path, dict(self.headers), body,
                                 self.client_address[1]))
        path = self.path.split("?")[0]
        if path == "/echo":
            out = json.dumps({"method": self.command, "path": self.path,
                              "headers": {k.lower(): v for k, v in self.headers.items()},
                              "body": body.decode(), "port": self.client_address[1]})
            self._send(200, out.encode(), {"Content-Type": "application/json"})
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("X-Multi", "a")
            self.send_header("X-Multi", "b")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
                time.sleep(0.01)
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/until-close":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"no framing, the close ends it")
            self.close_connection = True
        elif path == "/slow":
            time.sleep(1.5)
            self._send(200, b"late")
        elif path == "/status":
            self._send(418, b"teapot", {"X-Why": "because"})
        elif path == "/big":
            self._send(200, b"x" * 10000)
        elif path == "/close":
            self._send(200, b"bye", {"Connection": "close"})
            self.close_connection = True
        else:
            self._send(404, b"not found")

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server:
    def __init__(self, sslctx: ssl.SSLContext | None = None, idle: float | None = None) -> None:
        handler = type("H", (_Handler,), {"timeout": idle}) if idle else _Handler
        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        srv.daemon_threads = True
        srv.seen = []  # type: ignore[attr-defined]
        if sslctx is not None:
            srv.socket = sslctx.wrap_socket(srv.socket, server_side=True)
        self.srv = srv
        self.port = srv.server_address[1]
        threading.Thread(target=srv.serve_forever, daemon=True).start()

    @property
    def seen(self) -> list[Any]:
        return self.srv.seen  # type: ignore[no-any-return]

    def url(self, path: str, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture(scope="module")
def server():
    s = _Server()
    yield s
    s.close()


def run(coro: Any) -> Any:
    async def main() -> Any:
        try:
            return await coro
        finally:
            http.close_idle()
    return asyncio.run(main())


def test_get_returns_status_headers_and_json(server):
    r = run(http.request("GET", server.url("/echo?a=1"), headers={"X-Test": "v"}))
    assert r.status == 200
    assert r.header("content-type") == "application/json"
    data = r.json()
    assert data["path"] == "/echo?a=1"
    assert data["headers"]["x-test"] == "v"
    assert data["headers"]["host"] == f"127.0.0.1:{server.port}"


def test_post_sends_body_with_content_length(server):
    r = run(http.request("POST", server.url("/echo"), body=b"payload",
                         headers=[("Content-Type", "text/plain"), ("Transfer-Encoding", "x")]))
    data = r.json()
    assert data["body"] == "payload"
    assert data["headers"]["content-length"] == "7"
    assert "transfer-encoding" not in data["headers"]


def test_non_2xx_is_a_response_not_an_error(server):
    r = run(http.request("GET", server.url("/status")))
    assert (r.status, r.body, r.header("X-Why")) == (418, b"teapot", "because")


def test_chunked_response_is_reassembled_and_repeated_headers_kept(server):
    r = run(http.request("GET", server.url("/chunked")))
    assert r.status == 200
    assert r.body == b"hello chunked world"
    assert r.header_values("x-multi") == ["a", "b"]


def test_body_delimited_by_close(server):
    r = run(http.request("GET", server.url("/until-close")))
    assert r.body == b"no framing, the close ends it"


def test_head_has_no_body_and_keeps_the_connection(server):
    async def go() -> tuple[Any, Any]:
        a = await http.request("HEAD", server.url("/big"))
        b = await http.request("GET", server.url("/echo"))
        return a, b
    a, b = run(go())
    assert a.status == 200 and a.body == b"" and a.header("content-length") == "10000"
    assert b.json()["method"] == "GET"


def test_keep_alive_reuses_one_connection(server):
    async def go() -> list[int]:
        ports = []
        for _ in range(4):
            r = await http.request("GET", server.url("/echo"))
            ports.append(r.json()["port"])
        return ports
    ports = run(go())
    assert len(set(ports)) == 1


def test_connection_close_is_not_reused(server):
    async def go() -> tuple[int, int]:
        await http.request("GET", server.url("/close"))
        a = (await http.request("GET", server.url("/echo"))).json()["port"]
        await http.request("GET", server.url("/close"))
        b = (await http.request("GET", server.url("/echo"))).json()["port"]
        return a, b
    a, b = run(go())
    assert a != b


def test_keepalive_false_sends_connection_close(server):
    r = run(http.request("GET", server.url("/echo"), keepalive=False))
    assert r.json()["headers"]["connection"] == "close"


def test_concurrent_requests_use_separate_connections(server):
    async def go() -> list[Any]:
        return await asyncio.gather(*[http.request("GET", server.url("/echo"))
                                      for _ in range(5)])
    rs = run(go())
    assert all(r.status == 200 for r in rs)
    assert len({r.json()["port"] for r in rs}) == 5


def test_server_closing_an_idle_connection_is_retried_transparently():
    s = _Server(idle=0.2)           # the server drops idle keep-alive connections at 0.2 s
    try:
        async def go() -> tuple[int, int]:
            a = (await http.request("GET", s.url("/echo"))).json()["port"]
            await asyncio.sleep(0.5)
            b = (await http.request("GET", s.url("/echo"))).json()["port"]
            return a, b
        a, b = run(go())
        assert a != b
    finally:
        s.close()


def test_timeout_is_an_httptimeout(server):
    t0 = time.monotonic()
    with pytest.raises(http.HTTPError) as ei:
        run(http.request("GET", server.url("/slow"), timeout=0.3))
    assert time.monotonic() - t0 < 1.2
    assert ei.value.timeout is True
    assert isinstance(ei.value, http.HTTPTimeout)
    assert "timed out" in str(ei.value)


def test_connection_refused_is_an_httperror():
    port = free_port()
    with pytest.raises(http.HTTPError) as ei:
        run(http.request("GET", f"http://127.0.0.1:{port}/", timeout=2))
    assert ei.value.timeout is False
    assert f"127.0.0.1:{port}" in str(ei.value)


def test_connect_timeout_is_bounded():
    # a listening socket with a full backlog never completes the handshake for us
    with socket.socket() as ls:
        ls.bind(("127.0.0.1", 0))
        ls.listen(0)
        port = ls.getsockname()[1]
        fillers = []
        try:
            for _ in range(8):
                f = socket.socket()
                f.setblocking(False)
                f.connect_ex(("127.0.0.1", port))
                fillers.append(f)
            t0 = time.monotonic()
            with pytest.raises(http.HTTPError):
                run(http.request("GET", f"http://127.0.0.1:{port}/", timeout=0.5))
            assert time.monotonic() - t0 < 2
        finally:
            for f in fillers:
                f.close()


def test_body_over_max_body_is_refused(server):
    with pytest.raises(http.HTTPError) as ei:
        run(http.request("GET", server.url("/big"), max_body=1000))
    assert "larger than 1000" in str(ei.value)
    assert len(run(http.request("GET", server.url("/big"), max_body=10000)).body) == 10000


def test_header_injection_is_refused(server):
    with pytest.raises(http.HTTPError):
        run(http.request("GET", server.url("/echo"), headers={"X-A": "v\r\nX-B: 1"}))
    with pytest.raises(http.HTTPError):
        run(http.request("GET", "ftp://127.0.0.1/"))


def test_garbage_response_is_an_httperror():
    with socket.socket() as ls:
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        port = ls.getsockname()[1]

        def serve() -> None:
            c, _ = ls.accept()
            c.recv(1000)
            c.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            c.close()
        threading.Thread(target=serve, daemon=True).start()
        with pytest.raises(http.HTTPError) as ei:
            run(http.request("GET", f"http://127.0.0.1:{port}/", timeout=2))
        assert not ei.value.timeout


# -- https ---------------------------------------------------------------------------------
def _self_signed(tmp: Any) -> tuple[str, str]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(key, hashes.SHA256()))
    cp, kp = tmp / "c.pem", tmp / "k.pem"
    cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    return str(cp), str(kp)


def test_https_with_verification_sni_and_reuse(tmp_path):
    cert, key = _self_signed(tmp_path)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    names: list[str | None] = []
    sctx.sni_callback = lambda sock, name, ctx: names.append(name)
    s = _Server(sslctx=sctx)
    try:
        url = f"https://localhost:{s.port}/echo"
        # the system CAs do not know this certificate
        with pytest.raises(http.HTTPError) as ei:
            run(http.request("GET", url, timeout=3))
        assert "TLS" in str(ei.value)
        # verify=False accepts it; a context trusting it verifies it
        assert run(http.request("GET", url, verify=False, timeout=3)).status == 200
        cctx = ssl.create_default_context(cafile=cert)

        async def go() -> list[int]:
            return [(await http.request("GET", url, verify=cctx, timeout=3)).json()["port"]
                    for _ in range(3)]
        ports = run(go())
        assert len(set(ports)) == 1
        assert "localhost" in names
    finally:
        s.close()


def _raw_server(script: Any) -> tuple[socket.socket, int]:
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)
    threading.Thread(target=script, args=(ls,), daemon=True).start()
    return ls, ls.getsockname()[1]


def _read_request(c: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        got = c.recv(4096)
        if not got:
            break
        data += got
    return data


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_reused_connection_dropped_on_the_request_is_retried_once():
    def script(ls: socket.socket) -> None:
        c1, _ = ls.accept()
        _read_request(c1)
        c1.sendall(OK)                  # keep-alive response
        _read_request(c1)               # the second request arrives ... and is dropped
        c1.close()
        c2, _ = ls.accept()             # the client retries on a fresh connection
        _read_request(c2)
        c2.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nretry")
        c2.close()
    ls, port = _raw_server(script)
    try:
        async def go() -> tuple[bytes, bytes]:
            a = await http.request("GET", f"http://127.0.0.1:{port}/", timeout=3)
            b = await http.request("GET", f"http://127.0.0.1:{port}/", timeout=3)
            return a.body, b.body
        assert run(go()) == (b"ok", b"retry")
    finally:
        ls.close()


def test_fresh_connection_dropped_is_an_error_not_a_retry():
    accepted = []

    def script(ls: socket.socket) -> None:
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            accepted.append(c)
            _read_request(c)
            c.close()
    ls, port = _raw_server(script)
    try:
        with pytest.raises(http.HTTPError) as ei:
            run(http.request("GET", f"http://127.0.0.1:{port}/", timeout=3))
        assert "closed" in str(ei.value)
        assert len(accepted) == 1
    finally:
        ls.close()


def test_interim_1xx_response_is_skipped():
    def script(ls: socket.socket) -> None:
        c, _ = ls.accept()
        _read_request(c)
        c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)
        c.close()
    ls, port = _raw_server(script)
    try:
        r = run(http.request("POST", f"http://127.0.0.1:{port}/", body=b"x", timeout=3))
        assert (r.status, r.body) == (200, b"ok")
    finally:
        ls.close()
