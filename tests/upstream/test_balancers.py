"""Behaviour of the upstream load balancers (APISIX semantics)."""

from __future__ import annotations

import random
from collections import Counter
from zlib import crc32

import pytest

from pylon.upstream.balancer import BALANCERS, Node, create_balancer
from pylon.upstream.chash import CHash, node_points
from pylon.upstream.ewma import EWMA, PENALTY
from pylon.upstream.least_conn import LeastConn
from pylon.upstream.roundrobin import CYCLE_CAP, RoundRobin, swrr_sequence


class Req:
    """Minimal HashKeySource."""

    def __init__(self, consumer_name: str | None = None, **vars: str) -> None:
        self.vars = vars
        self.consumer_name = consumer_name

    def var(self, name: str) -> str | None:
        return self.vars.get(name)


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def nodes(*spec: tuple[str, int] | tuple[str, int, int]) -> list[Node]:
    out = []
    for s in spec:
        host, weight, *prio = s
        out.append(Node(host, 80, weight, prio[0] if prio else 0))
    return out


def hosts(balancer, count: int, **kw) -> list[str]:
    out = []
    for _ in range(count):
        n = balancer.pick(kw.pop("req", None), **kw)
        out.append(None if n is None else n.host)
    return out


def all_types():
    return pytest.mark.parametrize("kind", sorted(BALANCERS))


# --------------------------------------------------------------------------- Node


def test_node_addr_is_precomputed_host_port():
    n = Node("10.0.0.1", 8080)
    assert n.addr == "10.0.0.1:8080"
    assert n.weight == 1 and n.priority == 0


def test_node_addr_brackets_bare_ipv6_only():
    assert Node("::1", 80).addr == "[::1]:80"
    assert Node("[2001:db8::1]", 443).addr == "[2001:db8::1]:443"
    assert Node("example.com", 80).addr == "example.com:80"


def test_node_is_frozen_hashable_value():
    a, b = Node("h", 1, 5), Node("h", 1, 5)
    assert a == b and hash(a) == hash(b)
    with pytest.raises(AttributeError):
        a.weight = 3  # type: ignore[misc]


def test_create_balancer_knows_the_four_apisix_types():
    assert set(BALANCERS) == {"roundrobin", "chash", "least_conn", "ewma"}
    assert isinstance(create_balancer("roundrobin", nodes(("a", 1))), RoundRobin)
    assert isinstance(create_balancer("chash", nodes(("a", 1))), CHash)
    assert isinstance(create_balancer("least_conn", nodes(("a", 1))), LeastConn)
    assert isinstance(create_balancer("ewma", nodes(("a", 1))), EWMA)
    with pytest.raises(ValueError):
        create_balancer("random", nodes(("a", 1)))


# --------------------------------------------------------------------------- common


@all_types()
def test_every_balancer_returns_none_without_nodes(kind):
    b = create_balancer(kind, [])
    assert b.pick(Req(remote_addr="1.1.1.1")) is None


@all_types()
def test_every_balancer_returns_none_when_all_nodes_tried(kind):
    ns = nodes(("a", 1), ("b", 2), ("c", 1, -1))
    b = create_balancer(kind, ns)
    assert b.pick(Req(remote_addr="1.1.1.1"), tried={n.addr for n in ns}) is None


@all_types()
def test_every_balancer_never_picks_weight_zero_nodes(kind):
    b = create_balancer(kind, nodes(("a", 1), ("zero", 0), ("b", 1)))
    for i in range(300):
        n = b.pick(Req(remote_addr=f"10.0.{i // 250}.{i % 250}"))
        b.before(n)
        assert n.host != "zero"
        b.after(n, 0.01, False)


@all_types()
def test_every_balancer_with_only_weight_zero_nodes_returns_none(kind):
    assert create_balancer(kind, nodes(("z", 0))).pick(Req(remote_addr="1.1.1.1")) is None


@all_types()
def test_every_balancer_retries_visit_each_node_once_then_none(kind):
    ns = nodes(("a", 1), ("b", 3), ("c", 2), ("d", 1))
    b = create_balancer(kind, ns)
    tried: set[str] = set()
    seen = []
    for _ in range(len(ns)):
        n = b.pick(Req(remote_addr="9.9.9.9"), tried=tried)
        assert n is not None and n.addr not in tried
        tried.add(n.addr)
        seen.append(n.host)
    assert sorted(seen) == ["a", "b", "c", "d"]
    assert b.pick(Req(remote_addr="9.9.9.9"), tried=tried) is None


@all_types()
def test_every_balancer_prefers_highest_priority_tier(kind):
    b = create_balancer(kind, nodes(("low", 5, -1), ("hi1", 1, 10), ("hi2", 1, 10), ("mid", 9, 0)))
    for i in range(200):
        assert b.pick(Req(remote_addr=f"10.1.0.{i}")).host in {"hi1", "hi2"}


@all_types()
def test_every_balancer_falls_to_next_tier_only_when_higher_tier_all_tried(kind):
    ns = nodes(("hi1", 1, 10), ("hi2", 1, 10), ("mid", 1, 0), ("low", 1, -5))
    b = create_balancer(kind, ns)
    req = Req(remote_addr="10.2.0.1")
    first = b.pick(req)
    second = b.pick(req, tried={first.addr})
    assert {first.host, second.host} == {"hi1", "hi2"}
    assert b.pick(req, tried=frozenset({"hi1:80", "hi2:80"})).host == "mid"
    assert b.pick(req, tried={"hi1:80", "hi2:80", "mid:80"}).host == "low"
    assert b.pick(req, tried={"hi1:80", "hi2:80", "mid:80", "low:80"}) is None


@all_types()
def test_every_balancer_skips_unhealthy_tier_for_next_priority(kind):
    ns = nodes(("hi1", 1, 10), ("hi2", 1, 10), ("mid1", 1, 0), ("mid2", 1, 0))
    b = create_balancer(kind, ns)
    down = {"hi1", "hi2", "mid1"}
    for i in range(100):
        n = b.pick(Req(remote_addr=f"10.3.0.{i}"), healthy=lambda n: n.host not in down)
        assert n.host == "mid2"


@all_types()
def test_every_balancer_combines_tried_and_unhealthy_exclusions(kind):
    ns = nodes(("a", 1, 1), ("b", 1, 1), ("c", 1, 0), ("d", 1, 0))
    b = create_balancer(kind, ns)
    n = b.pick(Req(remote_addr="1.2.3.4"), tried={"a:80"}, healthy=lambda n: n.host != "b")
    assert n.host in {"c", "d"}
    n = b.pick(Req(remote_addr="1.2.3.4"), tried={"a:80", "c:80"}, healthy=lambda n: n.host != "b")
    assert n.host == "d"


@all_types()
def test_every_balancer_uses_all_nodes_when_every_node_is_unhealthy(kind):
    # APISIX fetch_health_nodes: "all upstream nodes is unhealthy, use default".
    b = create_balancer(kind, nodes(("a", 1, 1), ("b", 1, 0)))
    n = b.pick(Req(remote_addr="1.2.3.4"), healthy=lambda n: False)
    assert n is not None and n.host == "a"  # priorities still apply
    n = b.pick(Req(remote_addr="1.2.3.4"), tried={"a:80"}, healthy=lambda n: False)
    assert n.host == "b"


@all_types()
def test_every_balancer_returns_none_when_healthy_nodes_are_all_tried(kind):
    b = create_balancer(kind, nodes(("a", 1), ("b", 1)))
    assert b.pick(Req(remote_addr="1.2.3.4"), tried={"a:80"},
                  healthy=lambda n: n.host == "a") is None


@all_types()
def test_every_balancer_can_disable_the_all_unhealthy_fallback(kind):
    b = create_balancer(kind, nodes(("a", 1), ("b", 1)), all_unhealthy_fallback=False)
    assert b.pick(Req(remote_addr="1.2.3.4"), healthy=lambda n: False) is None


@all_types()
def test_every_balancer_ignores_feedback_for_unknown_nodes(kind):
    b = create_balancer(kind, nodes(("a", 1)))
    stranger = Node("zzz", 1)
    b.before(stranger)
    b.after(stranger, 0.5, True)
    assert b.pick(Req(remote_addr="1.1.1.1")).host == "a"


def test_duplicate_addresses_collapse_to_one_node_last_weight_wins():
    b = RoundRobin([Node("a", 80, 1), Node("b", 80, 1), Node("a", 80, 3)])
    assert Counter(hosts(b, 400)) == {"a": 300, "b": 100}


def test_negative_weight_is_rejected():
    with pytest.raises(ValueError):
        RoundRobin([Node("a", 80, -1)])


# --------------------------------------------------------------------------- roundrobin


def test_roundrobin_weights_3_to_1_give_exact_counts():
    b = create_balancer("roundrobin", nodes(("a", 3), ("b", 1)))
    seq = hosts(b, 4000)
    assert Counter(seq) == {"a": 3000, "b": 1000}
    for i in range(0, 4000, 4):
        assert sorted(seq[i : i + 4]) == ["a", "a", "a", "b"]


def test_roundrobin_3_to_1_is_interleaved_like_nginx():
    b = create_balancer("roundrobin", nodes(("a", 3), ("b", 1)))
    assert hosts(b, 8) == ["a", "a", "b", "a"] * 2


def test_roundrobin_5_1_1_matches_nginx_smooth_sequence():
    # nginx commit "Upstream: smooth weighted round-robin balancing": {5,1,1} -> a a b a c a a
    b = create_balancer("roundrobin", nodes(("a", 5), ("b", 1), ("c", 1)))
    assert "".join(hosts(b, 14)) == "aabacaa" * 2


def test_roundrobin_equal_weights_rotate_in_config_order():
    b = create_balancer("roundrobin", nodes(("a", 1), ("b", 1), ("c", 1)))
    assert hosts(b, 7) == ["a", "b", "c", "a", "b", "c", "a"]


def test_roundrobin_common_factor_does_not_change_the_sequence():
    a = create_balancer("roundrobin", nodes(("a", 300), ("b", 100)))
    assert hosts(a, 8) == ["a", "a", "b", "a"] * 2


def test_roundrobin_matches_reference_swrr_for_awkward_weights():
    weights = [7, 3, 11, 1, 5]
    b = create_balancer("roundrobin", [Node(f"n{i}", 80, w) for i, w in enumerate(weights)])
    expected = [f"n{i}" for i in swrr_sequence(weights, 27 * 3)]
    assert hosts(b, 27 * 3) == expected


def test_roundrobin_live_mode_beyond_cycle_cap_is_still_exact():
    weights = [CYCLE_CAP, 3, 2]  # gcd 1, period > cap -> no precomputed cycle
    b = create_balancer("roundrobin", [Node(f"n{i}", 80, w) for i, w in enumerate(weights)])
    assert b._t0.seq is None
    total = sum(weights)
    seq = hosts(b, total)
    assert seq[:200] == [f"n{i}" for i in swrr_sequence(weights, 200)]
    assert Counter(seq) == {"n0": CYCLE_CAP, "n1": 3, "n2": 2}


def test_roundrobin_unhealthy_node_leaves_exact_smooth_wrr_among_the_rest():
    b = create_balancer("roundrobin", nodes(("a", 5), ("b", 2), ("c", 1)))
    seq = hosts(b, 30, healthy=lambda n: n.host != "a")
    assert seq == ["b", "c", "b"] * 10  # smooth WRR over {b:2, c:1}
    assert seq == [["b", "c"][i] for i in swrr_sequence([2, 1], 30)]


def test_roundrobin_resumes_full_sequence_after_exclusions():
    b = create_balancer("roundrobin", nodes(("a", 3), ("b", 1)))
    assert hosts(b, 2) == ["a", "a"]
    assert hosts(b, 3, healthy=lambda n: n.host == "b") == ["b", "b", "b"]
    assert hosts(b, 6) == ["b", "a", "a", "a", "b", "a"]


def test_roundrobin_retry_skips_tried_node():
    b = create_balancer("roundrobin", nodes(("a", 3), ("b", 1), ("c", 1)))
    for _ in range(20):
        assert b.pick(None, tried={"a:80"}).host in {"b", "c"}
    assert Counter(hosts(b, 20, tried={"a:80"})) == {"b": 10, "c": 10}


def test_roundrobin_single_node_is_always_picked():
    b = create_balancer("roundrobin", nodes(("only", 7)))
    assert hosts(b, 3) == ["only"] * 3


# --------------------------------------------------------------------------- chash

FIVE = [Node(f"10.0.0.{i}", 8080) for i in range(1, 6)]


def keys(count: int) -> list[str]:
    return [f"192.168.{i // 256}.{i % 256}" for i in range(count)]


def test_chash_point_hashes_follow_resty_chash_crc_chain():
    # chash.c: hash_k = crc32_final(crc32_update(base, le32(hash_{k-1}))) with
    # base = crc32(id) ^ 0xffffffff and id = "host\0port"; hash_{-1} = 0.
    def c_style(addr: str, count: int) -> list[int]:
        table = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
            table.append(c)
        base = crc32(addr.replace(":", "\0").encode()) ^ 0xFFFFFFFF
        prev, out = 0, []
        for _ in range(count):
            c = base
            for byte in prev.to_bytes(4, "little"):
                c = table[(c ^ byte) & 0xFF] ^ (c >> 8)
            prev = c ^ 0xFFFFFFFF
            out.append(prev)
        return out

    assert node_points("10.0.0.1:8080", 1) == c_style("10.0.0.1:8080", 160)
    assert node_points("[::1]:80", 2)[:50] == c_style("[::1]:80", 50)


def test_chash_same_key_always_maps_to_same_node():
    b = create_balancer("chash", FIVE)
    for k in keys(200):
        first = b.pick(Req(remote_addr=k))
        for _ in range(3):
            assert b.pick(Req(remote_addr=k)) is first


def test_chash_spreads_keys_over_all_nodes():
    b = create_balancer("chash", FIVE)
    counts = Counter(b.pick(Req(remote_addr=k)).host for k in keys(10000))
    assert len(counts) == 5
    assert min(counts.values()) > 1000  # ideal 2000 each


def test_chash_weight_scales_key_share():
    ns = [Node("heavy", 80, 3), Node("light", 80, 1)]
    b = create_balancer("chash", ns)
    counts = Counter(b.pick(Req(remote_addr=k)).host for k in keys(8000))
    assert 2.2 < counts["heavy"] / counts["light"] < 4.0


def test_chash_removing_one_of_five_nodes_only_remaps_its_keys():
    full = create_balancer("chash", FIVE)
    reduced = create_balancer("chash", FIVE[:2] + FIVE[3:])
    ks = keys(5000)
    before = {k: full.pick(Req(remote_addr=k)) for k in ks}
    after = {k: reduced.pick(Req(remote_addr=k)) for k in ks}
    kept = sum(before[k] == after[k] for k in ks)
    assert kept / len(ks) >= 0.70
    for k in ks:
        if before[k] != FIVE[2]:
            assert after[k] == before[k]


def test_chash_unhealthy_node_behaves_like_ring_without_it():
    full = create_balancer("chash", FIVE)
    reduced = create_balancer("chash", FIVE[:2] + FIVE[3:])
    down = FIVE[2].addr
    for k in keys(3000):
        assert full.pick(Req(remote_addr=k), healthy=lambda n: n.addr != down) == reduced.pick(
            Req(remote_addr=k)
        )


def test_chash_retry_takes_a_different_node_deterministically():
    b = create_balancer("chash", FIVE)
    for k in keys(100):
        first = b.pick(Req(remote_addr=k))
        retry = b.pick(Req(remote_addr=k), tried={first.addr})
        assert retry != first
        assert b.pick(Req(remote_addr=k), tried={first.addr}) == retry


def test_chash_retry_is_next_node_clockwise_on_the_ring():
    b = create_balancer("chash", FIVE)
    ring = b._r0
    k = "203.0.113.7"
    h = crc32(k.encode())
    i = next((j for j in range(ring.npoints) if ring.points[j] >= h), 0)
    first = ring.owners[i]
    assert b.pick(Req(remote_addr=k)) == first
    j = i
    while ring.owners[j] == first:
        j = (j + 1) % ring.npoints
    assert b.pick(Req(remote_addr=k), tried={first.addr}) == ring.owners[j]


def _same_as_key(hash_on: str, key: str, req: Req, expected_key: str) -> None:
    b = CHash(FIVE, hash_on=hash_on, key=key)
    assert b.hash_key(req) == expected_key
    ref = CHash(FIVE, hash_on="vars", key="k")
    assert b.pick(req) == ref.pick(Req(k=expected_key))


def test_chash_hash_on_vars_uses_named_variable():
    _same_as_key("vars", "uri", Req(uri="/a/b", remote_addr="1.1.1.1"), "/a/b")
    _same_as_key("vars", "arg_user", Req(arg_user="bob", remote_addr="1.1.1.1"), "bob")


def test_chash_hash_on_vars_distinguishes_values():
    b = CHash(FIVE, hash_on="vars", key="uri")
    assert len({b.pick(Req(uri=f"/p/{i}")) for i in range(200)}) == 5


def test_chash_hash_on_header_normalises_name_to_http_var():
    req = Req(http_x_user_id="u-42", remote_addr="1.1.1.1")
    _same_as_key("header", "X-User-ID", req, "u-42")


def test_chash_hash_on_cookie_uses_cookie_var():
    _same_as_key("cookie", "session", Req(cookie_session="s1", remote_addr="1.1.1.1"), "s1")


def test_chash_hash_on_consumer_uses_consumer_name():
    _same_as_key("consumer", "", Req(consumer_name="jack", remote_addr="1.1.1.1"), "jack")


def test_chash_hash_on_vars_combinations_substitutes_each_var():
    req = Req(remote_addr="1.1.1.1", http_x="abc", uri="/u")
    _same_as_key("vars_combinations", "$remote_addr$http_x", req, "1.1.1.1abc")
    _same_as_key("vars_combinations", "${uri}-$http_x:", req, "/u-abc:")


def test_chash_vars_combinations_missing_vars_become_empty():
    req = Req(remote_addr="1.1.1.1")
    _same_as_key("vars_combinations", "$remote_addr-$http_missing", req, "1.1.1.1-")


def test_chash_vars_combinations_with_nothing_resolved_falls_back_to_remote_addr():
    _same_as_key("vars_combinations", "$http_a$http_b", Req(remote_addr="7.7.7.7"), "7.7.7.7")


@pytest.mark.parametrize(
    ("hash_on", "key"),
    [("vars", "arg_id"), ("header", "X-Id"), ("cookie", "sid"), ("consumer", None)],
)
def test_chash_missing_key_falls_back_to_remote_addr(hash_on, key):
    _same_as_key(hash_on, key, Req(remote_addr="5.6.7.8"), "5.6.7.8")


def test_chash_empty_string_key_is_hashed_not_replaced():
    _same_as_key("vars", "arg_id", Req(arg_id="", remote_addr="5.6.7.8"), "")


def test_chash_rejects_unknown_hash_on():
    with pytest.raises(ValueError):
        CHash(FIVE, hash_on="body", key="x")


def test_chash_huge_weights_are_reduced_but_keep_ratio():
    ns = [Node("a", 80, 1000), Node("b", 80, 3000)]
    b = CHash(ns)
    assert b._r0.npoints == 160 * 4  # divided by gcd 1000
    counts = Counter(b.pick(Req(remote_addr=k)).host for k in keys(4000))
    assert 2.0 < counts["b"] / counts["a"] < 4.5


# --------------------------------------------------------------------------- least_conn


def test_least_conn_spreads_in_flight_requests_evenly():
    b = create_balancer("least_conn", nodes(("a", 1), ("b", 1), ("c", 1)))
    for _ in range(9):
        b.before(b.pick(None))
    assert [b.in_flight(n) for n in b.nodes] == [3, 3, 3]


def test_least_conn_weights_scale_allowed_in_flight():
    b = create_balancer("least_conn", nodes(("big", 3), ("small", 1)))
    picked = []
    for _ in range(8):
        n = b.pick(None)
        b.before(n)
        picked.append(n.host)
    assert Counter(picked) == {"big": 6, "small": 2}


def test_least_conn_sends_next_request_to_node_that_finished():
    b = create_balancer("least_conn", nodes(("a", 1), ("b", 1), ("c", 1)))
    started = [b.pick(None) for _ in range(3)]
    for n in started:
        b.before(n)
    b.after(started[1], 0.01, False)
    assert b.pick(None) == started[1]


def test_least_conn_rotates_ties_when_idle():
    b = create_balancer("least_conn", nodes(("a", 1), ("b", 1), ("c", 1)))
    seq = []
    for _ in range(6):
        n = b.pick(None)
        b.before(n)
        b.after(n, 0.001, False)
        seq.append(n.host)
    assert seq == ["a", "b", "c", "a", "b", "c"]


def test_least_conn_avoids_loaded_node_with_unequal_weights():
    b = create_balancer("least_conn", nodes(("a", 2), ("b", 1)))
    a, bb = b.nodes
    for _ in range(4):
        b.before(a)  # a: 5/2 = 2.5, b: 1/1
    assert b.pick(None) == bb


def test_least_conn_in_flight_never_goes_negative():
    b = create_balancer("least_conn", nodes(("a", 1), ("b", 1)))
    a = b.nodes[0]
    b.after(a, None, False)
    b.after(a, None, False)
    assert b.in_flight(a) == 0
    b.before(a)
    assert b.in_flight(a) == 1


def test_least_conn_retry_picks_least_loaded_untried_node():
    b = create_balancer("least_conn", nodes(("a", 1), ("b", 1), ("c", 1)))
    a, bb, c = b.nodes
    b.before(c)
    b.before(c)
    assert b.pick(None, tried={"a:80"}) == bb


# --------------------------------------------------------------------------- ewma


def ewma(*spec, clock=None, seed=1, **kw) -> EWMA:
    return create_balancer(
        "ewma", nodes(*spec), clock=clock or Clock(), rng=random.Random(seed), **kw
    )


def test_ewma_prefers_the_faster_node_after_latency_samples():
    clock = Clock()
    b = ewma(("fast", 1), ("slow", 1), clock=clock)
    fast, slow = b.nodes
    for _ in range(5):
        clock.t += 0.1
        b.after(fast, 0.010, False)
        b.after(slow, 0.300, False)
    assert hosts(b, 100) == ["fast"] * 100


def test_ewma_power_of_two_choices_never_picks_the_worst_of_three():
    clock = Clock()
    b = ewma(("fast", 1), ("mid", 1), ("slow", 1), clock=clock)
    for n, lat in zip(b.nodes, (0.01, 0.05, 0.5), strict=True):
        b.after(n, lat, False)
    counts = Counter(hosts(b, 3000))
    assert counts["slow"] == 0
    assert 1800 < counts["fast"] < 2200  # wins every pair it is in: 2/3
    assert 800 < counts["mid"] < 1200


def test_ewma_untested_nodes_are_spread_randomly():
    counts = Counter(hosts(ewma(("a", 1), ("b", 1), ("c", 1)), 3000))
    assert all(800 < v < 1200 for v in counts.values())


def test_ewma_first_sample_sets_average_then_decays_with_ten_second_time_constant():
    clock = Clock()
    b = ewma(("a", 1), ("b", 1), clock=clock, peak=False)
    a = b.nodes[0]
    b.after(a, 0.2, False)
    assert b.score(a) == pytest.approx(0.2)
    clock.t += 10.0
    # read-time decay towards 0, like APISIX score(): 0.2 * e^-1
    assert b.score(a) == pytest.approx(0.2 * 0.36787944, rel=1e-6)
    b.after(a, 0.1, False)  # 0.2 * e^-1 + 0.1 * (1 - e^-1)
    assert b.score(a) == pytest.approx(0.2 * 0.36787944 + 0.1 * 0.63212056, rel=1e-6)


def test_ewma_peak_sample_raises_average_immediately():
    clock = Clock()
    b = ewma(("a", 1), ("b", 1), clock=clock)
    a = b.nodes[0]
    b.after(a, 0.01, False)
    clock.t += 0.01
    b.after(a, 0.8, False)
    assert b.score(a) == pytest.approx(0.8, rel=1e-3)


def test_ewma_in_flight_requests_raise_the_score():
    clock = Clock()
    b = ewma(("fast", 1), ("slow", 1), clock=clock)
    fast, slow = b.nodes
    b.after(fast, 0.01, False)
    b.after(slow, 0.04, False)
    assert b.pick(None) == fast
    for _ in range(4):
        b.before(fast)  # 0.01 * 5 > 0.04 * 1
    assert b.pick(None) == slow


def test_ewma_fresh_node_with_request_in_flight_is_not_flooded():
    clock = Clock()
    b = ewma(("old", 1), ("new", 1), clock=clock)
    old, new = b.nodes
    b.after(old, 0.05, False)
    assert b.pick(None) == new  # no data yet: cost 0, gets probed
    b.before(new)
    assert b.score(new) == PENALTY + 1
    assert b.pick(None) == old


def test_ewma_failed_requests_are_penalised():
    clock = Clock()
    b = ewma(("flaky", 1), ("ok", 1), clock=clock, failure_penalty_s=1.0)
    flaky, ok = b.nodes
    b.after(ok, 0.05, False)
    b.after(flaky, 0.001, True)  # fast connection refused must not look fast
    assert b.score(flaky) == pytest.approx(1.0)
    assert hosts(b, 50) == ["ok"] * 50


def test_ewma_stale_slow_node_is_probed_again_after_decay():
    clock = Clock()
    b = ewma(("a", 1), ("b", 1), clock=clock)
    a, bb = b.nodes
    b.after(a, 1.0, False)
    b.after(bb, 0.1, False)
    assert b.pick(None) == bb
    clock.t += 60.0
    b.after(bb, 0.1, False)  # b keeps being sampled, a is not
    assert b.pick(None) == a  # 1.0 * e^-6 < 0.1


def test_ewma_weight_divides_score():
    clock = Clock()
    b = ewma(("heavy", 4), ("light", 1), clock=clock)
    heavy, light = b.nodes
    b.after(heavy, 0.2, False)
    b.after(light, 0.1, False)
    assert b.pick(None) == heavy  # 0.2/4 < 0.1/1


def test_ewma_retry_excludes_tried_even_if_faster():
    b = ewma(("fast", 1), ("slow", 1))
    fast, slow = b.nodes
    b.after(fast, 0.01, False)
    b.after(slow, 0.5, False)
    assert b.pick(None, tried={fast.addr}) == slow


def test_ewma_latency_knowledge_carries_over_to_new_balancer():
    clock = Clock()
    old = ewma(("a", 1), ("b", 1), clock=clock)
    old.after(old.nodes[0], 0.9, False)
    new = ewma(("a", 1), ("b", 1), ("c", 1), clock=clock, previous=old)
    assert new.score(new.nodes[0]) == pytest.approx(0.9)
    assert new.score(new.nodes[2]) == 0.0


@all_types()
def test_every_balancer_accepts_the_previous_balancer_on_rebuild(kind):
    old = create_balancer(kind, nodes(("a", 1), ("b", 1)))
    new = create_balancer(kind, nodes(("a", 1), ("c", 1)), previous=old)
    assert new.pick(Req(remote_addr="1.1.1.1")).host in {"a", "c"}
