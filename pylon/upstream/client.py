"""A small async HTTP/1.1 client for plugins (calls to an auth service, an OpenID provider...).

::

    from pylon.pdk import http

    async def access(conf, ctx):
        try:
            r = await http.request("POST", conf["uri"], headers={"X-A": "1"}, body=b"..",
                                   timeout=3.0)
        except http.HTTPError as e:          # e.timeout tells a timeout from other failures
            ...
        if r.status == 200:
            data = r.json()

``http`` and ``https`` (stdlib ``ssl``, SNI, ``verify=False`` or an ``ssl.SSLContext`` of
your own), Content-Length, chunked and read-until-close responses (``httptools``), a small
keep-alive pool per (scheme, host, port, TLS settings) in each process and event loop, idle
connections closed after ``keepalive_timeout``.  ``timeout`` bounds everything: pool,
connect, TLS handshake, sending, the whole response.  Every failure is an ``HTTPError``
(``HTTPTimeout`` for timeouts).  Requests always go with a Content-Length (the body is
bytes); responses are held in memory up to ``max_body`` bytes.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import time
import weakref
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import httptools

from ..errors import PylonError

__all__ = ["HTTPError", "HTTPTimeout", "Response", "close_idle", "request"]

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE = re.compile(r"[\r\n\x00]")
_HOP = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive",
                  "upgrade", "te", "trailer", "proxy-connection"})
_NO_BODY_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE", "CONNECT"})

#: defaults of the keep-alive pool
KEEPALIVE_TIMEOUT = 60.0
KEEPALIVE_POOL = 16


class HTTPError(PylonError):
    """A request that got no complete HTTP response (connect, TLS, protocol, size, timeout).
    An answer with any status is a ``Response``, not an error."""

    timeout = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class HTTPTimeout(HTTPError):
    """The request did not finish within its ``timeout``."""

    timeout = True


class _Stale(Exception):
    """A reused connection failed before any byte of the response: safe to retry once."""


class Response:
    __slots__ = ("body", "headers", "keep_alive", "status")

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes,
                 keep_alive: bool = False) -> None:
        self.status = status
        #: the response headers as received (names in their original case, repeats kept)
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        ln = name.lower()
        for k, v in self.headers:
            if k.lower() == ln:
                return v
        return None

    def header_values(self, name: str) -> list[str]:
        ln = name.lower()
        return [v for k, v in self.headers if k.lower() == ln]

    def json(self) -> Any:
        """The body decoded as JSON (ValueError when it is not)."""
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes>"


# ----------------------------------------------------------------------------- connection
class _Exchange:
    """Parser callbacks for one response."""

    def __init__(self, conn: _Conn, head_only: bool, max_body: int) -> None:
        self.conn = conn
        self.head_only = head_only
        self.max_body = max_body
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.size = 0
        self.headers_done = False
        self.framed = False         # Content-Length or chunked: the end is known
        self.keep_alive = False
        self.done = False

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if self.done:                   # bytes after the response: never reuse this
            self.conn.close()
            return
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        if self.done:
            self.conn.close()
            return
        p = self.conn.parser
        assert p is not None
        self.status = p.get_status_code()
        if 100 <= self.status < 200 and self.status != 101:
            return
        self.headers_done = True
        self.keep_alive = p.should_keep_alive()
        for k, v in self.headers:
            lk = k.lower()
            if lk == "content-length" or (lk == "transfer-encoding" and "chunked" in v.lower()):
                self.framed = True
        if self.status in (204, 304):
            self.framed = True
        if self.head_only:
            self.framed = True
            self._finish()

    def on_body(self, data: bytes) -> None:
        if self.done:
            return
        self.size += len(data)
        if self.size > self.max_body:
            self.conn.fail(HTTPError(f"response body larger than {self.max_body} bytes"))
            return
        self.body.append(data)

    def on_message_complete(self) -> None:
        if self.done:
            return
        if 100 <= self.status < 200 and self.status != 101 and not self.headers_done:
            self.headers = []           # an interim response: the real one follows
            self.status = 0
            return
        self._finish()

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        self.conn.complete(Response(self.status, self.headers, b"".join(self.body),
                                    self.keep_alive))


class _Conn(asyncio.Protocol):
    def __init__(self, key: tuple[Any, ...]) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.ex: _Exchange | None = None
        self.waiter: asyncio.Future[Response] | None = None
        self.received = 0
        self.closed = False
        self.idle_since = 0.0
        self.reused = False

    # -- protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.ex is None or self.ex.done:     # bytes on an idle connection: unusable
            self.close()
            return
        self.received += len(data)
        try:
            self.parser.feed_data(data)  # type: ignore[union-attr]
        except httptools.HttpParserUpgrade:
            self.fail(HTTPError("unexpected protocol upgrade in the response"))
        except httptools.HttpParserError as e:
            self.fail(HTTPError(f"bad HTTP response: {e}"))

    def eof_received(self) -> bool:
        ex = self.ex
        if ex is not None and not ex.done:
            if ex.headers_done and not ex.framed:
                ex.keep_alive = False
                ex._finish()                    # a body delimited by the connection close
            else:
                self._lost("connection closed by the server")
        self.closed = True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.ex is not None and not self.ex.done:
            self._lost(f"connection lost: {exc}" if exc else "connection closed by the server")

    # -- exchange ----------------------------------------------------------------------
    def _lost(self, msg: str) -> None:
        if self.reused and self.received == 0:
            self._set_exc(_Stale(msg))
        else:
            self.fail(HTTPError(msg))

    def fail(self, err: Exception) -> None:
        self._set_exc(err)
        self.close()

    def _set_exc(self, err: Exception) -> None:
        if self.ex is not None:
            self.ex.done = True
        w = self.waiter
        if w is not None and not w.done():
            w.set_exception(err)

    def complete(self, resp: Response) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(resp)

    def send(self, data: bytes, head_only: bool, max_body: int,
             loop: asyncio.AbstractEventLoop) -> asyncio.Future[Response]:
        self.ex = ex = _Exchange(self, head_only, max_body)
        self.parser = httptools.HttpResponseParser(ex)
        self.received = 0
        self.waiter = fut = loop.create_future()
        if self.closed or self.transport is None or self.transport.is_closing():
            self._lost("connection closed")
        else:
            self.transport.write(data)
        return fut

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def reusable(self, resp: Response) -> bool:
        return resp.keep_alive and not self.closed and self.transport is not None \
            and not self.transport.is_closing()


class _Pool:
    """Idle keep-alive connections of one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.idle: dict[tuple[Any, ...], list[_Conn]] = {}
        self.timeouts: dict[tuple[Any, ...], float] = {}
        self.timer: asyncio.TimerHandle | None = None

    def get(self, key: tuple[Any, ...]) -> _Conn | None:
        conns = self.idle.get(key)
        if not conns:
            return None
        limit = self.timeouts.get(key, KEEPALIVE_TIMEOUT)
        now = time.monotonic()
        while conns:
            c = conns.pop()
            if not c.closed and now - c.idle_since < limit and c.transport is not None \
                    and not c.transport.is_closing():
                c.reused = True
                return c
            c.close()
        return None

    def put(self, conn: _Conn, idle_timeout: float, size: int) -> None:
        conn.ex = None
        conn.parser = None
        conn.waiter = None
        conn.idle_since = time.monotonic()
        conns = self.idle.setdefault(conn.key, [])
        conns.append(conn)
        self.timeouts[conn.key] = idle_timeout
        while len(conns) > size:
            conns.pop(0).close()
        if self.timer is None:
            self.timer = self.loop.call_later(min(idle_timeout, 5.0), self.sweep)

    def sweep(self) -> None:
        self.timer = None
        now = time.monotonic()
        nxt = None
        for key in list(self.idle):
            limit = self.timeouts.get(key, KEEPALIVE_TIMEOUT)
            keep = []
            for c in self.idle[key]:
                if c.closed or now - c.idle_since >= limit:
                    c.close()
                else:
                    keep.append(c)
            if keep:
                self.idle[key] = keep
                nxt = min(nxt or limit, limit)
            else:
                del self.idle[key]
                self.timeouts.pop(key, None)
        if nxt is not None:
            self.timer = self.loop.call_later(min(nxt, 5.0), self.sweep)

    def close(self) -> None:
        for conns in self.idle.values():
            for c in conns:
                c.close()
        self.idle.clear()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pool] = \
    weakref.WeakKeyDictionary()


def _pool(loop: asyncio.AbstractEventLoop) -> _Pool:
    p = _pools.get(loop)
    if p is None:
        p = _pools[loop] = _Pool(loop)
    return p


def close_idle() -> None:
    """Close the idle pooled connections of the running loop (tests, shutdown)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    p = _pools.get(loop)
    if p is not None:
        p.close()


# ----------------------------------------------------------------------------- TLS
_ssl_default: ssl.SSLContext | None = None
_ssl_noverify: ssl.SSLContext | None = None


def _ssl_context(verify: bool | ssl.SSLContext) -> ssl.SSLContext:
    global _ssl_default, _ssl_noverify
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify:
        if _ssl_default is None:
            _ssl_default = ssl.create_default_context()
        return _ssl_default
    if _ssl_noverify is None:
        c = ssl.create_default_context()
        c.check_hostname = False
        c.verify_mode = ssl.CERT_NONE
        _ssl_noverify = c
    return _ssl_noverify


# ----------------------------------------------------------------------------- request
def _split(url: str) -> tuple[str, str, int, str, str]:
    try:
        u = urlsplit(url)
        port = u.port
    except ValueError as e:
        raise HTTPError(f"bad URL: {e}") from None
    scheme = u.scheme.lower()
    if scheme not in ("http", "https"):
        raise HTTPError(f"unsupported URL scheme {u.scheme!r}")
    host = u.hostname
    if not host:
        raise HTTPError("URL without a host")
    default = 443 if scheme == "https" else 80
    port = port or default
    target = (u.path or "/") + ("?" + u.query if u.query else "")
    if _BAD_VALUE.search(target) or " " in target:
        raise HTTPError("bad characters in the URL")
    h = f"[{host}]" if ":" in host else host
    authority = h if port == default else f"{h}:{port}"
    return scheme, host, port, target, authority


def _build(method: str, target: str, authority: str, headers: Any, body: bytes | None,
           keepalive: bool) -> bytes:
    if not _TOKEN.match(method):
        raise HTTPError(f"bad method {method!r}")
    lines = [f"{method} {target} HTTP/1.1"]
    host = None
    extra: list[str] = []
    items: Iterable[tuple[str, Any]] = ()
    if headers:
        items = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in items:
        if value is None:
            continue
        name = str(name)
        value = str(value)
        if not _TOKEN.match(name) or _BAD_VALUE.search(value):
            raise HTTPError(f"bad request header {name!r}")
        ln = name.lower()
        if ln == "host":
            host = value
        elif ln not in _HOP:
            extra.append(f"{name}: {value}")
    lines.append(f"Host: {host or authority}")
    lines.extend(extra)
    if body is not None and (body or method not in _NO_BODY_METHODS):
        lines.append(f"Content-Length: {len(body)}")
    elif body is None and method in ("POST", "PUT", "PATCH"):
        lines.append("Content-Length: 0")
    if not keepalive:
        lines.append("Connection: close")
    try:
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError:
        raise HTTPError("request header not encodable as latin-1") from None
    return head + body if body else head


async def _connect(loop: asyncio.AbstractEventLoop, key: tuple[Any, ...], scheme: str,
                   host: str, port: int, verify: bool | ssl.SSLContext) -> _Conn:
    sslctx = None
    server_hostname = None
    if scheme == "https":
        sslctx = _ssl_context(verify)
        server_hostname = host
    try:
        _, conn = await loop.create_connection(lambda: _Conn(key), host, port, ssl=sslctx,
                                               server_hostname=server_hostname)
    except ssl.SSLError as e:
        raise HTTPError(f"TLS handshake with {host}:{port} failed: "
                        f"{e.reason or e}") from None
    except ssl.CertificateError as e:     # pragma: no cover - a subclass of SSLError today
        raise HTTPError(f"TLS certificate of {host}:{port} rejected: {e}") from None
    except OSError as e:
        raise HTTPError(f"connect to {host}:{port} failed: {e.strerror or e}") from None
    return conn


async def request(method: str, url: str, *, headers: Mapping[str, Any] | Iterable[
                  tuple[str, Any]] | None = None, body: bytes | str | None = None,
                  timeout: float = 5.0, verify: bool | ssl.SSLContext = True,
                  max_body: int = 8 << 20, keepalive: bool = True,
                  keepalive_timeout: float = KEEPALIVE_TIMEOUT,
                  keepalive_pool: int = KEEPALIVE_POOL) -> Response:
    """Send one request and return the whole response (any status).

    ``headers``: a mapping or (name, value) pairs; Host, Content-Length and hop-by-hop
    headers are set by the client (a Host given here replaces the URL's).  ``verify``: check
    the server certificate (https) against the system CAs, or pass an ``ssl.SSLContext``.
    Raises ``HTTPError`` (``HTTPTimeout`` when ``timeout`` seconds pass first)."""
    method = method.upper()
    scheme, host, port, target, authority = _split(url)
    if isinstance(body, str):
        body = body.encode("utf-8")
    data = _build(method, target, authority, headers, body, keepalive)
    loop = asyncio.get_running_loop()
    vkey: Any = verify if isinstance(verify, bool) else id(verify)
    key = (scheme, host, port, vkey)
    try:
        async with asyncio.timeout(timeout):
            return await _exchange(loop, key, scheme, host, port, verify, data,
                                   method == "HEAD", max_body, keepalive, keepalive_timeout,
                                   keepalive_pool)
    except TimeoutError:
        raise HTTPTimeout(f"{method} {scheme}://{authority}{_path_only(target)} timed out "
                          f"after {timeout:g}s") from None


def _path_only(target: str) -> str:
    return target.split("?", 1)[0]       # no query in messages: it may carry secrets


async def _exchange(loop: asyncio.AbstractEventLoop, key: tuple[Any, ...], scheme: str,
                    host: str, port: int, verify: bool | ssl.SSLContext, data: bytes,
                    head_only: bool, max_body: int, keepalive: bool, idle_timeout: float,
                    pool_size: int) -> Response:
    pool = _pool(loop)
    for attempt in (0, 1):
        conn = pool.get(key) if keepalive and attempt == 0 else None
        if conn is None:
            conn = await _connect(loop, key, scheme, host, port, verify)
        ok = False
        try:
            resp = await conn.send(data, head_only, max_body, loop)
            ok = True
        except _Stale as e:
            conn.close()
            if attempt == 0:
                continue            # the server closed an idle connection: once more, fresh
            raise HTTPError(str(e)) from None
        finally:
            if not ok:
                conn.close()
        if keepalive and conn.reusable(resp):
            pool.put(conn, idle_timeout, pool_size)
        else:
            conn.close()
        return resp
    raise HTTPError("unreachable")  # pragma: no cover
