"""APISIX Admin API v3 resources over the standalone document.

The document is the APISIX standalone layout (one top-level list per kind).  Every write is
checked, applied to the in-memory copy and handed whole to ``persist(new_doc)`` (the yaml
store rewrites its file atomically); when ``persist`` raises, the change is rolled back and
the client gets 503, so memory and file never disagree.  Indices are a monotonic counter
standing in for etcd's revisions: ``createdIndex`` when an object first appears,
``modifiedIndex`` on every change (including edits of the file made behind our back).

Every method returns ``(status, body)`` with APISIX's v3 envelopes and error texts.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..model.validate import convert

Reply = tuple[int, dict[str, Any]]
Persist = Callable[[dict[str, Any]], None]

ID_RE = re.compile(r"^[a-zA-Z0-9\-_.]{1,64}$")
NOT_FOUND: dict[str, Any] = {"message": "Key not found"}


@dataclass(frozen=True, slots=True)
class Kind:
    name: str                     # URL segment and top-level key: "routes"
    kind: str                     # APISIX's singular in messages: "route"
    key_field: str = "id"         # consumers are keyed by username
    typed: bool = False           # validated by pylon.model (routes, services, upstreams)
    post: bool = True             # POST (generated id) supported
    timestamps: bool = True       # create_time / update_time injected
    two_part_id: bool = False     # secrets: /secrets/<manager>/<id>
    #: (field, resource it names) checked on write and, reversed, on delete
    refs: tuple[tuple[str, str], ...] = ()
    label: str = ""               # how delete refusals name an object of this kind


SPECS: dict[str, Kind] = {k.name: k for k in (
    Kind("upstreams", "upstream", typed=True, label="upstream"),
    Kind("services", "service", typed=True, refs=(("upstream_id", "upstreams"),),
         label="service"),
    Kind("routes", "route", typed=True, label="route",
         refs=(("upstream_id", "upstreams"), ("service_id", "services"),
               ("plugin_config_id", "plugin_configs"))),
    Kind("stream_routes", "stream route", label="stream_route",
         refs=(("upstream_id", "upstreams"), ("service_id", "services"))),
    Kind("consumers", "consumer", key_field="username", post=False, label="consumer",
         refs=(("group_id", "consumer_groups"),)),
    Kind("consumer_groups", "consumer group"),
    Kind("plugin_configs", "plugin config"),
    Kind("global_rules", "global rule"),
    Kind("ssls", "ssl"),
    Kind("protos", "proto"),
    Kind("secrets", "secret", post=False, two_part_id=True),
    Kind("plugin_metadata", "plugin_metadata", post=False, timestamps=False),
)}
#: delete checks: target resource -> [(referring resource, field)], APISIX's order
USERS: dict[str, list[tuple[str, str]]] = {}
for _spec in SPECS.values():
    for _field, _target in _spec.refs:
        USERS.setdefault(_target, []).append((_spec.name, _field))
for _users in USERS.values():
    _users.sort(key=lambda u: ["routes", "services", "stream_routes", "consumers"].index(u[0]))


class PersistError(Exception):
    """``persist`` refused the new document; nothing was changed."""


@dataclass(slots=True)
class Entry:
    value: dict[str, Any]
    created: int
    modified: int


@dataclass(slots=True)
class Store:
    persist: Persist
    now: Callable[[], int] = field(default=lambda: int(time.time()))
    index: int = 0
    items: dict[str, dict[str, Entry]] = field(default_factory=dict)
    doc: dict[str, Any] = field(default_factory=dict)

    # -- the document --------------------------------------------------------------------
    def load(self, doc: Any) -> None:
        """Take ``doc`` (as read from the store) as the current state.  Objects whose value
        did not change keep their indices, so re-reading our own write changes nothing."""
        self.doc = dict(doc) if isinstance(doc, dict) else {}
        old, self.items = self.items, {}
        for spec in SPECS.values():
            rows = self.doc.get(spec.name)
            bucket: dict[str, Entry] = {}
            for i, row in enumerate(rows if isinstance(rows, list) else []):
                if not isinstance(row, dict):
                    continue
                raw = row.get(spec.key_field)
                oid = str(raw) if isinstance(raw, (str, int)) and not isinstance(raw, bool) \
                    else f"arr_{i + 1}"
                prev = old.get(spec.name, {}).get(oid)
                if prev is not None and prev.value == row:
                    bucket[oid] = prev
                else:
                    self.index += 1
                    bucket[oid] = Entry(row, prev.created if prev else self.index, self.index)
            self.items[spec.name] = bucket

    def to_doc(self) -> dict[str, Any]:
        out = dict(self.doc)
        for name, bucket in self.items.items():
            if bucket or name in out:
                out[name] = [e.value for e in bucket.values()]
        return out

    def _commit(self, name: str, oid: str, entry: Entry | None) -> None:
        bucket = self.items[name]
        before = dict(bucket)
        if entry is None:
            bucket.pop(oid, None)
        else:
            bucket[oid] = entry
        new_doc = self.to_doc()
        try:
            self.persist(new_doc)
        except Exception as e:
            self.items[name] = before
            raise PersistError(str(e) or type(e).__name__) from e
        self.doc = new_doc
        if entry is not None:
            self.index = max(self.index, entry.modified)

    # -- reads ---------------------------------------------------------------------------
    def get(self, spec: Kind, oid: str | None, query: Mapping[str, str]) -> Reply:
        bucket = self.items[spec.name]
        if oid is not None:
            e = bucket.get(oid)
            if e is None:
                return 404, dict(NOT_FOUND)
            return 200, self._node(spec, oid, e)
        rows = [(k, e) for k, e in bucket.items()]
        total = len(rows)
        if "page" in query and "page_size" in query:
            try:
                size = int(query["page_size"])
            except ValueError:
                size = 0
            if size < 10 or size > 500:
                return 400, {"error_msg": "page_size must be between 10 and 500"}
            try:
                page = max(1, int(query["page"]))
            except ValueError:
                page = 1
            rows.sort(key=lambda r: r[1].created)
            rows = rows[(page - 1) * size: page * size]
        return 200, {"list": [self._node(spec, k, e) for k, e in rows], "total": total}

    def _node(self, spec: Kind, oid: str, e: Entry) -> dict[str, Any]:
        value = e.value
        if spec.name == "ssls" and ("key" in value or "keys" in value):
            # as APISIX: private keys are never returned
            value = {k: v for k, v in value.items() if k not in ("key", "keys")}
        return {"key": _key(spec, oid), "value": value,
                "createdIndex": e.created, "modifiedIndex": e.modified}

    # -- writes --------------------------------------------------------------------------
    def put(self, spec: Kind, oid: str | None, conf: Any) -> Reply:
        if conf is None:
            return 400, {"error_msg": "missing configurations"}
        if not isinstance(conf, dict):
            return 400, {"error_msg": "invalid configuration: must be an object"}
        conf = copy.deepcopy(conf)
        oid, err = self._id_for_put(spec, oid, conf)
        if err:
            return 400, {"error_msg": err}
        assert oid is not None
        prev = self.items[spec.name].get(oid)
        if spec.timestamps:
            now = self.now()
            if "create_time" not in conf:
                conf["create_time"] = prev.value.get("create_time", now) if prev else now
            conf.setdefault("update_time", now)
        err = self._check(spec, oid, conf)
        if err:
            return 400, {"error_msg": err}
        created = prev.created if prev else self.index + 1
        self._commit(spec.name, oid, Entry(conf, created, self.index + 1))
        return (200 if prev else 201), {"key": _key(spec, oid), "value": conf}

    def post(self, spec: Kind, oid: str | None, conf: Any) -> Reply:
        if not spec.post:
            return 405, {"error_msg": f"not supported `POST` method for {spec.kind}"}
        if conf is None:
            return 400, {"error_msg": "missing configurations"}
        if not isinstance(conf, dict):
            return 400, {"error_msg": "invalid configuration: must be an object"}
        if oid is not None or conf.get("id") is not None:
            return 400, {"error_msg": f"wrong {spec.kind} id, do not need it"}
        conf = copy.deepcopy(conf)
        n = self.index + 1
        while f"{n:020d}" in self.items[spec.name]:
            n += 1
        oid = f"{n:020d}"
        conf["id"] = oid
        if spec.timestamps:
            now = self.now()
            conf.setdefault("create_time", now)
            conf.setdefault("update_time", now)
        err = self._check(spec, oid, conf)
        if err:
            return 400, {"error_msg": err}
        self._commit(spec.name, oid, Entry(conf, self.index + 1, self.index + 1))
        return 201, {"key": _key(spec, oid), "value": conf}

    def patch(self, spec: Kind, oid: str | None, sub_path: str, conf: Any) -> Reply:
        if oid is None:
            return 400, {"error_msg": f"missing {spec.kind} id"}
        if conf is None:
            return 400, {"error_msg": "missing new configuration"}
        if not sub_path and not isinstance(conf, dict):
            return 400, {"error_msg": "invalid configuration"}
        prev = self.items[spec.name].get(oid)
        if prev is None:
            return 404, dict(NOT_FOUND)
        value = copy.deepcopy(prev.value)
        if sub_path:
            value, err = _patch_sub(value, sub_path, copy.deepcopy(conf))
            if err:
                return 400, {"error_msg": err}
            touched = True
        else:
            value = merge(value, conf)
            touched = "update_time" not in conf
        if spec.key_field == "id" and value.get("id") is not None \
                and str(value["id"]) != oid:
            return 400, {"error_msg": f"wrong {spec.kind} id"}
        if spec.key_field == "username" and value.get("username") is not None \
                and str(value["username"]) != oid:
            return 400, {"error_msg": "wrong username"}
        if spec.key_field in prev.value or not oid.startswith("arr_"):
            value[spec.key_field] = oid
        if spec.timestamps and touched:
            value["update_time"] = self.now()
        err = self._check(spec, oid, value)
        if err:
            return 400, {"error_msg": err}
        self._commit(spec.name, oid, Entry(value, prev.created, self.index + 1))
        return 200, {"key": _key(spec, oid), "value": value}

    def delete(self, spec: Kind, oid: str | None, query: Mapping[str, str]) -> Reply:
        if oid is None:
            return 400, {"error_msg": f"missing {spec.kind} id"}
        if oid not in self.items[spec.name]:
            return 404, dict(NOT_FOUND)
        if query.get("force") != "true":
            for src, fld in USERS.get(spec.name, ()):
                for uid, e in self.items[src].items():
                    ref = e.value.get(fld)
                    if ref is not None and str(ref) == oid:
                        directly = " directly" if spec.name == "services" else ""
                        return 400, {"error_msg": f"can not delete this {spec.kind}{directly},"
                                                  f" {SPECS[src].label} [{uid}] is still"
                                                  " using it now"}
        self._commit(spec.name, oid, None)
        return 200, {"deleted": "1", "key": _key(spec, oid)}

    # -- checks --------------------------------------------------------------------------
    def _id_for_put(self, spec: Kind, oid: str | None,
                    conf: dict[str, Any]) -> tuple[str | None, str | None]:
        field_ = spec.key_field
        given = conf.get(field_)
        if given is not None and (not isinstance(given, (str, int)) or isinstance(given, bool)):
            return None, f"invalid configuration: {field_} must be a string or an integer"
        if oid is None:
            if given is None:
                return None, (f"missing {spec.kind} id" if field_ == "id"
                              else f"missing {spec.kind} {field_}")
            oid = str(given)
        elif given is not None and str(given) != oid:
            return None, (f"wrong {spec.kind} id" if field_ == "id" else f"wrong {field_}")
        if not spec.two_part_id and not ID_RE.match(oid):
            return None, f"invalid configuration: {field_} must match {ID_RE.pattern}"
        conf[field_] = oid
        return oid, None

    def _check(self, spec: Kind, oid: str, conf: dict[str, Any]) -> str | None:
        if spec.typed:
            _obj, rej = convert(spec.name, conf, "")
            if rej is not None:
                path = rej.path.lstrip(".")
                return f"{path}: {rej.message}" if path else rej.message
        for fld, target in spec.refs:
            ref = conf.get(fld)
            if ref is None:
                continue
            if str(ref) not in self.items[target]:
                what = SPECS[target].kind
                return (f"failed to fetch {what} info by {what} id [{ref}], "
                        "response code: 404")
        return None


def _key(spec: Kind, oid: str) -> str:
    return f"/apisix/{spec.name}/{oid}"


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
