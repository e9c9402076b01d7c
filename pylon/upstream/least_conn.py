"""Least connections (APISIX ``least_conn``).

APISIX keeps a min-heap keyed by ``score``: ``1/weight`` initially, ``+1/weight`` when a
request is sent to the node and ``-1/weight`` when it finishes, i.e.
``score = (in_flight + 1) / weight``.  Here ``before()``/``after()`` maintain
``in_flight`` and pick returns the minimum score.

Ties go to the node picked least recently (round robin among equally loaded nodes),
which is what APISIX's heap does in practice under sequential traffic, and avoids
sending every request to the first node when the upstream is idle.  Scores are computed
by true division, so equal ratios compare equal exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pylon.upstream.balancer import (
    BALANCERS,
    HashKeySource,
    HealthFn,
    Node,
    TieredBalancer,
)

__all__ = ["LeastConn"]


class _Tier:
    __slots__ = ("nodes", "weights", "inflight", "entries")

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = tuple(nodes)
        self.weights = [n.weight for n in nodes]
        self.inflight = [0] * len(nodes)
        count = len(nodes)
        # (score, last_pick_seq, index): min() gives least score, then least recently
        # picked.  Initial seqs are negative and increasing in config order.
        self.entries = [(1 / n.weight, i - count, i) for i, n in enumerate(nodes)]


class LeastConn(TieredBalancer):
    """APISIX ``least_conn`` upstream type."""

    name = "least_conn"
    __slots__ = ("_t0", "_index", "_seq")

    def __init__(self, nodes: Sequence[Node], *, all_unhealthy_fallback: bool = True) -> None:
        self._index: dict[str, tuple[_Tier, int]] = {}
        self._seq = 0
        super().__init__(nodes, all_unhealthy_fallback=all_unhealthy_fallback)
        self._t0: _Tier | None = self._tiers[0] if self._tiers else None

    def _make_tier(self, nodes: list[Node]) -> _Tier:
        tier = _Tier(nodes)
        for i, n in enumerate(nodes):
            self._index[n.addr] = (tier, i)
        return tier

    def _take(self, tier: _Tier, e: tuple[float, int, int]) -> Node:
        self._seq = seq = self._seq + 1
        i = e[2]
        tier.entries[i] = (e[0], seq, i)
        return tier.nodes[i]

    def _pick_tier(
        self, tier: _Tier, req: object,
        tried: frozenset[str] | set[str] | None, healthy: HealthFn | None,
    ) -> Node | None:
        if tried is None and healthy is None:
            return self._take(tier, min(tier.entries))
        nodes = tier.nodes
        best = None
        for e in tier.entries:
            n = nodes[e[2]]
            if ((tried is None or n.addr not in tried) and (healthy is None or healthy(n))
                    and (best is None or e < best)):
                best = e
        return None if best is None else self._take(tier, best)

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
            entries = t.entries
            e = min(entries)
            self._seq = seq = self._seq + 1
            i = e[2]
            entries[i] = (e[0], seq, i)
            return t.nodes[i]
        return self._pick_slow(req, tried, healthy)

    def before(self, node: Node) -> None:
        loc = self._index.get(node.addr)
        if loc is None:
            return
        tier, i = loc
        f = tier.inflight[i] + 1
        tier.inflight[i] = f
        tier.entries[i] = ((f + 1) / tier.weights[i], tier.entries[i][1], i)

    def after(self, node: Node, latency_s: float | None = None, failed: bool = False) -> None:
        loc = self._index.get(node.addr)
        if loc is None:
            return
        tier, i = loc
        f = tier.inflight[i]
        if f <= 0:
            return
        f -= 1
        tier.inflight[i] = f
        tier.entries[i] = ((f + 1) / tier.weights[i], tier.entries[i][1], i)

    def in_flight(self, node: Node) -> int:
        loc = self._index.get(node.addr)
        return 0 if loc is None else loc[0].inflight[loc[1]]


BALANCERS["least_conn"] = LeastConn
