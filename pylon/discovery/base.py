"""What every registry shares: the watch of one service (state, last known nodes, back-off)
and the registry interface.

A registry's ``follow(service_name, args)`` is an async generator of node lists: it yields
the service's nodes each time it learns them (a DNS answer, a Consul blocking query that
returned, a Kubernetes watch event, a poll) and runs until it fails.  ``Watch`` drives it:
a failure keeps the last known nodes, is logged, and ``follow`` starts again after a
back-off (1 s doubling to 30 s, reset by an answer).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..errors import PylonError

log = logging.getLogger("pylon.discovery")

#: a discovered node: host, port (None: the upstream scheme's default), weight, priority
DNode = tuple[str, int | None, int, int]

BACKOFF_START = 1.0
BACKOFF_MAX = 30.0
#: settings whose values a dump masks
SECRETS = frozenset({"token", "password", "secret_key", "access_key"})


class DiscoveryError(PylonError):
    """A registry that did not answer as expected (status, body); the watch retries."""


def backoff(failures: int) -> float:
    """Seconds before the next try after ``failures`` failures in a row (bounded)."""
    return min(BACKOFF_MAX, BACKOFF_START * 2 ** max(failures - 1, 0))


def masked(value: Any) -> Any:
    """A config value as a dump shows it: secrets replaced by "******"."""
    if isinstance(value, dict):
        return {k: "******" if k in SECRETS and v else masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


class Registry:
    """One configured discovery type (``discovery.<type>`` of the node config)."""

    kind = ""

    def __init__(self, conf: Any) -> None:
        self.conf = conf

    def follow(self, service_name: str, args: dict[str, Any]) -> AsyncIterator[list[DNode]]:
        """The service's node lists as they are learnt, until a failure (raised)."""
        raise NotImplementedError

    def check(self, service_name: str, args: dict[str, Any]) -> str | None:
        """Why this service name cannot be watched (None: it can)."""
        return None

    def config(self) -> Any:
        """The settings as the dump shows them."""
        import msgspec
        return masked(msgspec.to_builtins(self.conf))

    async def close(self) -> None:
        """Release what the registry holds (connections, tokens)."""


class Watch:
    """One watched (type, service_name, args): its state and its last known nodes."""

    def __init__(self, key: str, kind: str, service_name: str, args: dict[str, Any],
                 registry: Registry | None, changed: Callable[[Watch], None]) -> None:
        self.key = key
        self.kind = kind
        self.service_name = service_name
        self.args = args
        self.registry = registry
        self.changed = changed
        #: the last known nodes (None: never learnt)
        self.nodes: list[DNode] | None = None
        #: "pending" (no answer yet), "ok", "error" (the last try failed), "unavailable"
        #: (the type is not configured, or the name is not valid for it)
        self.state = "pending"
        self.error: str | None = None
        self.failures = 0
        self.updated: float | None = None       # epoch seconds of the last answer
        self.task: asyncio.Task[None] | None = None
        #: set at the first answer or failure (a starting master waits for it, bounded)
        self.settled = asyncio.Event()

    def start(self) -> None:
        reason = (f"discovery {self.kind} is uninitialized" if self.registry is None
                  else self.registry.check(self.service_name, self.args))
        if reason is not None:
            self.state, self.error = "unavailable", reason
            self.settled.set()
            log.error("discovery %s %s: %s", self.kind, self.service_name, reason)
            return
        self.task = asyncio.get_running_loop().create_task(
            self._run(), name=f"discovery {self.kind} {self.service_name}")

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None

    def _learnt(self, nodes: list[DNode]) -> None:
        self.updated = time.time()
        if self.state != "ok" and self.failures:
            log.warning("discovery %s %s: registry answers again (%d nodes)", self.kind,
                        self.service_name, len(nodes))
        self.state, self.error, self.failures = "ok", None, 0
        self.settled.set()
        if nodes != self.nodes:
            self.nodes = nodes
            self.changed(self)

    async def _run(self) -> None:
        assert self.registry is not None
        while True:
            try:
                answered = False
                async for nodes in self.registry.follow(self.service_name, self.args):
                    answered = True
                    self._learnt(nodes)
                if answered:
                    continue                  # the registry ended a watch: follow again
                raise DiscoveryError("the registry ended the watch without an answer")
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - any failure: keep the nodes, retry
                self.failures += 1
                self.state, self.error = "error", str(e) or type(e).__name__
                self.settled.set()
                delay = backoff(self.failures)
                kept = "no nodes known" if self.nodes is None else \
                    f"keeping the last {len(self.nodes)} nodes"
                log.error("discovery %s %s: %s; %s, retry in %.0f s", self.kind,
                          self.service_name, self.error, kept, delay)
            await asyncio.sleep(delay)

    def info(self) -> dict[str, Any]:
        """The watch as the Control API shows it."""
        return {"service_name": self.service_name, "args": self.args, "state": self.state,
                "error": self.error, "failures": self.failures,
                "last_update": int(self.updated) if self.updated else None,
                "nodes": node_dicts(self.nodes or [])}


def node_dicts(nodes: list[DNode]) -> list[dict[str, Any]]:
    """Nodes as APISIX shows them (``{host, port, weight[, priority]}``)."""
    out = []
    for h, p, w, pr in nodes:
        d: dict[str, Any] = {"host": h, "port": p, "weight": w}
        if pr:
            d["priority"] = pr
        out.append(d)
    return out
