"""Upstream load-balancer interface, shared tier logic and factory.

Semantics follow Apache APISIX (``apisix/balancer.lua``, ``apisix/balancer/*.lua``):

* Nodes are grouped into priority tiers (higher ``priority`` first).  A request is served
  by the highest tier that still has a usable node; a lower tier is only reached when
  every node of the higher tiers was tried (retries) or is unhealthy
  (``apisix/balancer/priority.lua``).
* A node is *usable* when its weight is > 0 (APISIX: weight 0 disables a node), its
  address is not in ``tried`` and ``healthy(node)`` is true.
* When *no* node of the upstream is healthy, APISIX ignores health and balances over all
  nodes ("all upstream nodes is unhealthy, use default" in ``fetch_health_nodes``).  This
  is on by default here too (``all_unhealthy_fallback=True``); ``tried`` is still honoured.

Balancer objects hold long-lived mutable state (round-robin cursor, in-flight counts,
latency averages).  They are used from a single asyncio thread: no locking.  A request
must call ``after()`` on the same balancer object it called ``before()`` on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

__all__ = [
    "BALANCERS",
    "Balancer",
    "HashKeySource",
    "Node",
    "create_balancer",
]


@dataclass(frozen=True, slots=True)
class Node:
    """One upstream endpoint.

    ``addr`` is precomputed once: ``"host:port"``, or ``"[v6]:port"`` for a bare IPv6
    literal host.  It is the identity used by ``tried`` sets and balancer state.
    """

    host: str
    port: int
    weight: int = 1
    priority: int = 0
    addr: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        host = self.host
        if ":" in host and not host.startswith("["):
            addr = f"[{host}]:{self.port}"
        else:
            addr = f"{host}:{self.port}"
        object.__setattr__(self, "addr", addr)


@runtime_checkable
class HashKeySource(Protocol):
    """What ``chash`` reads from a request."""

    consumer_name: str | None

    def var(self, name: str) -> str | None:
        """nginx-style variables: ``remote_addr``, ``uri``, ``arg_x``, ``http_x_y``,
        ``cookie_z``."""
        ...


HealthFn = Callable[[Node], bool]


class Balancer(Protocol):
    def pick(
        self,
        req: HashKeySource | None,
        tried: frozenset[str] | set[str] | None = None,
        healthy: Callable[[Node], bool] | None = None,
    ) -> Node | None: ...

    def before(self, node: Node) -> None: ...

    def after(self, node: Node, latency_s: float | None, failed: bool) -> None: ...


def _usable_nodes(nodes: Sequence[Node]) -> list[Node]:
    """Dedupe by addr (APISIX keys nodes by ``host:port``: the last entry's weight and
    priority win, the first entry's position is kept) and drop weight-0 nodes."""
    by_addr: dict[str, Node] = {}
    for n in nodes:
        if n.weight < 0:
            raise ValueError(f"node {n.addr}: negative weight {n.weight}")
        by_addr[n.addr] = n
    return [n for n in by_addr.values() if n.weight > 0]


class TieredBalancer:
    """Base class: priority tiers, ``tried``/``healthy`` filtering and the
    all-unhealthy fallback.  Subclasses build one algorithm object per tier
    (``_make_tier``), pick within one tier (``_pick_tier``) and usually override
    ``pick`` with an inlined fast path for "no tried, no health filter" that serves
    tier 0 directly (without exclusions tier 0 always has a usable node)."""

    name: ClassVar[str] = ""
    __slots__ = ("nodes", "_usable", "_tiers", "_fallback")

    def __init__(self, nodes: Sequence[Node], *, all_unhealthy_fallback: bool = True) -> None:
        self.nodes: tuple[Node, ...] = tuple(nodes)
        usable = _usable_nodes(self.nodes)
        groups: dict[int, list[Node]] = {}
        for n in usable:
            groups.setdefault(n.priority, []).append(n)
        self._usable: tuple[Node, ...] = tuple(usable)
        self._fallback = all_unhealthy_fallback
        self._tiers: tuple[Any, ...] = tuple(
            self._make_tier(groups[p]) for p in sorted(groups, reverse=True)
        )

    # -- subclass hooks -------------------------------------------------------------
    def _make_tier(self, nodes: list[Node]) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _pick_tier(
        self,
        tier: Any,
        req: Any,
        tried: frozenset[str] | set[str] | None,
        healthy: HealthFn | None,
    ) -> Node | None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- public API -----------------------------------------------------------------
    def pick(
        self,
        req: HashKeySource | None = None,
        tried: frozenset[str] | set[str] | None = None,
        healthy: HealthFn | None = None,
    ) -> Node | None:
        return self._pick_slow(req, tried, healthy)

    def before(self, node: Node) -> None:
        """Request started on ``node`` (no-op unless the algorithm counts in-flight)."""

    def after(self, node: Node, latency_s: float | None = None, failed: bool = False) -> None:
        """Request on ``node`` finished (no-op unless the algorithm keeps stats)."""

    # -- shared slow path -----------------------------------------------------------
    def _pick_slow(
        self,
        req: Any,
        tried: frozenset[str] | set[str] | None,
        healthy: HealthFn | None,
    ) -> Node | None:
        if not tried:
            tried = None
        for tier in self._tiers:
            node = self._pick_tier(tier, req, tried, healthy)
            if node is not None:
                return node
        if healthy is not None and self._fallback and self._usable:
            for n in self._usable:
                if healthy(n):
                    return None  # some node is healthy: it was tried, nothing left
            # Every node is unhealthy: APISIX balances over all nodes regardless.
            return self._pick_slow(req, tried, None)
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} nodes={[n.addr for n in self._usable]}>"


def create_balancer(
    type: str,
    nodes: Sequence[Node],
    hash_on: str = "vars",
    key: str = "remote_addr",
    **options: Any,
) -> Balancer:
    """Build a balancer by APISIX upstream ``type``.

    ``hash_on``/``key`` are only used by ``chash``.  Extra keyword options are passed to
    the class: all types take ``all_unhealthy_fallback``; ewma also ``clock``, ``rng``,
    ``decay_s``, ``failure_penalty_s``, ``peak``.  ``previous`` (the balancer this one
    replaces after an upstream change) is accepted for every type and only used by ewma,
    which keeps the latency averages of nodes that stay."""
    cls = BALANCERS.get(type)
    if cls is None:
        raise ValueError(f"unknown balancer type {type!r}; expected one of {sorted(BALANCERS)}")
    if type != "ewma":
        options.pop("previous", None)
    if type == "chash":
        return cls(nodes, hash_on=hash_on, key=key, **options)
    return cls(nodes, **options)


# name -> class.  Each algorithm module registers itself on import; the module imports
# below complete the table whichever module is imported first (they import Node and
# TieredBalancer from here, which are defined above, so the cycle is safe).
# type name -> class; the constructors differ in their keyword options (see create_balancer)
BALANCERS: dict[str, Callable[..., Balancer]] = {}

import pylon.upstream.chash  # noqa: E402
import pylon.upstream.ewma  # noqa: E402
import pylon.upstream.least_conn  # noqa: E402
import pylon.upstream.roundrobin  # noqa: E402,F401
