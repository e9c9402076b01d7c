"""The dashboard: ``/ui/`` on the Admin API port, served by the master (docs/dashboard.md).

``UiApp`` wraps the ``AdminApp`` (it is the handler of the Admin API server when
``deployment.admin.enable_admin_ui`` is on, the default) and adds:

* the dashboard's files (``pylon/admin/ui_dist``, built from ``ui/`` and committed), gzip'd
  when the browser takes it, with a strict ``Content-Security-Policy`` (no inline script, no
  other origin);
* sessions: ``POST /ui/api/session {"key": ...}`` exchanges an Admin API key (none on a node
  with ``admin_key_required: false``: ``GET /ui/api/sign-in`` tells the page) for a random
  session token in an ``HttpOnly; SameSite=Strict`` cookie with a bounded lifetime
  (``deployment.admin.ui_session_timeout``) and a CSRF token the page sends back in
  ``X-CSRF-Token`` on every write; ``DELETE /ui/api/session`` signs out.  The key itself
  stays in the master: never in a URL, never in the page's storage.  Tokens are looked up by
  their SHA-256 and the CSRF token compared in constant time;
* Admin API calls carrying the session cookie (and no ``X-API-KEY``/``api_key``) are
  answered as if made with the session's key -- after the CSRF check for a write, and a
  viewer's writes are refused (403) here as well as hidden in the page;
* what the Admin API does not answer: ``GET /ui/api/metrics`` (the node's Prometheus counts
  per route -- requests by status class, the request latency histogram -- as JSON),
  ``GET /ui/api/health`` (the Control API's ``/v1/healthcheck``) and ``GET /ui/api/audit``
  (the audit log, newest first, paged).

Scripts keep using the Admin API with ``X-API-KEY`` exactly as before.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from ..errors import Forbidden, InvalidRequest, NotFound, Unauthorized
from ..model.kinds import CATALOGUE, CREDENTIALS
from .app import PREFIX, AdminApp, answer
from .auth import VIEWER_METHODS, AdminKey, cookie
from .server import RawBody

UI = "/ui"
API = "/ui/api/"
COOKIE = "pylon_ui_session"
CSRF_HEADER = "x-csrf-token"
DIST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ui_dist")
#: sessions kept at once; the one closest to expiry makes room for a new one
MAX_SESSIONS = 1000
#: a wrong key at sign-in is answered after this pause (slows guessing)
FAILED_SIGN_IN_DELAY = 0.25
#: the most of the audit log's tail the audit view reads
AUDIT_TAIL = 4 * 1024 * 1024
TYPES = {".html": b"text/html; charset=utf-8", ".js": b"text/javascript; charset=utf-8",
         ".css": b"text/css; charset=utf-8", ".svg": b"image/svg+xml",
         ".json": b"application/json", ".ico": b"image/x-icon", ".png": b"image/png"}
SECURITY_HEADERS = [
    (b"Content-Security-Policy", b"default-src 'self'; script-src 'self'; style-src 'self'; "
     b"img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
     b"form-action 'self'"),
    (b"X-Content-Type-Options", b"nosniff"),
    (b"X-Frame-Options", b"DENY"),
    (b"Referrer-Policy", b"no-referrer"),
    (b"Cache-Control", b"no-store"),
]

#: the session's key on a node without Admin API keys (``admin_key_required: false``)
KEYLESS = AdminKey("anonymous", "", "admin")

Reply = tuple[int, Any]
#: () -> (Prometheus text, metric prefix), None when the prometheus plugin is not loaded
MetricsSource = Callable[[], Awaitable[tuple[str, str] | None]]
HealthSource = Callable[[], Awaitable[Reply]]


@dataclass(slots=True)
class Session:
    key: AdminKey
    csrf: str
    expires: float


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class Sessions:
    """Sign-in sessions of one master, by the SHA-256 of their token."""

    def __init__(self, lifetime: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.lifetime = lifetime
        self.clock = clock
        self.by_digest: dict[bytes, Session] = {}

    def open(self, key: AdminKey) -> tuple[str, Session]:
        now = self.clock()
        for d in [d for d, s in self.by_digest.items() if s.expires <= now]:
            del self.by_digest[d]
        if len(self.by_digest) >= MAX_SESSIONS:
            oldest = min(self.by_digest, key=lambda d: self.by_digest[d].expires)
            del self.by_digest[oldest]
        token = secrets.token_urlsafe(32)
        sess = Session(key, secrets.token_urlsafe(32), now + self.lifetime)
        self.by_digest[_digest(token)] = sess
        return token, sess

    def find(self, token: str | None) -> Session | None:
        if not token:
            return None
        d = _digest(token)
        sess = self.by_digest.get(d)
        if sess is not None and sess.expires <= self.clock():
            del self.by_digest[d]
            return None
        return sess

    def close(self, token: str) -> None:
        self.by_digest.pop(_digest(token), None)


def session_cookie(headers: Mapping[str, str]) -> str | None:
    return cookie(headers, COOKIE)


def csrf_ok(sess: Session, headers: Mapping[str, str]) -> bool:
    given = headers.get(CSRF_HEADER, "")
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"),
                               sess.csrf.encode())


def kinds() -> list[dict[str, Any]]:
    """The resource kinds the dashboard lists (the Admin API's catalogue; credentials are
    shown under their consumer)."""
    return [{"name": k.name, "kind": k.kind, "title": k.title, "key_field": k.key_field,
             "post": k.post, "two_part_id": k.two_part_id}
            for k in CATALOGUE if k is not CREDENTIALS]


class StaticFiles:
    """The built dashboard, read once: path under ``/ui/`` -> (body, gzip'd body, type)."""

    def __init__(self, root: str = DIST) -> None:
        self.files: dict[str, tuple[bytes, bytes, bytes]] = {}
        if not os.path.isdir(root):
            return
        for base, _dirs, names in os.walk(root):
            for name in names:
                ext = os.path.splitext(name)[1]
                if ext not in TYPES:
                    continue
                full = os.path.join(base, name)
                rel = os.path.relpath(full, root).replace(os.sep, "/")
                with open(full, "rb") as f:
                    data = f.read()
                self.files[rel] = (data, gzip.compress(data, 9, mtime=0), TYPES[ext])

    def answer(self, rel: str, headers: Mapping[str, str]) -> Reply:
        if rel in ("", "index.html"):
            rel = "index.html"
        got = self.files.get(rel)
        if got is None:
            if rel == "index.html":
                return 503, {"error_msg": "the dashboard is not built (see docs/dashboard.md)"}
            return 404, {"error_msg": "not found"}
        data, packed, ctype = got
        extra = [*SECURITY_HEADERS, (b"Vary", b"Accept-Encoding")]
        if "gzip" in headers.get("accept-encoding", "").lower():
            return 200, RawBody(packed, ctype, [*extra, (b"Content-Encoding", b"gzip")])
        return 200, RawBody(data, ctype, extra)


def _json(status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None) -> Reply:
    return status, RawBody(json.dumps(body).encode(), b"application/json",
                           [*SECURITY_HEADERS, *(headers or [])])


class UiApp:
    """The Admin API server's handler with the dashboard on it (see the module docstring)."""

    def __init__(self, admin: AdminApp, lifetime: float = 3600.0, *,
                 metrics: MetricsSource | None = None, health: HealthSource | None = None,
                 static: StaticFiles | None = None) -> None:
        self.admin = admin
        #: Admin API answers keep the Admin API's CORS headers (``/ui/`` answers have none)
        self.cors: bool = admin.cors
        self.sessions = Sessions(lifetime)
        self.metrics = metrics
        self.health = health
        self.static = static if static is not None else StaticFiles()

    async def handle(self, method: str, path: str, query: str, headers: Mapping[str, str],
                     body: bytes, remote_addr: str | None = None) -> Reply:
        if path == UI or path.startswith(UI + "/"):
            if not self.admin.auth.address_allowed(remote_addr):
                return 403, {"error_msg": "403 Forbidden"}
            return await answer(self._ui(method.upper(), path, query, headers, body),
                                f"{method} {path}")
        if path == PREFIX or path.startswith(PREFIX + "/"):
            token = session_cookie(headers)
            if token and "x-api-key" not in headers \
                    and "api_key" not in dict(parse_qsl(query)):
                return await self._as_session(token, method, path, query, headers, body,
                                              remote_addr)
        return await self.admin.handle(method, path, query, headers, body, remote_addr)

    async def _as_session(self, token: str, method: str, path: str, query: str,
                          headers: Mapping[str, str], body: bytes,
                          remote_addr: str | None) -> Reply:
        """An Admin API call from the dashboard: made with the session's key."""
        if not self.admin.auth.address_allowed(remote_addr):
            return 403, {"error_msg": "403 Forbidden"}
        sess = self.sessions.find(token)
        if sess is None:
            return 401, {"error_msg": "failed to check token",
                         "description": "session expired or signed out"}
        if method.upper() not in VIEWER_METHODS:
            if not csrf_ok(sess, headers):
                return 403, {"error_msg": "missing or wrong X-CSRF-Token"}
            if sess.key.role == "viewer":
                return 403, {"error_msg": "the viewer role is read-only"}
        fwd = {k: v for k, v in headers.items() if k != "cookie"}
        if sess.key.key:
            fwd["x-api-key"] = sess.key.key
        return await self.admin.handle(method, path, query, fwd, body, remote_addr)

    async def _ui(self, method: str, path: str, query: str, headers: Mapping[str, str],
                  body: bytes) -> Reply:
        if path == UI:
            return 301, RawBody(b"", b"text/plain", [(b"Location", b"/ui/")])
        rel = path[len(UI) + 1:]
        if not rel.startswith("api/"):
            if method not in ("GET", "HEAD"):
                raise NotFound("not found")
            return self.static.answer(rel, headers)
        what = rel[len("api/"):].strip("/")
        if what == "sign-in" and method == "GET":
            # before any session: whether the page must ask for a key
            return _json(200, {"key_required": self.admin.auth.key_required})
        if what == "session" and method == "POST":
            # JSON only: a form another site posts (text/plain, urlencoded) is not one
            if not headers.get("content-type", "").lower().startswith("application/json"):
                raise InvalidRequest("sign-in takes Content-Type: application/json")
            return await self._sign_in(body)
        token = session_cookie(headers)
        sess = self.sessions.find(token)
        if sess is None or token is None:
            raise Unauthorized("failed to check token",
                               description="not signed in, or the session expired")
        if method not in ("GET", "HEAD") and not csrf_ok(sess, headers):
            raise Forbidden("missing or wrong X-CSRF-Token")
        if what == "session":
            if method == "DELETE":
                self.sessions.close(token)
                return _json(200, {"signed_out": True}, [(b"Set-Cookie", _cookie("", 0))])
            if method == "GET":
                return _json(200, self._describe(sess))
        elif method == "GET" and what == "metrics":
            return 200, await self._metrics()
        elif method == "GET" and what == "health":
            if self.health is None:
                return 200, []
            return await self.health()
        elif method == "GET" and what == "audit":
            return 200, self._audit(dict(parse_qsl(query)))
        raise NotFound("not found")

    def _describe(self, sess: Session) -> dict[str, Any]:
        return {"name": sess.key.name, "role": sess.key.role, "csrf": sess.csrf,
                "expires_in": max(0, int(sess.expires - self.sessions.clock())),
                "kinds": kinds(), "audit": self.admin.audit is not None,
                "key_required": self.admin.auth.key_required}

    async def _sign_in(self, body: bytes) -> Reply:
        try:
            conf = json.loads(body or b"null")
        except ValueError:
            conf = None
        if not isinstance(conf, dict):
            raise InvalidRequest("invalid request body: expected {\"key\": \"<Admin API key>\"}")
        key = conf.get("key")
        auth = self.admin.auth
        if not auth.key_required:
            # admin_key_required: false -- no key to check, any given is ignored (the Admin
            # API takes every request from an allowed address on such a node)
            found: AdminKey | None = KEYLESS
        elif not isinstance(key, str) or not key:
            raise InvalidRequest("invalid request body: expected {\"key\": \"<Admin API key>\"}")
        else:
            found, why = auth.identify("GET", {}, {"x-api-key": key})
            if found is None:
                await asyncio.sleep(FAILED_SIGN_IN_DELAY)
                raise Unauthorized("failed to check token", description=why or "wrong apikey")
        assert found is not None
        token, sess = self.sessions.open(found)
        return _json(200, self._describe(sess),
                     [(b"Set-Cookie", _cookie(token, int(self.sessions.lifetime)))])

    async def _metrics(self) -> dict[str, Any]:
        got = await self.metrics() if self.metrics is not None else None
        if got is None:
            return {"enabled": False, "routes": [], "time": time.time()}
        text, prefix = got
        return {"enabled": True, "time": time.time(), "routes": summarize(text, prefix)}

    def _audit(self, args: Mapping[str, str]) -> dict[str, Any]:
        path = self.admin.audit.path if self.admin.audit is not None else None
        if path is None:
            return {"enabled": False, "total": 0, "list": []}
        try:
            size = min(100, max(1, int(args.get("page_size", "20"))))
            page = max(1, int(args.get("page", "1")))
        except ValueError:
            raise InvalidRequest("page and page_size must be integers") from None
        q = args.get("q", "")
        rows = [r for r in read_audit(path) if not q or q in json.dumps(r)]
        rows.reverse()
        return {"enabled": True, "total": len(rows),
                "list": rows[(page - 1) * size: page * size]}


def _cookie(token: str, max_age: int) -> bytes:
    return (f"{COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict"
            ).encode()


def read_audit(path: str) -> list[dict[str, Any]]:
    """The audit log's entries, oldest first (its last ``AUDIT_TAIL`` bytes)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            end = f.tell()
            f.seek(max(0, end - AUDIT_TAIL))
            data = f.read()
            cut = end > AUDIT_TAIL
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    if cut:
        lines = lines[1:]                  # the first line read may be partial
    out = []
    for line in lines:
        if line.strip():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                out.append(row)
    return out


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def summarize(text: str, prefix: str) -> list[dict[str, Any]]:
    """Prometheus exposition text -> per route: requests by status class, total, and the
    request latency histogram (bucket bounds in ms, cumulative counts), summed over the
    other labels (service, consumer, node).  Routes sorted by id."""
    status_name = prefix + "http_status"
    bucket_name = prefix + "http_latency_bucket"
    routes: dict[str, dict[str, Any]] = {}

    def entry(rid: str) -> dict[str, Any]:
        e = routes.get(rid)
        if e is None:
            e = routes[rid] = {"route": rid, "total": 0,
                               "status": {"1xx": 0, "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0},
                               "latency": {}}
        return e

    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        m = _SAMPLE.match(line)
        if m is None or m.group(1) not in (status_name, bucket_name):
            continue
        labels = {k: v.replace('\\"', '"').replace("\\\\", "\\")
                  for k, v in _LABEL.findall(m.group(2) or "")}
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        e = entry(labels.get("route", ""))
        if m.group(1) == status_name:
            code = labels.get("code", "")
            cls = f"{code[:1]}xx" if len(code) == 3 else ""
            if cls in e["status"]:
                e["status"][cls] += int(value)
            e["total"] += int(value)
        elif labels.get("type") == "request":
            le = labels.get("le", "")
            e["latency"][le] = e["latency"].get(le, 0) + int(value)
    out = []
    for rid in sorted(routes):
        e = routes[rid]
        hist = e.pop("latency")
        bounds = sorted((b for b in hist if b != "+Inf"), key=float)
        e["buckets"] = [float(b) for b in bounds]
        e["counts"] = [hist[b] for b in bounds] + [hist.get("+Inf", 0)]
        out.append(e)
    return out

