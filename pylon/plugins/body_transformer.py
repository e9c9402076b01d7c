"""body-transformer: rewrite request and response bodies through templates (APISIX).

Route: ``request`` and/or ``response``, each {``template`` (required), ``input_format``
(xml, json, encoded, args, plain, multipart), ``template_is_base64``}; ``max_req_body_size``
and ``max_resp_body_size`` (64 MiB each).

As APISIX: the body is decoded by ``input_format`` — when it is not set, from the
Content-Type (``text/xml`` → xml, ``application/json`` → json, form-urlencoded → encoded,
``multipart/`` → multipart, else not decoded: the template gets no fields); a GET request
always uses ``args`` (the query).  The decoded fields are the template's variables, with
``_body`` (the raw body), ``_ctx.var.<name>`` (nginx variables: ``_ctx.var.arg_name``,
``_ctx.var.status``), ``_escape_json(v)``, ``_escape_xml(s)`` and ``context`` (all the
fields).  XML is parsed safely (defusedxml) into xml2lua's tree shape: an element is a table
of its children, a repeated element a list, a text-only element its text, attributes under
``_attr`` (the text then at ``[1]``), namespace prefixes removed, an empty element ``""``.
A template that is valid base64 is decoded first when ``template_is_base64`` is set or the
format is xml/json/plain/multipart (APISIX's ``decode_base64(text) or text``).  The request
body is read whole (over ``max_req_body_size``: 413), replaced, Content-Length fixed; a body
that does not decode: 400 ``{"message": "request body decode: ..."}``; a template that fails:
503 ``{"message": "request template rendering: ..."}``.  The response body is buffered
(``max_resp_body_size``, beyond it truncated as APISIX does), transformed when complete and
sent without Content-Length, Content-Encoding, ETag and Last-Modified; a response that
cannot be transformed is sent as it came (APISIX then sends only its last chunk).

Templates are lua-resty-template's syntax, translated once per configuration to a sandboxed
Jinja2 template.  Supported: ``{{ expr }}`` (HTML-escaped as lua-resty-template escapes:
``& < > " ' /``; when ``expr`` is a call returning two values — ``_escape_xml``,
``string.gsub`` — the second is ``escape``'s "code" flag, so ``{ }`` are escaped too and
``{{_escape_xml(x)}}`` escapes ``&`` twice, exactly as in APISIX: use
``{*_escape_xml(x)*}``), ``{* expr *}`` (raw), ``{# comment #}``, ``\\{{`` escapes, and in
``{% %}``: ``if … then`` / ``elseif … then`` / ``else`` / ``end``, ``for i = a, b[, s]
do``, ``for k, v in pairs(t) do``, ``for i, v in ipairs(t) do``, ``break``, ``local x = expr``.
Expressions are Lua's with Lua's semantics: ``..``, arithmetic with string coercion, ``==``,
``~=``, ``< <= > >=``, ``and``/``or`` returning operands (only nil and false are false),
``not``, ``#``, ``nil``/``true``/``false``, 1-based ``t[1]``, ``a.b``, ``a["b"]``, calls and
``s:method()`` string methods.  Functions: ``tostring``, ``tonumber``, ``type``, ``pairs``,
``ipairs``, ``string.*`` (len, sub, upper, lower, rep, reverse, format, byte, char, find,
match, gsub — Lua patterns except ``%b``, ``%f`` and position captures), ``table.concat``,
``math.*`` (floor, ceil, abs, max, min, sqrt, fmod, huge, pi), ``os.time``, ``os.date``,
``ngx.*`` (var, time, now, today, localtime, utctime, encode_base64, decode_base64,
escape_uri, unescape_uri, md5).  Refused when the configuration is checked (the error says
which): other Lua statements (assignments to globals, ``while``, ``repeat``, ``function``,
``return``, function calls as statements), table constructors, ``...``, ``require`` and the
other Lua/OpenResty globals not listed (``ngx.*`` beyond the list, ``cjson``, ``io``,
``load``...), ``_multipart`` and its methods, and includes/blocks (``{( )}``, ``{[ ]}``,
``{-block-}``).  A runtime error (indexing nil, calling a string) is the 503 above, with
Lua's wording (``attempt to call global 'name' (a string value)``).
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import functools
import hashlib
import json
import math
import re
import time
import xml.sax
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, unquote_to_bytes

import defusedxml.sax  # type: ignore[import-untyped]
from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from pylon import pdk

name = "body-transformer"
priority = 1080
version = 0.1

_TRANSFORM = {
    "type": "object",
    "properties": {
        "input_format": {"type": "string",
                         "enum": ["xml", "json", "encoded", "args", "plain", "multipart"]},
        "template": {"type": "string"},
        "template_is_base64": {"type": "boolean"},
    },
    "required": ["template"],
}

schema = {
    "type": "object",
    "properties": {
        "request": _TRANSFORM,
        "response": _TRANSFORM,
        "max_req_body_size": {"type": "integer", "minimum": 1, "default": 67108864},
        "max_resp_body_size": {"type": "integer", "minimum": 1, "default": 67108864},
    },
    "anyOf": [{"required": ["request"]}, {"required": ["response"]},
              {"required": ["request", "response"]}],
}


# =========================================================================== Lua values
class LuaError(Exception):
    """A Lua runtime error in a template (the request gets 503)."""


class _LuaFn:
    """A function a template may call (nothing else is callable from a template)."""

    __slots__ = ("fn", "multi", "name")

    def __init__(self, fn: Callable[..., Any], name: str, multi: bool = False) -> None:
        self.fn = fn
        self.name = name
        self.multi = multi          # fn returns a tuple: Lua's multiple results


class _Vars:
    """``_ctx.var`` / ``ngx.var``: nginx variables of the request."""

    __slots__ = ("ctx",)

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx


def _is_num(v: Any) -> bool:
    return (type(v) is int or type(v) is float)


def _type(v: Any) -> str:
    if v is None:
        return "nil"
    if v is True or v is False:
        return "boolean"
    if _is_num(v):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, _LuaFn):
        return "function"
    return "table"


def _truth(v: Any) -> bool:
    return v is not None and v is not False


def _numstr(v: float) -> str:
    return format(v, ".14g")


def _tostring(v: Any) -> str:
    if v is None:
        return "nil"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if _is_num(v):
        return _numstr(v)
    if isinstance(v, str):
        return v
    if isinstance(v, _LuaFn):
        return f"function: builtin: {v.name}"
    return f"table: 0x{id(v):012x}"


def _out(v: Any) -> str:
    """lua-resty-template's ``template.output``."""
    if v is None:
        return ""
    if isinstance(v, _LuaFn):
        return _out(_call(v, ""))
    return v if isinstance(v, str) else _tostring(v)


_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;", "/": "&#47;"}
_CODE = {**_HTML, "{": "&#123;", "}": "&#125;"}
_HTML_RE = re.compile(r"[\">/<'&]")
_CODE_RE = re.compile(r"[}{\">/<'&]")


def _esc(v: Any, c: Any = None) -> str:
    """lua-resty-template's ``template.escape(s, c)``."""
    if isinstance(v, str):
        if _truth(c):
            return _CODE_RE.sub(lambda m: _CODE[m.group()], v)
        return _HTML_RE.sub(lambda m: _HTML[m.group()], v)
    return _out(v)


def _escm(vals: tuple[Any, ...]) -> str:
    """``{{ f(x) }}``: every result of the call is an argument of ``escape``."""
    return _esc(vals[0] if vals else None, vals[1] if len(vals) > 1 else None)


class _Box:
    """A value whose Python truth is its Lua truth (only nil and false are false), so that
    Jinja's ``or``/``and`` give Lua's result without evaluating an operand twice."""

    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v

    def __bool__(self) -> bool:
        return self.v is not None and self.v is not False


def _L(v: Any) -> _Box:
    return v if isinstance(v, _Box) else _Box(v)


def _U(b: Any) -> Any:
    return b.v if isinstance(b, _Box) else b


def _desc(desc: str) -> str:
    return f"{desc} " if desc else ""


def _idx(o: Any, k: Any, desc: str = "") -> Any:
    if isinstance(o, dict):
        if type(k) is float and k.is_integer():
            k = int(k)
        return o.get(k)
    if isinstance(o, list):
        if _is_num(k) and k == int(k) and 1 <= k <= len(o):
            return o[int(k) - 1]
        return None
    if isinstance(o, _Vars):
        return o.ctx.var(k) if isinstance(k, str) else None
    if isinstance(o, str):
        return _STRING.get(k) if isinstance(k, str) else None
    raise LuaError(f"attempt to index {_desc(desc)}(a {_type(o)} value)")


def _callm(f: Any, desc: str, *args: Any) -> tuple[Any, ...]:
    if not isinstance(f, _LuaFn):
        raise LuaError(f"attempt to call {_desc(desc)}(a {_type(f)} value)")
    try:
        r = f.fn(*args)
    except LuaError:
        raise
    except (TypeError, ValueError, OverflowError, IndexError, KeyError) as e:
        raise LuaError(f"bad argument to '{f.name}': {e}") from None
    return r if f.multi else (r,)


def _call(f: Any, desc: str, *args: Any) -> Any:
    r = _callm(f, desc, *args)
    return r[0] if r else None


def _method(o: Any, m: str, desc: str) -> Any:
    if isinstance(o, str):
        return _STRING.get(m)
    if isinstance(o, (dict, list, _Vars)):
        return _idx(o, m)
    raise LuaError(f"attempt to index {_desc(desc)}(a {_type(o)} value)")


def _methm(o: Any, m: str, desc: str, *args: Any) -> tuple[Any, ...]:
    return _callm(_method(o, m, desc), f"method '{m}'", o, *args)


def _meth(o: Any, m: str, desc: str, *args: Any) -> Any:
    r = _methm(o, m, desc, *args)
    return r[0] if r else None


def _tonumber(v: Any, base: Any = None) -> Any:
    if base is not None:
        try:
            return int(str(v).strip(), int(base))
        except ValueError:
            return None
    if _is_num(v):
        return v
    if not isinstance(v, str):
        return None
    s = v.strip()
    try:
        if s[:2].lower() in ("0x", "-0x", "+0x") or s[:3].lower() in ("-0x", "+0x"):
            return int(s, 16)
        f = float(s)
    except ValueError:
        return None
    if s.lower() in ("inf", "-inf", "+inf", "nan", "infinity", "-infinity"):
        return None
    return int(f) if f.is_integer() and "." not in s and "e" not in s.lower() else f


def _arith_operand(v: Any) -> Any:
    if _is_num(v):
        return v
    if isinstance(v, str):
        n = _tonumber(v)
        if n is not None:
            return n
    raise LuaError(f"attempt to perform arithmetic on a {_type(v)} value")


def _add(a: Any, b: Any) -> Any:
    return _arith_operand(a) + _arith_operand(b)


def _sub(a: Any, b: Any) -> Any:
    return _arith_operand(a) - _arith_operand(b)


def _mul(a: Any, b: Any) -> Any:
    return _arith_operand(a) * _arith_operand(b)


def _div(a: Any, b: Any) -> Any:
    x, y = _arith_operand(a), _arith_operand(b)
    if y == 0:
        return math.nan if x == 0 else math.copysign(math.inf, x)
    return x / y


def _mod(a: Any, b: Any) -> Any:
    x, y = _arith_operand(a), _arith_operand(b)
    return math.nan if y == 0 else x - math.floor(x / y) * y


def _pow(a: Any, b: Any) -> Any:
    return float(_arith_operand(a)) ** _arith_operand(b)


def _neg(a: Any) -> Any:
    return -_arith_operand(a)


def _cat(a: Any, b: Any) -> str:
    for v in (a, b):
        if not (isinstance(v, str) or _is_num(v)):
            raise LuaError(f"attempt to concatenate a {_type(v)} value")
    return (a if isinstance(a, str) else _numstr(a)) + (b if isinstance(b, str) else _numstr(b))


def _eq(a: Any, b: Any) -> bool:
    if _is_num(a) and _is_num(b):
        return a == b
    if isinstance(a, (dict, list, _Vars, _LuaFn)) or isinstance(b, (dict, list, _Vars, _LuaFn)):
        return a is b
    return type(a) is type(b) and a == b


def _cmp(op: str, a: Any, b: Any) -> bool:
    if not ((_is_num(a) and _is_num(b)) or (isinstance(a, str) and isinstance(b, str))):
        raise LuaError(f"attempt to compare {_type(a)} with {_type(b)}")
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    return a >= b


def _border(d: dict[Any, Any]) -> int:
    n = 0
    while d.get(n + 1) is not None:
        n += 1
    return n


def _len(v: Any) -> int:
    if isinstance(v, str):
        return len(v.encode("utf-8", "surrogateescape"))
    if isinstance(v, list):
        return len(v)
    if isinstance(v, dict):
        return _border(v)
    raise LuaError(f"attempt to get length of a {_type(v)} value")


def _pairs(t: Any) -> list[tuple[Any, Any]]:
    if isinstance(t, dict):
        return [(k, v) for k, v in t.items() if v is not None]
    if isinstance(t, list):
        return [(i, v) for i, v in enumerate(t, 1) if v is not None]
    raise LuaError(f"bad argument #1 to 'pairs' (table expected, got {_type(t)})")


def _ipairs(t: Any) -> list[tuple[int, Any]]:
    out: list[tuple[int, Any]] = []
    if isinstance(t, list):
        for i, v in enumerate(t, 1):
            if v is None:
                break
            out.append((i, v))
        return out
    if isinstance(t, dict):
        i = 1
        while t.get(i) is not None:
            out.append((i, t[i]))
            i += 1
        return out
    raise LuaError(f"bad argument #1 to 'ipairs' (table expected, got {_type(t)})")


def _range(a: Any, b: Any, step: Any = 1) -> Iterator[Any]:
    for v, what in ((a, "initial value"), (b, "limit"), (step, "step")):
        if not _is_num(v):
            raise LuaError(f"'for' {what} must be a number")
    if step == 0:
        raise LuaError("'for' step is zero")
    i = a
    while (i <= b) if step > 0 else (i >= b):
        yield i
        i += step


# -- Lua patterns (string.find / match / gsub) ----------------------------------------------
_CLASSES = {"a": "A-Za-z", "d": "0-9", "l": "a-z", "s": "\\t\\n\\v\\f\\r ", "u": "A-Z",
            "w": "A-Za-z0-9", "x": "0-9A-Fa-f", "p": "!-/:-@\\[-`{-~", "c": "\\x00-\\x1f\\x7f",
            "g": "!-~"}


@functools.lru_cache(maxsize=256)
def _lua_pattern(p: str) -> re.Pattern[str]:
    out: list[str] = []
    i, n = 0, len(p)
    if p.startswith("^"):
        out.append(r"\A")
        i = 1
    while i < n:
        c = p[i]
        single = True
        if c == "%":
            if i + 1 >= n:
                raise LuaError("malformed pattern (ends with '%')")
            d = p[i + 1]
            i += 2
            if d.lower() in _CLASSES:
                cls = _CLASSES[d.lower()]
                out.append(f"[{cls}]" if d.islower() else f"[^{cls}]")
            elif d.isdigit():
                out.append(f"(?:\\{d})")
                single = False
            elif d in "bf":
                raise LuaError(f"pattern item '%{d}' is not supported")
            else:
                out.append(re.escape(d))
        elif c == "[":
            j = i + 1
            parts = ["["]
            if j < n and p[j] == "^":
                parts.append("^")
                j += 1
            first = True
            while True:
                if j >= n:
                    raise LuaError("malformed pattern (missing ']')")
                ch = p[j]
                if ch == "]" and not first:
                    break
                first = False
                if ch == "%" and j + 1 < n:
                    d = p[j + 1]
                    if d in _CLASSES:
                        parts.append(_CLASSES[d])
                    elif d.lower() in _CLASSES:
                        raise LuaError(f"'%{d}' inside a set is not supported")
                    else:
                        parts.append(re.escape(d))
                    j += 2
                elif j + 2 < n and p[j + 1] == "-" and p[j + 2] != "]":
                    parts.append(f"{re.escape(ch)}-{re.escape(p[j + 2])}")
                    j += 3
                else:
                    parts.append(re.escape(ch))
                    j += 1
            parts.append("]")
            out.append("".join(parts))
            i = j + 1
        elif c == ".":
            out.append(".")
            i += 1
        elif c == "$" and i == n - 1:
            out.append(r"\Z")
            i += 1
            single = False
        elif c == "(":
            if p[i + 1:i + 2] == ")":
                raise LuaError("position captures are not supported")
            out.append("(")
            i += 1
            single = False
        elif c == ")":
            out.append(")")
            i += 1
            single = False
        else:
            out.append(re.escape(c))
            i += 1
        if single and i < n and p[i] in "*+?-":
            out.append({"*": "*", "+": "+", "?": "?", "-": "*?"}[p[i]])
            i += 1
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error as e:
        raise LuaError(f"malformed pattern: {e}") from None


def _init(s: str, init: Any) -> int:
    i = 1 if init is None else int(init)
    if i < 0:
        i = max(len(s) + i + 1, 1)
    return max(i, 1) - 1


def _captures(m: re.Match[str]) -> tuple[Any, ...]:
    return m.groups() if m.re.groups else (m.group(),)


def _s_find(s: Any, p: Any, init: Any = None, plain: Any = None) -> tuple[Any, ...]:
    s, p = _strarg(s), _strarg(p)
    start = _init(s, init)
    if _truth(plain) or not re.search(r"[\^$*+?.()\[\]%-]", p):
        i = s.find(p, start)
        return (i + 1, i + len(p)) if i >= 0 else (None,)
    m = _lua_pattern(p).search(s, start)
    if m is None:
        return (None,)
    return (m.start() + 1, m.end(), *(m.groups()))


def _s_match(s: Any, p: Any, init: Any = None) -> tuple[Any, ...]:
    s, p = _strarg(s), _strarg(p)
    m = _lua_pattern(p).search(s, _init(s, init))
    return _captures(m) if m is not None else (None,)


def _s_gsub(s: Any, p: Any, repl: Any, limit: Any = None) -> tuple[Any, ...]:
    s, p = _strarg(s), _strarg(p)
    rx = _lua_pattern(p)
    if isinstance(repl, (str, int, float)) and not isinstance(repl, bool):
        text = repl if isinstance(repl, str) else _numstr(repl)

        def sub(m: re.Match[str]) -> str:
            out = []
            i = 0
            while i < len(text):
                ch = text[i]
                if ch == "%" and i + 1 < len(text):
                    d = text[i + 1]
                    if d == "0":
                        out.append(m.group())
                    elif d.isdigit():
                        caps = _captures(m)
                        k = int(d)
                        if k > len(caps):
                            raise LuaError("invalid capture index")
                        out.append(_out(caps[k - 1]))
                    elif d == "%":
                        out.append("%")
                    else:
                        raise LuaError("invalid use of '%' in replacement string")
                    i += 2
                else:
                    out.append(ch)
                    i += 1
            return "".join(out)
    elif isinstance(repl, (dict, list, _LuaFn)):
        def sub(m: re.Match[str]) -> str:
            key = _captures(m)[0]
            v = _idx(repl, key) if not isinstance(repl, _LuaFn) else \
                _call(repl, "", *_captures(m))
            if not _truth(v):
                return m.group()
            if isinstance(v, str) or _is_num(v):
                return _out(v)
            raise LuaError(f"invalid replacement value (a {_type(v)})")
    else:
        raise LuaError("bad argument #3 to 'gsub' (string/function/table expected)")
    count = 0 if limit is None else int(limit)
    if limit is not None and count <= 0:
        return (s, 0)
    res, n = rx.subn(sub, s, count=count)
    return (res, n)


def _strarg(v: Any) -> str:
    if isinstance(v, str):
        return v
    if _is_num(v):
        return _numstr(v)
    raise LuaError(f"bad argument (string expected, got {_type(v)})")


def _s_sub(s: Any, i: Any = 1, j: Any = -1) -> str:
    s = _strarg(s)
    n = len(s)
    i, j = int(i), int(j)
    if i < 0:
        i = max(n + i + 1, 1)
    elif i == 0:
        i = 1
    if j < 0:
        j = n + j + 1
    elif j > n:
        j = n
    return s[i - 1:j] if i <= j else ""


_UPPER = {c: c - 32 for c in range(97, 123)}
_LOWER = {c: c + 32 for c in range(65, 91)}


def _s_format(fmt: Any, *args: Any) -> str:
    fmt = _strarg(fmt)
    it = iter(args)

    def conv(m: re.Match[str]) -> str:
        spec = m.group()
        kind = spec[-1]
        if kind == "%":
            return "%"
        try:
            v = next(it)
        except StopIteration:
            raise LuaError("bad argument to 'format' (no value)") from None
        if kind == "q":
            s = _strarg(v)
            return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\\n") \
                .replace("\r", "\\r").replace("\0", "\\000") + '"'
        if kind == "s":
            return (spec[:-1] + "s") % _tostring(v)
        if kind in "dic":
            n = _arith_operand(v)
            if kind == "c":
                return chr(int(n))
            return (spec[:-1] + "d") % int(n)
        if kind in "xXo":
            return spec % int(_arith_operand(v))
        return spec % float(_arith_operand(v))
    return re.sub(r"%[-+ #0]*\d*(?:\.\d+)?[diouxXeEfgGcqs%]", conv, fmt)


def _fn(fn: Callable[..., Any], fname: str, multi: bool = False) -> _LuaFn:
    return _LuaFn(fn, fname, multi)


_STRING: dict[str, Any] = {
    "len": _fn(lambda s: _len(_strarg(s)), "len"),
    "sub": _fn(_s_sub, "sub"),
    "upper": _fn(lambda s: _strarg(s).translate(_UPPER), "upper"),
    "lower": _fn(lambda s: _strarg(s).translate(_LOWER), "lower"),
    "rep": _fn(lambda s, n, sep="": _strarg(sep).join([_strarg(s)] * max(int(n), 0)), "rep"),
    "reverse": _fn(lambda s: _strarg(s)[::-1], "reverse"),
    "format": _fn(_s_format, "format"),
    "byte": _fn(lambda s, i=1, j=None: tuple(
        ord(c) for c in _s_sub(s, i, i if j is None else j)), "byte", True),
    "char": _fn(lambda *cs: "".join(chr(int(c)) for c in cs), "char"),
    "find": _fn(_s_find, "find", True),
    "match": _fn(_s_match, "match", True),
    "gsub": _fn(_s_gsub, "gsub", True),
}


def _concat(t: Any, sep: Any = "", i: Any = 1, j: Any = None) -> str:
    items = [v for _, v in _ipairs(t)]
    j = len(items) if j is None else int(j)
    parts = items[int(i) - 1:j]
    for v in parts:
        if not (isinstance(v, str) or _is_num(v)):
            raise LuaError(f"invalid value (a {_type(v)}) in table for 'concat'")
    return _strarg(sep).join(_out(v) for v in parts)


def _floor(v: Any) -> Any:
    return math.floor(_arith_operand(v))


def _ceil(v: Any) -> Any:
    return math.ceil(_arith_operand(v))


def _os_date(fmt: Any = "%c", t: Any = None) -> Any:
    fmt = _strarg(fmt)
    when = time.time() if t is None else float(_arith_operand(t))
    utc = fmt.startswith("!")
    if utc:
        fmt = fmt[1:]
    if fmt.startswith("*t"):
        raise LuaError("os.date('*t') is not supported")
    return time.strftime(fmt, time.gmtime(when) if utc else time.localtime(when))


def _ngx_b64(s: Any) -> bytes | None:
    """``ngx.decode_base64``: stops at the first ``=``, refuses any other non-alphabet
    byte and a length of 4n+1."""
    s = _strarg(s) if not isinstance(s, bytes) else s.decode("latin-1")
    n = s.find("=")
    core = s if n < 0 else s[:n]
    if len(core) % 4 == 1 or re.search(r"[^A-Za-z0-9+/]", core):
        return None
    try:
        return base64.b64decode(core + "=" * (-len(core) % 4))
    except ValueError:
        return None


def _bytes_str(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _str_bytes(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def _ngx_decode_base64(s: Any) -> Any:
    b = _ngx_b64(s)
    return None if b is None else _bytes_str(b)


_MATH: dict[str, Any] = {
    "floor": _fn(_floor, "floor"), "ceil": _fn(_ceil, "ceil"),
    "abs": _fn(lambda v: abs(_arith_operand(v)), "abs"),
    "max": _fn(lambda *v: max(_arith_operand(x) for x in v), "max"),
    "min": _fn(lambda *v: min(_arith_operand(x) for x in v), "min"),
    "sqrt": _fn(lambda v: math.sqrt(_arith_operand(v)), "sqrt"),
    "fmod": _fn(lambda a, b: math.fmod(_arith_operand(a), _arith_operand(b)), "fmod"),
    "huge": math.inf, "pi": math.pi,
}

_NGX: dict[str, Any] = {
    "time": _fn(lambda: int(time.time()), "time"),
    "now": _fn(lambda: round(time.time(), 3), "now"),
    "today": _fn(lambda: time.strftime("%Y-%m-%d"), "today"),
    "localtime": _fn(lambda: time.strftime("%Y-%m-%d %H:%M:%S"), "localtime"),
    "utctime": _fn(lambda: time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "utctime"),
    "encode_base64": _fn(lambda s: base64.b64encode(_str_bytes(_strarg(s))).decode("ascii"),
                         "encode_base64"),
    "decode_base64": _fn(_ngx_decode_base64, "decode_base64"),
    "escape_uri": _fn(lambda s: quote(_str_bytes(_strarg(s)), safe="-._~"), "escape_uri"),
    "unescape_uri": _fn(lambda s: _bytes_str(unquote_to_bytes(_strarg(s).replace("+", " "))),
                        "unescape_uri"),
    "md5": _fn(lambda s: hashlib.md5(_str_bytes(_strarg(s))).hexdigest(), "md5"),
}

_BUILTINS: dict[str, Any] = {
    "tostring": _fn(_tostring, "tostring"),
    "tonumber": _fn(_tonumber, "tonumber"),
    "type": _fn(_type, "type"),
    "pairs": _fn(_pairs, "pairs"),
    "ipairs": _fn(_ipairs, "ipairs"),
    "string": _STRING,
    "table": {"concat": _fn(_concat, "concat")},
    "math": _MATH,
    "os": {"time": _fn(lambda: int(time.time()), "time"), "date": _fn(_os_date, "date")},
}

#: globals of Lua/OpenResty/lua-resty-template a template cannot use here (config refused)
_REFUSED = frozenset((
    "require", "load", "loadstring", "loadfile", "dofile", "pcall", "xpcall", "error",
    "assert", "print", "select", "unpack", "next", "rawget", "rawset", "rawequal",
    "setmetatable", "getmetatable", "setfenv", "getfenv", "collectgarbage", "module",
    "coroutine", "debug", "io", "package", "jit", "bit", "ffi", "cjson", "_G", "_ENV",
    "template", "include", "echo", "blocks", "layout", "_multipart", "core"))
_NGX_OK = frozenset((*_NGX, "var"))


def _escape_xml(s: Any) -> tuple[Any, ...]:
    if not isinstance(s, str):
        raise LuaError(f"attempt to index local 's' (a {_type(s)} value)")
    n = 0

    def rep(m: re.Match[str]) -> str:
        nonlocal n
        n += 1
        return _XML_ENT[m.group()]
    out = _XML_RE.sub(rep, s)
    return (out, n)


_XML_ENT = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "'": "&apos;", '"': "&quot;"}
_XML_RE = re.compile(r"[&<>'\"]")


def _to_json(v: Any) -> Any:
    if isinstance(v, dict):
        if not v:
            return {}
        return {_tostring(k) if not isinstance(k, str) else k: _to_json(x)
                for k, x in v.items()}
    if isinstance(v, list):
        return [_to_json(x) for x in v] if v else {}
    if isinstance(v, _Vars):
        return {}
    if isinstance(v, _LuaFn):
        raise LuaError("Cannot serialise function: type not supported")
    if type(v) is float and v.is_integer() and abs(v) < 1e15:
        return int(v)
    return v


def _escape_json(v: Any) -> str:
    return json.dumps(_to_json(v), ensure_ascii=False, separators=(",", ":"))


_HELPER_FNS = {"_escape_xml": _fn(_escape_xml, "_escape_xml", True),
               "_escape_json": _fn(_escape_json, "_escape_json")}


class _Env:
    """Where a template's free names are looked up: the helpers, then the decoded body,
    then Lua's globals (lua-resty-template's view environment)."""

    __slots__ = ("body", "ctx", "data", "helpers", "ngx")

    def __init__(self, data: Any, body: str | None, ctx: Any) -> None:
        self.data = data if isinstance(data, dict) else None
        self.body = body
        self.ctx = ctx
        self.ngx: dict[str, Any] | None = None

    def lookup(self, key: str) -> Any:
        if key == "_ctx":
            return {"var": _Vars(self.ctx)}
        if key == "_body":
            return self.body
        h = _HELPER_FNS.get(key)
        if h is not None:
            return h
        if self.data is not None:
            v = self.data.get(key)
            if v is not None:
                return v
        if key == "ngx":
            if self.ngx is None:
                self.ngx = {**_NGX, "var": _Vars(self.ctx)}
            return self.ngx
        return _BUILTINS.get(key)


def _n(env: _Env, key: str) -> Any:
    return env.lookup(key)


_JINJA = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True,
                              undefined=StrictUndefined, cache_size=0,
                              extensions=["jinja2.ext.loopcontrols"])
_JINJA.globals.clear()
_JINJA.filters.clear()
_JINJA.tests.clear()
_JINJA.globals.update({
    "_n": _n, "_idx": _idx, "_call": _call, "_callm": _callm, "_meth": _meth,
    "_methm": _methm, "_out": _out, "_esc": _esc, "_escm": _escm, "_truth": _truth,
    "_cat": _cat, "_add": _add, "_sub": _sub, "_mul": _mul, "_div": _div, "_mod": _mod,
    "_pow": _pow, "_neg": _neg, "_eq": _eq, "_cmp": _cmp, "_len": _len, "_pairs": _pairs,
    "_ipairs": _ipairs, "_range": _range, "_L": _L, "_U": _U,
})


# =========================================================================== translator
class TemplateError(ValueError):
    """A template that cannot be translated (the configuration is refused)."""


_KEYWORDS = frozenset((
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
    "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while"))
_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<comment>--(?:\[(?P<ceq>=*)\[[\s\S]*?\](?P=ceq)\]|[^\n]*))
  | (?P<long>\[(?P<leq>=*)\[(?P<lbody>[\s\S]*?)\](?P=leq)\])
  | (?P<num>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<str>"(?:[^"\\\n]|\\[\s\S])*"|'(?:[^'\\\n]|\\[\s\S])*')
  | (?P<op>\.\.\.|\.\.|==|~=|<=|>=|[-+*/%^\#<>=(){}\[\];:,.])
""", re.VERBOSE)
_STR_ESC = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
            "\\": "\\", '"': '"', "'": "'", "\n": "\n"}


def _unescape(body: str) -> str:
    out = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        d = body[i + 1]
        if d in _STR_ESC:
            out.append(_STR_ESC[d])
            i += 2
        elif d.isdigit():
            m = re.match(r"\d{1,3}", body[i + 1:])
            assert m is not None
            out.append(chr(int(m.group())))
            i += 1 + len(m.group())
        elif d == "x" and re.match(r"[0-9a-fA-F]{2}", body[i + 2:i + 4]):
            out.append(chr(int(body[i + 2:i + 4], 16)))
            i += 4
        else:
            raise TemplateError(f"invalid escape sequence '\\{d}'")
    return "".join(out)


def _tokenize(code: str) -> list[tuple[str, Any]]:
    toks: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(code):
        m = _TOKEN.match(code, pos)
        if m is None:
            raise TemplateError(f"unexpected symbol near '{code[pos:pos + 10]}'")
        pos = m.end()
        kind = m.lastgroup
        if m.group("ws") is not None or m.group("comment") is not None:
            continue
        if m.group("long") is not None:
            body = m.group("lbody")
            toks.append(("str", body.removeprefix("\n")))
        elif m.group("num") is not None:
            t = m.group("num")
            toks.append(("num", int(t, 16) if t[:2].lower() == "0x" else
                         (int(t) if t.isdigit() else float(t))))
        elif m.group("name") is not None:
            t = m.group("name")
            toks.append(("kw" if t in _KEYWORDS else "name", t))
        elif m.group("str") is not None:
            toks.append(("str", _unescape(m.group("str")[1:-1])))
        else:
            assert kind is not None
            toks.append(("op", m.group("op")))
    toks.append(("eof", None))
    return toks


def _jstr(s: str) -> str:
    """A Jinja string literal for any text: ASCII only, quotes and the characters of Jinja's
    delimiters as ``\\xNN`` escapes (Jinja decodes them)."""
    esc = s.encode("unicode_escape").decode("ascii")
    return '"' + _JSTR_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", esc) + '"'


_JSTR_RE = re.compile(r"[\"'{}%#]")


# expression nodes: ("v", src, desc, is_bool) | ("and"|"or", a, b) | ("not", a)
_BINARY = {"or": (1, 1), "and": (2, 2), "<": (3, 3), ">": (3, 3), "<=": (3, 3), ">=": (3, 3),
           "~=": (3, 3), "==": (3, 3), "..": (5, 4), "+": (6, 6), "-": (6, 6), "*": (7, 7),
           "/": (7, 7), "%": (7, 7), "^": (10, 9)}
_UNARY = 8
_ARITH = {"+": "_add", "-": "_sub", "*": "_mul", "/": "_div", "%": "_mod", "^": "_pow",
          "..": "_cat"}


def _val(node: tuple[Any, ...]) -> str:
    kind = node[0]
    if kind == "v":
        return node[1]
    if kind in ("and", "or"):         # Lua's value of a and/or b, each operand evaluated once
        return f"_U(_L({_val(node[1])}) {kind} _L({_val(node[2])}))"
    return f"(not {_cond(node[1])})"


def _cond(node: tuple[Any, ...]) -> str:
    kind = node[0]
    if kind == "v":
        return node[1] if node[3] else f"_truth({node[1]})"
    if kind == "and":
        return f"({_cond(node[1])} and {_cond(node[2])})"
    if kind == "or":
        return f"({_cond(node[1])} or {_cond(node[2])})"
    return f"(not {_cond(node[1])})"


def _v(src: str, desc: str = "", is_bool: bool = False) -> tuple[Any, ...]:
    return ("v", src, desc, is_bool)


class _Translator:
    """lua-resty-template source → Jinja source (see the module docstring for the subset)."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.texts: list[str] = []
        self.blocks: list[str] = []             # "if" / "for"
        self.scopes: list[set[str]] = [set()]
        self.toks: list[tuple[str, Any]] = []
        self.pos = 0

    # -- tokens --------------------------------------------------------------------------
    def peek(self) -> tuple[str, Any]:
        return self.toks[self.pos]

    def next(self) -> tuple[str, Any]:
        t = self.toks[self.pos]
        self.pos += 1
        return t

    def check(self, kind: str, value: Any = None) -> bool:
        t = self.toks[self.pos]
        return t[0] == kind and (value is None or t[1] == value)

    def accept(self, kind: str, value: Any = None) -> bool:
        if self.check(kind, value):
            self.pos += 1
            return True
        return False

    def expect(self, kind: str, value: Any = None) -> Any:
        if not self.check(kind, value):
            raise TemplateError(f"'{value or kind}' expected near {self.near()}")
        return self.next()[1]

    def near(self) -> str:
        t = self.peek()
        return "<eof>" if t[0] == "eof" else f"'{t[1]}'"

    def load(self, code: str) -> None:
        self.toks = _tokenize(code)
        self.pos = 0

    # -- names ---------------------------------------------------------------------------
    def is_local(self, n: str) -> bool:
        return any(n in s for s in self.scopes)

    def name_ref(self, n: str) -> tuple[Any, ...]:
        if self.is_local(n):
            return _v(f"l_{n}", f"local '{n}'")
        if n == "context":
            return _v("_root", "global 'context'")
        return _v(f"_n(_e, {_jstr(n)})", f"global '{n}'")

    # -- expressions ---------------------------------------------------------------------
    def expr(self, limit: int = 0) -> tuple[Any, ...]:
        t = self.peek()
        if (t[0] == "kw" and t[1] == "not") or (t[0] == "op" and t[1] in ("-", "#")):
            self.next()
            operand = self.expr(_UNARY)
            if t[1] == "not":
                left: tuple[Any, ...] = ("not", operand)
            elif t[1] == "-":
                left = _v(f"_neg({_val(operand)})")
            else:
                left = _v(f"_len({_val(operand)})")
        else:
            left = self.simple()
        while True:
            t = self.peek()
            op = t[1] if t[0] in ("op", "kw") else None
            if op not in _BINARY or _BINARY[op][0] <= limit:
                return left
            self.next()
            right = self.expr(_BINARY[op][1])
            left = self.binary(op, left, right)

    def binary(self, op: str, a: tuple[Any, ...], b: tuple[Any, ...]) -> tuple[Any, ...]:
        if op in ("and", "or"):
            return (op, a, b)
        if op in _ARITH:
            return _v(f"{_ARITH[op]}({_val(a)}, {_val(b)})")
        if op == "==":
            return _v(f"_eq({_val(a)}, {_val(b)})", is_bool=True)
        if op == "~=":
            return _v(f"(not _eq({_val(a)}, {_val(b)}))", is_bool=True)
        return _v(f"_cmp({_jstr(op)}, {_val(a)}, {_val(b)})", is_bool=True)

    def simple(self) -> tuple[Any, ...]:
        kind, value = self.peek()
        if kind == "num":
            self.next()
            if isinstance(value, float) and not math.isfinite(value):
                return _v("_div(1, 0)")
            return _v(repr(value))
        if kind == "str":
            self.next()
            return _v(_jstr(value))
        if kind == "kw" and value in ("nil", "true", "false"):
            self.next()
            return _v({"nil": "none", "true": "true", "false": "false"}[value])
        if kind == "op" and value == "{":
            raise TemplateError("table constructors are not supported")
        if kind == "op" and value == "...":
            raise TemplateError("'...' is not supported")
        if kind == "kw" and value == "function":
            raise TemplateError("function definitions are not supported")
        return self.suffixed()

    def primary(self) -> tuple[Any, ...]:
        kind, value = self.peek()
        if kind == "name":
            self.next()
            return self.name_ref(value)
        if self.accept("op", "("):
            e = self.expr()
            self.expect("op", ")")
            return _v(_val(e))              # (f()) keeps one value only
        raise TemplateError(f"unexpected symbol near {self.near()}")

    def suffixed(self, multi: bool = False) -> tuple[Any, ...]:
        """A primary expression with its ``.x``, ``[e]``, ``(args)`` and ``:m(args)``.
        ``multi``: a call in last place yields all its results (``{{ f() }}``), as the
        node ``("m", src)``."""
        t = self.peek()
        e = self.primary()
        if t[0] == "name" and t[1] in _REFUSED and not self.is_local(t[1]) and \
                (self.check("op") and self.peek()[1] in (".", "[", "(", ":") or self.check("str")):
            raise TemplateError(f"'{t[1]}' is not available in Pylon's body-transformer "
                                "templates")
        while True:
            if self.accept("op", "."):
                key = self.next()[1] if self.check("kw") else self.expect("name")
                e = self.index(e, _jstr(key), key)
            elif self.accept("op", "["):
                start = self.pos
                k = self.expr()
                t = self.toks[start]
                key = t[1] if self.pos == start + 1 and t[0] == "str" else None
                self.expect("op", "]")
                e = self.index(e, _val(k), key)
            elif self.check("op", "(") or self.check("str"):
                args = self.args()
                if multi and self.check("eof"):
                    return ("m", f"_callm({_val(e)}, {_jstr(e[2])}{args})")
                e = _v(f"_call({_val(e)}, {_jstr(e[2])}{args})")
            elif self.accept("op", ":"):
                m = self.expect("name")
                args = self.args()
                if multi and self.check("eof"):
                    return ("m", f"_methm({_val(e)}, {_jstr(m)}, {_jstr(e[2])}{args})")
                e = _v(f"_meth({_val(e)}, {_jstr(m)}, {_jstr(e[2])}{args})")
            else:
                return e

    def index(self, e: tuple[Any, ...], key_src: str, key: str | None) -> tuple[Any, ...]:
        if key == "_multipart":
            raise TemplateError("_multipart is not supported")
        if e[1] == "_n(_e, \"ngx\")" and key is not None and key not in _NGX_OK:
            raise TemplateError(f"'ngx.{key}' is not available in Pylon's body-transformer "
                                "templates")
        return _v(f"_idx({_val(e)}, {key_src}, {_jstr(e[2])})",
                  f"field '{key}'" if key is not None else "field '?'")

    def args(self) -> str:
        if self.check("str"):
            return ", " + _jstr(self.next()[1])
        self.expect("op", "(")
        parts: list[str] = []
        if not self.accept("op", ")"):
            while True:
                parts.append(_val(self.expr()))
                if self.accept("op", ")"):
                    break
                self.expect("op", ",")
        return "".join(", " + p for p in parts)

    def whole_expr(self, code: str, output: str) -> str:
        """``{{ }}`` / ``{* *}`` content → a Jinja output tag."""
        self.load(code)
        if not code.strip():
            raise TemplateError("unexpected symbol near <eof>")
        start = self.pos
        # a call in last place passes all its results to escape(): {{ _escape_xml(x) }}
        if output == "_esc":
            try:
                e = self.suffixed(multi=True)
                if e[0] == "m" and self.check("eof"):
                    return "{{ _escm(" + e[1] + ") }}"
            except TemplateError:
                pass
            self.pos = start
        e = self.expr()
        if not self.check("eof"):
            raise TemplateError(f"unexpected symbol near {self.near()}")
        return "{{ " + output + "(" + _val(e) + ") }}"

    # -- statements ----------------------------------------------------------------------
    def code(self, code: str) -> str:
        self.load(code)
        out: list[str] = []
        while not self.check("eof"):
            if self.accept("op", ";"):
                continue
            out.append(self.statement())
        return "".join(out)

    def statement(self) -> str:
        kind, value = self.next()
        if kind == "kw" and value == "if":
            c = _cond(self.expr())
            self.expect("kw", "then")
            self.blocks.append("if")
            self.scopes.append(set())
            return "{% if " + c + " %}"
        if kind == "kw" and value in ("elseif", "else"):
            if not self.blocks or self.blocks[-1] != "if":
                raise TemplateError(f"'{value}' without 'if'")
            self.scopes[-1] = set()
            if value == "else":
                return "{% else %}"
            c = _cond(self.expr())
            self.expect("kw", "then")
            return "{% elif " + c + " %}"
        if kind == "kw" and value == "end":
            if not self.blocks:
                raise TemplateError("'end' without a block")
            self.scopes.pop()
            return "{% end" + self.blocks.pop() + " %}"
        if kind == "kw" and value == "for":
            return self.for_stmt()
        if kind == "kw" and value == "local":
            if self.check("kw", "function"):
                raise TemplateError("function definitions are not supported")
            n = self.expect("name")
            if self.check("op", ","):
                raise TemplateError("'local' with several names is not supported")
            src = _val(self.expr()) if self.accept("op", "=") else "none"
            self.scopes[-1].add(n)
            return "{% set l_" + n + " = " + src + " %}"
        if kind == "kw" and value == "break":
            if "for" not in self.blocks:
                raise TemplateError("'break' outside a loop")
            return "{% break %}"
        shown = value if value is not None else "<eof>"
        raise TemplateError(f"unsupported Lua statement near '{shown}' (supported: if/elseif/"
                            "else/end, for, local, break)")

    def for_stmt(self) -> str:
        first = self.expect("name")
        if self.accept("op", "="):
            a = _val(self.expr())
            self.expect("op", ",")
            b = _val(self.expr())
            step = ", " + _val(self.expr()) if self.accept("op", ",") else ""
            self.expect("kw", "do")
            self.blocks.append("for")
            self.scopes.append({first})
            return "{% for l_" + first + " in _range(" + a + ", " + b + step + ") %}"
        names = [first]
        while self.accept("op", ","):
            names.append(self.expect("name"))
        if len(names) > 2:
            raise TemplateError("'for' with more than two names is not supported")
        self.expect("kw", "in")
        fn = self.expect("name")
        if fn not in ("pairs", "ipairs") or self.is_local(fn):
            raise TemplateError("only 'for ... in pairs(t)' and 'ipairs(t)' loops are "
                                "supported")
        self.expect("op", "(")
        t = _val(self.expr())
        self.expect("op", ")")
        self.expect("kw", "do")
        self.blocks.append("for")
        self.scopes.append(set(names))
        targets = ", ".join(f"l_{n}" for n in names) if len(names) == 2 else \
            f"l_{names[0]}, _unused"
        return "{% for " + targets + " in _" + fn + "(" + t + ") %}"

    # -- the template text (lua-resty-template 2.0's parse) -------------------------------
    def text(self, s: str) -> None:
        if not s:
            return
        if "{{" in s or "{%" in s or "{#" in s or "\r" in s or s.endswith("{"):
            self.texts.append(s)
            self.out.append("{{ _t[" + str(len(self.texts) - 1) + "] }}")
        else:
            self.out.append(s)

    def translate(self, view: str) -> str:
        i = 0
        s = view.find("{")
        while s != -1:
            t = view[s + 1:s + 2]
            p = s + 2
            nxt = s + 1
            if t in ("{", "*", "#"):
                e = view.find({"{": "}}", "*": "*}", "#": "#}"}[t], p)
                if e != -1:
                    z, w = _escaped(view, s)
                    if i < s - w:
                        self.text(view[i:s - w])
                    if z:
                        i = s
                    elif t == "#":
                        end = e + 2
                        if view[end:end + 1] == "\n":
                            end += 1
                        i = nxt = end
                    else:
                        self.out.append(self.whole_expr(view[p:e].strip(),
                                                        "_esc" if t == "{" else "_out"))
                        i = nxt = e + 2
            elif t == "%":
                e = view.find("%}", p)
                if e != -1:
                    z, w = _escaped(view, s)
                    if z:
                        if i < s - w:
                            self.text(view[i:s - w])
                        i = s
                    else:
                        n = e + 2
                        if view[n:n + 1] == "\n":
                            n += 1
                        r = s - 1
                        while r >= 0 and view[r] in " \t\v\0":
                            r -= 1
                        if i <= r:
                            self.text(view[i:r + 1])
                        self.out.append(self.code(view[p:e].strip()))
                        i = nxt = n
            elif t in ("(", "["):
                if view.find(t.translate({40: ")", 91: "]"}) + "}", p) != -1:
                    raise TemplateError("template includes ({(...)} and {[...]}) are not "
                                        "supported")
            elif t == "-":
                e = view.find("-}", p)
                if e != -1 and view.find(view[s:e + 2], e + 2) != -1:
                    raise TemplateError("template blocks ({-name-}) are not supported")
            s = view.find("{", nxt)
        self.text(view[i:])
        if self.blocks:
            raise TemplateError(f"'end' expected (to close '{self.blocks[-1]}')")
        return "".join(self.out)


def _escaped(view: str, s: int) -> tuple[bool, int]:
    if s > 0 and view[s - 1] == "\\":
        if s > 1 and view[s - 2] == "\\":
            return False, 1
        return True, 1
    return False, 0


class Compiled:
    """A translated template, rendered per request."""

    __slots__ = ("source", "template", "texts")

    def __init__(self, view: str) -> None:
        tr = _Translator()
        self.source = tr.translate(view)
        self.texts = tuple(tr.texts)
        try:
            self.template = _JINJA.from_string(self.source)
        except Exception as e:  # noqa: BLE001 - a translation the engine refuses
            raise TemplateError(f"cannot compile the translated template: {e}") from None

    def render(self, data: Any, body: str | None, ctx: Any) -> str:
        return self.template.render(_e=_Env(data, body, ctx), _root=data, _t=self.texts)


def compile_lua_template(view: str) -> Compiled:
    """lua-resty-template text → a ``Compiled`` (TemplateError when it cannot be mapped)."""
    return Compiled(view)


# =========================================================================== decoders
class _Tree(xml.sax.handler.ContentHandler):
    """xml2lua's tree handler: the same table shape from SAX events."""

    def __init__(self) -> None:
        super().__init__()
        self.root: dict[Any, Any] = {}
        self.stack: list[dict[Any, Any]] = [self.root]
        self.buf: list[str] = []

    def _flush(self) -> None:
        if self.buf:
            t = "".join(self.buf).strip(" \t\n\v\f\r")
            self.buf = []
            if t:
                node = self.stack[-1]
                node[_border(node) + 1] = t

    def startElement(self, tag: str, attrs: Any) -> None:
        self._flush()
        node: dict[Any, Any] = {}
        if attrs.getLength():
            node["_attr"] = dict(attrs.items())
        cur = self.stack[-1]
        have = cur.get(tag)
        if have is None:
            cur[tag] = [node]
        elif isinstance(have, list):
            have.append(node)
        else:               # xml2lua: table.insert on the "" of an empty element fails
            raise ValueError(f"element {tag} repeated after an empty one")
        self.stack.append(node)

    def endElement(self, tag: str) -> None:
        self._flush()
        node = self.stack.pop()
        if not node:
            self.stack[-1][tag] = ""

    def characters(self, content: str) -> None:
        self.buf.append(content)


def _reduce(node: Any) -> Any:
    if isinstance(node, list):
        for i, v in enumerate(node):
            if isinstance(v, (dict, list)):
                node[i] = _reduce(v)
        return node[0] if len(node) == 1 else node
    for k, v in list(node.items()):
        if k != "_attr" and isinstance(v, (dict, list)):
            node[k] = _reduce(v)
    if "_attr" not in node and node.get(1) is not None and node.get(2) is None:
        return node[1]
    return node


def _remove_namespace(t: Any) -> Any:
    """APISIX's remove_namespace: ``ns:key`` → ``key``, an empty table → ``""``."""
    if isinstance(t, list):
        return [_remove_namespace(v) if isinstance(v, (dict, list)) and v else
                ("" if isinstance(v, (dict, list)) else v) for v in t]
    out: dict[Any, Any] = {}
    for k, v in t.items():
        if isinstance(v, (dict, list)):
            v = _remove_namespace(v) if v else ""
        if isinstance(k, str) and ":" in k:
            k = k.rsplit(":", 1)[1]
        out[k] = v
    return out


def _decode_xml(body: bytes, ct: str | None) -> Any:
    h = _Tree()
    try:
        defusedxml.sax.parseString(body, h)
    except Exception as e:  # noqa: BLE001 - SAX and defusedxml errors alike
        raise ValueError(f"Error Parsing XML: {e}") from None
    root = h.root
    for k, v in list(root.items()):
        if isinstance(v, (dict, list)):
            root[k] = _reduce(v)
    return _remove_namespace(root)


def _decode_json(body: bytes, ct: str | None) -> Any:
    try:
        return json.loads(_bytes_str(body))
    except ValueError as e:
        raise ValueError(pdk.json_error(e)) from None


def _utf8_args(v: Any) -> Any:
    if isinstance(v, str):
        return _bytes_str(v.encode("latin-1"))
    if isinstance(v, list):
        return [_utf8_args(x) for x in v]
    return v


def _decode_encoded(body: bytes, ct: str | None) -> Any:
    return {_utf8_args(k): _utf8_args(v)
            for k, v in pdk.decode_args(body.decode("latin-1")).items()}


def _decode_multipart(body: bytes, ct: str | None) -> Any:
    if not ct or "boundary=" not in ct.lower():
        raise ValueError("multipart content type without a boundary")
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + ct.encode("latin-1") + b"\r\n\r\n" + body)
    if not msg.is_multipart():
        raise ValueError("not a multipart body")
    pairs = []
    for part in msg.iter_parts():
        field = part.get_param("name", header="content-disposition")
        if field is None:
            continue
        payload = part.get_payload(decode=True)
        pairs.append((str(field), _bytes_str(payload if isinstance(payload, bytes) else b"")))
    return pdk.multi_dict(pairs)


_DECODERS: dict[str, Callable[[bytes, str | None], Any]] = {
    "xml": _decode_xml, "json": _decode_json, "encoded": _decode_encoded,
    "multipart": _decode_multipart,
}


def _detect(ct: str | None) -> str | None:
    if not ct:
        return None
    if "text/xml" in ct:
        return "xml"
    if "application/json" in ct:
        return "json"
    low = ct.lower()
    if "application/x-www-form-urlencoded" in low:
        return "encoded"
    if "multipart/" in low:
        return "multipart"
    return None


# =========================================================================== the plugin
class _Side:
    """One direction's configuration, its template translated both ways APISIX may read it
    (as written, and base64-decoded)."""

    __slots__ = ("b64", "fmt", "plain", "typ")

    def __init__(self, typ: str, conf: dict[str, Any]) -> None:
        self.typ = typ
        self.fmt: str | None = conf.get("input_format")
        text: str = conf["template"]
        self.plain = self.b64 = _compile_side(typ, text)
        decoded = _ngx_b64(text)
        if decoded is not None:
            dtext = _bytes_str(decoded)
            if dtext != text:
                self.b64 = _compile_side(typ, dtext)
        if conf.get("template_is_base64"):
            self.plain = self.b64

    def template(self, fmt: str | None) -> Compiled:
        return self.b64 if fmt is not None and fmt not in ("encoded", "args") else self.plain


def _compile_side(typ: str, text: str) -> Compiled:
    try:
        return compile_lua_template(text)
    except TemplateError as e:
        raise ValueError(f"{typ} template: {e}") from None


def check(conf: dict[str, Any], schema_type: str) -> None:
    for typ in ("request", "response"):
        if conf.get(typ):
            _Side(typ, conf[typ])


class _Conf:
    __slots__ = ("max_req", "max_resp", "request", "response")

    def __init__(self, conf: dict[str, Any]) -> None:
        self.request = _Side("request", conf["request"]) if conf.get("request") else None
        self.response = _Side("response", conf["response"]) if conf.get("response") else None
        self.max_req: int = conf["max_req_body_size"]
        self.max_resp: int = conf["max_resp_body_size"]


def prepare(conf: dict[str, Any]) -> _Conf:
    return _Conf(conf)


def phases(conf: _Conf) -> set[str]:
    out = set()
    if conf.request is not None:
        out.add("rewrite")
    if conf.response is not None:
        out |= {"header_filter", "body_filter"}
    return out


def _transform(side: _Side, fmt: str | None, body: bytes | None, ctx: Any, ct: str | None,
               get: bool) -> tuple[str | None, int, str]:
    """APISIX's ``transform``: (output, 0, "") or (None, status, error)."""
    typ = side.typ
    data: Any = {}
    if (body is not None or get) and fmt != "plain":
        if fmt is not None:
            try:
                if fmt == "args":
                    data = _decode_encoded(ctx.var("args").encode("latin-1"), ct)
                else:
                    data = _DECODERS[fmt](body or b"", ct)
            except ValueError as e:
                err = f"{typ} body decode: {e}"
                pdk.log.error("%s, body size: %d", err, len(body or b""))
                return None, 400, err
        else:
            pdk.log.warning("no input format to parse %s body", typ)
    if not isinstance(data, (dict, list)):
        # APISIX indexes the decoded value: a JSON scalar fails there
        err = f"{typ} template rendering: attempt to index local 'out' " \
              f"(a {_type(data)} value)"
        pdk.log.error(err)
        return None, 503, err
    text = _bytes_str(body) if body is not None else None
    try:
        out = side.template(fmt).render(data, text, ctx)
    except Exception as e:  # noqa: BLE001 - Lua errors and anything a helper raised
        err = f"{typ} template rendering: {e}"
        pdk.log.error(err)
        return None, 503, err
    pdk.log.info("%s body transform output=%s", typ, out)
    return out, 0, ""


def rewrite(conf: _Conf, ctx: pdk.Context) -> Any:
    if conf.request is None:
        return None
    return _transform_request(conf, conf.request, ctx)


async def _transform_request(conf: _Conf, side: _Side, ctx: pdk.Context) -> Any:
    body = await ctx.read_body(limit=conf.max_req)       # too large: 413
    method = ctx.var("request_method")
    ct = ctx.header("content-type")
    fmt = "args" if method == "GET" else side.fmt or _detect(ct)
    out, status, err = _transform(side, fmt, body or None, ctx, ct, method == "GET")
    if out is None:
        return status, {"message": err}
    ctx.set_body(_str_bytes(out))
    return None


_CLEARED = ("Content-Encoding", "Last-Modified", "ETag")


class _Held:
    __slots__ = ("chunks", "done", "fmt", "size")

    def __init__(self, fmt: str | None) -> None:
        self.fmt = fmt
        self.chunks: list[bytes] = []
        self.size = 0
        self.done = False


def header_filter(conf: _Conf, ctx: pdk.Context) -> None:
    side = conf.response
    if side is None or ctx.method == "HEAD" or \
            ctx.status in (204, 304):
        return
    ct = ctx.resp_header("content-type")
    ctx.store[name] = _Held(side.fmt or _detect(ct))
    for h in _CLEARED:
        ctx.set_resp_header(h, None)
    ctx.body_will_change()


def body_filter(conf: _Conf, ctx: pdk.Context, chunk: bytes, last: bool) -> bytes | None:
    held: _Held | None = ctx.store.get(name)
    if held is None or conf.response is None:
        return None
    if held.done:
        return b""
    if chunk:
        held.chunks.append(chunk)
        held.size += len(chunk)
    if held.size >= conf.max_resp:
        body = b"".join(held.chunks)[:conf.max_resp]      # APISIX: truncated
    elif not last:
        return b""
    else:
        body = b"".join(held.chunks)
    held.done = True
    held.chunks = []
    out, _, _ = _transform(conf.response, held.fmt, body, ctx,
                           ctx.resp_header("content-type"), False)
    if out is None:
        pdk.log.error("failed to transform response body: %s", body[:1024])
        return body
    return _str_bytes(out)
