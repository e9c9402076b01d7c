"""Fakes of the registries' HTTP APIs, written from the vendors' API documentation (no
server binary of Consul, Nacos, Eureka or Kubernetes is available here).  Each is a real
HTTP/1.1 server on 127.0.0.1 with the state a test sets; only the endpoints and fields
Pylon's discovery uses are served, with the vendor's shapes, status codes and headers:

* Consul (developer.hashicorp.com/consul/api-docs): ``GET /v1/health/service/:service``
  (``passing``, ``tag``; blocking queries: ``index`` + ``wait``, ``X-Consul-Index``) and
  ``GET /v1/kv/:key?recurse`` (base64 values, 404 when no key), ACL token in
  ``X-Consul-Token`` (403 ``Permission denied`` without it when one is required).
* Nacos open API v1 (nacos.io): ``POST /nacos/v1/auth/login`` (form ``username`` /
  ``password`` → ``{accessToken, tokenTtl, globalAdmin}``), ``GET /nacos/v1/ns/instance/
  list`` (``serviceName``, ``groupName``, ``namespaceId``, ``accessToken``; 403 without a
  valid token when auth is on).
* Eureka REST (github.com/Netflix/eureka/wiki/Eureka-REST-operations): ``GET /eureka/apps/
  :app`` as JSON (``port: {"$", "@enabled"}``), 404 for an unknown application, basic auth.
* Kubernetes (kubernetes.io/docs/reference/using-api/api-concepts): ``GET /api/v1/
  namespaces/:ns/endpoints?fieldSelector=metadata.name=..`` (an ``EndpointsList`` with
  ``metadata.resourceVersion``), ``/apis/discovery.k8s.io/v1/namespaces/:ns/endpointslices?
  labelSelector=kubernetes.io/service-name=..``; ``watch=true&resourceVersion=..`` streams
  one JSON event a line (chunked) -- ``ADDED`` / ``MODIFIED`` / ``DELETED`` / ``BOOKMARK``,
  ``ERROR`` with a 410 Status when the version is too old -- until ``timeoutSeconds``;
  ``Authorization: Bearer`` (401 otherwise).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.server_process import free_port


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Srv

    def _do(self) -> None:
        parts = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        self.server.fake.requests.append((self.command, self.path, dict(self.headers)))
        self.server.fake.handle(self, self.command, unquote(parts.path), q, body)

    do_GET = do_POST = do_PUT = _do

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Srv(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: Fake


class Fake:
    """Base: a threaded server on a fixed port (``stop``/``start`` keep it: an outage)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.cond = threading.Condition()
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.srv: _Srv | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.srv = _Srv(("127.0.0.1", self.port), _Handler)
        self.srv.fake = self
        self.stopped = False
        threading.Thread(target=self.srv.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        """The registry goes down: no new connection, held ones are cut."""
        if self.srv is not None:
            self.stopped = True
            with self.cond:
                self.cond.notify_all()
            self.srv.shutdown()
            self.srv.server_close()
            self.srv = None

    close = stop

    def changed(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def handle(self, h: _Handler, method: str, path: str, q: dict[str, str],
               body: bytes) -> None:
        raise NotImplementedError


def _duration(v: str | None, default: float) -> float:
    if not v:
        return default
    mult = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for suffix in ("ms", "s", "m", "h"):
        if v.endswith(suffix):
            return float(v[: -len(suffix)]) * mult[suffix]
    return float(v)


class FakeConsul(Fake):
    def __init__(self, token: str = "") -> None:
        self.token = token
        self.index = 1
        #: service -> [{"id", "address", "port", "tags", "node_address", "passing"}]
        self.services: dict[str, list[dict[str, Any]]] = {}
        self.kv: dict[str, bytes] = {}
        super().__init__()

    def set_service(self, name: str, instances: list[dict[str, Any]]) -> None:
        with self.cond:
            self.services[name] = instances
            self.index += 1
            self.cond.notify_all()

    def put_kv(self, key: str, value: bytes | None) -> None:
        with self.cond:
            if value is None:
                self.kv.pop(key, None)
            else:
                self.kv[key] = value
            self.index += 1
            self.cond.notify_all()

    def _block(self, q: dict[str, str]) -> None:
        """A blocking query: wait while the index is the one the client has (up to wait)."""
        if "index" not in q:
            return
        want = int(q["index"] or 0)
        deadline = time.monotonic() + min(_duration(q.get("wait"), 300.0), 600.0)
        with self.cond:
            while self.index <= want and not self.stopped:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)

    def handle(self, h: _Handler, method: str, path: str, q: dict[str, str],
               body: bytes) -> None:
        if self.token and h.headers.get("X-Consul-Token") != self.token:
            h.send_json(403, b"Permission denied")
            return
        self._block(q)
        if self.stopped:
            h.close_connection = True
            return
        hdr = {"X-Consul-Index": str(self.index), "X-Consul-Knownleader": "true"}
        if path.startswith("/v1/health/service/"):
            name = path[len("/v1/health/service/"):]
            out = []
            for ins in self.services.get(name, []):
                if "passing" in q and not ins.get("passing", True):
                    continue
                if "tag" in q and q["tag"] not in ins.get("tags", []):
                    continue
                out.append({
                    "Node": {"Node": "n1", "Address": ins.get("node_address", "127.0.0.1")},
                    "Service": {"ID": ins.get("id", f"{name}-{ins['port']}"),
                                "Service": name, "Tags": ins.get("tags", []),
                                "Address": ins.get("address", ""), "Port": ins["port"],
                                "Meta": ins.get("meta", {})},
                    "Checks": [{"Status": "passing" if ins.get("passing", True)
                                else "critical"}]})
            h.send_json(200, out, hdr)
        elif path.startswith("/v1/kv/"):
            prefix = path[len("/v1/kv/"):]
            rows = [{"Key": k, "Value": base64.b64encode(v).decode(), "Flags": 0,
                     "CreateIndex": 1, "ModifyIndex": self.index, "LockIndex": 0}
                    for k, v in sorted(self.kv.items())
                    if (k.startswith(prefix) if "recurse" in q else k == prefix)]
            if rows:
                h.send_json(200, rows, hdr)
            else:
                h.send_json(404, b"", hdr)
        else:
            h.send_json(404, b"")


class FakeNacos(Fake):
    def __init__(self, user: str | None = None, password: str | None = None) -> None:
        self.user, self.password = user, password
        self.tokens: set[str] = set()
        #: (namespace, group, service) -> [{"ip", "port", "weight", "healthy"}]
        self.instances: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        super().__init__()

    def handle(self, h: _Handler, method: str, path: str, q: dict[str, str],
               body: bytes) -> None:
        if path == "/nacos/v1/auth/login" and method == "POST":
            form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
            if (form.get("username"), form.get("password")) != (self.user, self.password):
                h.send_json(403, b"unknown user!")
                return
            token = f"tok{len(self.tokens)}"
            self.tokens.add(token)
            h.send_json(200, {"accessToken": token, "tokenTtl": 18000, "globalAdmin": True})
            return
        if path == "/nacos/v1/ns/instance/list" and method == "GET":
            if self.user is not None and q.get("accessToken") not in self.tokens:
                h.send_json(403, b"user not found!")
                return
            if "serviceName" not in q:
                h.send_json(400, b"Param 'serviceName' is required.")
                return
            ns = q.get("namespaceId") or "public"
            group = q.get("groupName") or "DEFAULT_GROUP"
            name = q["serviceName"]
            hosts = [{"instanceId": f"{i['ip']}#{i['port']}#DEFAULT#{group}@@{name}",
                      "ip": i["ip"], "port": i["port"], "weight": i.get("weight", 1.0),
                      "healthy": i.get("healthy", True), "enabled": True,
                      "ephemeral": True, "clusterName": "DEFAULT",
                      "serviceName": f"{group}@@{name}", "metadata": {}}
                     for i in self.instances.get((ns, group, name), [])]
            h.send_json(200, {"name": f"{group}@@{name}", "groupName": group,
                              "clusters": "", "cacheMillis": 10000, "hosts": hosts,
                              "lastRefTime": int(time.time() * 1000), "checksum": "",
                              "allIPs": False, "reachProtectionThreshold": False,
                              "valid": True})
            return
        h.send_json(404, b"")


class FakeEureka(Fake):
    def __init__(self, user: str | None = None, password: str | None = None) -> None:
        self.auth = (None if user is None else
                     "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
        #: APP -> [{"ip", "port", "status", "secure_port", "weight"}]
        self.apps: dict[str, list[dict[str, Any]]] = {}
        super().__init__()

    def handle(self, h: _Handler, method: str, path: str, q: dict[str, str],
               body: bytes) -> None:
        if self.auth is not None and h.headers.get("Authorization") != self.auth:
            h.send_json(401, b"")
            return
        if not path.startswith("/eureka/apps/") or "json" not in h.headers.get("Accept", ""):
            h.send_json(404, b"")
            return
        app = path[len("/eureka/apps/"):]
        if app not in self.apps:
            h.send_json(404, b"")
            return
        inst = [{"instanceId": f"{i['ip']}:{app.lower()}:{i.get('port', 0)}",
                 "hostName": i["ip"], "app": app, "ipAddr": i["ip"],
                 "status": i.get("status", "UP"), "overriddenStatus": "UNKNOWN",
                 "port": {"$": i.get("port", 0), "@enabled": str("port" in i).lower()},
                 "securePort": {"$": i.get("secure_port", 443),
                                "@enabled": str("secure_port" in i).lower()},
                 "metadata": {"weight": str(i["weight"])} if "weight" in i else {},
                 "vipAddress": app.lower()} for i in self.apps[app]]
        h.send_json(200, {"application": {"name": app, "instance": inst}})


class FakeKubernetes(Fake):
    def __init__(self, token: str = "t0k") -> None:
        self.token = token
        self.rv = 100
        #: (kind, ns, name) -> object;  kind: "endpoints" | "endpointslices"
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        #: every change: (rv, kind, ns, type, object)
        self.history: list[tuple[int, str, str, str, dict[str, Any]]] = []
        #: versions below this are "too old" (410 Gone on a watch from them)
        self.compacted = 0
        self.watches = 0
        super().__init__()

    def put(self, kind: str, ns: str, obj: dict[str, Any]) -> None:
        with self.cond:
            self.rv += 1
            name = obj["metadata"]["name"]
            obj["metadata"].update(namespace=ns, resourceVersion=str(self.rv))
            typ = "MODIFIED" if (kind, ns, name) in self.objects else "ADDED"
            self.objects[(kind, ns, name)] = obj
            self.history.append((self.rv, kind, ns, typ, json.loads(json.dumps(obj))))
            self.cond.notify_all()

    def delete(self, kind: str, ns: str, name: str) -> None:
        with self.cond:
            self.rv += 1
            obj = self.objects.pop((kind, ns, name))
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self.history.append((self.rv, kind, ns, "DELETED", obj))
            self.cond.notify_all()

    def compact(self) -> None:
        """Forget the history: a watch from an older version gets 410 Gone."""
        with self.cond:
            self.compacted = self.rv + 1
            self.cond.notify_all()

    @staticmethod
    def _selected(kind: str, obj: dict[str, Any], q: dict[str, str]) -> bool:
        meta = obj["metadata"]
        fs = q.get("fieldSelector")
        if fs and fs.startswith("metadata.name=") and meta["name"] != fs.split("=", 1)[1]:
            return False
        for sel in filter(None, (q.get("labelSelector") or "").split(",")):
            k, _, v = sel.partition("=")
            if (meta.get("labels") or {}).get(k) != v:
                return False
        return True

    def handle(self, h: _Handler, method: str, path: str, q: dict[str, str],
               body: bytes) -> None:
        if h.headers.get("Authorization") != f"Bearer {self.token}":
            h.send_json(401, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                              "message": "Unauthorized", "reason": "Unauthorized",
                              "code": 401})
            return
        segs = path.strip("/").split("/")
        if segs[:3] == ["api", "v1", "namespaces"] and len(segs) == 5 and \
                segs[4] == "endpoints":
            kind, ns, list_kind = "endpoints", segs[3], "EndpointsList"
        elif segs[:4] == ["apis", "discovery.k8s.io", "v1", "namespaces"] and \
                len(segs) == 6 and segs[5] == "endpointslices":
            kind, ns, list_kind = "endpointslices", segs[4], "EndpointSliceList"
        else:
            h.send_json(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
            return
        if q.get("watch") in ("true", "1"):
            self._watch(h, kind, ns, q)
            return
        with self.cond:
            items = [o for (k, n, _), o in sorted(self.objects.items())
                     if k == kind and n == ns and self._selected(kind, o, q)]
            h.send_json(200, {"kind": list_kind, "apiVersion": "v1",
                              "metadata": {"resourceVersion": str(self.rv)}, "items": items})

    def _watch(self, h: _Handler, kind: str, ns: str, q: dict[str, str]) -> None:
        self.watches += 1
        since = int(q.get("resourceVersion") or 0)
        deadline = time.monotonic() + min(float(q.get("timeoutSeconds") or 60), 60.0)
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

        def send(ev: dict[str, Any]) -> None:
            line = json.dumps(ev).encode() + b"\n"
            h.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            h.wfile.flush()

        try:
            with self.cond:
                while not self.stopped:
                    if since < self.compacted:
                        send({"type": "ERROR", "object": {
                            "kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "message": f"too old resource version: {since} "
                                       f"({self.compacted})", "reason": "Expired",
                            "code": 410}})
                        break
                    for rv, k, n, typ, obj in self.history:
                        if rv > since and k == kind and n == ns and \
                                self._selected(kind, obj, q):
                            send({"type": typ, "object": obj})
                    since = max(since, self.rv)
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self.cond.wait(left)
            if not self.stopped:
                h.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass
        h.close_connection = True


def endpoints(name: str, addrs: list[str], ports: dict[str, int],
              not_ready: list[str] | None = None) -> dict[str, Any]:
    """A v1 Endpoints object (one subset)."""
    return {"kind": "Endpoints", "apiVersion": "v1", "metadata": {"name": name},
            "subsets": [{"addresses": [{"ip": a} for a in addrs],
                         "notReadyAddresses": [{"ip": a} for a in not_ready or []],
                         "ports": [{"name": k, "port": v, "protocol": "TCP"}
                                   for k, v in ports.items()]}]}


def endpoint_slice(name: str, service: str, ready: list[str], not_ready: list[str],
                   ports: dict[str, int]) -> dict[str, Any]:
    """A discovery.k8s.io/v1 EndpointSlice."""
    return {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
            "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in ready]
            + [{"addresses": [a], "conditions": {"ready": False}} for a in not_ready],
            "ports": [{"name": k, "port": v, "protocol": "TCP"} for k, v in ports.items()]}
