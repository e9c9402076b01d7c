"""Incremental apply (ConfigModel.apply) gives exactly what a full compile of the same
configuration gives, and touches only what a change reaches."""

from __future__ import annotations

import random
from typing import Any

from pylon.config.compiler import ConfigModel
from pylon.config.store import Item
from pylon.config.yaml_store import items_to_doc
from pylon.node import Node
from pylon.proxy.registry import load


class Src:
    def __init__(self, args: dict[str, str] | None = None) -> None:
        self.args = args or {}

    def var(self, name: str) -> str | None:
        if name.startswith("arg_"):
            return self.args.get(name[4:])
        return None


def doc_of(keys: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return items_to_doc({k: Item(v, 1, 1) for k, v in keys.items()}, {})


def summary(model: ConfigModel) -> dict[str, Any]:
    c = model.compiled
    routes = {rid: (cr.upstream_key, cr.connect_timeout, cr.read_timeout, cr.service_id,
                    cr.websocket) for rid, cr in c.routes.items()}
    used = {cr.upstream_key for cr in c.routes.values() if cr.upstream_key}
    plans = {k: c.plans[k].nodes for k in used if k in c.plans}
    return {"routes": routes, "plans": plans}


def probes(model: ConfigModel) -> list[Any]:
    out = []
    r = model.compiled.router
    for i in range(12):
        for host in ("", "a.example.com", "x.wild.com"):
            for path in (f"/p{i}", f"/p{i}/x", f"/pre{i}/deep/er", "/", "/nothing"):
                for method, args in (("GET", {}), ("POST", {"v": "1"})):
                    m = r.match(method, host, path, Src(args), "127.0.0.1")
                    out.append(None if m is None else (m.route_id, m.matched_uri,
                                                       m.matched_host))
    return out


def random_object(rng: random.Random, kind: str, oid: str) -> dict[str, Any]:
    up = {"nodes": {f"127.0.0.{rng.randint(1, 3)}:{rng.choice([80, 81])}": 1},
          "timeout": {"connect": rng.choice([1, 2]), "send": 3, "read": rng.choice([4, 5])}}
    if kind == "upstreams":
        if rng.random() < 0.1:
            return {"id": oid, "nodes": {"h:x": 1}}            # invalid: bad port
        return {"id": oid, **up}
    if kind == "services":
        svc: dict[str, Any] = {"id": oid}
        c = rng.random()
        if c < 0.5:
            svc["upstream_id"] = f"u{rng.randint(0, 4)}"
        elif c < 0.8:
            svc["upstream"] = up
        if rng.random() < 0.3:
            svc["hosts"] = [rng.choice(["a.example.com", "*.wild.com"])]
        if rng.random() < 0.2:
            svc["enable_websocket"] = True
        return svc
    route: dict[str, Any] = {"id": oid}
    i = rng.randint(0, 11)
    route["uri"] = rng.choice([f"/p{i}", f"/p{i}/*", f"/pre{i}/*", "/*", "/"])
    c = rng.random()
    if c < 0.3:
        route["upstream_id"] = f"u{rng.randint(0, 4)}"
    elif c < 0.6:
        route["service_id"] = f"s{rng.randint(0, 4)}"
    elif c < 0.9:
        route["upstream"] = up
    if rng.random() < 0.2:
        route["methods"] = ["POST"]
    if rng.random() < 0.15:
        route["vars"] = [["arg_v", "==", "1"]]
    if rng.random() < 0.2:
        route["priority"] = rng.randint(-1, 2)
    if rng.random() < 0.2:
        route["hosts"] = [rng.choice(["a.example.com", "*.wild.com"])]
    if rng.random() < 0.05:
        route["status"] = 0
    if rng.random() < 0.05:
        route["timeout"] = {"connect": 9, "send": 9, "read": 9}
    if rng.random() < 0.03:
        route["uri"] = 5                                       # invalid type
    return route


def random_walk(rng: random.Random, keys: dict[str, dict[str, Any]], steps: int,
                pick: Any, make: Any, check: Any, node: Node | None = None) -> None:
    """Load ``keys``, then ``steps`` random puts / deletes (``pick() -> (kind, oid, key)``,
    ``make(kind, oid)``), each applied incrementally and compared by ``check(model,
    fresh, change)`` with a full compile of the same keys (plugins: ``node``'s)."""
    model = ConfigModel(node=node)
    model.load(doc_of(keys))
    for _step in range(steps):
        kind, oid, key = pick()
        puts: list[tuple[str, Any]] = []
        dels: list[str] = []
        if key in keys and rng.random() < 0.35:
            del keys[key]
            dels.append(key)
        else:
            keys[key] = make(kind, oid)
            puts.append((key, keys[key]))
        model.apply(puts, dels)
        fresh = ConfigModel(node=node)
        fresh.load(doc_of(keys))
        check(model, fresh, (puts, dels))


def test_random_changes_applied_one_by_one_equal_a_full_compile() -> None:
    rng = random.Random(20261121)
    kinds = {"upstreams": "u", "services": "s", "routes": "r"}

    def pick() -> tuple[str, str, str]:
        kind = rng.choice(list(kinds))
        oid = f"{kinds[kind]}{rng.randint(0, 6)}"
        return kind, oid, f"{kind}/{oid}"

    def check(model: ConfigModel, fresh: ConfigModel, change: Any) -> None:
        assert summary(model) == summary(fresh), change
        assert probes(model) == probes(fresh), change

    for _round in range(4):
        keys: dict[str, dict[str, Any]] = {}
        for kind, p in kinds.items():
            for i in range(rng.randint(0, 6)):
                keys[f"{kind}/{p}{i}"] = random_object(rng, kind, f"{p}{i}")
        random_walk(rng, keys, 120, pick, lambda k, o: random_object(rng, k, o), check)


def test_a_route_waiting_for_its_upstream_comes_back_when_it_appears() -> None:
    model = ConfigModel()
    compiled = model.load({"routes": [{"id": "1", "uri": "/a", "upstream_id": "u1"}]})
    assert "1" not in compiled.routes and compiled.rejected
    compiled, plans = model.apply([("upstreams/u1", {"id": "u1", "nodes": {"h:1": 1}})], [])
    assert "1" in compiled.routes and "upstreams/u1" in plans
    assert compiled.router.match("GET", "", "/a", Src(), None).route_id == "1"
    compiled, _ = model.apply([], ["upstreams/u1"])
    assert "1" not in compiled.routes
    assert compiled.router.match("GET", "", "/a", Src(), None) is None


def test_an_invalid_change_is_reported_with_its_key_and_the_rest_applies() -> None:
    model = ConfigModel()
    model.load({"routes": [{"id": "1", "uri": "/a", "upstream": {"nodes": {"h:1": 1}}}]})
    compiled, _ = model.apply([("routes/1", {"id": "1", "uri": "/a", "methods": "nope"}),
                               ("routes/2", {"id": "2", "uri": "/b",
                                             "upstream": {"nodes": {"h:1": 1}}})], [])
    assert [r.id for r in compiled.rejected] == ["1"]
    assert compiled.rejected[0].path.startswith("routes/1")
    assert set(compiled.routes) == {"2"}


def test_changing_an_upstream_replans_only_it_and_its_routes() -> None:
    doc: dict[str, Any] = {
        "upstreams": [{"id": f"u{i}", "nodes": {f"h{i}:80": 1}} for i in range(50)],
        "routes": [{"id": str(i), "uri": f"/r{i}", "upstream_id": f"u{i % 50}"}
                   for i in range(500)]}
    model = ConfigModel()
    model.load(doc)
    before = dict(model.compiled.routes)
    _, plans = model.apply([("upstreams/u3", {"id": "u3", "nodes": {"h3:81": 1},
                                              "timeout": {"connect": 7, "send": 7,
                                                          "read": 7}})], [])
    assert list(plans) == ["upstreams/u3"]
    after = model.compiled.routes
    changed = {rid for rid in after if after[rid] is not before[rid]}
    assert changed == {str(i) for i in range(3, 500, 50)}
    assert after["3"].connect_timeout == 7


def test_one_change_at_100k_routes_rebuilds_nothing_else() -> None:
    doc = {"routes": [{"id": str(i), "uri": f"/api/v1/r{i}" if i % 2 else f"/svc{i}/*",
                       "upstream": {"nodes": {"127.0.0.1:80": 1}}} for i in range(100_000)]}
    model = ConfigModel()
    model.load(doc)
    router = model.compiled.router
    before = dict(model.compiled.routes)
    for i in range(20):
        model.apply([(f"routes/{i}", {"id": str(i), "uri": f"/changed{i}/*",
                                      "upstream": {"nodes": {"127.0.0.1:81": 1}}})], [])
    assert model.compiled.router is router            # updated in place, not rebuilt
    same = sum(1 for rid, cr in model.compiled.routes.items() if before[rid] is cr)
    assert same == 100_000 - 20
    assert router.match("GET", "", "/changed3/x", Src(), None).route_id == "3"
    assert router.match("GET", "", "/svc4/x", Src(), None) is None
    assert router.match("GET", "", "/api/v1/r99999", Src(), None).route_id == "99999"


# -- plugin-bearing kinds ---------------------------------------------------------------
def plugin_summary(model: ConfigModel) -> dict[str, Any]:
    c = model.compiled
    chains = {rid: (sorted((cr.chain.confs or {}).items(), key=str),
                    [(h.name, h.phase) for h in cr.chain.rewrite])
              for rid, cr in c.routes.items()}
    cons = c.consumers
    index = {(p, k): (cred.consumer.username, cred.id, cred.consumer.group_id,
                      sorted(cred.consumer.plugins.items(), key=str))
             for p, keys in cons.by_key.items() for k, cred in keys.items()}
    return {"chains": chains, "global": [(h.name, h.conf) for h in c.global_chain.rewrite],
            "consumers": sorted(cons.consumers), "index": index,
            "rejected": sorted((r.kind, r.id) for r in c.rejected)}


def random_plugin_object(rng: random.Random, kind: str, oid: str) -> dict[str, Any]:
    def ka() -> dict[str, Any]:
        return rng.choice([{}, {"header": "X-K"}, {"query": "k"}, {"header": 5}])  # 5: bad
    if kind == "plugin_configs":
        return {"id": oid, "plugins": {"key-auth": ka()}}
    if kind == "global_rules":
        return {"id": oid, "plugins": {"key-auth": {"_meta": {"filter": [["arg_g", "==", oid]]},
                                                    **ka()}}}
    if kind == "consumer_groups":
        return {"id": oid, "plugins": {}}
    if kind == "consumers":
        c: dict[str, Any] = {"username": oid}
        if rng.random() < 0.6:
            c["plugins"] = {"key-auth": {"key": f"k{rng.randint(0, 5)}"}}   # duplicates too
        if rng.random() < 0.3:
            c["group_id"] = f"g{rng.randint(0, 2)}"
        return c
    if kind == "credentials":
        return {"id": oid.rsplit("/", 1)[-1],
                "plugins": {"key-auth": {"key": f"k{rng.randint(0, 5)}"}}}
    route: dict[str, Any] = {"id": oid, "uri": f"/{oid}",
                             "upstream": {"nodes": {"127.0.0.1:80": 1}}}
    if rng.random() < 0.5:
        route["plugins"] = {"key-auth": ka()}
    if rng.random() < 0.4:
        route["plugin_config_id"] = f"pc{rng.randint(0, 3)}"
    return route


def test_random_plugin_changes_applied_one_by_one_equal_a_full_compile() -> None:
    from pylon.config.store import join_key
    node = Node(plugins=load(["key-auth"]))
    rng = random.Random(4)
    ids = {"plugin_configs": ["pc0", "pc1", "pc2", "pc3"], "global_rules": ["1", "2"],
           "consumer_groups": ["g0", "g1", "g2"],
           "consumers": ["jack", "rose", "ann"],
           "credentials": ["jack/credentials/c1", "rose/credentials/c2", "ann/credentials/c3"],
           "routes": [f"r{i}" for i in range(6)]}

    def pick() -> tuple[str, str, str]:
        kind = rng.choice(list(ids))
        oid = rng.choice(ids[kind])
        return kind, oid, join_key(kind, oid)

    def check(model: ConfigModel, fresh: ConfigModel, change: Any) -> None:
        got, want = plugin_summary(model), plugin_summary(fresh)
        # rejections: the incremental one reports what this change rejected
        assert {k: v for k, v in got.items() if k != "rejected"} == \
            {k: v for k, v in want.items() if k != "rejected"}, change

    for _round in range(3):
        keys: dict[str, dict[str, Any]] = {}
        for kind, oids in ids.items():
            for oid in oids:
                if rng.random() < 0.5:
                    keys[join_key(kind, oid)] = random_plugin_object(rng, kind, oid)
        random_walk(rng, keys, 100, pick,
                    lambda k, o: random_plugin_object(rng, k, o), check, node)


def test_plugin_declared_upstreams_live_while_a_route_uses_them() -> None:
    node = Node(plugins=load(["traffic-split"]))
    inline = {"nodes": {"127.0.0.9:80": 1}}
    ts = {"traffic-split": {"rules": [{"weighted_upstreams": [{"upstream": inline}]}]}}

    def route(rid: str) -> dict[str, Any]:
        return {"id": rid, "uri": f"/{rid}",
                "upstream": {"nodes": {"127.0.0.1:80": 1}}, "plugins": ts}

    keys = {"routes/a": route("a"), "routes/b": route("b")}
    model = ConfigModel(node=node)
    model.load(doc_of(keys))
    shared = [k for k in model.compiled.plans if k.startswith("plugin-upstreams/")]
    assert len(shared) == 1                   # identical inline upstreams: one plan
    _, plans = model.apply([], ["routes/a"])
    assert shared[0] in model.compiled.plans and shared[0] not in plans
    _, plans = model.apply([], ["routes/b"])
    assert plans[shared[0]] is None and shared[0] not in model.compiled.plans
    _, plans = model.apply([("routes/a", route("a"))], [])
    assert plans[shared[0]].nodes[0].host == "127.0.0.9"
    fresh = ConfigModel(node=node)
    fresh.load(doc_of({"routes/a": route("a")}))
    assert set(fresh.compiled.plans) == set(model.compiled.plans)
