"""Eureka discovery (APISIX ``discovery/eureka``), Eureka's REST API.

``service_name`` is the application's name (Eureka keeps them upper case; the name is
upper-cased as Eureka does).  Every ``fetch_interval`` seconds: ``GET {host}{prefix}apps/
{NAME}`` (JSON); each instance whose ``status`` is ``UP`` is a node: ``ipAddr`` and the
``port`` when enabled, else the ``securePort`` when enabled; weight from the instance's
``metadata.weight``, else ``weight`` of the config -- APISIX's rules.  An unknown
application (404) has no nodes.  Credentials in the host address go as HTTP basic auth.
Several hosts: the next one after a failure.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from .base import DiscoveryError, DNode
from .config import EurekaConf
from .http import Polled, get_json


def _enabled(port: Any) -> int | None:
    if isinstance(port, dict) and str(port.get("@enabled")).lower() == "true":
        try:
            return int(port.get("$"))       # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
    return None


class EurekaRegistry(Polled):
    kind = "eureka"

    def __init__(self, conf: EurekaConf) -> None:
        super().__init__(conf)
        self.conf: EurekaConf = conf

    async def fetch(self, service_name: str, args: dict[str, Any]) -> list[DNode]:
        srv = self._host()
        url = f"{srv.base}{self._prefix()}apps/{quote(service_name.upper(), safe='')}"
        try:
            status, data = await get_json(
                "GET", url, f"eureka {srv.base}", timeout=self._timeout(),
                headers={"Accept": "application/json", **srv.basic_auth()}, ok=(200, 404))
        except DiscoveryError:
            self.server += 1
            raise
        if status == 404:
            return []
        app = data.get("application") if isinstance(data, dict) else None
        if not isinstance(app, dict):
            raise DiscoveryError(f"eureka {srv.base}: no application in the answer")
        instances = app.get("instance") or []
        if isinstance(instances, dict):          # one instance: Eureka sends an object
            instances = [instances]
        nodes: list[DNode] = []
        for ins in instances:
            if not isinstance(ins, dict) or ins.get("status") != "UP":
                continue
            host = ins.get("ipAddr")
            port = _enabled(ins.get("port")) or _enabled(ins.get("securePort"))
            if not isinstance(host, str) or port is None:
                continue
            weight = self.conf.weight
            meta = ins.get("metadata")
            if isinstance(meta, dict) and meta.get("weight") is not None:
                try:
                    weight = int(meta["weight"])
                except (TypeError, ValueError):
                    pass
            nodes.append((host, port, weight, 0))
        return nodes
