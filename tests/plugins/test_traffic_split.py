"""traffic-split through a real gateway: weights (canary), match rules (blue-green, A/B),
upstream_id and inline upstreams, the route's own upstream as the default."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pylon.pdk.testing import Kit


class Named:
    """An origin that answers its name."""

    def __init__(self, name: str) -> None:
        owner = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                body = json.dumps({"upstream": owner.name, "host": self.headers["Host"]}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a: object) -> None:
                pass

        self.name = name
        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.addr = f"127.0.0.1:{self.srv.server_address[1]}"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture(scope="module")
def origins():
    os_ = {n: Named(n) for n in ("blue", "green", "canary")}
    yield os_
    for o in os_.values():
        o.close()


@pytest.fixture(scope="module")
def kit(origins):
    up = lambda n: {"nodes": {origins[n].addr: 1}, "type": "roundrobin"}  # noqa: E731
    doc = {
        "upstreams": [{"id": "green", **up("green")}],
        "routes": [
            {"id": "canary", "uri": "/canary", "upstream": up("blue"), "plugins": {
                "traffic-split": {"rules": [{"weighted_upstreams": [
                    {"upstream": {**up("canary"), "pass_host": "rewrite",
                                  "upstream_host": "canary.internal"}, "weight": 1},
                    {"weight": 3}]}]}}},
            {"id": "bg", "uri": "/bg", "upstream": up("blue"), "plugins": {
                "traffic-split": {"rules": [{
                    "match": [{"vars": [["http_release", "==", "new"]]},
                              {"vars": [["arg_green", "==", "1"]]}],
                    "weighted_upstreams": [{"upstream_id": "green"}]}]}}},
            {"id": "ab", "uri": "/ab", "upstream": up("blue"), "plugins": {
                "traffic-split": {"rules": [
                    {"match": [{"vars": [["cookie_group", "==", "a"]]}],
                     "weighted_upstreams": [{"upstream_id": "green", "weight": 1}]},
                    {"match": [{"vars": [["cookie_group", "==", "b"]]}],
                     "weighted_upstreams": [{"upstream": up("canary")}]}]}}},
        ],
    }
    with Kit(doc, workers=1) as k:
        yield k


def who(kit, path, **kw) -> str:
    r = kit.get(path, **kw)
    assert r.status == 200, r.body
    return r.json()["upstream"]


def test_weights_split_the_traffic_exactly_per_round(kit):
    seen = [who(kit, "/canary") for _ in range(40)]
    assert seen.count("canary") == 10 and seen.count("blue") == 30


def test_an_inline_upstream_keeps_its_own_pass_host(kit):
    hosts = {kit.get("/canary").json()["host"] for _ in range(4)}
    assert "canary.internal" in hosts


def test_blue_green_by_header_or_query(kit):
    assert who(kit, "/bg") == "blue"
    assert who(kit, "/bg", headers={"Release": "new"}) == "green"
    assert who(kit, "/bg?green=1") == "green"


def test_ab_by_cookie_first_matching_rule(kit):
    assert who(kit, "/ab", headers={"Cookie": "group=a"}) == "green"
    assert who(kit, "/ab", headers={"Cookie": "group=b"}) == "canary"
    assert who(kit, "/ab") == "blue"


def test_changing_weights_live(kit, origins):
    up = {"nodes": {origins["canary"].addr: 1}, "type": "roundrobin"}
    kit.apply({"routes": [{"id": "canary", "uri": "/canary",
                           "upstream": {"nodes": {origins["blue"].addr: 1}},
                           "plugins": {"traffic-split": {"rules": [{"weighted_upstreams": [
                               {"upstream": up, "weight": 1}, {"weight": 0}]}]}}}]})
    assert {who(kit, "/canary") for _ in range(5)} == {"canary"}


def test_a_bad_inline_upstream_is_refused(kit):
    kit.apply({"routes": [{"id": "bad", "uri": "/bad", "plugins": {"traffic-split": {
        "rules": [{"weighted_upstreams": [{"upstream": {"nodes": {"h:x": 1}}}]}]}}}]})
    assert "rejected routes/bad" in kit.log() or "rejected routes[0]" in kit.log()
    assert kit.get("/bad").status == 404
