"""Real clients and servers through the stream proxy: redis-cli to redis-server (plain and
``scheme: tls`` toward a TLS-only Redis), dig to dnsmasq over UDP, UDP sessions per
client, TLS passthrough routed on the ClientHello's SNI (openssl s_client to two TLS
origins), TLS terminated on a ``tls: true`` stream listener with the ``ssls`` objects."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from ..discovery.dnsmasq import Dnsmasq
from ..redis_server import RedisServer
from ..tls.certs import CA, Pem
from .origins import TcpEcho, UdpEcho, free_port, stream_node

needs_redis = pytest.mark.skipif(shutil.which("redis-cli") is None or
                                 shutil.which("redis-server") is None,
                                 reason="redis-server / redis-cli not installed")


@pytest.fixture
def gateway_factory(quick_gateway_factory: Any) -> Any:
    return quick_gateway_factory


def redis_cli(port: int, *args: str) -> str:
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
                         capture_output=True, text=True, timeout=10, check=False)
    return out.stdout.strip()


@needs_redis
def test_redis_cli_through_the_gateway(gateway_factory: Any) -> None:
    with RedisServer() as r:
        port = free_port()
        gateway_factory({"stream_routes": [{"id": 1, "upstream": {
            "type": "roundrobin", "nodes": {r.address: 1}}}]},
            node=stream_node(tcp=[f"127.0.0.1:{port}"], mode="stream"))
        assert redis_cli(port, "SET", "k", "through-pylon") == "OK"
        assert redis_cli(port, "GET", "k") == "through-pylon"
        assert r.command("GET", "k") == b"through-pylon"


@needs_redis
def test_upstream_scheme_tls_reaches_a_tls_only_redis(gateway_factory: Any) -> None:
    d = tempfile.mkdtemp(prefix="pylon-stream-tls-")
    try:
        cert, key = CA().issue("redis.test").files(d, "redis")
        with RedisServer(tls=(cert, key)) as r:
            port = free_port()
            gateway_factory({"stream_routes": [{"id": 1, "upstream": {
                "type": "roundrobin", "scheme": "tls", "nodes": {r.address: 1}}}]},
                node=stream_node(tcp=[f"127.0.0.1:{port}"]))
            assert redis_cli(port, "PING") == "PONG"
            assert redis_cli(port, "ECHO", "over tls") == "over tls"
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig (bind9-dnsutils) not installed")
def test_dig_over_udp_through_the_gateway_to_dnsmasq(gateway_factory: Any) -> None:
    dns = Dnsmasq()
    dns.set_hosts({"db.test": ["10.1.2.3"]}, reload=False)
    with dns:
        port = free_port()
        gateway_factory({"stream_routes": [{"id": 1, "upstream": {
            "type": "roundrobin", "scheme": "udp", "nodes": {dns.server: 1}}}]},
            node=stream_node(udp=[f"127.0.0.1:{port}"]))
        for _ in range(3):
            out = subprocess.run(["dig", "+short", "+tries=1", "+time=3", "-p", str(port),
                                  "@127.0.0.1", "db.test"], capture_output=True, text=True,
                                 timeout=15, check=False)
            assert out.stdout.strip() == "10.1.2.3", out


def test_udp_replies_go_back_to_each_client(gateway_factory: Any) -> None:
    """Two workers: each client's datagrams reach one worker (SO_REUSEPORT hashes the
    address), whose session keeps one node and sends the replies back to that client."""
    a, b = UdpEcho(b"A:"), UdpEcho(b"B:")
    try:
        port = free_port()
        gateway_factory({"stream_routes": [{"id": 1, "upstream": {
            "type": "roundrobin", "nodes": {f"127.0.0.1:{a.port}": 1,
                                            f"127.0.0.1:{b.port}": 1}}}]},
            node=stream_node(udp=[f"127.0.0.1:{port}"]), workers=2)
        clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(8)]
        seen = []
        for i, c in enumerate(clients):
            c.settimeout(5)
            for n in range(3):                   # one session per client: the same node
                c.sendto(b"%d-%d" % (i, n), ("127.0.0.1", port))
                data, _ = c.recvfrom(100)
                assert data.endswith(b"%d-%d" % (i, n))
                seen.append((i, data[:2]))
        by_client = {i: {node for j, node in seen if j == i} for i in range(8)}
        assert all(len(nodes) == 1 for nodes in by_client.values())
        assert {next(iter(v)) for v in by_client.values()} == {b"A:", b"B:"}
        for c in clients:
            c.close()
    finally:
        a.close()
        b.close()


# ------------------------------------------------------------------------------ TLS
class TlsOrigin:
    """A TLS server answering ``name`` then closing (its own certificate)."""

    def __init__(self, pem: Pem, name: bytes) -> None:
        import ssl
        self.d = tempfile.mkdtemp(prefix="pylon-tls-origin-")
        cert, key = pem.files(self.d, "o")
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.name = name
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.ctx.wrap_socket(c, server_side=True) as t:
                    t.sendall(self.name)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self.d, ignore_errors=True)


@pytest.fixture
def ca() -> CA:
    return CA()


@pytest.fixture
def tls_origins(ca: CA) -> Iterator[dict[str, TlsOrigin]]:
    o = {"a": TlsOrigin(ca.issue("a.test"), b"origin-a"),
         "b": TlsOrigin(ca.issue("b.test", ["b.test", "x.b.test"]), b"origin-b")}
    yield o
    for v in o.values():
        v.close()


def s_client(port: int, servername: str | None) -> str:
    args = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-quiet",
            "-verify_quiet"]
    if servername:
        args += ["-servername", servername]
    out = subprocess.run(args, input=b"", capture_output=True, timeout=15, check=False)
    return out.stdout.decode(errors="replace")


def test_tls_passthrough_is_routed_on_the_client_hello_sni(
        gateway_factory: Any, tls_origins: dict[str, TlsOrigin]) -> None:
    port = free_port()
    a, b = tls_origins["a"], tls_origins["b"]
    fallback = TcpEcho(b"plain")
    try:
        gateway_factory({"stream_routes": [
            {"id": "1", "sni": "a.test", "upstream": {
                "type": "roundrobin", "nodes": {f"127.0.0.1:{a.port}": 1}}},
            {"id": "2", "sni": "*.b.test", "upstream": {
                "type": "roundrobin", "nodes": {f"127.0.0.1:{b.port}": 1}}},
            {"id": "3", "upstream": {"type": "roundrobin", "nodes": {fallback.addr: 1}}}]},
            node=stream_node(tcp=[f"127.0.0.1:{port}"]))
        assert "origin-a" in s_client(port, "a.test")
        assert "origin-b" in s_client(port, "x.b.test")
        # no route for the name: the routes without sni decide (here: a plain echo)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"not tls")
            assert s.recv(5) == b"plain"
    finally:
        fallback.close()


def test_tls_terminated_on_a_stream_listener_with_the_ssls_objects(
        gateway_factory: Any, ca: CA) -> None:
    import ssl
    port = free_port()
    o = TcpEcho(b"clear:")
    pem = ca.issue("db.test")
    try:
        gateway_factory({
            "ssls": [{"id": "1", "cert": pem.cert, "key": pem.key, "snis": ["db.test"]}],
            "stream_routes": [{"id": "1", "sni": "db.test", "upstream": {
                "type": "roundrobin", "nodes": {o.addr: 1}}}]},
            node=stream_node(tcp=[{"addr": f"127.0.0.1:{port}", "tls": True}]))
        ctx = ssl.create_default_context(cadata=ca.pem)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname="db.test") as t:
            t.sendall(b"hi")
            got = b""
            while len(got) < 8:
                got += t.recv(100)
            assert got == b"clear:hi"
        assert o.peers                            # the origin saw clear text
    finally:
        o.close()


def test_idle_udp_session_expires_after_the_upstream_read_timeout(
        gateway_factory: Any) -> None:
    """A client's session keeps its node while active; once idle for ``timeout.read`` it
    ends, and the next datagram starts a new session (round robin: the other node)."""
    import time
    a, b = UdpEcho(b"A:"), UdpEcho(b"B:")
    try:
        port = free_port()
        gateway_factory({"stream_routes": [{"id": 1, "upstream": {
            "type": "roundrobin", "timeout": {"connect": 1, "send": 1, "read": 1},
            "nodes": {f"127.0.0.1:{a.port}": 1, f"127.0.0.1:{b.port}": 1}}}]},
            node=stream_node(udp=[f"127.0.0.1:{port}"]))
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.settimeout(5)
        got = []
        for _ in range(4):                      # active: one session, one node
            c.sendto(b"q", ("127.0.0.1", port))
            got.append(c.recvfrom(100)[0][:2])
            time.sleep(0.3)
        assert len(set(got)) == 1
        time.sleep(2.0)                         # idle beyond timeout.read
        c.sendto(b"q", ("127.0.0.1", port))
        assert c.recvfrom(100)[0][:2] != got[0]
        c.close()
    finally:
        a.close()
        b.close()
