"""Client traffic with figures, for the fault tests and the soak.

``Traffic`` runs client threads against a gateway until stopped (or for a number of requests
each).  Every request is counted in a ``Tally``: *sent*, *ok* (a status the test expects),
*failed* (an answer with another status) and *lost* (no answer at all: reset, early close,
timeout).  A thread uses a keep-alive connection or a fresh connection per request; on a
*reused* connection that the gateway closed before any byte of the answer came back, an
idempotent request is sent once more on a new connection, as HTTP/1.1 clients do (RFC 9112
§9.3.1) -- counted as *retried*, not as lost.  Nothing here loops without an end: threads stop
on ``stop()`` / their request budget, and every socket has a timeout.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

IDEMPOTENT = frozenset(("GET", "HEAD", "PUT", "DELETE", "OPTIONS"))
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


@dataclass
class Req:
    """One request a plan asks for; ``check(status, body)`` may refine what counts as ok."""

    method: str = "GET"
    path: str = "/"
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    check: Callable[[int, bytes], bool] | None = None


@dataclass
class Record:
    start: float
    latency: float
    path: str
    status: int | None            # None: lost
    detail: str = ""


class Tally:
    """Counts (thread-safe).  ``keep=True`` also keeps one ``Record`` per request, for tests
    that look at what happened in a time window (a few thousand requests, not a soak)."""

    def __init__(self, keep: bool = False) -> None:
        self.sent = self.ok = self.failed = self.lost = self.retried = 0
        self.statuses: Counter[int] = Counter()
        self.errors: list[str] = []
        self.max_latency = 0.0
        self.records: list[Record] | None = [] if keep else None
        self._lock = threading.Lock()

    def add(self, rec: Record, ok: bool, retried: bool = False) -> None:
        with self._lock:
            self.sent += 1
            self.retried += retried
            self.max_latency = max(self.max_latency, rec.latency)
            if rec.status is None:
                self.lost += 1
            else:
                self.statuses[rec.status] += 1
                if ok:
                    self.ok += 1
                else:
                    self.failed += 1
            if (rec.status is None or not ok) and len(self.errors) < 20:
                self.errors.append(f"{rec.path}: {rec.status or ''} {rec.detail}".strip())
            if self.records is not None:
                self.records.append(rec)

    def window(self, t0: float, t1: float, path: str | None = None) -> list[Record]:
        """The kept records of requests started in [t0, t1) (on ``path``)."""
        assert self.records is not None, "Tally(keep=True) keeps records"
        with self._lock:
            return [r for r in self.records
                    if t0 <= r.start < t1 and (path is None or r.path == path)]

    def figures(self) -> dict[str, Any]:
        return {"sent": self.sent, "ok": self.ok, "failed": self.failed, "lost": self.lost,
                "retried": self.retried, "statuses": dict(sorted(self.statuses.items())),
                "max_latency_s": round(self.max_latency, 3)}

    def line(self, name: str) -> str:
        f = self.figures()
        return (f"FIGURES {name}: sent={f['sent']} ok={f['ok']} failed={f['failed']} "
                f"lost={f['lost']} retried={f['retried']} statuses={f['statuses']} "
                f"max_latency={f['max_latency_s']}s")


def status_of(records: list[Record]) -> Counter[int | None]:
    return Counter(r.status for r in records)


class Traffic:
    """``threads`` client threads, each sending ``plan(rng, n)`` requests (``n`` counts that
    thread's requests) until ``stop()`` or ``per_thread`` requests.  A thread whose index is
    below ``fresh`` opens a new connection per request; the others keep theirs alive.
    ``expect`` are the statuses that count as ok (``Req.check`` may say more)."""

    def __init__(self, port: int, plan: Callable[[random.Random, int], Req], *,
                 threads: int = 4, fresh: int = 0, expect: tuple[int, ...] = (200,),
                 per_thread: int | None = None, timeout: float = 10.0,
                 tally: Tally | None = None, seed: int = 13) -> None:
        self.port = port
        self.plan = plan
        self.expect = expect
        self.per_thread = per_thread
        self.timeout = timeout
        self.tally = tally or Tally()
        self._stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i < fresh, seed + i),
                                         daemon=True) for i in range(threads)]

    def __enter__(self) -> Self:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> Tally:
        self._stop.set()
        self.join()
        return self.tally

    def join(self, timeout: float | None = None) -> None:
        """Wait for the threads (a request ends within ``self.timeout``)."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout + 10)
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self.threads), "a client thread hung"

    def wait_for(self, ok: int, timeout: float = 10.0) -> None:
        """Block until ``ok`` requests succeeded in total (the traffic is flowing)."""
        deadline = time.monotonic() + timeout
        while self.tally.ok < ok and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.tally.ok >= ok, f"traffic did not get going: {self.tally.figures()}"

    # -- one thread --------------------------------------------------------------------------
    def _conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)

    def _run(self, fresh: bool, seed: int) -> None:
        rng = random.Random(seed)
        conn: http.client.HTTPConnection | None = None
        n = 0
        while not self._stop.is_set() and (self.per_thread is None or n < self.per_thread):
            req = self.plan(rng, n)
            n += 1
            if conn is None:
                conn = self._conn()
            reused = conn.sock is not None
            t0 = time.monotonic()
            retried = False
            try:
                try:
                    status, body, close = self._once(conn, req)
                except _STALE:
                    conn.close()
                    if not reused or req.method not in IDEMPOTENT:
                        raise
                    retried = True         # the server closed the idle connection first
                    conn = self._conn()
                    status, body, close = self._once(conn, req)
            except Exception as e:  # noqa: BLE001 - every failure is counted
                conn.close()
                conn = None
                self.tally.add(Record(t0, time.monotonic() - t0, req.path, None, repr(e)),
                               False, retried)
                continue
            ok = status in self.expect and (req.check is None or req.check(status, body))
            self.tally.add(Record(t0, time.monotonic() - t0, req.path, status,
                                  "" if ok else body[:120].decode("latin-1")), ok, retried)
            if fresh or close:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    @staticmethod
    def _once(conn: http.client.HTTPConnection, req: Req) -> tuple[int, bytes, bool]:
        conn.request(req.method, req.path, body=req.body, headers=req.headers)
        r = conn.getresponse()
        body = r.read()
        return r.status, body, r.will_close


def constant(req: Req) -> Callable[[random.Random, int], Req]:
    """A plan that always sends ``req``."""
    return lambda _rng, _n: req
