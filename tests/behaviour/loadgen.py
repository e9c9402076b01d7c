"""Client load for reload/restart tests: threads looping requests, every failure recorded.

``fresh`` threads open a new connection per request (any error is a failure).  ``keepalive``
threads reuse one connection; when a *reused* connection turns out to be closed before any
byte of the response arrived, the request is retried once on a new connection, as HTTP/1.1
clients do for idempotent requests (RFC 9112 §9.3.1) — the gateway may close an idle
keep-alive connection at any time, e.g. when a draining worker exits.  A failure is anything
else: an error on a fresh connection, a failed retry, or a status other than ``expect``.
"""

from __future__ import annotations

import http.client
import threading
import time
from typing import Any


class Load:
    def __init__(self, port: int, path: str = "/", fresh: int = 2, keepalive: int = 2,
                 expect: tuple[int, ...] = (200,), timeout: float = 10.0) -> None:
        self.port = port
        self.path = path
        self.expect = expect
        self.timeout = timeout
        self.ok = 0
        self.failures: list[str] = []
        self.statuses: dict[int, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.threads = [threading.Thread(target=self._fresh, daemon=True) for _ in range(fresh)]
        self.threads += [threading.Thread(target=self._keepalive, daemon=True)
                         for _ in range(keepalive)]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self.threads:
            t.join(self.timeout + 5)

    def wait_for(self, n: int, timeout: float = 10.0) -> None:
        """Block until ``n`` requests succeeded in total (proves the load is running)."""
        deadline = time.monotonic() + timeout
        while self.ok < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.ok >= n, f"load did not get going: {self.summary()}"

    def summary(self) -> str:
        return f"ok={self.ok} statuses={self.statuses} failures={self.failures[:5]}"

    def _record(self, status: int | None, error: str | None) -> None:
        with self._lock:
            if status is not None:
                self.statuses[status] = self.statuses.get(status, 0) + 1
            if error is None and status in self.expect:
                self.ok += 1
            else:
                self.failures.append(error or f"status {status}")

    def _conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)

    def _once(self, c: http.client.HTTPConnection) -> int:
        c.request("GET", self.path)
        r = c.getresponse()
        r.read()
        if r.will_close:
            c.close()
        return r.status

    def _fresh(self) -> None:
        while not self._stop.is_set():
            c = self._conn()
            try:
                self._record(self._once(c), None)
            except Exception as e:  # noqa: BLE001 - every failure counts
                self._record(None, f"fresh: {e!r}")
            finally:
                c.close()

    def _keepalive(self) -> None:
        c = self._conn()
        used = False
        while not self._stop.is_set():
            try:
                status = self._once(c)
                used = c.sock is not None
                self._record(status, None)
                continue
            except (http.client.RemoteDisconnected, ConnectionResetError,
                    BrokenPipeError) as e:
                c.close()
                if not used:
                    self._record(None, f"keepalive (new connection): {e!r}")
                    used = False
                    continue
            except Exception as e:  # noqa: BLE001
                c.close()
                self._record(None, f"keepalive: {e!r}")
                used = False
                continue
            # the reused connection was closed by the server: retry once on a new one
            c = self._conn()
            try:
                status = self._once(c)
                used = c.sock is not None
                self._record(status, None)
            except Exception as e:  # noqa: BLE001
                c.close()
                used = False
                self._record(None, f"keepalive retry: {e!r}")
        c.close()
