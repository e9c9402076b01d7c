"""Peak-EWMA with power-of-two-choices (APISIX ``ewma`` plus Finagle's Peak-EWMA load term).

From APISIX ``apisix/balancer/ewma.lua`` (kept as is):

* per-node latency average with decay time ``DECAY_TIME = 10`` s; on a sample ``rtt``
  observed ``td`` seconds after the previous one: ``w = exp(-td/10)``,
  ``ewma = ewma*w + rtt*(1-w)``; the first sample sets ``ewma = rtt``;
* reading the score decays it towards 0 with the same factor (``get_or_update_ewma(addr,
  0, false)``), so a node that has not been sampled for a while gets probed again;
* pick: drop tried nodes, then two *distinct* random candidates, keep the lower score
  (the first candidate on ties); with one candidate it is returned directly.

Additions (not in APISIX's ewma.lua, which ignores in-flight, weight and failures):

* Peak: a sample above the current average replaces it at once (Finagle ``PeakEwma``),
  so a node that turns slow is avoided immediately instead of after ~10 s.
* Load: ``score = ewma * (in_flight + 1) / weight``; a node with no latency data yet but
  requests in flight scores ``PENALTY + in_flight`` (Finagle) so a fresh node is probed,
  not flooded.
* Failures: ``after(failed=True)`` records ``max(latency, failure_penalty_s)``, so a node
  failing fast (connection refused) does not look like the fastest node.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from math import exp

from pylon.upstream.balancer import (
    BALANCERS,
    HashKeySource,
    HealthFn,
    Node,
    TieredBalancer,
)

__all__ = ["EWMA", "DECAY_TIME_S", "PENALTY"]

DECAY_TIME_S = 10.0
PENALTY = 1e12  # score of a node with in-flight requests but no latency sample yet


class _Stat:
    __slots__ = ("cost", "stamp", "inflight")

    def __init__(self) -> None:
        self.cost = 0.0
        self.stamp: float | None = None
        self.inflight = 0


class _Tier:
    __slots__ = ("nodes", "stats", "weights", "n")

    def __init__(self, nodes: list[Node], stats: list[_Stat]) -> None:
        self.nodes = tuple(nodes)
        self.stats = tuple(stats)
        self.weights = tuple(float(n.weight) for n in nodes)
        self.n = len(nodes)


class EWMA(TieredBalancer):
    """APISIX ``ewma`` upstream type."""

    name = "ewma"
    __slots__ = ("_stats", "_clock", "_random", "_tau", "_penalty_s", "_peak", "_t0")

    def __init__(
        self,
        nodes: Sequence[Node],
        *,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
        decay_s: float = DECAY_TIME_S,
        failure_penalty_s: float = 1.0,
        peak: bool = True,
        previous: object | None = None,
        all_unhealthy_fallback: bool = True,
    ) -> None:
        if decay_s <= 0:
            raise ValueError("decay_s must be > 0")
        self._stats: dict[str, _Stat] = {}
        self._clock = clock or time.monotonic
        self._random = (rng or random.Random()).random
        self._tau = float(decay_s)
        self._penalty_s = float(failure_penalty_s)
        self._peak = peak
        super().__init__(nodes, all_unhealthy_fallback=all_unhealthy_fallback)
        self._t0: _Tier | None = self._tiers[0] if self._tiers else None
        if isinstance(previous, EWMA):
            # Carry latency knowledge across an upstream change (APISIX keeps it in a
            # shared dict keyed by addr).  In-flight counts stay with the old object,
            # whose after() calls the in-flight requests will make.
            for addr, st in self._stats.items():
                old = previous._stats.get(addr)
                if old is not None and old.stamp is not None:
                    st.cost, st.stamp = old.cost, old.stamp

    def _make_tier(self, nodes: list[Node]) -> _Tier:
        stats = []
        for n in nodes:
            st = self._stats[n.addr] = _Stat()
            stats.append(st)
        return _Tier(nodes, stats)

    # -- scoring ----------------------------------------------------------------------
    def _score(self, st: _Stat, weight: float, now: float) -> float:
        cost = st.cost
        if cost:
            td = now - st.stamp  # type: ignore[operator]
            if td > 0:
                cost *= exp(-td / self._tau)
        f = st.inflight
        if f and not cost:
            return PENALTY + f
        return cost * (f + 1) / weight

    def score(self, node: Node) -> float | None:
        """Current score of ``node`` (lower is better); None if unknown."""
        st = self._stats.get(node.addr)
        if st is None:
            return None
        return self._score(st, float(node.weight), self._clock())

    def _p2c(self, tier: _Tier, idx: Sequence[int]) -> Node:
        m = len(idx)
        rnd = self._random
        a = int(rnd() * m)
        b = int(rnd() * (m - 1))
        if b >= a:
            b += 1
        a, b = idx[a], idx[b]
        now = self._clock()
        stats = tier.stats
        weights = tier.weights
        if self._score(stats[a], weights[a], now) > self._score(stats[b], weights[b], now):
            a = b
        return tier.nodes[a]

    def _pick_tier(
        self, tier: _Tier, req: object,
        tried: frozenset[str] | set[str] | None, healthy: HealthFn | None,
    ) -> Node | None:
        if tried is None and healthy is None:
            idx: Sequence[int] = range(tier.n)
        else:
            nodes = tier.nodes
            idx = [
                i
                for i in range(tier.n)
                if (tried is None or nodes[i].addr not in tried)
                and (healthy is None or healthy(nodes[i]))
            ]
        if not idx:
            return None
        if len(idx) == 1:
            return tier.nodes[idx[0]]
        return self._p2c(tier, idx)

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
            n = t.n
            if n == 1:
                return t.nodes[0]
            rnd = self._random
            a = int(rnd() * n)
            b = int(rnd() * (n - 1))
            if b >= a:
                b += 1
            now = self._clock()
            stats = t.stats
            weights = t.weights
            if self._score(stats[a], weights[a], now) > self._score(stats[b], weights[b], now):
                a = b
            return t.nodes[a]
        return self._pick_slow(req, tried, healthy)

    # -- feedback ---------------------------------------------------------------------
    def before(self, node: Node) -> None:
        st = self._stats.get(node.addr)
        if st is not None:
            st.inflight += 1

    def after(self, node: Node, latency_s: float | None = None, failed: bool = False) -> None:
        st = self._stats.get(node.addr)
        if st is None:
            return
        if st.inflight > 0:
            st.inflight -= 1
        rtt = latency_s
        if failed:
            rtt = self._penalty_s if rtt is None or rtt < self._penalty_s else rtt
        if rtt is None:
            return
        if rtt < 0:
            rtt = 0.0
        self.observe(node, rtt, _stat=st)

    def observe(self, node: Node, rtt: float, *, _stat: _Stat | None = None) -> None:
        """Record one latency sample (seconds) without touching in-flight counts."""
        st = _stat or self._stats.get(node.addr)
        if st is None:
            return
        now = self._clock()
        if st.stamp is None or (self._peak and rtt > st.cost):
            st.cost = rtt
        else:
            td = now - st.stamp
            w = exp(-td / self._tau) if td > 0 else 1.0
            st.cost = st.cost * w + rtt * (1.0 - w)
        st.stamp = now


BALANCERS["ewma"] = EWMA
