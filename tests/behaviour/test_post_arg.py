"""``post_arg.*`` route variables (APISIX 3.x ``core/ctx.lua``): a JSON body's values by
JSON path (``post_arg.model``, ``post_arg.messages[0].role``) and an urlencoded form's fields
(``post_arg.name``, the older ``post_arg_name``).  The body is read before routing, at most
``apisix.max_post_args_readable_size`` MB (a larger one leaves the variables nil), and is
still sent upstream unchanged."""

from __future__ import annotations

import http.client
import json

import pytest

from pylon.pdk.testing import Kit

ADMIN_KEY = "p" * 32
CHAT = "/v1/chat"


def _route(rid: str, vars_: list, priority: int = 10) -> dict:
    return {"id": rid, "uri": CHAT, "methods": ["POST"], "priority": priority, "vars": vars_,
            "plugins": {"response-rewrite": {"headers": {"set": {"X-Route": rid}}}}}


DOC = {"routes": [
    _route("gpt4", [["post_arg.model", "==", "gpt-4"]]),
    _route("claude", [["post_arg.model", "~~", "^claude"]]),
    _route("nested", [["post_arg.messages[0].role", "==", "system"]], priority=20),
    _route("stream", [["post_arg.stream", "==", True], ["post_arg.temperature", ">", 0.5]],
           priority=30),
    _route("form", [["post_arg.team", "==", "blue"]]),
    _route("form-old", [["post_arg_team", "==", "red"]]),
    {"id": "fallback", "uri": CHAT, "priority": 0,
     "plugins": {"response-rewrite": {"headers": {"set": {"X-Route": "fallback"}}}}},
]}


@pytest.fixture(scope="module")
def kit():
    with Kit(DOC, admin_key=ADMIN_KEY, node={"pylon": {"max_post_args_readable_size": 1}}) as k:
        yield k


def post(kit, body, ctype="application/json"):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return kit.request("POST", CHAT, body=data, headers={"Content-Type": ctype})


def route_of(r) -> str:
    assert r.status == 200, r
    return r.headers["x-route"]


def test_json_body_value_picks_the_route(kit):
    assert route_of(post(kit, {"model": "gpt-4", "messages": []})) == "gpt4"
    assert route_of(post(kit, {"model": "claude-sonnet-4"})) == "claude"
    assert route_of(post(kit, {"model": "llama"})) == "fallback"


def test_body_reaches_the_upstream_unchanged(kit):
    body = '{"model": "gpt-4",  "x": [1, 2]}'
    r = post(kit, body)
    assert route_of(r) == "gpt4"
    assert r.json()["body"] == body


def test_nested_path_and_array_index(kit):
    msg = {"model": "gpt-4", "messages": [{"role": "system", "content": "be brief"}]}
    assert route_of(post(kit, msg)) == "nested"
    msg["messages"][0]["role"] = "user"
    assert route_of(post(kit, msg)) == "gpt4"


def test_boolean_and_number_values(kit):
    assert route_of(post(kit, {"stream": True, "temperature": 0.7})) == "stream"
    assert route_of(post(kit, {"stream": True, "temperature": 0.2})) == "fallback"
    assert route_of(post(kit, {"stream": "true", "temperature": 0.7})) == "fallback"


def test_urlencoded_form_fields(kit):
    form = "application/x-www-form-urlencoded"
    assert route_of(post(kit, "team=blue&x=1", form)) == "form"
    assert route_of(post(kit, "team=red", form)) == "form-old"
    assert route_of(post(kit, "team=blue&team=red", form)) == "form"   # the first value
    assert route_of(post(kit, '{"team": "red"}')) == "fallback"    # post_arg_ is forms only


def test_chunked_body_is_read_before_routing(kit):
    c = http.client.HTTPConnection("127.0.0.1", kit.port, timeout=10)
    try:
        c.putrequest("POST", CHAT)
        c.putheader("Content-Type", "application/json")
        c.putheader("Transfer-Encoding", "chunked")
        c.endheaders()
        for part in (b'{"model": ', b'"gpt-4"}'):
            c.send(b"%x\r\n%s\r\n" % (len(part), part))
        c.send(b"0\r\n\r\n")
        r = c.getresponse()
        assert r.status == 200 and r.getheader("X-Route") == "gpt4"
        assert json.loads(r.read())["body"] == '{"model": "gpt-4"}'
    finally:
        c.close()


def test_no_body_or_other_content_type_leaves_them_nil(kit):
    assert route_of(kit.request("POST", CHAT)) == "fallback"
    assert route_of(post(kit, '{"model": "gpt-4"}', "text/plain")) == "fallback"
    assert route_of(post(kit, '{"model": ', "application/json")) == "fallback"   # not JSON


def test_body_over_the_readable_size_is_not_read_for_routing(kit):
    big = json.dumps({"model": "gpt-4", "pad": "x" * (1 << 20)})
    r = post(kit, big)
    assert route_of(r) == "fallback"
    assert len(r.json()["body"]) == len(big)                      # still sent whole


def test_bad_json_path_is_refused_by_the_admin_api(kit):
    r = kit.admin("PUT", "/routes/bad", {"uri": "/bad", "vars": [["post_arg.a[", "==", "1"]],
                                         "upstream": {"nodes": {kit.upstream.addr: 1}}})
    assert r.status == 400
    assert "bad JSON path '$.a['" in r.json()["error_msg"]
