"""HTTP/1.1 message reading and writing, sans-IO.

``RequestParser`` wraps httptools (llhttp) for the downstream side: bytes in, calls on a *sink*
out (``on_request(head)``, ``on_body(chunk)``, ``on_end(trailers)``).  It enforces the size
limits and the framing rules that keep a proxy safe from request smuggling:

* llhttp already refuses Content-Length together with Transfer-Encoding, duplicate or
  malformed Content-Length, bad chunk sizes, obs-fold (RFC 9112 §5.2) and bare LF;
* here we additionally refuse any transfer coding other than a single ``chunked`` (501, RFC
  9112 §6.1: a proxy cannot re-frame a coding it does not understand), more than one Host,
  an invalid authority (RFC 9110 §7.2), and an HTTP major version other than 1 (505);
* an upgrade request with a body (``curl --http2 -d``) is an ordinary request: its body is
  read and the connection stays HTTP/1.1 (llhttp alone would skip the body);
* bytes after a message that closes the connection (``Connection: close``, HTTP/1.0 without
  keep-alive) are not HTTP to us: they are dropped, never answered (``after_close``).

``ResponseParser`` is the upstream flavour.  Serialisation helpers build heads and chunks.
Nothing here imports asyncio or touches a socket.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Protocol

import httptools

from .. import errors
from .head import HOP_BY_HOP, RequestHead


class RequestSink(Protocol):
    def on_request(self, head: RequestHead) -> None: ...
    def on_body(self, chunk: bytes) -> None: ...
    def on_end(self, trailers: list[tuple[bytes, bytes]] | None) -> None: ...


class Limits:
    """Downstream request limits (nginx's defaults where nginx has one)."""

    __slots__ = ("max_uri", "max_header_bytes", "max_headers", "max_body")

    def __init__(self, max_uri: int = 8192, max_header_bytes: int = 32768,
                 max_headers: int = 100, max_body: int = 0) -> None:
        self.max_uri = max_uri
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.max_body = max_body   # 0 = unlimited (nginx client_max_body_size 0)


_METHODS = {m.encode(): m for m in ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS",
                                     "CONNECT", "TRACE", "PURGE")}


_S_SKIPPED, _S_BODY_HEAD = 1, 2


class _Abort(Exception):
    """Raised inside a parser callback to stop parsing with a GatewayError."""

    def __init__(self, error: errors.GatewayError) -> None:
        self.error = error


def _unwrap(e: httptools.HttpParserCallbackError) -> BaseException:
    """The exception a parser callback raised: our GatewayError, or the original bug."""
    ctx = e.__context__
    if isinstance(ctx, _Abort):
        return ctx.error
    return ctx if ctx is not None else e


#: the head fed to llhttp, after an upgrade request with a body, to read that body (llhttp
#: skips the body of an upgrade request; the head itself is not reported)
_BODY_HEAD = b"POST / HTTP/1.1\r\n%s\r\n\r\n"


def _llhttp(owner: RequestParser) -> httptools.HttpRequestParser:
    p = httptools.HttpRequestParser(owner)
    # any version reaches on_headers_complete, which answers 505 for a major other than 1
    p.set_dangerous_leniencies(lenient_version=True)
    return p


class RequestParser:
    """Feeds bytes to llhttp and emits whole request heads, body chunks and ends."""

    __slots__ = ("_p", "_sink", "_limits", "_url", "_headers", "_hbytes", "_in_trailers",
                 "_trailers", "_body_seen", "upgrade_offset", "_close", "closed", "after_close",
                 "_state", "_body_framing")

    def __init__(self, sink: RequestSink, limits: Limits) -> None:
        self._p = _llhttp(self)
        self._sink = sink
        self._limits = limits
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._hbytes = 0
        self._in_trailers = False
        self._trailers: list[tuple[bytes, bytes]] | None = None
        self._body_seen = 0
        #: set when the request asks for a protocol upgrade; bytes after it are not HTTP
        self.upgrade_offset: int | None = None
        #: the message being read closes the connection
        self._close = False
        #: a message that closes the connection is complete: nothing more is parsed
        self.closed = False
        #: bytes arrived after that message (dropped; the connection should linger-close)
        self.after_close = False
        #: 0 usually; _S_SKIPPED after an upgrade request with a body whose end llhttp
        #: reported early; _S_BODY_HEAD while the stand-in head for that body is fed
        self._state = 0
        self._body_framing = b""

    def feed(self, data: bytes) -> None:
        """Parse ``data``.  Raises GatewayError for a request that must be refused."""
        if self.closed:
            if data:
                self.after_close = True
            return
        base = 0
        buf: bytes | memoryview = data
        while True:
            try:
                self._p.feed_data(buf)
                return
            except httptools.HttpParserUpgrade as e:
                off = e.args[0]
            except httptools.HttpParserCallbackError as e:
                raise _unwrap(e) from None
            except httptools.HttpParserError as e:
                if self.closed:             # "Data after `Connection: close`"
                    self.after_close = True
                    return
                msg = str(e)
                if "Content-Length" in msg or "Transfer-Encoding" in msg or "chunk" in msg \
                        or "whitespace" in msg:
                    raise errors.RequestSmuggling(msg) from None
                if "PRI" in msg:            # "PRI * HTTP/2.0", the HTTP/2 preface (nginx: 505)
                    raise errors.VersionNotSupported(msg) from None
                raise errors.BadRequest(msg) from None
            # llhttp stopped after an upgrade request's head, at buf[off:]
            if self._state != _S_SKIPPED:
                self.upgrade_offset = base + off   # what follows is the other protocol's
                return
            # the request has a body, so it is an ordinary request: feed llhttp a stand-in
            # head with the same framing, then the rest, and llhttp reads the body (chunks,
            # limits, trailers) as any other; the end of that body ends the upgrade request
            self._state = _S_BODY_HEAD
            if self._close:         # llhttp is closed after a message without keep-alive
                self._p = _llhttp(self)
            self._p.feed_data(_BODY_HEAD % self._body_framing)
            buf = memoryview(buf)[off:]
            base += off

    # -- llhttp callbacks --------------------------------------------------------------
    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._limits.max_uri:
            raise _Abort(errors.UriTooLong())

    def on_header(self, name: bytes, value: bytes) -> None:
        self._hbytes += len(name) + len(value) + 4
        if self._in_trailers:
            if self._trailers is None:
                self._trailers = []
            self._trailers.append((name, value))
            if self._hbytes > self._limits.max_header_bytes:
                raise _Abort(errors.HeaderTooLarge())
            return
        self._headers.append((name, value))
        if self._hbytes > self._limits.max_header_bytes or \
                len(self._headers) > self._limits.max_headers:
            raise _Abort(errors.HeaderTooLarge())

    def on_headers_complete(self) -> None:
        if self._state:             # (_S_BODY_HEAD) the stand-in head: not a request
            self._state = 0
            self._url = b""
            self._headers = []
            self._hbytes = 0
            self._in_trailers = True
            return
        p = self._p
        m = p.get_method()
        method = _METHODS.get(m) or m.decode("ascii", "replace")
        version = p.get_http_version()
        if version != "1.1" and version != "1.0":
            if version[:2] != "1.":                 # HTTP/2.0, HTTP/0.9, HTTP/3.0 (nginx: 505)
                raise _Abort(errors.VersionNotSupported(f"HTTP/{version}"))
            version = "1.1"     # RFC 9110 §2.5: a higher 1.x minor is read as 1.1
        head = RequestHead.from_h1(method, self._url, self._headers, version,
                                   p.should_keep_alive())
        if head.error is not None:
            raise _Abort(head.error)
        if not head.keep_alive:
            self._close = True
        if head.upgrade is not None and (head.chunked or head.content_length) \
                and p.should_upgrade():
            # llhttp will report the end now and stop; the body is read after (feed)
            head.upgrade = None                      # and it cannot switch protocols
            self._state = _S_SKIPPED
            framing = b"Transfer-Encoding: chunked" if head.chunked else \
                b"Content-Length: %d" % (head.content_length or 0)  # not None: tested above
            self._body_framing = framing + b"\r\nConnection: close" if self._close else framing
        max_body = self._limits.max_body
        if max_body and head.content_length is not None and head.content_length > max_body:
            raise _Abort(errors.BodyTooLarge())
        self._in_trailers = True
        self._hbytes = 0
        self._sink.on_request(head)

    def on_body(self, body: bytes) -> None:
        max_body = self._limits.max_body
        if max_body:
            self._body_seen += len(body)
            if self._body_seen > max_body:
                raise _Abort(errors.BodyTooLarge())
        self._sink.on_body(body)

    def on_message_complete(self) -> None:
        trailers = self._trailers
        # reset for the next message here, not in on_message_begin: httptools only calls the
        # callbacks a class defines, and this saves one call per request
        self._url = b""
        self._headers = []
        self._hbytes = 0
        self._in_trailers = False
        self._trailers = None
        if self._state:                 # an upgrade request's early end: its body follows
            return
        self._body_seen = 0
        if self._close:
            self.closed = True
        self._sink.on_end(trailers)


class _HeadDone(Exception):
    """Stops llhttp after the head of a response to HEAD (it would wait for a body)."""


class ResponseSink(Protocol):
    def on_response(self, status: int, headers: list[tuple[bytes, bytes]], keep_alive: bool,
                    length: int | None, chunked: bool) -> None: ...
    def on_body(self, chunk: bytes) -> None: ...
    def on_end(self, trailers: list[tuple[bytes, bytes]] | None) -> None: ...


_R_CL, _R_TE, _R_CONN, _R_HOP = range(4)
_R_SPECIAL = {n: _R_HOP for n in HOP_BY_HOP}
# like nginx's default proxy_hide_header: the gateway sends its own Server and Date
_R_SPECIAL.update({b"server": _R_HOP, b"date": _R_HOP})
_R_SPECIAL.update({b"content-length": _R_CL, b"transfer-encoding": _R_TE, b"connection": _R_CONN})
_R_SPECIAL.update({k.title(): v for k, v in list(_R_SPECIAL.items())})
#: response header names known not to be hop-by-hop (bounded cache: skips bytes.lower())
_R_PLAIN: set[bytes] = set()
#: Connection header value → the extra header names it makes hop-by-hop (bounded cache)
_CONN_EXTRA: dict[bytes, list[bytes] | None] = {}
_MISSING: object = object()


class ResponseParser:
    """The upstream flavour: status + headers, body chunks, end (with trailers).

    Hop-by-hop headers are taken out as they arrive (RFC 9110 §7.6.1, including those the
    Connection header names); the sink gets the end-to-end headers plus the framing facts.
    """

    __slots__ = ("_p", "_sink", "_headers", "_in_trailers", "_trailers", "_hbytes",
                 "upgrade_offset", "max_header_bytes", "head_request", "_length", "_chunked",
                 "_conn_tokens", "_status")

    def __init__(self, sink: ResponseSink, max_header_bytes: int = 65536) -> None:
        self._p = httptools.HttpResponseParser(self)
        self._sink = sink
        self._headers: list[tuple[bytes, bytes]] = []
        self._in_trailers = False
        self._trailers: list[tuple[bytes, bytes]] | None = None
        self._hbytes = 0
        self._length: int | None = None
        self._chunked = False
        self._conn_tokens: list[bytes] | None = None
        self._status = 0
        self.upgrade_offset: int | None = None
        self.max_header_bytes = max_header_bytes
        #: the request was HEAD: the response has no body whatever its headers say
        self.head_request = False

    def feed(self, data: bytes) -> None:
        try:
            self._p.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            self.upgrade_offset = e.args[0]
        except httptools.HttpParserCallbackError as e:
            ctx = e.__context__
            if isinstance(ctx, _HeadDone):
                self._p = httptools.HttpResponseParser(self)
                self._reset()
                return
            raise _unwrap(e) from None
        except httptools.HttpParserError as e:
            raise errors.UpstreamBadResponse(str(e)) from None

    def on_header(self, name: bytes, value: bytes) -> None:
        self._hbytes += len(value) + 32       # names are short; 32 covers name and framing
        if self._hbytes > self.max_header_bytes:
            raise _Abort(errors.UpstreamBadResponse("upstream response header too large"))
        if self._in_trailers:
            if self._trailers is None:
                self._trailers = []
            self._trailers.append((name, value))
            return
        if name in _R_PLAIN:
            self._headers.append((name, value))
            return
        kind = _R_SPECIAL.get(name)
        if kind is None:
            kind = _R_SPECIAL.get(name.lower())
            if kind is None:
                if len(_R_PLAIN) < 2048:
                    _R_PLAIN.add(name)
                self._headers.append((name, value))
                return
        if kind == _R_CL:
            self._length = int(value)
        elif kind == _R_TE:
            if value != b"chunked" and value.strip().lower() != b"chunked":
                # nginx: 'upstream sent unknown "Transfer-Encoding"', a 502 (the body's end
                # could not be found, and "gzip, chunked" cannot be passed on as chunked)
                raise _Abort(errors.UpstreamBadResponse(
                    "upstream sent unknown Transfer-Encoding: " + value.decode("latin-1")))
            self._chunked = True
        elif kind == _R_CONN:
            # only names beyond the hop-by-hop set (and close/keep-alive) need filtering
            extra = _CONN_EXTRA.get(value, _MISSING)
            if extra is _MISSING:
                extra = [t for t in (t.strip().lower() for t in value.split(b","))
                         if t not in HOP_BY_HOP and t != b"close"] or None
                if len(_CONN_EXTRA) < 256:
                    _CONN_EXTRA[value] = extra
            if extra:
                self._conn_tokens = extra  # type: ignore[assignment]

    def on_headers_complete(self) -> None:
        self._in_trailers = True
        p = self._p
        status = self._status = p.get_status_code()
        headers = self._headers
        if self._conn_tokens:
            drop = self._conn_tokens
            headers = [(n, v) for n, v in headers if n.lower() not in drop]
        self._sink.on_response(status, headers, p.should_keep_alive(),
                               None if self._chunked else self._length, self._chunked)
        if self.head_request and status >= 200:
            self._sink.on_end(None)
            raise _HeadDone

    def on_body(self, body: bytes) -> None:
        self._sink.on_body(body)

    def _reset(self) -> None:
        self._headers = []              # per-message state, reset at the end of a message
        self._in_trailers = False
        self._trailers = None
        self._hbytes = 0
        self._length = None
        self._chunked = False
        self._conn_tokens = None

    def on_message_complete(self) -> None:
        trailers = self._trailers
        self._reset()
        if self._status < 200:
            return          # interim (100, 103): the final response follows; 101: a tunnel
        self._sink.on_end(trailers)


# -- serialisation -----------------------------------------------------------------------
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_STATUS_LINES: dict[int, bytes] = {}


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        reason = _REASONS.get(status, b"Unknown")
        line = _STATUS_LINES[status] = b"HTTP/1.1 %d %s\r\n" % (status, reason)
    return line


def encode_headers(headers: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join([n + b": " + v + b"\r\n" for n, v in headers])


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def last_chunk(trailers: list[tuple[bytes, bytes]] | None) -> bytes:
    if not trailers:
        return b"0\r\n\r\n"
    return b"0\r\n" + encode_headers(
        [(n, v) for n, v in trailers if n.lower() not in HOP_BY_HOP]) + b"\r\n"


__all__ = ["Limits", "RequestParser", "ResponseParser", "RequestSink", "ResponseSink",
           "status_line", "encode_headers", "chunk", "last_chunk"]
