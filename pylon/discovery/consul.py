"""Consul discovery (APISIX ``discovery/consul`` and ``discovery/consul_kv``).

``consul``: ``service_name`` is the Consul service's name.  Its passing instances come from
``GET /v1/health/service/<name>?passing=true`` as a blocking query (``index`` = the last
``X-Consul-Index``, ``wait`` = ``timeout.wait``) when ``keepalive`` (the default), else a
poll every ``fetch_interval`` seconds.  A node is the service's address (the agent's when
empty) and port with ``weight``; ``discovery_args.tags`` (Pylon) keeps the instances that
carry every listed tag (Consul's ``tag`` filter).  ``skip_services`` are never watched;
``default_service`` answers for a service with no instance.  ``sort_type`` orders the nodes
as APISIX does.

``consul_kv``: ``service_name`` is the URL of a key prefix, ``http://127.0.0.1:8500/v1/kv/
upstreams/webpages/``; every key under it named ``host:port`` is a node, its JSON value's
``weight`` (default ``weight``) its weight -- APISIX's layout.  Blocking queries on the
prefix (``?recurse``) as above; ``skip_keys`` are left out.

Several ``servers``: the watch asks them in turn, the next one after a failure.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlsplit

from ..upstream import client
from .base import DiscoveryError, DNode, Registry
from .config import ConsulConf, ConsulKvConf
from .http import split_hostport

#: the shortest time between two blocking queries that saw no change
MIN_QUERY_GAP = 1.0


def _index(resp: client.Response, old: int) -> int:
    """The next blocking query's index (Consul: reset to 0 when it goes backwards)."""
    raw = resp.header("X-Consul-Index")
    try:
        got = int(raw) if raw is not None else 0
    except ValueError:
        return 0
    return got if got >= old else 0


class _Blocking(Registry):
    """A Consul blocking query loop over ``servers``, shared by both registries."""

    conf: ConsulConf | ConsulKvConf

    def __init__(self, conf: ConsulConf | ConsulKvConf) -> None:
        super().__init__(conf)
        self.server = 0

    def _headers(self) -> dict[str, str]:
        return {"X-Consul-Token": self.conf.token} if self.conf.token else {}

    async def _get(self, base: str, path: str, query: str, index: int
                   ) -> client.Response:
        c = self.conf
        q = query
        if c.keepalive:
            q += f"{'&' if q else ''}index={index}&wait={c.timeout.wait}s"
        url = f"{base}{path}{'?' + q if q else ''}"
        # a blocking query may take wait (+ Consul's jitter, wait/16) before it answers
        timeout = (c.timeout.connect + c.timeout.read) / 1000
        if c.keepalive:
            timeout += c.timeout.wait * 17 / 16
        try:
            return await client.request("GET", url, headers=self._headers(), timeout=timeout)
        except client.HTTPError as e:
            raise DiscoveryError(f"consul {base}: {e.message}") from None

    async def _loop(self, path: str, query: str, base: str | None = None
                    ) -> AsyncIterator[tuple[int, client.Response]]:
        """(status, response) of each blocking query that returned with a new index."""
        c = self.conf
        index = 0
        first = True
        loop = asyncio.get_running_loop()
        while True:
            server = base or c.servers[self.server % len(c.servers)]
            started = loop.time()
            try:
                resp = await self._get(server.rstrip("/"), path, query, index)
                if resp.status not in (200, 404):
                    raise DiscoveryError(f"consul {server}{path} answered {resp.status}: "
                                         f"{resp.text[:200]}")
            except DiscoveryError:
                self.server += 1              # the next server, after the back-off
                raise
            new = _index(resp, index)
            changed = first or new != index or not c.keepalive
            first = False
            index = new
            if changed:
                yield resp.status, resp
            if not c.keepalive:
                await asyncio.sleep(c.fetch_interval)
            elif not changed:
                # Consul's advice: rate-limit blocking queries that return unchanged (a
                # server or proxy that does not block would otherwise be asked in a loop)
                await asyncio.sleep(max(0.0, MIN_QUERY_GAP - (loop.time() - started)))

    def _target(self, service_name: str, args: dict[str, Any]) -> tuple[str | None, str, str]:
        """(server base URL or None: the configured servers, path, query) of a service."""
        raise NotImplementedError

    def _nodes(self, entries: list[Any]) -> list[DNode]:
        raise NotImplementedError

    async def follow(self, service_name: str, args: dict[str, Any]
                     ) -> AsyncIterator[list[DNode]]:
        base, path, query = self._target(service_name, args)
        async for status, resp in self._loop(path, query, base):
            entries = resp.json() if status == 200 else []
            if not isinstance(entries, list):
                raise DiscoveryError(f"{self.kind}: unexpected answer for {service_name}")
            yield self._nodes(entries)


class ConsulRegistry(_Blocking):
    kind = "consul"

    def __init__(self, conf: ConsulConf) -> None:
        super().__init__(conf)
        self.conf: ConsulConf = conf

    def check(self, service_name: str, args: dict[str, Any]) -> str | None:
        if service_name in self.conf.skip_services or service_name == "consul":
            return f"service {service_name} is in skip_services"
        tags = args.get("tags")
        if tags is not None and not (isinstance(tags, list)
                                     and all(isinstance(t, str) for t in tags)):
            return "discovery_args.tags must be a list of strings"
        return None

    def _target(self, service_name: str, args: dict[str, Any]) -> tuple[str | None, str, str]:
        query = "passing=true" + "".join(f"&tag={quote(t, safe='')}"
                                         for t in args.get("tags") or ())
        return None, f"/v1/health/service/{quote(service_name, safe='')}", query

    def _nodes(self, entries: list[Any]) -> list[DNode]:
        c = self.conf
        nodes: list[DNode] = []
        seen: set[tuple[str, int | None]] = set()
        for e in entries:
            svc = e.get("Service") or {}
            host = svc.get("Address") or (e.get("Node") or {}).get("Address")
            port = svc.get("Port")
            if not host or not isinstance(host, str) or not isinstance(port, (int, type(None))):
                continue
            # APISIX: a port of 0 (or none) is the default one; one node per address:port
            # (several instances of a service may register the same one)
            addr = (host, port or None)
            if addr not in seen:
                seen.add(addr)
                nodes.append((host, port or None, c.weight, 0))
        if not nodes and c.default_service is not None:
            d = c.default_service
            nodes = [(d.host, d.port, c.weight, 0)]
        if c.sort_type == "host_sort":
            nodes.sort(key=lambda n: n[0])
        elif c.sort_type == "port_sort":
            nodes.sort(key=lambda n: n[1] or 0)
        elif c.sort_type == "combine_sort":
            nodes.sort(key=lambda n: (n[0], n[1] or 0))
        return nodes


class ConsulKvRegistry(_Blocking):
    kind = "consul_kv"

    def __init__(self, conf: ConsulKvConf) -> None:
        super().__init__(conf)
        self.conf: ConsulKvConf = conf

    def check(self, service_name: str, args: dict[str, Any]) -> str | None:
        parts = urlsplit(service_name)
        if parts.scheme != "http" or "/v1/kv/" not in parts.path:
            return ("consul_kv service_name must be a key prefix URL, e.g. "
                    "http://127.0.0.1:8500/v1/kv/upstreams/webpages/")
        return None

    def _target(self, service_name: str, args: dict[str, Any]) -> tuple[str | None, str, str]:
        parts = urlsplit(service_name)
        return f"{parts.scheme}://{parts.netloc}", parts.path, "recurse"

    def _nodes(self, entries: list[Any]) -> list[DNode]:
        nodes: list[DNode] = []
        for e in entries:
            key = e.get("Key") or ""
            if key in self.conf.skip_keys or key.endswith("/"):
                continue
            try:
                host, port = split_hostport(key.rsplit("/", 1)[-1])
            except ValueError:
                continue
            weight = self.conf.weight
            raw = e.get("Value")
            if raw:
                try:
                    value = json.loads(base64.b64decode(raw))
                    if isinstance(value, dict) and isinstance(value.get("weight"), int):
                        weight = value["weight"]
                except ValueError:
                    pass
            nodes.append((host, port, weight, 0))
        return nodes
