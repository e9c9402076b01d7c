"""The master's discovery: one watch per (discovery_type, service_name, discovery_args) that
the current configuration names, whatever the number of upstreams and workers.

``consul`` and ``consul_kv`` with ``dump`` write their services to ``dump.path`` at each
change and, with ``load_on_init``, start from it (unless older than ``expire`` seconds):
the node boots with the last known nodes while the registry is down.

``update`` / ``replace`` follow the configuration (the discovered upstreams' plans); a watch
starts when the first upstream names its service and stops with the last.  ``publish(key,
nodes)`` is called on every change of a service's node list (the master sends it to the
workers and to the health checks); ``table`` is what a new worker gets first.  ``dump`` is
the Control API's ``/v1/discovery/{type}/dump``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from ..upstream.runtime import UpstreamPlan, with_nodes
from .base import DNode, Registry, Watch, node_dicts
from .config import Conf

log = logging.getLogger("pylon.discovery")
Publish = Callable[[str, list[DNode]], None]


#: discovery type -> (module of this package, registry class)
REGISTRIES = {
    "dns": ("dns", "DnsRegistry"), "consul": ("consul", "ConsulRegistry"),
    "consul_kv": ("consul", "ConsulKvRegistry"), "nacos": ("nacos", "NacosRegistry"),
    "eureka": ("eureka", "EurekaRegistry"), "kubernetes": ("kubernetes", "KubernetesRegistry"),
}


def make_registry(kind: str, conf: Any) -> Registry:
    """The registry of a configured type (its module imported only when configured)."""
    module, name = REGISTRIES[kind]
    cls: type[Registry] = getattr(importlib.import_module(f"{__package__}.{module}"), name)
    return cls(conf)


class DiscoveryManager:
    def __init__(self, confs: dict[str, Conf], publish: Publish,
                 resolve: Callable[[str], str] = os.path.abspath) -> None:
        self.confs = confs
        self.publish = publish
        #: dump files by kind (consul, consul_kv with ``dump``), and what they held at start
        self.dump_files: dict[str, tuple[str, int]] = {}
        self.dumped: dict[str, dict[str, list[DNode]]] = {}
        for kind, conf in confs.items():
            dump = getattr(conf, "dump", None)
            if dump is not None:
                self.dump_files[kind] = (resolve(dump.path), dump.expire)
                if dump.load_on_init:
                    self.dumped[kind] = self._read_dump(kind)
        self.registries: dict[str, Registry] = {}
        for kind, conf in confs.items():
            try:
                self.registries[kind] = make_registry(kind, conf)
            except ValueError as e:
                log.error("discovery %s not started: %s", kind, e)
        self.watches: dict[str, Watch] = {}
        #: discovered upstreams' plans (no nodes) by upstream key, and by watch key
        self.plans: dict[str, UpstreamPlan] = {}
        self.users: dict[str, dict[str, UpstreamPlan]] = {}
        self.started = time.time()

    # -- configuration -------------------------------------------------------------------
    def update(self, changed: dict[str, UpstreamPlan | None]) -> None:
        """Changed upstream plans (None, or a plan without ``discovery``: not discovered).
        New users are added before old ones leave, so a service that stays named (a
        whole-config resync, two upstreams swapping services) keeps its watch and the
        workers never forget its nodes for a moment."""
        left: list[str] = []
        for ukey, plan in changed.items():
            old = self.plans.pop(ukey, None)
            if old is not None and old.discovery is not None:
                users = self.users.get(old.discovery)
                if users is not None:
                    users.pop(ukey, None)
                    left.append(old.discovery)
            if plan is None or plan.discovery is None:
                continue
            self.plans[ukey] = plan
            self.users.setdefault(plan.discovery, {})[ukey] = plan
            if plan.discovery not in self.watches:
                self._watch(plan.discovery)
        for key in left:
            if key in self.users and not self.users[key]:
                del self.users[key]
                self._unwatch(key)

    def replace(self, plans: dict[str, UpstreamPlan]) -> None:
        """Make ``plans`` the whole set of discovered upstreams."""
        changed: dict[str, UpstreamPlan | None] = {k: None for k in self.plans
                                                   if k not in plans}
        changed.update(plans)
        self.update(changed)

    def _watch(self, key: str) -> None:
        kind, service_name, args = json.loads(key)
        w = self.watches[key] = Watch(key, kind, service_name, args,
                                      self.registries.get(kind), self._changed)
        seed = self.dumped.get(kind, {}).get(service_name)
        if seed:                          # the dump file's nodes until the registry answers
            w.nodes = seed
            self.publish(key, list(seed))
        w.start()

    def _unwatch(self, key: str) -> None:
        w = self.watches.pop(key, None)
        if w is not None:
            w.stop()
            if w.nodes:
                self.publish(key, [])       # workers forget the nodes

    def _changed(self, w: Watch) -> None:
        log.info("discovery %s %s: %d nodes", w.kind, w.service_name, len(w.nodes or ()))
        self.publish(w.key, list(w.nodes or ()))
        if w.kind in self.dump_files:
            self._write_dump(w.kind)

    # -- dump files (APISIX consul's ``dump``) -------------------------------------------
    def _write_dump(self, kind: str) -> None:
        path, expire = self.dump_files[kind]
        services = {w.service_name: node_dicts(w.nodes) for w in self.watches.values()
                    if w.kind == kind and w.nodes is not None}
        data = json.dumps({"services": services, "last_update": int(time.time()),
                           "expire": expire})
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            tmp = f"{path}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError as e:
            log.error("write dump into file got error: %s", e)

    def _read_dump(self, kind: str) -> dict[str, list[DNode]]:
        path, expire = self.dump_files[kind]
        try:
            with open(path, encoding="utf-8") as f:
                entity = json.load(f)
            services = entity["services"]
            last = int(entity["last_update"])
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.error("read dump file %s got error: %s", path, e)
            return {}
        if expire and last + expire < time.time():
            log.warning("dump file: %s had expired, ignored it", path)
            return {}
        out: dict[str, list[DNode]] = {}
        for name, nodes in services.items():
            try:
                out[name] = [(n["host"], n.get("port"), int(n.get("weight", 1)),
                              int(n.get("priority", 0))) for n in nodes]
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
        return out

    def show_dump_file(self, kind: str) -> tuple[int, Any]:
        """APISIX's ``/v1/discovery/consul/show_dump_file``."""
        got = self.dump_files.get(kind)
        if got is None:
            return 503, {"error_msg": "dump params is nil"}
        try:
            with open(got[0], encoding="utf-8") as f:
                return 200, json.load(f)
        except (OSError, ValueError) as e:
            return 503, {"error_msg": str(e)}

    async def first_answers(self, timeout: float) -> None:
        """Wait (at most ``timeout`` s) until every watch has had its first answer or
        failure: the master's start, so that workers begin with the nodes."""
        waits = [w.settled.wait() for w in self.watches.values()]
        if waits:
            try:
                await asyncio.wait_for(asyncio.gather(*waits), timeout)
            except TimeoutError:
                pass

    # -- what others read ----------------------------------------------------------------
    def found(self, key: str) -> list[DNode]:
        w = self.watches.get(key)
        return list(w.nodes or ()) if w is not None else []

    def table(self) -> dict[str, list[DNode]]:
        """Every watch key with nodes (a new worker's start)."""
        return {k: list(w.nodes) for k, w in self.watches.items() if w.nodes}

    def effective(self, plans: dict[str, UpstreamPlan | None]
                  ) -> dict[str, UpstreamPlan | None]:
        """``plans`` with the discovered ones given their current nodes (health checks)."""
        return {k: with_nodes(p, self.found(p.discovery))
                if p is not None and p.discovery is not None else p
                for k, p in plans.items()}

    def users_of(self, key: str) -> dict[str, UpstreamPlan]:
        return dict(self.users.get(key, {}))

    def dump(self, kind: str) -> dict[str, Any] | None:
        """``/v1/discovery/{kind}/dump``: None when ``kind`` is not configured."""
        reg = self.registries.get(kind)
        if reg is None:
            return None
        watches = [w for w in self.watches.values() if w.kind == kind]
        services: dict[str, Any] = {}
        for w in watches:
            if w.nodes is not None:
                services.setdefault(w.service_name, node_dicts(w.nodes))
        return {"config": reg.config(), "services": services,
                "watches": [w.info() for w in watches]}

    def close(self) -> None:
        for w in self.watches.values():
            w.stop()
