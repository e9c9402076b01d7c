"""request-validation: check request headers and body against JSON Schemas (APISIX).

Route: ``header_schema`` and/or ``body_schema`` (at least one), ``rejected_code`` (400),
``rejected_msg`` (the body of a rejection; default: the validation error),
``max_req_body_size`` (bytes, default 64 MiB as in APISIX >= 3.17: a body that has to be
read for ``body_schema`` and is larger is refused with 413 before it is buffered whole; a
``Content-Length`` above it is refused without reading).

As APISIX (which runs it in ``rewrite``): headers are validated as an object of lower-case
names to values (a repeated header is an array).  The body is parsed as a form when the
Content-Type starts with ``application/x-www-form-urlencoded`` (case-insensitive; a key
without ``=`` is ``true``, a repeated key an array) and as JSON otherwise; an empty body, an
undecodable body or a repeated Content-Type header is rejected.  A JSON body that validates is
sent upstream re-encoded from what was validated (APISIX does the same, so the upstream cannot
parse something else than what was checked — duplicate keys, schema ``default`` values filled
in); a form body is sent unchanged.  Errors are worded as APISIX's validator words them
(``property "x" is required``, ``property "a" validation failed: wrong type: expected string,
got number``).  Schemas are compiled once per configuration.
"""

from __future__ import annotations

import json
import re
import socket
from typing import Any

import fastjsonschema

from pylon import pdk

name = "request-validation"
priority = 2800
version = 0.1
type = "validation"

schema = {
    "type": "object",
    "properties": {
        "header_schema": {"type": "object"},
        "body_schema": {"type": "object"},
        "rejected_code": {"type": "integer", "minimum": 200, "maximum": 599, "default": 400},
        "rejected_msg": {"type": "string", "minLength": 1, "maxLength": 256},
        "max_req_body_size": {"type": "integer", "minimum": 1, "default": 64 * 1024 * 1024},
    },
    "anyOf": [{"required": ["header_schema"]}, {"required": ["body_schema"]}],
}

_FORM = "application/x-www-form-urlencoded"


# -- formats as APISIX's validator checks them (the others are not checked there) ----------
def _pattern(rx: str) -> Any:
    c = re.compile(rx)
    return lambda v: c.search(v) is not None


def _inet(family: int) -> Any:
    def ok(v: str) -> bool:
        try:
            socket.inet_pton(family, v)
        except (OSError, ValueError):
            return False
        return True
    return ok


def _any(_v: Any) -> bool:
    return True


_FORMATS: dict[str, Any] = {f: _any for f in (
    "date-time", "uri", "json-pointer", "uri-reference", "uri-template", "date", "iri",
    "iri-reference", "idn-email", "idn-hostname", "relative-json-pointer", "time", "regex")}
_FORMATS.update({
    "email": _pattern(r"^([A-Za-z0-9_\-\.])+\@([A-Za-z0-9_\-\.])+\.([A-Za-z]{2,4})$"),
    "hostname": _pattern(r"^[a-zA-Z0-9\-\.]+$"),
    "ipv4": _inet(socket.AF_INET),
    "ipv6": _inet(socket.AF_INET6),
})
def _compile(s: dict[str, Any], what: str) -> Any:
    try:
        return fastjsonschema.compile(s, formats=_FORMATS)
    except fastjsonschema.JsonSchemaDefinitionException as e:
        raise ValueError(f"invalid {what}: {e}") from None
    except (re.error, TypeError, ValueError, KeyError) as e:
        raise ValueError(f"invalid {what}: {e}") from None


def check(conf: dict[str, Any], schema_type: str) -> None:
    for key in ("header_schema", "body_schema"):
        if key in conf:
            _compile(conf[key], key)


class Conf:
    __slots__ = ("body_v", "code", "header_v", "max_body", "msg")

    def __init__(self, conf: dict[str, Any]) -> None:
        self.header_v = _compile(conf["header_schema"], "header_schema") \
            if "header_schema" in conf else None
        self.body_v = _compile(conf["body_schema"], "body_schema") \
            if "body_schema" in conf else None
        self.code: int = conf["rejected_code"]
        self.msg: str | None = conf.get("rejected_msg")
        self.max_body: int = conf["max_req_body_size"]


def prepare(conf: dict[str, Any]) -> Conf:
    return Conf(conf)


def _reject(conf: Conf, err: str | None) -> Any:
    msg = conf.msg if conf.msg is not None else err
    return conf.code if msg is None else (conf.code, msg)


def rewrite(conf: Conf, ctx: pdk.Context) -> Any:
    if conf.header_v is not None:
        headers = pdk.multi_dict((n.decode("latin-1").lower(), v.decode("latin-1"))
                                 for n, v in ctx.head.headers)
        try:
            conf.header_v(headers)
        except fastjsonschema.JsonSchemaValueException as e:
            err = pdk.lua_error(e, headers)
            pdk.log.error("req schema validation failed: %s", err)
            return _reject(conf, err)
    if conf.body_v is not None:
        return _check_body(conf, ctx)
    return None


def _content_types(ctx: pdk.Context) -> list[bytes]:
    return [v for n, v in ctx.head.headers
            if n.lower() == b"content-type"]


async def _check_body(conf: Conf, ctx: pdk.Context) -> Any:
    cts = _content_types(ctx)
    if len(cts) > 1:
        pdk.log.error("request-validation: duplicated Content-Type header")
        return _reject(conf, "duplicated Content-Type header")
    body = await ctx.read_body(conf.max_body)         # larger: 413, nothing buffered past it
    if not body:
        return _reject(conf, None)
    is_json = not (cts and cts[0].lower().startswith(_FORM.encode()))
    data: Any
    if is_json:
        try:
            data = json.loads(body, parse_constant=_no_constant)
        except ValueError as e:
            err = pdk.json_error(e)
            pdk.log.error("failed to decode the req body: %s", err)
            return _reject(conf, err)
    else:
        data = pdk.decode_args(body.decode("latin-1"))
    try:
        data = conf.body_v(data)  # type: ignore[misc]  # called only with a body schema
    except fastjsonschema.JsonSchemaValueException as e:
        err = pdk.lua_error(e, data)
        pdk.log.error("req schema validation failed: %s", err)
        return _reject(conf, err)
    if is_json:
        ctx.set_body(json.dumps(data, ensure_ascii=False, separators=(",", ":"))
                     .encode("utf-8"))
    return None


def _no_constant(c: str) -> Any:
    raise ValueError(f"invalid number {c}")
