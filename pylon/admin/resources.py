"""APISIX Admin API v3 resources over the node's config store.

Reads come from the node's ``ConfigState`` (what the watch delivered, so what the node
serves); writes are turned into ``Op``s and committed through the ``ConfigHub`` -- one etcd
transaction, or one atomic rewrite of the standalone file.  Every write is guarded by the
revision it was checked against (``Op.expect``), so two conflicting writes never silently
lose one: the second is refused with 503 and changes nothing.

``plan_*`` methods check a request against a ``View`` (the state plus the writes staged
before it in the same batch) and return the ops and the reply to give once they are
committed; ``POST /apisix/admin/batch`` stages several of them and commits them together.

Replies are ``(status, body)`` with APISIX's v3 envelopes; a refusal is raised as a
``pylon.errors.AdminError`` carrying APISIX's text (``answer`` in ``app.py`` replies it).
The kinds (``Kind``, ``SPECS``, ``CREDENTIALS``) are the catalogue in ``pylon.model.kinds``;
the plugins and the keyring are the node's, read at each use (a plugin reload swaps them).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from ..config.state import ConfigState
from ..config.store import Item, Op
from ..errors import InvalidRequest, KeyNotFound, MethodNotAllowed, NotFound
from ..model.kinds import CREDENTIALS, ID_RE, SPECS, USERS, Kind
from ..node import Node
from ..proxy.registry import PluginSpec

Reply = tuple[int, Any]


#: (key, value before, value after) of every change a request made -- the audit log's input
Changes = list[tuple[str, Any, Any]]


def store_key(spec: Kind, oid: str) -> str:
    """The key in the store (relative to the prefix)."""
    return f"consumers/{oid}" if spec is CREDENTIALS else f"{spec.name}/{oid}"


class View:
    """The state as a batch sees it: writes staged earlier in the batch on top."""

    __slots__ = ("staged", "state")

    def __init__(self, state: ConfigState) -> None:
        self.state = state
        #: (kind, id) -> Item, or None for a staged delete
        self.staged: dict[tuple[str, str], Item | None] = {}

    def get(self, kind: str, oid: str) -> Item | None:
        k = (kind, oid)
        if k in self.staged:
            return self.staged[k]
        return self.state.kinds.get(kind, {}).get(oid)

    def rows(self, kind: str) -> Iterator[tuple[str, Item]]:
        staged = self.staged
        for oid, item in self.state.kinds.get(kind, {}).items():
            if (kind, oid) not in staged:
                yield oid, item
        for (k, oid), got in staged.items():
            if k == kind and got is not None:
                yield oid, got

    def stage(self, kind: str, oid: str, item: Item | None) -> None:
        self.staged[(kind, oid)] = item


@dataclass(slots=True)
class Plan:
    """A checked write: commit ``ops``, then answer ``reply``."""

    ops: list[Op]
    reply: Reply
    changes: Changes = field(default_factory=list)


@dataclass(slots=True)
class Resources:
    state: ConfigState
    #: the node: its ``plugins`` check objects and name their secret fields, its
    #: ``keyring`` (None: stored as given) encrypts those and the private keys of ssls
    node: Node
    now: Callable[[], int] = field(default=lambda: int(time.time()))
    router_kind: str = "radixtree_host_uri"

    # -- reads ---------------------------------------------------------------------------
    def get(self, spec: Kind, oid: str | None, query: Mapping[str, str],
            parent: str | None = None, masked: bool = False) -> Reply:
        """``masked``: every secret reads ``"******"`` (a viewer key's answer by default);
        else plugin secrets are answered decrypted, as APISIX does."""
        bucket = self.state.kinds.get(spec.name, {})
        if oid is not None:
            e = bucket.get(oid)
            if e is None:
                raise KeyNotFound()
            return 200, self._node(spec, oid, e, masked)
        rows = [(k, e) for k, e in bucket.items()
                if (parent is None or k.startswith(parent + "/credentials/"))
                and _passes(spec, e.value, query)]
        rows.sort(key=lambda r: r[1].created)
        total = len(rows)
        if "page" in query and "page_size" in query:
            try:
                size = int(query["page_size"])
            except ValueError:
                size = 0
            if size < 10 or size > 500:
                raise InvalidRequest("page_size must be between 10 and 500")
            try:
                page = max(1, int(query["page"]))
            except ValueError:
                page = 1
            rows = rows[(page - 1) * size: page * size]
        return 200, {"list": [self._node(spec, k, e, masked) for k, e in rows],
                     "total": total}

    def _node(self, spec: Kind, oid: str, e: Item, masked: bool = False) -> dict[str, Any]:
        value = _public(spec, e.value)
        if masked:
            from .audit import mask_secrets
            value = mask_secrets(spec.name, value, self.node.plugins)
        else:
            value = self._opened(spec, value)
        return {"key": _key(spec, oid), "value": value,
                "createdIndex": e.created, "modifiedIndex": e.modified}

    def _seal(self, spec: Kind, value: dict[str, Any], opening: bool) -> dict[str, Any]:
        """Plugin secret fields (each plugin's ``encrypt_fields``) encrypted for storage,
        or opened for an answer (APISIX answers them decrypted)."""
        keyring = self.node.keyring
        if keyring is None:
            return value
        return self.node.plugins.map_secrets(
            spec.name, value, keyring.open if opening else keyring.seal)

    def _opened(self, spec: Kind, value: dict[str, Any]) -> dict[str, Any]:
        return self._seal(spec, value, True)

    # -- writes --------------------------------------------------------------------------
    def plan_put(self, view: View, spec: Kind, oid: str | None, conf: Any,
                 query: Mapping[str, str]) -> Plan:
        err = _body_error(conf)
        if err:
            raise InvalidRequest(err)
        conf = copy.deepcopy(conf)
        oid, err = self._id_for_put(spec, oid, conf)
        if err:
            raise InvalidRequest(err)
        assert oid is not None
        err = _reserved_id(oid)
        if err:
            raise InvalidRequest(err)
        err = self._forbidden(spec, conf)
        if err:
            raise InvalidRequest(err)
        prev = view.get(spec.name, oid)
        err = self._check(view, spec, oid, conf)
        if err:
            raise InvalidRequest(err)
        if spec is CREDENTIALS:
            owner = oid.split("/credentials/", 1)[0]
            if view.get("consumers", owner) is None:
                raise NotFound("consumer not found")
        if spec.timestamps:
            now = self.now()
            conf["create_time"] = prev.value.get("create_time", now) if prev else now
            conf["update_time"] = now
        return self._stage_new(view, spec, oid, prev, conf, query)

    def plan_post(self, view: View, spec: Kind, oid: str | None, conf: Any,
                  query: Mapping[str, str]) -> Plan:
        if not spec.post:
            raise MethodNotAllowed(f"not supported `POST` method for {spec.kind}")
        err = _body_error(conf)
        if err:
            raise InvalidRequest(err)
        if oid is not None or conf.get("id") is not None:
            raise InvalidRequest(f"wrong {spec.kind} id, do not need it")
        conf = copy.deepcopy(conf)
        err = self._forbidden(spec, conf)
        if err:
            raise InvalidRequest(err)
        n = self.state.revision + 1 + len(view.staged)
        while view.get(spec.name, f"{n:020d}") is not None:
            n += 1
        oid = f"{n:020d}"
        err = self._check(view, spec, oid, conf)
        if err:
            raise InvalidRequest(err)
        conf["id"] = oid
        if spec.timestamps:
            now = self.now()
            conf["create_time"] = now
            conf["update_time"] = now
        return self._stage_new(view, spec, oid, None, conf, query)

    @staticmethod
    def _forbidden(spec: Kind, conf: dict[str, Any]) -> str | None:
        from .checks import check_forbidden
        return check_forbidden(conf) if spec.timestamps else None

    def _stage_new(self, view: View, spec: Kind, oid: str, prev: Item | None,
                   conf: dict[str, Any], query: Mapping[str, str]) -> Plan:
        """The end of PUT and POST (the object is checked): ``?ttl``, then stage it."""
        ttl = ttl_arg(query)
        return self._stage(view, spec, oid, prev, conf, ttl,
                           (200 if prev else 201, {"key": _key(spec, oid), "value": conf}))

    def plan_patch(self, view: View, spec: Kind, oid: str | None, sub_path: str,
                   conf: Any) -> Plan:
        if not spec.patch:
            raise MethodNotAllowed(f"not supported `PATCH` method for {spec.kind}")
        if oid is None:
            raise InvalidRequest(f"missing {spec.kind} id")
        if conf is None:
            raise InvalidRequest("missing new configuration")
        if not sub_path and not isinstance(conf, dict):
            raise InvalidRequest("invalid configuration")
        prev = view.get(spec.name, oid)
        if prev is None:
            raise KeyNotFound()
        value = copy.deepcopy(prev.value)
        if sub_path:
            value, err = _patch_sub(value, sub_path, copy.deepcopy(conf))
            if err:
                raise InvalidRequest(err)
            touched = True
        else:
            value = merge(value, conf)
            touched = "update_time" not in conf
        if not isinstance(value, dict):
            raise InvalidRequest("invalid configuration")
        if spec.key_field == "id" and value.get("id") is not None \
                and str(value["id"]) != _last(oid):
            raise InvalidRequest(f"wrong {spec.kind} id")
        if spec.key_field == "username" and value.get("username") is not None \
                and str(value["username"]) != oid:
            raise InvalidRequest("wrong username")
        if spec.key_field in prev.value or not oid.startswith("arr_"):
            value[spec.key_field] = _last(oid) if spec is CREDENTIALS else oid
        if spec.timestamps and touched:
            value["update_time"] = self.now()
        err = self._check(view, spec, oid, value)
        if err:
            raise InvalidRequest(err)
        return self._stage(view, spec, oid, prev, value, None,
                           (200, {"key": _key(spec, oid), "value": value}))

    def plan_delete(self, view: View, spec: Kind, oid: str | None,
                    query: Mapping[str, str]) -> Plan:
        if oid is None:
            raise InvalidRequest(f"missing {spec.kind} id")
        prev = view.get(spec.name, oid)
        if prev is None:
            raise KeyNotFound()
        if query.get("force") != "true":
            if spec.name == "protos":
                self._proto_in_use(view, oid)
            for src, fld in USERS.get(spec.name, ()):
                for uid, e in view.rows(src):
                    ref = e.value.get(fld)
                    if ref is not None and str(ref) == oid:
                        directly = " directly" if spec.name == "services" else ""
                        raise InvalidRequest(f"can not delete this {spec.kind}{directly},"
                                             f" {SPECS[src].label} [{uid}] is still"
                                             " using it now")
        plan = self._stage(view, spec, oid, prev, None, None,
                           (200, {"deleted": "1", "key": _key(spec, oid)}))
        if spec.name == "consumers":
            # a consumer's credentials go with it (one transaction)
            for cid, cred in list(view.rows("credentials")):
                if cid.startswith(oid + "/credentials/"):
                    p = self._stage(view, CREDENTIALS, cid, cred, None, None, plan.reply)
                    plan.ops += p.ops
                    plan.changes += p.changes
        return plan

    @staticmethod
    def _proto_in_use(view: View, oid: str) -> None:
        """APISIX refuses to delete a proto a route's or service's grpc-transcode names."""
        for src, label in (("routes", "route"), ("services", "service")):
            for uid, e in view.rows(src):
                plugins = e.value.get("plugins")
                conf = plugins.get("grpc-transcode") if isinstance(plugins, dict) else None
                if isinstance(conf, dict) and conf.get("proto_id") is not None \
                        and str(conf["proto_id"]) == oid:
                    raise InvalidRequest(f"can not delete this proto, {label} [{uid}] is "
                                         "still using it now")

    def _stage(self, view: View, spec: Kind, oid: str, prev: Item | None,
               value: dict[str, Any] | None, ttl: int | None, reply: Reply) -> Plan:
        key = store_key(spec, oid)
        if value is not None:
            value = self._seal(spec, value, False)
        if spec.name == "ssls" and value is not None:
            if self.node.keyring is not None:
                value = self.node.keyring.seal_ssl(value)
            if isinstance(reply[1].get("value"), dict):       # as on reads
                reply = (reply[0], {**reply[1], "value": _public(spec, reply[1]["value"])})
        view.stage(spec.name, oid, None if value is None else
                   Item(value, prev.created if prev else 0, 0))
        op = Op(key, value, expect=prev.modified if prev else 0, ttl=ttl)
        return Plan([op], reply, [(key, prev.value if prev else None, value)])

    # -- checks --------------------------------------------------------------------------
    def _id_for_put(self, spec: Kind, oid: str | None,
                    conf: dict[str, Any]) -> tuple[str | None, str | None]:
        field_ = spec.key_field
        given = conf.get(field_)
        if spec is CREDENTIALS:
            # the URL carries "jack/credentials/c1"; the object's id is "c1"
            if oid is None:                  # PUT /consumers/jack/credentials
                return None, "missing credential id"
            if given is not None and str(given) != _last(oid):
                return None, "wrong credential id"
            conf[field_] = _last(oid)
            return oid, None
        if spec.key_field == "username":
            # APISIX: the body names the consumer; the schema first, then the URL's name
            from .checks import check_forbidden, schema_error
            err = check_forbidden(conf)
            if err is not None:
                return None, err
            err = schema_error(spec.name, conf)
            if err is not None:
                return None, "invalid configuration: " + err
            if oid is not None and oid != given:
                return None, "wrong username"
            return str(given), None
        if oid is None:
            if given is None:
                return None, f"missing {spec.kind} id"
            oid = str(given)
            # as APISIX: an id given only in the body keeps its JSON type (1 stays 1)
        elif given is not None and str(given) != oid:
            return None, f"wrong {spec.kind} id"
        else:
            conf[field_] = oid
        if spec.two_part_id and not all(ID_RE.match(p) for p in oid.split("/")):
            # the other kinds' ids are checked by their schema
            return None, f"invalid configuration: {field_} must match {ID_RE.pattern}"
        return oid, None

    def _check(self, view: View, spec: Kind, oid: str, conf: dict[str, Any]) -> str | None:
        """APISIX's checks of ``conf`` in its order and words (``checks.check_resource``),
        then what Pylon refuses beyond them."""
        from ..config.loader import shape_error
        from .checks import check_resource
        err = shape_error(conf)              # a PATCH sub-path nests as deep as its URL
        if err is not None:
            return "invalid configuration: " + err
        dup = None
        if spec.name in ("consumers", "credentials"):
            def dup() -> str | None:
                return self._duplicate_key(view, spec, oid, conf)
        def value(k: str, i: str) -> Any:
            item = view.get(k, i)
            return item.value if item is not None else None
        return check_resource(spec.name, conf, lambda k, i: view.get(k, i) is not None,
                              self.node.plugins, self.router_kind, dup, value)

    def _duplicate_key(self, view: View, spec: Kind, oid: str,
                       conf: dict[str, Any]) -> str | None:
        """An auth plugin key (``consumer_key``) already used by another consumer or
        credential: refused, as a key must name one consumer."""
        from ..proxy.consumers import decrypt_fields
        plugins = conf.get("plugins")
        if not isinstance(plugins, dict):
            return None
        reg = self.node.plugins
        keyring = self.node.keyring
        #: plugin name -> (its spec, its key field, the key this object sets)
        wanted: dict[str, tuple[PluginSpec, str, str]] = {}
        for name, pc in plugins.items():
            spec_ = reg.get(name)
            if spec_ is None or spec_.consumer_key is None or not isinstance(pc, dict):
                continue
            pc = decrypt_fields(pc, spec_.encrypt_fields, keyring)
            if isinstance(pc.get(spec_.consumer_key), str):
                wanted[name] = (spec_, spec_.consumer_key, pc[spec_.consumer_key])
        if not wanted:
            return None
        me = ("consumers" if spec.name == "consumers" else "credentials", oid)
        for kind in ("consumers", "credentials"):
            for other_id, item in view.rows(kind):
                if (kind, other_id) == me or not isinstance(item.value, dict):
                    continue
                for name, (spec_, field_, key) in wanted.items():
                    pc = (item.value.get("plugins") or {}).get(name)
                    if not isinstance(pc, dict):
                        continue
                    pc = decrypt_fields(pc, spec_.encrypt_fields, keyring)
                    if pc.get(field_) == key:
                        owner = other_id.split("/credentials/", 1)[0]
                        return f"duplicate key found with consumer: {owner}"
        return None


def _reserved_id(oid: str) -> str | None:
    """``.`` and ``..`` match APISIX's id pattern, but a URL naming them is resolved away
    (``/routes/..`` is ``/``): an object with such an id could never be read or deleted."""
    for part in oid.split("/"):
        if part in (".", ".."):
            return ('invalid configuration: property "id" validation failed: '
                    '"." and ".." are not allowed')
    return None


def _body_error(conf: Any) -> str | None:
    if conf is None:
        return "missing configurations"
    if not isinstance(conf, dict):
        from ..model.schema_errors import api7_error
        return f"invalid configuration: {api7_error({'type': 'object'}, conf)}"
    return None


def _public(spec: Kind, value: dict[str, Any]) -> dict[str, Any]:
    """``value`` as it may be answered: as APISIX, private keys of ssls never are."""
    if spec.name == "ssls" and ("key" in value or "keys" in value):
        return {k: v for k, v in value.items() if k not in ("key", "keys")}
    return value


def _last(oid: str) -> str:
    return oid.rsplit("/", 1)[-1]


def ttl_arg(query: Mapping[str, str]) -> int | None:
    """``?ttl=`` as APISIX reads it (any number Lua's ``tonumber`` takes; checked before
    anything else of the request); a ttl under one second keeps the object for good."""
    raw = query.get("ttl")
    if raw is None:
        return None
    from ..routing.expr import lua_tonumber
    num = lua_tonumber(raw)
    if num is None:
        raise InvalidRequest("invalid argument ttl: should be a number")
    ttl = int(num)
    return ttl if ttl >= 1 else None


def _passes(spec: Kind, value: dict[str, Any], query: Mapping[str, str]) -> bool:
    """APISIX v3 list filters: ``name`` and ``uri`` (substring), ``label`` (``k`` or
    ``k:v``), ``filter`` (url-encoded ``field=value`` pairs, e.g. ``service_id=1``)."""
    name = query.get("name")
    if name and name not in str(value.get("name") or ""):
        return False
    uri = query.get("uri")
    if uri and spec.name == "routes":
        uris = [value.get("uri")] + list(value.get("uris") or ())
        if not any(isinstance(u, str) and uri in u for u in uris):
            return False
    label = query.get("label")
    if label:
        labels = value.get("labels")
        if not isinstance(labels, dict):
            return False
        k, sep, v = label.partition(":")
        if k not in labels or (sep and str(labels[k]) != v):
            return False
    flt = query.get("filter")
    if flt:
        for k, v in parse_qsl(flt, keep_blank_values=True):
            if str(value.get(k, "")) != v:
                return False
    return True


def _key(spec: Kind, oid: str) -> str:
    return f"/apisix/{store_key(spec, oid)}"


def merge(origin: dict[str, Any], extend: Mapping[str, Any]) -> dict[str, Any]:
    """JSON merge patch (RFC 7386, as APISIX's table.merge): objects merge recursively,
    ``null`` deletes a key, anything else (arrays included) replaces."""
    for k, v in extend.items():
        if v is None:
            origin.pop(k, None)
        elif isinstance(v, dict):
            cur = origin.get(k)
            origin[k] = merge(cur if isinstance(cur, dict) else {}, v)
        else:
            origin[k] = copy.deepcopy(v)
    return origin


def _patch_sub(value: dict[str, Any], sub_path: str, conf: Any) -> tuple[Any, str | None]:
    """Replace the value at ``a/b/c`` (missing objects on the way are created)."""
    segs = [s for s in sub_path.split("/") if s]
    cur: Any = value
    for i, seg in enumerate(segs[:-1]):
        if cur.get(seg) is None:
            cur[seg] = {}
        cur = cur[seg]
        if not isinstance(cur, dict):
            return value, "invalid sub-path: /" + "/".join(segs[:i + 1])
    if not isinstance(cur, dict):
        return value, "invalid sub-path: /" + sub_path
    if segs:
        cur[segs[-1]] = conf
        return value, None
    return conf, None
