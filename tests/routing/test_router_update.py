"""Incremental router updates (Router.update, RadixTree.set/discard/refresh_segments).

The reference for every update is ``Router.build`` of the resulting route list:
an updated router must answer every request exactly like a freshly built one.
"""

from __future__ import annotations

import random

import pytest

from pylon.routing import RadixTree, Router, RouteSpec
from pylon.routing import router as router_mod
from pylon.routing.radix import RadixNode
from tests.routing.test_router import ALL_KINDS, HOST_URI, NOVARS, URI, R, Vars, hit


def outcome(m) -> tuple | None:
    return None if m is None else (m.route, m.route_id, m.matched_uri, m.matched_host, m.params)


# --------------------------------------------------------------------------- radix tree


def _check_tree(tree: RadixTree, keys: dict[str, int]) -> None:
    """Contents, exact up links, compression and cached label lengths."""
    assert dict(tree.items()) == keys and len(tree) == len(keys)
    stack: list[tuple[RadixNode, RadixNode | None, bool]] = [(tree.root, None, True)]
    while stack:
        node, nearest, is_root = stack.pop()
        assert node.llen == len(node.label)
        if node.value is not None:
            assert node.up is nearest
            nearest = node
        else:
            assert node.up is None
            if not is_root:  # no valueless leaves, no valueless pass-through nodes
                assert node.children is not None and len(node.children) >= 2
        if node.children is not None:
            assert node.children
            for c, child in node.children.items():
                assert child.label and child.label[0] == c
                stack.append((child, nearest, False))


def _matcher_chains(tree: RadixTree, index: dict, paths: list[str]) -> list[list]:
    """The values a big table's matcher visits for each path, deepest first: the real
    ``_Table.match`` (jump table, inline walk, up links) over ``tree`` and ``index``,
    with every candidate refusing so that the whole chain is walked.  The tree's values
    are swapped for such candidates meanwhile (same nodes, so ``index`` stays valid)."""
    seen: list = []
    valued = [node for node in _nodes(tree) if node.value is not None]
    original = [node.value for node in valued]
    for node in valued:
        def refuse(m, h, s, r, value=node.value):
            seen.append(value)
        node.value = ((refuse, None, None, (), 0, (0, 0, 0)),)
    table = router_mod._Table(None, {}, {})
    table.tree, table.jump, table.ordered = tree, index, ()
    chains = []
    try:
        for path in paths:
            seen.clear()
            assert table.match("GET", "h", path, NOVARS, "127.0.0.1") is None
            chains.append(list(seen))
    finally:
        for node, value in zip(valued, original, strict=True):
            node.value = value
    return chains


def _nodes(tree: RadixTree) -> list[RadixNode]:
    out, stack = [], [tree.root]
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend((node.children or {}).values())
    return out


def _chain(node: RadixNode | None) -> list:
    out = []
    while node is not None:
        out.append(node.value)
        node = node.up
    return out


@pytest.mark.parametrize("seed", range(8))
def test_radix_set_and_discard_keep_tree_links_and_jump_table_exact(seed):
    rnd = random.Random(seed)
    alphabet = "ab/"
    pool = ["", "/", "/a", "/a/", "/ab", "/ab/", "/b/", "a/", "/a/b", "/ab/a/", "/b/a/b"] + [
        "/" + "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 6))) for _ in range(30)
    ]
    keys: dict[str, int] = {}
    tree: RadixTree[int] = RadixTree.from_dict({})
    index = tree.segment_index()
    for step in range(300):
        moved = []
        for _ in range(rnd.randint(1, 3)):
            key = rnd.choice(pool)
            if key in keys and rnd.random() < 0.5:
                del keys[key]
                assert tree.discard(key)
                moved.append(key)
            else:
                keys[key] = step
                if tree.set(key, step):
                    moved.append(key)
        assert not tree.discard("/never/there")
        tree.refresh_segments(index, moved)
        _check_tree(tree, keys)
        fresh = RadixTree.from_dict(keys)
        assert set(index) == set(fresh.segment_index())
        paths = ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 8)))
                 for _ in range(30)]
        assert _matcher_chains(tree, index, paths) == [_chain(fresh.deepest(p)) for p in paths]


def test_radix_set_reports_whether_the_key_is_new():
    tree = RadixTree.from_dict({"/a/": 1})
    assert tree.set("/a/b", 2) is True
    assert tree.set("/a/b", 3) is False
    assert tree.deepest("/a/bc").value == 3
    assert tree.deepest("/a/bc").up.value == 1


def test_radix_set_on_an_inner_point_repoints_the_keys_below():
    tree = RadixTree.from_dict({"/": 0, "/a/b/c": 1, "/a/b/d": 2, "/a/x": 3})
    tree.set("/a/", 9)  # splits the edge "/" -> "a/..." and adopts three keys
    for path in ("/a/b/c", "/a/b/d", "/a/x"):
        assert _chain(tree.deepest(path))[1:] == [9, 0]
    assert tree.discard("/a/")
    for path in ("/a/b/c", "/a/b/d", "/a/x"):
        assert _chain(tree.deepest(path))[1:] == [0]
    _check_tree(tree, {"/": 0, "/a/b/c": 1, "/a/b/d": 2, "/a/x": 3})


def test_radix_discard_prunes_and_merges():
    tree = RadixTree.from_dict({"/abc": 1, "/abd": 2})
    assert tree.discard("/abd")
    _check_tree(tree, {"/abc": 1})
    assert tree.root.children["/"].label == "/abc"
    assert tree.discard("/abc")
    assert tree.root.children is None and len(tree) == 0


# --------------------------------------------------------------------------- targeted


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_replaced_route_keeps_its_place_among_equal_priority_routes(kind):
    r = Router([R("first", "/a"), R("second", "/a"), R("p1", "/p/*"), R("p2", "/p/*")], kind)
    errors = r.update(["first", "p1"], [R("first", "/a", vars=[]), R("p1", "/p/*")])
    assert errors == []
    assert hit(r, "/a") == "first"
    assert hit(r, "/p/x") == "p1"
    # replacing without listing the id in remove is the same
    assert r.update([], [R("second", "/a", priority=0)]) == []
    assert hit(r, "/a") == "first"
    # a removed and later re-added id goes last
    r.update(["first"], [])
    r.update([], [R("first", "/a")])
    assert hit(r, "/a") == "second"


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_new_routes_go_after_existing_equal_priority_routes(kind):
    r = Router([R("old", "/a/*")], kind)
    r.update([], [R("new", "/a/*")])
    assert hit(r, "/a/x") == "old"
    r.update([], [R("newer", "/a/*", priority=1)])
    assert hit(r, "/a/x") == "newer"


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_bad_spec_is_reported_and_left_out_while_removals_still_happen(kind):
    r = Router([R("keep", "/k"), R("gone", "/g"), R("replaced", "/r")], kind)
    errors = r.update(["gone"], [
        R("new", "/n"),
        R("bad", "/b", methods=frozenset({"GRAB"})),
        R("replaced", "/r", remote_addrs=("10.0.0.0/40",)),
    ])
    assert [rid for rid, _ in errors] == ["bad", "replaced"]
    assert "GRAB" in errors[0][1] and "bad CIDR" in errors[1][1]
    assert hit(r, "/g") is None
    assert hit(r, "/b") is None
    assert hit(r, "/r") is None  # its replacement is bad: gone, as in a fresh build
    assert hit(r, "/n") == "new" and hit(r, "/k") == "keep"
    assert set(r.ids()) == {"keep", "new"} and len(r) == 2 == r.route_count


def test_later_spec_with_the_same_id_wins_within_one_update():
    r = Router([], URI)
    assert r.update([], [R("x", "/one"), R("x", "/two")]) == []
    assert hit(r, "/one") is None and hit(r, "/two") == "x" and len(r) == 1


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_an_id_built_twice_is_removed_and_replaced_as_one(kind):
    r = Router([R("x", "/a", hosts=("h.test",)), R("y", "/a"), R("x", "/b/*")], kind)
    assert len(r) == 3 and hit(r, "/b/1") == "x"
    r.update([], [R("x", "/a")])  # takes the place of the first "x": before "y"
    assert len(r) == 2 and hit(r, "/a") == "x" and hit(r, "/b/1") is None
    r.update(["x"], [])
    assert len(r) == 1 and hit(r, "/a") == "y"


def test_a_mutable_uri_list_changed_after_build_does_not_break_removal():
    uris = ["/a", "/b/*"]
    r = Router([RouteSpec("x", "x", uris)], URI)  # type: ignore[arg-type]
    uris[:] = ["/c"]
    r.update(["x"], [])
    assert hit(r, "/a") is None and hit(r, "/b/1") is None and len(r) == 0


def test_update_counts_routes_and_lists_ids():
    r = Router([R("a", "/a"), R("b", "/b")], HOST_URI)
    assert set(r.ids()) == {"a", "b"} and len(r) == 2
    r.update(["a", "missing"], [R("c", "/c", hosts=("h.test",)), R("b", "/b2")])
    assert set(r.ids()) == {"b", "c"} and len(r) == 2
    assert hit(r, "/b") is None and hit(r, "/b2") == "b"
    r.update(["b", "c"], [])
    assert len(r) == 0 and not r.ids() and hit(r, "/b2") is None


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_removing_an_ancestor_key_links_the_keys_below_to_the_next_one_up(
        kind, monkeypatch):
    monkeypatch.setattr(router_mod, "_SMALL_TABLE_MAX_KEYS", -1)  # radix tree at any size
    post = frozenset({"POST"})
    r = Router([
        R("root", "/a*"),
        R("mid", "/a/*"),
        R("deep", "/a/b/*", methods=post),
        R("deeper", "/a/b/c/*", methods=post),
    ], kind)
    assert hit(r, "/a/b/c/x") == "mid"
    r.update(["mid"], [])
    assert hit(r, "/a/b/c/x") == "root"
    assert hit(r, "/a/b/c/x", method="POST") == "deeper"
    r.update([], [R("mid", "/a/*")])
    assert hit(r, "/a/b/c/x") == "mid"
    r.update(["root", "mid"], [R("top", "/*")])
    assert hit(r, "/a/b/c/x") == "top"
    assert hit(r, "/a/b/x", method="POST") == "deep"
    r.update(["deep", "deeper"], [])
    assert hit(r, "/a/b/c/x", method="POST") == "top"


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_jump_table_follows_segment_and_short_key_changes(kind, monkeypatch):
    monkeypatch.setattr(router_mod, "_JUMP_MIN_KEYS", 0)
    monkeypatch.setattr(router_mod, "_SMALL_TABLE_MAX_KEYS", -1)
    r = Router([R("apx", "/api/v1/x/*"), R("apy", "/apple/*")], kind)
    assert hit(r, "/api/v1/x/1") == "apx"
    assert hit(r, "/api/v2") is None
    r.update([], [R("ap", "/ap*")])  # a short key: best of every "/ap.../" entry
    assert hit(r, "/api/v2") == "ap"
    assert hit(r, "/apple/z") == "apy"
    assert hit(r, "/api/v1/x/1") == "apx"
    r.update([], [R("slash", "/*"), R("v1", "/api/v1/*")])  # "/" and a split below "/api/"
    assert hit(r, "/api/v1/y") == "v1"
    assert hit(r, "/api/v2") == "ap"
    assert hit(r, "/zzz/") == "slash"
    r.update(["ap"], [])
    assert hit(r, "/api/v2") == "slash"
    r.update(["v1", "apx"], [R("apz", "/api/z/*")])  # "/api/" entry recomputed after merges
    assert hit(r, "/api/v1/x/1") == "slash"
    assert hit(r, "/api/z/1") == "apz"
    r.update(["slash", "apz"], [])
    assert hit(r, "/api/z/1") is None and hit(r, "/apple/1") == "apy"


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_tables_switch_representation_when_crossing_size_thresholds(kind, monkeypatch):
    monkeypatch.setattr(router_mod, "_JUMP_MIN_KEYS", 8)
    r = Router([R("s0", "/s0/*")], kind)
    ids = [f"s{i}" for i in range(1, 12)]
    for rid in ids:
        r.update([], [R(rid, f"/{rid}/*")])
        assert hit(r, f"/{rid}/x") == rid and hit(r, "/s0/x") == "s0"
    assert r._nohost.jump is not None
    for rid in ids:
        r.update([rid], [])
        assert hit(r, f"/{rid}/x") is None and hit(r, "/s0/x") == "s0"
    assert r._nohost.tree is None


def test_host_tables_come_and_go_with_their_routes():
    r = Router([R("any", "/x")], HOST_URI)
    assert r.match == r._nohost.match and r._nohost.hosts is None  # no host tables to try
    assert hit(r, "/x", host="a.test") == "any"
    r.update([], [R("exact", "/x", hosts=("a.test",)), R("odd", "/x", hosts=("*b.test",))])
    assert hit(r, "/x", host="a.test") == "exact"
    m = r.match("GET", "xb.test", "/x", NOVARS, "1")
    assert (m.route_id, m.matched_host) == ("odd", "*b.test")  # non-dot wildcard suffix
    r.update(["odd"], [R("wild", "/x", hosts=("*.b.test",))])
    assert r._nondot == 0  # back to walking the host's dots only
    assert hit(r, "/x", host="xb.test") == "any"
    assert hit(r, "/x", host="c.b.test") == "wild"
    r.update(["exact", "wild"], [])
    assert not r._hosts and not r._wilds and r._nohost.hosts is None
    assert hit(r, "/x", host="a.test") == "any"


def test_update_can_change_host_routes_hosts_and_uris():
    r = Router([R("h", "/a", "/b/*", hosts=("a.test", "*.w.test"))], HOST_URI)
    r.update([], [R("h", "/c", hosts=("*.w.test",))])
    assert hit(r, "/a", host="a.test") is None
    assert hit(r, "/b/1", host="x.w.test") is None
    assert hit(r, "/c", host="x.w.test") == "h"
    assert list(r._hosts) == []


# --------------------------------------------------------------------------- randomized


class _Model:
    """Random routes and probes over a small vocabulary, so keys collide and nest."""

    SEGS = ("a", "b", "ab", "api", "v1")
    HOSTS = ("a.x.com", "b.x.com", "*.x.com", "*.com", "*.y.x.com", "c.y.x.com", "*z.org")
    PROBE_HOSTS = ("a.x.com", "b.x.com", "q.x.com", "c.y.x.com", "d.y.x.com", "x.com",
                   "z.org", "qz.org", "other.net", "")

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd
        self.next_id = 0
        self.specs_made = 0

    def path(self, max_segs: int = 3) -> str:
        rnd = self.rnd
        return "/" + "/".join(rnd.choice(self.SEGS) for _ in range(rnd.randint(0, max_segs)))

    def uri(self) -> str:
        rnd = self.rnd
        p = self.path()
        x = rnd.random()
        if x < 0.05:
            return rnd.choice(("/*", "/", "*", "/a*", "/ap*"))
        if x < 0.35:
            return p.rstrip("/") + "/*"
        if x < 0.5:
            return p + "*"
        if x < 0.6:
            return p.rstrip("/") + rnd.choice(("/:id", "/:id/*rest", "/*rest", "/:id/b"))
        if x < 0.65:
            return p.rstrip("/") + "/*/b"
        return p

    def spec(self, rid: str | None = None, bad: bool = False) -> RouteSpec:
        rnd = self.rnd
        if rid is None:
            self.next_id += 1
            rid = f"r{self.next_id}"
        methods = frozenset(rnd.sample(["GET", "POST"], rnd.choice([0, 0, 0, 1])))
        if bad:
            methods = frozenset({"GRAB"})
        self.specs_made += 1
        return RouteSpec(
            id=rid, payload=(rid, self.specs_made),  # a replacement has a new payload
            uris=tuple(self.uri() for _ in range(rnd.choice([1, 1, 1, 2]))),
            hosts=tuple(rnd.sample(self.HOSTS, rnd.choice([0, 0, 0, 1, 2]))),
            methods=methods,
            remote_addrs=("10.0.0.1",) if rnd.random() < 0.1 else (),
            vars=[["arg_k", "==", "v"]] if rnd.random() < 0.1 else None,
            priority=rnd.choice([0, 0, 0, 1, -1]),
        )

    def bulk_spec(self) -> RouteSpec:
        """A host-less route with one of a few hundred distinct keys (many first segments,
        some sharing "/api/" or nesting under "/a*")."""
        rnd = self.rnd
        self.next_id += 1
        k = rnd.randrange(2000)
        uri = rnd.choice((f"/n{k}/*", f"/api/n{k}*", f"/n{k}", f"/a{k}/:id", f"/a{k}*"))
        return RouteSpec(id=f"r{self.next_id}", payload=self.next_id, uris=(uri,),
                         priority=rnd.choice([0, 1]))

    def probes(self, routes) -> list[tuple]:
        rnd = self.rnd
        paths = {self.path(4) for _ in range(20)} | {"", "/", "/zz", "/a", "/ap", "/apix/"}
        for spec in routes:
            for u in spec.uris:
                lit = u.split("*")[0].split(":")[0]
                paths.update((lit, lit + "x", lit + "/", lit + "b/v1", lit[:-1], lit + "7/b"))
        picked = sorted(paths)
        if len(picked) > 300:  # big tables: a sample keeps the test fast
            picked = rnd.sample(picked, 300)
        out = []
        for p in picked:
            out.append((rnd.choice(["GET", "POST"]), rnd.choice(self.PROBE_HOSTS), p,
                        Vars(arg_k=rnd.choice(["v", "w"])), rnd.choice(["10.0.0.1", "10.0.0.2"])))
        return out


def _run_updates(kind: str, seed: int, batches: int, bulk: bool) -> None:
    rnd = random.Random(seed)
    model = _Model(rnd)
    current: dict[str, RouteSpec] = {}  # the route list a fresh build would get, in order
    for _ in range(rnd.randint(0, 40)):
        s = model.spec()
        current[s.id] = s
    router, errors = Router.build(list(current.values()), kind)
    assert errors == []
    for _ in range(batches):
        ids = list(current)
        remove = rnd.sample(ids, min(len(ids), rnd.choice([0, 1, 1, 2, 3])))
        if rnd.random() < 0.1:
            remove.append("no-such-route")
        add: list[RouteSpec] = []
        for _ in range(rnd.choice([0, 1, 1, 2, 4])):
            bad = rnd.random() < 0.05
            if ids and rnd.random() < 0.4:  # replace, listed in remove or not
                rid = rnd.choice(ids)
                if rnd.random() < 0.5:
                    remove.append(rid)
                add.append(model.spec(rid, bad))
            else:
                add.append(model.spec(None, bad))
        if bulk and rnd.random() < 0.1:  # cross the jump threshold (and back later)
            if len(current) < 450:
                add += [model.bulk_spec() for _ in range(450)]
            else:
                remove += rnd.sample(ids, 450)
        if add and rnd.random() < 0.05:
            add.append(model.spec(add[0].id))  # the same id twice: the later wins
        # the reference: replacements keep their place, new ids go last, bad ones are out
        add_ids = {s.id for s in add}
        for rid in remove:
            if rid not in add_ids:
                current.pop(rid, None)
        for s in add:
            current[s.id] = s
        expected_bad = [s.id for s in add if s.methods == {"GRAB"}]
        for s in add:
            if current.get(s.id) is s and s.methods == {"GRAB"}:
                del current[s.id]

        errors = router.update(remove, add)
        assert [rid for rid, _ in errors] == expected_bad
        fresh, _ = Router.build(list(current.values()), kind)
        assert len(router) == len(current) and set(router.ids()) == set(current)
        for args in model.probes(current.values()):
            assert outcome(router.match(*args)) == outcome(fresh.match(*args)), args


@pytest.mark.parametrize("thresholds", ["small-and-jump", "radix-only", "default-bulk"])
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_updated_router_matches_a_fresh_build(kind, thresholds, monkeypatch):
    if thresholds == "small-and-jump":  # tables cross both thresholds often
        monkeypatch.setattr(router_mod, "_JUMP_MIN_KEYS", 10)
        seeds, batches, bulk = range(3), 150, False
    elif thresholds == "radix-only":  # every table a radix tree with a jump table
        monkeypatch.setattr(router_mod, "_SMALL_TABLE_MAX_KEYS", -1)
        monkeypatch.setattr(router_mod, "_JUMP_MIN_KEYS", 0)
        seeds, batches, bulk = range(2), 150, False
    else:  # real thresholds, bulk batches push the host-less table past 256 keys
        seeds, batches, bulk = range(1), 60, True
    for seed in seeds:
        _run_updates(kind, seed, batches, bulk)
