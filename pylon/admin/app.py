"""The Admin API application: request → (status, JSON body), transport-free.

Order of checks as APISIX: client address (``allow_admin``, 403), API key (401), resource
and method (404), body (400), then the resource operation.  Writes are committed through
the node's ``ConfigHub`` and answered once this node's watch has seen them.

Handlers raise their refusals (``pylon.errors.AdminError`` and its subclasses, with APISIX's
texts); ``answer`` is the one place an exception becomes a reply: an ``AdminError`` its
status and ``{"error_msg": ...}``, a store that is down or a conflicting concurrent write
503 (nothing changed), a ``PluginConfigError``, ``RouterError`` or ``ExprError`` 400, and
anything else is logged and answered 500 ``{"error_msg": "internal error"}``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qsl, urlsplit

from ..config.hub import ConfigHub
from ..config.store import Conflict, Op, StoreError
from ..errors import (
    AdminError,
    Forbidden,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    Unauthorized,
)
from ..model.kinds import CREDENTIALS, SPECS, Kind
from ..node import Node
from ..pdk import collect_config_warnings
from ..proxy.registry import PluginConfigError
from ..routing.expr import ExprError
from ..routing.router import RouterError
from .audit import AuditLog
from .auth import AdminKey, Auth, IPNetwork
from .meta import MetaContext, decode_body, handle_meta
from .resources import Plan, Reply, Resources, View, ttl_arg

log = logging.getLogger("pylon.admin")

PREFIX = "/apisix/admin"
#: most operations one batch may carry
BATCH_MAX = 1000
#: times a single write is planned again after a concurrent change before answering 503
CONFLICT_RETRIES = 2

Explain = Callable[[dict[str, str]], Awaitable[Reply]]
T = TypeVar("T")


async def answer(call: Awaitable[T], what: str = "") -> T | Reply:
    """Await a handler; a refusal it raises becomes its reply ``(status, body)``: the one
    mapping of errors to the Admin API's answers.  ``what`` ("METHOD path") names the
    request in the log."""
    try:
        return await call
    except AdminError as e:
        return e.status, e.body()
    except Conflict as e:                   # a write that kept conflicting: nothing changed
        log.warning("admin API: %s refused: %s", what, e)
        return 503, {"error_msg": str(e)}
    except StoreError as e:
        log.error("admin API: cannot store %s: %s", what, e)
        return 503, {"error_msg": f"failed to store the configuration: {e}"}
    except (PluginConfigError, RouterError, ExprError) as e:
        return 400, {"error_msg": str(e)}
    except Exception:
        log.exception("admin API: %s failed", what)
        return 500, {"error_msg": "internal error"}


class AdminApp:
    #: answers carry APISIX's Admin API CORS headers, OPTIONS is a preflight (its
    #: ``enable_admin_cors``, on by default)
    cors: bool = True

    def __init__(self, hub: ConfigHub, keys: Iterable[AdminKey],
                 allow: Iterable[IPNetwork] | None, key_required: bool = True,
                 audit_path: str | None = None, explain: Explain | None = None, *,
                 node: Node, router_kind: str = "radixtree_host_uri",
                 reload_plugins: Callable[[], Awaitable[Any]] | None = None,
                 viewer_secrets: str = "masked") -> None:
        self.hub = hub
        #: the node: ``node.plugins`` (swapped by a plugin reload: read at each use) and
        #: ``node.keyring``
        self.node = node
        self.auth = Auth(keys, allow, key_required)
        self.resources = Resources(hub.state, node, router_kind=router_kind)
        self.audit = AuditLog(audit_path) if audit_path else None
        #: what a viewer key reads in place of secrets: "masked" ("******") or "clear"
        #: (decrypted, as an admin key and as APISIX -- which has no viewer role)
        self.mask_for_viewers = viewer_secrets != "clear"
        self.meta = MetaContext(explain=explain, router_kind=router_kind,
                                plugins=lambda: node.plugins, reload_plugins=reload_plugins,
                                stream_plugins=lambda: node.plugins.table("stream"))

    async def handle(self, method: str, path: str, query: str,
                     headers: Mapping[str, str], body: bytes,
                     remote_addr: str | None = None) -> Reply:
        """``headers`` are keyed by lower-case name.  ``remote_addr`` is the client address
        checked against ``allow_admin`` (None is refused when a list is configured)."""
        return await answer(
            self._handle(method.upper(), path, query, headers, body, remote_addr),
            f"{method} {path}")

    async def _handle(self, method: str, path: str, query: str, headers: Mapping[str, str],
                      body: bytes, remote_addr: str | None) -> Reply:
        if not self.auth.address_allowed(remote_addr):
            log.warning("admin API: %s refused by allow_admin", remote_addr)
            raise Forbidden("403 Forbidden")
        args = dict(parse_qsl(query, keep_blank_values=True))
        if path.rstrip("/") == PREFIX and method == "HEAD":
            return 200, {}
        if not (path == PREFIX or path.startswith(PREFIX + "/")):
            raise NotFound("not found")
        key, why = self.auth.identify(method, args, headers)
        who = key.name if key is not None else None
        if why is not None:
            log.warning("admin API: failed to check token: %s", why)
            raise Unauthorized("failed to check token", description=why)
        segs = [s for s in path[len(PREFIX):].split("/") if s]
        if not segs:
            raise NotFound("not found")
        # schema, plugins, configs/validate, openapi.json, explain
        meta = await handle_meta(method, segs, args, body, self.meta, headers=headers)
        if meta is not None:
            return meta
        conf = decode_body(body)
        ttl_arg(args)                          # as APISIX: before the resource is looked at
        if segs[0] == "batch" and len(segs) == 1:
            if method != "POST":
                raise MethodNotAllowed("batch takes POST")
            return await self._batch(conf, who, remote_addr)
        spec, oid, sub_path, parent = resolve(segs)
        if method not in ("GET", "PUT", "POST", "PATCH", "DELETE"):
            raise NotFound("not found")
        if sub_path and method != "PATCH":
            raise NotFound("not found")
        if method == "GET":
            masked = key is not None and key.role == "viewer" and self.mask_for_viewers
            return self.resources.get(spec, oid, args, parent, masked)
        for attempt in range(CONFLICT_RETRIES + 1):
            # a write made by someone else between this plan and its commit (another admin
            # client, a ttl expiring) is a conflict; the request itself states no version,
            # so it is planned again on the newer state -- a PATCH merges onto it, references
            # are checked again -- and only a conflict that persists is answered 503
            view = View(self.hub.state)
            plan = self.plan(view, method, spec, oid, sub_path, conf, args)
            try:
                return await self._commit(plan, method, path, who, remote_addr)
            except Conflict:
                if attempt == CONFLICT_RETRIES:
                    raise
                await asyncio.sleep(0.02 * (attempt + 1))   # let the other write arrive
        raise AssertionError("unreachable")

    def plan(self, view: View, method: str, spec: Kind, oid: str | None, sub_path: str,
             conf: Any, args: Mapping[str, str]) -> Plan:
        with collect_config_warnings() as warned:     # accepted, but worth telling
            plan = self._plan(view, method, spec, oid, sub_path, conf, args)
        if warned and isinstance(plan.reply[1], dict):
            plan.reply = (plan.reply[0], {**plan.reply[1], "warning": "; ".join(warned)})
        return plan

    def _plan(self, view: View, method: str, spec: Kind, oid: str | None, sub_path: str,
              conf: Any, args: Mapping[str, str]) -> Plan:
        r = self.resources
        if method == "PUT":
            return r.plan_put(view, spec, oid, conf, args)
        if method == "POST":
            return r.plan_post(view, spec, oid, conf, args)
        if method == "PATCH":
            return r.plan_patch(view, spec, oid, sub_path, conf)
        return r.plan_delete(view, spec, oid, args)

    async def _commit(self, plan: Plan, method: str, path: str, who: str | None,
                      remote_addr: str | None) -> Reply:
        """Commit ``plan``; a ``StoreError`` is raised (a ``Conflict``: planned again by the
        caller, or answered 503 by ``answer``)."""
        rev = await self.hub.commit(plan.ops)
        if self.audit is not None:
            self.audit.record(who, remote_addr, method, path, rev, plan.changes,
                              self.node.plugins)
        return plan.reply

    async def _batch(self, conf: Any, who: str | None, remote_addr: str | None) -> Reply:
        """``{"operations": [{"method", "path", "body"}...]}``: every operation is checked
        against the state plus the ones before it, then all are committed together (one
        etcd transaction / one file revision) or none is."""
        ops = conf.get("operations") if isinstance(conf, dict) else None
        if not isinstance(ops, list) or not ops:
            raise InvalidRequest("invalid batch: expected {\"operations\": [...]} with at "
                                 "least one operation")
        if len(ops) > BATCH_MAX:
            raise InvalidRequest(f"invalid batch: at most {BATCH_MAX} operations")
        view = View(self.hub.state)
        total = Plan([], (200, {}))
        results: list[dict[str, Any]] = []
        for i, op in enumerate(ops):
            where = f"operations[{i}]"
            if not isinstance(op, dict) or not isinstance(op.get("method"), str) \
                    or not isinstance(op.get("path"), str):
                raise InvalidRequest(f"{where}: needs string method and path")
            method = op["method"].upper()
            if method not in ("PUT", "POST", "PATCH", "DELETE"):
                raise InvalidRequest(f"{where}: method must be PUT, POST, PATCH or DELETE")
            url = urlsplit(op["path"])
            rel = url.path[len(PREFIX):] if url.path.startswith(PREFIX + "/") else url.path
            try:
                spec, oid, sub_path, _parent = resolve([s for s in rel.split("/") if s])
            except AdminError as e:
                raise e.within(f"{where}: ") from None
            if sub_path and method != "PATCH":
                raise NotFound(f"{where}: not found")
            args = dict(parse_qsl(url.query, keep_blank_values=True))
            try:
                plan = self.plan(view, method, spec, oid, sub_path, op.get("body"), args)
            except AdminError as e:
                raise e.within(f"{where} ({method} {op['path']}): ") from None
            total.ops += plan.ops
            total.changes += plan.changes
            results.append({"status": plan.reply[0], "body": plan.reply[1]})
        total.ops = _merge_ops(total.ops)
        total.reply = (200, {"results": results})
        return await self._commit(total, "POST", PREFIX + "/batch", who, remote_addr)


class Target(NamedTuple):
    """What an Admin API path names."""

    spec: Kind
    oid: str | None
    sub_path: str
    parent: str | None              # the consumer owning a credential


def resolve(segs: list[str]) -> Target:
    """URL segments after ``/apisix/admin`` -> the Target (a refusal is raised)."""
    if not segs:
        raise NotFound("not found")
    spec = SPECS.get(segs[0])
    if spec is None:
        raise NotFound(f"Unsupported resource type: {segs[0]}")
    rest = segs[1:]
    if spec.name == "consumers" and len(rest) >= 2 and rest[1] == "credentials":
        owner = rest[0]
        if len(rest) == 2:
            return Target(CREDENTIALS, None, "", owner)
        return Target(CREDENTIALS, f"{owner}/credentials/{rest[2]}", "/".join(rest[3:]),
                      owner)
    if spec.two_part_id:
        if len(rest) == 1:
            raise InvalidRequest(f"missing {spec.kind} id")
        oid = "/".join(rest[:2]) if rest else None
        rest = rest[2:]
    else:
        oid = rest[0] if rest else None
        rest = rest[1:]
    return Target(spec, oid, "/".join(rest), None)


def _merge_ops(ops: list[Op]) -> list[Op]:
    """One op per key (a transaction may name a key once): the first op's guard, the last
    op's value."""
    first: dict[str, Op] = {}
    last: dict[str, Op] = {}
    for op in ops:
        first.setdefault(op.key, op)
        last[op.key] = op
    return [Op(k, last[k].value, first[k].expect, last[k].ttl) for k in first]

