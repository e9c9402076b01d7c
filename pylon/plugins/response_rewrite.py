"""response-rewrite: change the status, headers and body of a response, as APISIX's plugin.

Route: ``status_code`` (200..598), ``body`` (``body_base64``: decoded first), ``headers``
(``add`` ``["Name: value"]`` / ``set`` ``{name: value}`` / ``remove`` ``[name]``, applied in
that order, or the old plain map = ``set``; values are ``$var`` templates; an empty value
removes the header), ``vars`` (rewrite only when the response matches, e.g.
``[["status", "==", 200]]``: evaluated in ``header_filter``, where ``$status`` and
``$upstream_http_*`` are known), ``filters`` (``[{regex, replace, scope: once|global,
options: "jo"}]`` applied in turn to the whole body; ``body`` and ``filters`` exclude each
other).  Works on upstream responses and on the gateway's own replies (a 401 from key-auth).

When the body changes, Content-Length, Content-Encoding, Last-Modified and ETag go (the
response is re-framed chunked, or with the new length for a local reply).  A configuration
without ``body``/``filters`` has no ``body_filter`` hook at all: the body streams untouched.
``body`` replaces the body as soon as the upstream's first bytes (or end) arrive, discarding
the rest.  ``filters`` need the whole body: it is held (decoded first when the upstream sent it
gzip or br, as APISIX does) up to ``plugin_attr.response-rewrite.max_body_size`` bytes (16 MiB);
a larger body is logged and sent on unfiltered (decoded), chunk by chunk as it arrives.

Regexes are ngx.re's: PCRE on bytes unless ``options`` has ``u``; options ``i m s x a u U``
act, ``j o d D J`` are accepted and change nothing here.  Everything is compiled in
``prepare``.
"""

from __future__ import annotations

import re
import warnings
import zlib
from collections.abc import Callable
from typing import Any

from pylon import pdk
from pylon.pdk.match import lua_tostring, pcre_to_python
from pylon.pdk.template import Template, compile_replacement, compile_template

name = "response-rewrite"
priority = 899
version = 0.1

_HEADER_VALUE = {"oneOf": [{"type": "string"}, {"type": "number"}]}

schema = {
    "type": "object",
    "properties": {
        "headers": {
            "description": "new headers for response",
            "anyOf": [
                {"type": "object", "minProperties": 1,
                 "patternProperties": {"^[^:]+$": _HEADER_VALUE}},
                {"properties": {
                    "add": {"type": "array", "minItems": 1,
                            "items": {"type": "string", "pattern": "^[^:]+:[^:]+[^/]$"}},
                    "set": {"type": "object", "minProperties": 1,
                            "patternProperties": {"^[^:]+$": _HEADER_VALUE}},
                    "remove": {"type": "array", "minItems": 1,
                               "items": {"type": "string", "pattern": "^[^:]+$"}},
                }},
            ],
        },
        "body": {"description": "new body for response", "type": "string"},
        "body_base64": {"description": "whether new body for response need base64 decode "
                                       "before return",
                        "type": "boolean", "default": False},
        "status_code": {"description": "new status code for response", "type": "integer",
                        "minimum": 200, "maximum": 598},
        "vars": {"type": "array"},
        "filters": {
            "description": "a group of filters that modify response bodyby replacing one "
                           "specified string by another",
            "type": "array",
            "minItems": 1,
            "items": {
                "description": "filter that modifies response body",
                "type": "object",
                "required": ["regex", "replace"],
                "properties": {
                    "regex": {"description": "match pattern on response body",
                              "type": "string", "minLength": 1},
                    "scope": {"description": "regex substitution range", "type": "string",
                              "enum": ["once", "global"], "default": "once"},
                    "replace": {"description": "regex substitution content", "type": "string"},
                    "options": {"description": "regex options", "type": "string",
                                "default": "jo"},
                },
            },
        },
    },
    "dependencies": {
        "body": {"not": {"required": ["filters"]}},
        "filters": {"not": {"required": ["body"]}},
    },
}

#: what APISIX's core.response.clear_header_as_body_modified removes
_BODY_HEADERS = frozenset((b"content-length", b"content-encoding", b"last-modified", b"etag"))
#: the framing is the gateway's: these names in ``headers`` are ignored
_FRAMING = frozenset((b"content-length", b"transfer-encoding", b"connection"))
_ADD_RX = re.compile(r"^([^:\s]+)\s*:\s*([^:]+)$")
_UNSAFE = re.compile(r"[\r\n\x00]")
_ESCAPES = {"\r": "%0D", "\n": "%0A", "\x00": "%00"}
#: ngx.re options: these change the match; "j o d D J" only how PCRE gets there
_RE_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}
_RE_OTHER = frozenset("aujodDJU")
MAX_BODY_SIZE = 16 << 20


# ----------------------------------------------------------------------------- config
def _is_new_headers_conf(headers: dict[str, Any]) -> bool:
    return any(isinstance(headers.get(k), (list, dict)) for k in ("add", "set", "remove"))


class _BadReplace(ValueError):
    pass


class _Filter:
    __slots__ = ("anchored", "count", "expand", "rx", "source", "utf8")

    def __init__(self, f: dict[str, Any]) -> None:
        regex: str = f["regex"]
        opts: str = f["options"]
        self.source = regex
        flags = 0
        for c in opts:
            if c in _RE_FLAGS:
                flags |= _RE_FLAGS[c]
            elif c not in _RE_OTHER:
                raise ValueError(f'unknown flag "{c}" (flags "{opts}")')
        self.utf8 = "u" in opts or "U" in opts
        self.anchored = "a" in opts
        replace: str = f["replace"]
        if not self.utf8:
            # PCRE without "u" works on bytes: match the body's latin-1 view with the
            # pattern's and the replacement's UTF-8 bytes seen the same way
            regex = regex.encode("utf-8").decode("latin-1")
            replace = replace.encode("utf-8").decode("latin-1")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.rx = re.compile(pcre_to_python(regex), flags | re.ASCII)
        try:
            self.expand = compile_replacement(replace)
        except ValueError as e:
            raise _BadReplace(str(e)) from None
        self.count = 1 if f["scope"] == "once" else 0

    def apply(self, text: str) -> str:
        if not self.anchored:
            return self.rx.sub(self.expand, text, count=self.count)
        out: list[str] = []
        pos = 0
        while True:                     # anchored: each match starts where the last ended
            m = self.rx.match(text, pos)
            if m is None:
                break
            out.append(self.expand(m))
            end = m.end()
            if self.count or end == pos:
                pos = end
                break
            pos = end
        return "".join(out) + text[pos:] if out else text


def check(conf: dict[str, Any], schema_type: str) -> None:
    headers = conf.get("headers")
    if headers and not _is_new_headers_conf(headers):
        for field, value in headers.items():
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise TypeError("invalid type as header value")
            if not field:
                raise ValueError("invalid field length in header")
    if conf["body_base64"]:
        body = conf.get("body")
        try:
            if not body:
                raise ValueError
            pdk.b64decode(body)
        except ValueError:
            raise ValueError("invalid base64 content") from None
    if conf.get("vars") is not None:
        try:
            pdk.compile_expr(conf["vars"])
        except ValueError as e:
            raise ValueError(f"failed to validate the 'vars' expression: {e}") from None
    for f in conf.get("filters") or ():
        try:
            _Filter(f)
        except _BadReplace as e:     # ngx.re.sub would fail on every response: refused here
            raise ValueError(f'replace "{f["replace"]}" validation failed: {e}') from None
        except (re.error, ValueError, OverflowError) as e:
            raise ValueError(f'regex "{f["regex"]}" validation failed: {e}') from None


def _wire(s: str) -> bytes:
    """A header value as sent: CR, LF and NUL escaped (as lua-nginx-module does); latin-1
    text as is, anything else as UTF-8."""
    if _UNSAFE.search(s):
        s = _UNSAFE.sub(lambda m: _ESCAPES[m.group()], s)
    try:
        return s.encode("latin-1")
    except UnicodeEncodeError:
        return s.encode("utf-8")


_Value = bytes | Template
_Op = tuple[bytes, bytes, _Value]       # name, lower-case name, value (bytes or template)


def _op(field: str, value: Any) -> _Op:
    t = compile_template(value if isinstance(value, str) else lua_tostring(value))
    n = field.encode("latin-1")
    return n, n.lower(), t if t.has_vars else _wire(t.literal)


class Conf:
    __slots__ = ("adds", "body", "drop", "filters", "key", "limit", "sets", "status", "when")

    def __init__(self, conf: dict[str, Any]) -> None:
        self.key = f"{name}#{id(self)}"      # this configuration's state in ctx.store
        self.status: int | None = conf.get("status_code")
        vs = conf.get("vars")
        self.when = pdk.compile_expr(vs) if vs else None
        body = conf.get("body")
        if body is not None and conf["body_base64"]:
            self.body: bytes | None = pdk.b64decode(body)
        else:
            self.body = body.encode("utf-8") if body is not None else None
        fs = conf.get("filters")
        self.filters = tuple(_Filter(f) for f in fs) if fs else None
        attr = pdk.plugin_attr(name).get("max_body_size")
        self.limit = attr if isinstance(attr, int) and attr > 0 else MAX_BODY_SIZE
        adds: list[_Op] = []
        sets: list[_Op] = []
        removes: set[bytes] = set()
        hdrs = conf.get("headers")
        if hdrs and _is_new_headers_conf(hdrs):
            for line in hdrs.get("add") or ():
                m = _ADD_RX.match(line)
                if m is None:           # APISIX: the header operations fail, nothing is done
                    pdk.log.error("failed to create header operation: %r", line)
                    adds, sets, removes = [], [], set()
                    hdrs = None
                    break
                adds.append(_op(m.group(1), m.group(2)))
            if hdrs:
                sets = [_op(k, v) for k, v in (hdrs.get("set") or {}).items()]
                removes = {r.encode("latin-1").lower() for r in hdrs.get("remove") or ()}
        elif hdrs:
            sets = [_op(k, v) for k, v in hdrs.items()]
        # add, then set (replaces what add added), then remove: the net effect in one pass
        set_names = {o[1] for o in sets}
        self.adds = tuple(o for o in adds if o[1] not in set_names and o[1] not in removes
                          and o[1] not in _FRAMING)
        self.sets = tuple(o for o in sets if o[1] not in removes and o[1] not in _FRAMING)
        drop = set_names | removes
        if self.body is not None or self.filters:
            drop |= _BODY_HEADERS
        self.drop = frozenset(drop)


def prepare(conf: dict[str, Any]) -> Conf:
    return Conf(conf)


def phases(conf: Conf) -> set[str]:
    if conf.body is not None or conf.filters:
        return {"header_filter", "body_filter"}
    if conf.status is not None or conf.adds or conf.sets or conf.drop:
        return {"header_filter"}
    return set()


# ----------------------------------------------------------------------------- response
class _Held:
    """The body of a response being filtered: decoded chunks so far."""

    __slots__ = ("chunks", "decoder", "encoding", "passing", "size")

    def __init__(self, encoding: str | None) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.passing = False            # over the limit (or undecodable): sent on as is
        self.encoding = encoding
        self.decoder: Callable[[bytes], bytes] | None = None
        if encoding == "gzip":
            self.decoder = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress
        elif encoding == "br":
            try:
                import brotli  # type: ignore[import-untyped]
            except ImportError:
                pass
            else:
                self.decoder = brotli.Decompressor().process


def _render(ops: tuple[_Op, ...], ctx: pdk.Context) -> list[tuple[bytes, bytes]]:
    out = []
    for n, _, v in ops:
        if not isinstance(v, bytes):
            v = _wire(v.render(ctx, lua_tostring))
        if v:                            # an empty value: no header (nginx)
            out.append((n, v))
    return out


def header_filter(conf: Conf, ctx: pdk.Context) -> None:
    if conf.when is not None and not conf.when(ctx):
        return
    if conf.status is not None:
        ctx.status = conf.status
    hs = ctx.resp_headers or []
    if conf.body is not None:
        ctx.body_will_change()
        ctx.store[conf.key] = True
    elif conf.filters:
        enc = None
        for k, v in hs:
            if k.lower() == b"content-encoding":
                enc = v.decode("latin-1").strip().lower()
        ctx.body_will_change()
        ctx.store[conf.key] = _Held(enc)
    drop = conf.drop
    if drop:
        hs = [p for p in hs if p[0].lower() not in drop]
    if conf.adds:
        hs += _render(conf.adds, ctx)
    if conf.sets:
        hs += _render(conf.sets, ctx)
    ctx.resp_headers = hs


def body_filter(conf: Conf, ctx: pdk.Context, chunk: bytes, last: bool) -> bytes | None:
    st = ctx.store.get(conf.key)
    if st is None:                      # vars did not match
        return None
    if st is True:                      # body: sent once, whatever the upstream sends
        ctx.store[conf.key] = False
        return conf.body
    if st is False:
        return b""
    return _hold(conf, st, chunk, last)


def _hold(conf: Conf, held: _Held, chunk: bytes, last: bool) -> bytes:
    if held.encoding is not None and held.decoder is None:     # cannot decode: as APISIX
        if last:
            pdk.log.error("filters may not work as expected due to unsupported compression "
                          "encoding type: %s", held.encoding)
        return chunk
    if held.decoder is not None and chunk and not held.passing:
        try:
            chunk = held.decoder(chunk)
        except Exception as e:  # noqa: BLE001 - zlib.error, brotli.error
            pdk.log.error("filters may not work as expected: %s", e)
            held.decoder = None
            held.passing = True
            out = b"".join(held.chunks) + chunk     # what was decoded, then the rest as is
            held.chunks = []
            return out
    if held.passing:
        if held.decoder is not None and chunk:
            chunk = held.decoder(chunk)
        return chunk
    if chunk:
        held.chunks.append(chunk)
        held.size += len(chunk)
    if held.size > conf.limit:
        pdk.log.error("response-rewrite: response body over %d bytes, filters not applied",
                      conf.limit)
        held.passing = True
        out = b"".join(held.chunks)
        held.chunks = []
        return out
    if not last:
        return b""
    body = b"".join(held.chunks)
    held.chunks = []
    return _apply(conf.filters or (), body)


def _apply(filters: tuple[_Filter, ...], body: bytes) -> bytes:
    text: str | None = None
    utf8 = False
    for f in filters:
        if text is None or f.utf8 != utf8:
            raw = body if text is None else (text.encode("utf-8", "surrogateescape") if utf8
                                             else text.encode("latin-1"))
            if f.utf8:
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    pdk.log.error('regex "%s" substitutes failed:%s', f.source, e)
                    body, text = raw, None
                    continue
            else:
                text = raw.decode("latin-1")
            utf8 = f.utf8
        text = f.apply(text)
    if text is None:
        return body
    return text.encode("utf-8", "surrogateescape") if utf8 else text.encode("latin-1")
