"""One request through the gateway — the life of a request, in order.

``Exchange.start`` runs when a request head is complete: match a route, run the request
phases, pick a node, take a pooled connection (or open one), and stream the request to it.
The upstream connection calls back with the response head, body chunks and end, which are
relayed to the downstream as they come.  Nothing here knows HTTP/1.1 framing on the client
side: the downstream object (``server/h1.py`` now, an HTTP/2 stream later) frames the bytes.

Callback style on purpose: no task and no future per request on the common path (a task is
created only to open a new upstream connection).  Flow control is explicit: a full upstream
write buffer pauses reading from the client, a full client write buffer pauses reading from
the upstream.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from .. import errors
from ..pdk.context import Context
from ..routing.expr import post_arg_path, post_arg_value
from ..upstream.pool import NodePool, UpstreamConnection
from ..wire.h1 import chunk, last_chunk
from ..wire.head import _FWD, FWD_XFF, HOP_BY_HOP, RequestHead, forward_kind
from .chain import EMPTY

log = logging.getLogger("pylon.proxy")

#: methods nginx will retry on another node after the request was sent (proxy_next_upstream)
IDEMPOTENT = frozenset(("GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"))
#: request body kept for retries; beyond this a request is only retried before it is sent
REPLAY_LIMIT = 64 * 1024
#: request body buffered while no upstream connection is ready; reading pauses beyond it
PENDING_LIMIT = 64 * 1024
_USUAL_TOKENS = HOP_BY_HOP | {b"close"}
_CONNECT_ERRORS = (errors.UpstreamConnectFailed, errors.UpstreamConnectTimeout,
                   errors.UpstreamTLSError)
_JSON = [(b"Content-Type", b"application/json; charset=utf-8")]
_TEXT = [(b"Content-Type", b"text/plain; charset=utf-8")]
_json = msgspec.json.Encoder()
HOSTNAME = socket.gethostname()
_STEP_PROXY = 7
#: ``post_body`` when the body has nothing for ``post_arg.*`` (none, too large, not JSON)
_NO_BODY = object()


class NeedBody(Exception):
    """Raised by a ``post_arg.*`` lookup while routing before the body has arrived: the
    exchange reads it (bounded) and routes again."""


class Exchange(Context):
    # Defaults live on the class so that creating an exchange sets five attributes, not
    # forty: this object is made once per request.
    t_up_start = 0.0
    t_up_head = 0.0
    t_end = 0.0
    match: Any = None
    route: Any = None
    rt: Any = None
    node: Any = None
    tried: set[str] | None = None
    attempts = 0
    retry_deadline = 0.0
    conn: UpstreamConnection | None = None
    connecting: asyncio.Task[None] | None = None
    error: errors.GatewayError | None = None
    status = 0
    up_status = 0
    #: statuses of the failed attempts so far ("502, 504"): X-APISIX-Upstream-Status
    up_tried = ""
    up_addr = ""
    up_keep = False
    #: the upstream response's headers as it sent them (``$upstream_http_*``)
    up_headers: list[tuple[bytes, bytes]] | None = None
    #: request body kept for a retry; () = nothing yet, None = too large to replay
    replay: list[bytes] | tuple[()] | None = ()
    pending: list[bytes] | tuple[()] = ()
    pending_bytes = 0
    body_in = 0
    req_done = False
    req_trailers: list[tuple[bytes, bytes]] | None = None
    req_sent = False
    head_sent = False
    resp_started = False
    finished = False
    #: set on the instance only to override the route's (one attribute fewer per request)
    _read_timeout: float | None = None
    up_paused = False
    up_blocked = False
    sent_continue = False
    #: some request body bytes were written to an upstream (they cannot be sent again
    #: unless they are in ``replay``)
    body_sent = False
    #: the current attempt runs on a reused keep-alive connection
    reused = False
    stale_retried = False
    #: an upgrade request (WebSocket) on a route with enable_websocket
    upgrading = False
    switch_headers: list[tuple[bytes, bytes]] | None = None
    _mid: bytes | None = None
    _args: dict[str, str] | None = None
    _cookies: dict[str, str] | None = None
    detail = ""
    # plugins: the route's chain (merged with the consumer's once known), the global
    # rules' chain, where the request phases are (step, hook index), and which response
    # phases have hooks
    chain = EMPTY
    gchain = EMPTY
    step = 0
    hook_i = 0
    #: the response phases' hooks of this request (global first), joined once per request
    hf: tuple[Any, ...] = ()
    bf: tuple[Any, ...] = ()
    lg: tuple[Any, ...] = ()
    plugin_task: asyncio.Task[None] | None = None
    #: set by a plugin (traffic-split) to send this request to another upstream
    upstream_key: str | None = None
    #: the body as ``post_arg.*`` sees it, parsed once (``_post_args``)
    post_body: Any = None

    def __init__(self, down: Any, head: RequestHead, snap: Any, now: float) -> None:
        self.down = down
        self.head = head
        self.snap = snap
        self.loop = down.loop
        self.t_start = now

    @property
    def read_timeout(self) -> float:
        t = self._read_timeout
        if t is not None:
            return t
        route = self.route
        return route.read_timeout if route is not None else 60.0

    @read_timeout.setter
    def read_timeout(self, v: float) -> None:
        self._read_timeout = v

    # ---------------------------------------------------------------- request path
    def start(self) -> None:
        try:
            self._start()
        except Exception:        # a bug: this request gets a 500, the connection goes on
            log.exception("internal error handling %s %s", self.head.method, self.head.path)
            self.reply_error(errors.InternalError())

    def _start(self) -> None:
        head = self.head
        if head.error is not None:
            self.reply_error(head.error)
            return
        compiled = self.snap.compiled
        down = self.down
        realip = down.realip            # the peer is in nginx_config.http.real_ip_from
        if realip is not None:
            raw = head.header(realip.header_b)
            if raw is not None:
                self._remote_addr = realip.addr(raw)
        try:
            m = compiled.router.match(head.method, head.host, head.path, self,
                                      self._remote_addr or down.client_addr)
        except NeedBody:            # a route's vars look into the body (post_arg.*)
            self.plugin_task = self.loop.create_task(self._match_with_body())
            return
        self._matched(m)

    def _matched(self, m: Any) -> None:
        """After routing: run the phases of the route (or of the global rules only)."""
        g = self.snap.compiled.global_chain
        if m is None:
            if g.empty:
                self.reply_error(errors.RouteNotFound())
                return
            self.gchain = g          # global rules run for requests no route matches too
            self._response_phases()
            self._continue()
            return
        self.match = m
        route = self.route = m.route
        chain = route.chain
        if g.empty and not chain.request:
            if chain.response:          # only response phases (a metrics or log plugin)
                self.chain = chain
                self._response_phases()
            self._proxy()
            return
        if not (chain.empty and g.empty):
            self.chain = chain
            self.gchain = g
            self._response_phases()
            self._continue()
            return
        self._proxy()

    async def _match_with_body(self) -> None:
        """Route again once the body is read (at most ``apisix.max_post_args_readable_size``;
        a larger body leaves ``post_arg.*`` nil, as in APISIX, and is still sent upstream)."""
        try:
            await self.read_body(self.down.w.settings.post_args_limit)
        except errors.BodyTooLarge:
            self.post_body = _NO_BODY
        except errors.GatewayError as e:      # the client's body was bad (the parser says)
            self.plugin_task = None
            self.reply_error(e)
            return
        self.plugin_task = None
        if self.finished:
            return
        head = self.head
        try:
            self._matched(self.snap.compiled.router.match(
                head.method, head.host, head.path, self,
                self._remote_addr or self.down.client_addr))
        except Exception:
            log.exception("internal error routing %s %s", head.method, head.path)
            self.reply_error(errors.InternalError())

    def _post_args(self) -> Any:
        """The request body parsed for ``post_arg.*`` / ``post_arg_*`` (a dict from a form,
        any JSON value), ``_NO_BODY`` when there is none to look at; raises ``NeedBody``
        while routing when the body has not arrived yet."""
        pb = self.post_body
        if pb is not None:
            return pb
        head = self.head
        ctype = head.header(b"content-type")
        ct = ctype.lstrip().lower() if ctype else b""
        form = ct.startswith(b"application/x-www-form-urlencoded")
        if not (form or ct.startswith(b"application/json")) or \
                (not head.chunked and not head.content_length):
            pb = _NO_BODY
        elif not self.req_done or self.head_sent:
            limit = self.down.w.settings.post_args_limit
            if limit and (head.content_length or 0) > limit:
                pb = _NO_BODY
            elif self.route is None and self.gchain is EMPTY and not self.req_done:
                raise NeedBody                 # routing: read it first (_match_with_body)
            else:
                return _NO_BODY                # not read by anyone: nothing to look at now
        else:
            body = b"".join(self.pending) if self.pending else b""
            if form:
                pb = {}
                for k, v in parse_qsl(body.decode("latin-1"), keep_blank_values=True):
                    pb.setdefault(k, v)            # a repeated field: its first value
            else:
                try:
                    pb = msgspec.json.decode(body)
                except msgspec.DecodeError:
                    pb = _NO_BODY
        self.post_body = pb
        return pb

    def _proxy(self) -> None:
        """After the request phases: resolve the upstream and send the request."""
        route = self.route
        head = self.head
        key = self.upstream_key or route.upstream_key
        rt = self.snap.upstreams.get(key) if key is not None else None
        if rt is None:
            self.reply_error(errors.NoUpstream("missing upstream configuration in Route or Service"))
            return
        scheme = self.up_scheme
        if scheme is not None and scheme != rt.plan.scheme:      # a plugin's (proxy-rewrite)
            rt = self.down.w.runtimes.with_scheme(rt, scheme)
        self.rt = rt
        if head.upgrade is not None and route.websocket and b"upgrade" in head.conn_tokens:
            self.upgrading = True
        if rt.plan.retry_timeout:
            self.retry_deadline = self.t_start + rt.plan.retry_timeout
        self._try_node()

    def _try_node(self) -> None:
        rt = self.rt
        node = rt.balancer.pick(self, self.tried)
        if node is None:
            err = self.error
            if err is None:
                err = errors.NoHealthyUpstream("no node of the upstream can take the request")
            elif self.attempts > 1 and not isinstance(err, errors.UpstreamReadTimeout):
                err = errors.RetriesExhausted(f"all {self.attempts} attempts failed: {err}")
            self.reply_error(err)
            return
        self.node = node
        self.attempts += 1
        if self.tried is None:
            self.tried = {node.addr}
        else:
            self.tried.add(node.addr)
        self.up_addr = node.addr
        if rt.track:
            rt.balancer.before(node)
        pool: NodePool = rt.pools[node.addr]
        self.t_up_start = self.loop.time()
        conn = pool.take()
        if conn is not None:
            self._send_on(conn)
        else:
            self.connecting = self.loop.create_task(self._connect(pool))

    async def _connect(self, pool: NodePool) -> None:
        try:
            conn = await pool.connect(self.route.connect_timeout)
        except errors.UpstreamError as e:
            self.connecting = None
            if not self.finished:
                self._failed(e)
            return
        except asyncio.CancelledError:
            self.connecting = None
            raise
        self.connecting = None
        if self.finished:           # the client went away while we were connecting
            pool.put(conn)
            return
        try:
            self._send_on(conn)
        except Exception:
            log.exception("internal error sending a request upstream")
            self.upstream_failed(errors.InternalError())

    def _send_on(self, conn: UpstreamConnection) -> None:
        head = self.head
        self.conn = conn
        conn.owner = self                  # (UpstreamConnection.attach, inlined: hot path)
        conn.requests += 1
        conn.got_bytes = False
        conn.close_delimited = False
        parser = conn.parser
        parser.head_request = (self.up_method or head.method) == "HEAD"
        parser._sink = self                # response events come straight here
        if conn.requests > 1:
            self.reused = True
        parts = [self._upstream_head()]
        body = self.replay if self.replay is not None else self.pending
        if body:
            self.body_sent = True
        if head.chunked:
            parts.extend(chunk(c) for c in body)
        else:
            parts.extend(body)
        if self.pending:
            self.pending = ()
            self.pending_bytes = 0
        if self.req_done:
            if head.chunked:
                parts.append(last_chunk(self.req_trailers))
            conn.transport.write(b"".join(parts))
            self.req_sent = True
            conn.timeout_error = errors.UpstreamReadTimeout
            conn.deadline.set(self.loop.time() + self.read_timeout)
        else:
            conn.transport.write(b"".join(parts))
            if head.expect_continue and not self.sent_continue:
                self.sent_continue = True
                self.down.send_continue()
        self.head_sent = True
        if self.up_blocked:
            self.up_blocked = False
            self.down.resume_body()

    def _upstream_head(self) -> bytes:
        mid = self._mid
        head = self.head
        if mid is None:
            parts = [(self.up_method or head.method).encode(), b" ", head.target,
                     b" HTTP/1.1\r\n"]
            xff = None
            # names listed in Connection beyond the usual ones are hop-by-hop too (rare)
            drop = head.conn_tokens - _USUAL_TOKENS if head.conn_tokens else None
            fwd = _FWD
            for n, v in head.headers:
                kind = fwd.get(n)
                if kind is None:
                    kind = forward_kind(n)
                if kind:
                    if kind == FWD_XFF:
                        xff = v if xff is None else xff + b", " + v
                    continue
                if drop and n.lower() in drop:     # named in Connection: hop-by-hop too
                    continue
                parts += (n, b": ", v, b"\r\n")
            down = self.down
            client = down.client_addr_b if self._remote_addr is None else \
                self._remote_addr.encode()
            parts += (b"X-Real-IP: ", client,
                      b"\r\nX-Forwarded-For: ", xff + b", " + client if xff else client,
                      b"\r\nX-Forwarded-Proto: ", down.scheme_b,
                      b"\r\nX-Forwarded-Host: ", head.host.encode("latin-1"),
                      b"\r\nX-Forwarded-Port: ", down.server_port_b, b"\r\n")
            if self.upgrading:
                parts += (b"Connection: upgrade\r\nUpgrade: ", head.upgrade, b"\r\n")
            if head.chunked:
                parts.append(b"Transfer-Encoding: chunked\r\n")
            elif head.content_length is not None:
                parts.append(b"Content-Length: %d\r\n" % head.content_length)
            mid = b"".join(parts)
            if self.attempts > 1 or self.retry_deadline:   # kept for another attempt
                self._mid = mid
        plan = self.rt.plan
        if self.up_host is not None:           # a plugin's (proxy-rewrite ``host``)
            host = self.up_host
        elif plan.pass_host == "pass":
            host = head.authority
        elif plan.pass_host == "node":
            host = self.rt.host_headers[self.node.addr]
        else:
            host = plan.upstream_host.encode()
        return mid + b"Host: " + host + b"\r\n\r\n"

    # -- plugin phases -------------------------------------------------------------------
    def _response_phases(self) -> None:
        # Only non-empty phases become instance attributes: an exchange with 30 or more
        # instance attributes loses CPython's shared-key dict (every attribute access
        # slows down; measured +5 µs per request), so each one set per request counts.
        c, g = self.chain, self.gchain
        hf = g.header_filter + c.header_filter if g.header_filter else c.header_filter
        if hf or self.hf:
            self.hf = hf
        bf = g.body_filter + c.body_filter if g.body_filter else c.body_filter
        if bf or self.bf:
            self.bf = bf
        lg = g.log + c.log if g.log else c.log
        if lg or self.lg:
            self.lg = lg

    def _continue(self) -> None:
        """Run (or resume) the request phases; then proxy, or 404 when no route matched."""
        if self._run_phases():
            if self.route is not None:
                self._proxy()
            else:
                self.reply_error(errors.RouteNotFound())

    def _run_phases(self) -> bool:
        """Global rewrite + access, the route's rewrite, the consumer's plugins merged in,
        the route's access, then before_proxy (global, route).  True when every hook let
        the request through; False when one answered it or an async hook is running (it
        resumes here when done)."""
        g = self.gchain
        step = self.step
        if g is EMPTY and step == 0:
            # the common case, no global rules: the same order, without the step machine
            c = self.chain
            if c.rewrite and not self._hooks(c.rewrite, 2, 0):
                return False
            cons = self.consumer
            if cons is None or not cons.plugins:
                c = self.chain
                if c.access and not self._hooks(c.access, 4, 0):
                    return False
                if c.before_proxy and not self._hooks(c.before_proxy, 6, 0):
                    return False
                self.step = _STEP_PROXY
                return True
            step = 3
        while step < _STEP_PROXY:
            i = self.hook_i
            if step == 0:
                hooks = g.rewrite
            elif step == 1:
                hooks = g.access
            elif step == 2:
                if self.route is None:
                    self.step = step
                    return True
                hooks = self.chain.rewrite
            elif step == 3:
                cons = self.consumer
                hooks = ()
                if cons is not None and cons.plugins and i == 0:
                    self.chain = merged = cons.chain_for(self.chain)
                    self._response_phases()
                    hooks = merged.consumer_rewrite
                elif i:
                    hooks = self.chain.consumer_rewrite
            elif step == 4:
                hooks = self.chain.access
            elif step == 5:
                hooks = g.before_proxy
            else:
                hooks = self.chain.before_proxy
            if hooks and not self._hooks(hooks, step, i):
                return False
            step += 1
            self.hook_i = 0
        self.step = step
        return True

    def _hooks(self, hooks: tuple[Any, ...], step: int, start: int) -> bool:
        """Run ``hooks[start:]`` of request phase ``step``: True when all let the request
        through; False when one answered or is running asynchronously."""
        for i in range(start, len(hooks)):
            h = hooks[i]
            if h.filter is not None and not h.filter(self):
                continue
            try:
                r = h.fn(h.conf, self)
            except Exception as e:  # noqa: BLE001 - Reply, or a plugin's bug
                self._hook_raised(h, e)
                return False
            if r is not None:
                if hasattr(r, "__await__"):
                    self.step = step
                    self.hook_i = i + 1
                    self.plugin_task = self.loop.create_task(self._await_hook(h, r))
                    return False
                self._plugin_reply(h, r)
                return False
        return True

    async def _await_hook(self, h: Any, aw: Any) -> None:
        try:
            r = await aw
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001
            self.plugin_task = None
            if not self.finished:
                self._hook_raised(h, e)
            return
        self.plugin_task = None
        if self.finished:
            return
        if r is not None:
            self._plugin_reply(h, r)
            return
        try:
            self._continue()
        except Exception:
            log.exception("internal error after plugin %s", h.name)
            self.reply_error(errors.InternalError())

    def _hook_raised(self, h: Any, e: Exception) -> None:
        from ..pdk import Reply
        if isinstance(e, Reply):
            self._plugin_reply(h, (e.status, e.body, e.headers))
        elif isinstance(e, errors.GatewayError):
            self.reply_error(e)
        else:
            log.error("plugin %s failed in %s for %s %s", h.name, h.phase, self.head.method,
                      self.head.path, exc_info=e)
            self.reply_error(errors.PluginFailed(f"plugin {h.name} failed"))

    def _plugin_reply(self, h: Any, r: Any) -> None:
        """A hook's return value → the response: ``status``, ``(status, body)`` or
        ``(status, body, headers)``; a dict or list body is sent as JSON."""
        try:
            if isinstance(r, int):
                status, body, hdrs = r, None, None
            else:
                status, body = r[0], r[1]
                hdrs = r[2] if len(r) > 2 else None
            if not isinstance(status, int) or not 100 <= status <= 999:
                raise TypeError(f"bad status {status!r}")
        except (TypeError, IndexError, KeyError):
            log.error("plugin %s returned %r from %s; expected status or (status, body)",
                      h.name, r, h.phase)
            self.reply_error(errors.PluginFailed(f"plugin {h.name} failed"))
            return
        if h.error_response is not None and status >= 400:
            body = h.error_response
        self.detail = self.detail or f"plugin_{h.name}"
        headers: list[tuple[bytes, bytes]]
        if body is None:
            data, headers = b"", []
        elif isinstance(body, bytes):
            data, headers = body, []
        elif isinstance(body, str):
            data, headers = body.encode(), list(_TEXT)
        else:
            data, headers = _json.encode(body), list(_JSON)
        if hdrs:
            items = hdrs.items() if isinstance(hdrs, dict) else hdrs
            for n, v in items:
                nb = n.encode("latin-1") if isinstance(n, str) else n
                if nb.lower() == b"content-type":
                    headers = [(k, x) for k, x in headers if k.lower() != b"content-type"]
                if isinstance(v, (list, tuple)):
                    headers.extend((nb, str(x).encode("latin-1")) for x in v)
                else:
                    headers.append((nb, v.encode("latin-1") if isinstance(v, str)
                                    else str(v).encode("latin-1") if not isinstance(v, bytes)
                                    else v))
        self.reply_local(status, headers, data, False)

    def reply_local(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                    close: bool) -> None:
        """A response made by the gateway (a plugin's reply, an error): the response
        phases of the plugins run on it as on an upstream response."""
        if self.finished:
            return
        if self.resp_started:
            self.down.abort()
            self.finish()
            return
        self.status = status
        self.resp_started = True
        if self.extra_resp or self.added_resp:
            headers = self._with_extra(headers)
        if self.hf or self.bf:
            try:
                if self.hf:
                    self.resp_headers = list(headers)
                    self.resp_length = len(body)
                    self._header_filter()
                    headers = self.resp_headers
                if self.bf:
                    body = self._body_filter(body, True)
            except Exception:
                log.exception("plugin failed on a local reply")
        elif self.lg:
            self.resp_headers = headers       # what the log phase reports as sent
        self.down.send_local(self.status, headers, body, close)
        self.finish()

    def _header_filter(self) -> None:
        for h in self.hf:
            if h.filter is not None and not h.filter(self):
                continue
            h.fn(h.conf, self)
        if self.body_encoder is not None:
            self._start_encoder()

    def _start_encoder(self) -> None:
        """``ctx.encode_body``: with the headers final, the encoding (if it still applies)
        becomes the last body filter, as nginx's gzip filter runs after the Lua ones."""
        start = self.body_encoder
        self.body_encoder = None
        encode = start(self)
        if encode is not None:
            self.body_changed = True
            self.bf = (*self.bf, _EncodeHook(encode))

    def _body_filter(self, data: bytes, last: bool) -> bytes:
        for h in self.bf:
            if h.filter is not None and not h.filter(self):
                continue
            out = h.fn(h.conf, self, data, last)
            if out is not None:
                data = out
        return data

    def _log_phase(self) -> None:
        for h in self.lg:
            if h.filter is not None and not h.filter(self):
                continue
            try:
                h.fn(h.conf, self)
            except Exception:
                log.exception("plugin %s failed in log", h.name)

    # -- request body from the downstream ------------------------------------------------
    def req_body(self, data: bytes) -> None:
        self.body_in += len(data)
        cap = self.captured
        if cap is not None and len(cap) < self.capture_limit:
            cap += data[:self.capture_limit - len(cap)]
        replay = self.replay
        if replay is not None:
            if self.body_in > REPLAY_LIMIT:
                self.replay = None
            elif replay:
                replay.append(data)       # type: ignore[union-attr]
            else:
                self.replay = [data]
        conn = self.conn
        if conn is not None and self.head_sent:
            self.body_sent = True
            conn.transport.write(chunk(data) if self.head.chunked else data)
        elif not self.finished:
            if self.pending:
                self.pending.append(data)  # type: ignore[union-attr]
            else:
                self.pending = [data]
            self.pending_bytes += len(data)
            waiter = self.body_waiter
            if waiter is not None:        # a plugin reads the whole body: no pause
                if self.pending_bytes > self.body_limit:
                    self.body_waiter = None
                    if not waiter.done():
                        waiter.set_exception(errors.BodyTooLarge())
                return
            if self.pending_bytes > PENDING_LIMIT and not self.up_blocked:
                self.up_blocked = True
                self.down.pause_body()

    def req_end(self, trailers: list[tuple[bytes, bytes]] | None) -> None:
        self.req_done = True
        self.req_trailers = trailers
        waiter = self.body_waiter
        if waiter is not None:
            self.body_waiter = None
            if not waiter.done():
                waiter.set_result(b"".join(self.pending) if self.pending else b"")
        conn = self.conn
        if conn is not None and self.head_sent:
            if self.head.chunked:
                conn.transport.write(last_chunk(trailers))
            self.req_sent = True
            conn.arm(self.read_timeout, errors.UpstreamReadTimeout)

    # -- flow control ------------------------------------------------------------------------
    def upstream_writable(self, writable: bool) -> None:
        """The upstream's write buffer crossed a water mark: stop/start reading the client."""
        conn = self.conn
        if writable:
            if conn is not None:
                if self.req_sent:
                    conn.arm(self.read_timeout, errors.UpstreamReadTimeout)
                else:
                    conn.deadline.clear()
            self.down.resume_body()
        else:
            if conn is not None:
                conn.arm(self.route.send_timeout, errors.UpstreamSendTimeout)
            self.down.pause_body()

    def downstream_writable(self, writable: bool) -> None:
        """The client's write buffer crossed a water mark: stop/start reading the upstream."""
        conn = self.conn
        if conn is None:
            return
        if writable:
            if self.up_paused:
                self.up_paused = False
                conn.transport.resume_reading()
        elif not self.up_paused:
            self.up_paused = True
            conn.transport.pause_reading()

    # ---------------------------------------------------------------- response path
    # The upstream connection's ResponseParser calls these three directly while this exchange
    # owns the connection (its sink is switched in _send_on and back in _release).
    def on_response(self, status: int, headers: list[tuple[bytes, bytes]], keep_alive: bool,
                    length: int | None, chunked: bool) -> None:
        """Response head from the upstream (hop-by-hop headers already removed)."""
        if status < 200:
            if status == 101:
                self.switch_headers = headers    # the tunnel starts in switched()
                self.up_status = self.status = 101
            elif status != 100:
                self.down.send_interim(status, headers)
            return
        self.t_up_head = self.loop.time()
        self.up_status = self.status = status
        self.up_keep = keep_alive
        self.resp_started = True
        if status >= 500 or self.down.w.settings.show_upstream_status:
            headers.append(self._upstream_status_header(status))
        self.up_headers = headers
        if length is None and not chunked and self.conn is not None and not (
                status == 204 or status == 304 or (self.up_method or self.head.method) == "HEAD"):
            self.conn.close_delimited = True   # by the upstream's framing, whatever plugins do
        if self.extra_resp or self.added_resp:
            headers = self._with_extra(headers)
        if self.hf:
            self.resp_headers = list(headers)  # (up_headers stay as the upstream sent them)
            self.resp_length = length
            try:
                self._header_filter()
            except Exception:
                log.exception("plugin failed in header_filter")
            headers = self.resp_headers
            status = self.status
            if self.body_changed:
                length = None
        elif self.lg:
            self.resp_headers = headers       # what the log phase reports as sent
        no_body = status == 204 or status == 304 or self.head.method == "HEAD"
        if self.up_method == "HEAD" and not no_body:   # the client's GET was sent as HEAD
            length = 0
        self.down.send_head(status, headers, length, no_body)

    def on_body(self, data: bytes) -> None:
        down = self.down
        if self.bf:
            try:
                data = self._body_filter(data, False)
            except Exception:
                log.exception("plugin failed in body_filter")
        down.send_data(data)
        if down.write_paused and not self.up_paused and self.conn is not None:
            self.up_paused = True
            self.conn.transport.pause_reading()

    def on_end(self, trailers: list[tuple[bytes, bytes]] | None) -> None:
        conn = self.conn
        self.conn = None
        node = self.node
        rt = self.rt
        if rt.track:
            rt.balancer.after(node, self.loop.time() - self.t_up_start, False)
        if rt.health is not None:        # passive health checks (upstream checks.passive)
            rt.health.response(node.addr, self.up_status)
        if conn is not None:
            conn.deadline.due = None
            conn.owner = None
            conn.parser._sink = conn
            if self.up_keep and self.req_sent and not self.up_paused:
                rt.pools[node.addr].put(conn)
            else:
                conn.close()
        down = self.down
        if self.bf:
            try:
                tail = self._body_filter(b"", True)
            except Exception:
                log.exception("plugin failed in body_filter")
                tail = b""
            if tail:
                down.send_data(tail)
        down.send_end(trailers)
        # finish(), inlined for the common path
        self.finished = True
        self.t_end = self.loop.time()
        if self.lg:
            self._log_phase()
        down.exchange_done(self)

    def switched(self, conn: UpstreamConnection, rest: bytes) -> None:
        """The upstream answered 101: splice client and upstream (WebSocket)."""
        if not self.upgrading or self.switch_headers is None or conn is not self.conn:
            self.upstream_failed(errors.UpstreamBadResponse("101 without an upgrade request"))
            return
        self.conn = None
        conn.owner = None
        conn.parser._sink = conn
        conn.deadline.cancel()
        self.resp_started = True
        self.t_up_head = self.loop.time()
        if self.rt.track:
            self.rt.balancer.after(self.node, self.t_up_head - self.t_up_start, False)
        conn.tunnel = self.down.start_tunnel(self, self.switch_headers, self.head.upgrade,
                                             conn.transport, rest, self.read_timeout)

    def tunnel_closed(self, tunnel: object) -> None:
        self.finish()

    def upstream_failed(self, error: errors.GatewayError) -> None:
        """The upstream connection failed (reset, timeout, bad response)."""
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.parser._sink = conn
            conn.close()
            if (self.reused and not self.stale_retried and not self.resp_started
                    and not self.finished and isinstance(error, errors.UpstreamReset)
                    and not conn.got_bytes and self._replayable()
                    and (self.up_method or self.head.method) in IDEMPOTENT):
                # the server closed an idle keep-alive connection as we reused it: one more
                # try on a fresh connection to the same node, not counted as a retry (nginx)
                self.stale_retried = True
                self.head_sent = self.req_sent = False
                pool = self.rt.pools[self.node.addr]
                self.connecting = self.loop.create_task(self._connect(pool))
                return
        self._failed(error)

    def _replayable(self) -> bool:
        """The request can be sent again: its body so far is kept, or none was sent."""
        return self.replay is not None or not self.body_sent

    def _failed(self, error: errors.GatewayError) -> None:
        node = self.node
        if node is not None:
            rt = self.rt
            if rt.track:
                rt.balancer.after(node, None, True)
            if rt.health is not None:    # passive health checks: a tcp failure or timeout
                rt.health.failure(node.addr, error)
        self.error = error
        if self.finished:
            return
        if self.resp_started:
            self.detail = error.code
            self.down.abort()
            self.finish()
            return
        if node is not None and isinstance(error, errors.UpstreamError):
            tried = self.up_tried
            self.up_tried = f"{tried}, {error.status}" if tried else str(error.status)
        if self._may_retry(error):
            log.info("retrying %s %s after %s on %s", self.head.method, self.head.path,
                     error.code, self.up_addr)
            self.head_sent = False
            self.req_sent = False
            self._try_node()
            return
        self.reply_error(error)

    def _may_retry(self, error: errors.GatewayError) -> bool:
        if not getattr(error, "retryable", False) or self.attempts > self.rt.retries:
            return False
        if self.retry_deadline and self.loop.time() > self.retry_deadline:
            return False
        if not self._replayable():
            return False
        return isinstance(error, _CONNECT_ERRORS) or \
            (self.up_method or self.head.method) in IDEMPOTENT

    def reply_error(self, error: errors.GatewayError) -> None:
        if self.finished:
            return
        self.error = error
        self.detail = error.code
        headers = _JSON
        if self.up_tried:            # every node tried failed: what nginx's $upstream_status says
            headers = [*_JSON, (b"X-APISIX-Upstream-Status", self.up_tried.encode())]
        self.reply_local(error.status, headers, errors.error_body(error.message), error.close)

    def _upstream_status_header(self, status: int) -> tuple[bytes, bytes]:
        """``X-APISIX-Upstream-Status`` (APISIX's header_filter): every status tried, comma
        separated as nginx's ``$upstream_status``; sent when the last one is a 5xx, or always
        with ``apisix.show_upstream_status_in_response_header``."""
        tried = self.up_tried
        return (b"X-APISIX-Upstream-Status",
                f"{tried}, {status}".encode() if tried else str(status).encode())

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.t_end = self.loop.time()
        task = self.plugin_task
        if task is not None:           # an async hook still running: the client is gone
            self.plugin_task = None
            task.cancel()
        if self.body_waiter is not None and not self.body_waiter.done():
            self.body_waiter.cancel()
        if self.lg:
            self._log_phase()
        conn = self.conn
        if conn is not None:        # finished without the upstream finishing: not reusable
            self.conn = None
            conn.owner = None
            conn.parser._sink = conn
            conn.close()
        self.down.exchange_done(self)

    def downstream_lost(self) -> None:
        """The client connection closed before the exchange finished (nginx's 499)."""
        if self.finished:
            return
        if not self.resp_started:
            self.status = 499
        self.detail = self.detail or "client_closed"
        if self.node is not None and self.conn is not None and self.rt.track:
            self.rt.balancer.after(self.node, None, False)
        self.finish()

    def wall_start(self) -> float:
        return self.t_start + self.down.w.wall_offset

    # ---------------------------------------------------------------- variables
    def var(self, name: str) -> str | None:
        """nginx-style variables for ``vars`` expressions, hashing and log formats."""
        f = _VARS.get(name)
        if f is not None:
            return f(self)  # type: ignore[no-any-return]
        if name.startswith("arg_"):
            return self.args().get(name[4:])
        if name.startswith("http_"):
            want = name[5:].replace("_", "-").encode("latin-1")
            v = self.head.header(want)
            if v is None and b"-" in want:
                # nginx (APISIX: underscores_in_headers on) reads ``$http_no_cache`` from a
                # ``no_cache`` header too: "_" and "-" in header names match alike
                v = next((hv for hn, hv in self.head.headers
                          if hn.lower().replace(b"_", b"-") == want), None)
            return None if v is None else v.decode("latin-1")
        if name.startswith("cookie_"):
            return self.cookies().get(name[7:])
        if name.startswith("sent_http_"):
            return self.resp_header(name[10:].replace("_", "-"))
        if name.startswith("upstream_http_"):
            ln = name[14:].replace("_", "-").encode("latin-1")
            for k, v in self.up_headers or ():
                if k.lower() == ln:
                    return v.decode("latin-1")
        if name.startswith("post_arg"):
            return self._post_arg(name)
        return None

    def _post_arg(self, name: str) -> Any:
        """``post_arg.<JSON path>`` (a JSON or urlencoded body, APISIX 3.x) and
        ``post_arg_<name>`` (an urlencoded form only)."""
        if name.startswith("post_arg."):
            data = self._post_args()
            return None if data is _NO_BODY else post_arg_value(data, post_arg_path(name))
        if name.startswith("post_arg_"):
            ctype = self.head.header(b"content-type") or b""
            if not ctype.lower().startswith(b"application/x-www-form-urlencoded"):
                return None
            data = self._post_args()
            return data.get(name[9:]) if isinstance(data, dict) else None
        return None

    def args(self) -> dict[str, str]:
        a = self._args
        if a is None:
            a = {}
            if self.head.query:
                for k, v in parse_qsl(self.head.query.decode("latin-1"), keep_blank_values=True):
                    a.setdefault(k, v)
            self._args = a
        return a

    def cookies(self) -> dict[str, str]:
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


class _EncodeHook:
    """A content encoding (``ctx.encode_body``) as the last body_filter hook."""

    __slots__ = ("conf",)
    filter = None
    name = "content-encoding"

    def __init__(self, encode: Any) -> None:
        self.conf = encode

    @staticmethod
    def fn(encode: Any, ctx: Any, data: bytes, last: bool) -> bytes:
        return encode(data, last)  # type: ignore[no-any-return]


def _slotted(cls: type) -> type:
    """``cls`` rebuilt with ``__slots__`` for every per-request attribute, their defaults
    set by a generated ``__init__``.

    Defaults written on the class keep the code readable, but an instance then keeps its
    attributes in a dict, and CPython shares a dict's keys between instances only up to 30
    names: past that (any request through a few plugins sets more) every exchange gets a
    private dict and every attribute access on it slows down -- measured at several µs per
    request.  Slots have no such cliff; ``__dict__`` (from the pdk ``Context`` base) still
    takes attributes no slot names."""
    defaults: dict[str, Any] = {}
    for klass in reversed(cls.__mro__[:-1]):
        for k, v in vars(klass).items():
            if k.startswith("__") or callable(v) or isinstance(
                    v, (property, staticmethod, classmethod)):
                continue
            defaults[k] = v
    params = ("down", "head", "snap", "loop", "t_start")
    ns = {k: v for k, v in vars(cls).items()
          if k not in defaults and k not in ("__dict__", "__weakref__")}
    ns["__slots__"] = tuple(defaults) + params
    consts = {f"_d{i}": v for i, v in enumerate(defaults.values())}
    lines = [f"    self.{k} = _d{i}" for i, k in enumerate(defaults)]
    src = ("def __init__(self, down, head, snap, now):\n" + "\n".join(lines) +
           "\n    self.down = down\n    self.head = head\n    self.snap = snap\n"
           "    self.loop = down.loop\n    self.t_start = now\n")
    exec(src, consts)            # noqa: S102 - generated from the class's own names
    ns["__init__"] = consts["__init__"]
    ns["__init__"].__qualname__ = f"{cls.__name__}.__init__"
    return type(cls.__name__, cls.__bases__, ns)


Exchange = _slotted(Exchange)  # type: ignore[misc]


def _upstream_status(x: Exchange) -> str | None:
    """nginx's ``$upstream_status`` (last value): the upstream's answer, or 502 / 504 when
    the node tried could not be reached or timed out; None when none was tried."""
    if x.up_status:
        return str(x.up_status)
    err = x.error
    if isinstance(err, errors.UpstreamError) and x.node is not None:
        return str(err.status)
    return None


_VARS: dict[str, Any] = {
    "uri": lambda x: x.head.path,
    "request_uri": lambda x: (x.orig_target or x.head.target).decode("latin-1"),
    "real_request_uri": lambda x: (x.orig_target or x.head.target).decode("latin-1"),
    "upstream_uri": lambda x: x.head.target.decode("latin-1"),
    "host": lambda x: x.head.host,
    "remote_addr": lambda x: x._remote_addr or x.down.client_addr,
    "remote_port": lambda x: x._remote_port or str(x.down.client_port),
    "realip_remote_addr": lambda x: x.down.client_addr,
    "realip_remote_port": lambda x: str(x.down.client_port),
    "server_port": lambda x: x.down.server_port_s,
    "server_addr": lambda x: x.down.server_addr,
    "scheme": lambda x: x.down.scheme,
    "request_method": lambda x: x.up_method or x.head.method,
    "query_string": lambda x: x.head.query.decode("latin-1"),
    "args": lambda x: x.head.query.decode("latin-1"),
    "server_protocol": lambda x: "HTTP/" + x.head.version,
    "route_id": lambda x: x.route.id if x.route is not None else None,
    "service_id": lambda x: x.route.service_id if x.route is not None else None,
    "consumer_name": lambda x: x.consumer_name,
    "route_name": lambda x: x.route.name if x.route is not None else None,
    "service_name": lambda x: x.route.service_name if x.route is not None else None,
    # the response and timings (nginx's names): log formats, log plugins, vars after the fact
    "status": lambda x: str(x.status) if x.status else None,
    "request_time": lambda x: f"{(x.t_end or x.loop.time()) - x.t_start:.3f}",
    "request_length": lambda x: str(x.body_in),
    "bytes_sent": lambda x: str(x.down.bytes_out),
    "body_bytes_sent": lambda x: str(x.down.bytes_out),
    "upstream_addr": lambda x: x.up_addr or None,
    # APISIX's ctx.var.balancer_ip / balancer_port: the node picked for the request
    "balancer_ip": lambda x: x.node.host if x.node is not None else None,
    "balancer_port": lambda x: str(x.node.port) if x.node is not None else None,
    "upstream_status": _upstream_status,
    "upstream_response_time": lambda x: f"{max((x.t_end or x.loop.time()) - x.t_up_start, 0):.3f}"
    if x.up_status else None,
    "upstream_header_time": lambda x: f"{x.t_up_head - x.t_up_start:.3f}"
    if x.up_status else None,
    "msec": lambda x: f"{x.wall_start():.3f}",
    "time_iso8601": lambda x: time.strftime("%Y-%m-%dT%H:%M:%S%z",
                                            time.localtime(x.wall_start())),
    "time_local": lambda x: time.strftime("%d/%b/%Y:%H:%M:%S %z",
                                          time.localtime(x.wall_start())),
    "request": lambda x: f"{x.head.method} {(x.orig_target or x.head.target).decode('latin-1')} "
                         f"HTTP/{x.head.version}",
    "hostname": lambda x: HOSTNAME,
    "pid": lambda x: str(os.getpid()),
}
