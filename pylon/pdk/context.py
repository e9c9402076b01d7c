"""What a plugin hook can read and change about the request it runs for.

``ctx`` in ``def access(conf, ctx)`` is the request's exchange itself (no wrapper object per
request); this class is its public face, and the contract plugins type-check against: the
attributes declared below are set by the exchange (``pylon/proxy/exchange.py``), the methods
are what a plugin calls.  Names follow APISIX's PDK (``core.request``, ``core.response``,
``ctx.var``) in Python spelling.  Strings in, strings out: header names are case-insensitive,
values are latin-1 as on the wire.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, quote, unquote_to_bytes, urlencode

from .. import errors

if TYPE_CHECKING:
    from ..routing.router import Match
    from ..wire.head import RequestHead
    from .consumers import Consumer, ConsumerIndex, Credential


#: bytes a request-target must not hold (they would end or split the request line)
_UNSAFE_TARGET = re.compile(rb"[\x00-\x20\x7f]")
_METHOD = re.compile(r"[A-Z][A-Z_-]{0,31}")
_HOST = re.compile(r"[0-9A-Za-z.-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")

#: a header pair's name
_name = itemgetter(0)

#: ``encode(chunk, last) -> bytes``: a content encoding for one response (``encode_body``)
Encoder = Callable[[bytes, bool], bytes]


class RouteInfo(Protocol):
    """The matched route as a plugin sees it (``ctx.route``): the compiled route, read-only."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def service_id(self) -> str | None: ...
    @property
    def service_name(self) -> str | None: ...
    @property
    def upstream_key(self) -> str | None: ...
    @property
    def labels(self) -> dict[str, str] | None: ...
    @property
    def connect_timeout(self) -> float: ...
    @property
    def send_timeout(self) -> float: ...
    @property
    def read_timeout(self) -> float: ...
    @property
    def websocket(self) -> bool: ...


class Peer(Protocol):
    """The client side of the request as ``Context`` uses it (``proxy.downstream.Downstream``
    is the whole of it: what the exchange calls)."""

    @property
    def scheme(self) -> str: ...
    @property
    def client_addr(self) -> str: ...
    @property
    def server_port_s(self) -> str: ...
    @property
    def bytes_out(self) -> int: ...
    @property
    def max_body(self) -> int: ...
    @property
    def wall_offset(self) -> float: ...
    def send_continue(self) -> None: ...
    def resume_body(self) -> None: ...


class CompiledView(Protocol):
    @property
    def consumers(self) -> ConsumerIndex: ...
    @property
    def metadata(self) -> dict[str, Any]: ...
    @property
    def protos(self) -> dict[str, str]:
        """proto objects: id -> content (``pdk.protos.find``)"""


class SnapshotView(Protocol):
    """The configuration snapshot the request runs against (read once, at its start)."""

    @property
    def compiled(self) -> CompiledView: ...


class Context:
    # A plugin keeps per-request state in ``ctx.store``: the compiled core's exchange has
    # exactly the attributes declared here (no instance dict for new ones).

    # -- the contract: set by the exchange, read by plugins -----------------------------------
    #: the request head (wire ``RequestHead``): method, target, path, query, headers
    head: RequestHead
    #: the matched route (None: no route matched, global rules only) and the router's match
    route: RouteInfo | None
    match: Match | None
    #: the response status (0 until known), the upstream's (0: none), the node tried last
    status: int
    up_status: int
    up_addr: str
    #: the loop's clock (``loop.time()``): request start, upstream attempt start, end
    t_start: float
    t_up_start: float
    t_end: float
    #: request body bytes read from the client so far
    body_in: int
    #: set by a plugin (traffic-split) to send this request to another upstream
    upstream_key: str | None
    # -- the exchange's own state the methods below use (not for plugins) ------------------
    down: Peer
    snap: SnapshotView
    loop: asyncio.AbstractEventLoop
    pending: list[bytes] | tuple[()]
    pending_bytes: int
    replay: list[bytes] | tuple[()] | None
    req_done: bool
    req_trailers: list[tuple[bytes, bytes]] | None
    sent_continue: bool
    up_blocked: bool
    body_sent: bool
    _mid: bytes | None
    _args: dict[str, str] | None
    _cookies: dict[str, str] | None

    # defaults on the class: a request without plugins pays for none of these
    consumer: Consumer | None = None
    credential: Credential | None = None
    consumer_name: str | None = None
    _remote_addr: str | None = None
    _remote_port: str | None = None
    _store: dict[str, Any] | None = None
    #: response headers set before the response exists (applied to whatever is answered:
    #: they replace headers of the same name) and added (appended)
    extra_resp: list[tuple[bytes, bytes]] | None = None
    added_resp: list[tuple[bytes, bytes]] | None = None
    #: response headers while header_filter hooks run (mutable list of byte pairs)
    resp_headers: list[tuple[bytes, bytes]] | None = None
    #: the response body length its head announces (Content-Length; None: not known, e.g.
    #: chunked), for header_filter hooks
    resp_length: int | None = None
    body_changed = False
    #: set by ``encode_body``; run (and cleared) once every header_filter hook has run
    body_encoder: Callable[[Context], Encoder | None] | None = None
    body_waiter: asyncio.Future[bytes] | None = None
    body_limit = 0
    #: the request body kept by ``capture_body`` (at most ``capture_limit`` bytes)
    captured: bytearray | None = None
    capture_limit = 0
    #: the upstream request's method and Host when a plugin changed them (``set_method``,
    #: ``set_upstream_host``), and the client's request-target once ``set_upstream_uri``
    #: replaced it (``$request_uri`` keeps it)
    up_method: str | None = None
    up_host: bytes | None = None
    #: the scheme the upstream is reached over when a plugin changed it (``set_upstream_scheme``)
    up_scheme: str | None = None
    orig_target: bytes | None = None
    #: the upstream response's trailers once it ended (``$upstream_trailer_*``)
    up_trailers: list[tuple[bytes, bytes]] | None = None

    # -- variables -------------------------------------------------------------------------
    def var(self, name: str) -> str | None:
        """nginx-style variable ``$name`` (``uri``, ``arg_x``, ``http_x``, ``cookie_x``,
        ``status``, ``upstream_addr``...); None when it has no value.  The table is
        ``pylon/proxy/variables.py``; the exchange provides it."""
        raise NotImplementedError

    def upstream_host(self) -> str | None:
        """APISIX's ``$upstream_host`` as far as it is known when asked: a plugin's
        ``set_upstream_host``; the upstream's ``upstream_host`` (``pass_host: rewrite``); the
        node's host (``pass_host: node``: the node picked, or before that an upstream's only
        node); otherwise the client's Host.  The exchange provides it."""
        raise NotImplementedError

    def wall_start(self) -> float:
        """When the request started, as a Unix time (``time.time()`` clock)."""
        return self.t_start + self.down.wall_offset

    @property
    def bytes_sent(self) -> int:
        """Bytes sent to the client so far for this response, head included."""
        return self.down.bytes_out

    @property
    def server_port(self) -> int:
        """The port the client connected to (``$server_port``)."""
        return int(self.down.server_port_s)

    # -- request ---------------------------------------------------------------------------
    @property
    def method(self) -> str:
        return self.head.method

    @property
    def uri(self) -> str:
        """The normalised path (``$uri``)."""
        return self.head.path

    @property
    def host(self) -> str:
        return self.head.host

    @property
    def scheme(self) -> str:
        return self.down.scheme

    @property
    def remote_addr(self) -> str:
        """The client address (as ``real-ip`` may have set it)."""
        return self._remote_addr or self.down.client_addr

    def set_remote_addr(self, addr: str, port: int | None = None) -> None:
        """The client address as a trusted proxy reported it (``real-ip``): ``$remote_addr``
        (and ``$remote_port`` when given) follow; ``$realip_remote_addr`` keeps the peer."""
        self._remote_addr = addr
        if port is not None:
            self._remote_port = str(port)

    @property
    def route_id(self) -> str | None:
        r = self.route
        return r.id if r is not None else None

    @property
    def service_id(self) -> str | None:
        r = self.route
        return r.service_id if r is not None else None

    @property
    def store_if_any(self) -> dict[str, Any] | None:
        """``store`` if a hook has used it, else None (a log hook that only looks need not
        create it)."""
        return self._store

    @property
    def store(self) -> dict[str, Any]:
        """Per-request scratch space shared by the hooks of this request."""
        s = self._store
        if s is None:
            s = self._store = {}
        return s

    @property
    def consumers(self) -> ConsumerIndex:
        return self.snap.compiled.consumers

    def metadata(self, plugin: str) -> Any:
        """The plugin's ``plugin_metadata`` (prepared), or None."""
        return self.snap.compiled.metadata.get(plugin)

    def header(self, name: str) -> str | None:
        v = self.head.header(name.lower().encode("latin-1"))
        return None if v is None else v.decode("latin-1")

    def headers(self) -> list[tuple[str, str]]:
        return [(n.decode("latin-1"), v.decode("latin-1"))
                for n, v in self.head.headers]

    def set_header(self, name: str, value: str | None) -> None:
        """Set (replace) a request header sent upstream; None removes it."""
        head = self.head
        lname = name.lower().encode("latin-1")
        hs = [(n, v) for n, v in head.headers if n.lower() != lname]
        if value is not None:
            hs.append((name.encode("latin-1"), str(value).encode("latin-1")))
        head.headers = hs
        head._lower = None
        if self._mid is not None:
            self._mid = None
        if lname == b"cookie":
            self._cookies = None

    def remove_header(self, name: str) -> None:
        self.set_header(name, None)

    def add_header(self, name: str, value: str) -> None:
        """Add a request header sent upstream, keeping those of the same name."""
        head = self.head
        head.headers = [*head.headers, (name.encode("latin-1"), str(value).encode("latin-1"))]
        head._lower = None
        if self._mid is not None:
            self._mid = None
        if name.lower() == "cookie":
            self._cookies = None

    def set_headers(self, changes: dict[str, str | None]) -> None:
        """Several ``set_header`` calls in one pass over the headers."""
        head = self.head
        drop = {n.lower().encode("latin-1") for n in changes}
        hs = [(n, v) for n, v in head.headers if n.lower() not in drop]
        for n, v in changes.items():
            if v is not None:
                hs.append((n.encode("latin-1"), str(v).encode("latin-1")))
        head.headers = hs
        head._lower = None
        if self._mid is not None:
            self._mid = None
        if b"cookie" in drop:
            self._cookies = None

    def args(self) -> dict[str, str]:
        """The query arguments (a repeated one: its first value), parsed once."""
        a = self._args
        if a is None:
            a = {}
            if self.head.query:
                for k, v in parse_qsl(self.head.query.decode("latin-1"), keep_blank_values=True):
                    a.setdefault(k, v)
            self._args = a
        return a

    def cookies(self) -> dict[str, str]:
        """The request's cookies (a repeated one: its first value), parsed once."""
        c = self._cookies
        if c is None:
            c = {}
            raw = self.head.header(b"cookie")
            if raw:
                for part in raw.decode("latin-1").split(";"):
                    k, _, v = part.strip().partition("=")
                    if k:
                        c.setdefault(k, v)
            self._cookies = c
        return c

    def arg(self, name: str) -> str | None:
        return self.args().get(name)

    def cookie(self, name: str) -> str | None:
        return self.cookies().get(name)

    def set_uri(self, path: str, args: dict[str, str] | None = None) -> None:
        """Change the path (and optionally the query) sent upstream; ``$uri`` follows."""
        head = self.head
        if args is not None:
            head.query = urlencode(args).encode("latin-1")
            self._args = None
        head.path = path
        raw = quote(path, safe="/:@!$&'()*+,;=-._~%").encode("latin-1")
        head.target = raw + (b"?" + head.query if head.query else b"")
        if self._mid is not None:
            self._mid = None

    def set_upstream_uri(self, target: str) -> None:
        """Send ``target`` upstream as the request-target exactly as given: already
        percent-encoded, query included (APISIX ``ctx.var.upstream_uri``).  ``$uri`` and the
        arguments follow it; ``$request_uri`` keeps the client's.  A target that is not a
        path or holds a space or control character is refused (ValueError)."""
        try:
            raw = target.encode("latin-1")
        except UnicodeEncodeError:
            raw = target.encode("utf-8")
        if raw[:1] != b"/" or _UNSAFE_TARGET.search(raw):
            raise ValueError(f"bad upstream uri {target!r}")
        head = self.head
        if self.orig_target is None:
            self.orig_target = head.target
        path, _, query = raw.partition(b"?")
        head.target = raw
        head.path = unquote_to_bytes(path).decode("latin-1") if b"%" in path else \
            path.decode("latin-1")
        head.query = query
        self._args = None
        if self._mid is not None:
            self._mid = None

    def set_method(self, method: str) -> None:
        """The upstream request's method (APISIX ``ngx.req.set_method``); ``$request_method``
        follows.  ``ctx.method`` stays the client's, and the response is framed for it."""
        if not _METHOD.fullmatch(method):
            raise ValueError(f"bad method {method!r}")
        self.up_method = method
        if self._mid is not None:
            self._mid = None

    def set_upstream_host(self, host: str | None) -> None:
        """The Host header sent upstream whatever the upstream's ``pass_host`` says
        (APISIX ``ctx.var.upstream_host``); None: the upstream's rule again."""
        if host is not None and not _HOST.fullmatch(host):
            raise ValueError(f"bad upstream host {host!r}")
        self.up_host = None if host is None else host.encode("ascii")

    def set_upstream_scheme(self, scheme: str | None) -> None:
        """Reach the upstream over ``"http"`` or ``"https"`` whatever its ``scheme`` says
        (APISIX 2.x proxy-rewrite ``scheme``): the same nodes, ports, balancer and health
        state, connections of that scheme; None: the upstream's own scheme again."""
        if scheme is not None and scheme not in ("http", "https"):
            raise ValueError(f"bad upstream scheme {scheme!r}")
        self.up_scheme = scheme

    def set_args(self, args: dict[str, str]) -> None:
        """Replace the query string sent upstream."""
        head = self.head
        head.query = urlencode(args).encode("latin-1")
        path = head.target.split(b"?", 1)[0]
        head.target = path + (b"?" + head.query if head.query else b"")
        self._args = None
        if self._mid is not None:
            self._mid = None

    # -- request body ----------------------------------------------------------------------
    def read_body(self, limit: int | None = None) -> asyncio.Future[bytes]:
        """``await ctx.read_body()``: the whole request body (it is still sent upstream).
        More than ``limit`` bytes (default: the node's ``client_max_body_size`` or 16 MiB)
        answers 413."""
        loop = self.loop
        fut: asyncio.Future[bytes] = loop.create_future()
        pending = self.pending
        if self.req_done:
            if limit is not None and self.pending_bytes > limit:
                fut.set_exception(errors.BodyTooLarge())
            else:
                fut.set_result(b"".join(pending) if pending else b"")
            return fut
        self.body_waiter = fut
        self.body_limit = limit or self.down.max_body or (16 << 20)
        if self.pending_bytes > self.body_limit:
            fut.set_exception(errors.BodyTooLarge())
            return fut
        head = self.head
        if head.expect_continue and not self.sent_continue:
            self.sent_continue = True
            self.down.send_continue()
        if self.up_blocked:
            self.up_blocked = False
            self.down.resume_body()
        return fut

    def capture_body(self, limit: int) -> None:
        """Keep a copy of the first ``limit`` bytes of the request body as it streams
        upstream (loggers' ``include_req_body``): nothing is buffered or delayed; the copy is
        ``ctx.captured_body()`` by the log phase.  Call it from a request hook."""
        cap = self.captured
        if cap is not None:
            if limit > self.capture_limit:
                # an earlier, shorter capture stopped at its limit: take again what has not
                # gone upstream yet (a request hook runs before any body byte is sent)
                if len(cap) >= self.capture_limit and not self.body_sent:
                    pending = self.pending
                    self.captured = bytearray(b"".join(pending)[:limit] if pending else b"")
                self.capture_limit = limit
            return
        pending = self.pending
        self.captured = bytearray(b"".join(pending)[:limit] if pending else b"")
        self.capture_limit = limit

    def captured_body(self) -> bytes | None:
        """The request body kept by ``capture_body`` (None if nobody asked for it); it is
        complete when the request has ended and was no longer than the limit."""
        return bytes(self.captured) if self.captured is not None else None

    def set_body(self, body: bytes) -> None:
        """Replace the request body sent upstream (after ``read_body``)."""
        if not self.req_done:
            raise RuntimeError("set_body needs the whole body: await ctx.read_body() first")
        head = self.head
        self.pending = [body] if body else ()
        self.pending_bytes = len(body)
        if self.replay is not None:
            self.replay = [body] if body else ()
        head.chunked = False
        head.content_length = len(body)
        self.req_trailers = None
        if self._mid is not None:
            self._mid = None

    # -- response --------------------------------------------------------------------------
    def set_resp_header(self, name: str, value: str | None) -> None:
        """Set a response header.  Before the response exists (rewrite/access) it is kept
        for whatever is answered, upstream response or a plugin's reply."""
        n = name.encode("latin-1")
        ln = n.lower()
        hs = self.resp_headers
        if hs is not None:
            hs[:] = [(k, v) for k, v in hs if k.lower() != ln]
            if value is not None:
                hs.append((n, str(value).encode("latin-1")))
            return
        extra = [(k, v) for k, v in (self.extra_resp or ()) if k.lower() != ln]
        if value is not None:
            extra.append((n, str(value).encode("latin-1")))
        self.extra_resp = extra

    def set_resp_headers(self, pairs: list[tuple[bytes, bytes]]) -> None:
        """Several ``set_resp_header`` calls at once, names and values as bytes (the cheap
        way for a plugin that sets the same headers on every request)."""
        if self.resp_headers is None and not self.extra_resp:
            self.extra_resp = pairs
            return
        for n, v in pairs:
            self.set_resp_header(n.decode("latin-1"), v.decode("latin-1"))

    def add_resp_header(self, name: str, value: str) -> None:
        pair = (name.encode("latin-1"), str(value).encode("latin-1"))
        if self.resp_headers is not None:
            self.resp_headers.append(pair)
        else:
            self.added_resp = [*(self.added_resp or ()), pair]

    def _with_extra(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """A response's headers with those set / added before it existed."""
        extra = self.extra_resp
        if extra:
            # the response's headers of the same names go; names of another length cannot
            # match, and usually none does: then no lower-casing, no filtering pass
            # (C-level passes: this runs on every response of a rate-limited route)
            if not set(map(len, map(_name, extra))).isdisjoint(map(len, map(_name, headers))):
                names = {n.lower() for n, _ in extra}
                headers = [(n, v) for n, v in headers if n.lower() not in names]
            headers = headers + extra
        if self.added_resp:
            headers = headers + self.added_resp
        return headers

    def resp_header(self, name: str) -> str | None:
        ln = name.lower().encode("latin-1")
        for k, v in self.resp_headers or ():
            if k.lower() == ln:
                return v.decode("latin-1")
        return None

    def body_will_change(self) -> None:
        """Called from ``header_filter`` by a plugin whose ``body_filter`` changes the body:
        the response goes out without its Content-Length."""
        self.body_changed = True

    def encode_body(self, start: Callable[[Context], Encoder | None]) -> bool:
        """From ``header_filter``: a content encoding (gzip, brotli) applied after every
        plugin's header_filter and body_filter, as nginx's gzip filter runs after the Lua
        ones (other plugins see the plain body).  ``start(ctx)`` runs once the headers are
        final; it returns ``encode(chunk, last) -> bytes`` for this response (which then
        goes out without Content-Length) or None to leave the body as it is.  One per
        response: the first (highest priority) plugin's; False when one is already set."""
        if self.body_encoder is not None:
            return False
        self.body_encoder = start
        return True
