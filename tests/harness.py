"""Test harness: a real Pylon (master + workers) and real upstream servers on loopback.

``Gateway`` writes a prefix directory with ``conf/config.yaml`` and ``conf/pylon.yaml`` and runs
``python -m pylon.cli start`` as a subprocess; ``Upstream`` is a small threaded HTTP/1.1 origin
whose behaviour each test chooses.  Everything binds 127.0.0.1 on free ports and is stopped by
the fixtures, also when a test fails.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import yaml

from pylon.pdk.testing import free_port


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


from pylon.pdk.testing import read_request_body  # noqa: E402


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    # headers and body go out in separate writes: without TCP_NODELAY a reused keep-alive
    # connection waits out the client's 40 ms delayed ACK on every response
    disable_nagle_algorithm = True

    def _handle(self) -> None:
        body = read_request_body(self)
        self.server.owner.record(self, body)
        self.server.owner.behaviour(self, body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # (socketserver's 5: a gateway opening 100 upstream connections at once -- 100 HTTP/2
    # streams -- overflows it on a loaded machine and waits out SYN retransmits)
    request_queue_size = 128
    owner: Upstream


def echo(h: BaseHTTPRequestHandler, body: bytes) -> None:
    """Default behaviour: 200 with a JSON echo of the request and the upstream's name."""
    out = json.dumps({"method": h.command, "path": h.path, "headers": dict(h.headers.items()),
                      "body": body.decode("latin-1"), "upstream": h.server.owner.name}).encode()
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(out)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(out)


class Upstream:
    """A real HTTP/1.1 origin on 127.0.0.1; ``behaviour(handler, body)`` answers."""

    def __init__(self, name: str = "u", behaviour: Callable[..., None] = echo,
                 port: int | None = None) -> None:
        self.name = name
        self.behaviour = behaviour
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.srv = _Server(("127.0.0.1", port or 0), _Handler)
        self.srv.owner = self
        self.port = self.srv.server_address[1]
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def record(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        with self._lock:
            self.requests.append({"method": h.command, "path": h.path,
                                  "headers": {k.lower(): v for k, v in h.headers.items()},
                                  "body": body})

    def close(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()


class Gateway:
    """A real ``pylon start`` in a temporary prefix."""

    def __init__(self, tmp: str, routes_doc: dict[str, Any] | None = None, workers: int = 1,
                 node: dict[str, Any] | None = None, http: dict[str, Any] | None = None,
                 http2: bool = False) -> None:
        self.prefix = tmp
        self.port = free_port()
        self.workers = workers
        os.makedirs(os.path.join(tmp, "conf"), exist_ok=True)
        self.conf_path = os.path.join(tmp, "conf", "config.yaml")
        self.doc_path = os.path.join(tmp, "conf", "pylon.yaml")
        listen: dict[str, Any] = {"ip": "127.0.0.1", "port": self.port}
        if http2:                       # h2c on the listener (node_listen enable_http2)
            listen["enable_http2"] = True
        node_cfg: dict[str, Any] = {
            "pylon": {"node_listen": [listen],
                      "enable_admin": False, "workers": workers, "enable_control": False},
            "nginx_config": {"error_log_level": "info", "worker_shutdown_timeout": "10s",
                             "http": dict(http or {})},
            # many gateways run at once: no fixed Prometheus port unless a test asks
            "plugin_attr": {"prometheus": {"enable_export_server": False}},
        }
        for k, v in (node or {}).items():
            node_cfg.setdefault(k, {}).update(v) if isinstance(v, dict) else node_cfg.update({k: v})
        self.node_cfg = node_cfg
        with open(self.conf_path, "w") as f:
            yaml.safe_dump(node_cfg, f)
        self.write(routes_doc or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = os.path.join(tmp, "stderr.log")

    def write(self, doc: dict[str, Any] | str) -> None:
        """Replace the standalone file atomically (as an editor or a deploy would), ending
        with APISIX's ``#END`` (added when missing: without it the file is not applied)."""
        text = doc if isinstance(doc, str) else yaml.safe_dump(doc)
        if not text.rstrip().endswith("#END"):
            text += "#END\n"
        tmp = self.doc_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.doc_path)

    def start(self, wait: bool = True) -> Gateway:
        # kept open for the child's lifetime (closed in stop())
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self._log_from = self._log.tell()      # a restart waits for its own "started" line
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pylon.cli", "start", "-p", self.prefix],
            stdout=self._log, stderr=self._log, start_new_session=True)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"pylon exited with {self.proc.returncode}:\n{self.log()}")
            if "pylon started" in self.log()[getattr(self, "_log_from", 0):]:
                return
            time.sleep(0.05)
        raise TimeoutError(f"pylon did not start:\n{self.log()}")

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return open(self.log_path, encoding="utf-8", errors="replace").read()
        return ""

    def access_log(self) -> list[str]:
        with contextlib.suppress(OSError):
            return open(os.path.join(self.prefix, "logs", "access.log")).read().splitlines()
        return []

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                             check=False, text=True)
        return [int(p) for p in out.stdout.split()]

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()
        return self.proc.returncode

    # -- clients -----------------------------------------------------------------------
    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 10.0
                ) -> tuple[int, dict[str, str], bytes]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def get(self, path: str, **kw: Any) -> tuple[int, dict[str, str], bytes]:
        return self.request("GET", path, **kw)

    def raw(self, data: bytes, timeout: float = 5.0, read_until_close: bool = True) -> bytes:
        """Send raw bytes; return everything the gateway answers until it closes/timeout."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            s.sendall(data)
            chunks = []
            with contextlib.suppress(socket.timeout, ConnectionResetError):
                while True:
                    b = s.recv(65536)
                    if not b:
                        break
                    chunks.append(b)
                    if not read_until_close:
                        break
            return b"".join(chunks)
        finally:
            s.close()


def route_doc(upstreams: list[Upstream] | None = None, **route: Any) -> dict[str, Any]:
    """A standalone document with one route ``r1`` on ``uri`` to the given upstreams."""
    ups = upstreams or []
    r = {"id": "r1", "uri": "/*"}
    r.update(route)
    if ups and "upstream" not in r and "upstream_id" not in r:
        r["upstream"] = {"nodes": {u.addr: 1 for u in ups}, "type": "roundrobin"}
    return {"routes": [r]}


# =====================================================================================
# Additions for the wire / behaviour suites (HTTP/1.1, smuggling, limits, upstream,
# streaming).  Everything below is new; nothing above is changed.
# =====================================================================================
import ssl  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402


class Response:
    """One HTTP response as read off a socket by ``HTTPReader``."""

    def __init__(self, version: str, status: int, reason: str,
                 headers: list[tuple[str, str]], body: bytes, raw_head: bytes,
                 chunked: bool, trailers: list[tuple[str, str]] | None = None) -> None:
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.raw_head = raw_head
        self.chunked = chunked
        self.trailers = trailers or []

    def header(self, name: str) -> str | None:
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def header_all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def names(self) -> set[str]:
        return {n.lower() for n, _ in self.headers}

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.headers} {self.body[:80]!r}>"


class HTTPReader:
    """Reads HTTP/1.x responses one after another from a socket (pipelining-safe: one
    buffered reader for the whole connection).  ``head=True`` for a response to HEAD."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.f = sock.makefile("rb")

    def _line(self) -> bytes:
        line = self.f.readline(65537)
        if not line:
            raise EOFError("connection closed")
        return line

    def response(self, head: bool = False, interim: bool = False) -> Response:
        """The next response; 1xx responses are skipped unless ``interim``."""
        while True:
            raw = [self._line()]
            version, _, rest = raw[0].decode("latin-1").rstrip("\r\n").partition(" ")
            code, _, reason = rest.partition(" ")
            status = int(code)
            headers: list[tuple[str, str]] = []
            while True:
                line = self._line()
                raw.append(line)
                if line in (b"\r\n", b"\n"):
                    break
                n, _, v = line.decode("latin-1").partition(":")
                headers.append((n.strip(), v.strip()))
            raw_head = b"".join(raw)
            if 100 <= status < 200:
                if interim:
                    return Response(version, status, reason, headers, b"", raw_head, False)
                continue
            break
        lower = {n.lower(): v for n, v in headers}
        te = lower.get("transfer-encoding", "").lower()
        trailers: list[tuple[str, str]] = []
        if head or status in (204, 304):
            body = b""
        elif te == "chunked":
            parts = []
            while True:
                size = int(self._line().split(b";")[0].strip(), 16)
                if size == 0:
                    while True:
                        line = self._line()
                        if line in (b"\r\n", b"\n"):
                            break
                        n, _, v = line.decode("latin-1").partition(":")
                        trailers.append((n.strip(), v.strip()))
                    break
                parts.append(self.f.read(size))
                self._line()
            body = b"".join(parts)
        elif "content-length" in lower:
            n = int(lower["content-length"])
            body = self.f.read(n)
            if len(body) != n:
                raise EOFError(f"short body: {len(body)} of {n}")
        else:
            body = self.f.read()            # close-delimited
        return Response(version, status, reason, headers, body, raw_head, te == "chunked",
                        trailers)

    def at_eof(self, timeout: float = 3.0) -> bool:
        """True when the peer closed (no more bytes) within ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            return self.f.read(1) == b""
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True


def connect(gw: Gateway, timeout: float = 5.0) -> tuple[socket.socket, HTTPReader]:
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=timeout)
    return s, HTTPReader(s)


def parse_responses(data: bytes, heads: tuple[bool, ...] = ()) -> list[Response]:
    """Every complete response in ``data`` (e.g. what ``Gateway.raw`` returned)."""
    r, w = socket.socketpair()
    try:
        w.sendall(data)
        w.close()
        reader = HTTPReader(r)
        out: list[Response] = []
        i = 0
        while True:
            try:
                out.append(reader.response(head=heads[i] if i < len(heads) else False))
            except (EOFError, ValueError):
                return out
            i += 1
    finally:
        r.close()


def error_json(data: bytes) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of the single error response in ``data``."""
    resps = parse_responses(data)
    assert len(resps) == 1, f"expected exactly one response, got {len(resps)}: {data!r}"
    return resps[0].status, resps[0].json()


# -- node lists -------------------------------------------------------------------------
def node(port: int, weight: int = 1, priority: int = 0, host: str = "127.0.0.1") -> dict[str, Any]:
    """A list-form upstream node (list form keeps the order; YAML sorts mapping keys)."""
    return {"host": host, "port": port, "weight": weight, "priority": priority}


def dead_port() -> int:
    """A loopback port with nothing listening (connect is refused)."""
    return free_port()


# -- behaviours ----------------------------------------------------------------------------
def echo_peer(h: BaseHTTPRequestHandler, body: bytes) -> None:
    """``echo``, and remember the gateway-side port of the connection it came on."""
    owner = h.server.owner
    with owner._lock:
        owner.__dict__.setdefault("peer_ports", []).append(h.client_address[1])
    echo(h, body)


def respond(status: int = 200, headers: list[tuple[str, str]] | None = None,
            body: bytes = b"", content_length: bool = True,
            close: bool | None = None) -> Callable[..., None]:
    """A behaviour answering a fixed response (raw header list, so hop-by-hop names and
    duplicates go out as given).  Without ``content_length`` the body is close-delimited
    and the connection closes, unless ``close=False`` (for bodiless 204/304)."""
    if close is None:
        close = not content_length
    def behaviour(h: BaseHTTPRequestHandler, _body: bytes) -> None:
        out = [f"HTTP/1.1 {status} X\r\n".encode()]
        for n, v in headers or []:
            out.append(f"{n}: {v}\r\n".encode())
        if content_length:
            out.append(b"Content-Length: %d\r\n" % len(body))
        out.append(b"\r\n")
        h.wfile.write(b"".join(out) + (body if h.command != "HEAD" else b""))
        h.wfile.flush()
        if close:
            h.close_connection = True
    return behaviour


def chunked_response(chunks: list[bytes], trailers: list[tuple[str, str]] | None = None,
                     headers: list[tuple[str, str]] | None = None) -> Callable[..., None]:
    """A behaviour answering 200 with a chunked body, one write per chunk."""
    def behaviour(h: BaseHTTPRequestHandler, _body: bytes) -> None:
        h.send_response(200)
        for n, v in headers or []:
            h.send_header(n, v)
        h.send_header("Transfer-Encoding", "chunked")
        if trailers:
            h.send_header("Trailer", ", ".join(n for n, _ in trailers))
        h.end_headers()
        for c in chunks:
            h.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
            h.wfile.flush()
        tail = b"".join(f"{n}: {v}\r\n".encode() for n, v in trailers or [])
        h.wfile.write(b"0\r\n" + tail + b"\r\n")
    return behaviour


def hang(release: threading.Event, limit: float = 10.0) -> Callable[..., None]:
    """A behaviour that answers only after ``release`` is set (or ``limit`` seconds)."""
    def behaviour(h: BaseHTTPRequestHandler, body: bytes) -> None:
        release.wait(limit)
        with contextlib.suppress(OSError):
            echo(h, body)
    return behaviour


def hang_up(h: BaseHTTPRequestHandler, _body: bytes) -> None:
    """Read the whole request, then close the connection without answering."""
    h.close_connection = True
    with contextlib.suppress(OSError):
        h.connection.shutdown(socket.SHUT_RDWR)


# -- origins that read the body themselves, and TLS origins --------------------------------
class _StreamHandler(_Handler):
    """Like ``_Handler`` but the behaviour gets ``body=None`` and reads ``rfile`` itself."""

    def setup(self) -> None:
        super().setup()
        # head and body are separate writes: without NODELAY, Nagle + the peer's delayed
        # ACK add 40 ms to every response
        with contextlib.suppress(OSError):
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()

    def _handle(self) -> None:
        owner = self.server.owner
        if owner.read_body:
            super()._handle()
            return
        owner.record(self, b"")
        owner.behaviour(self, None)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle


class _QuietServer(_Server):
    """Connection errors in a behaviour (the gateway hung up on purpose) are expected in
    these tests; anything else is still printed."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, ssl.SSLError, socket.timeout, ValueError)):
            return
        super().handle_error(request, client_address)


class Origin(Upstream):
    """An ``Upstream`` that may be TLS (``ssl_context``) and may leave the request body to
    the behaviour (``read_body=False``: the behaviour is called with ``body=None``)."""

    def __init__(self, name: str = "o", behaviour: Callable[..., None] = echo,
                 port: int | None = None, *, read_body: bool = True,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.name = name
        self.behaviour = behaviour
        self.read_body = read_body
        self.requests = []
        self._lock = threading.Lock()
        self.counted: list[int] = []
        self.srv = _QuietServer(("127.0.0.1", port or 0), _StreamHandler)
        if ssl_context is not None:
            self.srv.socket = ssl_context.wrap_socket(
                self.srv.socket, server_side=True, do_handshake_on_connect=False)
        self.srv.owner = self
        self.port = self.srv.server_address[1]
        # a short poll interval: ``close`` (``shutdown``) returns within 20 ms, not 0.5 s
        self.thread = threading.Thread(target=self.srv.serve_forever, args=(0.02,),
                                       daemon=True)
        self.thread.start()


T = TypeVar("T")


def closing_factory(cls: Callable[..., T]) -> Iterator[Callable[..., T]]:
    """A fixture body: yields ``make(*a, **kw)`` building ``cls`` objects, and closes every
    one it made when the test ends (``yield from closing_factory(Upstream)``)."""
    made: list[Any] = []

    def make(*a: Any, **kw: Any) -> T:
        o = cls(*a, **kw)
        made.append(o)
        return o

    try:
        yield make
    finally:
        for o in made:
            o.close()


@pytest.fixture
def origin_factory() -> Iterator[Callable[..., Origin]]:
    """Like ``upstream_factory`` for ``Origin`` (import this fixture into a test module)."""
    yield from closing_factory(Origin)


BLOCK = bytes(range(256)) * 256          # 64 KiB of a known pattern


def counter(delay: float = 0.0) -> Callable[..., None]:
    """Streaming sink: read the request body in 64 KiB pieces (Content-Length or chunked),
    count it without storing it, answer ``{"received": n}``.  ``delay`` seconds of sleep
    after every piece make a slow upstream (for flow-control tests)."""
    def read(h: BaseHTTPRequestHandler, n: int) -> int:
        got = len(h.rfile.read(n))
        if delay:
            time.sleep(delay)
        return got

    def behaviour(h: BaseHTTPRequestHandler, _body: None) -> None:
        n = 0
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(h.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                while size:
                    got = read(h, min(size, 65536))
                    if not got:
                        raise ConnectionError("short chunk")
                    n += got
                    size -= got
                h.rfile.readline()
        else:
            left = int(h.headers.get("Content-Length") or 0)
            while left:
                got = read(h, min(left, 65536))
                if not got:
                    break
                n += got
                left -= got
        owner = h.server.owner
        with owner._lock:
            owner.counted.append(n)
        out = json.dumps({"received": n}).encode()
        h.send_response(200)
        h.send_header("Content-Length", str(len(out)))
        h.end_headers()
        h.wfile.write(out)
    return behaviour


count_body = counter()


def generate_body(total: int, chunked: bool = False) -> Callable[..., None]:
    """Streaming source: answer ``total`` bytes of ``BLOCK`` made lazily, 64 KiB per write,
    with Content-Length or chunked."""
    def behaviour(h: BaseHTTPRequestHandler, _body: Any) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        if chunked:
            h.send_header("Transfer-Encoding", "chunked")
        else:
            h.send_header("Content-Length", str(total))
        h.end_headers()
        left = total
        view = memoryview(BLOCK)
        while left:
            piece = view[:min(left, len(BLOCK))]
            if chunked:
                h.wfile.write(b"%x\r\n" % len(piece))
                h.wfile.write(piece)
                h.wfile.write(b"\r\n")
            else:
                h.wfile.write(piece)
            left -= len(piece)
        if chunked:
            h.wfile.write(b"0\r\n\r\n")
    return behaviour


# -- TLS material ----------------------------------------------------------------------------
def self_signed_cert(directory: str | None = None) -> tuple[str, str]:
    """(certfile, keyfile) for CN=localhost / 127.0.0.1, made with ``cryptography`` or the
    ``openssl`` command; ``pytest.skip`` when neither is available."""
    d = directory or tempfile.mkdtemp(prefix="pylon-tls-")
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    try:
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        import shutil
        if shutil.which("openssl") is None:
            pytest.skip("neither cryptography nor openssl is available")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True, timeout=30)
        return cert, key
    pk = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    c = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
         .public_key(pk.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=2))
         .add_extension(x509.SubjectAlternativeName(
             [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
             critical=False)
         .sign(pk, hashes.SHA256()))
    with open(cert, "wb") as f:
        f.write(c.public_bytes(serialization.Encoding.PEM))
    with open(key, "wb") as f:
        f.write(pk.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption()))
    return cert, key


def server_tls_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certfile, keyfile)
    return ctx


# -- processes ---------------------------------------------------------------------------
def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (``VmRSS`` from /proc); 0 when the process is gone."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class RSSSampler:
    """Samples the peak RSS of some pids in a thread while a transfer runs."""

    def __init__(self, pids: list[int], interval: float = 0.02) -> None:
        self.pids = pids
        self.interval = interval
        self.baseline = {p: rss_bytes(p) for p in pids}
        self.peak = dict(self.baseline)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for p in self.pids:
                self.peak[p] = max(self.peak[p], rss_bytes(p))
            self._stop.wait(self.interval)

    def __enter__(self) -> RSSSampler:
        self._t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._t.join(5)
        for p in self.pids:
            self.peak[p] = max(self.peak[p], rss_bytes(p))

    def growth(self) -> int:
        return max(self.peak[p] - self.baseline[p] for p in self.pids)


# -- gateways that stop in the background ---------------------------------------------------
_STOPPING: list[Gateway] = []


def _reap(block: bool) -> None:
    """Finish stopping gateways sent SIGTERM earlier (all of them when ``block``)."""
    for g in list(_STOPPING):
        assert g.proc is not None
        if block or g.proc.poll() is not None:
            g.stop()
            _STOPPING.remove(g)


import atexit  # noqa: E402

atexit.register(_reap, True)


@pytest.fixture
def quick_gateway_factory(tmp_path: Any) -> Iterator[Callable[..., Gateway]]:
    """``gateway_factory`` whose teardown does not wait for the gateway to exit: it sends
    SIGTERM and the process is reaped by a later teardown (or at exit), which saves the
    drain/exit time of every test.  A test module opts in with::

        @pytest.fixture
        def gateway_factory(quick_gateway_factory):
            return quick_gateway_factory
    """
    made: list[Gateway] = []

    def make(doc: dict[str, Any] | None = None, start: bool = True, **kw: Any) -> Gateway:
        d = tmp_path / f"gw{len(made)}"
        d.mkdir()
        g = Gateway(str(d), doc, **kw)
        made.append(g)
        if start:
            g.start()
        return g

    yield make
    _reap(False)
    for g in made:
        if g.proc is None:
            continue
        if g.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                g.proc.send_signal(signal.SIGTERM)
            _STOPPING.append(g)
        else:
            g.stop()
    if len(_STOPPING) > 4:          # never let many pile up
        _reap(True)
