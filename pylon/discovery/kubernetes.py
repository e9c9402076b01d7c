"""Kubernetes discovery (APISIX ``discovery/kubernetes``), the Kubernetes API's list+watch.

``service_name`` is ``namespace/name:port`` -- ``port`` the Endpoints' port name, or its
number when unnamed -- or, with several clusters (each with an ``id``),
``id/namespace/name:port``.  Each watch lists the service's ``Endpoints``
(``/api/v1/namespaces/{ns}/endpoints?fieldSelector=metadata.name=...``), or with
``watch_endpoint_slices`` its ``EndpointSlices`` (``/apis/discovery.k8s.io/v1/...?
labelSelector=kubernetes.io/service-name=...``), then follows the watch stream from the
list's ``resourceVersion`` (``watch=true``, bookmarks); a ``410 Gone`` lists again.  Nodes:
every ready address with the named port, weight ``default_weight``.  The API server is
``service.schema://service.host:service.port`` (``${VAR}`` read from the environment, as the
in-cluster defaults ``${KUBERNETES_SERVICE_HOST}``), the bearer token ``client.token`` or
the file ``client.token_file`` (read again at every list: tokens rotate); the server
certificate is not verified (APISIX neither).  ``namespace_selector`` and
``label_selector`` filter as APISIX's.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlencode

from .base import DiscoveryError, DNode, Registry
from .config import K8sCluster, K8sSelector, expand_env
from .http import decode_line, get_json, stream_lines

#: a watch request's own end (the server closes the stream then; it is opened again)
WATCH_SECONDS = 300
_NAME = re.compile(r"^(?:([a-z0-9]{1,8})/)?([a-z0-9]([-a-z0-9]*[a-z0-9])?)/"
                   r"([a-z0-9]([-.a-z0-9]*[a-z0-9])?)(?::([a-zA-Z0-9-]+))?$")


def _ns_allowed(sel: K8sSelector | None, ns: str) -> bool:
    if sel is None:
        return True
    if sel.equal is not None and ns != sel.equal:
        return False
    if sel.not_equal is not None and ns == sel.not_equal:
        return False
    if sel.match is not None and not any(re.fullmatch(p, ns) for p in sel.match):
        return False
    return not (sel.not_match is not None and any(re.fullmatch(p, ns) for p in sel.not_match))


def _endpoints_nodes(obj: Any, port_name: str | None, weight: int) -> list[DNode]:
    out: list[DNode] = []
    for subset in obj.get("subsets") or ():
        ports = subset.get("ports") or ()
        chosen = [p["port"] for p in ports if _port_matches(p, port_name, len(ports))]
        for addr in subset.get("addresses") or ():          # notReadyAddresses: left out
            ip = addr.get("ip")
            if isinstance(ip, str):
                out.extend((ip, port, weight, 0) for port in chosen)
    return out


def _slice_nodes(obj: Any, port_name: str | None, weight: int) -> list[DNode]:
    ports = obj.get("ports") or ()
    chosen = [p["port"] for p in ports if _port_matches(p, port_name, len(ports))]
    out: list[DNode] = []
    for ep in obj.get("endpoints") or ():
        if (ep.get("conditions") or {}).get("ready") is False:
            continue
        for ip in ep.get("addresses") or ():
            out.extend((ip, port, weight, 0) for port in chosen)
    return out


def _port_matches(p: Any, name: str | None, count: int) -> bool:
    if not isinstance(p, dict) or not isinstance(p.get("port"), int):
        return False
    if name is None:
        return count == 1
    return bool(p.get("name") == name or (not p.get("name") and str(p["port"]) == name))


class KubernetesRegistry(Registry):
    kind = "kubernetes"

    def __init__(self, conf: list[K8sCluster]) -> None:
        super().__init__(conf)
        self.conf: list[K8sCluster] = conf
        self.clusters = {c.id or "": c for c in conf}
        self.with_ids = any(c.id for c in conf)

    def _parse(self, service_name: str) -> tuple[K8sCluster, str, str, str | None]:
        m = _NAME.match(service_name)
        if m is None:
            raise ValueError(f"service_name {service_name!r}: expected "
                             f"{'id/' if self.with_ids else ''}namespace/name:port")
        cid, ns, name, port = m.group(1), m.group(2), m.group(4), m.group(6)
        if self.with_ids:
            if cid is None or cid not in self.clusters:
                raise ValueError(f"service_name {service_name!r}: no cluster with id "
                                 f"{cid!r} in discovery.kubernetes")
        elif cid is not None:
            raise ValueError(f"service_name {service_name!r}: discovery.kubernetes has no "
                             "cluster ids (expected namespace/name:port)")
        return self.clusters[cid or ""], ns, name, port

    def check(self, service_name: str, args: dict[str, Any]) -> str | None:
        try:
            c, ns, _, _ = self._parse(service_name)
        except ValueError as e:
            return str(e)
        if not _ns_allowed(c.namespace_selector, ns):
            return f"namespace {ns} is not selected by namespace_selector"   # APISIX: no nodes
        return None

    def _base(self, c: K8sCluster) -> str:
        host = expand_env(c.service.host)
        port = expand_env(str(c.service.port))
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{c.service.schema}://{host}:{port}"

    def _headers(self, c: K8sCluster) -> dict[str, str]:
        token = expand_env(c.client.token) if c.client.token else None
        if token is None and c.client.token_file:
            try:
                with open(c.client.token_file, encoding="utf-8") as f:
                    token = f.read().strip()
            except OSError as e:
                raise DiscoveryError(f"kubernetes: cannot read the token file: {e}") from None
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def follow(self, service_name: str, args: dict[str, Any]
                     ) -> AsyncIterator[list[DNode]]:
        c, ns, name, port = self._parse(service_name)
        try:
            base = self._base(c)
        except Exception as e:  # noqa: BLE001 - ConfigError of an unset variable
            raise DiscoveryError(f"kubernetes: {e}") from None
        headers = self._headers(c)
        if c.watch_endpoint_slices:
            path = f"/apis/discovery.k8s.io/v1/namespaces/{quote(ns)}/endpointslices"
            sel = f"kubernetes.io/service-name={name}"
            if c.label_selector:
                sel += "," + c.label_selector
            query = {"labelSelector": sel}
            to_nodes = _slice_nodes
        else:
            path = f"/api/v1/namespaces/{quote(ns)}/endpoints"
            query = {"fieldSelector": f"metadata.name={name}"}
            if c.label_selector:
                query["labelSelector"] = c.label_selector
            to_nodes = _endpoints_nodes

        def nodes_of(objs: dict[str, Any]) -> list[DNode]:
            out: list[DNode] = []
            for key in sorted(objs):
                out.extend(to_nodes(objs[key], port, c.default_weight))
            return out

        _, listed = await get_json("GET", f"{base}{path}?{urlencode(query)}",
                                   f"kubernetes {base}", timeout=10.0, headers=headers)
        if not isinstance(listed, dict):
            raise DiscoveryError("kubernetes: the list answer is not an object")
        objs = {o["metadata"]["name"]: o for o in listed.get("items") or ()}
        rv = (listed.get("metadata") or {}).get("resourceVersion") or "0"
        yield nodes_of(objs)
        while True:
            q = {**query, "watch": "true", "allowWatchBookmarks": "true",
                 "resourceVersion": rv, "timeoutSeconds": str(WATCH_SECONDS)}
            async for line in stream_lines(f"{base}{path}?{urlencode(q)}", headers,
                                           connect_timeout=10.0,
                                           idle_timeout=WATCH_SECONDS + 30):
                ev = decode_line(line)
                kind, obj = ev.get("type"), ev.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:     # resourceVersion too old: list again
                        return
                    raise DiscoveryError(f"kubernetes watch error: {obj.get('message')}")
                meta = obj.get("metadata") or {}
                rv = meta.get("resourceVersion") or rv
                if kind == "BOOKMARK":
                    continue
                oname = meta.get("name")
                if kind == "DELETED":
                    objs.pop(oname, None)
                elif kind in ("ADDED", "MODIFIED"):
                    objs[oname] = obj
                else:
                    continue
                yield nodes_of(objs)

    def config(self) -> Any:
        got = super().config()
        return got[0] if len(got) == 1 and not self.with_ids else got
