"""Request router with Apache APISIX ``radixtree_*`` semantics.

Reference behaviour (lua-resty-radixtree ``lib/resty/radixtree.lua`` and APISIX
``apisix/http/router/radixtree_{host_uri,uri,uri_with_parameter}.lua``):

* Exact paths live in a dict and are tried before any prefix.  Prefix paths
  (``/a/*``, ``/a*``) live in a radix tree keyed by the text before the ``*``;
  matching walks every key that prefixes the request path, deepest first, and
  falls back to shorter ones when no route on the deeper key passes its
  conditions.
* Routes sharing a key are ordered by ``priority`` (higher first), then by the
  length of the original pattern (longer first: ``/u/:id`` before ``/u/*``),
  then insertion order.
* A route is taken only if its methods, hosts (uri kinds), remote_addrs and
  vars all pass; otherwise the next candidate is tried.
* ``radixtree_host_uri``: routes are filed per host pattern.  The exact host is
  tried first, then wildcard hosts from the longest suffix to the shortest; each
  host has its own uri table.  Host-less routes are tried only when no host
  route matched.  ``*.example.com`` matches any host ending in ``.example.com``.
* ``radixtree_uri_with_parameter``: ``:name`` matches one non-empty segment,
  ``*name`` the rest of the path (possibly empty); such routes are keyed by
  their literal prefix so ``/user/profile`` (exact) beats ``/user/:id``, and
  ``/user/:id`` beats ``/user/*`` (same key, longer pattern).

Updates: :meth:`Router.update` changes routes in place, touching only the keys
of those routes (a 100k-route table is not rebuilt for one change), and leaves
the table exactly as a fresh build of the resulting route list would be.  Doing
it in place is safe because a worker is single-threaded (one asyncio loop):
``match`` is synchronous and runs once at the start of a request, and ``update``
runs on the same loop thread between requests, so no request ever sees a
half-updated table.  Never call ``update`` from another thread.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Iterable, KeysView, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, cast

from ..errors import PylonError
from .expr import ExprError, IpMatcher, Predicate, VarSource, compile_expr
from .radix import RadixNode, RadixTree

__all__ = [
    "HTTP_METHODS",
    "KINDS",
    "Match",
    "RouteSpec",
    "Router",
    "RouterError",
]

KINDS = ("radixtree_host_uri", "radixtree_uri", "radixtree_uri_with_parameter")
# lua-resty-radixtree METHODS table == APISIX route schema enum
HTTP_METHODS = frozenset(
    {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "PURGE"}
)


@dataclass(slots=True)
class RouteSpec:
    id: str
    payload: object  # returned on match; never inspected by the router
    uris: Sequence[str]  # tuples normally; a list is copied, never kept
    hosts: Sequence[str] = ()
    methods: frozenset[str] = frozenset()
    remote_addrs: Sequence[str] = ()
    vars: object | None = None
    priority: int = 0


@dataclass(frozen=True, slots=True)
class Match:
    """Result of :meth:`Router.match`.

    Immutable: matches without params are pre-built at router build time and
    the same instance is returned for every request hitting that route/uri/host.
    """

    route: object  # the payload
    route_id: str
    params: dict[str, str] | None  # ``:name`` / ``*name`` values (with_parameter kind)
    matched_uri: str  # uri pattern that matched, e.g. "/a/*"
    matched_host: str  # host pattern that matched ("*.example.com"), or ""


_new = object.__new__
# the slot descriptors' setters (the frozen dataclass's own __setattr__ refuses)
_slots = Match.__dict__
_set_route: Callable[[Match, object], None] = _slots["route"].__set__
_set_route_id: Callable[[Match, str], None] = _slots["route_id"].__set__
_set_params: Callable[[Match, dict[str, str] | None], None] = _slots["params"].__set__
_set_uri: Callable[[Match, str], None] = _slots["matched_uri"].__set__
_set_host: Callable[[Match, str], None] = _slots["matched_host"].__set__
del _slots


def _new_match(
    route: object, route_id: str, params: dict[str, str] | None, uri: str, host: str
) -> Match:
    """``Match(...)`` without the frozen-dataclass ``__init__`` overhead (~2x faster)."""
    m = _new(Match)
    _set_route(m, route)
    _set_route_id(m, route_id)
    _set_params(m, params)
    _set_uri(m, uri)
    _set_host(m, host)
    return m


class RouterError(PylonError, ValueError):
    def __init__(self, route_id: str, message: str) -> None:
        self.route_id = route_id
        self.message = message
        super().__init__(f"route {route_id!r}: {message}")


# check(method, host, src, remote_addr) -> the Match to return, or None
Check = Callable[[str, str, VarSource, str], Match | None]
# matcher(method, host, path, src, remote_addr) -> Match or None
TableMatcher = Callable[[str, str, str, VarSource, str], Match | None]

# A candidate is a plain tuple (cheap to build, cheap to unpack):
#   (check, match, regex, names, key_len, order)
# check:  None when unconditional, else check(method, host, src, remote_addr) -> Match | None
# match:  the pre-built Match returned when check is None
# regex:  None, or a pattern path[key_len:] must fully match (params / inner globs)
# names:  () no params; True: params = groupdict(); tuple: names of the positional groups
# order:  (-priority, -len(uri pattern), seq): lua-resty-radixtree's sort_route + stable insert
_Names = tuple[str, ...] | Literal[True]
_Entry = tuple[Check | None, Match, re.Pattern[str] | None, _Names, int, tuple[int, int, int]]

# parsed uri: (pattern, exact, key, regex, names)
#   regex/names: see _tail_regex; the regex is matched against path[len(key):]
_Uri = tuple[str, bool, str, re.Pattern[str] | None, _Names]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _parse_uri(uri: str, with_params: bool) -> _Uri:
    """Classify a uri pattern.

    * no ``*`` (and, with params, no ``:name`` segment): exact.
    * a single ``*`` at the very end: plain prefix of the text before it.
    * anything else (``:name``, ``*name``, a ``*`` in the middle): keyed in the
      tree by the literal text before the first special token; the rest must
      match an anchored regex (which also extracts named params).
    """
    if not isinstance(uri, str) or not uri:
        raise ValueError("uri must be a non-empty string")
    key_end = uri.find("*")
    has_param_seg = False
    if with_params and ":" in uri:
        offset = 0
        for seg in uri.split("/"):
            if seg.startswith(":"):
                has_param_seg = True
                if key_end == -1 or offset < key_end:
                    key_end = offset
                break
            offset += len(seg) + 1
    if key_end == -1:
        return (uri, True, uri, None, ())
    if not has_param_seg and key_end == len(uri) - 1:
        return (uri, False, uri[:-1], None, ())
    # is the first special token at a segment start ("/:id", "/*rest") or inside one ("/a*b")?
    partial = key_end > 0 and uri[key_end - 1] != "/"
    rx, names = _tail_regex(uri[key_end:], with_params, partial)
    return (uri, False, uri[:key_end], rx, names)


@lru_cache(maxsize=4096)
def _tail_regex(
    tail: str, with_params: bool, partial: bool
) -> tuple[re.Pattern[str], _Names]:
    """Regex for the part of a uri pattern after its literal prefix (shared across routes).

    Returns (pattern, names): names is ``()`` when nothing is captured, ``True``
    when the groups are named (use ``groupdict()``), else the group names in order.
    """
    if not with_params:
        return re.compile(_glob(tail), re.DOTALL), ()
    segs = tail.split("/")
    names: list[str] = []
    pieces: list[tuple[str, str | None]] = []  # (regex, capture name)
    for i, seg in enumerate(segs):
        if i == 0 and partial:
            pieces.append((_glob(seg), None))  # "*b" left of "a*b": a glob, not a catch-all
        elif seg.startswith(":"):
            if len(seg) == 1:
                raise ValueError("empty parameter name")
            names.append(seg[1:])
            pieces.append(("[^/]+", seg[1:]))
        elif seg.startswith("*") and len(seg) > 1:
            names.append(seg[1:])
            pieces.append((".*", seg[1:]))
        else:
            pieces.append((_glob(seg), None))
    if not names:
        return re.compile("/".join(p for p, _ in pieces), re.DOTALL), ()
    if len(set(names)) == len(names) and all(_IDENT.match(n) for n in names):
        pattern = "/".join(p if n is None else f"(?P<{n}>{p})" for p, n in pieces)
        return re.compile(pattern, re.DOTALL), True
    pattern = "/".join(p if n is None else f"({p})" for p, n in pieces)
    return re.compile(pattern, re.DOTALL), tuple(names)


def _glob(s: str) -> str:
    return ".*".join(re.escape(p) for p in s.split("*"))


# --------------------------------------------------------------------------- conditions

_Pred = Callable[[str, VarSource, str], bool]


def _make_check(
    methods: frozenset[str] | None,
    ipm: IpMatcher | None,
    expr: Callable[[VarSource], bool] | None,
    host_fn: Callable[[str], Match | None] | None,
    m0: Match | None,
) -> Check | None:
    """Fold a route's conditions into one closure returning the Match (None when unconditional).

    With ``host_fn`` (uri kinds) the Match comes from the host that matched;
    otherwise it is ``m0``.
    """
    preds: list[_Pred] = []
    if ipm is not None:
        ip_match = ipm.match

        def p_ip(m: str, s: VarSource, r: str) -> bool:
            return ip_match(r)

        preds.append(p_ip)
    if expr is not None:
        ex = expr

        def p_vars(m: str, s: VarSource, r: str) -> bool:
            return ex(s)

        preds.append(p_vars)
    ms = methods or None
    ptuple = tuple(preds)

    if host_fn is not None:
        hf = host_fn
        if ms is None and not ptuple:

            def check_h(m: str, h: str, s: VarSource, r: str) -> Match | None:
                return hf(h)

            return check_h

        def check_hp(m: str, h: str, s: VarSource, r: str) -> Match | None:
            if ms is not None and m not in ms:
                return None
            res = hf(h)
            if res is None:
                return None
            for p in ptuple:
                if not p(m, s, r):
                    return None
            return res

        return check_hp

    if ms is None and not ptuple:
        return None
    if not ptuple:

        def check_m(m: str, h: str, s: VarSource, r: str) -> Match | None:
            return m0 if m in ms else None  # type: ignore[operator]  # ms: not None here

        return check_m
    if ms is None and len(ptuple) == 1:
        p0 = ptuple[0]

        def check_1(m: str, h: str, s: VarSource, r: str) -> Match | None:
            return m0 if p0(m, s, r) else None

        return check_1

    def check_n(m: str, h: str, s: VarSource, r: str) -> Match | None:
        if ms is not None and m not in ms:
            return None
        for p in ptuple:
            if not p(m, s, r):
                return None
        return m0

    return check_n


def _make_host_fn(
    hosts: tuple[tuple[bool, str, str], ...], payload: object, rid: str, pattern: str
) -> Callable[[str], Match | None]:
    """Route host condition for the uri kinds: returns the Match for the first matching host."""
    exact: dict[str, Match] = {}
    wild: list[tuple[str, Match]] = []
    for is_wild, value, pat in hosts:
        m = _new_match(payload, rid, None, pattern, pat)
        if is_wild:
            wild.append((value, m))
        elif value not in exact:
            exact[value] = m
    exact_get = exact.get
    wt = tuple(wild)
    if not wt:
        return exact_get

    def host_any(h: str) -> Match | None:
        res = exact_get(h)
        if res is not None:
            return res
        if type(h) is str:
            for suffix, m in wt:
                if h.endswith(suffix):
                    return m
        return None

    return host_any


# --------------------------------------------------------------------------- uri table


def _order_key(e: _Entry) -> tuple[int, int, int]:
    return e[5]


def _sorted(entries: list[_Entry]) -> tuple[_Entry, ...]:
    if len(entries) > 1:
        entries.sort(key=_order_key)
    return tuple(entries)


def _tupled(table: dict[str, list[_Entry]]) -> dict[str, tuple[_Entry, ...]]:
    return {k: (v[0],) if len(v) == 1 else _sorted(v) for k, v in table.items()}


# where a host table is filed: (is_wildcard, host-or-suffix); None for the host-less table
_Where = tuple[bool, str]
# a radix tree's segment_index(): first segment -> (node, pending node, rest, best)
_Jump = dict[str, tuple[RadixNode[tuple[_Entry, ...]], RadixNode[tuple[_Entry, ...]] | None, str,
                        RadixNode[tuple[_Entry, ...]] | None]]


class _Table:
    """One uri table: the host-less one, or (``radixtree_host_uri``) one per exact host
    or wildcard suffix.  Mutable, so an update touches only the keys it changes.

    ``exact`` / ``prefix`` map a key to its candidates in match order.  :meth:`match`
    reads ``exact`` directly, so exact changes are live at once, and the prefix
    structure: ``ordered``, the keys tested longest first (a handful of keys, the usual
    per-host table), or a radix ``tree`` with, when big, a first-segment ``jump``
    table.  :meth:`sync` brings that structure up to date with ``prefix``.

    The table is its own matcher (a bound :meth:`match`), not a closure over copies
    of these fields: at 100k routes with one table per host that is ~0.7 KiB less
    per table, and one Python frame per request whatever the table size.
    """

    __slots__ = ("exact", "hosts", "jump", "ordered", "prefix", "tree", "where")

    def __init__(
        self,
        where: _Where | None,
        exact: dict[str, tuple[_Entry, ...]],
        prefix: dict[str, tuple[_Entry, ...]],
    ) -> None:
        self.where = where
        self.exact = exact
        self.prefix = prefix
        self.tree: RadixTree[tuple[_Entry, ...]] | None = None
        self.jump: _Jump | None = None
        self.ordered: tuple[tuple[str, tuple[_Entry, ...]], ...] = ()
        #: the host-less table of radixtree_host_uri: the host tables tried first
        self.hosts: _HostIndex | None = None
        self.sync(())

    def sync(self, changed: Iterable[str]) -> None:
        """Apply the changes already made in ``prefix`` to the keys ``changed``.

        The representation follows the key count exactly as a fresh build would
        choose it, so an updated table behaves like a rebuilt one.
        """
        prefix = self.prefix
        if len(prefix) <= _SMALL_TABLE_MAX_KEYS:
            self.tree = self.jump = None
            # a handful of prefixes (typical per-host table): test them longest first
            self.ordered = (tuple(sorted(prefix.items(), key=lambda kv: -len(kv[0])))
                            if prefix else ())
            return
        self.ordered = ()
        tree = self.tree
        moved: list[str] = []  # keys added or removed (not just given new entries)
        if tree is None:
            tree = self.tree = RadixTree.from_dict(prefix)
            self.jump = None
        else:
            for key in changed:
                entries = prefix.get(key)
                if entries is None:
                    shaped = tree.discard(key)
                else:
                    shaped = tree.set(key, entries)
                if shaped:
                    moved.append(key)
        if len(tree) < _JUMP_MIN_KEYS:
            self.jump = None
        elif self.jump is None:
            self.jump = tree.segment_index()
        elif moved:
            tree.refresh_segments(self.jump, moved)

    def empty(self) -> bool:
        return not self.exact and not self.prefix

    def match(
        self, method: str, host: str, path: str, src: VarSource, remote_addr: str
    ) -> Match | None:
        """The table's candidates for a request, in APISIX's order: the host tables of
        ``hosts`` first (host-less table of ``radixtree_host_uri``), the exact key, then
        the prefix keys deepest first.  A key's first candidate is returned without a
        call when it has no condition and no uri regex (the usual case)."""
        hosts = self.hosts
        if hosts is not None:
            tables = hosts.cache_get(host)
            if tables is None:
                tables = hosts.fill(host)
            if tables:
                for t in tables:
                    res = t(method, host, path, src, remote_addr)
                    if res is not None:
                        return res
        entries = self.exact.get(path)
        if entries is not None:
            for check, m0, _rx, _names, _k, _o in entries:
                if check is None:
                    return m0
                res = check(method, host, src, remote_addr)
                if res is not None:
                    return res
        tree = self.tree
        if tree is None:
            for key, entries in self.ordered:
                if path.startswith(key):
                    first = entries[0]  # unconditional, no uri regex: no call
                    res = (first[1] if first[0] is None and first[2] is None else
                           _try_entries(entries, method, host, path, src, remote_addr))
                    if res is not None:
                        return res
            return None
        # radix walk: node of the longest key prefixing path (jump table first when big)
        node = tree.root
        best = node if node.value is not None else None
        pos = 0
        n = len(path)
        jump = self.jump
        if jump is not None:
            # big trees: skip the first segment with one dict lookup
            j = path.find("/", 1) + 1
            if j:
                st = jump.get(path[:j])
                if st is not None:
                    node, pending, rest, best = st
                    pos = j
                    if pending is not None:
                        if path.startswith(rest, pos):
                            pos += len(rest)
                            node = pending
                            if node.value is not None:
                                best = node
                        else:
                            pos = n  # diverged inside the edge: nothing deeper
        while pos < n:  # radix.walk, inline: the call would cost as much as the walk
            children = node.children
            if children is None:
                break
            nxt = children.get(path[pos])
            if nxt is None:
                break
            node = nxt
            llen = node.llen
            if llen == 1:
                pos += 1
            else:
                end = pos + llen
                if path[pos:end] != node.label:
                    break
                pos = end
            if node.value is not None:
                best = node
        # then that key and every shorter one, deepest first
        while best is not None:
            # the walk and the up links only ever land on valued nodes
            valued: tuple[_Entry, ...] = best.value  # type: ignore[assignment]
            first = valued[0]
            res = (first[1] if first[0] is None and first[2] is None else
                   _try_entries(valued, method, host, path, src, remote_addr))
            if res is not None:
                return res
            best = best.up
        return None


# Trees with at least this many prefix keys get a first-segment jump table.
_JUMP_MIN_KEYS = 256
# Tables with at most this many prefix keys skip the radix tree.
_SMALL_TABLE_MAX_KEYS = 4


def _try_entries(
    entries: tuple[_Entry, ...], method: str, host: str, path: str, src: VarSource,
    remote_addr: str,
) -> Match | None:
    """First candidate on one prefix key whose uri regex and conditions pass."""
    m0: Match | None
    for check, m0, rx, names, klen, _o in entries:
        if rx is not None:
            rm = rx.fullmatch(path, klen)
            if rm is None:
                continue
        if check is not None:
            m0 = check(method, host, src, remote_addr)
            if m0 is None:
                continue
        if names:  # names come with a uri regex, so rm is the match here
            # one name per group by construction (_tail_regex); zip(strict=) costs per request
            params = (rm.groupdict() if names is True  # type: ignore[union-attr]
                      else dict(zip(names, rm.groups())))  # type: ignore[union-attr]  # noqa: B905
            return _new_match(m0.route, m0.route_id, params, m0.matched_uri, m0.matched_host)
        return m0
    return None


# --------------------------------------------------------------------------- router

_HostSpec = tuple[bool, str, str]  # (is_wildcard, host-or-suffix, original pattern)


def _compile_methods(rid: str, ms: Any, cache: dict[Any, frozenset[str]]) -> frozenset[str]:
    try:
        return cache[ms]
    except (KeyError, TypeError):
        pass
    if isinstance(ms, str):
        ms = (ms,)
    bad = sorted(repr(m) for m in ms if not isinstance(m, str) or m.upper() not in HTTP_METHODS)
    if bad:
        raise RouterError(rid, f"unknown method(s) {', '.join(bad)} in methods")
    res = frozenset(m.upper() for m in ms)
    try:
        cache[ms] = res
    except TypeError:
        pass
    return res


def _compile_hosts(rid: str, hosts: Any) -> tuple[_HostSpec, ...]:
    if isinstance(hosts, str):
        hosts = (hosts,)
    out: list[_HostSpec] = []
    for h in hosts:
        if not isinstance(h, str) or not h or h == "*":
            raise RouterError(rid, f"bad host {h!r}")
        h = h.lower()
        if h[0] == "*":
            out.append((True, h[1:], h))
        else:
            out.append((False, h, h))
    return tuple(out)


def _compile_uris(rid: str, uris: Any, with_params: bool) -> Sequence[_Uri]:
    u = uris[0] if type(uris) is tuple and len(uris) == 1 else None
    if type(u) is str and u and (not with_params or ":" not in u):
        star = u.find("*")
        if star == -1:  # fast path: one exact uri
            return ((u, True, u, None, ()),)
        if star == len(u) - 1:  # fast path: one plain prefix
            return ((u, False, u[:-1], None, ()),)
    if isinstance(uris, str):
        uris = (uris,)
    if not uris:
        raise RouterError(rid, "route has no uris")
    out: list[_Uri] = []
    for u in uris:
        try:
            out.append(_parse_uri(u, with_params))
        except (ValueError, re.error) as e:
            raise RouterError(rid, f"bad uri {u!r}: {e}") from None
    return out


# compiled route: (id, payload, uris, hosts, methods, ip matcher, vars, -priority)
_Compiled = tuple[str, object, Sequence[_Uri], tuple[_HostSpec, ...], frozenset[str] | None,
                  IpMatcher | None, Predicate | None, int]
# What finding a route's entries again takes: its spec's uris, or (uris, hosts) when
# routes are filed per host (radixtree_host_uri).  The spec's own tuples, so recording
# a route at build time allocates nothing; a list of them for an id given twice.
_Placement = Sequence[str] | tuple[Sequence[str], Sequence[str]]
_Placed = _Placement | list[_Placement]


def _placement(spec: RouteSpec, host_first: bool) -> _Placement:
    uris = spec.uris
    if type(uris) is list:  # keep no reference to a caller's mutable list
        uris = tuple(uris)
    if not host_first:
        return uris
    hosts = spec.hosts
    return (uris, tuple(hosts) if type(hosts) is list else hosts)


def _compile_route(
    spec: RouteSpec, with_params: bool, method_cache: dict[Any, frozenset[str]]
) -> _Compiled:
    """Validate and compile one route; raises :class:`RouterError` (for any failure)."""
    ms: frozenset[str] | None = None
    ipm: IpMatcher | None = None
    expr: Predicate | None = None
    try:
        rid = spec.id
        uris = _compile_uris(rid, spec.uris, with_params)
        hosts: tuple[_HostSpec, ...] = _compile_hosts(rid, spec.hosts) if spec.hosts else ()
        if spec.methods:
            ms = _compile_methods(rid, spec.methods, method_cache)
        if spec.remote_addrs:
            try:
                ipm = IpMatcher(spec.remote_addrs, "remote_addrs")
            except ExprError as e:
                raise RouterError(rid, f"{e.message} in {e.path}") from None
        vars_ = spec.vars
        if vars_ is not None:
            try:
                expr = compile_expr(vars_)
            except ExprError as e:
                raise RouterError(rid, f"invalid vars: {e}") from None
            if isinstance(vars_, (list, tuple)) and not vars_:
                expr = None  # [] matches everything
        prio = spec.priority
        prio = -prio if type(prio) is int else -int(prio or 0)
        return (rid, spec.payload, uris, hosts, ms, ipm, expr, prio)
    except RouterError:
        raise
    except Exception as e:  # defensive: one odd route must not break the whole table
        rid = str(getattr(spec, "id", "?"))
        raise RouterError(rid, f"{type(e).__name__}: {e}") from e


def _route_entries(
    route: _Compiled, seq: int, host_first: bool
) -> list[tuple[_Where | None, bool, str, _Entry]]:
    """The candidates of one compiled route: ``(where, exact, key, entry)`` each.

    ``seq`` is the route's place in insertion order; a route's own entries on one
    key share it and keep their uri order (the sorts are stable).
    """
    rid, payload, uris, hosts, ms, ipm, expr, prio = route
    unconditional = ms is None and ipm is None and expr is None
    check: Check | None = None
    out: list[tuple[_Where | None, bool, str, _Entry]] = []
    if host_first and hosts:
        for is_wild, value, pat in hosts:
            where = (is_wild, value)
            for pattern, exact, key, rx, names in uris:
                m0 = _new_match(payload, rid, None, pattern, pat)
                if not unconditional:
                    check = _make_check(ms, ipm, expr, None, m0)
                out.append(
                    (where, exact, key,
                     (check, m0, rx, names, len(key), (prio, -len(pattern), seq)))
                )
    else:
        for pattern, exact, key, rx, names in uris:
            m0 = _new_match(payload, rid, None, pattern, "")
            if hosts:
                host_fn = _make_host_fn(hosts, payload, rid, pattern)
                check = _make_check(ms, ipm, expr, host_fn, m0)
            elif not unconditional:
                check = _make_check(ms, ipm, expr, None, m0)
            out.append(
                (None, exact, key, (check, m0, rx, names, len(key), (prio, -len(pattern), seq)))
            )
    return out


class Router:
    """Route table, updated in place by :meth:`update`.

    ``match(method, host, path, src, remote_addr)``: ``host`` lower-case without
    port, ``path`` the normalised uri without query string, ``src`` supplies
    variables for ``vars``.  Returns a :class:`Match` or None.
    """

    kind: str
    route_count: int
    _routes: dict[str, _Placed]
    _seq: int
    _nohost: _Table
    _nondot: int
    _match: TableMatcher

    def __init__(self, routes: Iterable[RouteSpec], kind: str = "radixtree_host_uri") -> None:
        self._setup(routes, kind, None)

    @classmethod
    def build(
        cls, routes: Iterable[RouteSpec], kind: str = "radixtree_host_uri"
    ) -> tuple[Router, list[tuple[str, str]]]:
        """Like ``Router(routes, kind)`` but skips bad routes, returning ``[(route_id, error)]``."""
        self = cls.__new__(cls)
        errors: list[tuple[str, str]] = []
        self._setup(routes, kind, errors)
        return self, errors

    def match(
        self, method: str, host: str, path: str, src: VarSource, remote_addr: str
    ) -> Match | None:  # pragma: no cover - shadowed per instance by the compiled matcher
        return self._match(method, host, path, src, remote_addr)

    def __len__(self) -> int:
        return self.route_count

    def __repr__(self) -> str:
        return f"<Router kind={self.kind} routes={self.route_count}>"

    def ids(self) -> KeysView[str]:
        """Ids of the routes in the table (a live view)."""
        return self._routes.keys()

    def update(
        self, remove: Iterable[str], add: Iterable[RouteSpec]
    ) -> list[tuple[str, str]]:
        """Remove the routes whose id is in ``remove`` and add ``add``, in place.

        A spec in ``add`` whose id is already in the table replaces that route (so
        listing the id in ``remove`` too is optional) and keeps its place in
        insertion order: among routes with equal priority and pattern length it
        is still tried where the old version was, exactly as in a fresh build of
        the resulting route list.  New ids go after every existing route.  Within
        ``add`` a later spec with the same id wins.

        Ids in ``remove`` that are not in the table are ignored.  Returns
        ``[(route_id, error)]`` for the specs of ``add`` that do not compile; like
        :meth:`build` those are left out, and a route they would have replaced is
        removed.  Every spec is compiled before the table is touched, so a failure
        never leaves it half updated.

        Cost: the keys of the changed routes, not the table size -- except that a
        prefix key appearing in or leaving a radix tree re-points the ``up`` links
        of the keys just below it, and one without a ``/`` after its first
        character (``/*``, ``/ap*``, ``*``) also refreshes the jump-table entries
        of every first segment it prefixes: adding or removing a catch-all ``/*``
        is linear in the prefix routes under it.
        """
        errors: list[tuple[str, str]] = []
        touched = set(remove)
        with_params = self._with_params
        method_cache = self._method_cache
        host_first = self._host_first
        # id -> (compiled route, placement), or None when the last spec for the id is bad
        compiled: dict[str, tuple[_Compiled, _Placed] | None] = {}
        for spec in add:
            try:
                route = _compile_route(spec, with_params, method_cache)
            except RouterError as e:
                errors.append((e.route_id, e.message))
                compiled[e.route_id] = None
                continue
            compiled[route[0]] = (route, _placement(spec, host_first))
        touched.update(compiled)

        placed = self._routes
        changed: dict[_Table, set[str]] = {}  # table -> its prefix keys that changed
        kept_seq: dict[str, int] = {}
        for rid in touched:
            rec = placed.pop(rid, None)
            if rec is None:
                continue
            recs = rec if type(rec) is list else (rec,)
            self.route_count -= len(recs)
            seq = min(self._unfile(rid, r, changed) for r in recs)
            if compiled.get(rid) is not None:
                kept_seq[rid] = seq
        for rid, new in compiled.items():
            if new is not None:
                new_seq = kept_seq.get(rid)
                if new_seq is None:
                    new_seq = self._seq = self._seq + 1
                placed[rid] = new[1]
                self.route_count += 1
                self._file(new[0], new_seq, changed)
        if changed:
            self._sync(changed)
        return errors

    def _unfile(self, rid: str, rec: _Placed, changed: dict[_Table, set[str]]) -> int:
        """Drop the entries of route ``rid`` from the keys ``rec`` filed them under;
        returns the route's seq (its place in insertion order)."""
        hosts: tuple[_HostSpec, ...] = ()
        if self._host_first:
            uris, spec_hosts = cast(tuple[Sequence[str], Sequence[str]], rec)
            if spec_hosts:
                hosts = _compile_hosts(rid, spec_hosts)
        else:
            uris = cast(Sequence[str], rec)
        seq = self._seq + 1  # only if every entry went with an earlier spec of the same id
        wheres: list[_Where | None] = (
            [(is_wild, value) for is_wild, value, _pat in hosts] if hosts else [None])
        for where in wheres:
            table = self._table(where)
            keys = changed.get(table)
            if keys is None:
                keys = changed[table] = set()
            for _pattern, exact, key, _rx, _names in _compile_uris(rid, uris, self._with_params):
                d = table.exact if exact else table.prefix
                old = d.get(key, ())
                kept: list[_Entry] = []
                for e in old:
                    if e[1].route_id != rid:
                        kept.append(e)
                    elif e[5][2] < seq:
                        seq = e[5][2]
                if len(kept) == len(old):
                    continue  # a repeated uri or host: already done
                if kept:
                    d[key] = tuple(kept)
                else:
                    del d[key]
                if not exact:
                    keys.add(key)
        return seq

    def _file(self, route: _Compiled, seq: int, changed: dict[_Table, set[str]]) -> None:
        """Merge the entries of a compiled route into its keys, in match order."""
        for where, exact, key, entry in _route_entries(route, seq, self._host_first):
            table = self._table(where)
            keys = changed.get(table)
            if keys is None:
                keys = changed[table] = set()
            d = table.exact if exact else table.prefix
            old = d.get(key)
            # stable sort: the route's own entries on this key stay in uri order
            d[key] = (entry,) if old is None else tuple(sorted(old + (entry,), key=_order_key))
            if not exact:
                keys.add(key)

    def _sync(self, changed: dict[_Table, set[str]]) -> None:
        """Recompile the changed tables, unfile emptied host tables, relink the top level."""
        for table, keys in changed.items():
            table.sync(keys)
            where = table.where
            if where is None:
                continue
            is_wild, name = where
            tables, fns = ((self._wilds, self._wild_fns) if is_wild
                           else (self._hosts, self._host_fns))
            if not table.empty():
                fns[name] = table.match
            elif tables.pop(name, None) is not None:
                fns.pop(name, None)
                if is_wild and not name.startswith("."):
                    self._nondot -= 1
        self._relink()

    def _table(self, where: _Where | None) -> _Table:
        """The table filed at ``where`` (created empty if missing)."""
        if where is None:
            return self._nohost
        is_wild, name = where
        tables = self._wilds if is_wild else self._hosts
        table = tables.get(name)
        if table is None:
            table = tables[name] = _Table(where, {}, {})
            if is_wild and not name.startswith("."):
                self._nondot += 1
        return table

    def _relink(self) -> None:
        """Compile the top-level matcher: the host-less table's, which tries the host tables
        first (radixtree_host_uri).  Called after every change, as the closures capture
        tables."""
        nohost = self._nohost
        nohost.hosts = (_HostIndex(self._host_fns, self._wild_fns, self._nondot == 0)
                        if self._host_fns or self._wild_fns else None)
        matcher = nohost.match
        self._match = matcher
        # instance attribute shadows the method: one call less on the hot path
        # (ignore: a method rebound to a positional-only callable on purpose)
        self.match = matcher  # type: ignore[method-assign]

    def _setup(
        self, routes: Iterable[RouteSpec], kind: str, errors: list[tuple[str, str]] | None
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown router kind {kind!r}; expected one of {KINDS}")
        self.kind = kind
        self._with_params = kind == "radixtree_uri_with_parameter"
        self._host_first = kind == "radixtree_host_uri"
        self._method_cache: dict[Any, frozenset[str]] = {}
        gc_was_enabled = gc.isenabled()
        gc.disable()  # the build allocates many long-lived objects: avoid gen2 churn
        try:
            self._load(routes, errors)
        finally:
            if gc_was_enabled:
                gc.enable()
        self._relink()

    def _load(self, routes: Iterable[RouteSpec], errors: list[tuple[str, str]] | None) -> None:
        """Compile ``routes`` into fresh tables (entries collected in lists, sorted once)."""
        with_params = self._with_params
        host_first = self._host_first
        method_cache = self._method_cache
        nohost_exact: dict[str, list[_Entry]] = {}
        nohost_prefix: dict[str, list[_Entry]] = {}
        by_where: dict[_Where, tuple[dict[str, list[_Entry]], dict[str, list[_Entry]]]] = {}
        placed: dict[str, _Placed] = {}
        seq = 0
        for spec in routes:
            try:
                route = _compile_route(spec, with_params, method_cache)
            except RouterError as e:
                if errors is None:
                    raise
                errors.append((e.route_id, e.message))
                continue
            seq += 1
            rid = route[0]
            rec = _placement(spec, host_first)
            prev = placed.get(rid)
            if prev is None:
                placed[rid] = rec
            else:  # an id given twice: both routes are filed, keep both placements
                placed[rid] = (prev + [rec] if type(prev) is list
                               else [cast(_Placement, prev), rec])
            for where, exact, key, entry in _route_entries(route, seq, host_first):
                if where is None:
                    d = nohost_exact if exact else nohost_prefix
                else:
                    pair = by_where.get(where)
                    if pair is None:
                        pair = by_where[where] = ({}, {})
                    d = pair[0] if exact else pair[1]
                lst = d.get(key)
                if lst is None:
                    d[key] = [entry]
                else:
                    lst.append(entry)
        self._seq = self.route_count = seq
        self._routes = placed
        self._nohost = _Table(None, _tupled(nohost_exact), _tupled(nohost_prefix))
        self._hosts: dict[str, _Table] = {}
        self._wilds: dict[str, _Table] = {}
        self._host_fns: dict[str, TableMatcher] = {}
        self._wild_fns: dict[str, TableMatcher] = {}
        self._nondot = 0  # wildcard suffixes not starting with "." (see _HostIndex)
        for where, (exact_d, prefix_d) in by_where.items():
            table = _Table(where, _tupled(exact_d), _tupled(prefix_d))
            is_wild, name = where
            if is_wild:
                self._wilds[name] = table
                self._wild_fns[name] = table.match
                if not name.startswith("."):
                    self._nondot += 1
            else:
                self._hosts[name] = table
                self._host_fns[name] = table.match


_HOST_CACHE_MAX = 4096


class _HostIndex:
    """radixtree_host_uri: which host tables a request's host tries, in order -- the exact
    host, then wildcard suffixes longest first (the host-less table comes last).

    Wildcard suffixes normally start with '.' (``dots_only``), so walking the
    host's dots enumerates every candidate suffix, longest first.  "*foo.com"
    style patterns need every character position instead.  The answer depends on
    the host alone and a gateway sees few distinct hosts: it is memoised in
    ``cache`` (bounded; flushed when full), which the host-less table's
    :meth:`_Table.match` reads directly.  A new index is made whenever the host tables change.
    """

    __slots__ = ("cache", "cache_get", "dots_only", "host_tables", "wild_tables")

    def __init__(
        self,
        host_tables: dict[str, TableMatcher],
        wild_tables: dict[str, TableMatcher],
        dots_only: bool,
    ) -> None:
        self.host_tables = host_tables
        self.wild_tables = wild_tables
        self.dots_only = dots_only
        self.cache: dict[str, tuple[TableMatcher, ...]] = {}
        self.cache_get = self.cache.get

    def fill(self, host: str) -> tuple[TableMatcher, ...]:
        found: list[TableMatcher] = []
        t = self.host_tables.get(host)
        if t is not None:
            found.append(t)
        wild_tables = self.wild_tables
        if wild_tables and host:
            wild_get = wild_tables.get
            if self.dots_only:
                i = host.find(".")
                while i != -1:
                    t = wild_get(host[i:])
                    if t is not None:
                        found.append(t)
                    i = host.find(".", i + 1)
            else:
                for i in range(len(host)):
                    t = wild_get(host[i:])
                    if t is not None:
                        found.append(t)
        tables = tuple(found)
        cache = self.cache
        if len(cache) >= _HOST_CACHE_MAX:
            cache.clear()
        cache[host] = tables
        return tables
