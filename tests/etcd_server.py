"""A throw-away single-node etcd for tests and benchmarks.

``EtcdServer`` runs the real ``etcd`` binary on two free loopback ports (client + peer) with a
temporary data dir, so tests exercise the wire protocol, compaction and restarts for real.
``stop()``/``start()`` keep the ports and the data dir, which is what restart tests need: the
store's watch must find the same server (and its history) again at the same address.

Everything here is synchronous and bounded: process waits and readiness polls all carry
deadlines.  Admin calls (``compact``, ``enable_auth``) go through etcd's JSON gateway
(``/v3/...``, built into etcd 3.4+) with ``urllib``, so the helper needs neither ``etcdctl``
nor an event loop -- it can be called from inside an async test.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any

from tests.server_process import ServerProcess, free_port

#: where ``scripts/test`` (apt ``etcd-server``) puts it; PATH is searched as well
DEFAULT_BINARY = "/usr/bin/etcd"


def find_etcd() -> str | None:
    """Path of an etcd server binary, or None."""
    env = os.environ.get("PYLON_ETCD_BIN")
    for cand in (env, DEFAULT_BINARY, shutil.which("etcd")):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None



def b64(data: str | bytes) -> str:
    """The JSON gateway carries keys and values as base64."""
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


class EtcdServer(ServerProcess):
    """One etcd process; use as a context manager or call ``start()``/``close()``.

    ``tls`` (optional) is a dict ``{"cert": path, "key": path, "ca": path}``: the server then
    serves https and, with ``ca``, requires client certificates signed by it.  The helper's
    own calls trust ``ca`` and present ``client_cert``/``client_key`` when given.
    """

    def __init__(self, binary: str | None = None, *, tls: dict[str, str] | None = None,
                 args: list[str] | None = None, start_timeout: float = 15.0) -> None:
        found = binary or find_etcd()
        if found is None:
            raise FileNotFoundError("no etcd binary (apt-get install etcd-server)")
        self.binary = found
        self.tls = tls
        #: extra etcd flags (``["--auth-token-ttl", "1"]`` ...)
        self.args = list(args or [])
        self.start_timeout = start_timeout
        self.client_port = free_port()
        self.peer_port = free_port()
        while self.peer_port == self.client_port:
            self.peer_port = free_port()
        self.tmp = tempfile.mkdtemp(prefix="pylon-etcd-")
        self.data_dir = os.path.join(self.tmp, "data")
        self.log_path = os.path.join(self.tmp, "etcd.log")
        self.proc: subprocess.Popen[bytes] | None = None
        #: set by ``enable_auth`` so the gateway helpers keep working afterwards
        self._auth: tuple[str, str] | None = None

    # -- addresses ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    # -- lifecycle ---------------------------------------------------------------------------
    def _argv(self) -> list[str]:
        argv = [
            self.binary,
            "--name", "pylon-test",
            "--data-dir", self.data_dir,
            "--listen-client-urls", self.url,
            "--advertise-client-urls", self.url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", f"pylon-test={self.peer_url}",
            "--initial-cluster-state", "new",
            # a single member elects itself: short ticks make (re)starts take ~100 ms
            "--heartbeat-interval", "20",
            "--election-timeout", "200",
            "--logger", "zap",
            "--log-level", "error",
            "--log-outputs", "stderr",
        ]
        if self.tls:
            argv += ["--cert-file", self.tls["cert"], "--key-file", self.tls["key"]]
            if self.tls.get("ca"):
                argv += ["--trusted-ca-file", self.tls["ca"], "--client-cert-auth"]
        return argv + self.args

    def start(self) -> EtcdServer:
        """Start (or restart, on the same ports and data dir) and wait until it answers."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        os.makedirs(self.tmp, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self._argv(), stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.proc.returncode}: {self.log_tail()}")
            if self._healthy():
                return self
            time.sleep(0.05)
        self.kill()
        raise TimeoutError(f"etcd did not answer within {self.start_timeout}s: {self.log_tail()}")

    def _healthy(self) -> bool:
        """The member answers a linearizable read (``/health`` does one), i.e. it has a
        leader; with auth enabled ``/health`` may say false, so a 401/503 with a JSON body
        from a live server also counts once the port answers gRPC-gateway calls."""
        try:
            body = self._http("GET", "/health", None, timeout=1.0)
            return body.get("health") in ("true", True)
        except urllib.error.HTTPError as e:
            return self._auth is not None and e.code in (401, 503)
        except (OSError, ValueError):
            return False


    # -- JSON gateway ------------------------------------------------------------------------
    def _http(self, method: str, path: str, body: dict[str, Any] | None, *,
              timeout: float = 5.0, token: str | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", token)
        with urllib.request.urlopen(req, timeout=timeout, context=self._ssl()) as resp:
            out = json.loads(resp.read() or b"{}")
        return out if isinstance(out, dict) else {}

    def _ssl(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        ctx = ssl.create_default_context(cafile=self.tls.get("ca") or None)
        ctx.check_hostname = False            # we dial 127.0.0.1 whatever the cert names
        if not self.tls.get("ca"):
            ctx.verify_mode = ssl.CERT_NONE
        if self.tls.get("client_cert"):
            ctx.load_cert_chain(self.tls["client_cert"], self.tls.get("client_key"))
        return ctx

    def call(self, path: str, body: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        """POST ``body`` to a gateway endpoint (``/v3/kv/put`` ...), authenticated as the
        root user once ``enable_auth`` ran."""
        token = None
        if self._auth is not None:
            user, password = self._auth
            token = self._http("POST", "/v3/auth/authenticate",
                               {"name": user, "password": password}, timeout=timeout)["token"]
        return self._http("POST", path, body, timeout=timeout, token=token)

    def put(self, key: str, value: str | bytes) -> int:
        """Write a raw value; returns the revision."""
        out = self.call("/v3/kv/put", {"key": b64(key), "value": b64(value)})
        return int(out["header"]["revision"])

    def revision(self) -> int:
        out = self.call("/v3/kv/range", {"key": b64("\0"), "count_only": True})
        return int(out["header"]["revision"])

    def compact(self, revision: int | None = None) -> int:
        """Compact the history up to ``revision`` (default: the current one); returns it."""
        rev = self.revision() if revision is None else revision
        self.call("/v3/kv/compaction", {"revision": rev, "physical": True}, timeout=10.0)
        return rev

    def enable_auth(self, user: str = "root", password: str = "pylon-secret") -> None:
        """Create ``user`` with the root role and turn authentication on (as an operator
        would with ``etcdctl user add root && etcdctl auth enable``)."""
        if user != "root":
            raise ValueError("only the root user is supported by this helper")
        self.call("/v3/auth/user/add", {"name": user, "password": password})
        self.call("/v3/auth/role/add", {"name": "root"})
        self.call("/v3/auth/user/grant", {"user": user, "role": "root"})
        self.call("/v3/auth/enable", {})
        self._auth = (user, password)
