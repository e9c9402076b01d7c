"""api-breaker through a real gateway with two workers and an upstream whose status the test
picks per request (``X-Status``): trips after ``failures`` node-wide, answers without the
upstream, half-opens after 2 s, re-opens for 4 s, closes after ``successes``; APISIX's
response fields and state keys."""

from __future__ import annotations

import http.client
import time

import pytest

from pylon.pdk.testing import EchoUpstream, Kit, free_port
from pylon.proxy import registry


def by_header(h, rec):
    """The upstream answers the status asked for in X-Status (200 by default)."""
    status = int(rec["headers"].get("x-status", "200"))
    body = b"upstream %d" % status
    h.send_response(status)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def ab(**kw):
    return {"api-breaker": {"break_response_code": 502, **kw}}


def make_doc(up: str) -> dict:
    upstream = {"nodes": {up: 1}, "type": "roundrobin"}
    routes = [
        {"id": "who", "uri": "/who"},
        {"id": "nw", "uri": "/nw", "plugins": ab(healthy={"successes": 1})},
        {"id": "win", "uri": "/win", "plugins": ab(
            max_breaker_sec=3600, unhealthy={"http_statuses": [500, 502], "failures": 1},
            healthy={"successes": 2})},
        {"id": "body", "uri": "/body", "plugins": ab(
            break_response_code=503, break_response_body='{"error":"down"}',
            break_response_headers=[{"key": "Content-Type", "value": "application/json"},
                                    {"key": "X-Client", "value": "$remote_addr"},
                                    {"key": "X-Via", "value": "${host}-breaker"},
                                    {"key": "X-Via", "value": "$no_such_var!"}],
            unhealthy={"failures": 1})},
        {"id": "nobody", "uri": "/nobody", "plugins": ab(
            break_response_code=504, unhealthy={"failures": 1},
            break_response_headers=[{"key": "X-Extra", "value": "1"}])},
        {"id": "keys", "uri": "/keys/*", "plugins": ab(unhealthy={"failures": 1})},
        {"id": "keep", "uri": "/keep", "plugins": ab(unhealthy={"failures": 2})},
    ]
    for r in routes:
        r["upstream"] = upstream
    routes.append({"id": "dead", "uri": "/dead", "plugins": ab(
        break_response_code=503, break_response_body="open",
        unhealthy={"http_statuses": [502], "failures": 2}),
        "upstream": {"nodes": {f"127.0.0.1:{free_port()}": 1}, "type": "roundrobin"}})
    return {"routes": routes}


@pytest.fixture(scope="module")
def up():
    u = EchoUpstream(by_header)
    yield u
    u.close()


@pytest.fixture(scope="module")
def doc(up):
    return make_doc(up.addr)


@pytest.fixture(scope="module")
def kit(doc):
    with Kit(doc, workers=2, node={"nginx_config": {
            "http": {"access_log_format": "$pid $request_uri $status"}}}) as k:
        yield k


def reached(up, path: str) -> int:
    return sum(1 for r in up.requests if r["path"] == path)


def settle() -> None:
    """The log phase counts a status just after the response is sent: let it land before
    asking another worker."""
    time.sleep(0.1)


def fail(kit, path: str, **kw) -> int:
    status = kit.get(path, headers={"X-Status": "500", **kw}).status
    settle()
    return status


def wait_pass(kit, path: str, status: str, since: float,
              limit: float) -> tuple[float, float, list[int]]:
    """Poll (a new connection each time: either worker) until a request reaches the upstream
    (it answers ``status``): when that request was sent, how long after ``since``, and the
    answers seen before."""
    seen = []
    while time.monotonic() - since < limit:
        sent = time.monotonic()
        r = kit.get(path, headers={"X-Status": status})
        if r.status == int(status):
            settle()
            return sent, sent - since, seen
        seen.append(r.status)
        time.sleep(0.1)
    raise AssertionError(f"{path} still open after {limit} s: {seen[-5:]}")


def worker_of(kit, conn: http.client.HTTPConnection, tag: str) -> str:
    conn.request("GET", f"/who?c={tag}")
    r = conn.getresponse()
    r.read()
    assert r.status == 200
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for line in kit.access_log():
            pid, uri, _ = line.split()
            if uri == f"/who?c={tag}":
                return pid
        time.sleep(0.05)
    raise AssertionError("no access log line")


def send(conn: http.client.HTTPConnection, path: str, status: str = "200") -> int:
    conn.request("GET", path, headers={"X-Status": status})
    r = conn.getresponse()
    r.read()
    return r.status


def test_schema_is_apisixs():
    spec = registry.load(["api-breaker"]).get("api-breaker")
    assert spec.priority == 1005
    assert spec.check_conf({"break_response_code": 502}) == {
        "break_response_code": 502, "max_breaker_sec": 300,
        "unhealthy": {"http_statuses": [500], "failures": 3},
        "healthy": {"http_statuses": [200], "successes": 3}}
    for bad in ({}, {"break_response_code": 199}, {"break_response_code": 502,
                                                    "max_breaker_sec": 2},
                {"break_response_code": 502, "unhealthy": {"http_statuses": [404]}},
                {"break_response_code": 502, "healthy": {"http_statuses": [500]}},
                {"break_response_code": 502, "unhealthy": {"failures": 0}},
                {"break_response_code": 502, "break_response_headers": [{"key": "X"}]}):
        with pytest.raises(registry.PluginConfigError):
            spec.check_conf(bad)


def test_opens_after_failures_counted_by_both_workers_and_answers_without_the_upstream(
        kit, up):
    conns: dict[str, http.client.HTTPConnection] = {}
    for i in range(40):                       # two keep-alive connections on two workers
        c = http.client.HTTPConnection("127.0.0.1", kit.port, timeout=10)
        pid = worker_of(kit, c, str(i))
        if pid in conns:
            c.close()
        else:
            conns[pid] = c
        if len(conns) == 2:
            break
    assert len(conns) == 2
    a, b = conns.values()
    try:
        assert send(a, "/nw", "500") == 500
        assert send(b, "/nw", "500") == 500
        assert send(a, "/nw", "500") == 500   # the third failure, two from worker a
        assert reached(up, "/nw") == 3
        settle()
        assert [send(b, "/nw"), send(a, "/nw"), send(b, "/nw")] == [502, 502, 502]
        assert reached(up, "/nw") == 3        # none reached the upstream
    finally:
        a.close()
        b.close()


def test_half_opens_after_2s_reopens_for_4s_and_closes_after_successes(kit, up):
    t0 = time.monotonic()
    assert fail(kit, "/win") == 500           # failures: 1 -> open for 2 s
    assert kit.get("/win").status == 502
    n = reached(up, "/win")
    # its own 502 answers are no upstream status: they would re-trip it if counted
    t1, took, seen = wait_pass(kit, "/win", "500", t0, 6)
    assert 2.0 < took <= 3.6 and set(seen) == {502}
    assert reached(up, "/win") == n + 1       # only the half-open request got through
    _, took, seen = wait_pass(kit, "/win", "200", t1, 8)    # 2nd round: open for 4 s
    assert 4.0 < took <= 5.6 and set(seen) == {502}
    assert kit.get("/win", headers={"X-Status": "200"}).status == 200   # 2 successes: closed
    settle()
    t3 = time.monotonic()
    assert fail(kit, "/win") == 500           # a new first round: 2 s again, not 8
    assert kit.get("/win").status == 502
    _, took, _ = wait_pass(kit, "/win", "200", t3, 6)
    assert 2.0 < took <= 3.6


def test_break_response_body_and_headers_with_variables(kit):
    assert fail(kit, "/body") == 500
    r = kit.get("/body")
    assert r.status == 503 and r.body == b'{"error":"down"}'
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-client"] == "127.0.0.1"
    assert [v for k, v in r.header_list if k.lower() == "x-via"] == \
        ["127.0.0.1-breaker", "!"]            # added, not replaced; unknown var: empty


def test_headers_only_come_with_a_body_as_in_apisix(kit):
    assert fail(kit, "/nobody") == 500
    r = kit.get("/nobody")
    assert r.status == 504 and "x-extra" not in r.headers


def test_state_is_per_host_and_uri_and_only_listed_statuses_count(kit):
    assert fail(kit, "/keys/a") == 500
    assert kit.get("/keys/a").status == 502
    assert kit.get("/keys/b").status == 200
    assert kit.get("/keys/a", headers={"Host": "other.test"}).status == 200
    for st in ("404", "503", "302"):          # in neither list (unhealthy: [500])
        assert kit.get("/keys/c", headers={"X-Status": st}).status == int(st)
    assert kit.get("/keys/c").status == 200


def test_an_unreachable_upstream_counts_as_502(kit):
    assert [kit.get("/dead").status for _ in range(2)] == [502, 502]
    settle()
    r = kit.get("/dead")
    assert r.status == 503 and r.body == b"open"


def test_a_route_change_keeps_the_state_and_new_thresholds_start_afresh(kit, doc):
    assert fail(kit, "/keep") == 500          # failures: 2, one counted
    changed = {"routes": [dict(r) for r in doc["routes"]]}
    keep = next(r for r in changed["routes"] if r["id"] == "keep")
    keep["name"] = "renamed"
    kit.apply(changed)
    assert fail(kit, "/keep") == 500          # the second: the first was kept
    assert kit.get("/keep").status == 502
    keep["plugins"] = ab(unhealthy={"failures": 3})
    kit.apply(changed)
    assert kit.get("/keep").status == 200     # a new configuration, a new state
    kit.apply(doc)
