"""Consistent hashing, ring-compatible with APISIX ``chash`` (lua-resty-balancer ``resty.chash``).

Ring (resty.chash ``_precompute`` + ``chash.c``):

* node id = ``"host:port"`` with every ``:`` replaced by NUL (APISIX ``chash.lua``);
* 160 points per weight unit; point ``k`` of a node hashes
  ``crc32(id || le32(point[k-1]))`` with ``point[-1] = 0``;
* lookup: crc32 of the key, first point with ``hash >= key_hash``, wrapping to point 0
  (so the same key lands on the same node as in APISIX, as long as the tier has at most
  ``MAX_POINTS`` points; beyond that weights are reduced, see ``_ring_weights``);
* retry: walk to the following points, skipping nodes already tried (APISIX keeps
  ``ctx.chash_last_server_index`` and calls ``picker:next``; walking from the key's point
  and skipping every tried node reaches the same node).

Unhealthy nodes are skipped by the same forward walk, which is exactly a lookup on the
ring built from the healthy nodes only (what APISIX does: it rebuilds the picker from
healthy nodes).  So a node going down only remaps its own keys.

Hash key (APISIX ``fetch_chash_hash_key``): ``vars`` -> ``var(key)``; ``header`` ->
``var("http_" + key)`` (lower-cased, ``-`` -> ``_``, as APISIX ``ctx.var`` does);
``cookie`` -> ``var("cookie_" + key)``; ``consumer`` -> ``consumer_name``;
``vars_combinations`` -> ``$var`` / ``${var}`` substituted, missing vars -> "" and when
none resolved the key counts as missing.  A missing (None) key falls back to
``var("remote_addr")``; an empty string is a valid key (Lua truthiness).
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left
from collections.abc import Callable, Sequence
from math import gcd
from typing import Any
from zlib import crc32

from pylon.upstream.balancer import (
    BALANCERS,
    HashKeySource,
    HealthFn,
    Node,
    TieredBalancer,
)

__all__ = ["CHash", "HASH_ON", "POINTS_PER_WEIGHT", "node_points"]

POINTS_PER_WEIGHT = 160  # CONSISTENT_POINTS in resty.chash / apisix chash.lua
#: Upper bound on ring points per tier.  Above it weights are divided by their gcd and,
#: if still too large, scaled down proportionally (ring then differs from APISIX's).
MAX_POINTS = 1 << 16

HASH_ON = ("vars", "header", "cookie", "consumer", "vars_combinations")

# APISIX core.utils.resolve_var pattern: $name or ${name}, not preceded by a backslash.
_VAR_RE = re.compile(r"(?<!\\)\$\{?(\w+)\}?")


def node_points(addr: str, weight: int) -> list[int]:
    """The ``160 * weight`` ring hashes of one node, in generation order."""
    base = crc32(addr.replace(":", "\0").encode())
    out = [0] * (POINTS_PER_WEIGHT * weight)
    prev = 0
    for k in range(len(out)):
        prev = crc32(prev.to_bytes(4, "little"), base)
        out[k] = prev
    return out


def _ring_weights(nodes: list[Node]) -> list[int]:
    weights = [n.weight for n in nodes]
    if sum(weights) * POINTS_PER_WEIGHT <= MAX_POINTS:
        return weights
    g = 0
    for w in weights:
        g = gcd(g, w)
    weights = [w // g for w in weights]
    total = sum(weights) * POINTS_PER_WEIGHT
    if total > MAX_POINTS:
        scale = MAX_POINTS / total
        weights = [max(1, int(w * scale)) for w in weights]
    return weights


_OWNER_SCALE = 1 << 20  # max nodes per tier; hash (32 bits) + owner (20 bits) fit a double
_OWNER_INV = 1.0 / _OWNER_SCALE


class _Ring:
    """Sorted ring points packed as ``hash + owner / 2**20`` doubles (exact: 52 bits).
    ``bisect_left(points, float(h))`` is the first point with ``hash >= h``."""

    __slots__ = ("nodes", "points", "owners", "npoints")

    def __init__(self, nodes: list[Node]) -> None:
        if len(nodes) >= _OWNER_SCALE:
            raise ValueError("too many nodes in one priority tier")
        self.nodes = tuple(nodes)
        packed: list[float] = []
        for idx, (n, w) in enumerate(zip(nodes, _ring_weights(nodes), strict=True)):
            frac = idx * _OWNER_INV
            packed.extend([h + frac for h in node_points(n.addr, w)])
        packed.sort()
        self.points = array("d", packed)
        # Node per point: one list index at lookup time (8 bytes per point).
        self.owners = [self.nodes[int(v % 1.0 * _OWNER_SCALE)] for v in packed]
        self.npoints = len(packed)

    def find(self, h: float) -> Node:
        i = bisect_left(self.points, h)
        if i == self.npoints:
            i = 0
        return self.owners[i]

    def walk(
        self,
        h: float,
        tried: frozenset[str] | set[str] | None,
        healthy: Callable[[Node], bool] | None,
    ) -> Node | None:
        ok = {
            n.addr
            for n in self.nodes
            if (tried is None or n.addr not in tried) and (healthy is None or healthy(n))
        }
        if not ok:
            return None
        owners = self.owners
        npoints = self.npoints
        i = bisect_left(self.points, h)
        for _ in range(npoints):
            if i == npoints:
                i = 0
            n = owners[i]
            if n.addr in ok:
                return n
            i += 1
        return None  # unreachable: some node is eligible and owns points


def _key_getter(hash_on: str, key: str | None) -> Callable[[Any], Any]:
    if hash_on == "consumer":
        return lambda req: getattr(req, "consumer_name", None)
    if not key:
        raise ValueError(f"chash hash_on={hash_on!r} needs a key")
    if hash_on == "vars":
        name = key
    elif hash_on == "header":
        name = "http_" + key.lower().replace("-", "_")
    elif hash_on == "cookie":
        name = "cookie_" + key
    elif hash_on == "vars_combinations":
        parts = _VAR_RE.split(key)  # [literal, var, literal, var, ..., literal]
        if len(parts) == 1:
            const = key
            return lambda req: const
        literals = parts[0::2]
        names = parts[1::2]

        def combine(req: Any) -> str | None:
            var = req.var
            out = [literals[0]]
            resolved = 0
            # split() with one group: len(literals) == len(names) + 1; per request, so no strict=
            for name, lit in zip(names, literals[1:]):  # noqa: B905
                v = var(name)
                if v is not None:
                    resolved += 1
                    out.append(v if isinstance(v, str) else str(v))
                out.append(lit)
            return "".join(out) if resolved else None

        return combine
    else:
        raise ValueError(f"unknown chash hash_on {hash_on!r}; expected one of {HASH_ON}")
    return lambda req: req.var(name)


class CHash(TieredBalancer):
    """APISIX ``chash`` upstream type."""

    name = "chash"
    __slots__ = ("hash_on", "key", "_get_key", "_r0")

    def __init__(
        self,
        nodes: Sequence[Node],
        *,
        hash_on: str = "vars",
        key: str | None = "remote_addr",
        all_unhealthy_fallback: bool = True,
    ) -> None:
        self.hash_on = hash_on or "vars"
        self.key = key
        self._get_key = _key_getter(self.hash_on, key)
        super().__init__(nodes, all_unhealthy_fallback=all_unhealthy_fallback)
        self._r0: _Ring | None = self._tiers[0] if self._tiers else None

    def _make_tier(self, nodes: list[Node]) -> _Ring:
        return _Ring(nodes)

    def hash_key(self, req: HashKeySource | None) -> str:
        """The string APISIX would hash for this request."""
        if req is None:
            return ""
        k = self._get_key(req)
        if k is None:
            k = req.var("remote_addr")
            if k is None:
                return ""
        return k if isinstance(k, str) else str(k)

    def _pick_tier(
        self, tier: _Ring, h: float,
        tried: frozenset[str] | set[str] | None, healthy: HealthFn | None,
    ) -> Node | None:
        if tried is None and healthy is None:
            return tier.find(h)
        return tier.walk(h, tried, healthy)

    def pick(
        self,
        req: HashKeySource | None = None,
        tried: frozenset[str] | set[str] | None = None,
        healthy: Callable[[Node], bool] | None = None,
    ) -> Node | None:
        r0 = self._r0
        if r0 is None:
            return None
        if req is None:
            h = 0.0  # crc32(b"")
        else:
            k = self._get_key(req)
            if k is None:
                k = req.var("remote_addr")
                if k is None:
                    k = ""
            # float key: bisect then compares doubles with doubles (2x faster)
            if k.__class__ is str:
                h = float(crc32(k.encode("utf-8", "surrogatepass")))
            elif isinstance(k, (bytes, bytearray, memoryview)):
                h = float(crc32(k))
            else:
                h = float(crc32(str(k).encode("utf-8", "surrogatepass")))
        if not tried and healthy is None:
            i = bisect_left(r0.points, h)
            if i == r0.npoints:
                i = 0
            return r0.owners[i]
        return self._pick_slow(h, tried, healthy)


BALANCERS["chash"] = CHash
