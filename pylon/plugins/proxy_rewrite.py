"""proxy-rewrite: change what is sent upstream, as APISIX's ``proxy-rewrite`` plugin.

``uri`` (a template with ``$var`` / ``${var}`` nginx variables; a ``?`` in a variable's value
becomes ``%3F``) wins over ``regex_uri`` (pattern, template pairs: the first pattern that
matches ``$uri`` replaces its first match, ``$1`` / ``${1}`` its captures; no match: the path
is kept).  The path is then percent-encoded as nginx's ``ngx.escape_uri`` does, and the
client's query string is appended (with ``&`` when the new uri has its own).
``use_real_request_uri_unsafe`` starts from the raw request-target instead and sends the
result without encoding or appending.  ``method`` and ``host`` replace the upstream request's
method and Host header (whatever the upstream's ``pass_host`` says); ``scheme`` (APISIX 2.x;
3.x dropped it for the upstream's own ``scheme``) reaches the same nodes over http or https.
``headers``: the old plain map (set; an empty value removes) or ``add`` / ``set`` /
``remove``, run in that order (as APISIX's code does); values may hold ``$var`` variables
and ``$1`` regex_uri captures.

A value taken from the request never becomes a line break: control characters in a rendered
header value are sent percent-escaped, and the uri is always escaped.

Templates, regexes and header operations are compiled once per configuration.
"""

from __future__ import annotations

import re
from typing import Any

from pylon import pdk
from pylon.pdk.match import compile_pcre
from pylon.pdk.template import Template, compile_replacement, compile_template, escape_uri

name = "proxy-rewrite"
priority = 1008
version = 0.1

_METHODS = ["GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "MKCOL", "COPY", "MOVE",
            "PROPFIND", "LOCK", "UNLOCK", "PATCH", "TRACE"]
_VALUE = {"oneOf": [{"type": "string"}, {"type": "number"}]}
_SET_MAP = {"type": "object", "minProperties": 1, "patternProperties": {"^[^:]+$": _VALUE}}

schema = {
    "type": "object",
    "properties": {
        "uri": {"description": "new uri for upstream", "type": "string", "minLength": 1,
                "maxLength": 4096, "pattern": r"^\/.*"},
        "method": {"description": "proxy route method", "type": "string", "enum": _METHODS},
        "regex_uri": {
            "description": "new uri that substitute from client uri for upstream, lower "
                           "priority than uri property",
            "type": "array", "minItems": 2,
            "items": {"description": "regex uri", "type": "string"},
        },
        "host": {"description": "new host for upstream", "type": "string",
                 "pattern": r"^[0-9a-zA-Z-.]+(:\d{1,5})?$"},
        "scheme": {"description": "new scheme for upstream", "type": "string",
                   "enum": ["http", "https"]},
        "headers": {
            "description": "new headers for request",
            "oneOf": [
                {"type": "object", "minProperties": 1, "additionalProperties": False,
                 "properties": {
                     "add": _SET_MAP,
                     "set": _SET_MAP,
                     "remove": {"type": "array", "minItems": 1,
                                "items": {"type": "string", "pattern": "^[^:]+$"}},
                 }},
                _SET_MAP,
            ],
        },
        "use_real_request_uri_unsafe": {
            "description": "use real_request_uri instead, THIS IS VERY UNSAFE.",
            "type": "boolean", "default": False},
    },
    "minProperties": 1,
}

#: ``$1`` / ``${1}`` in a header value: a regex_uri capture (APISIX resolve_var_with_captures)
_CAPTURE = re.compile(r"(?<!\\)\$\{?(\d+)\}?")
#: characters that must not reach the upstream request raw (CR, LF, NUL, other controls)
_CTL = re.compile(r"[\x00-\x1f\x7f]")
_CTL_SP = re.compile(r"[\x00-\x20\x7f]")


def _is_new_headers(headers: dict[str, Any]) -> bool:
    return any(isinstance(headers.get(k), (dict, list)) for k in ("add", "set", "remove"))


def _valid_field(field: str) -> bool:
    return all(32 < ord(c) < 127 and c != ":" for c in field)


def _check_plain_headers(headers: dict[str, Any]) -> None:
    """APISIX's check_set_headers for the old plain-map form."""
    for field, value in headers.items():
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ValueError("invalid type as header value")  # noqa: TRY004 - check's contract
        if not field:
            raise ValueError("invalid field length in header")
        if not _valid_field(field):
            raise ValueError("invalid field character in header")
        if isinstance(value, str) and any(ord(c) < 32 or ord(c) >= 127 for c in value):
            raise ValueError("invalid value character in header")


def _compile_pair(pattern: str, template: str) -> tuple[re.Pattern[str], Any]:
    return compile_pcre(pattern), compile_replacement(template)


def check(conf: dict[str, Any], schema_type: str) -> None:
    rx = conf.get("regex_uri")
    if rx:
        if len(rx) % 2:
            raise ValueError("The length of regex_uri should be an even number")
        for i in range(0, len(rx), 2):
            try:
                _compile_pair(rx[i], rx[i + 1])
            except (re.error, ValueError) as e:
                raise ValueError(f"invalid regex_uri({rx[i]}, {rx[i + 1]}): {e}") from None
    headers = conf.get("headers")
    if headers and not _is_new_headers(headers):
        _check_plain_headers(headers)


def _text(v: Any) -> str:
    """A configured header value as Lua's tostring gives it, as wire text (latin-1)."""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    s = str(v)
    try:
        s.encode("latin-1")
    except UnicodeEncodeError:
        s = s.encode("utf-8").decode("latin-1")
    return s


class Value:
    """A header value: literal, or parts that are text, variables (a Template) and captures
    (an int)."""

    __slots__ = ("literal", "parts")

    def __init__(self, raw: Any) -> None:
        text = _text(raw)
        self.literal: str | None = None
        self.parts: tuple[str | int | Template, ...] = ()
        parts: list[str | int | Template] = []
        pos = 0
        for m in _CAPTURE.finditer(text):
            parts.append(compile_template(text[pos:m.start()]))
            parts.append(int(m.group(1)))
            pos = m.end()
        parts.append(compile_template(text[pos:]))
        if len(parts) == 1 and not parts[0].has_vars:     # type: ignore[union-attr]
            self.literal = text
            return
        self.parts = tuple(p.literal if isinstance(p, Template) and not p.has_vars else p
                           for p in parts)

    def render(self, ctx: pdk.Context, caps: re.Match[str] | None) -> str:
        if self.literal is not None:
            return self.literal
        out = []
        for p in self.parts:
            if isinstance(p, str):
                out.append(p)
            elif isinstance(p, int):
                v = caps.group(p) if caps is not None and p <= caps.re.groups else None
                out.append(v or "")
            else:
                out.append(p.render(ctx))
        s = "".join(out)
        return _CTL.sub(_pct, s) if _CTL.search(s) else s


def _pct(m: re.Match[str]) -> str:
    return f"%{ord(m.group()):02X}"


class Conf:
    __slots__ = ("add", "host", "method", "real", "regex", "remove", "scheme", "set", "static",
                 "uri")

    def __init__(self, conf: dict[str, Any]) -> None:
        self.method: str | None = conf.get("method")
        self.host: str | None = conf.get("host")
        self.scheme: str | None = conf.get("scheme")
        self.real: bool = bool(conf.get("use_real_request_uri_unsafe"))
        uri = conf.get("uri")
        self.uri: Template | None = compile_template(uri) if uri is not None else None
        #: a uri without variables, encoded once: (target without the query, has its own ?)
        self.static: tuple[str, bool] | None = None
        if uri is not None and self.uri is not None and not self.uri.has_vars and \
                not self.real:
            q = uri.find("?")
            self.static = (escape_uri(uri), False) if q < 0 else \
                (escape_uri(uri[:q]) + uri[q:], True)
        rx = conf.get("regex_uri") if uri is None else None
        self.regex = tuple(_compile_pair(rx[i], rx[i + 1]) for i in range(0, len(rx), 2)) \
            if rx else ()
        headers = conf.get("headers") or {}
        if _is_new_headers(headers):
            add, set_, remove = headers.get("add") or {}, headers.get("set") or {}, \
                headers.get("remove") or []
        else:
            add, set_, remove = {}, headers, []
        self.add = tuple((n, Value(v)) for n, v in add.items())
        self.set = tuple((n, Value(v)) for n, v in set_.items())
        self.remove = tuple(remove)


def prepare(conf: dict[str, Any]) -> Conf:
    return Conf(conf)


def _render_uri(tmpl: Template, ctx: pdk.Context) -> str:
    """APISIX ``resolve_var(conf.uri, ctx.var, escape_separator)``: a ``?`` in a variable's
    value is ``%3F``; an unknown variable is empty."""
    out = []
    for p in tmpl.parts or ():
        if isinstance(p, str):
            out.append(p)
        else:
            v = ctx.var(p[0])
            if v is not None:
                out.append(str(v).replace("?", "%3F"))
    return "".join(out)


def _upstream_uri(conf: Conf, ctx: pdk.Context) -> tuple[str, re.Match[str] | None]:
    head = ctx.head
    caps = None
    static = conf.static
    if static is not None:
        new, own_query = static
    else:
        uri = (ctx.var("real_request_uri") or "") if conf.real else ctx.uri
        escaped = False                   # a '?' in the result starts the query
        if conf.uri is not None:
            escaped = True
            uri = _render_uri(conf.uri, ctx)
        elif conf.regex:
            escaped = "?" not in uri
            for rx, expand in conf.regex:
                m = rx.search(uri)
                if m is not None:
                    caps = m
                    uri = uri[:m.start()] + expand(m) + uri[m.end():]
                    break
        if conf.real:                     # as is: only what would break the request line
            return _CTL_SP.sub(_pct, uri), caps
        q = uri.find("?") if escaped else -1
        own_query = q >= 0
        new = escape_uri(uri) if q < 0 else escape_uri(uri[:q]) + _CTL_SP.sub(_pct, uri[q:])
    if b"?" in (ctx.orig_target or head.target):     # $is_args: the client sent a query
        new += ("&" if own_query else "?") + head.query.decode("latin-1")
    return new, caps


def rewrite(conf: Conf, ctx: pdk.Context) -> None:
    if conf.host is not None:
        ctx.set_upstream_host(conf.host)
    if conf.scheme is not None:
        ctx.set_upstream_scheme(conf.scheme)
    new, caps = _upstream_uri(conf, ctx)
    if new != ctx.head.target.decode("latin-1"):
        ctx.set_upstream_uri(new)
    for n, v in conf.add:
        val = v.render(ctx, caps)
        if val:
            ctx.add_header(n, val)
    if conf.set:
        ctx.set_headers({n: v.render(ctx, caps) or None for n, v in conf.set})
    for n in conf.remove:
        ctx.remove_header(n)
    if conf.method is not None:
        ctx.set_method(conf.method)
