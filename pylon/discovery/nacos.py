"""Nacos discovery (APISIX ``discovery/nacos``), Nacos' open API v1.

``service_name`` is the Nacos service; ``discovery_args.namespace_id`` (default: Nacos'
public namespace) and ``discovery_args.group_name`` (default ``DEFAULT_GROUP``) place it.
Every ``fetch_interval`` seconds: ``GET {host}{prefix}ns/instance/list?serviceName=..
&groupName=..[&namespaceId=..]``; each of its ``hosts`` is a node (``ip``, ``port``,
``weight``, else ``weight`` of the config), as APISIX takes them.  Credentials in the host
address (``http://user:password@host:8848``) log in first (``POST {prefix}auth/login``) and
the token goes with every query as ``accessToken``, renewed before its ``tokenTtl`` ends or
after a 403.  Several hosts: the next one after a failure.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

from .base import DiscoveryError, DNode
from .config import NacosConf
from .http import Polled, Server, get_json


class NacosRegistry(Polled):
    kind = "nacos"

    def __init__(self, conf: NacosConf) -> None:
        super().__init__(conf)
        self.conf: NacosConf = conf
        #: access token per host base URL: (token, monotonic expiry)
        self.tokens: dict[str, tuple[str, float]] = {}

    def check(self, service_name: str, args: dict[str, Any]) -> str | None:
        for k in ("namespace_id", "group_name"):
            if k in args and not isinstance(args[k], str):
                return f"discovery_args.{k} must be a string"
        return None

    async def _token(self, srv: Server) -> str | None:
        if srv.user is None:
            return None
        got = self.tokens.get(srv.base)
        if got is not None and got[1] > time.monotonic():
            return got[0]
        body = urlencode({"username": srv.user, "password": srv.password or ""}).encode()
        _, data = await get_json(
            "POST", f"{srv.base}{self._prefix()}auth/login", "nacos login",
            timeout=self._timeout(), body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        token = data.get("accessToken") if isinstance(data, dict) else None
        if not isinstance(token, str):
            raise DiscoveryError("nacos login: no accessToken in the answer")
        ttl = data.get("tokenTtl")
        ttl = float(ttl) if isinstance(ttl, (int, float)) else 18000.0
        self.tokens[srv.base] = (token, time.monotonic() + ttl * 0.9)
        return token

    async def fetch(self, service_name: str, args: dict[str, Any]) -> list[DNode]:
        srv = self._host()
        try:
            q: dict[str, str] = {"serviceName": service_name,
                                 "groupName": args.get("group_name") or "DEFAULT_GROUP"}
            if args.get("namespace_id"):
                q["namespaceId"] = args["namespace_id"]
            token = await self._token(srv)
            if token is not None:
                q["accessToken"] = token
            url = f"{srv.base}{self._prefix()}ns/instance/list?{urlencode(q)}"
            status, data = await get_json("GET", url, f"nacos {srv.base}",
                                          timeout=self._timeout(), ok=(200, 403))
            if status == 403:
                self.tokens.pop(srv.base, None)
                raise DiscoveryError(f"nacos {srv.base}: 403 (access token refused)")
        except DiscoveryError:
            self.server += 1
            raise
        hosts = data.get("hosts") if isinstance(data, dict) else None
        if not isinstance(hosts, list):
            raise DiscoveryError(f"nacos {srv.base}: no hosts in the answer")
        nodes: list[DNode] = []
        for h in hosts:
            ip, port = h.get("ip"), h.get("port")
            if not isinstance(ip, str) or not isinstance(port, int):
                continue
            w = h.get("weight")
            weight = self.conf.weight if not isinstance(w, (int, float)) else (
                max(1, round(w)) if w > 0 else 0)       # Nacos weights are floats (1.0)
            nodes.append((ip, port, weight, 0))
        return nodes
