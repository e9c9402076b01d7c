"""The Admin API application: request → (status, JSON body), transport-free.

Order of checks as APISIX: client address (``allow_admin``, 403), API key (401), resource
and method (404), body (400), then the resource operation.  No exception reaches the
client: an unexpected one is logged and answered 500 ``{"error_msg": "internal error"}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from .auth import AdminKey, Auth, IPNetwork
from .resources import SPECS, Persist, PersistError, Reply, Store

log = logging.getLogger("pylon.admin")

PREFIX = "/apisix/admin"
_decode = msgspec.json.Decoder()


class AdminApp:
    def __init__(self, doc_getter: Callable[[], Any], persist: Persist,
                 keys: Iterable[AdminKey], allow: Iterable[IPNetwork] | None,
                 key_required: bool = True) -> None:
        """``doc_getter()`` returns the node's current document (the master's ``doc``);
        when it returns a different object than last time (the file was edited, or our own
        write was read back) the resources are reloaded from it.  ``persist(new_doc)``
        stores a changed document and raises to refuse it."""
        self.doc_getter = doc_getter
        self.auth = Auth(keys, allow, key_required)
        self.store = Store(persist)
        self._seen: Any = _UNSET
        self._sync()

    def _sync(self) -> None:
        doc = self.doc_getter()
        if doc is not self._seen:
            self._seen = doc
            self.store.load(doc)

    async def handle(self, method: str, path: str, query: str,
                     headers: Mapping[str, str], body: bytes,
                     remote_addr: str | None = None) -> Reply:
        """``headers`` are keyed by lower-case name.  ``remote_addr`` is the client address
        checked against ``allow_admin`` (None is refused when a list is configured)."""
        try:
            return self._handle(method.upper(), path, query, headers, body, remote_addr)
        except Exception:
            log.exception("admin API: %s %s failed", method, path)
            return 500, {"error_msg": "internal error"}

    def _handle(self, method: str, path: str, query: str, headers: Mapping[str, str],
                body: bytes, remote_addr: str | None) -> Reply:
        if not self.auth.address_allowed(remote_addr):
            log.warning("admin API: %s refused by allow_admin", remote_addr)
            return 403, {"error_msg": "403 Forbidden"}
        args = dict(parse_qsl(query, keep_blank_values=True))
        if path.rstrip("/") == PREFIX and method == "HEAD":
            return 200, {}
        if not (path == PREFIX or path.startswith(PREFIX + "/")):
            return 404, {"error_msg": "not found"}
        why = self.auth.check(method, args, headers)
        if why is not None:
            log.warning("admin API: failed to check token: %s", why)
            return 401, {"error_msg": "failed to check token", "description": why}
        segs = [s for s in path[len(PREFIX):].split("/") if s]
        if not segs:
            return 404, {"error_msg": "not found"}
        spec = SPECS.get(segs[0])
        if spec is None:
            return 404, {"error_msg": f"Unsupported resource type: {segs[0]}"}
        rest = segs[1:]
        if spec.two_part_id:
            if len(rest) == 1:
                return 400, {"error_msg": f"missing {spec.kind} id"}
            oid = "/".join(rest[:2]) if rest else None
            rest = rest[2:]
        else:
            oid = rest[0] if rest else None
            rest = rest[1:]
        sub_path = "/".join(rest)
        if method not in ("GET", "PUT", "POST", "PATCH", "DELETE"):
            return 404, {"error_msg": "not found"}
        conf: Any = None
        if body.strip():
            try:
                conf = _decode.decode(body)
            except (msgspec.DecodeError, UnicodeDecodeError) as e:
                return 400, {"error_msg": f"invalid request body: {e}"}
        if sub_path and method != "PATCH":
            return 404, {"error_msg": "not found"}
        self._sync()
        store = self.store
        try:
            if method == "GET":
                return store.get(spec, oid, args)
            if method == "PUT":
                return store.put(spec, oid, conf)
            if method == "POST":
                return store.post(spec, oid, conf)
            if method == "PATCH":
                return store.patch(spec, oid, sub_path, conf)
            return store.delete(spec, oid, args)
        except PersistError as e:
            log.error("admin API: cannot store %s %s: %s", method, path, e)
            return 503, {"error_msg": f"failed to store the configuration: {e}"}


class _Unset:
    pass


_UNSET = _Unset()
