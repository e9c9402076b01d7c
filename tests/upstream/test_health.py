"""Upstream health checks, unit level (``pylon/model/health.py``, ``pylon/upstream/health.py``
and ``checker.py``): the ``checks`` schema with APISIX's defaults, lua-resty-healthcheck's
state machine, active probes against real loopback TCP/HTTP(S) servers, the master's checker
bookkeeping across config changes, and the worker side (balancer filter, passive reports,
runtimes)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import Counter
from typing import Any

import pytest

from pylon import errors
from pylon.model.health import parse_checks, plan_checks
from pylon.upstream.balancer import Node, create_balancer
from pylon.upstream.checker import (
    STATUS,
    HealthManager,
    Target,
    count,
    probe,
    probe_request,
)
from pylon.upstream.health import (
    HEALTHY,
    HTTP,
    MOSTLY_HEALTHY,
    MOSTLY_UNHEALTHY,
    SUCCESS,
    TCP,
    TIMEOUT,
    UNHEALTHY,
    HealthFilter,
    HealthView,
    PassiveReporter,
)
from pylon.upstream.runtime import Runtimes, UpstreamPlan
from tests.harness import free_port, self_signed_cert, server_tls_context


# ------------------------------------------------------------------ real servers
class Origin:
    """An asyncio HTTP origin on 127.0.0.1 answering every request with ``status``
    (``None``: accept and never answer; ``"garbage"``: not HTTP; ``"close"``: hang up)."""

    def __init__(self, status: Any = 200, tls: ssl.SSLContext | None = None) -> None:
        self.status = status
        self.tls = tls
        self.requests: list[bytes] = []
        self.times: list[float] = []
        self.server: asyncio.Server | None = None
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self, port: int = 0) -> Origin:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", port, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError):
            writer.close()
            return
        self.requests.append(head)
        self.times.append(time.monotonic())
        if self.status is None:
            await asyncio.sleep(5)
        elif self.status == "garbage":
            writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        elif self.status != "close":
            writer.write(b"HTTP/1.1 %d X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                         % self.status)
        with contextlib.suppress(Exception):
            await writer.drain()
        writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.close()
        await self.server.wait_closed()

    def node(self, weight: int = 1) -> Node:
        return Node("127.0.0.1", self.port, weight)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def plan(key: str, nodes: list[Node], checks: Any, **kw: Any) -> UpstreamPlan:
    """A plan as the compiler makes it: ``checks`` parsed (``plan_checks``)."""
    parsed, bad = plan_checks(checks)
    return UpstreamPlan(key=key, nodes=tuple(nodes), checks=parsed, bad_checks=bad, **kw)


class Published:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str | None]] = []

    def __call__(self, key: str, addr: str, state: str | None) -> None:
        self.events.append((key, addr, state))


async def until(cond: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


# ------------------------------------------------------------------ schema
def test_checks_defaults_are_apisix_defaults():
    c = parse_checks({"active": {}, "passive": {}})
    a, p = c.active, c.passive
    assert (a.type, a.timeout, a.concurrency, a.http_path, a.https_verify_certificate) == \
        ("http", 1.0, 10, "/", True)
    assert (a.healthy.interval, a.healthy.http_statuses, a.healthy.successes) == (1, [200, 302], 2)
    u = a.unhealthy
    assert (u.interval, u.http_statuses, u.http_failures, u.tcp_failures, u.timeouts) == \
        (1, [429, 404, 500, 501, 502, 503, 504, 505], 5, 2, 3)
    assert p.healthy.http_statuses == [200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
                                       300, 301, 302, 303, 304, 305, 306, 307, 308]
    assert p.healthy.successes == 5
    assert (p.unhealthy.http_statuses, p.unhealthy.tcp_failures, p.unhealthy.timeouts,
            p.unhealthy.http_failures) == ([429, 500, 503], 2, 7, 5)
    assert c.type == "http"
    assert parse_checks({"active": {"type": "tcp"}}).type == "tcp"


@pytest.mark.parametrize("bad", [
    {}, {"active": {"type": "udp"}}, {"active": {"healthy": {"successes": 0}}},
    {"active": {"unhealthy": {"http_failures": 255}}}, {"active": {"port": 70000}},
    {"active": {"healthy": {"http_statuses": [199]}}}, {"active": {}, "other": 1},
    {"active": {"healthy": {"interval": 0}}}, "yes",
])
def test_bad_checks_are_refused_with_the_field(bad):
    with pytest.raises(ValueError):
        parse_checks(bad)


# ------------------------------------------------------------------ state machine
def test_failures_make_a_node_mostly_healthy_then_unhealthy_and_successes_bring_it_back():
    t = Target(Node("a", 1))
    assert count(t, TCP, 2) == MOSTLY_HEALTHY
    assert t.ctr == [0, 0, 1, 0]
    assert count(t, TCP, 2) == UNHEALTHY
    assert count(t, TCP, 2) is None and t.ctr[TCP] == 2      # not counted once unhealthy
    assert count(t, SUCCESS, 3) == MOSTLY_UNHEALTHY
    assert t.ctr == [1, 0, 0, 0]                            # a success resets the failures
    assert count(t, SUCCESS, 3) is None
    assert count(t, SUCCESS, 3) == HEALTHY
    assert count(t, SUCCESS, 3) is None and t.ctr[SUCCESS] == 3   # not counted when healthy


def test_counters_are_separate_and_a_failure_resets_only_successes():
    t = Target(Node("a", 1))
    count(t, HTTP, 5)
    count(t, TIMEOUT, 3)
    assert t.state == MOSTLY_HEALTHY and t.ctr == [0, 1, 0, 1]
    count(t, SUCCESS, 2)                   # mostly_healthy: counted, failures reset
    assert t.state == MOSTLY_HEALTHY and t.ctr == [1, 0, 0, 0]
    count(t, HTTP, 5)
    assert t.ctr == [0, 1, 0, 0]
    assert count(t, TIMEOUT, 0) is None and t.ctr == [0, 1, 0, 0]    # 0: counter off


# ------------------------------------------------------------------ probes
def test_http_probe_sends_the_configured_request_and_reads_the_status():
    async def main() -> None:
        o = await Origin(503).start()
        a = parse_checks({"active": {"http_path": "/healthz?x=1",
                                     "req_headers": ["User-Agent: pylon-check",
                                                     "X-A: b"]}}).active
        assert await probe("127.0.0.1", o.port, a, "svc.example") == (STATUS, 503)
        head = o.requests[0]
        assert head.startswith(b"GET /healthz?x=1 HTTP/1.1\r\nConnection: close\r\n")
        assert b"User-Agent: pylon-check\r\nX-A: b\r\nHost: svc.example\r\n" in head
        o.status = 200
        assert await probe("127.0.0.1", o.port, a, "x") == (STATUS, 200)
        o.status = "garbage"
        assert await probe("127.0.0.1", o.port, a, "x") == (STATUS, 0)
        o.status = "close"
        assert await probe("127.0.0.1", o.port, a, "x") == (TCP, 0)
        await o.stop()
    run(main())


def test_probe_failures_are_tcp_or_timeout_within_the_timeout():
    async def main() -> None:
        a = parse_checks({"active": {"timeout": 0.3}}).active
        assert await probe("127.0.0.1", free_port(), a, "x") == (TCP, 0)
        o = await Origin(None).start()            # accepts, never answers
        t0 = time.monotonic()
        assert await probe("127.0.0.1", o.port, a, "x") == (TIMEOUT, 0)
        assert 0.25 < time.monotonic() - t0 < 1.5
        tcp = parse_checks({"active": {"type": "tcp", "timeout": 0.3}}).active
        assert await probe("127.0.0.1", o.port, tcp, "x") == (SUCCESS, 0)
        await o.stop()
    run(main())


def test_https_probe_with_and_without_certificate_verification(tmp_path):
    cert, key = self_signed_cert(str(tmp_path))

    async def main() -> None:
        o = await Origin(200, tls=server_tls_context(cert, key)).start()
        lax = parse_checks({"active": {"type": "https",
                                       "https_verify_certificate": False}}).active
        assert await probe("127.0.0.1", o.port, lax, "localhost") == (STATUS, 200)
        strict = parse_checks({"active": {"type": "https", "timeout": 2}}).active
        assert await probe("127.0.0.1", o.port, strict, "localhost") == (TCP, 0)  # unknown CA
        plain = parse_checks({"active": {"type": "http", "timeout": 0.5}}).active
        got = await probe("127.0.0.1", o.port, plain, "localhost")
        assert got[0] in (TCP, TIMEOUT) or got == (STATUS, 0)
        await o.stop()
    run(main())


def test_probe_request_host_header_follows_pass_host():
    from pylon.upstream.checker import UpstreamChecker
    mgr = HealthManager(Published())
    checks = parse_checks({"active": {"host": "checks.example"}})
    n = Node("10.0.0.1", 80)
    c = UpstreamChecker(mgr, plan("u", [n], {}, pass_host="pass"), checks)
    assert c.host_header(n) == "checks.example"
    c.plan = plan("u", [n], {}, pass_host="rewrite", upstream_host="up.example")
    assert c.host_header(n) == "up.example"
    c.checks = parse_checks({"active": {}})
    c.plan = plan("u", [n], {}, pass_host="pass")
    assert c.host_header(n) == "10.0.0.1"
    assert probe_request(c.checks.active, "h") == \
        b"GET / HTTP/1.1\r\nConnection: close\r\nHost: h\r\n\r\n"


# ------------------------------------------------------------------ the master's checkers
FAST = {"active": {"timeout": 0.3, "healthy": {"interval": 1, "successes": 1},
                   "unhealthy": {"interval": 1, "tcp_failures": 1, "http_failures": 1}}}


def test_active_checks_mark_a_dead_node_and_bring_it_back_once_per_interval():
    async def main() -> None:
        a, b = await Origin(200).start(), await Origin(200).start()
        pub = Published()
        mgr = HealthManager(pub)
        t0 = time.monotonic() + 1.0
        mgr.update({"upstreams/1": plan("upstreams/1", [a.node(), b.node()], FAST)})
        await until(lambda: len(a.requests) >= 2 and len(b.requests) >= 2, 5)
        # one probe per node per interval, the first one interval after the start
        for o in (a, b):
            assert o.times[0] - t0 > -0.3 and o.times[1] - o.times[0] > 0.8, o.times
        assert pub.events == []
        port = b.port
        await b.stop()
        await until(lambda: pub.events)
        assert pub.events == [("upstreams/1", f"127.0.0.1:{port}", UNHEALTHY)]
        assert mgr.table() == [["upstreams/1", f"127.0.0.1:{port}", UNHEALTHY]]
        info = mgr.info("upstreams/1")
        assert info is not None and info["type"] == "http"
        assert [(n["port"], n["status"], n["counter"]["tcp_failure"]) for n in info["nodes"]] \
            == [(a.port, HEALTHY, 0), (port, UNHEALTHY, 1)]
        b2 = await Origin(200).start(port)
        await until(lambda: len(pub.events) == 2)
        assert pub.events[1] == ("upstreams/1", f"127.0.0.1:{port}", HEALTHY)
        mgr.close()
        await a.stop()
        await b2.stop()
    run(main())


def test_statuses_count_by_the_active_lists_and_concurrency_limits_parallel_probes():
    async def main() -> None:
        slow = [await Origin(None).start() for _ in range(4)]
        checks = {"active": {"timeout": 0.5, "concurrency": 2,
                             "healthy": {"interval": 1}, "unhealthy": {"interval": 1}}}
        mgr = HealthManager(Published())
        mgr.update({"u": plan("u", [o.node() for o in slow], checks)})
        ch = mgr.checkers["u"]
        await until(lambda: sum(len(o.requests) for o in slow) >= 2, 3)
        await asyncio.sleep(0.2)
        # two at a time: the other two wait for a slot (the first two time out at 0.5 s)
        assert sum(len(o.requests) for o in slow) == 2
        await until(lambda: sum(len(o.requests) for o in slow) == 4, 3)
        await until(lambda: all(t.ctr[TIMEOUT] == 1 for t in ch.targets.values()), 3)
        mgr.close()
        for o in slow:
            await o.stop()

        o404 = await Origin(404).start()
        o302 = await Origin(302).start()
        o418 = await Origin(418).start()
        mgr = HealthManager(Published())
        mgr.update({"u": plan("u", [o404.node(), o302.node(), o418.node()], FAST)})
        ch = mgr.checkers["u"]
        await until(lambda: ch.targets[f"127.0.0.1:{o404.port}"].state == UNHEALTHY)
        await until(lambda: ch.probes >= 3)
        assert ch.targets[f"127.0.0.1:{o302.port}"].state == HEALTHY
        t418 = ch.targets[f"127.0.0.1:{o418.port}"]
        assert t418.state == HEALTHY and t418.ctr == [0, 0, 0, 0]    # in neither list
        mgr.close()
        for o in (o404, o302, o418):
            await o.stop()
    run(main())


def test_state_is_kept_across_config_changes_that_keep_the_node():
    async def main() -> None:
        pub = Published()
        mgr = HealthManager(pub)
        a, b, c = Node("127.0.0.1", free_port()), Node("127.0.0.1", 2), Node("127.0.0.1", 3)
        slow = {"active": {"healthy": {"interval": 60}, "unhealthy": {"interval": 60}},
                "passive": {"unhealthy": {"tcp_failures": 1}}}
        mgr.update({"u": plan("u", [a, b], slow)})
        mgr.passive("u", a.addr, TCP)
        assert pub.events == [("u", a.addr, UNHEALTHY)]
        ch = mgr.checkers["u"]
        # an unrelated change of the same upstream (retries, a new node): state kept
        mgr.update({"u": plan("u", [a, b, c], slow, retries=3)})
        assert mgr.checkers["u"] is ch and ch.targets[a.addr].state == UNHEALTHY
        assert ch.targets[c.addr].state == HEALTHY
        # changed checks: the checker restarts, known states stay
        task = ch.task
        slow2 = {**slow, "active": {"http_path": "/ping", "healthy": {"interval": 60}}}
        mgr.update({"u": plan("u", [a, b, c], slow2)})
        assert ch.task is not task and ch.targets[a.addr].state == UNHEALTHY
        assert ch.checks.active.http_path == "/ping"
        # a whole reload that keeps it: kept
        mgr.replace({"u": plan("u", [a, b, c], slow2)})
        assert ch.targets[a.addr].state == UNHEALTHY and len(pub.events) == 1
        # the node goes: its state is dropped (workers told to forget it)
        mgr.update({"u": plan("u", [b, c], slow2)})
        assert pub.events[-1] == ("u", a.addr, None)
        mgr.update({"u": plan("u", [a, b, c], slow2)})
        assert ch.targets[a.addr].state == HEALTHY
        mgr.passive("u", a.addr, TCP)
        # the upstream goes: everything forgotten
        mgr.replace({})
        assert pub.events[-1] == ("u", a.addr, None)
        assert mgr.checkers == {} and mgr.configured == {} and mgr.table() == []
        mgr.close()
    run(main())


def test_single_node_and_bad_checks_have_no_checker():
    async def main() -> None:
        mgr = HealthManager(Published())
        n1, n2 = Node("127.0.0.1", 1), Node("127.0.0.1", 2)
        mgr.update({"one": plan("one", [n1, n1], FAST),           # one address twice
                    "bad": plan("bad", [n1, n2], {"active": {"type": "udp"}}),
                    "none": plan("none", [n1, n2], None)})
        assert mgr.checkers == {}
        assert mgr.info("one") == {"type": "http", "nodes": []}    # listed, no nodes (APISIX)
        assert mgr.info("bad") is None and mgr.info("none") is None
        mgr.passive("one", n1.addr, TCP)                           # ignored
        mgr.close()
    run(main())


# ------------------------------------------------------------------ worker side
class Client:
    """A request for chash (``remote_addr``)."""

    consumer_name = None

    def __init__(self, i: int) -> None:
        self.addr = f"10.0.{i // 250}.{i % 250}"

    def var(self, name: str) -> str | None:
        return self.addr if name == "remote_addr" else None


def test_filtered_balancers_skip_down_nodes_and_use_all_when_every_node_is_down():
    ns = [Node("a", 1), Node("b", 1), Node("c", 1)]
    for typ in ("roundrobin", "chash", "least_conn", "ewma"):
        view = HealthView()
        bal = HealthFilter(create_balancer(typ, ns), view.down)

        def picks(n: int, tried: Any = None, bal: Any = bal) -> Counter[str | None]:
            out: Counter[str | None] = Counter()
            for i in range(n):
                node = bal.pick(Client(i), tried)
                out[node.addr if node is not None else None] += 1
            return out

        assert len(picks(60)) == 3, typ
        view.set("a:1", UNHEALTHY)
        view.set("b:1", MOSTLY_UNHEALTHY)
        view.set("c:1", MOSTLY_HEALTHY)            # still picked
        assert set(picks(30)) == {"c:1"}, typ
        assert set(picks(5, {"c:1"})) == {None}, typ     # the healthy one was tried
        view.set("c:1", UNHEALTHY)                 # all down: APISIX uses every node
        assert len(picks(60)) == 3, typ
        view.set("a:1", None)
        view.set("b:1", HEALTHY)
        assert view.down == {"c:1"} and view.states == {"c:1": UNHEALTHY}
        assert set(picks(30)) == {"a:1", "b:1"}, typ


def test_passive_reporter_sends_only_what_can_change_a_state():
    sent: list[tuple[str, str, int]] = []
    view = HealthView()
    p = PassiveReporter("u", view, parse_checks({"active": {}, "passive": {
        "unhealthy": {"http_statuses": [500, 502], "timeouts": 0}}}).passive,
        lambda *a: sent.append(a))
    p.response("a:1", 200)                 # healthy node, success: nothing to count
    p.response("a:1", 404)                 # in neither list
    p.failure("a:1", errors.UpstreamReadTimeout())   # timeouts: 0 = off
    p.failure("a:1", errors.NoHealthyUpstream())     # not the node's doing
    assert sent == []
    p.response("a:1", 502)
    p.failure("a:1", errors.UpstreamConnectFailed())
    p.failure("a:1", errors.UpstreamReset())
    assert sent == [("u", "a:1", HTTP), ("u", "a:1", TCP), ("u", "a:1", TCP)]
    sent.clear()
    view.set("a:1", MOSTLY_HEALTHY)
    p.response("a:1", 204)                 # now a success counts
    view.set("a:1", UNHEALTHY)
    p.response("a:1", 500)                 # unhealthy: failures are not counted
    p.failure("a:1", errors.UpstreamConnectFailed())
    p.response("a:1", 200)
    assert sent == [("u", "a:1", SUCCESS), ("u", "a:1", SUCCESS)]


def test_runtimes_keep_views_by_key_and_leave_upstreams_without_checks_alone():
    async def main() -> None:
        rts = Runtimes(asyncio.get_running_loop())
        sent: list[tuple[str, str, int]] = []
        rts.report = lambda *a: sent.append(a)
        a, b = Node("127.0.0.1", 1), Node("127.0.0.1", 2)
        both = {"active": {}, "passive": {}}
        plans = {"u": plan("u", [a, b], both), "plain": plan("plain", [a, b], None),
                 "one": plan("one", [a], both), "act": plan("act", [a, b], {"active": {}})}
        by_key = rts.reconcile(plans)
        assert by_key["plain"].health is None and not isinstance(by_key["plain"].balancer,
                                                                 HealthFilter)
        assert by_key["one"].health is None and not isinstance(by_key["one"].balancer,
                                                               HealthFilter)
        assert by_key["act"].health is None and isinstance(by_key["act"].balancer, HealthFilter)
        rt = by_key["u"]
        assert isinstance(rt.balancer, HealthFilter) and rt.health is not None
        rts.set_health("u", a.addr, UNHEALTHY)
        assert {rt.balancer.pick(None).addr for _ in range(6)} == {b.addr}
        # the upstream changes (same key): a new runtime, same view
        by_key = rts.update({"u": plan("u", [a, b], both, retries=1)})
        assert by_key["u"] is not rt
        assert {by_key["u"].balancer.pick(None).addr for _ in range(6)} == {b.addr}
        by_key["u"].health.response(a.addr, 200)
        assert sent == [("u", a.addr, SUCCESS)]
        # a whole document keeps it too
        by_key = rts.reconcile({**plans, "u": plan("u", [a, b], both, retries=1)})
        assert {by_key["u"].balancer.pick(None).addr for _ in range(6)} == {b.addr}
        rts.reset_health([["act", b.addr, UNHEALTHY]])
        assert {by_key["u"].balancer.pick(None).addr for _ in range(6)} == {a.addr, b.addr}
        assert {by_key["act"].balancer.pick(None).addr for _ in range(6)} == {a.addr}
        # gone: the view goes with it
        rts.update({"u": None})
        assert "u" not in rts.health
        rts.reconcile({})
        assert rts.health == {}
        rts.close()
    run(main())


# ------------------------------------------------------------------ the control API
def test_control_api_lists_routes_services_upstreams_and_answers_apisix_errors():
    from pylon.config.store import Event, Item
    from pylon.server.control import ControlApp, changed_plans, checked_plans

    checks = {"active": {"type": "tcp", "healthy": {"interval": 60},
                         "unhealthy": {"interval": 60}}}
    two = {"127.0.0.1:1": 1, "127.0.0.1:2": 1}
    state = {
        "upstreams/10": {"nodes": two, "type": "roundrobin", "checks": checks},
        "upstreams/2": {"nodes": two, "type": "roundrobin", "checks": checks},
        "upstreams/3": {"nodes": two, "type": "roundrobin"},
        "services/s": {"upstream": {"nodes": two, "type": "roundrobin", "checks": checks}},
        "routes/r1": {"uri": "/a", "upstream_id": "2"},
        "routes/r2": {"uri": "/b", "upstream": {"nodes": {"127.0.0.1:1": 1},
                                                "type": "roundrobin", "checks": checks}},
        "consumers/jack": {"username": "jack"},
    }
    plans = checked_plans((k, Item(v, 1, 1)) for k, v in state.items())
    assert sorted(plans) == ["routes/r2/upstream", "services/s/upstream", "upstreams/10",
                             "upstreams/2"]
    assert changed_plans([Event("upstreams/2", None, 1, 2), Event("routes/r9", {"uri": "/"},
                                                                  1, 2)]) == \
        {"upstreams/2": None, "routes/r9/upstream": None}

    async def main() -> None:
        mgr = HealthManager(Published())
        mgr.replace(plans)
        mgr.passive("upstreams/2", "127.0.0.1:2", TCP)          # no passive config: ignored
        mgr.checkers["upstreams/2"].report("127.0.0.1:2", TCP, True)
        app = ControlApp(lambda: mgr, lambda key: key in state)

        async def get(path: str) -> tuple[int, Any]:
            return await app.handle("GET", path, "", {}, b"")

        status, body = await get("/v1/healthcheck")
        assert status == 200
        assert [(e["name"], e["type"], len(e["nodes"])) for e in body] == [
            ("/apisix/routes/r2", "tcp", 0), ("/apisix/services/s", "tcp", 2),
            ("/apisix/upstreams/2", "tcp", 2), ("/apisix/upstreams/10", "tcp", 2)]
        status, one = await get("/v1/healthcheck/upstreams/2")
        assert status == 200 and one == body[2]
        assert one["nodes"][1] == {"ip": "127.0.0.1", "port": 2, "hostname": "127.0.0.1",
                                   "status": MOSTLY_HEALTHY,
                                   "counter": {"success": 0, "http_failure": 0,
                                               "tcp_failure": 1, "timeout_failure": 0}}
        assert await get("/v1/healthcheck/routes/r1") == \
            (404, {"error_msg": "no checker for routes[r1]"})
        assert await get("/v1/healthcheck/upstreams/3") == \
            (404, {"error_msg": "no checker for upstreams[3]"})
        assert await get("/v1/healthcheck/upstreams/4") == \
            (404, {"error_msg": "upstreams[4] not found"})
        assert await get("/v1/healthcheck/consumers/jack") == \
            (400, {"error_msg": "invalid src type consumers"})
        assert await get("/v1/healthcheck/services") == \
            (404, {"error_msg": "missing src id for src type services"})
        assert (await app.handle("POST", "/v1/healthcheck", "", {}, b""))[0] == 405
        assert (await get("/v1/no-such-endpoint"))[0] == 404
        mgr.close()
    run(main())
