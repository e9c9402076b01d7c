"""nginx-style variables of a request (``$uri``, ``$arg_x``, ``$status``...): ``ctx.var(name)``.

Route ``vars`` expressions, chash keys, log formats and plugins read them.  The fixed names
are one table of small functions (``VARS``); the prefixed families (``arg_``, ``http_``,
``cookie_``, ``sent_http_``, ``upstream_http_``, ``post_arg``) are looked up by prefix.
``post_arg.*`` may be asked for while routing, before the body has arrived: the lookup then
raises ``NeedBody`` and the exchange reads the body (bounded) and routes again.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl

import msgspec

from .. import errors
from ..routing.expr import post_arg_path, post_arg_value
from ..tls.listener import SSL_VARS, TlsConn
from ..wire.head import header_is
from .state import MATCHING

if TYPE_CHECKING:
    from .exchange import Exchange

HOSTNAME: Final = socket.gethostname()


class NeedBody(Exception):
    """Raised by a ``post_arg.*`` lookup while routing before the body has arrived: the
    exchange reads it (bounded) and routes again."""


class _NoBody:
    """``Exchange.post_body`` when the body has nothing for ``post_arg.*`` (none, too large,
    not JSON)."""

    __slots__ = ()


NO_BODY: Final = _NoBody()


def var(x: Exchange, name: str) -> Any:
    """``$name`` of the request ``x`` (``Context.var``): a string, None when it has no value
    (``post_arg.*`` gives the JSON value as it is)."""
    f = VARS.get(name)
    if f is not None:
        return f(x)
    return getter(name)(x)


Getter = Callable[["Exchange"], Any]


def getter(name: str) -> Getter:
    """The function giving ``$name`` of a request, resolved once (the access log compiles its
    format with it): a ``VARS`` entry, or a reader of a prefixed family with the name taken
    apart already; an unknown name gives None."""
    f = VARS.get(name)
    if f is not None:
        return f
    if name.startswith("arg_"):
        key = name[4:]
        return lambda x: x.args().get(key)
    if name.startswith("http_"):
        want = name[5:].replace("_", "-").encode("latin-1")
        return lambda x: http_header(x, want)
    if name.startswith("cookie_"):
        key = name[7:]
        return lambda x: x.cookies().get(key)
    if name.startswith("sent_http_"):
        key = name[10:].replace("_", "-")
        return lambda x: x.resp_header(key)
    if name.startswith("upstream_http_"):
        ln = name[14:].replace("_", "-").encode("latin-1")
        return lambda x: _upstream_header(x, ln)
    if name.startswith("upstream_trailer_"):
        tn = name[17:].replace("_", "-").encode("latin-1")
        return lambda x: _upstream_trailer(x, tn)
    if name.startswith("post_arg"):
        return lambda x: _post_arg(x, name)
    return _none


def _none(x: Exchange) -> None:
    return None


def request_headers(x: Exchange) -> list[tuple[bytes, bytes]]:
    """The request's headers as received (the access log's ``$http_*`` pass)."""
    return x.head.headers


def http_header(x: Exchange, want: bytes) -> str | None:
    """``$http_<name>``: the first request header named ``want`` (lower case, "-" for "_"),
    found without building the head's header map.  As nginx (APISIX: underscores_in_headers
    on), "_" and "-" in a header's name match alike: ``$http_no_cache`` reads a ``no_cache``
    header too, the first of either spelling."""
    n_want = len(want)
    for hn, hv in x.head.headers:
        if len(hn) == n_want and header_is(hn, want):
            return hv.decode("latin-1")
    return None


def _upstream_header(x: Exchange, ln: bytes) -> str | None:
    for k, v in x.up_headers or ():
        if k.lower() == ln:
            return v.decode("latin-1")
    return None


def _upstream_trailer(x: Exchange, ln: bytes) -> str | None:
    """``$upstream_trailer_<name>``: a trailer of the upstream's response (gRPC's
    ``grpc-status``), known once the response has ended (the last ``body_filter``)."""
    for k, v in x.up_trailers or ():
        if k.lower() == ln:
            return v.decode("latin-1")
    return None


def _post_arg(x: Exchange, name: str) -> Any:
    """``post_arg.<JSON path>`` (a JSON or urlencoded body, APISIX 3.x) and
    ``post_arg_<name>`` (an urlencoded form only)."""
    if name.startswith("post_arg."):
        data = post_args(x)
        return None if data is NO_BODY else post_arg_value(data, post_arg_path(name))
    if name.startswith("post_arg_"):
        ctype = x.head.header(b"content-type") or b""
        if not ctype.lower().startswith(b"application/x-www-form-urlencoded"):
            return None
        data = post_args(x)
        return data.get(name[9:]) if isinstance(data, dict) else None
    return None


def post_args(x: Exchange) -> Any:
    """The request body parsed for ``post_arg.*`` / ``post_arg_*`` (a dict from a form,
    any JSON value), ``NO_BODY`` when there is none to look at; raises ``NeedBody``
    while routing when the body has not arrived yet."""
    pb = x.post_body
    if pb is not None:
        return pb
    head = x.head
    ctype = head.header(b"content-type")
    ct = ctype.lstrip().lower() if ctype else b""
    form = ct.startswith(b"application/x-www-form-urlencoded")
    if not (form or ct.startswith(b"application/json")) or \
            (not head.chunked and not head.content_length):
        pb = NO_BODY
    elif not x.req_done or x.body_sent:
        limit = x.client.w.settings.post_args_limit
        if limit and (head.content_length or 0) > limit:
            pb = NO_BODY
        elif x.state == MATCHING and not x.req_done:
            raise NeedBody                 # routing: read it first (_match_with_body)
        else:
            return NO_BODY                 # gone upstream, or not read: nothing to look at
    else:
        body = b"".join(x.pending) if x.pending else b""
        if form:
            pb = {}
            for k, v in parse_qsl(body.decode("latin-1"), keep_blank_values=True):
                pb.setdefault(k, v)            # a repeated field: its first value
        else:
            try:
                pb = msgspec.json.decode(body)
            except msgspec.DecodeError:
                pb = NO_BODY
    x.post_body = pb
    return pb


def _upstream_status(x: Exchange) -> str | None:
    """nginx's ``$upstream_status`` (last value): the upstream's answer, or 502 / 504 when
    the node tried could not be reached or timed out; None when none was tried."""
    if x.up_status:
        return str(x.up_status)
    err = x.error
    if isinstance(err, errors.UpstreamError) and x.node is not None:
        return str(err.status)
    return None


#: "0.000" … "0.999": a duration under a second (nearly every request's) read from a table
_MS: Final[list[str]] = [f"0.{i:03d}" for i in range(1000)]


def seconds(d: float) -> str:
    """``f"{d:.3f}"`` (nginx's ``$request_time`` and ``$upstream_*_time``), a duration of less
    than a second taken from a table instead of formatting a float."""
    if 0.0 <= d < 0.9994:
        return _MS[int(d * 1000.0 + 0.5)]
    return f"{d:.3f}"


def _request_uri(x: Exchange) -> str:
    return (x.orig_target or x.head.target).decode("latin-1")


def _upstream_response_time(x: Exchange) -> str | None:
    if not x.up_status:
        return None
    return seconds(max((x.t_end or x.loop.time()) - x.t_up_start, 0.0))


def _ssl_var(f: Callable[[TlsConn], str | None]) -> Callable[[Exchange], str | None]:
    """``$ssl_*``: read from the client connection's TLS facts; None on plain HTTP."""
    def get(x: Exchange) -> str | None:
        t = x.client.tls
        return f(t) if t is not None else None
    return get


VARS: Final[dict[str, Callable[[Exchange], str | None]]] = {
    **{name: _ssl_var(f) for name, f in SSL_VARS.items()},
    "https": lambda x: "on" if x.client.tls is not None else "",
    "uri": lambda x: x.head.path,
    "request_uri": _request_uri,
    "real_request_uri": _request_uri,
    "upstream_uri": lambda x: x.head.target.decode("latin-1"),
    "host": lambda x: x.head.host,
    "remote_addr": lambda x: x._remote_addr or x.client.client_addr,
    "remote_port": lambda x: x._remote_port or str(x.client.client_port),
    "realip_remote_addr": lambda x: x.client.client_addr,
    "realip_remote_port": lambda x: str(x.client.client_port),
    "server_port": lambda x: x.client.server_port_s,
    "server_addr": lambda x: x.client.server_addr,
    "scheme": lambda x: x.client.scheme,
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
    "request_time": lambda x: seconds((x.t_end or x.loop.time()) - x.t_start),
    "request_length": lambda x: str(x.body_in),
    "bytes_sent": lambda x: str(x.client.bytes_out),
    "body_bytes_sent": lambda x: str(x.client.bytes_out),
    "upstream_addr": lambda x: x.up_addr or None,
    # APISIX's ctx.var.balancer_ip / balancer_port: the node picked for the request
    "balancer_ip": lambda x: x.node.host if x.node is not None else None,
    "balancer_port": lambda x: str(x.node.port) if x.node is not None else None,
    "upstream_status": _upstream_status,
    "upstream_response_time": _upstream_response_time,
    "upstream_header_time": lambda x: seconds(x.t_up_head - x.t_up_start)
    if x.up_status else None,
    "msec": lambda x: f"{x.wall_start():.3f}",
    "time_iso8601": lambda x: time.strftime("%Y-%m-%dT%H:%M:%S%z",
                                            time.localtime(x.wall_start())),
    "time_local": lambda x: time.strftime("%d/%b/%Y:%H:%M:%S %z",
                                          time.localtime(x.wall_start())),
    "request": lambda x: f"{x.head.method} {_request_uri(x)} HTTP/{x.head.version}",
    "hostname": lambda x: HOSTNAME,
    "pid": lambda x: str(os.getpid()),
}
