"""Throw-away redis-server processes for tests: one standalone node, or a 3-master cluster.

``RedisServer`` runs the real ``redis-server`` on a free loopback port in a temp dir with
persistence off (``--save '' --appendonly no``); ``stop()`` / ``kill()`` / ``restart()`` keep the
port, which is what outage tests need (a client must find the same server again).
``RedisCluster`` starts three such nodes with ``--cluster-enabled yes``, splits the 16384 slots
between them with ``CLUSTER ADDSLOTSRANGE`` / ``CLUSTER MEET`` and waits for ``cluster_state:ok``
on every node.

Everything is synchronous and bounded (process waits and readiness polls carry deadlines) and
talks RESP over a plain socket (``command()``), so the helpers need neither ``redis-cli`` nor an
event loop and can be called from inside an async test.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from types import TracebackType
from typing import Any, Self

from tests.server_process import ServerProcess, free_port

DEFAULT_BINARY = "/usr/bin/redis-server"
#: cluster bus port = data port + 10000, so cluster data ports are drawn from below 55536
_CLUSTER_PORT_RANGE = (20000, 45000)


def find_redis() -> str | None:
    """Path of a redis-server binary, or None."""
    env = os.environ.get("PYLON_REDIS_BIN")
    for cand in (env, DEFAULT_BINARY, shutil.which("redis-server")):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True



def free_cluster_port(taken: set[int]) -> int:
    """A free port whose cluster-bus twin (port + 10000) is free too."""
    for _ in range(500):
        port = random.randint(*_CLUSTER_PORT_RANGE)
        if port in taken or port + 10000 in taken:
            continue
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for a redis cluster node")


# -- a tiny synchronous RESP client --------------------------------------------------------------
class RespError(Exception):
    """An error reply (``-ERR ...``)."""


def _encode(args: tuple[Any, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def _read_reply(f: Any) -> Any:
    line = f.readline()
    if not line:
        raise ConnectionError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RespError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read_reply(f) for _ in range(n)]
    raise ConnectionError(f"bad RESP line {line!r}")


def command(port: int, *args: Any, host: str = "127.0.0.1", timeout: float = 2.0,
            auth: tuple[str, ...] | None = None, tls: bool = False) -> Any:
    """Send one command on a fresh connection and return the decoded reply (``tls``: over
    TLS without verifying the server -- the helper only needs to talk to its own child)."""
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s, server_hostname=host)
        with s.makefile("rb") as f:
            if auth:
                s.sendall(_encode(("AUTH", *auth)))
                _read_reply(f)
            s.sendall(_encode(args))
            return _read_reply(f)
    finally:
        s.close()


class RedisServer(ServerProcess):
    """One redis-server process; a context manager, or ``start()``/``close()``.

    ``args`` are extra redis-server flags (``["--requirepass", "pw"]``); ``auth`` is what the
    helper itself sends (``("pw",)`` or ``("user", "pw")``) before its own commands.  With
    ``tls=(certfile, keyfile)`` the port speaks TLS only (no client certificates asked).
    """

    def __init__(self, binary: str | None = None, *, args: list[str] | None = None,
                 auth: tuple[str, ...] | None = None, port: int | None = None,
                 tls: tuple[str, str] | None = None, start_timeout: float = 10.0) -> None:
        found = binary or find_redis()
        if found is None:
            raise FileNotFoundError("no redis-server binary (apt-get install redis-server)")
        self.binary = found
        self.args = list(args or [])
        self.auth = auth
        self.tls = tls
        self.start_timeout = start_timeout
        self.port = port or free_port()
        self.tmp = tempfile.mkdtemp(prefix="pylon-redis-")
        self.log_path = os.path.join(self.tmp, "redis.log")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _argv(self) -> list[str]:
        if self.tls:
            cert, key = self.tls
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", cert,
                      "--tls-key-file", key, "--tls-ca-cert-file", cert,
                      "--tls-auth-clients", "no"]
        else:
            listen = ["--port", str(self.port)]
        return [
            self.binary,
            *listen,
            "--bind", "127.0.0.1",
            "--dir", self.tmp,
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", self.log_path,
            "--loglevel", "warning",
            *self.args,
        ]

    def start(self) -> Self:
        """Start (or restart, on the same port) and wait until it answers PING."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        os.makedirs(self.tmp, exist_ok=True)
        self.proc = subprocess.Popen(self._argv(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                     start_new_session=True, cwd=self.tmp)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: "
                                   f"{self.log_tail()}")
            if self.ping():
                return self
            time.sleep(0.02)
        self.kill()
        raise TimeoutError(f"redis-server did not answer within {self.start_timeout}s: "
                           f"{self.log_tail()}")

    def ping(self) -> bool:
        try:
            return self.command("PING", timeout=0.5) == "PONG"
        except (OSError, ConnectionError, RespError):
            return False

    def command(self, *args: Any, timeout: float = 2.0) -> Any:
        return command(self.port, *args, timeout=timeout, auth=self.auth, tls=bool(self.tls))

    def restart(self) -> Self:
        """Stop (if running) and start again on the same port (data is not persisted)."""
        self.stop()
        return self.start()


class RedisCluster:
    """``masters`` cluster-enabled redis-server nodes (no replicas), slots split evenly."""

    SLOTS = 16384

    def __init__(self, masters: int = 3, binary: str | None = None, *,
                 args: list[str] | None = None, ready_timeout: float = 15.0) -> None:
        self.ready_timeout = ready_timeout
        taken: set[int] = set()
        self.nodes: list[RedisServer] = []
        for _ in range(masters):
            port = free_cluster_port(taken)
            taken.update((port, port + 10000))
            self.nodes.append(RedisServer(binary, port=port, args=[
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "2000",
                "--cluster-require-full-coverage", "yes",
                *(args or []),
            ]))

    @property
    def addresses(self) -> list[str]:
        """``["127.0.0.1:port", ...]`` -- APISIX's ``redis_cluster_nodes`` shape."""
        return [n.address for n in self.nodes]

    def start(self) -> Self:
        for n in self.nodes:
            n.start()
        per = self.SLOTS // len(self.nodes)
        for i, n in enumerate(self.nodes):
            first = i * per
            last = self.SLOTS - 1 if i == len(self.nodes) - 1 else first + per - 1
            n.command("CLUSTER", "ADDSLOTSRANGE", first, last)
        for n in self.nodes[1:]:
            n.command("CLUSTER", "MEET", "127.0.0.1", self.nodes[0].port)
        self.wait_ok()
        return self

    def state(self, node: RedisServer) -> str:
        info = node.command("CLUSTER", "INFO").decode()
        fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        return fields.get("cluster_state", "")

    def wait_ok(self) -> None:
        """Every node says ``cluster_state:ok`` and knows all its peers."""
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            try:
                if all(self.state(n) == "ok" and self._known(n) == len(self.nodes)
                       for n in self.nodes):
                    return
            except (OSError, ConnectionError, RespError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"redis cluster not ok within {self.ready_timeout}s")

    def _known(self, node: RedisServer) -> int:
        nodes = node.command("CLUSTER", "NODES").decode()
        return sum(1 for line in nodes.splitlines() if "master" in line and "fail" not in line)

    def slot_owner(self, key: str | bytes) -> RedisServer:
        """The node that serves ``key`` (asks the first node for the key's slot)."""
        slot = self.nodes[0].command("CLUSTER", "KEYSLOT", key)
        per = self.SLOTS // len(self.nodes)
        return self.nodes[min(slot // per, len(self.nodes) - 1)]

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()

    def close(self) -> None:
        for n in self.nodes:
            n.close()

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
