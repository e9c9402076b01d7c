"""The Prometheus export server (APISIX ``plugin_attr.prometheus``: 127.0.0.1:9091
``/apisix/prometheus/metrics``), served by the master.

A scrape asks every serving worker to flush its counts into the shared store and to
report its connection counts (bounded: a worker that does not answer within a second is
rendered with what it flushed last), then renders the store (``observe/metrics.py``) and
adds the node-level families the master knows itself:

* ``apisix_nginx_http_current_connections{state}``, ``apisix_http_requests_total``
  (summed over workers, as ``/apisix/status``)
* ``apisix_node_info{hostname, version}``
* ``apisix_etcd_reachable`` and ``apisix_etcd_modify_indexes{key}`` (etcd provider only, as
  APISIX in standalone mode has none)
* ``apisix_ssl_certificate_expiry_seconds{id, type, snis, serial}`` (Pylon; APISIX has no
  such metric): seconds until each ssl object's certificate expires, negative once expired
* ``apisix_upstream_status{name, ip, port}`` (1 healthy, 0 unhealthy; upstreams with health
  checks)
* Pylon's: ``pylon_config_revision{worker}`` (the revision each worker serves),
  ``pylon_config_rejected_objects`` (objects the workers could not compile),
  ``pylon_worker_restarts_total`` (workers that exited unexpectedly and were replaced),
  ``pylon_workers``, and, from the store, log drops, rate-limit degradations, dropped
  series.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Mapping
from typing import Any

from .. import __version__
from ..admin.server import RawBody
from ..observe import metrics
from ..settings import ConnLimits

log = logging.getLogger("pylon.exporter")

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
ETCD_KINDS = ("consumers", "global_rules", "protos", "routes", "services", "ssls",
              "stream_routes", "upstreams")
_CONN_STATES = ("active", "accepted", "handled", "reading", "writing", "waiting")


class ExportApp:
    def __init__(self, master: Any, uri: str, prefix: str,
                 max_values: int = metrics.DEFAULT_MAX_VALUES) -> None:
        self.master = master
        self.uri = uri
        self.prefix = prefix
        self.max_values = max_values      # plugin_attr.prometheus.max_values
        self.reader: metrics.Reader | None = None

    def _reader(self) -> metrics.Reader:
        if self.reader is None:
            from ..ratelimit.local import node_dir
            self.reader = metrics.Reader(metrics.MetricStore(node_dir(), self.max_values))
        return self.reader

    async def handle(self, method: str, path: str, query: str, headers: Mapping[str, str],
                     body: bytes, remote_addr: str | None = None) -> tuple[int, Any]:
        if path != self.uri:
            return 404, {"error_msg": "404 Route Not Found"}
        if method not in ("GET", "HEAD"):
            return 405, {"error_msg": f"{method} is not allowed here"}
        return 200, RawBody((await self.scrape()).encode(), CONTENT_TYPE)

    async def scrape(self) -> str:
        """The node's metrics now: every serving worker flushes its counts first (the export
        server, and a worker's ``public-api`` route asking the master)."""
        return self.render(await self.master.ask_workers("metrics", timeout=1.0))

    def render(self, replies: list[dict[str, Any]]) -> str:
        m = self.master
        p = self.prefix
        status = dict.fromkeys(_CONN_STATES, 0)
        total = 0
        for r in replies:
            st = r.get("status") or {}
            for k in _CONN_STATES:
                status[k] += int(st.get(k, 0))
            total += int(st.get("total", 0))
        extra: list[tuple[str, str, str, list[tuple[str, float]]]] = [
            (p + "nginx_http_current_connections", "gauge", "Number of HTTP connections",
             [(f'state="{k}"', float(v)) for k, v in status.items()]),
            (p + "http_requests_total", "gauge",
             "The total number of client requests since APISIX started", [("", float(total))]),
            (p + "node_info", "gauge", "Info of APISIX node",
             [(metrics.labels((("hostname", socket.gethostname()),
                               ("version", __version__))), 1.0)]),
        ]
        hub = m.hub
        if m.settings.config_provider == "etcd":
            extra.append((p + "etcd_reachable", "gauge",
                          "Config server etcd reachable from APISIX, 0 is unreachable",
                          [("", 1.0 if hub.ok else 0.0)]))
            rows = []
            top = 0
            for kind in ETCD_KINDS:
                idx = max((it.modified for it in hub.state.kinds.get(kind, {}).values()),
                          default=0)
                top = max(top, idx)
                rows.append((f'key="{kind}"', float(idx)))
            rows.append(('key="max_modify_index"', float(top)))
            rows.append(('key="x_etcd_index"', float(hub.state.revision)))
            extra.append((p + "etcd_modify_indexes", "gauge",
                          "Etcd modify index for APISIX keys", rows))
        health = m.health
        if health is not None:
            rows = []
            base = m.settings.etcd.prefix
            for key in sorted(health.checkers):
                kind, oid = key.split("/")[:2]
                for n in health.checkers[key].nodes_info():
                    up = 1.0 if n["status"] in ("healthy", "mostly_healthy") else 0.0
                    rows.append((metrics.labels((("name", f"{base}/{kind}/{oid}"),
                                                 ("ip", n["ip"]), ("port", n["port"]))), up))
            extra.append((p + "upstream_status", "gauge", "Upstream status from health check",
                          rows))
        from ..tls.inventory import certificates, expiry_rows
        listed = certificates(((oid, it.value) for oid, it in
                               hub.state.kinds.get("ssls", {}).items()), time.time(),
                              m.settings.tls.cert)
        extra.append((p + "ssl_certificate_expiry_seconds", "gauge",
                      "Seconds until each configured certificate expires (negative: expired)",
                      [(metrics.labels(labels), v) for labels, v in expiry_rows(listed)]))
        workers = sorted(m.workers.values(), key=lambda w: w.slot)
        extra += [
            ("pylon_config_revision", "gauge", "The configuration revision each worker serves",
             [(f'worker="{w.slot}"', float(w.applied)) for w in workers]),
            ("pylon_config_rejected_objects", "gauge",
             "Configuration objects the workers could not compile (kept out, logged)",
             [("", float(max((w.rejected for w in workers), default=0)))]),
            ("pylon_worker_restarts_total", "counter",
             "Workers that exited unexpectedly and were replaced", [("", float(m.restarts))]),
            ("pylon_workers", "gauge", "Workers serving", [("", float(len(workers)))]),
        ]
        return self._reader().render(extra)


async def start_exporter(loop: asyncio.AbstractEventLoop, app: ExportApp, host: str,
                         port: int, limits: ConnLimits | None = None) -> asyncio.Server:
    """Serve ``app`` on the master's small HTTP server, within the Control API's limits
    (``settings.control_limits``: APISIX's ``plugin_attr.prometheus`` has none)."""
    from ..admin.server import start_admin
    return await start_admin(loop, app, host, port, limits,
                             "Prometheus export server")
