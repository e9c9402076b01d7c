"""The standalone file is watched: a saved change is live within a second, without a restart
and without failing a request; a broken file never replaces a working config."""

from __future__ import annotations

import json
import re
import time

from tests.harness import route_doc

from .loadgen import Load

UP = lambda *ups: {"nodes": {u.addr: 1 for u in ups}, "type": "roundrobin"}  # noqa: E731


def wait_status(gw, path, status, timeout=5.0):
    """Poll ``path`` until it answers ``status``; return the seconds it took."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < timeout:
        last = gw.get(path)[0]
        if last == status:
            return time.monotonic() - t0
        time.sleep(0.02)
    raise AssertionError(f"{path} still answers {last}, not {status}, after {timeout} s")


def wait_log(gw, pattern, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, gw.log())
        if m:
            return m
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not in the log:\n{gw.log()[-3000:]}")


def test_edited_file_is_live_within_a_second(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream], uri="/old"))
    assert gw.get("/old")[0] == 200
    assert gw.get("/new")[0] == 404
    gw.write({"routes": [{"id": "r2", "uri": "/new", "upstream": UP(upstream)}]})
    elapsed = wait_status(gw, "/new", 200)
    assert elapsed < 1.5
    assert gw.get("/old")[0] == 404, "the old route is gone with the file"


def test_every_edit_in_a_quick_series_is_applied(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream], uri="/v0"))
    for i in range(1, 4):
        gw.write({"routes": [{"id": "r", "uri": f"/v{i}", "upstream": UP(upstream)}]})
        time.sleep(0.1)
    assert wait_status(gw, "/v3", 200) < 1.5
    assert gw.get("/v2")[0] == 404


def test_unparseable_file_keeps_the_last_good_config_and_logs_the_location(
        gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream], uri="/good"))
    gw.write("routes:\n  - id: r1\n    uri: [/broken,\n")
    m = wait_log(gw, r"not applied.*line (\d+) column \d+")
    assert int(m.group(1)) >= 3
    assert gw.get("/good")[0] == 200
    # the broken file is reported once, not on every poll of the unchanged file
    time.sleep(2.2)
    assert gw.log().count("not applied") == 1
    assert gw.get("/good")[0] == 200
    # fixing the file applies it
    gw.write({"routes": [{"id": "r1", "uri": "/fixed", "upstream": UP(upstream)}]})
    wait_status(gw, "/fixed", 200)
    assert gw.get("/good")[0] == 404


def test_duplicate_key_keeps_the_last_good_config_and_logs_the_line(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream], uri="/good"))
    gw.write(f"routes:\n  - id: r1\n    uri: /a\n    uri: /b\n"
             f"    upstream: {{nodes: {{'{upstream.addr}': 1}}}}\n")
    wait_log(gw, r"not applied.*line 4.*duplicate key 'uri'")
    assert gw.get("/good")[0] == 200
    assert gw.get("/a")[0] == 404


def test_file_whose_top_level_is_not_a_mapping_keeps_the_last_good_config(
        gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream], uri="/good"))
    gw.write("- just\n- a list\n")
    wait_log(gw, r"not applied.*mapping")
    assert gw.get("/good")[0] == 200


def test_emptied_file_keeps_the_last_good_config(gateway_factory, upstream):
    # an editor that truncates then writes shows an empty file for a moment
    gw = gateway_factory(route_doc([upstream], uri="/good"))
    gw.write("")
    wait_log(gw, r"not applied.*empty")
    assert gw.get("/good")[0] == 200
    gw.write("routes: []\n#END\n")               # an explicit empty config applies
    wait_status(gw, "/good", 404)


def test_invalid_object_is_rejected_with_its_path_and_the_rest_applies(
        gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream], uri="/old"))
    gw.write({"routes": [
        {"id": "good", "uri": "/good", "upstream": UP(upstream)},
        {"id": "bad", "uri": "/bad",
         "upstream": {"nodes": [{"host": "127.0.0.1", "port": 70000}]}},
        {"id": "orphan", "uri": "/orphan", "upstream_id": "missing"},
    ]})
    wait_status(gw, "/good", 200)
    assert gw.get("/bad")[0] == 404
    assert gw.get("/orphan")[0] == 404
    wait_log(gw, r"rejected routes\[1\]\.upstream\.nodes\[0\]\.port \(id bad\)")
    wait_log(gw, r"rejected routes\[2\]\.upstream_id \(id orphan\).*'missing'")
    # each rejection is logged once (by the master), not once per worker
    assert gw.log().count("(id bad)") == 1


def test_file_changes_under_load_fail_no_request(gateway_factory, upstream_factory):
    u1, u2 = upstream_factory("u1"), upstream_factory("u2")
    doc = lambda up, i: {"routes": [  # noqa: E731
        {"id": "load", "uri": "/load", "upstream": UP(up)},
        {"id": f"extra{i}", "uri": f"/extra{i}", "upstream": UP(up)}]}
    gw = gateway_factory(doc(u1, 0), workers=2)
    with Load(gw.port, "/load", fresh=2, keepalive=2) as load:
        load.wait_for(20)
        for i in range(1, 7):
            gw.write(doc(u2 if i % 2 else u1, i))
            time.sleep(0.45)
        wait_status(gw, "/extra6", 200)
        time.sleep(0.3)
    assert load.failures == [], load.summary()
    assert load.ok > 100, load.summary()
    assert u1.requests and u2.requests, "both versions of the config served"


def test_unchanged_upstream_keeps_its_balancer_position_and_connections(
        gateway_factory, upstream_factory):
    seen = []

    def who(name):
        def behaviour(h, body):
            seen.append((name, h.client_address[1]))
            out = json.dumps({"upstream": name}).encode()
            h.send_response(200)
            h.send_header("Content-Length", str(len(out)))
            h.end_headers()
            h.wfile.write(out)
        return behaviour

    a, b = upstream_factory("a", behaviour=who("a")), upstream_factory("b", behaviour=who("b"))
    shared = {"id": "shared", "type": "roundrobin", "nodes": {a.addr: 1, b.addr: 1}}
    gw = gateway_factory({"upstreams": [shared],
                          "routes": [{"id": "r", "uri": "/r", "upstream_id": "shared"}]})
    assert gw.get("/r")[0] == 200
    first, first_port = seen[-1]
    second = {"a": "b", "b": "a"}[first]
    # change something else: the upstream object is unchanged
    gw.write({"upstreams": [shared],
              "routes": [{"id": "r", "uri": "/r", "upstream_id": "shared"},
                         {"id": "other", "uri": "/other", "upstream_id": "shared"}]})
    # /other would move the balancer: wait for the worker's log line instead of probing
    wait_log(gw, r"config revision 2 live")
    assert gw.get("/r")[0] == 200
    assert seen[-1][0] == second, "the round robin continued instead of starting over"
    assert gw.get("/r")[0] == 200
    assert seen[-1] == (first, first_port), "the keep-alive connection was kept"
