"""A test kit for plugin authors: a real gateway, a real echo upstream, real requests.

::

    from pylon.pdk.testing import Kit

    def test_my_plugin_adds_a_header():
        with Kit({"routes": [{"uri": "/x", "plugins": {"my-plugin": {"v": "1"}}}]},
                 plugin_dirs=["plugins/"]) as kit:
            r = kit.get("/x")
            assert r.status == 200
            assert kit.last_upstream_request()["headers"]["x-my"] == "1"

``Kit`` starts ``pylon start`` in a temporary prefix (one worker, on a free 127.0.0.1 port,
the file store), and an echo upstream in a thread: every route without an upstream gets it.
The echo answers 200 with JSON ``{"method", "path", "headers", "body"}`` of what it received
(the header names lower-cased); a request header ``X-Echo-Delay: 0.5`` makes it answer that
many seconds late (a slow upstream).  ``kit.apply(doc)`` replaces the configuration and waits until
it is live.  Nothing is mocked: the plugin runs in the gateway exactly as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml

__all__ = ["EchoUpstream", "Kit", "MemoryTransport", "Response", "free_port",
           "read_request_body"]


class MemoryTransport(asyncio.Transport):
    """A transport that keeps what is written (``out``): drives a real connection protocol
    (``H1Connection``, ``UpstreamConnection``) without sockets, for tests and benchmarks."""

    def __init__(self, peer: tuple[str, int], sock: tuple[str, int]) -> None:
        super().__init__()
        self.out: list[bytes] = []
        self._extra = {"peername": peer, "sockname": sock, "socket": None}
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Response:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.header_list = headers
        #: lower-case name -> value (the last one when repeated)
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body[:200]!r}>"


def read_request_body(h: BaseHTTPRequestHandler) -> bytes:
    """The whole request body a ``BaseHTTPRequestHandler`` is given (Content-Length or
    chunked, trailers skipped)."""
    if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int(h.rfile.readline().split(b";")[0], 16)
            if size == 0:
                while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return body
            body += h.rfile.read(size)
            h.rfile.readline()
    length = h.headers.get("Content-Length")
    return h.rfile.read(int(length)) if length else b""


class _EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: Any

    def _handle(self) -> None:
        body = read_request_body(self)
        rec = {"method": self.command, "path": self.path,
               "headers": {k.lower(): v for k, v in self.headers.items()},
               "body": body.decode("latin-1")}
        self.server.owner._record(rec)
        self.server.owner.behaviour(self, rec)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _echo(h: BaseHTTPRequestHandler, rec: dict[str, Any]) -> None:
    delay = rec["headers"].get("x-echo-delay")
    if delay:                                   # a slow upstream, on request (at most 10 s)
        with contextlib.suppress(ValueError):
            time.sleep(min(max(float(delay), 0.0), 10.0))
    out = json.dumps(rec).encode()
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(out)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(out)


class EchoUpstream:
    """An HTTP/1.1 origin on 127.0.0.1 recording what it receives."""

    def __init__(self, behaviour: Callable[[BaseHTTPRequestHandler, dict[str, Any]], None]
                 = _echo) -> None:
        self.behaviour = behaviour
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        srv = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
        srv.daemon_threads = True
        srv.owner = self  # type: ignore[attr-defined]
        self.srv = srv
        self.port = srv.server_address[1]
        threading.Thread(target=srv.serve_forever, daemon=True).start()

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _record(self, rec: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(rec)

    def close(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()


class Kit:
    """A gateway running ``doc`` (APISIX standalone layout) with the plugins you test."""

    def __init__(self, doc: dict[str, Any] | None = None, *,
                 plugin_dirs: list[str] | None = None, plugins: list[str] | None = None,
                 node: dict[str, Any] | None = None, workers: int = 1,
                 admin_key: str | None = None, start_timeout: float = 30.0,
                 env: dict[str, str] | None = None) -> None:
        self.prefix = tempfile.mkdtemp(prefix="pylon-kit-")
        self.workers = workers
        self.upstream = EchoUpstream()
        self.port = free_port()
        self.admin_port = free_port() if admin_key else None
        self.admin_key = admin_key
        section: dict[str, Any] = {"node_listen": [{"ip": "127.0.0.1", "port": self.port}],
                                   "workers": workers, "enable_admin": bool(admin_key),
                                   "enable_control": False,
                                   "extra_plugin_dirs": [os.path.abspath(d)
                                                         for d in plugin_dirs or ()]}
        cfg: dict[str, Any] = {
            "pylon": section,
            "nginx_config": {"error_log_level": "info", "worker_shutdown_timeout": "5s"},
            "deployment": {"admin": {"audit_log": None}},
        }
        if admin_key:
            cfg["deployment"]["admin"].update({
                "admin_listen": {"ip": "127.0.0.1", "port": self.admin_port},
                "admin_key": [{"name": "kit", "key": admin_key, "role": "admin"}]})
        if plugins is not None:
            cfg["plugins"] = plugins
        # tests run many gateways at once: no fixed Prometheus port unless a test asks
        cfg["plugin_attr"] = {"prometheus": {"enable_export_server": False}}
        for k, v in (node or {}).items():
            if isinstance(v, dict) and isinstance(cfg.get(k), dict):
                cfg[k].update(v)
            else:
                cfg[k] = v
        os.makedirs(os.path.join(self.prefix, "conf"))
        with open(os.path.join(self.prefix, "conf", "config.yaml"), "w") as f:
            yaml.safe_dump(cfg, f)
        self.doc_path = os.path.join(self.prefix, "conf", "pylon.yaml")
        self.log_path = os.path.join(self.prefix, "stderr.log")
        self._write(doc or {})
        self._logf = open(self.log_path, "ab")  # noqa: SIM115 - closed by close()
        self.proc = subprocess.Popen([sys.executable, "-m", "pylon.cli", "start", "-p",
                                      self.prefix], stdout=self._logf, stderr=self._logf,
                                     start_new_session=True,
                                     env={**os.environ, **env} if env else None)
        deadline = time.monotonic() + start_timeout
        while "pylon started" not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"pylon did not start:\n{self.log()}")
            time.sleep(0.05)

    # -- configuration ---------------------------------------------------------------------
    def _with_upstream(self, doc: dict[str, Any]) -> dict[str, Any]:
        doc = json.loads(json.dumps(doc))
        for i, r in enumerate(doc.get("routes") or []):
            r.setdefault("id", str(i + 1))
            if not ({"upstream", "upstream_id", "service_id"} & set(r)):
                r["upstream"] = {"nodes": {self.upstream.addr: 1}, "type": "roundrobin"}
        for s in doc.get("services") or []:
            if not ({"upstream", "upstream_id"} & set(s)):
                s["upstream"] = {"nodes": {self.upstream.addr: 1}, "type": "roundrobin"}
        return doc

    def _write(self, doc: dict[str, Any]) -> None:
        tmp = self.doc_path + ".tmp"
        with open(tmp, "w") as f:
            yaml.safe_dump(self._with_upstream(doc), f)
            f.write("#END\n")                     # without it the file is not applied
        os.replace(tmp, self.doc_path)

    def apply(self, doc: dict[str, Any], timeout: float = 10.0) -> None:
        """Replace the configuration and wait until every worker serves it (each has
        logged a revision newer than any before the write)."""
        before = max(self._revisions().values(), default=0)
        self._write(doc)
        deadline = time.monotonic() + timeout
        while True:
            revs = self._revisions()
            if len(revs) >= self.workers and all(r > before for r in revs.values()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"config not applied:\n{self.log()[-3000:]}")
            time.sleep(0.02)

    def _revisions(self) -> dict[str, int]:
        """The last revision each worker (by pid) logged as live."""
        out: dict[str, int] = {}
        for m in re.finditer(r" (\d+)#worker \d+: worker \d+: config revision (\d+) live",
                             self.log()):
            out[m.group(1)] = int(m.group(2))
        for pid in list(out):                  # workers that are gone (a test killed them)
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                del out[pid]
        return out

    def log(self) -> str:
        with contextlib.suppress(OSError), \
                open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()
        return ""

    def access_log(self) -> list[str]:
        with contextlib.suppress(OSError), \
                open(os.path.join(self.prefix, "logs", "access.log")) as f:
            return f.read().splitlines()
        return []

    # -- requests --------------------------------------------------------------------------
    def request(self, method: str, path: str, body: bytes | str | dict[str, Any] | None = None,
                headers: dict[str, str] | None = None, timeout: float = 10.0) -> Response:
        hdrs = dict(headers or {})
        if isinstance(body, dict):
            body = json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=hdrs)
            r = c.getresponse()
            return Response(r.status, r.getheaders(), r.read())
        finally:
            c.close()

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Response:
        return self.request("POST", path, body=body, **kw)

    def admin(self, method: str, path: str, body: Any = None) -> Response:
        """A call to the Admin API (``Kit(admin_key=...)``), path under /apisix/admin."""
        assert self.admin_port is not None, "start the kit with admin_key=..."
        c = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=10)
        try:
            c.request(method, "/apisix/admin" + path,
                      body=json.dumps(body) if body is not None else None,
                      headers={"X-API-KEY": self.admin_key or ""})
            r = c.getresponse()
            return Response(r.status, r.getheaders(), r.read())
        finally:
            c.close()

    def last_upstream_request(self) -> dict[str, Any]:
        return self.upstream.requests[-1]

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._logf.close()
        self.upstream.close()
        shutil.rmtree(self.prefix, ignore_errors=True)

    def __enter__(self) -> Kit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
