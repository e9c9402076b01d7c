"""The log entry of the logger plugins (APISIX ``log-util``), and what they share.

``full_log(ctx)`` is APISIX's default entry (``get_full_log``); ``compile_format(fmt)`` turns
a ``log_format`` (name → ``"$var"`` or a literal) into a function of ctx, as
``get_custom_format_log`` reads it: a value starting with ``$`` is the variable named by the
rest, anything else is itself; ``route_id`` and ``service_id`` are added when a route
matched.  ``entry(conf, ctx, plugin)`` picks the conf's ``log_format``, else the
plugin_metadata's, else the full log.  Everything here runs in the log phase, synchronously,
and produces plain dicts; encoding happens later in the batch processor's task.

Bodies (APISIX's ``include_req_body`` / ``include_resp_body``, their ``*_expr`` and
``max_*_body_bytes``).  Nothing is buffered and nothing waits:

* request: the ``access`` hook, when the conf asks and its expression matches, calls
  ``ctx.capture_body(max_req_body_bytes)``, which copies the first bytes as they stream
  upstream.  The expression is evaluated then, at request time (APISIX evaluates it in the log
  phase, on a body nginx buffered): variables of the response (``$status``...) are unset there.
* response: the ``body_filter`` hook keeps the first ``max_resp_body_bytes`` of the chunks as
  they pass (the chunks are not changed); the expression is evaluated on the first chunk, when
  the status and headers are known, as APISIX does.
* Several loggers of one request share one capture of each body (the longest limit wins; each
  logger cuts its own ``max_*``); each decides with its own expression.
* In the entry, as APISIX: ``request.body`` / ``response.body`` are the bodies as text,
  **truncated** to ``max_*_body_bytes`` (APISIX keeps the first bytes: ``str_sub(body, 1,
  max)``); bytes that are not UTF-8 become U+FFFD (JSON cannot carry them; APISIX's cjson
  writes them raw).  An empty request body leaves ``request.body`` out (``get_body_data()`` is
  nil in APISIX).  A response with ``Content-Encoding: gzip`` or ``deflate`` is logged decoded
  when the kept bytes decode (APISIX's ``content-decode``; its ``br`` is not built in here), the
  decoded text also cut at ``max_resp_body_bytes``.  ``$request_body`` / ``$response_body`` in
  a ``log_format`` are the same texts; a conf whose own ``log_format`` names
  ``$request_body`` captures the request body without ``include_req_body`` (APISIX reads it in
  its log_vars whatever ``include_req_body`` says).
"""

from __future__ import annotations

import socket
import time
import zlib
from collections.abc import Callable
from typing import Any

from .. import __version__
from ..routing.expr import compile_expr
from . import batch

HOSTNAME = socket.gethostname()

#: plugin_metadata ``log_format`` of APISIX (``metadata_schema_log_format``)
METADATA_LOG_FORMAT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "default": {"host": "$host", "@timestamp": "$time_iso8601", "client_ip": "$remote_addr"},
}

#: a logger plugin's ``metadata_schema`` (its ``log_format`` default)
METADATA_SCHEMA: dict[str, Any] = {"type": "object",
                                   "properties": {"log_format": METADATA_LOG_FORMAT_SCHEMA}}

MAX_BODY = 524288                      # APISIX's MAX_REQ_BODY / MAX_RESP_BODY (512 KiB)
_EXPR = {"type": "array", "minItems": 1, "items": {"type": "array"}}

#: the body options every logger has (APISIX's log-util fields)
BODY_PROPERTIES: dict[str, Any] = {
    "include_req_body": {"type": "boolean", "default": False},
    "include_req_body_expr": _EXPR,
    "max_req_body_bytes": {"type": "integer", "minimum": 1, "default": MAX_BODY},
    "include_resp_body": {"type": "boolean", "default": False},
    "include_resp_body_expr": _EXPR,
    "max_resp_body_bytes": {"type": "integer", "minimum": 1, "default": MAX_BODY},
}

#: ``host`` and ``port`` of the socket loggers (tcp-logger, udp-logger)
SOCKET_PROPERTIES: dict[str, Any] = {"host": {"type": "string"},
                                     "port": {"type": "integer", "minimum": 0}}


def logger_schema(properties: dict[str, Any], required: list[str],
                  batch_name: str | None = None) -> dict[str, Any]:
    """A logger's schema: its own ``properties``, ``log_format`` and the body options; with
    ``batch_name``, also the batch options (``name`` defaulting to it)."""
    schema = {"type": "object",
              "properties": {**properties, "log_format": {"type": "object"}, **BODY_PROPERTIES},
              "required": required}
    return batch.wrap_schema(schema, batch_name) if batch_name else schema


def check(conf: dict[str, Any], schema_type: str) -> None:
    """A logger's ``check``: its body expressions compile (APISIX ``check_log_schema``)."""
    if schema_type != "route":
        return
    for field in ("include_req_body_expr", "include_resp_body_expr"):
        if conf.get(field) is not None:
            try:
                compile_expr(conf[field], field)
            except ValueError as e:
                raise ValueError(f"failed to validate the '{field}' expression: {e}") from None


# -- entries -------------------------------------------------------------------------------
def _end(x: Any) -> float:
    return x.t_end or x.loop.time()


def _up_time(x: Any) -> float | None:
    """Seconds from sending upstream to the end (None: no upstream answered)."""
    if not x.up_status or not x.t_up_start:
        return None
    return max(0.0, _end(x) - x.t_up_start)


def compile_format(fmt: dict[str, Any]) -> Callable[..., dict[str, Any]]:
    """``render(ctx, conf=None)``: the entry; ``conf`` (the logger's) bounds
    ``$request_body`` / ``$response_body``."""
    items = [(k, True, v[1:]) if isinstance(v, str) and v.startswith("$") else (k, False, v)
             for k, v in fmt.items()]

    def render(ctx: Any, conf: dict[str, Any] | None = None) -> dict[str, Any]:
        entry = {}
        for k, is_var, v in items:
            if is_var:
                body = _BODY_VARS.get(v)
                v = ctx.var(v) if body is None else body(ctx, conf or {})
                if v is None:           # a nil in Lua: the key is absent
                    continue
            entry[k] = v
        route = ctx.route
        if route is not None:
            if route.service_id is not None:
                entry["service_id"] = route.service_id
            entry["route_id"] = route.id
        return entry

    return render


def multi_dict(pairs: Any) -> dict[str, Any]:
    """Pairs → a dict where a repeated name holds a list of its values, in order (how
    ngx.req.get_headers / ngx.decode_args present repeated headers and arguments)."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        old = out.get(k)
        if old is None:
            out[k] = v
        elif isinstance(old, list):
            old.append(v)
        else:
            out[k] = [old, v]
    return out


def _headers(pairs: Any) -> dict[str, Any]:
    return multi_dict((k.decode("latin-1").lower(), v.decode("latin-1"))
                      if isinstance(k, bytes) else (k.lower(), v) for k, v in pairs or ())


def _querystring(ctx: Any) -> dict[str, Any]:
    from urllib.parse import parse_qsl
    q = ctx.head.query
    return multi_dict(parse_qsl(q.decode("latin-1"), keep_blank_values=True)) if q else {}


def full_log(ctx: Any) -> dict[str, Any]:
    """APISIX's default log entry."""
    head = ctx.head
    request_uri = head.target.decode("latin-1")
    route = ctx.route
    if route is not None:
        service_id = route.service_id or ""
        route_id = route.id
    else:
        service_id = head.host
        route_id = None
    end = _end(ctx)
    latency = (end - ctx.t_start) * 1000
    entry: dict[str, Any] = {
        "request": {
            "url": f"{ctx.scheme}://{head.host}:{ctx.server_port}{request_uri}",
            "uri": request_uri,
            "method": head.method,
            "headers": _headers(ctx.headers()),
            "querystring": _querystring(ctx),
            "size": int(ctx.body_in),
        },
        "response": {
            "status": int(ctx.status),
            "headers": _headers(ctx.resp_headers),
            "size": int(ctx.bytes_sent),
        },
        "server": {"hostname": HOSTNAME, "version": __version__},
        "upstream": ctx.up_addr or None,
        "service_id": service_id,
        "route_id": route_id,
        "client_ip": ctx.remote_addr,
        "start_time": int(ctx.wall_start() * 1000),
        "latency": latency,
    }
    up = _up_time(ctx)
    if up is not None:
        entry["upstream_latency"] = up * 1000
        entry["apisix_latency"] = max(0.0, latency - up * 1000)
    else:
        entry["apisix_latency"] = latency
    name = ctx.consumer_name
    if name:
        entry["consumer"] = {"username": name}
    return {k: v for k, v in entry.items() if v is not None}


def prepare_logger(conf: dict[str, Any]) -> dict[str, Any]:
    """A logger plugin's ``prepare``: its ``log_format`` compiled, its batch processor's key,
    and what it captures: ``_req`` / ``_resp`` are None (nothing) or ``(max bytes,
    predicate or None)``."""
    fmt = conf.get("log_format")
    req: tuple[int, Callable[[Any], bool] | None] | None = None
    resp: tuple[int, Callable[[Any], bool] | None] | None = None
    if fmt:
        if "$request_body" in fmt.values():
            req = (conf["max_req_body_bytes"], None)
    elif conf["include_req_body"]:
        req = (conf["max_req_body_bytes"], _predicate(conf.get("include_req_body_expr")))
    if conf["include_resp_body"]:
        resp = (conf["max_resp_body_bytes"], _predicate(conf.get("include_resp_body_expr")))
    return {**conf, "_format": compile_format(fmt) if fmt else None,
            "_key": batch.conf_key(conf), "_req": req, "_resp": resp}


def _predicate(spec: list[Any] | None) -> Callable[[Any], bool] | None:
    return compile_expr(spec) if spec else None


def prepare_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """For a logger's ``prepare_metadata``: compile the metadata's ``log_format`` once."""
    fmt = meta.get("log_format")
    return {**meta, "_format": compile_format(fmt) if fmt else None}


def entry(conf: dict[str, Any], ctx: Any, plugin: str) -> dict[str, Any]:
    """The conf's ``log_format``, else the plugin_metadata's, else the full log (with the
    bodies the conf asked for)."""
    fmt = conf.get("_format")
    if fmt is None:
        meta = ctx.metadata(plugin)
        if isinstance(meta, dict):
            fmt = meta.get("_format")
    if fmt is not None:
        return fmt(ctx, conf)
    e = full_log(ctx)
    if conf["_req"] is not None or conf["_resp"] is not None:
        st = ctx.store.get(_KEY)
        if st is not None:
            if id(conf) in st.req_for:
                text = _req_text(ctx, conf)
                if text:
                    e["request"]["body"] = text
            if st.resp_for.get(id(conf)):
                e["response"]["body"] = st.resp_text(ctx, conf["max_resp_body_bytes"])
    return e


def batch_log(plugin: str, make_sender: Callable[[dict[str, Any]], batch.Sender],
              options: str | None = None) -> Callable[[dict[str, Any], Any], None]:
    """A logger's ``log`` hook: its entry pushed to the batch processor of (plugin, route,
    conf), made with ``make_sender`` and the conf's batch options (or ``conf[options]``)."""
    def log(conf: dict[str, Any], ctx: Any) -> None:
        p = batch.processor(plugin, ctx.route_id, conf["_key"],
                            conf[options] if options else conf, make_sender)
        p.push(entry(conf, ctx, plugin))

    return log


def stream_entry(conf: dict[str, Any], sctx: Any) -> dict[str, Any]:
    """A stream connection's entry (``pylon.pdk.StreamContext``): the conf's
    ``log_format`` (stream variables), else APISIX's stream log -- upstream, start_time,
    client_ip, route_id, latency -- plus nginx's stream counters."""
    fmt = conf.get("_format")
    if fmt is not None:
        return fmt(sctx, conf)
    route = sctx.route
    entry = {
        "upstream": sctx.upstream_addr or None,
        "start_time": int((time.time() - sctx.session_time()) * 1000),
        "client_ip": sctx.remote_addr,
        "route_id": sctx.route_id,
        "service_id": route.service_id if route is not None else None,
        "latency": sctx.session_time() * 1000,
        "protocol": sctx.protocol,
        "server_addr": sctx.server_addr,
        "server_port": sctx.server_port,
        "status": sctx.status,
        "bytes_received": sctx.bytes_received,
        "bytes_sent": sctx.bytes_sent,
        "server": {"hostname": HOSTNAME, "version": __version__},
    }
    return {k: v for k, v in entry.items() if v is not None}


def batch_stream_log(plugin: str, make_sender: Callable[[dict[str, Any]], batch.Sender]
                     ) -> Callable[[dict[str, Any], Any], None]:
    """A logger's ``stream_log`` hook: the connection's entry to the plugin's batch
    processor (the same processors as ``batch_log``'s)."""
    def stream_log(conf: dict[str, Any], sctx: Any) -> None:
        batch.processor(plugin, sctx.route_id, conf["_key"], conf, make_sender).push(
            stream_entry(conf, sctx))

    return stream_log


# -- bodies --------------------------------------------------------------------------------
_KEY = "pylon.log_bodies"


class _Bodies:
    """What the loggers of one request captured (in ``ctx.store``, made only when one does).

    ``req_for``: ids of the confs whose request expression matched.  ``resp_for``: conf id →
    its response decision.  The response capture is done by one conf, the ``owner`` (the
    first that wanted it); it keeps the chunks (references: bytes are immutable) up to the
    longest limit: the first chunk whole, since a logger after the owner may raise the limit
    while that chunk passes, then only what fits."""

    __slots__ = ("chunks", "last", "limit", "owner", "req_for", "resp_for", "size", "texts")

    def __init__(self) -> None:
        self.req_for: set[int] = set()
        self.resp_for: dict[int, bool] = {}
        self.owner = 0
        self.limit = 0
        self.chunks: list[bytes] = []
        self.size = 0
        self.last: bytes | None = None
        self.texts: dict[int, str] = {}

    def keep(self, chunk: bytes) -> None:
        # the same conf can run twice on one chunk (a global rule and a route with the same
        # configuration): a chunk already seen is not kept again (1-byte bytes objects are
        # shared by CPython, so they are not told apart)
        if chunk is self.last:
            return
        self.last = chunk if len(chunk) > 1 else None
        if not chunk:
            return
        if not self.chunks:               # all loggers decide on it: kept whole
            self.chunks.append(chunk)
            self.size = len(chunk)
            return
        if self.size > self.limit:        # the limit is final now: cut the first chunk
            self.chunks[0] = self.chunks[0][:self.limit]
            self.size = self.limit
        room = self.limit - self.size
        if room > 0:
            part = chunk[:room]
            self.chunks.append(part)
            self.size += len(part)

    def resp_text(self, ctx: Any, limit: int) -> str:
        text = self.texts.get(limit)
        if text is None:
            raw = b"".join(self.chunks)[:limit]
            text = self.texts[limit] = _decode(raw, ctx.resp_header("content-encoding"),
                                               limit)
        return text


def _bodies(ctx: Any) -> _Bodies:
    store = ctx.store
    st = store.get(_KEY)
    if st is None:
        st = store[_KEY] = _Bodies()
    return st


def phases(conf: dict[str, Any]) -> set[str]:
    """A logger's hooks for this configuration: ``log`` always; the body capture hooks
    only when the conf includes bodies (a route without them pays nothing)."""
    out = {"log"}
    if conf["_req"] is not None:
        out.add("access")
    if conf["_resp"] is not None:
        out.add("body_filter")
    return out


def access(conf: dict[str, Any], ctx: Any) -> None:
    """Start copying the request body when the conf asks for it (before it streams)."""
    want = conf["_req"]
    if want is None:
        return
    limit, pred = want
    if pred is not None and not pred(ctx):
        return
    _bodies(ctx).req_for.add(id(conf))
    ctx.capture_body(limit)


def body_filter(conf: dict[str, Any], ctx: Any, chunk: bytes, last: bool) -> None:
    """Keep the first bytes of the response for the log; the chunk goes on unchanged."""
    want = conf["_resp"]
    if want is None:
        return
    st = _bodies(ctx)
    me = id(conf)
    if st.owner != me:
        if me in st.resp_for:
            return
        limit, pred = want
        ok = st.resp_for[me] = pred is None or bool(pred(ctx))
        if not ok:
            return
        st.limit = max(st.limit, limit)
        if st.owner:
            return
        st.owner = me
    if st.size != st.limit:
        st.keep(bytes(chunk))


def _req_text(ctx: Any, conf: dict[str, Any]) -> str | None:
    raw = ctx.captured_body()
    if raw is None:
        return None
    return raw[:conf.get("max_req_body_bytes", MAX_BODY)].decode("utf-8", "replace")


def _resp_var(ctx: Any, conf: dict[str, Any]) -> str | None:
    st = ctx.store.get(_KEY)
    if st is None or not st.owner:
        return None
    return st.resp_text(ctx, conf.get("max_resp_body_bytes", MAX_BODY))


_BODY_VARS: dict[str, Callable[[Any, dict[str, Any]], str | None]] = {
    "request_body": lambda ctx, conf: _req_text(ctx, conf) or None,
    "response_body": _resp_var,
}

_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def _decode(raw: bytes, encoding: str | None, limit: int) -> str:
    """The kept response bytes as text: decoded first when the response is compressed and
    they decode (else as they are, as APISIX does on a decoding error)."""
    if encoding:
        wbits = _WBITS.get(encoding.strip().lower())
        if wbits is not None:
            try:
                raw = zlib.decompressobj(wbits).decompress(raw, limit)
            except zlib.error:
                pass
    return raw.decode("utf-8", "replace")
