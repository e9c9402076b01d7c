"""fault-injection through a real gateway: aborts, delays, vars, percentages (APISIX)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from pylon.pdk.testing import Kit
from pylon.proxy import registry

DOC: dict[str, Any] = {
    "routes": [
        {"id": "abort", "uri": "/abort",
         "plugins": {"fault-injection": {"abort": {"http_status": 403,
                                                   "body": "Fault Injection!\n"}}}},
        {"id": "abort-nobody", "uri": "/abort-nobody",
         "plugins": {"fault-injection": {"abort": {"http_status": 503}}}},
        {"id": "vars-body", "uri": "/vars-body",
         "plugins": {"fault-injection": {"abort": {
             "http_status": 200,
             "body": "client addr: $remote_addr, uri: ${uri}, name=$arg_name, "
                     "missing=[$arg_nope], kept=\\$uri"}}}},
        {"id": "headers", "uri": "/headers",
         "plugins": {"fault-injection": {"abort": {
             "http_status": 429, "body": "slow down",
             "headers": {"X-Fault": "injected", "Retry-After": 7,
                         "X-Who": "$remote_addr/$arg_name",
                         "Content-Type": "application/json"}}}}},
        {"id": "abort-vars", "uri": "/abort-vars",
         "plugins": {"fault-injection": {"abort": {
             "http_status": 403, "body": "vars matched",
             "vars": [[["arg_name", "==", "jack"], ["arg_age", "==", "18"]],
                      [["http_x_role", "==", "admin"]]]}}}},
        {"id": "abort-empty-vars", "uri": "/abort-empty-vars",
         "plugins": {"fault-injection": {"abort": {"http_status": 403, "vars": []}}}},
        {"id": "delay", "uri": "/delay",
         "plugins": {"fault-injection": {"delay": {"duration": 0.3}}}},
        {"id": "delay-vars", "uri": "/delay-vars",
         "plugins": {"fault-injection": {"delay": {
             "duration": 0.5, "vars": [[["http_x_slow", "==", "yes"]]]}}}},
        {"id": "delay-abort", "uri": "/delay-abort",
         "plugins": {"fault-injection": {"delay": {"duration": 0.3},
                                         "abort": {"http_status": 500, "body": "late"}}}},
        {"id": "half", "uri": "/half",
         "plugins": {"fault-injection": {"abort": {"http_status": 418, "percentage": 50}}}},
        {"id": "never", "uri": "/never",
         "plugins": {"fault-injection": {"abort": {"http_status": 418, "percentage": 0},
                                         "delay": {"duration": 2, "percentage": 0}}}},
        {"id": "always", "uri": "/always",
         "plugins": {"fault-injection": {"abort": {"http_status": 418,
                                                   "percentage": 100}}}},
        {"id": "plain", "uri": "/plain"},
    ],
}


@pytest.fixture(scope="module")
def kit():
    with Kit(DOC) as k:
        yield k


def _upstream_saw(kit: Kit, path: str) -> int:
    return sum(1 for r in kit.upstream.requests if r["path"].split("?")[0] == path)


def test_abort_answers_status_and_body_without_the_upstream(kit):
    r = kit.get("/abort")
    assert r.status == 403
    assert r.body == b"Fault Injection!\n"
    assert r.headers["content-type"].startswith("text/plain")
    assert _upstream_saw(kit, "/abort") == 0


def test_abort_without_body_is_just_the_status(kit):
    r = kit.get("/abort-nobody")
    assert r.status == 503
    assert r.body == b""
    assert _upstream_saw(kit, "/abort-nobody") == 0


def test_abort_body_resolves_nginx_variables(kit):
    r = kit.get("/vars-body?name=jack")
    assert r.status == 200
    assert r.text == ("client addr: 127.0.0.1, uri: /vars-body, name=jack, missing=[], "
                      "kept=\\$uri")


def test_abort_headers_are_sent_with_variables_resolved(kit):
    r = kit.get("/headers?name=rose")
    assert r.status == 429
    assert r.body == b"slow down"
    assert r.headers["x-fault"] == "injected"
    assert r.headers["retry-after"] == "7"
    assert r.headers["x-who"] == "127.0.0.1/rose"
    assert r.headers["content-type"] == "application/json"        # replaces the default
    assert sum(1 for k, _ in r.header_list if k.lower() == "content-type") == 1


def test_abort_header_variable_cannot_inject_a_header(kit):
    r = kit.get("/headers?name=a%0d%0aX-Evil:%201")
    assert r.status == 429
    assert "x-evil" not in r.headers
    assert r.headers["x-who"] == "127.0.0.1/a%0D%0AX-Evil: 1"


def test_abort_vars_are_ored_lists_of_anded_conditions(kit):
    assert kit.get("/abort-vars?name=jack&age=18").status == 403       # first, both match
    assert kit.get("/abort-vars", headers={"X-Role": "admin"}).status == 403   # second
    r = kit.get("/abort-vars?name=jack&age=19")                         # first half only
    assert r.status == 200 and r.json()["path"] == "/abort-vars?name=jack&age=19"
    assert kit.get("/abort-vars", headers={"X-Role": "user"}).status == 200


def test_empty_vars_list_never_matches_as_in_apisix(kit):
    assert kit.get("/abort-empty-vars").status == 200


def test_delay_holds_the_request_then_proxies_it(kit):
    t0 = time.monotonic()
    r = kit.get("/delay")
    took = time.monotonic() - t0
    assert r.status == 200 and r.json()["path"] == "/delay"
    assert 0.29 <= took < 2.0


def _timed(kit: Kit, path: str, out: list[Any], headers: dict[str, str] | None = None) -> None:
    t0 = time.monotonic()
    r = kit.get(path, headers=headers)
    out.append((r.status, time.monotonic() - t0))


def test_delays_of_concurrent_requests_overlap(kit):
    out: list[Any] = []
    ts = [threading.Thread(target=_timed, args=(kit, "/delay", out)) for _ in range(2)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join(5)
    total = time.monotonic() - t0
    assert [s for s, _ in out] == [200, 200]
    assert all(took >= 0.29 for _, took in out)
    assert total < 0.55, f"two 0.3 s delays took {total:.2f} s: they were serialised"


def test_a_delayed_request_does_not_hold_up_others(kit):
    out: list[Any] = []
    slow = threading.Thread(target=_timed, args=(kit, "/delay-vars", out, {"X-Slow": "yes"}))
    slow.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    assert kit.get("/plain").status == 200
    assert time.monotonic() - t0 < 0.3
    slow.join(5)
    assert out and out[0][0] == 200 and out[0][1] >= 0.49


def test_delay_vars_not_matching_means_no_delay(kit):
    t0 = time.monotonic()
    assert kit.get("/delay-vars", headers={"X-Slow": "no"}).status == 200
    assert time.monotonic() - t0 < 0.3


def test_delay_then_abort(kit):
    t0 = time.monotonic()
    r = kit.get("/delay-abort")
    assert r.status == 500 and r.body == b"late"
    assert time.monotonic() - t0 >= 0.29
    assert _upstream_saw(kit, "/delay-abort") == 0


def test_percentage_aborts_about_that_share_of_requests(kit):
    n = 400
    aborted = sum(1 for _ in range(n) if kit.get("/half").status == 418)
    # binomial(400, 0.5): sd 10; +-60 is six standard deviations
    assert 140 <= aborted <= 260, aborted
    assert _upstream_saw(kit, "/half") == n - aborted


def test_percentage_zero_never_and_hundred_always(kit):
    t0 = time.monotonic()
    assert all(kit.get("/never").status == 200 for _ in range(30))
    assert time.monotonic() - t0 < 2.0                  # a 2 s delay never happened
    assert all(kit.get("/always").status == 418 for _ in range(30))


def test_schema_as_apisix():
    spec = registry.load(["fault-injection"]).get("fault-injection")
    assert spec.priority == 11000
    spec.check_conf({"abort": {"http_status": 200}})
    spec.check_conf({"delay": {"duration": 1.5, "percentage": 0}})
    spec.check_conf({"abort": {"http_status": 403, "headers": {"X-A": 1, "X-B": "$host"},
                               "vars": [[["arg_a", "==", "1"]]]}})
    bad = [
        {},                                                  # minProperties 1
        {"abort": {"http_status": 199}},
        {"abort": {"body": "x"}},                            # http_status is required
        {"abort": {"http_status": 500, "percentage": 101}},
        {"abort": {"http_status": 500, "headers": {}}},      # minProperties 1
        {"abort": {"http_status": 500, "headers": {"X-A": True}}},
        {"abort": {"http_status": 500, "headers": {"X-A": "a\r\nX-B: c"}}},
        {"abort": {"http_status": 500, "vars": [["arg_a", "==", "1"]]}},   # not wrapped
        {"abort": {"http_status": 500, "vars": [[["arg_a", "~~", "("]]]}},  # bad regex
        {"delay": {"percentage": 10}},                       # duration is required
        {"delay": {"duration": -1}},
        {"delay": {"duration": 1, "vars": [[]] * 21}},        # maxItems 20
    ]
    for conf in bad:
        with pytest.raises(registry.PluginConfigError):
            spec.check_conf(conf)
    with pytest.raises(registry.PluginConfigError) as e:
        spec.check_conf({"abort": {"http_status": 100}})
    assert 'property "abort" validation failed' in str(e.value)


def test_no_plugin_failure_in_the_gateway_log(kit):
    assert "plugin fault-injection failed" not in kit.log()
    assert "Traceback" not in kit.log()
