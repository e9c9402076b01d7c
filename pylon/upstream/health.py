"""Upstream health checks, the worker side: what the request path reads and reports.

APISIX's ``checks`` (lua-resty-healthcheck semantics) run once per node, in the master
(``pylon.upstream.checker``: the active probes and the state of every target), and are
shared with every worker.  This module is the worker's half and the state names both halves
share; the configuration (``Checks``) is typed in ``pylon.model.health`` and parsed by the
config compiler into each ``UpstreamPlan`` (``plan.checks``; ``plan.bad_checks`` when it does
not parse: the master logs it and the upstream runs unchecked).

* A ``HealthView`` per upstream key (which nodes are down, kept across config changes by key)
  behind a ``HealthFilter`` around the balancer, so a balancer skips down nodes through its
  ``healthy`` predicate, and -- when ``checks.passive`` is set -- a ``PassiveReporter`` on
  the runtime that the exchange calls with a response status or a failure; its reports go
  to the master over the control channel.  Upstreams without checks have neither: their hot
  path is unchanged.

State machine (lua-resty-healthcheck ``incr_counter``, run by the master)
-----------------------------------------------------------------------
Each target has a status (``healthy``, ``mostly_healthy``, ``mostly_unhealthy``,
``unhealthy``) and four 8-bit counters: success, http, tcp, timeout.  A success resets the
three failure counters; a failure resets the success counter.  Successes are not counted
while a target is fully ``healthy``, failures not while it is fully ``unhealthy``.  A counter
reaching its threshold makes the target ``healthy`` / ``unhealthy``; the first failure of a
healthy target makes it ``mostly_healthy``, the first success of an unhealthy one
``mostly_unhealthy``.  A balancer uses ``healthy`` and ``mostly_healthy`` targets.  A
threshold of 0 disables that counter.  Active and passive results share the counters; each
is judged against its own thresholds.

Unlike APISIX the state is keyed by (upstream key, node address) and survives config
changes that keep the node: only a removed node or upstream forgets its state, and a
changed ``checks`` restarts the probes but keeps what is known.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import errors
from .balancer import Node

HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
MOSTLY_HEALTHY = "mostly_healthy"
MOSTLY_UNHEALTHY = "mostly_unhealthy"
#: states in which a balancer may pick the node
UP_STATES = frozenset((HEALTHY, MOSTLY_HEALTHY))

# counter indexes; also the ``kind`` of a report
SUCCESS, HTTP, TCP, TIMEOUT = 0, 1, 2, 3
KIND_NAMES = ("success", "http", "tcp", "timeout")


def has_checker(plan: Any) -> bool:
    """APISIX creates a checker only for an upstream with (valid) ``checks`` and more than
    one node (``upstream.lua``: ``nodes_count > 1``)."""
    return bool(plan.checks) and len({n.addr for n in plan.nodes}) > 1



def threshold(checks: Any, kind: int) -> int:
    """The threshold of ``kind`` in ``checks`` (``pylon.model.health.Active`` or ``Passive``:
    both have ``healthy.successes`` and ``unhealthy.{http_failures,tcp_failures,timeouts}``)."""
    if kind == SUCCESS:
        return checks.healthy.successes
    if kind == HTTP:
        return checks.unhealthy.http_failures
    if kind == TCP:
        return checks.unhealthy.tcp_failures
    return checks.unhealthy.timeouts



class HealthView:
    """A worker's copy of one upstream's node states, as the master broadcast them.  Only
    nodes that are not fully ``healthy`` are stored; ``down`` holds those a balancer must
    skip.  The object lives as long as its upstream key, across runtime rebuilds."""

    __slots__ = ("down", "states")

    def __init__(self) -> None:
        self.states: dict[str, str] = {}
        self.down: set[str] = set()

    def set(self, addr: str, state: str | None) -> None:
        if state is None or state == HEALTHY:
            self.states.pop(addr, None)
            self.down.discard(addr)
            return
        self.states[addr] = state
        if state in UP_STATES:
            self.down.discard(addr)
        else:
            self.down.add(addr)

    def clear(self) -> None:
        self.states.clear()
        self.down.clear()


class HealthFilter:
    """A balancer that skips the nodes of ``down`` through the wrapped balancer's
    ``healthy`` predicate (and its all-unhealthy fallback); with nothing down it is the
    wrapped balancer plus one call."""

    __slots__ = ("after", "before", "down", "inner", "nodes", "_healthy")

    def __init__(self, inner: Any, down: set[str]) -> None:
        self.inner = inner
        self.down = down
        self.nodes = inner.nodes
        self.before = inner.before
        self.after = inner.after
        self._healthy: Callable[[Node], bool] = lambda n: n.addr not in down

    def pick(self, req: Any = None, tried: Any = None, healthy: Any = None) -> Node | None:
        if self.down:
            return self.inner.pick(req, tried, self._healthy)
        return self.inner.pick(req, tried, healthy)

    def __repr__(self) -> str:
        return f"<HealthFilter down={sorted(self.down)} {self.inner!r}>"


_TIMEOUTS = (errors.UpstreamConnectTimeout, errors.UpstreamReadTimeout,
             errors.UpstreamSendTimeout)
_TCP = (errors.UpstreamConnectFailed, errors.UpstreamTLSError, errors.UpstreamReset,
        errors.UpstreamBadResponse)


class PassiveReporter:
    """``UpstreamRuntime.health`` of an upstream with ``checks.passive``: turns what a
    request saw into reports for the master.  Nothing is sent when it cannot change
    anything (a success on a fully healthy node, a failure on a fully unhealthy one, a
    status in neither list, a counter set to 0), so healthy traffic costs a set lookup."""

    __slots__ = ("bad", "key", "limits", "ok", "report", "states")

    def __init__(self, key: str, view: HealthView, passive: Any,
                 report: Callable[[str, str, int], None]) -> None:
        self.key = key
        self.states = view.states
        self.ok = frozenset(passive.healthy.http_statuses)
        self.bad = frozenset(passive.unhealthy.http_statuses)
        self.limits = tuple(threshold(passive, k) for k in (SUCCESS, HTTP, TCP, TIMEOUT))
        self.report = report

    def response(self, addr: str, status: int) -> None:
        """A response head from ``addr`` (APISIX reports the status in the log phase)."""
        if status in self.ok:
            if addr not in self.states or not self.limits[SUCCESS]:
                return                      # fully healthy: successes are not counted
            self.report(self.key, addr, SUCCESS)
        elif status in self.bad:
            if not self.limits[HTTP] or self.states.get(addr) == UNHEALTHY:
                return
            self.report(self.key, addr, HTTP)

    def failure(self, addr: str, error: Exception) -> None:
        """The attempt on ``addr`` failed: a timeout (nginx 504) or any other error (nginx
        ``failed``: connect refused, reset, TLS, a bad response) -- ``tcp_failures``."""
        if isinstance(error, _TIMEOUTS):
            kind = TIMEOUT
        elif isinstance(error, _TCP):
            kind = TCP
        else:
            return
        if not self.limits[kind] or self.states.get(addr) == UNHEALTHY:
            return
        self.report(self.key, addr, kind)
