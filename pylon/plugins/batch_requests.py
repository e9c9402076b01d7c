"""batch-requests (APISIX): several requests in one, answered as one JSON array.

The plugin exposes ``POST /apisix/batch-requests`` (``plugin_attr.batch-requests.uri`` moves
it) through its ``api()``; a route with ``public-api`` serves it.  The body::

    {"timeout": 30000, "query": {...}, "headers": {...},
     "pipeline": [{"method", "path", "query", "headers", "body", "version", "ssl_verify"}]}

Each pipeline item becomes a request to this gateway itself (the listener address and port
the batch came in on), so it is routed, authenticated and rate-limited like any other.  A
sub-request gets the batch's ``headers`` and the outer request's headers (except
``Content-*``) where it has none of that name, the batch's ``query`` arguments likewise, and
``nginx_config.http.real_ip_header`` (``X-Real-IP``) set to the client's address, which the
listener trusts from itself (``real_ip_from``): the sub-request's ``$remote_addr`` is the
client's, whatever header the batch sends (CVE-2022-24112).  The answer lists ``{status,
reason, headers, body}`` in pipeline order; one that does not answer within ``timeout`` ms
is ``{"status": 504, "reason": "upstream timeout"}``.  Metadata (APISIX): ``max_body_size``
(1 MiB: larger batches get 413), ``max_pipeline_items`` (1000), ``max_response_body_size``
(1 MiB per response) and ``max_response_body_size_total`` (10 MiB), beyond which the batch is a 502.

The sub-requests run in parallel (at most ``PARALLEL`` at a time, each on its own keep-alive
connection to the listener), so a batch takes as long as its slowest item, not the sum.
Unlike APISIX's single pipelined connection, which nginx serves one request after another,
items must not depend on each other's side effects: send dependent calls in separate
batches.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

import fastjsonschema

from pylon import pdk
from pylon.pdk import http

name = "batch-requests"
priority = 4010
version = 0.1

schema = {"type": "object"}

DEFAULT_URI = "/apisix/batch-requests"
_MiB = 1024 * 1024

metadata_schema = {
    "type": "object",
    "properties": {
        "max_body_size": {"description": "max pipeline body size in bytes", "type": "integer",
                          "exclusiveMinimum": 0, "default": _MiB},
        "max_pipeline_items": {"description": "max number of requests allowed in the pipeline",
                               "type": "integer", "exclusiveMinimum": 0, "default": 1000},
        "max_response_body_size": {
            "description": "max response body size in bytes for each pipeline request",
            "type": "integer", "exclusiveMinimum": 0, "default": _MiB},
        "max_response_body_size_total": {
            "description": "max total response body size in bytes for a pipeline",
            "type": "integer", "exclusiveMinimum": 0, "default": 10 * _MiB},
    },
}

_REQ_SCHEMA = {
    "type": "object",
    "properties": {
        "query": {"description": "pipeline query string", "type": "object"},
        "headers": {"description": "pipeline header", "type": "object"},
        "timeout": {"description": "pipeline timeout(ms)", "type": "integer", "minimum": 1,
                    "default": 30000},
        "pipeline": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "version": {"description": "HTTP version", "type": "number",
                                "enum": [1.0, 1.1], "default": 1.1},
                    "method": {"description": "HTTP method", "type": "string",
                               "enum": list(pdk.METHODS), "default": "GET"},
                    "path": {"type": "string", "minLength": 1},
                    "query": {"description": "request query string", "type": "object"},
                    "headers": {"description": "request headers", "type": "object"},
                    "body": {"description": "request body", "type": "string"},
                    "ssl_verify": {"type": "boolean", "default": False},
                },
                "required": ["path"],
            },
        },
    },
    "anyOf": [{"required": ["pipeline"]}],
}
_check_request = fastjsonschema.compile(_REQ_SCHEMA)
_DEFAULT_META = fastjsonschema.compile(metadata_schema)({})


#: sub-requests of one batch in flight at once
PARALLEL = 32


def api() -> list[dict[str, Any]]:
    uri = pdk.plugin_attr(name).get("uri") or DEFAULT_URI
    return [{"methods": ["POST"], "uri": str(uri), "handler": batch}]


def _too_large(size: int, limit: int) -> tuple[int, dict[str, str]]:
    return 413, {"error_msg": f"request size {size} is greater than the maximum size {limit} "
                              "allowed"}


async def batch(ctx: Any) -> tuple[int, Any]:
    meta = ctx.metadata(name) or _DEFAULT_META
    limit = meta["max_body_size"]
    cl = ctx.header("content-length")
    if cl is not None and cl.isdigit() and int(cl) > limit:
        return _too_large(int(cl), limit)
    try:
        raw = await ctx.read_body(limit)
    except pdk.BodyTooLarge:                    # chunked: what arrived before the limit
        return _too_large(int(ctx.var("request_length") or 0), limit)
    if not raw:
        return 400, {"error_msg": "no request body, you should give at least one pipeline "
                                  "setting"}
    try:
        data = json.loads(raw)
    except ValueError as e:
        return 400, {"error_msg": f"invalid request body: {raw.decode('utf-8', 'replace')}, "
                                  f"err: {pdk.json_error(e)}"}
    try:
        data = _check_request(data)
    except fastjsonschema.JsonSchemaValueException as e:
        return 400, {"error_msg": "bad request body: " + pdk.schema_message(_REQ_SCHEMA, data, e)}
    items = data["pipeline"]
    if len(items) > meta["max_pipeline_items"]:
        return 400, {"error_msg": f"too many pipeline requests, {len(items)} exceeds the "
                                  f"maximum of {meta['max_pipeline_items']}"}
    return await _run(ctx, data, meta)


async def _run(ctx: Any, data: dict[str, Any], meta: dict[str, Any]) -> tuple[int, Any]:
    addr = ctx.var("server_addr")
    base = f"{ctx.scheme}://{f'[{addr}]' if ':' in addr else addr}:{ctx.var('server_port')}"
    common = {str(k).lower(): v for k, v in (data.get("headers") or {}).items()}
    for n, v in pdk.multi_dict((n.lower(), v) for n, v in ctx.headers()).items():
        if not n.startswith("content-") and n != "expect":
            common.setdefault(n, v)
    client = ctx.remote_addr
    real_ip = (pdk.node_setting("real_ip_header") or "X-Real-IP").lower()
    common_query = data.get("query")
    timeout = data["timeout"] / 1000
    max_one, max_total = meta["max_response_body_size"], meta["max_response_body_size_total"]
    specs = []
    for item in data["pipeline"]:
        headers = {str(k).lower(): v for k, v in (item.get("headers") or {}).items()}
        for n, v in common.items():
            headers.setdefault(n, v)
        headers[real_ip] = client          # the client's address, whatever the batch says
        query = item.get("query")
        if common_query:
            query = {**common_query, **query} if query else common_query
        path = item["path"]
        if query:
            path += ("&" if "?" in path else "?") + _encode_args(query)
        specs.append((item["method"], base + path, _header_pairs(headers), item))

    gate = asyncio.Semaphore(PARALLEL)

    async def one(method: str, url: str, headers: list[tuple[str, str | None]],
                  item: dict[str, Any]) -> http.Response | Exception:
        try:
            async with gate:
                return await http.request(method, url, headers=headers,
                                          body=item.get("body"), timeout=timeout,
                                          verify=item["ssl_verify"], max_body=max_one)
        except http.HTTPError as e:           # HTTPTimeout too
            return e

    # all sub-requests in flight at once (each on its own keep-alive connection to this
    # node's listener); the answers are reported in pipeline order
    results = await asyncio.gather(*(one(*s) for s in specs))
    total = 0
    out: list[dict[str, Any]] = []
    for i, ((method, _u, _h, _it), r) in enumerate(zip(specs, results, strict=True), 1):
        if isinstance(r, http.HTTPTimeout):
            out.append({"status": 504, "reason": "upstream timeout"})
            continue
        if isinstance(r, http.HTTPError):
            msg = r.message
            if msg.startswith("response body larger than"):
                return 502, {"error_msg": f"response body of pipeline request {i} exceeds "
                                          "max_response_body_size"}
            if msg.startswith("connect to"):
                return 500, {"error_msg": "connect to apisix failed: " + msg}
            if msg.startswith(("bad ", "request header not")):     # could not be sent
                return 400, {"error_msg": "request failed: " + msg}
            pdk.log.error("batch-requests: pipeline request %d failed: %s", i, msg)
            out.append({"status": 504, "reason": "upstream timeout"})   # no response
            continue
        assert isinstance(r, http.Response)
        sub: dict[str, Any] = {"status": r.status,
                               "reason": pdk.reason_phrase(r.status),
                               "headers": pdk.multi_dict(r.headers)}
        if method != "HEAD" and r.status >= 200 and r.status not in (204, 304):
            sub["body"] = r.body.decode("utf-8", "replace")
            total += len(r.body)
            if total > max_total:
                return 502, {"error_msg": f"response body of pipeline request {i} exceeds "
                                          "max_response_body_size_total"}
        out.append(sub)
    return 200, out


def _lua_str(v: Any) -> str | None:
    """A JSON value as Lua's ``tostring`` writes it (None: left out)."""
    if v is None or v is False:
        return None
    if v is True:
        return "true"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def _header_pairs(headers: dict[str, Any]) -> list[tuple[str, str | None]]:
    """A value list is the header repeated (as lua-resty-http sends a table)."""
    out: list[tuple[str, str | None]] = []
    for n, v in headers.items():
        for x in v if isinstance(v, list) else (v,):
            out.append((n, "false" if x is False else _lua_str(x)))
    return out


def _encode_args(args: dict[str, Any]) -> str:
    """``ngx.encode_args``: ``true`` is the bare name, ``false`` is left out, a list repeats
    the name."""
    parts = []
    for k, v in args.items():
        key = quote(str(k), safe="")
        for x in v if isinstance(v, list) else (v,):
            if x is True:
                parts.append(key)
            else:
                s = _lua_str(x)
                if s is not None:
                    parts.append(f"{key}={quote(s, safe='')}")
    return "&".join(parts)
