"""One request through the gateway — the life of a request, in order.

``Exchange.start`` runs when a request head is complete: match a route, run the request
phases (``phases.py``), pick a node, take a pooled connection (or open one), and stream the
request to it.  The upstream connection calls back with the response head, body chunks and
end, which are relayed to the downstream as they come.  Nothing here knows the client's
framing: the downstream (``downstream.Downstream``: ``server/h1.py`` now, an HTTP/2 stream
later) frames the bytes.

Where the request is: ``state`` (``state.py``: MATCHING, PHASES, CONNECTING, SENDING,
WAITING, RESPONDING, TUNNEL, DONE; docs/life-of-a-request.md has the transitions).  The
other flags are not the lifecycle: ``req_done`` (the client's body has ended: that happens
at any point of the life), flow control (``up_paused``, ``up_blocked``), facts about the
current attempt (``body_sent``, ``reused``, ``stale_retried``, ``up_keep``), and
``upgrading`` / ``sent_continue`` (what the request asked for, what was already answered).

Callback style on purpose: no task and no future per request on the common path (a task is
created only to open a new upstream connection or to await an async hook).  Flow control is
explicit: a full upstream write buffer pauses reading from the client, a full client write
buffer pauses reading from the upstream.

Alongside: ``variables.py`` (``ctx.var``), ``reply.py`` (a hook's answer → a response),
``phases.py`` (the plugin phases), ``tunnel.py`` (after a 101).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

from .. import errors
from ..pdk.context import CompiledView, Context, RouteInfo, SnapshotView
from ..upstream.pool import NodePool, UpstreamConnection
from ..wire.h1 import chunk, last_chunk
from ..wire.head import _FWD, FWD_XFF, HOP_BY_HOP, RequestHead, forward_kind
from . import grpc, phases, variables
from .chain import EMPTY, Chain
from .reply import JSON
from .state import CONNECTING, DONE, MATCHING, PHASES, RESPONDING, SENDING, TUNNEL, WAITING
from .variables import NO_BODY, NeedBody

if TYPE_CHECKING:
    from ..routing.router import Match, Router
    from ..tls.table import SniTable
    from ..upstream.balancer import Node
    from ..upstream.h2 import H2Pool, H2UpStream
    from ..upstream.runtime import UpstreamRuntime
    from .downstream import Downstream
    from .tunnel import Tunnel

log = logging.getLogger("pylon.proxy")

#: methods nginx will retry on another node after the request was sent (proxy_next_upstream)
IDEMPOTENT: Final = frozenset(("GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"))
#: request body kept for retries; beyond this a request is only retried before it is sent
REPLAY_LIMIT: Final = 64 * 1024
#: request body buffered while no upstream connection is ready; reading pauses beyond it
PENDING_LIMIT: Final = 64 * 1024
_USUAL_TOKENS: Final = HOP_BY_HOP | {b"close"}
_CONNECT_ERRORS: Final = (errors.UpstreamConnectFailed, errors.UpstreamConnectTimeout,
                          errors.UpstreamTLSError, errors.UpstreamRefused)
Headers = list[tuple[bytes, bytes]]


class ProxyRoute(RouteInfo, Protocol):
    """The matched route as the exchange uses it (``config.compiler.CompiledRoute``)."""

    @property
    def chain(self) -> Chain: ...


class ProxyCompiled(CompiledView, Protocol):
    @property
    def router(self) -> Router: ...
    @property
    def global_chain(self) -> Chain: ...
    @property
    def tls(self) -> SniTable: ...


class ProxySnapshot(SnapshotView, Protocol):
    """The configuration the request runs against (``config.snapshot.Snapshot``)."""

    @property
    def compiled(self) -> ProxyCompiled: ...
    @property
    def upstreams(self) -> dict[str, UpstreamRuntime]: ...


class Exchange(Context):
    # Every per-request attribute is a slot, set by __init__: this object is made once per
    # request, and an instance dict past 30 names loses CPython's shared keys (every
    # attribute access slows down; measured at several µs per request).  Compiled by mypyc
    # there is no ``__dict__`` either: a plugin's own per-request state goes in ``ctx.store``
    # (interpreted, the pdk ``Context`` base still has one; don't rely on it).
    __slots__ = (
        # Context's
        "_remote_addr", "_remote_port", "_store", "added_resp", "body_changed", "body_encoder",
        "body_limit", "body_waiter", "capture_limit", "captured", "consumer", "consumer_name",
        "credential", "extra_resp", "orig_target", "resp_headers", "resp_length", "up_host",
        "up_method", "up_scheme", "up_trailers",
        # the request
        "down", "client", "head", "snap", "loop", "t_start", "state", "match", "route", "error",
        "detail", "status", "_args", "_cookies", "post_body", "upstream_key", "upgrading",
        # the request body
        "body_in", "req_done", "req_trailers", "replay", "pending", "pending_bytes",
        "sent_continue", "up_blocked", "body_sent",
        # plugins
        "chain", "gchain", "step", "hook_i", "hf", "bf", "lg", "plugin_task",
        # the upstream
        "rt", "node", "tried", "attempts", "retry_deadline", "conn", "connecting", "_mid",
        "_read_timeout", "reused", "stale_retried", "t_up_start", "t_up_head", "t_end",
        "up_status", "up_tried", "up_addr", "up_keep", "up_headers", "up_paused",
        "switch_headers", "h2s",
    )

    def __init__(self, down: Downstream, head: RequestHead, snap: ProxySnapshot,
                 now: float) -> None:
        self.down = down
        #: the same object as ``down``, with the whole downstream interface (``down`` is
        #: typed as the pdk ``Context`` declares it; a compiled subclass cannot narrow it)
        self.client: Downstream = down
        self.head = head
        self.snap = snap
        self.loop = down.loop
        self.t_start = now
        self.state = MATCHING
        self.match: Match | None = None
        self.route = None
        self.error: errors.GatewayError | None = None
        #: why the request ended as it did (the access log's detail code)
        self.detail = ""
        self.status = 0
        self._args: dict[str, str] | None = None
        self._cookies: dict[str, str] | None = None
        #: the body as ``post_arg.*`` sees it, parsed once (``variables.post_args``)
        self.post_body: Any = None
        self.upstream_key: str | None = None
        #: an upgrade request (WebSocket) on a route with enable_websocket
        self.upgrading = False
        # -- the request body
        self.body_in = 0
        #: the client's request body has ended (independent of ``state``: it may end
        #: before routing or while the response streams)
        self.req_done = False
        self.req_trailers: Headers | None = None
        #: request body kept for a retry; () = nothing yet, None = too large to replay
        self.replay: list[bytes] | tuple[()] | None = ()
        self.pending: list[bytes] | tuple[()] = ()
        self.pending_bytes = 0
        self.sent_continue = False
        #: reading the client's body is paused: no upstream connection takes it yet
        self.up_blocked = False
        #: some request body bytes were written to an upstream (they cannot be sent again
        #: unless they are in ``replay``)
        self.body_sent = False
        # -- plugins: the route's chain (merged with the consumer's once known), the
        # global rules' chain, where the request phases are (step, hook index), and the
        # response phases' hooks of this request (global first), joined once per request
        self.chain = EMPTY
        self.gchain = EMPTY
        self.step = phases.GLOBAL_REWRITE
        self.hook_i = 0
        self.hf: phases.Hooks = ()
        self.bf: phases.BodyHooks = ()
        self.lg: phases.Hooks = ()
        self.plugin_task: asyncio.Task[None] | None = None
        # -- the upstream
        self.rt: UpstreamRuntime = None  # type: ignore[assignment]  # set before use (_proxy)
        self.node: Node | None = None
        self.tried: set[str] | None = None
        self.attempts = 0
        self.retry_deadline = 0.0
        self.conn: UpstreamConnection | None = None
        self.connecting: asyncio.Task[None] | None = None
        #: the upstream request's head up to Host, kept for another attempt
        self._mid: bytes | None = None
        #: set only to override the route's
        self._read_timeout: float | None = None
        #: the current attempt runs on a reused keep-alive connection
        self.reused = False
        self.stale_retried = False
        self.t_up_start = 0.0
        self.t_up_head: float = 0.0
        self.t_end = 0.0
        self.up_status = 0
        #: statuses of the failed attempts so far ("502, 504"): X-APISIX-Upstream-Status
        self.up_tried = ""
        self.up_addr = ""
        self.up_keep = False
        #: the upstream response's headers as it sent them (``$upstream_http_*``)
        self.up_headers: Headers | None = None
        #: reading the upstream is paused: the client's write buffer is full
        self.up_paused = False
        self.switch_headers: Headers | None = None
        #: the request's stream on an HTTP/2 upstream connection (``grpc``/``grpcs``
        #: upstreams, ``upstream/h2.py``); ``conn`` stays None then
        self.h2s: H2UpStream | None = None
        # -- Context's (a plugin may set them; the class defaults are for other contexts)
        self.consumer = None
        self.credential = None
        self.consumer_name = None
        self._remote_addr = None
        self._remote_port = None
        self._store = None
        self.extra_resp = None
        self.added_resp = None
        self.resp_headers = None
        self.resp_length = None
        self.body_changed = False
        self.body_encoder = None
        self.body_waiter = None
        self.body_limit = 0
        self.captured = None
        self.capture_limit = 0
        self.up_method = None
        self.up_host = None
        self.up_scheme = None
        self.orig_target = None
        self.up_trailers = None

    def var(self, name: str) -> Any:
        # a method, not ``var = variables.var``: a function stored on a compiled class is
        # not bound as a method
        return variables.var(self, name)

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

    def upstream_host(self) -> str | None:
        up = self.up_host
        if up is not None:
            return up.decode("latin-1")
        route = self.route
        key = self.upstream_key or (route.upstream_key if route is not None else None)
        rt = cast(ProxySnapshot, self.snap).upstreams.get(key) if key is not None else None
        if rt is not None:
            plan = rt.plan
            if plan.pass_host == "rewrite" and plan.upstream_host:
                return str(plan.upstream_host)
            if plan.pass_host == "node":
                node = self.node
                if node is not None:
                    return self.rt.host_headers[node.addr].decode("latin-1")
                if len(rt.host_headers) == 1:
                    return next(iter(rt.host_headers.values())).decode("latin-1")
        return self.head.authority.decode("latin-1") or None

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
        compiled = cast(ProxySnapshot, self.snap).compiled
        down = self.client
        tls = down.tls
        if tls is not None and compiled.tls.mtls and \
                tls.refused(compiled.tls, head.host, head.path):
            self.reply_error(errors.ClientCertRefused())    # APISIX: verify_https_client
            return
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

    def _matched(self, m: Match | None) -> None:
        """After routing: run the phases of the route (or of the global rules only)."""
        g = cast(ProxySnapshot, self.snap).compiled.global_chain
        if m is None:
            if g.empty:
                self.reply_error(errors.RouteNotFound())
                return
            self.gchain = g          # global rules run for requests no route matches too
            phases.response_phases(self)
            self.state = PHASES
            self.request_phases()
            return
        self.match = m
        # (the router's payload is the compiled route: routing knows no route type)
        route: ProxyRoute = m.route  # type: ignore[assignment]
        self.route = route
        chain = route.chain
        if g.empty and not chain.request:
            if chain.response:          # only response phases (a metrics or log plugin)
                self.chain = chain
                phases.response_phases(self)
            self._proxy()
            return
        if phases.start(self, chain, g):
            self._proxy()

    async def _match_with_body(self) -> None:
        """Route again once the body is read (at most ``apisix.max_post_args_readable_size``;
        a larger body leaves ``post_arg.*`` nil, as in APISIX, and is still sent upstream)."""
        try:
            await self.read_body(self.client.w.settings.post_args_limit)
        except errors.BodyTooLarge:
            self.post_body = NO_BODY
        except errors.GatewayError as e:      # the client's body was bad (the parser says)
            self.plugin_task = None
            self.reply_error(e)
            return
        self.plugin_task = None
        if self.state == DONE:
            return
        head = self.head
        try:
            self._matched(cast(ProxySnapshot, self.snap).compiled.router.match(
                head.method, head.host, head.path, self,
                self._remote_addr or self.client.client_addr))
        except Exception:
            log.exception("internal error routing %s %s", head.method, head.path)
            self.reply_error(errors.InternalError())

    def request_phases(self) -> None:
        """Run (or resume, after an async hook) the request phases; then proxy, or 404 when
        no route matched."""
        if phases.run(self):
            if self.route is not None:
                self._proxy()
            else:
                self.reply_error(errors.RouteNotFound())

    def _proxy(self) -> None:
        """After the request phases: resolve the upstream and send the request."""
        route = self.route
        assert route is not None
        head = self.head
        key = self.upstream_key or route.upstream_key
        rt = cast(ProxySnapshot, self.snap).upstreams.get(key) if key is not None else None
        if rt is None:
            self.reply_error(errors.NoUpstream(
                "missing upstream configuration in Route or Service"))
            return
        scheme = self.up_scheme
        if scheme is not None and scheme != rt.plan.scheme:      # a plugin's (proxy-rewrite)
            rt = self.client.w.runtimes.with_scheme(rt, scheme)
        self.rt = rt
        if head.upgrade is not None and route.websocket and b"upgrade" in head.conn_tokens:
            self.upgrading = True
        if rt.plan.retry_timeout:
            self.retry_deadline = self.t_start + rt.plan.retry_timeout
        self._try_node()

    def _try_node(self) -> None:
        self.state = CONNECTING
        rt = self.rt
        tried = self.tried
        if self.attempts:               # a retry: the nodes tried so far are left out
            if tried is None:           # (made on the first retry, not per request)
                tried = self.tried = {self.up_addr}
            else:
                tried.add(self.up_addr)
        node = rt.balancer.pick(self, tried)
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
        self.up_addr = node.addr
        if rt.track:
            rt.balancer.before(node)
        self.t_up_start = self.loop.time()
        h2pools = rt.h2pools
        if h2pools is not None:
            self._send_h2(h2pools[node.addr])
            return
        pool: NodePool = rt.pools[node.addr]
        conn = pool.take()
        if conn is not None:
            self._send_on(conn)
        else:
            self.connecting = self.loop.create_task(self._connect(pool))

    async def _connect(self, pool: NodePool) -> None:
        try:
            conn = await pool.connect(self.route.connect_timeout)  # type: ignore[union-attr]
        except errors.UpstreamError as e:
            self.connecting = None
            if self.state != DONE:
                self._failed(e)
            return
        except asyncio.CancelledError:
            self.connecting = None
            raise
        self.connecting = None
        if self.state == DONE:           # the client went away while we were connecting
            pool.put(conn)
            return
        try:
            self._send_on(conn)
        except Exception:
            log.exception("internal error sending a request upstream")
            self.upstream_failed(errors.InternalError())

    def _send_on(self, conn: UpstreamConnection) -> None:
        """CONNECTING → SENDING (body still to come) or WAITING (the whole request in one
        write).  From here until the response ends the exchange owns ``conn``."""
        head = self.head
        self.conn = conn
        conn.owner = self                  # the connection is this exchange's until released
        conn.requests += 1
        conn.got_bytes = False
        conn.close_delimited = False
        parser = conn.parser
        parser.head_request = (self.up_method or head.method) == "HEAD"
        parser._sink = self                # response events come straight here
        rto = conn.read_timeout = self.read_timeout
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
            self.state = WAITING
            conn.timeout_error = errors.UpstreamReadTimeout
            conn.deadline.set(self.loop.time() + rto)
        else:
            conn.transport.write(b"".join(parts))
            self.state = SENDING
            if head.expect_continue and not self.sent_continue:
                self.sent_continue = True
                self.client.send_continue()
        if self.up_blocked:
            self.up_blocked = False
            self.client.resume_body()

    def _send_h2(self, pool: H2Pool) -> None:
        """CONNECTING → SENDING / WAITING on a stream of an HTTP/2 upstream connection
        (opened now, or when the pool has a connection with room)."""
        route = self.route
        assert route is not None
        st = self.h2s = pool.request(self, grpc.request_headers(self), route.connect_timeout,
                                     route.send_timeout, self.read_timeout)
        limit = grpc.timeout(self.head.header(b"grpc-timeout"))
        if limit is not None:                   # the call's deadline, toward the upstream
            st.set_limit(self.t_start + limit)
        body = self.replay if self.replay is not None else self.pending
        if body:
            self.body_sent = True
            for c in body:
                st.send(c)
        if self.pending:
            self.pending = ()
            self.pending_bytes = 0
        if self.req_done:
            st.finish(self.req_trailers)
            self.state = WAITING
        else:
            self.state = SENDING
            if self.head.expect_continue and not self.sent_continue:
                self.sent_continue = True
                self.client.send_continue()
        if self.up_blocked:
            self.up_blocked = False
            self.client.resume_body()

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
            down = self.client
            remote = self._remote_addr
            if xff is None and remote is None:      # as prepared for the connection
                parts += (down.fwd_for, head.host.encode("latin-1"), down.fwd_port)
            else:   # an X-Forwarded-For to append to, or $remote_addr set (real-ip)
                client = (down.client_addr if remote is None else remote).encode()
                parts += (b"X-Real-IP: ", client,
                          b"\r\nX-Forwarded-For: ", xff + b", " + client if xff else client,
                          b"\r\nX-Forwarded-Proto: ", down.scheme.encode(),
                          b"\r\nX-Forwarded-Host: ", head.host.encode("latin-1"),
                          down.fwd_port)
            if self.upgrading:
                parts += (b"Connection: upgrade\r\nUpgrade: ", head.upgrade or b"", b"\r\n")
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
            host = self.rt.host_headers[self.node.addr]  # type: ignore[union-attr]
        else:
            host = plan.upstream_host.encode()  # type: ignore[union-attr]  # set for "rewrite"
        return mid + b"Host: " + host + b"\r\n\r\n"

    # -- request body from the downstream ------------------------------------------------
    # While the exchange holds ``conn`` the request head has been written to it (SENDING or
    # later): body bytes go straight there; before, they wait in ``pending``.
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
                replay.append(data)       # (a list: () is falsy)
            else:
                self.replay = [data]
        conn = self.conn
        if conn is not None:
            self.body_sent = True
            conn.transport.write(chunk(data) if self.head.chunked else data)
        elif self.h2s is not None:
            self.body_sent = True
            self.h2s.send(data)
        elif self.state != DONE:
            if self.pending:
                self.pending.append(data)  # (a list: () is falsy)
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
                self.client.pause_body()

    def req_end(self, trailers: Headers | None) -> None:
        self.req_done = True
        self.req_trailers = trailers
        waiter = self.body_waiter
        if waiter is not None:
            self.body_waiter = None
            if not waiter.done():
                waiter.set_result(b"".join(self.pending) if self.pending else b"")
        conn = self.conn
        if conn is not None:
            if self.head.chunked:
                conn.transport.write(last_chunk(trailers))
            if self.state == SENDING:
                self.state = WAITING
            conn.arm(self.read_timeout, errors.UpstreamReadTimeout)
            return
        h2s = self.h2s
        if h2s is not None:
            h2s.finish(trailers)
            if self.state == SENDING:
                self.state = WAITING

    # -- flow control ------------------------------------------------------------------------
    def upstream_writable(self, writable: bool) -> None:
        """The upstream's write buffer crossed a water mark: stop/start reading the client."""
        conn = self.conn
        if writable:
            if conn is not None:
                if self.req_done:         # the whole request is written: wait for the answer
                    conn.arm(self.read_timeout, errors.UpstreamReadTimeout)
                else:
                    conn.deadline.clear()
            self.client.resume_body()
        else:
            if conn is not None:
                conn.arm(self.route.send_timeout,  # type: ignore[union-attr]
                         errors.UpstreamSendTimeout)
            self.client.pause_body()

    def downstream_writable(self, writable: bool) -> None:
        """The client's write buffer crossed a water mark: stop/start reading the upstream."""
        conn = self.conn
        if conn is None:
            h2s = self.h2s
            if h2s is not None:
                self.up_paused = not writable
                h2s.pause(not writable)
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
    # owns the connection (its sink is switched in _send_on and back on release).
    def on_response(self, status: int, headers: Headers, keep_alive: bool,
                    length: int | None, chunked: bool) -> None:
        """Response head from the upstream (hop-by-hop headers already removed):
        SENDING/WAITING → RESPONDING."""
        if status < 200:
            if status == 101:
                self.switch_headers = headers    # the tunnel starts in switched()
                self.up_status = self.status = 101
            elif status != 100:
                self.client.send_interim(status, headers)
            return
        self.t_up_head = self.loop.time()
        self.up_status = self.status = status
        self.up_keep = keep_alive
        self.state = RESPONDING
        if status >= 500 or self.client.w.settings.show_upstream_status:
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
                phases.header_filter(self)
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
        self.client.send_head(status, headers, length, no_body)

    def on_body(self, data: bytes) -> None:
        down = self.client
        if self.bf:
            try:
                data = phases.body_filter(self, data, False)
            except Exception:
                log.exception("plugin failed in body_filter")
        down.send_data(data)
        if down.write_paused and not self.up_paused:
            conn = self.conn
            if conn is not None:
                self.up_paused = True
                conn.transport.pause_reading()
            elif self.h2s is not None:
                self.up_paused = True
                self.h2s.pause(True)

    def on_end(self, trailers: Headers | None) -> None:
        """The upstream's response is complete: RESPONDING → DONE."""
        conn = self.conn
        self.conn = None
        self.h2s = None
        node: Node = self.node  # type: ignore[assignment]  # picked before the request went
        rt = self.rt
        if rt.track:
            rt.balancer.after(node, self.loop.time() - self.t_up_start, False)
        if rt.health is not None:        # passive health checks (upstream checks.passive)
            rt.health.response(node.addr, self.up_status)
        if conn is not None:
            conn.deadline.due = None
            conn.owner = None
            conn.parser._sink = conn
            # reusable when the whole request went (an early answer leaves a body unsent)
            if self.up_keep and self.req_done and not self.up_paused:
                rt.pools[node.addr].put(conn)
            else:
                conn.close()
        down = self.client
        self.up_trailers = trailers           # ($upstream_trailer_*)
        if self.bf:
            try:
                tail = phases.body_filter(self, b"", True)
            except Exception:
                log.exception("plugin failed in body_filter")
                tail = b""
            if tail:
                down.send_data(tail)
        down.send_end(trailers)
        # finish(), inlined for the common path
        self.state = DONE
        self.t_end = self.loop.time()
        if self.lg:
            phases.log_phase(self)
        down.exchange_done(self)

    def switched(self, conn: UpstreamConnection, rest: bytes) -> None:
        """The upstream answered 101: splice client and upstream (WebSocket); → TUNNEL."""
        if not self.upgrading or self.switch_headers is None or conn is not self.conn:
            self.upstream_failed(errors.UpstreamBadResponse("101 without an upgrade request"))
            return
        self.conn = None
        conn.owner = None
        conn.parser._sink = conn
        conn.deadline.cancel()
        self.state = TUNNEL
        self.t_up_head = self.loop.time()
        if self.rt.track:
            self.rt.balancer.after(self.node, self.t_up_head - self.t_up_start, False)
        conn.tunnel = self.client.start_tunnel(self.switch_headers, self.head.upgrade or b"",
                                             conn.transport, rest, self.read_timeout,
                                             self.tunnel_closed)

    def tunnel_closed(self, tunnel: Tunnel) -> None:
        self.finish()

    def upstream_failed(self, error: errors.GatewayError) -> None:
        """The upstream connection failed (reset, timeout, bad response)."""
        conn = self.conn
        self.conn = None
        if self.h2s is not None:
            self.h2s = None
            if (isinstance(error, errors.UpstreamRefused) and not self.stale_retried
                    and self.state < RESPONDING and self._replayable()):
                # the server did not process the stream (GOAWAY, REFUSED_STREAM): once
                # more on the same node, on a connection that takes it
                self.stale_retried = True
                self.state = CONNECTING
                self._send_h2(self.rt.h2pools[self.node.addr])  # type: ignore[index,union-attr]
                return
        elif conn is not None:
            conn.parser._sink = conn
            conn.close()
            if (self.reused and not self.stale_retried and self.state < RESPONDING
                    and isinstance(error, errors.UpstreamReset)
                    and not conn.got_bytes and self._replayable()
                    and (self.up_method or self.head.method) in IDEMPOTENT):
                # the server closed an idle keep-alive connection as we reused it: one more
                # try on a fresh connection to the same node, not counted as a retry (nginx)
                self.stale_retried = True
                self.state = CONNECTING
                pool = self.rt.pools[self.node.addr]  # type: ignore[union-attr]
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
        state = self.state
        if state == DONE:
            return
        if state >= RESPONDING:
            self.detail = error.code
            if self.up_status == 200 and grpc.is_grpc(self):
                # a gRPC response cut short: its status in trailers, not a reset stream
                self.client.send_end(grpc.status_trailers(error))
            else:
                self.client.abort()
            self.finish()
            return
        if node is not None and isinstance(error, errors.UpstreamError):
            tried = self.up_tried
            self.up_tried = f"{tried}, {error.status}" if tried else str(error.status)
        if self._may_retry(error):
            log.info("retrying %s %s after %s on %s", self.head.method, self.head.path,
                     error.code, self.up_addr)
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

    # ---------------------------------------------------------------- local replies, the end
    def reply_error(self, error: errors.GatewayError) -> None:
        if self.state == DONE:
            return
        self.error = error
        self.detail = error.code
        headers = JSON
        if self.up_tried:            # every node tried failed: what nginx's $upstream_status says
            headers = [*JSON, (b"X-APISIX-Upstream-Status", self.up_tried.encode())]
        self.reply_local(error.status, headers, errors.error_body(error.message), error.close)

    def reply_local(self, status: int, headers: Headers, body: bytes, close: bool) -> None:
        """A response made by the gateway (a plugin's reply, an error): the response
        phases of the plugins run on it as on an upstream response.  Any state before
        RESPONDING → RESPONDING → DONE; after it, the response is cut short."""
        state = self.state
        if state == DONE:
            return
        if state >= RESPONDING:
            self.client.abort()
            self.finish()
            return
        self.status = status
        self.state = RESPONDING
        if self.extra_resp or self.added_resp:
            headers = self._with_extra(headers)
        if self.hf or self.bf:
            try:
                if self.hf:
                    self.resp_headers = list(headers)
                    self.resp_length = len(body)
                    phases.header_filter(self)
                    headers = self.resp_headers
                if self.bf:
                    body = phases.body_filter(self, body, True)
            except Exception:
                log.exception("plugin failed on a local reply")
        elif self.lg:
            self.resp_headers = headers       # what the log phase reports as sent
        if self.head.version == "2.0" and grpc.is_grpc(self):
            # a gRPC client gets a gRPC status: Trailers-Only (HTTP 200, no body)
            self.client.send_head(200, grpc.trailers_only(self.status, body, self.error),
                                  None, True)
        else:
            self.client.send_local(self.status, headers, body, close)
        self.finish()

    def _upstream_status_header(self, status: int) -> tuple[bytes, bytes]:
        """``X-APISIX-Upstream-Status`` (APISIX's header_filter): every status tried, comma
        separated as nginx's ``$upstream_status``; sent when the last one is a 5xx, or always
        with ``apisix.show_upstream_status_in_response_header``."""
        tried = self.up_tried
        return (b"X-APISIX-Upstream-Status",
                f"{tried}, {status}".encode() if tried else str(status).encode())

    def finish(self) -> None:
        """Any state → DONE: run the log phase, release the connection, tell the
        downstream."""
        if self.state == DONE:
            return
        self.state = DONE
        self.t_end = self.loop.time()
        task = self.plugin_task
        if task is not None:           # an async hook still running: the client is gone
            self.plugin_task = None
            task.cancel()
        if self.body_waiter is not None and not self.body_waiter.done():
            self.body_waiter.cancel()
        if self.lg:
            phases.log_phase(self)
        h2s = self.h2s
        if h2s is not None:         # the client is gone or the answer was cut: stop the stream
            self.h2s = None
            h2s.cancel()
        conn = self.conn
        if conn is not None:        # finished without the upstream finishing: not reusable
            self.conn = None
            conn.owner = None
            conn.parser._sink = conn
            conn.close()
        self.client.exchange_done(self)

    def downstream_lost(self) -> None:
        """The client connection closed before the exchange finished (nginx's 499)."""
        if self.state == DONE:
            return
        if self.state < RESPONDING:
            self.status = 499
        self.detail = self.detail or "client_closed"
        if self.node is not None and self.conn is not None and self.rt.track:
            self.rt.balancer.after(self.node, None, False)
        self.finish()
