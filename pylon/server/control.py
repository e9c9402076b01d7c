"""The Control API (APISIX ``apisix.control``, default 127.0.0.1:9090) and the master's side
of upstream health checks.

Served by the master on the Admin API's small HTTP server (``admin/server.py``):

* ``GET /v1/healthcheck`` -- every upstream with ``checks``: routes' inline upstreams, then
  services', then upstreams, each ``{"name": "/apisix/routes/1", "type": "http", "nodes":
  [{"ip", "port", "hostname", "status", "counter": {"success", "http_failure",
  "tcp_failure", "timeout_failure"}}]}`` as APISIX's ``control/v1.lua`` answers.  An upstream
  with a single node has no checker (APISIX neither) and shows ``"nodes": []``.
* ``GET /v1/healthcheck/{routes|services|upstreams}/{id}`` -- one of them; 404
  ``{"error_msg": "upstreams[9] not found"}`` / ``"no checker for routes[1]"``, 400 for
  another type, as APISIX.

The checkers themselves run in the master (``upstream/health.py``), fed from the config
state the master already holds: ``checked_plans`` finds the upstreams with ``checks`` in it
(only those are decoded), ``changed_plans`` the ones a change touched.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..config.compiler import upstream_plan
from ..config.store import Event
from ..model.validate import convert
from ..upstream.health import HealthManager
from ..upstream.runtime import UpstreamPlan

log = logging.getLogger("pylon.control")

SOURCES = ("routes", "services", "upstreams")


# ------------------------------------------------------------------ config -> plans
def plan_of(key: str, value: Any) -> tuple[str, UpstreamPlan | None] | None:
    """(plan key, plan when the upstream has ``checks``) for a config key that can hold an
    upstream (``upstreams/1``, a route's or a service's inline one); None for other keys."""
    kind, _, oid = key.partition("/")
    if not oid or "/" in oid:
        return None
    if kind == "upstreams":
        pkey, raw = key, value
    elif kind in ("routes", "services"):
        pkey = f"{key}/upstream"
        raw = value.get("upstream") if isinstance(value, dict) else None
    else:
        return None
    if not isinstance(raw, dict) or not raw.get("checks"):
        return pkey, None
    up, _rejected = convert("upstreams", raw, pkey)
    if up is None:
        return pkey, None                 # the workers reject it too
    return pkey, upstream_plan(pkey, up)


def checked_plans(items: Iterable[tuple[str, Any]]) -> dict[str, UpstreamPlan]:
    """Every upstream with ``checks`` in (key, item) pairs of the config state."""
    out: dict[str, UpstreamPlan] = {}
    for key, item in items:
        got = plan_of(key, item.value)
        if got is not None and got[1] is not None:
            out[got[0]] = got[1]
    return out


def changed_plans(events: Iterable[Event]) -> dict[str, UpstreamPlan | None]:
    """The plans the events touched (None: gone or without checks)."""
    out: dict[str, UpstreamPlan | None] = {}
    for ev in events:
        got = plan_of(ev.key, ev.value)
        if got is not None:
            out[got[0]] = got[1]
    return out


# ------------------------------------------------------------------ the API
def _id_order(key: str) -> tuple[int, int, str]:
    oid = key.split("/")[1]
    return (0, int(oid), "") if oid.isdigit() else (1, 0, oid)


class ControlApp:
    """Request handler for ``admin.server`` (``handle`` -> (status, JSON body))."""

    def __init__(self, health: Callable[[], HealthManager | None],
                 exists: Callable[[str], bool], prefix: str = "/apisix") -> None:
        self.health = health
        self.exists = exists
        self.prefix = prefix.rstrip("/")

    def _entry(self, mgr: HealthManager, pkey: str) -> dict[str, Any] | None:
        info = mgr.info(pkey)
        if info is None:
            return None
        kind, oid = pkey.split("/")[:2]
        return {"name": f"{self.prefix}/{kind}/{oid}", "type": info["type"],
                "nodes": info["nodes"]}

    async def handle(self, method: str, path: str, query: str, headers: Mapping[str, str],
                     body: bytes, remote_addr: str | None = None) -> tuple[int, Any]:
        path = re.sub("/+", "/", path)
        if path != "/v1/healthcheck" and not path.startswith("/v1/healthcheck/"):
            return 404, {"error_msg": f"no control API at {path}"}
        if method not in ("GET", "HEAD"):
            return 405, {"error_msg": f"{method} is not allowed here"}
        mgr = self.health()
        segs = path.rstrip("/").split("/")[3:]
        if not segs:
            if mgr is None:
                return 200, []
            out = []
            for kind in SOURCES:
                keys = sorted((k for k in mgr.configured if k.startswith(kind + "/")),
                              key=_id_order)
                for k in keys:
                    e = self._entry(mgr, k)
                    if e is not None:
                        out.append(e)
            return 200, out
        kind = segs[0]
        if len(segs) < 2:
            return 404, {"error_msg": f"missing src id for src type {kind}"}
        if kind not in SOURCES:
            return 400, {"error_msg": f"invalid src type {kind}"}
        oid = segs[1]
        if not self.exists(f"{kind}/{oid}"):
            return 404, {"error_msg": f"{kind}[{oid}] not found"}
        pkey = f"{kind}/{oid}" if kind == "upstreams" else f"{kind}/{oid}/upstream"
        e = self._entry(mgr, pkey) if mgr is not None else None
        if e is None:
            return 404, {"error_msg": f"no checker for {kind}[{oid}]"}
        return 200, e


async def start_control(loop: asyncio.AbstractEventLoop, app: ControlApp, host: str,
                        port: int) -> asyncio.Server:
    from ..admin.server import start_admin
    return await start_admin(loop, app, host, port)  # type: ignore[arg-type]
