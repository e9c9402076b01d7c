"""Smooth weighted round robin (nginx ``ngx_http_upstream_get_peer``).

Every pick adds each eligible node's weight to its ``current_weight``, chooses the node
with the greatest ``current_weight`` (the first one in config order on ties) and
subtracts the total weight from the chosen node.  Weights {5,1,1} give
``a a b a c a a``; {3,1} gives ``a a b a``.

The sequence is periodic with period ``sum(w)/gcd(w)`` (after a full period every
current weight is back to 0), so when the period is small it is precomputed and a pick
is one list index plus a cursor bump.  Larger periods run the live O(n) algorithm.

Exclusions (``tried`` / ``healthy``): the eligible subset of a tier is balanced by its
own smooth-WRR state, cached per subset, exactly like APISIX ``swrr.lua`` which skips
tried peers without advancing their current weight.  The full-set cursor does not move
meanwhile, so when the excluded nodes come back the original sequence resumes.

Note: APISIX's ``roundrobin`` type uses ``resty.roundrobin`` (interleaved WRR with a
random start, e.g. 3:1 -> ``a a a b``); this module deliberately implements the nginx
smooth variant, which APISIX also ships as ``swrr``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import gcd

from pylon.upstream.balancer import (
    BALANCERS,
    HashKeySource,
    HealthFn,
    Node,
    TieredBalancer,
)

__all__ = ["RoundRobin", "swrr_sequence"]

#: Longest precomputed cycle (list entries) per tier / per cached subset.
CYCLE_CAP = 4096
#: Max cached exclusion subsets per tier (cleared wholesale when exceeded).
SUBSET_CACHE_CAP = 64


def swrr_sequence(weights: Sequence[int], count: int) -> list[int]:
    """Indices picked by ``count`` rounds of nginx smooth WRR starting from zero state."""
    n = len(weights)
    total = sum(weights)
    cw = [0] * n
    out = []
    for _ in range(count):
        best = -1
        best_v = 0
        for i in range(n):
            v = cw[i] + weights[i]
            cw[i] = v
            if best < 0 or v > best_v:
                best, best_v = i, v
        cw[best] = best_v - total
        out.append(best)
    return out


class _Swrr:
    """Smooth WRR over a fixed list of nodes (all weights > 0)."""

    __slots__ = ("nodes", "weights", "seq", "pos", "period", "cw", "total", "full", "subsets")

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = tuple(nodes)
        weights = [n.weight for n in nodes]
        g = 0
        for w in weights:
            g = gcd(g, w)
        reduced = [w // g for w in weights]
        period = sum(reduced)
        self.weights = reduced
        self.total = period
        self.pos = 0
        self.full = (1 << len(nodes)) - 1
        self.subsets: dict[int, _Swrr] = {}
        if period <= CYCLE_CAP:
            self.seq: list[Node] | None = [self.nodes[i] for i in swrr_sequence(reduced, period)]
            self.period = period
            self.cw: list[int] = []
        else:
            self.seq = None
            self.period = 0
            self.cw = [0] * len(nodes)

    def next(self) -> Node:
        seq = self.seq
        if seq is not None:
            i = self.pos
            j = i + 1
            self.pos = 0 if j == self.period else j
            return seq[i]
        cw = self.cw
        weights = self.weights
        best = -1
        best_v = 0
        for i in range(len(cw)):
            v = cw[i] + weights[i]
            cw[i] = v
            if best < 0 or v > best_v:
                best, best_v = i, v
        cw[best] = best_v - self.total
        return self.nodes[best]

    def next_among(
        self,
        tried: frozenset[str] | set[str] | None,
        healthy: Callable[[Node], bool] | None,
    ) -> Node | None:
        mask = 0
        bit = 1
        for n in self.nodes:
            if (tried is None or n.addr not in tried) and (healthy is None or healthy(n)):
                mask |= bit
            bit <<= 1
        if mask == self.full:
            return self.next()
        if not mask:
            return None
        sub = self.subsets.get(mask)
        if sub is None:
            if len(self.subsets) >= SUBSET_CACHE_CAP:
                self.subsets.clear()
            sub = _Swrr([n for i, n in enumerate(self.nodes) if mask >> i & 1])
            self.subsets[mask] = sub
        return sub.next()


class RoundRobin(TieredBalancer):
    """APISIX ``roundrobin`` upstream type, nginx smooth-WRR semantics."""

    name = "roundrobin"
    __slots__ = ("_t0",)

    def __init__(self, nodes: Sequence[Node], *, all_unhealthy_fallback: bool = True) -> None:
        super().__init__(nodes, all_unhealthy_fallback=all_unhealthy_fallback)
        self._t0: _Swrr | None = self._tiers[0] if self._tiers else None

    def _make_tier(self, nodes: list[Node]) -> _Swrr:
        return _Swrr(nodes)

    def _pick_tier(
        self, tier: _Swrr, req: object,
        tried: frozenset[str] | set[str] | None, healthy: HealthFn | None,
    ) -> Node | None:
        if tried is None and healthy is None:
            return tier.next()
        return tier.next_among(tried, healthy)

    def pick(
        self,
        req: HashKeySource | None = None,
        tried: frozenset[str] | set[str] | None = None,
        healthy: Callable[[Node], bool] | None = None,
    ) -> Node | None:
        if not tried and healthy is None:
            t = self._t0
            if t is None:
                return None
            seq = t.seq
            if seq is not None:
                i = t.pos
                j = i + 1
                t.pos = 0 if j == t.period else j
                return seq[i]
            return t.next()
        return self._pick_slow(req, tried, healthy)


BALANCERS["roundrobin"] = RoundRobin
