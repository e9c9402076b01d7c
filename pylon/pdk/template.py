"""Strings with nginx variables, as APISIX's ``core.utils.resolve_var`` reads them.

``compile_template("Bearer $http_x_token ${arg_id}")`` → a ``Template`` compiled once (in a
plugin's ``prepare``); ``t.render(ctx)`` fills it per request.  ``$name`` and ``${name}``
are variables (``ctx.var``), an unknown one is the empty string; a ``$`` after a backslash
is not a variable (the text stays as written, backslash included, as APISIX's pattern
``(?<!\\)\\$(\\{(\\w+)\\}|(\\w+))`` leaves it).  A string without variables renders to
itself at no cost.
``compile_replacement("[$1]")`` is the other kind of template APISIX plugins take: the
replacement of ``ngx.re.sub`` / ``ngx.re.gsub`` (regex captures, not variables).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Protocol, cast

_VAR = re.compile(r"(?<!\\)\$(?:\{(\w+)\}|(\w+))", re.ASCII)


class Template:
    __slots__ = ("literal", "parts")

    def __init__(self, parts: tuple[Any, ...] | None, literal: str) -> None:
        self.parts = parts          # literal strings and (name,) tuples, or None
        self.literal = literal

    @property
    def has_vars(self) -> bool:
        return self.parts is not None

    def render(self, ctx: Any, convert: Callable[[Any], str] = str) -> str:
        parts = self.parts
        if parts is None:
            return self.literal
        out = []
        for p in parts:
            if isinstance(p, str):
                out.append(p)
            else:
                v = ctx.var(p[0])
                if v is not None:
                    out.append(v if isinstance(v, str) else convert(v))
        return "".join(out)

    def names(self) -> list[str]:
        return [p[0] for p in self.parts or () if isinstance(p, tuple)]


def compile_template(text: str) -> Template:
    if "$" not in text:
        return Template(None, text)
    parts: list[Any] = []
    pos = 0
    for m in _VAR.finditer(text):
        parts.append(text[pos:m.start()])
        parts.append((m.group(1) or m.group(2),))
        pos = m.end()
    parts.append(text[pos:])
    if not any(isinstance(p, tuple) for p in parts):
        return Template(None, "".join(parts))
    return Template(tuple(p for p in parts if p != ""), text)


class Replacement(Protocol):
    """What ``compile_replacement`` returns: ``pattern.sub``'s function, and ``groups`` (the
    highest group the template names)."""

    groups: int

    def __call__(self, m: re.Match[str], /) -> str: ...


def compile_replacement(tmpl: str) -> Replacement:
    """An ``ngx.re.sub`` / ``ngx.re.gsub`` replacement template (``$0``, ``$1``, ``${1}``,
    ``$$`` for a dollar) → a function for ``pattern.sub``.  A group the pattern does not have
    expands to the empty string, as in nginx; ``.groups`` is the highest group named.  A ``$``
    followed by anything else is a ValueError, as ``ngx.re.sub`` refuses it."""
    parts: list[str | int] = []
    i, n = 0, len(tmpl)
    lit: list[str] = []
    while i < n:
        c = tmpl[i]
        if c == "$" and i + 1 < n:
            d = tmpl[i + 1]
            if d == "$":
                lit.append("$")
                i += 2
                continue
            if d.isdigit():
                j = i + 1
                while j < n and tmpl[j].isdigit():
                    j += 1
                parts.append("".join(lit))
                lit = []
                parts.append(int(tmpl[i + 1:j]))
                i = j
                continue
            if d == "{":
                end = tmpl.find("}", i + 2)
                if end > 0 and tmpl[i + 2:end].isdigit():
                    parts.append("".join(lit))
                    lit = []
                    parts.append(int(tmpl[i + 2:end]))
                    i = end + 1
                    continue
            raise ValueError(f"invalid capturing variable name at {tmpl[i:]!r}")
        if c == "$":
            raise ValueError("the $ at the end of the replacement")
        lit.append(c)
        i += 1
    parts.append("".join(lit))
    groups = [p for p in parts if isinstance(p, int)]

    def expand(m: re.Match[str]) -> str:
        have = m.re.groups
        return "".join(p if isinstance(p, str) else (m.group(p) or "") if p <= have else ""
                       for p in parts)
    rep = cast(Replacement, expand)
    rep.groups = max(groups) if groups else 0
    return rep


# ngx_escape_uri(NGX_ESCAPE_URI): controls, space, "#", "%", "?", DEL and non-ASCII
_KEEP = frozenset(b for b in range(0x21, 0x7f) if b not in b"#%?")


def wire_bytes(s: str) -> bytes:
    """The bytes as they go on the wire: request-derived text is latin-1 (raw bytes),
    configured text may be any Unicode (sent as UTF-8)."""
    try:
        return s.encode("latin-1")
    except UnicodeEncodeError:
        return s.encode("utf-8")


def escape_uri(s: str) -> str:
    """nginx's ``ngx.escape_uri`` (NGX_ESCAPE_URI): controls, space, ``#``, ``%``, ``?``,
    DEL and non-ASCII as ``%XX``."""
    raw = wire_bytes(s)
    if all(b in _KEEP for b in raw):
        return s
    return "".join(chr(b) if b in _KEEP else f"%{b:02X}" for b in raw)
