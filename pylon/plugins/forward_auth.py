"""forward-auth: ask an external authorization service about every request (APISIX).

The gateway sends the service a request (``request_method`` GET, or POST with the client's
body) carrying ``X-Forwarded-Proto/Method/Host/Uri/For``, the client headers named in
``request_headers`` and ``extra_headers`` (values may use ``$var`` / ``${var}``).  A 2xx
answer lets the request through, copying the service's ``upstream_headers`` into the
upstream request (a header the service does not return is removed) and, with
``consumer_header``, attaching the consumer it names.  Any other answer is sent to the
client: the service's status and body, plus its ``client_headers``.  When the service
cannot be reached: ``status_on_error`` (403), or the request goes on with
``allow_degradation``.
"""

from __future__ import annotations

import re
from typing import Any

from pylon import pdk
from pylon.pdk import http
from pylon.pdk.template import Template, compile_template

name = "forward-auth"
priority = 2002
version = 0.1

schema = {
    "type": "object",
    "properties": {
        "uri": {"type": "string"},
        "allow_degradation": {"type": "boolean", "default": False},
        "status_on_error": {"type": "integer", "minimum": 200, "maximum": 599,
                            "default": 403},
        "ssl_verify": {"type": "boolean", "default": True},
        "request_method": {"type": "string", "default": "GET", "enum": ["GET", "POST"],
                           "description": "the method for client to request the "
                                          "authorization service"},
        "request_headers": {"type": "array", "default": [], "items": {"type": "string"},
                            "description": "client request header that will be sent to "
                                           "the authorization service"},
        "extra_headers": {
            "type": "object", "minProperties": 1,
            "patternProperties": {"^[^:]+$": {"type": "string"}},
            "description": "extra headers sent to the authorization service; values may "
                           "contain variables like $remote_addr, $request_uri"},
        "upstream_headers": {"type": "array", "default": [], "items": {"type": "string"},
                             "description": "authorization response header that will be "
                                            "sent to the upstream"},
        "client_headers": {"type": "array", "default": [], "items": {"type": "string"},
                           "description": "authorization response header that will be "
                                          "sent to the client when authorizing failed"},
        "consumer_header": {"type": "string", "minLength": 1,
                            "description": "authorization response header that contains "
                                           "the consumer username to attach"},
        "timeout": {"type": "integer", "minimum": 1, "maximum": 60000, "default": 3000,
                    "description": "timeout in milliseconds"},
        "keepalive": {"type": "boolean", "default": True},
        "keepalive_timeout": {"type": "integer", "minimum": 1000, "default": 60000},
        "keepalive_pool": {"type": "integer", "minimum": 1, "default": 5},
    },
    "required": ["uri"],
}

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
#: with POST the body goes along (always with its exact Content-Length)
_POST_HEADERS = ("Content-Encoding",)


def check(conf: dict[str, Any], schema_type: str) -> None:
    if not conf["uri"].startswith(("http://", "https://")):
        raise ValueError('property "uri" validation failed: must be an http:// or https:// '
                         "URL")
    for h in conf.get("extra_headers") or {}:
        if not _TOKEN.match(h):
            raise ValueError(f'property "extra_headers" validation failed: bad header name '
                             f"{h!r}")


class _Conf:
    __slots__ = ("allow_degradation", "client_headers", "consumer_header", "extra",
                 "keepalive", "keepalive_pool", "keepalive_timeout", "method",
                 "request_headers", "ssl_verify", "status_on_error", "timeout",
                 "upstream_headers", "uri")
    uri: str
    allow_degradation: bool
    status_on_error: int
    ssl_verify: bool
    method: str
    request_headers: tuple[str, ...]
    upstream_headers: tuple[str, ...]
    client_headers: tuple[str, ...]
    consumer_header: str | None
    timeout: float
    keepalive: bool
    keepalive_timeout: float
    keepalive_pool: int
    extra: tuple[tuple[str, Template], ...]


def prepare(conf: dict[str, Any]) -> _Conf:
    c = _Conf()
    c.uri = conf["uri"]
    c.allow_degradation = conf["allow_degradation"]
    c.status_on_error = conf["status_on_error"]
    c.ssl_verify = conf["ssl_verify"]
    c.method = conf["request_method"]
    c.request_headers = tuple(conf["request_headers"])
    c.upstream_headers = tuple(conf["upstream_headers"])
    c.client_headers = tuple(conf["client_headers"])
    c.consumer_header = conf.get("consumer_header")
    c.timeout = conf["timeout"] / 1000.0
    c.keepalive = conf["keepalive"]
    c.keepalive_timeout = conf["keepalive_timeout"] / 1000.0
    c.keepalive_pool = conf["keepalive_pool"]
    c.extra = tuple((k, compile_template(v))
                    for k, v in (conf.get("extra_headers") or {}).items())
    return c


def _resolve(tpl: Any, ctx: pdk.Context) -> str:
    return tpl.render(ctx)


async def rewrite(conf: _Conf, ctx: pdk.Context) -> Any:
    hdrs: dict[str, tuple[str, str]] = {}       # lower name -> (name, value)

    def put(n: str, v: str | None) -> None:
        if v is not None:
            hdrs[n.lower()] = (n, v)

    put("X-Forwarded-Proto", ctx.scheme)
    put("X-Forwarded-Method", ctx.method)
    put("X-Forwarded-Host", ctx.host)
    put("X-Forwarded-Uri", ctx.var("request_uri"))
    put("X-Forwarded-For", ctx.remote_addr)
    body = None
    if conf.method == "POST":
        for h in _POST_HEADERS:
            put(h, ctx.header(h))
    for n, tpl in conf.extra:
        put(n, _resolve(tpl, ctx))
    for n in conf.request_headers:
        if n.lower() not in hdrs:
            put(n, ctx.header(n))
    if conf.method == "POST":
        body = await ctx.read_body()
    try:
        res = await http.request(conf.method, conf.uri, headers=list(hdrs.values()),
                                 body=body, timeout=conf.timeout, verify=conf.ssl_verify,
                                 keepalive=conf.keepalive,
                                 keepalive_timeout=conf.keepalive_timeout,
                                 keepalive_pool=conf.keepalive_pool)
    except http.HTTPError as e:
        if conf.allow_degradation:
            return None
        pdk.log.warning("failed to process forward auth, err: %s", e)
        return conf.status_on_error

    if res.status >= 300:
        out: dict[str, Any] = {}
        for n in conf.client_headers:
            vals = res.header_values(n)
            if vals:
                out[n] = vals if len(vals) > 1 else vals[0]
        return res.status, res.body, out

    if conf.consumer_header is not None:
        cname = res.header(conf.consumer_header)
        if not cname:
            pdk.log.error("missing consumer header from auth response: %s",
                          conf.consumer_header)
            return 403, "consumer header missing in auth response"
        cons = ctx.consumers.consumers.get(cname)
        if cons is None:
            pdk.log.error("failed to fetch consumer by name from auth response header %s",
                          conf.consumer_header)
            return 403, "consumer not found"
        pdk.attach_consumer(ctx, pdk.Credential(cons, None, name, None))

    for n in conf.upstream_headers:
        vals = res.header_values(n)
        ctx.set_header(n, ", ".join(vals) if vals else None)
    return None
