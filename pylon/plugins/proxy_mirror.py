"""proxy-mirror: send a copy of requests to another service, ignoring its answers (APISIX).

``host`` (``http://host:port``, required, no path), ``path`` with ``path_concat_mode``
(``replace``: ``path`` plus the query; ``prefix``: ``path`` plus the request's path and
query), ``sample_ratio`` (0.00001-1, default 1: every request).

The copy has the request's method, path and query (as the upstream gets them when the plugin
runs, in ``rewrite`` at priority 1010 as in APISIX: a ``proxy-rewrite`` running later does not
change it), its headers as they are when the request is proxied (with the ``Host`` the upstream
gets, APISIX's ``$upstream_host``) and its body.  As nginx's ``mirror`` does, a request with a
body is read whole before it is proxied.  Requests a later plugin refuses are not mirrored.

The copy is sent in the background: the client's response never waits for the mirror, and a
mirror that fails or is slow is only logged.  At most ``MAX_INFLIGHT`` copies are in flight
per worker; beyond that copies are dropped (and logged).  ``TIMEOUT`` bounds a copy (APISIX's
default mirror timeouts are 60 s).  ``https`` mirrors are not verified (nginx's
``proxy_ssl_verify off``).  ``grpc``/``grpcs`` hosts are accepted but not mirrored (this
gateway's client speaks HTTP/1.1 only): a warning is logged when the configuration loads.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any
from urllib.parse import quote, urlsplit

from pylon import pdk
from pylon.pdk import http

name = "proxy-mirror"
priority = 1010
version = 0.1

_HOST_PATTERN = r"^(http(s)?|grpc(s)?):\/\/([\da-zA-Z.-]+|\[[\da-fA-F:]+\])(:\d+)?$"
_PATH_PATTERN = r"^/[^?&]+$"

schema = {
    "type": "object",
    "properties": {
        "host": {"type": "string", "pattern": _HOST_PATTERN},
        "path": {"type": "string", "pattern": _PATH_PATTERN},
        "path_concat_mode": {"type": "string", "default": "replace",
                             "enum": ["replace", "prefix"],
                             "description": "the concatenation mode for custom path"},
        "sample_ratio": {"type": "number", "minimum": 0.00001, "maximum": 1, "default": 1},
    },
    "required": ["host"],
}

#: copies in flight per worker beyond which new ones are dropped
MAX_INFLIGHT = 1000
#: seconds a copy may take, connect to last byte of the mirror's answer
TIMEOUT = 60.0
#: the mirror's answer is read (to keep the connection reusable) up to this size
MAX_RESPONSE = 1 << 20

_KEY = "proxy-mirror"
#: request headers nginx's proxy module never passes on (the client drops the other
#: hop-by-hop ones and sets Host / Content-Length itself)
_DROP = frozenset({"expect", "host"})

_inflight: set[asyncio.Task[None]] = set()
_dropped = 0
_dropped_logged = 0.0
_rand = random.random


def _bad(prop: str, pattern: str, value: str) -> ValueError:
    q = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return ValueError(f'property "{prop}" validation failed: failed to match pattern '
                      f'"{pattern}" with "{q}"')


def check(conf: dict[str, Any], schema_type: str) -> None:
    # Python's `$` also matches before a final newline and its `\d` takes any digit: the
    # host goes into a request line, so ASCII and no newline
    host = conf["host"]
    if not host.isascii() or "\n" in host:
        raise _bad("host", _HOST_PATTERN, host)


class _Conf:
    __slots__ = ("base", "grpc", "path", "prefix", "ratio", "where")
    base: str
    grpc: bool
    path: str | None
    prefix: bool
    ratio: float
    where: str


def prepare(conf: dict[str, Any]) -> _Conf:
    c = _Conf()
    host = conf["host"]
    u = urlsplit(host)
    c.grpc = u.scheme.startswith("grpc")
    if c.grpc:
        pdk.log.warning("proxy-mirror: %s: gRPC mirroring is not supported, requests are "
                        "not mirrored", host)
    c.base = host
    c.where = host
    path = conf.get("path")
    # sent as it is in a request target: what cannot be is percent-encoded
    c.path = None if path is None else quote(path, safe="/:@!$&'()*+,;=-._~%")
    c.prefix = conf["path_concat_mode"] == "prefix"
    c.ratio = float(conf["sample_ratio"])
    return c


def rewrite(conf: _Conf, ctx: pdk.Context) -> None:
    if conf.grpc:
        return
    if conf.ratio < 1 and not _rand() < conf.ratio:
        return
    head = ctx.head
    # the path and query as the upstream would get them now (APISIX: $upstream_uri when
    # set, else $uri$is_args$args)
    target = head.target.decode("latin-1")
    if conf.path is None:
        uri = target
    elif conf.prefix:
        uri = conf.path + target
    else:
        q = head.query
        uri = conf.path + "?" + q.decode("latin-1") if q else conf.path
    ctx.store[_KEY] = conf.base + uri


def before_proxy(conf: _Conf, ctx: pdk.Context) -> Any:
    st = ctx.store
    url = st.pop(_KEY, None)
    if url is None:
        return None
    head = ctx.head
    if head.chunked or head.content_length:                  # a body: read it first
        return _with_body(conf, ctx, url)
    _spawn(conf, ctx.method, url, _headers(ctx), b"" if head.content_length == 0 else None)
    return None


async def _with_body(conf: _Conf, ctx: pdk.Context, url: str) -> None:
    body = await ctx.read_body()              # still sent upstream; too large: 413
    _spawn(conf, ctx.method, url, _headers(ctx), body)


def _headers(ctx: pdk.Context) -> list[tuple[str, str]]:
    out = [(n, v) for n, v in ctx.headers() if n.lower() not in _DROP]
    host = _upstream_host(ctx)
    if host:
        out.insert(0, ("Host", host))
    return out


def _upstream_host(ctx: pdk.Context) -> str | None:
    """APISIX's ``$upstream_host``: the client's Host (``pass_host: pass``), the upstream's
    ``upstream_host`` (``rewrite``) or the node's host (``node``: known here only for an
    upstream with one node; the client's Host otherwise)."""
    client = ctx.head.authority.decode("latin-1") or None
    route = ctx.route
    if route is None:
        return client
    try:
        # (not ctx.upstream_host(): that follows proxy-rewrite's host and traffic-split, this
        # keeps what the mirror always sent -- the route's own upstream)
        rt = ctx.snap.upstreams.get(route.upstream_key)  # type: ignore[attr-defined]
        if rt is None:
            return client
        plan = rt.plan
        if plan.pass_host == "rewrite" and plan.upstream_host:
            return str(plan.upstream_host)
        if plan.pass_host == "node" and len(rt.host_headers) == 1:
            return next(iter(rt.host_headers.values())).decode("latin-1")
    except (AttributeError, KeyError, TypeError):
        pass
    return client


def _spawn(conf: _Conf, method: str, url: str, headers: list[tuple[str, str]],
           body: bytes | None) -> None:
    global _dropped, _dropped_logged
    if len(_inflight) >= MAX_INFLIGHT:
        _dropped += 1
        now = time.monotonic()
        if now - _dropped_logged >= 10.0:
            _dropped_logged = now
            pdk.log.warning("proxy-mirror: %d mirror requests in flight, %d dropped so far",
                            len(_inflight), _dropped)
        return
    task = asyncio.get_running_loop().create_task(_send(conf.where, method, url, headers,
                                                        body))
    _inflight.add(task)
    task.add_done_callback(_inflight.discard)


async def _send(where: str, method: str, url: str, headers: list[tuple[str, str]],
                body: bytes | None) -> None:
    try:
        await http.request(method, url, headers=headers, body=body, timeout=TIMEOUT,
                           verify=False, max_body=MAX_RESPONSE)
    except http.HTTPError as e:
        # no path or query in the message: they may carry secrets
        pdk.log.info("proxy-mirror: %s request to mirror %s failed: %s", method, where, e)
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - a mirror never affects anything else
        pdk.log.warning("proxy-mirror: %s request to mirror %s failed", method, where,
                        exc_info=True)
