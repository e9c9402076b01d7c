"""lua-resty-expr compatible ``vars`` expressions.

``compile_expr(spec)`` turns an APISIX ``vars`` value into a predicate
``pred(src) -> bool``.  All parsing, regex compilation, number conversion of
constants and CIDR parsing happens once, at compile time; evaluation is a tree
of small closures.

Semantics follow lua-resty-expr ``v1`` (api7/lua-resty-expr, lib/resty/expr/v1.lua):

* A rule is a list.  ``[]`` matches everything.  When its first element is a
  list, the elements are ANDed.  When its first element is one of ``AND``,
  ``OR``, ``!AND``, ``!OR`` (case-insensitive) the remaining elements (at least
  two) are combined with that operator.  At the top level a bare condition
  (``["arg_x", "==", "1"]``) is rejected: it must be wrapped in a list.
* A condition is ``[var, op, value]``, ``[var, "!", op, value]`` (negated) or the
  legacy ``[var, value]`` which means ``[var, "==", lower(value)]`` -- yes, the
  Lua code lower-cases the value in that form, and so do we.
* Operators (case-insensitive): ``==`` ``~=`` ``>`` ``>=`` ``<`` ``<=`` ``~~``
  ``~*`` ``in`` ``has`` ``ipmatch``.
* A missing variable (``None``): ``==`` is true only against a ``null``/absent
  value, ``~=`` is true, ordering/regex/in/has/ipmatch are false.  ``!``
  inverts the final result, so ``[v, "!", "~~", re]`` is true for a missing var.
* ``==``/``~=`` against a number convert the variable with Lua ``tonumber``
  (``"01" == 1`` is true, ``"abc" == 1`` is false, ``"abc" ~= 1`` is true);
  against a string they are plain string comparisons.
* ``in`` uses Lua raw equality: a string variable never equals a number in the
  list (``["arg_x", "in", [1, 2]]`` never matches, exactly as in APISIX).
* ``has`` is true when the variable's value is a list containing the value
  (e.g. ``graphql_root_fields``); a plain string value never "has" anything.

Where lua-resty-expr silently accepts a rule that can only ever be constant
(a regex that does not compile, ``in`` with a non-list, ordering against a
non-number, a bad CIDR) we raise :class:`ExprError` with the location instead.
"""

from __future__ import annotations

import ipaddress
import re
import warnings
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Protocol

from ..errors import PylonError

__all__ = [
    "ExprError",
    "IpMatcher",
    "Predicate",
    "VarSource",
    "compile_expr",
    "lua_tonumber",
    "lua_tostring",
]


class VarSource(Protocol):
    """Where a predicate reads variables: a string, None when unset; a JSON body's
    ``post_arg.*`` may be any decoded JSON value (number, bool, list, ...)."""

    def var(self, name: str) -> object: ...


Predicate = Callable[[VarSource], bool]


class ExprError(PylonError, ValueError):
    """Invalid ``vars`` specification.  ``path`` locates the culprit, e.g. ``vars[1][2]``."""

    def __init__(self, message: str, path: str = "vars") -> None:
        self.message = message
        self.path = path
        super().__init__(f"{message} at {path}")


# --------------------------------------------------------------------------- numbers

_NUM_RE = re.compile(
    r"\s*[-+]?(?:0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)\s*",
    re.ASCII,
)


def lua_tonumber(v: Any) -> float | int | None:
    """Lua ``tonumber`` for strings and numbers; ``None`` when not convertible."""
    if type(v) is str:
        if _NUM_RE.fullmatch(v) is None:
            return None
        s = v.strip()
        body = s.lstrip("+-")
        if body[:2] in ("0x", "0X"):
            n = int(body, 16)
            return -n if s[0] == "-" else n
        return float(s)
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return v
    return None


def lua_tostring(v: Any) -> str:
    """Lua's ``tostring`` of a JSON value (a float that is an integer prints without ``.0``)."""
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        return format(v, ".14g")
    return str(v)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# --------------------------------------------------------------------------- post_arg.*
# ``post_arg.<path>`` names a value of the request body (APISIX 3.x ``core/ctx.lua``): the
# path is the JSONPath ``$.<path>`` -- names joined by dots, ``[n]`` array indexes (from 0),
# ``['name']`` / ``["name"]`` for names with other characters, ``*`` / ``[*]`` for any member
# (the first value found is taken).

_PATH_NAME = re.compile(r"[A-Za-z_$@\-][\w$@\-]*")
_PATH_BRACKET = re.compile(r"\[\s*(?:(\d+)|\*|'([^']*)'|\"([^\"]*)\")\s*\]")
_STAR = object()
_paths: dict[str, tuple[Any, ...]] = {}


def post_arg_path(name: str, where: str = "vars") -> tuple[Any, ...]:
    """The steps of ``post_arg.<path>`` (str: member, int: index, ``_STAR``: any); raises
    ``ExprError`` for a path APISIX's JSONPath parser refuses."""
    steps = _paths.get(name)
    if steps is not None:
        return steps
    text = name[9:]
    out: list[Any] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] == "[":
            m = _PATH_BRACKET.match(text, i)
            if m is None:
                raise ExprError(f"bad JSON path '$.{text}' at character {i + 3}", where)
            if m.group(1) is not None:
                out.append(int(m.group(1)))
            elif m.group(2) is not None or m.group(3) is not None:
                out.append(m.group(2) if m.group(2) is not None else m.group(3))
            else:
                out.append(_STAR)
            i = m.end()
            continue
        if out:
            if text[i] != ".":
                raise ExprError(f"bad JSON path '$.{text}' at character {i + 3}", where)
            i += 1
        if i < n and text[i] == "*":
            out.append(_STAR)
            i += 1
            continue
        m = _PATH_NAME.match(text, i)
        if m is None:
            raise ExprError(f"bad JSON path '$.{text}' at character {i + 3}", where)
        out.append(m.group(0))
        i = m.end()
    if not out:
        raise ExprError("empty JSON path after 'post_arg.'", where)
    steps = tuple(out)
    if len(_paths) < 4096:          # names come from the configuration: a bounded set
        _paths[name] = steps
    return steps


def post_arg_value(data: Any, steps: tuple[Any, ...]) -> Any:
    """The value at ``steps`` in a parsed body, or None."""
    for k, step in enumerate(steps):
        if step is _STAR:
            members = data.values() if isinstance(data, dict) else \
                data if isinstance(data, list) else ()
            for v in members:
                found = post_arg_value(v, steps[k + 1:])
                if found is not None:
                    return found
            return None
        if isinstance(step, int):
            if not isinstance(data, list) or step >= len(data):
                return None
            data = data[step]
        elif isinstance(data, dict):
            data = data.get(step)
            if data is None:
                return None
        else:
            return None
    return data


# --------------------------------------------------------------------------- IPs


@lru_cache(maxsize=8192)
def _parse_ip(s: str) -> tuple[int, int] | None:
    if s.startswith("[") and s.endswith("]"):
        s = s[1:-1]
    try:
        ip = ipaddress.ip_address(s)
    except ValueError:
        return None
    return ip.version, int(ip)


class IpMatcher:
    """Set of IPv4/IPv6 addresses and CIDRs, matched in O(#distinct prefix lengths)."""

    __slots__ = ("_exact", "_v4", "_v6")

    def __init__(self, items: Any, path: str = "") -> None:
        single = isinstance(items, str)
        if single:
            items = [items]
        exact: set[str] = set()
        v4: dict[int, set[int]] = {}
        v6: dict[int, set[int]] = {}
        for i, item in enumerate(items):
            where = path if single else f"{path}[{i}]"
            if not isinstance(item, str) or not item:
                raise ExprError(f"bad CIDR {item!r}", where)
            raw = item[1:-1] if item.startswith("[") and item.endswith("]") else item
            try:
                net = ipaddress.ip_network(raw, strict=False)
            except ValueError:
                raise ExprError(f"bad CIDR {item!r}", where) from None
            bits = net.max_prefixlen
            shift = bits - net.prefixlen
            (v4 if net.version == 4 else v6).setdefault(shift, set()).add(
                int(net.network_address) >> shift
            )
            if shift == 0:
                exact.add(str(net.network_address))
        self._exact = frozenset(exact)
        # most specific first; order is irrelevant for the result
        self._v4 = tuple((s, frozenset(n)) for s, n in sorted(v4.items()))
        self._v6 = tuple((s, frozenset(n)) for s, n in sorted(v6.items()))

    def match(self, ip: object) -> bool:
        if type(ip) is not str:
            return False
        if ip in self._exact:
            return True
        parsed = _parse_ip(ip)
        if parsed is None:
            return False
        version, n = parsed
        for shift, nets in self._v4 if version == 4 else self._v6:
            if (n >> shift) in nets:
                return True
        return False


# --------------------------------------------------------------------------- regex

_POSIX_CLASSES = {
    "alpha": "a-zA-Z",
    "digit": "0-9",
    "alnum": "a-zA-Z0-9",
    "upper": "A-Z",
    "lower": "a-z",
    "space": r" \t\n\r\f\v",
    "blank": r" \t",
    "punct": r"!-/:-@\[-`{-~",
    "xdigit": "0-9A-Fa-f",
    "word": r"\w",
    "cntrl": r"\x00-\x1f\x7f",
    "print": r"\x20-\x7e",
    "graph": r"\x21-\x7e",
    "ascii": r"\x00-\x7f",
}


def pcre_to_python(pat: str) -> str:
    """Translate the PCRE constructs Python's ``re`` spells differently.

    Handles ``(?<name>...)``, ``(?'name'...)``, ``\\k<name>``, ``\\z``, ``\\Z``,
    ``\\Q...\\E``, ``\\x{hh}``, ``\\h``/``\\H``, ``\\e``, ``\\R`` and POSIX classes
    (``[[:alpha:]]``).  Anything Python cannot express (recursion, ``\\G``...)
    is left alone and makes ``re.compile`` fail, which we report.
    """
    out: list[str] = []
    i = 0
    n = len(pat)
    in_class = False
    class_start = False
    while i < n:
        c = pat[i]
        if c == "\\" and i + 1 < n:
            d = pat[i + 1]
            if d == "Q":
                end = pat.find("\\E", i + 2)
                lit = pat[i + 2 :] if end == -1 else pat[i + 2 : end]
                out.append(re.escape(lit))
                i = n if end == -1 else end + 2
                class_start = False
                continue
            if d == "E":  # stray \E is ignored by PCRE
                i += 2
                continue
            if d == "x" and i + 2 < n and pat[i + 2] == "{":
                end = pat.find("}", i + 3)
                if end == -1:
                    raise re.error("missing } in \\x{...}")
                out.append(f"\\U{int(pat[i + 3 : end] or '0', 16):08x}")
                i = end + 1
                class_start = False
                continue
            if d == "k" and i + 2 < n and pat[i + 2] in "<{'":
                close = {"<": ">", "{": "}", "'": "'"}[pat[i + 2]]
                end = pat.find(close, i + 3)
                if end == -1:
                    raise re.error("bad \\k reference")
                out.append(f"(?P={pat[i + 3:end]})")
                i = end + 1
                continue
            repl = None
            if d == "z":
                repl = r"\Z"
            elif d == "Z":
                repl = r"(?=\n?\Z)"
            elif d == "e":
                repl = r"\x1b"
            elif d == "h":
                repl = r" \t" if in_class else r"[ \t]"
            elif d == "H" and not in_class:
                repl = r"[^ \t]"
            elif d == "R" and not in_class:
                repl = r"(?:\r\n|[\n\x0b\f\r])"
            out.append(repl if repl is not None else c + d)
            i += 2
            class_start = False
            continue
        if in_class:
            if c == "]" and not class_start:
                in_class = False
                out.append(c)
            elif c == "[":
                if pat.startswith("[:", i):
                    end = pat.find(":]", i + 2)
                    name = pat[i + 2 : end] if end != -1 else ""
                    neg = name.startswith("^")
                    key = name[1:] if neg else name
                    if end == -1 or key not in _POSIX_CLASSES:
                        raise re.error(f"unknown POSIX class {pat[i:end + 2]!r}")
                    if neg:
                        raise re.error("negated POSIX classes are not supported")
                    out.append(_POSIX_CLASSES[key])
                    i = end + 2
                    class_start = False
                    continue
                out.append(r"\[")
            elif c == "^" and class_start and out and out[-1] == "[":
                out.append(c)
                i += 1
                continue  # still at class start: a following ']' is literal
            else:
                out.append(c)
            class_start = False
            i += 1
            continue
        if c == "[":
            in_class = True
            class_start = True
            out.append(c)
            i += 1
            continue
        if c == "(" and pat.startswith("(?<", i) and i + 3 < n and pat[i + 3] not in "=!":
            out.append("(?P<")
            i += 3
            continue
        if c == "(" and pat.startswith("(?'", i):
            end = pat.find("'", i + 3)
            if end == -1:
                raise re.error("bad named group")
            out.append(f"(?P<{pat[i + 3:end]}>")
            i = end + 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


def compile_pcre(pat: str, ignore_case: bool = False) -> re.Pattern[str]:
    """Compile a PCRE-ish pattern (ngx.re semantics without the ``u`` flag)."""
    flags = re.ASCII | (re.IGNORECASE if ignore_case else 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return re.compile(pcre_to_python(pat), flags)


# --------------------------------------------------------------------------- compiler

_LOGIC_OPS = frozenset({"AND", "OR", "!AND", "!OR"})
_COMPARE_OPS = frozenset({"==", "~=", ">", ">=", "<", "<=", "~~", "~*", "in", "has", "ipmatch"})
_MISSING = object()


def _true(_src: VarSource) -> bool:
    return True


def _false(_src: VarSource) -> bool:
    return False


#: deepest nesting of rules compiled: each level is one more call when a request is matched
#: (and when the rule is compiled), so a hostile spec must not reach Python's stack limit
MAX_NESTING = 64


def compile_expr(spec: Any, path: str = "vars") -> Predicate:
    """Compile an APISIX ``vars`` spec into ``pred(src) -> bool``.

    Raises :class:`ExprError` for invalid specs.
    """
    if not isinstance(spec, (list, tuple)):
        raise ExprError("vars must be a list", path)
    if len(spec) == 0:
        return _true
    first = spec[0]
    if not isinstance(first, (list, tuple)) and not (
        isinstance(first, str) and first.upper() in _LOGIC_OPS
    ):
        raise ExprError("rule should be wrapped inside brackets", path)
    return _compile(spec, path)


def _compile(rules: Any, path: str, depth: int = 1) -> Predicate:
    if not isinstance(rules, (list, tuple)):
        raise ExprError("expression must be a list", path)
    if depth > MAX_NESTING:
        raise ExprError(f"expression nested deeper than {MAX_NESTING} levels", path)
    n = len(rules)
    if n == 0:
        raise ExprError("rule too short", path)
    first = rules[0]
    if isinstance(first, (list, tuple)):
        return _and([_compile(r, f"{path}[{i}]", depth + 1) for i, r in enumerate(rules)])
    if isinstance(first, str):
        op = first.upper()
        if op in _LOGIC_OPS:
            if n <= 2:
                raise ExprError(f"rule too short: '{first}' needs at least 2 sub-expressions", path)
            subs = [_compile(rules[i], f"{path}[{i}]", depth + 1) for i in range(1, n)]
            if op == "AND":
                return _and(subs)
            if op == "OR":
                return _or(subs)
            if op == "!AND":
                return _not(_and(subs))
            return _not(_or(subs))
    return _compile_cond(rules, path)


def _and(preds: list[Predicate]) -> Predicate:
    if len(preds) == 1:
        return preds[0]
    if len(preds) == 2:
        a, b = preds

        def and2(src: VarSource) -> bool:
            return a(src) and b(src)

        return and2
    t = tuple(preds)

    def and_n(src: VarSource) -> bool:
        for p in t:
            if not p(src):
                return False
        return True

    return and_n


def _or(preds: list[Predicate]) -> Predicate:
    if len(preds) == 2:
        a, b = preds

        def or2(src: VarSource) -> bool:
            return a(src) or b(src)

        return or2
    t = tuple(preds)

    def or_n(src: VarSource) -> bool:
        for p in t:
            if p(src):
                return True
        return False

    return or_n


def _not(p: Predicate) -> Predicate:
    def not_(src: VarSource) -> bool:
        return not p(src)

    return not_


def _compile_cond(expr: Any, path: str) -> Predicate:
    n = len(expr)
    reverse = False
    if n == 4:
        if expr[1] != "!":
            raise ExprError("bad 'not' expression: second element must be '!'", f"{path}[1]")
        reverse = True
        name, op, value = expr[0], expr[2], expr[3]
        op_idx = 2
    elif n in (2, 3):
        name, op = expr[0], expr[1]
        value = expr[2] if n == 3 else _MISSING
        op_idx = 1
    else:
        raise ExprError(
            "invalid expression: expected [var, op, value] or [var, '!', op, value]", path
        )

    if not isinstance(name, str) or not name:
        raise ExprError("variable name must be a non-empty string", f"{path}[0]")
    if name.startswith("post_arg."):
        post_arg_path(name, f"{path}[0]")       # APISIX checks the JSON path at write time

    if op is not None and not isinstance(op, str) and not _is_number(op):
        raise ExprError(f"operator must be a string, got {op!r}", f"{path}[{op_idx}]")
    op_l = lua_tostring(op).lower() if op is not None else None
    if value is _MISSING and op_l not in _COMPARE_OPS:
        # legacy two-element form: [var, value]  ==  [var, "==", lower(value)]
        if op_l is None:
            raise ExprError("invalid expression", path)
        value, op_l = op_l, "=="
    elif value is _MISSING:
        value = None
    if op_l is None:
        raise ExprError("invalid expression: missing operator", f"{path}[{op_idx}]")
    if op_l not in _COMPARE_OPS:
        raise ExprError(f"unknown operator '{op}'", f"{path}[{op_idx}]")

    pred = _build_compare(name, op_l, value, f"{path}[{op_idx + 1}]")
    return _not(pred) if reverse else pred


def _build_compare(name: str, op: str, value: Any, vpath: str) -> Predicate:
    if op == "==" or op == "~=":
        eq = _build_eq(name, value)
        return eq if op == "==" else _not(eq)

    if op in (">", ">=", "<", "<="):
        rn = lua_tonumber(value)
        if rn is None:
            raise ExprError(f"operator '{op}' expects a number, got {value!r}", vpath)
        return _build_order(name, op, rn)

    if op == "~~" or op == "~*":
        if _is_number(value):
            value = lua_tostring(value)
        if not isinstance(value, str):
            raise ExprError(f"operator '{op}' expects a regex string, got {value!r}", vpath)
        try:
            rx = compile_pcre(value, ignore_case=(op == "~*"))
        except (re.error, ValueError, OverflowError) as e:
            raise ExprError(f"bad regex {value!r}: {e}", vpath) from None
        search = rx.search

        def regex(src: VarSource) -> bool:
            v = src.var(name)
            return type(v) is str and search(v) is not None

        return regex

    if op == "in":
        if not isinstance(value, (list, tuple)):
            raise ExprError(f"operator 'in' expects a list, got {value!r}", vpath)
        # Lua raw equality: only string elements can equal a string variable
        strs = frozenset(v for v in value if isinstance(v, str))
        others = tuple(v for v in value if not isinstance(v, str) and v is not None)

        def in_(src: VarSource) -> bool:
            v = src.var(name)
            if v is None:
                return False
            if type(v) is str:
                return v in strs
            return any(_raw_eq(v, o) for o in others)

        return in_

    if op == "has":

        def has(src: VarSource) -> bool:
            v = src.var(name)
            if isinstance(v, (list, tuple)):
                for item in v:
                    if _raw_eq(item, value):
                        return True
            return False

        return has

    # ipmatch
    if value is None or value == "" or (isinstance(value, (list, tuple)) and len(value) == 0):
        raise ExprError("invalid ip address: ipmatch needs an address or a list of CIDRs", vpath)
    if not isinstance(value, (str, list, tuple)):
        raise ExprError(f"operator 'ipmatch' expects a list of CIDRs, got {value!r}", vpath)
    matcher = IpMatcher(value, vpath)
    ip_match = matcher.match

    def ipmatch(src: VarSource) -> bool:
        return ip_match(src.var(name))

    return ipmatch


def _raw_eq(a: object, b: object) -> bool:
    """Lua raw equality between decoded JSON-ish values (no bool/number mixing)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if _is_number(a) and _is_number(b):
        return a == b
    if type(a) is str and type(b) is str:
        return a == b
    return False


def _build_eq(name: str, value: Any) -> Predicate:
    if value is None:

        def is_nil(src: VarSource) -> bool:
            return src.var(name) is None

        return is_nil

    if isinstance(value, bool):
        b = value

        def bool_eq(src: VarSource) -> bool:     # only a JSON body's post_arg.* is a boolean
            return src.var(name) is b

        return bool_eq

    if _is_number(value):
        target = value
        tonumber = lua_tonumber

        def num_eq(src: VarSource) -> bool:
            n = tonumber(src.var(name))
            return n is not None and n == target

        return num_eq

    if isinstance(value, str):
        s = value

        def str_eq(src: VarSource) -> bool:
            return src.var(name) == s

        return str_eq

    # tables: never equal to a string (or nil) variable
    return _false


def _build_order(name: str, op: str, rn: float | int) -> Predicate:
    tonumber = lua_tonumber
    if op == ">":

        def gt(src: VarSource) -> bool:
            n = tonumber(src.var(name))
            return n is not None and n > rn

        return gt
    if op == ">=":

        def ge(src: VarSource) -> bool:
            n = tonumber(src.var(name))
            return n is not None and n >= rn

        return ge
    if op == "<":

        def lt(src: VarSource) -> bool:
            n = tonumber(src.var(name))
            return n is not None and n < rn

        return lt

    def le(src: VarSource) -> bool:
        n = tonumber(src.var(name))
        return n is not None and n <= rn

    return le
