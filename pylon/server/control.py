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

Answered from the node's current configuration (the master's config state: what the
workers serve), values exactly as stored -- encrypted plugin fields and SSL keys are not
decrypted:

* ``GET /v1/schema`` -- ``{"main": {route, service, upstream, ...}, "plugins": {name: {version,
  priority, schema, ...}}, "stream_plugins": {...}}`` as ``control/v1.lua``'s ``schema()``.
* ``GET /v1/routes``, ``/v1/route/{id}``, ``/v1/services``, ``/v1/service/{id}``,
  ``/v1/upstreams``, ``/v1/upstream/{id}`` -- ``{"key": "/apisix/routes/1", "value": {...},
  "createdIndex", "modifiedIndex", "has_domain", "clean_handlers": {}}``; 404
  ``{"error_msg": "route[9] not found"}``.
* ``GET /v1/plugin_metadatas`` (the metadata of loaded plugins, each with its ``id``),
  ``/v1/plugin_metadata/{name}`` (404 ``plugin metadata[x] not found``).
* ``GET /v1/plugins`` -- not in APISIX (which only has ``PUT /v1/plugins/reload``): the
  loaded HTTP plugins' names, highest priority first, as the Admin API's ``plugins/list``.
* ``GET /v1/discovery/{type}/dump`` -- a configured discovery type's ``{"config",
  "services": {service_name: [{host, port, weight}]}}`` as APISIX's ``dump_data``, plus
  ``"watches"``: each watched service's state (``ok``, ``pending``, ``error`` with the
  error and failures in a row, ``unavailable``) and last update (docs/discovery.md).
* ``GET /v1/certificates`` -- Pylon: every ssl object's certificates (subject, issuer,
  serial, SANs, key type, ``not_before``/``not_after``, ``expires_in`` seconds), the node
  config's default certificate last (docs/tls.md).
* ``GET /v1/server_info`` -- the server-info plugin's ``{hostname, id, version, boot_time,
  etcd_version}``.
* ``GET /apisix/status`` -- the node-status plugin's answer, ``{"status": {"total",
  "waiting", "active", "accepted", "handled", "reading", "writing"}, "id"}`` with the values
  as strings (APISIX reads them out of nginx's stub_status text).  Summed over the workers,
  each asked over its control channel; a replaced worker's past counts leave with it.

The checkers themselves run in the master (``upstream/checker.py``), fed from the config
state the master already holds: ``checked_plans`` finds the upstreams with ``checks`` in it
(only those are decoded), ``changed_plans`` the ones a change touched.
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from ..config.compiler import upstream_plan
from ..config.store import Event
from ..discovery.manager import DiscoveryManager
from ..model.validate import convert
from ..settings import ConnLimits
from ..upstream.checker import HealthManager
from ..upstream.runtime import UpstreamPlan

log = logging.getLogger("pylon.control")

SOURCES = ("routes", "services", "upstreams")
#: node-status items, in nginx stub_status order
STATUS_ITEMS = ("active", "accepted", "handled", "total", "reading", "writing", "waiting")
#: /v1/{singular}/{id} and /v1/{plural}: the kinds the control API dumps
DUMPS = {"routes": "route", "services": "service", "upstreams": "upstream"}
#: APISIX ``core.schema`` names of ``/v1/schema``'s "main" -> Pylon's kinds
MAIN_SCHEMAS = {
    "consumer": "consumers", "consumer_group": "consumer_groups",
    "global_rule": "global_rules", "plugin_config": "plugin_configs", "proto": "protos",
    "route": "routes", "service": "services", "ssl": "ssls", "stream_route": "stream_routes",
    "upstream": "upstreams",
}
UPSTREAM_HASH_VARS = {
    "type": "string",
    "pattern": r"^((uri|server_name|server_addr|request_uri|remote_port|remote_addr"
               r"|query_string|host|hostname|mqtt_client_id)|arg_[0-9a-zA-z_-]+)$",
}
UPSTREAM_HASH_HEADER = {"type": "string", "pattern": r"^[a-zA-Z0-9-_]+$"}


def node_id(prefix: str) -> str:
    """The node's id, as APISIX's ``core.id``: ``conf/apisix.uid`` under the prefix, made
    (a random UUID) and written there the first time."""
    path = os.path.join(prefix, "conf", "apisix.uid")
    try:
        with open(path, encoding="utf-8") as f:
            got = f.read().strip()
        if got:
            return got
    except OSError:
        pass
    new = str(uuid.uuid4())
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(new)
    except OSError as e:
        log.warning("cannot write the node id to %s: %s", path, e)
    return new


def _is_domain(host: Any) -> bool:
    if not isinstance(host, str) or not host:
        return False
    try:
        ipaddress.ip_address(host.strip("[]"))
        return False
    except ValueError:
        return True


def has_domain(upstream: Any) -> bool:
    """Whether an upstream's nodes name a host by domain (APISIX's ``has_domain``)."""
    if not isinstance(upstream, dict):
        return False
    nodes = upstream.get("nodes")
    if isinstance(nodes, dict):
        return any(_is_domain(k.rsplit(":", 1)[0] if ":" in k and not k.endswith("]")
                              else k) for k in nodes)
    if isinstance(nodes, list):
        return any(isinstance(n, dict) and _is_domain(n.get("host")) for n in nodes)
    return False


# ------------------------------------------------------------------ config -> plans
def plan_of(key: str, value: Any, needs: str = "checks"
            ) -> tuple[str, UpstreamPlan | None] | None:
    """(plan key, plan when the upstream has ``needs``: ``checks``, or ``service_name`` for
    discovered upstreams) for a config key that can hold an upstream (``upstreams/1``, a
    route's or a service's inline one); None for other keys."""
    kind, _, oid = key.partition("/")
    if not oid or "/" in oid:
        return None
    if kind == "upstreams":
        pkey, raw = key, value
    elif kind in ("routes", "services", "stream_routes"):
        pkey = f"{key}/upstream"
        raw = value.get("upstream") if isinstance(value, dict) else None
    else:
        return None
    if not isinstance(raw, dict) or not raw.get(needs):
        return pkey, None
    up, _rejected = convert("upstreams", raw, pkey)
    if up is None:
        return pkey, None                 # the workers reject it too
    return pkey, upstream_plan(pkey, up)


def checked_plans(items: Iterable[tuple[str, Any]], needs: str = "checks"
                  ) -> dict[str, UpstreamPlan]:
    """Every upstream with ``needs`` (``checks``; ``service_name``: the discovered ones)
    in (key, item) pairs of the config state."""
    out: dict[str, UpstreamPlan] = {}
    for key, item in items:
        got = plan_of(key, item.value, needs)
        if got is not None and got[1] is not None:
            out[got[0]] = got[1]
    return out


def changed_plans(events: Iterable[Event], needs: str = "checks"
                  ) -> dict[str, UpstreamPlan | None]:
    """The plans the events touched (None: gone or without ``needs``)."""
    out: dict[str, UpstreamPlan | None] = {}
    for ev in events:
        got = plan_of(ev.key, ev.value, needs)
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
                 exists: Callable[[str], bool], prefix: str = "/apisix", *,
                 state: Callable[[], Any] | None = None,
                 plugins: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None,
                 node_status: Callable[[], Awaitable[tuple[int, Any]]] | None = None,
                 node_id: str = "", boot_time: int = 0, store_kind: str = "",
                 discovery: Callable[[], DiscoveryManager | None] | None = None,
                 default_cert: Callable[[], str | None] | None = None,
                 stream_plugins: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None
                 ) -> None:
        self.health = health
        #: the stream subsystem's plugins (``/v1/schema``'s ``stream_plugins``)
        self.stream_plugins = stream_plugins or dict
        self.discovery = discovery
        #: the node config's default certificate file (``apisix.ssl.ssl_cert``)
        self.default_cert = default_cert
        self.exists = exists
        self.prefix = prefix.rstrip("/")
        self.state = state
        self.plugins = plugins or dict
        self.node_status = node_status
        self.node_id = node_id
        self.boot_time = boot_time
        self.store_kind = store_kind

    # -- config dumps --------------------------------------------------------------------
    def _dump(self, kind: str, oid: str, item: Any) -> dict[str, Any]:
        value = copy.deepcopy(item.value)
        up = value if kind == "upstreams" else value.get("upstream")
        out: dict[str, Any] = {"key": f"{self.prefix}/{kind}/{oid}", "value": value,
                               "createdIndex": item.created, "modifiedIndex": item.modified,
                               "has_domain": has_domain(up), "clean_handlers": {}}
        if kind == "routes":
            out["orig_modifiedIndex"] = item.modified
        return out

    def _certificates(self) -> list[dict[str, Any]]:
        """Every ssl object's certificates and when they expire (docs/tls.md)."""
        from ..tls.inventory import certificates
        bucket = self._bucket("ssls")
        return certificates(((oid, item.value) for oid, item in bucket.items()), time.time(),
                            self.default_cert() if self.default_cert is not None else None)

    def _bucket(self, kind: str) -> dict[str, Any]:
        st = self.state() if self.state is not None else None
        return dict(st.kinds.get(kind, {})) if st is not None else {}

    def _dumps(self, kind: str, oid: str | None) -> tuple[int, Any]:
        bucket = self._bucket(kind)
        if oid is None:
            keys = sorted(bucket, key=lambda i: _id_order(f"{kind}/{i}"))
            return 200, [self._dump(kind, i, bucket[i]) for i in keys]
        item = bucket.get(oid)
        if item is None:
            return 404, {"error_msg": f"{DUMPS[kind]}[{oid}] not found"}
        return 200, self._dump(kind, oid, item)

    def _metadata(self, name: str | None) -> tuple[int, Any]:
        bucket = self._bucket("plugin_metadata")
        if name is None:                      # loaded plugins only, in their order
            return 200, [{**copy.deepcopy(bucket[n].value), "id": n}
                         for n in self.plugins() if n in bucket]
        item = bucket.get(name)
        if item is None:
            return 404, {"error_msg": f"plugin metadata[{name}] not found"}
        return 200, {**copy.deepcopy(item.value), "id": name}

    def _schema(self) -> dict[str, Any]:
        from ..admin.meta import PLUGIN_ATTRS
        from ..model.schemas import PLUGINS_SCHEMA, resource_schema
        main: dict[str, Any] = {k: resource_schema(v) for k, v in MAIN_SCHEMAS.items()}
        main["plugins"] = copy.deepcopy(PLUGINS_SCHEMA)
        main["upstream_hash_header_schema"] = dict(UPSTREAM_HASH_HEADER)
        main["upstream_hash_vars_schema"] = dict(UPSTREAM_HASH_VARS)
        plugins = {name: {k: copy.deepcopy(info[k]) for k in PLUGIN_ATTRS if k in info}
                   for name, info in self.plugins().items()}
        stream = {name: {k: copy.deepcopy(info[k]) for k in PLUGIN_ATTRS if k in info}
                  for name, info in self.stream_plugins().items()}
        return {"main": main, "plugins": plugins, "stream_plugins": stream}

    def _plugin_names(self) -> list[str]:
        from ..admin.meta import plugin_priority
        table = self.plugins()
        return sorted(table, key=lambda n: -plugin_priority(table[n]))

    def _server_info(self) -> dict[str, Any]:
        from .. import __version__
        return {"hostname": socket.gethostname(), "id": self.node_id, "version": __version__,
                "boot_time": self.boot_time,
                "etcd_version": "unknown"}

    async def _status(self) -> tuple[int, Any]:
        if self.node_status is None:
            return 503, {"error_msg": "node status is not available"}
        code, body = await self.node_status()
        if code != 200:
            return code, body
        return 200, {"status": {k: str(body.get(k, 0)) for k in STATUS_ITEMS},
                     "id": self.node_id}

    async def _other(self, method: str, path: str) -> tuple[int, Any] | None:
        """Every endpoint but the health checks (None: not one of them)."""
        segs = path.rstrip("/").split("/")[1:] if path != "/" else []
        if segs == ["apisix", "status"]:
            pass
        elif len(segs) < 2 or segs[0] != "v1":
            return None
        if method not in ("GET", "HEAD"):
            return 405, {"error_msg": f"{method} is not allowed here"}
        if segs == ["apisix", "status"]:
            return await self._status()
        rest = segs[1:]
        head = rest[0]
        if len(rest) == 1:
            if head in DUMPS:
                return self._dumps(head, None)
            if head == "schema":
                return 200, self._schema()
            if head == "plugins":
                return 200, self._plugin_names()
            if head == "plugin_metadatas":
                return self._metadata(None)
            if head == "server_info":
                return 200, self._server_info()
            if head == "certificates":
                return 200, self._certificates()
            return None
        if len(rest) == 3 and head == "discovery":
            return self._discovery(rest[1], rest[2])
        if len(rest) == 2:
            for kind, single in DUMPS.items():
                if head == single:
                    return self._dumps(kind, rest[1])
            if head == "plugin_metadata":
                return self._metadata(rest[1])
        return None

    def _discovery(self, kind: str, what: str) -> tuple[int, Any] | None:
        """``/v1/discovery/{type}/dump`` (APISIX: ``{config, services}``; Pylon adds each
        watch's state) and, for consul and consul_kv, ``/v1/discovery/{type}/show_dump_file``
        (the dump file's content; 503 ``dump params is nil`` without ``dump``)."""
        mgr = self.discovery() if self.discovery is not None else None
        dump = mgr.dump(kind) if mgr is not None else None
        if mgr is None or dump is None:
            return None                 # APISIX: no such route for an unconfigured type
        if what == "dump":
            return 200, dump
        if what == "show_dump_file" and kind in ("consul", "consul_kv"):
            return mgr.show_dump_file(kind)
        return None

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
            got = await self._other(method, path)
            if got is None:
                return 404, {"error_msg": f"no control API at {path}"}
            return got
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
                        port: int, limits: ConnLimits | None = None) -> asyncio.Server:
    """Serve ``app`` on the master's small HTTP server, within ``apisix.control``'s
    limits (``settings.control_limits``)."""
    from ..admin.server import start_admin
    return await start_admin(loop, app, host, port, limits, "Control API")
