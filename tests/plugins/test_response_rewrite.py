"""response-rewrite through a real gateway: APISIX's t/plugin/response-rewrite*.t cases (status,
body, body_base64, both header forms, vars, filters), gzip/br upstreams, local replies, a large
streamed response that stays streamed, the filter body bound, and the Admin API's refusals."""

from __future__ import annotations

import gzip
import http.client
import re
import threading
import time
from typing import Any

import brotli
import pytest

from pylon.pdk.testing import Kit
from pylon.plugins import response_rewrite as rr
from pylon.proxy.registry import PluginSpec

ADMIN_KEY = "r" * 32
LIMIT = 4096                                  # plugin_attr max_body_size for the kit
PART1 = b"a" * 70000
PART2 = b"b" * 70000
GATE = threading.Event()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _answer(h: Any, rec: dict[str, Any]) -> None:
    """Like APISIX's test server: ``/hello`` says hello world, a request body is echoed,
    ``X-Resp-<Name>`` request headers become response headers, ``X-Status`` is the status;
    ``X-Encode: gzip|br`` compresses, ``X-Chunks: n`` sends the body in n chunks;
    ``/big`` streams two parts with a gate between them."""
    hd = rec["headers"]
    if rec["path"].startswith("/big"):
        h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(PART1) + len(PART2)))
        h.end_headers()
        h.wfile.write(PART1)
        h.wfile.flush()
        GATE.wait(5)
        h.wfile.write(PART2)
        return
    if rec["path"].startswith("/f/trunc"):          # promises 100 bytes, sends 12, hangs up
        h.send_response(200)
        h.send_header("Content-Length", "100")
        h.end_headers()
        h.wfile.write(b"hello world\n")
        h.wfile.flush()
        h.close_connection = True
        return
    body = rec["body"].encode("latin-1") or b"hello world\n"
    status = 500 if "server_error" in rec["path"] else int(hd.get("x-status", "200"))
    h.send_response(status)
    h.send_header("Content-Type", "text/plain")
    for k, v in hd.items():
        if k.startswith("x-resp-"):
            h.send_header(k[7:], v)
    enc = hd.get("x-encode")
    if enc == "gzip":
        body = gzip.compress(body)
    elif enc == "br":
        body = brotli.compress(body)
    if enc:
        h.send_header("Content-Encoding", enc)
    n = int(hd.get("x-chunks", "0"))
    if n:
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        step = -(-len(body) // n)
        for i in range(0, len(body), step):
            h.wfile.write(_chunk(body[i:i + step]))
            h.wfile.flush()
            time.sleep(0.01)
        h.wfile.write(b"0\r\n\r\n")
        return
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def _route(uri: str, conf: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": uri.strip("/").replace("/", "-"), "uri": uri,
            "plugins": {"response-rewrite": conf, **extra}}


HELLO_ONCE = [{"regex": "hello", "replace": "test"}]
DOC = {"routes": [
    _route("/with_header", {"headers": {"X-Server-id": 3, "X-Server-status": "on",
                                        "Content-Type": ""}, "body": "new body\n"}),
    _route("/keep", {"body": "new body2\n"}),
    _route("/redirect", {"headers": {"Location": "https://www.iresty.com"},
                         "status_code": 302}),
    _route("/b64", {"body": "SGVsbG8K", "body_base64": True}),
    {"id": "vars", "uris": ["/server_error", "/hello"], "plugins": {"response-rewrite": {
        "body": "new body3\n", "status_code": 403, "vars": [["status", "==", 500]]}}},
    _route("/f/once", {"vars": [["status", "==", 200]], "filters": HELLO_ONCE}),
    _route("/f/global", {"filters": [{"regex": "l", "replace": "t", "scope": "global"}]}),
    _route("/f/multi", {"filters": [{"regex": "hello", "replace": "HELLO"},
                                    {"regex": "L", "replace": "T"}]}),
    _route("/f/words", {"filters": [{"regex": "\\w\\S+$", "replace": "*"}]}),
    _route("/f/empty", {"filters": [{"regex": "hello", "replace": ""}]}),
    _route("/f/captures", {"filters": [{"regex": "(\\w+) (\\w+)", "replace": "$2 ${1}!$$"}]}),
    _route("/f/nocase", {"filters": [{"regex": "HELLO", "replace": "bye", "options": "i"}]}),
    _route("/f/chunks", {"filters": [{"regex": "split-here", "replace": "JOINED",
                                      "scope": "global"}]}),
    _route("/f/gzip", {"filters": HELLO_ONCE}),
    _route("/f/large", {"filters": HELLO_ONCE}),
    _route("/f/trunc", {"filters": HELLO_ONCE}),
    _route("/hdr", {"headers": {
        "add": ["X-Add: a-$arg_v", "X-Multi: 1"],
        "set": {"X-Up": "$upstream_http_x_origin", "X-Status": "$status", "X-Drop": "x",
                "X-Num": 1.5},
        "remove": ["X-Drop", "X-Secret"]}}),
    _route("/cond", {"headers": {"set": {"X-Matched": "1"}},
                     "vars": [["upstream_http_x_origin", "==", "yes"]]}),
    _route("/plain", {"headers": {"set": {"X-Server-id": 3}}}),
    _route("/big", {"headers": {"set": {"X-Streamed": "yes"}}}),
    _route("/auth", {"vars": [["status", "==", 401]], "body": '{"message":"please log in"}',
                     "headers": {"set": {"Content-Type": "application/json",
                                         "X-Was": "$status"}}},
           **{"key-auth": {}}),
]}


@pytest.fixture(scope="module")
def kit():
    node = {"plugin_attr": {"response-rewrite": {"max_body_size": LIMIT}}}
    with Kit(DOC, admin_key=ADMIN_KEY, node=node) as k:
        k.upstream.behaviour = _answer
        yield k


# ------------------------------------------------------------------ status, body, headers
def test_body_and_plain_map_headers_replace_the_response(kit):
    r = kit.get("/with_header")
    assert r.status == 200
    assert r.body == b"new body\n"
    assert r.headers["x-server-id"] == "3"
    assert r.headers["x-server-status"] == "on"
    assert "content-type" not in r.headers              # "" removes it
    assert "content-length" not in r.headers
    assert r.headers["transfer-encoding"] == "chunked"


def test_new_body_clears_length_encoding_and_cache_validators(kit):
    r = kit.get("/keep", headers={
        "X-Resp-X-Server-id": "100", "X-Resp-Content-Type": "application/xml",
        "X-Resp-Content-Encoding": "gzip", "X-Resp-Last-Modified": "Wed, 21 Oct 2015 07:28:00 GMT",
        "X-Resp-ETag": '"33a64df551425fcc55e4d42a148795d9f25f89d4"'})
    assert r.body == b"new body2\n"
    assert r.headers["x-server-id"] == "100"
    assert r.headers["content-type"] == "application/xml"
    for gone in ("content-length", "content-encoding", "last-modified", "etag"):
        assert gone not in r.headers


def test_status_code_and_location_make_a_redirect(kit):
    r = kit.get("/redirect")
    assert r.status == 302
    assert r.headers["location"] == "https://www.iresty.com"
    assert r.body == b"hello world\n"                   # the body is left alone
    assert r.headers["content-length"] == "12"


def test_body_base64_is_decoded(kit):
    assert kit.get("/b64").body == b"Hello\n"


def test_vars_on_the_upstream_status_decide(kit):
    r = kit.get("/server_error")
    assert (r.status, r.body) == (403, b"new body3\n")
    r = kit.get("/hello")
    assert (r.status, r.body) == (200, b"hello world\n")


def test_add_set_remove_with_variables(kit):
    r = kit.get("/hdr?v=7", headers={"X-Resp-X-Origin": "yes", "X-Resp-X-Secret": "s",
                                     "X-Resp-X-Drop": "up", "X-Resp-X-Multi": "0"})
    assert r.headers["x-add"] == "a-7"
    assert [v for k, v in r.header_list if k.lower() == "x-multi"] == ["0", "1"]
    assert r.headers["x-up"] == "yes"                    # $upstream_http_x_origin
    assert r.headers["x-status"] == "200"
    assert r.headers["x-num"] == "1.5"
    assert "x-secret" not in r.headers and "x-drop" not in r.headers
    assert r.headers["content-length"] == "12"           # the body is not touched
    r = kit.get("/hdr")
    assert "x-up" not in r.headers                       # an empty value: no header


def test_upstream_http_var_in_vars(kit):
    assert kit.get("/cond", headers={"X-Resp-X-Origin": "yes"}).headers["x-matched"] == "1"
    assert "x-matched" not in kit.get("/cond", headers={"X-Resp-X-Origin": "no"}).headers
    assert "x-matched" not in kit.get("/cond").headers


def test_set_overrides_the_upstream_header(kit):
    r = kit.get("/plain", headers={"X-Resp-X-Server-id": "100"})
    assert [v for k, v in r.header_list if k.lower() == "x-server-id"] == ["3"]


def test_header_variables_cannot_inject_lines(kit):
    r = kit.get("/hdr?v=1%0d%0aX-Evil:%201")
    assert "x-evil" not in r.headers
    assert r.headers["x-add"] == "a-1%0D%0AX-Evil: 1"


# ------------------------------------------------------------------ filters
@pytest.mark.parametrize("path, body", [
    ("/f/once", b"test world\n"),
    ("/f/global", b"hetto wortd\n"),
    ("/f/multi", b"HETLO world\n"),
    ("/f/words", b"hello *\n"),
    ("/f/empty", b" world\n"),
    ("/f/captures", b"world hello!$\n"),
    ("/f/nocase", b"bye world\n"),
])
def test_filters_rewrite_the_body(kit, path, body):
    r = kit.get(path)
    assert r.status == 200
    assert r.body == body
    assert "content-length" not in r.headers


def test_filters_do_nothing_when_vars_do_not_match(kit):
    r = kit.get("/f/once", headers={"X-Status": "404"})
    assert (r.status, r.body) == (404, b"hello world\n")
    assert r.headers["content-length"] == "12"


def test_filters_see_the_whole_body_across_chunks(kit):
    body = b"<" + b"x" * 500 + b"split-here" + b"y" * 500 + b"split-here>"
    r = kit.post("/f/chunks", body, headers={"X-Chunks": "4"})   # a token spans chunks
    assert r.body == body.replace(b"split-here", b"JOINED")


@pytest.mark.parametrize("enc", ["gzip", "br"])
def test_filters_decode_a_compressed_upstream_body(kit, enc):
    r = kit.get("/f/gzip", headers={"X-Encode": enc, "Accept-Encoding": enc})
    assert r.body == b"test world\n"
    assert "content-encoding" not in r.headers


def test_filters_on_an_unsupported_encoding_log_and_pass_the_body(kit):
    r = kit.post("/f/gzip", "hello deflate", headers={"X-Resp-Content-Encoding": "deflate"})
    assert r.body == b"hello deflate"
    assert "content-encoding" not in r.headers
    assert "filters may not work as expected due to unsupported compression encoding " \
           "type: deflate" in kit.log()


def test_body_over_the_bound_is_sent_unfiltered_and_logged(kit):
    body = b"hello " + b"z" * (LIMIT * 3)
    r = kit.post("/f/large", body, headers={"X-Chunks": "6"})
    assert r.status == 200
    assert r.body == body
    assert f"response body over {LIMIT} bytes, filters not applied" in kit.log()
    assert kit.post("/f/large", "hello small").body == b"test small"


def test_a_truncated_upstream_body_is_not_passed_off_as_complete(kit):
    # the upstream's Content-Length still frames its body when the client's response is
    # re-framed chunked: an early close is an error, not the end of a shorter body
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        kit.get("/f/trunc")


# ------------------------------------------------------------------ streaming, local replies
def test_headers_only_config_keeps_a_large_body_streaming(kit):
    GATE.clear()
    c = http.client.HTTPConnection("127.0.0.1", kit.port, timeout=5)
    try:
        c.request("GET", "/big")
        r = c.getresponse()                       # the head arrives before the whole body
        assert r.getheader("X-Streamed") == "yes"
        assert r.getheader("Content-Length") == str(len(PART1) + len(PART2))
        first = r.read(len(PART1))                # ... and so does the first part
        assert first == PART1
        GATE.set()
        assert r.read() == PART2
    finally:
        GATE.set()
        c.close()


def test_phases_leave_out_body_filter_unless_the_body_changes():
    def phases(conf: dict[str, Any]) -> set[str]:
        return rr.phases(rr.prepare(PluginSpec.from_module(rr, "t").check_conf(conf)))
    assert phases({"headers": {"set": {"X-A": "1"}}}) == {"header_filter"}
    assert phases({"status_code": 201}) == {"header_filter"}
    assert phases({"body": "x"}) == {"header_filter", "body_filter"}
    assert phases({"filters": HELLO_ONCE}) == {"header_filter", "body_filter"}
    assert phases({"vars": [["status", "==", 200]]}) == set()


def test_a_plugin_reply_is_rewritten_with_a_correct_length(kit):
    r = kit.get("/auth")
    assert r.status == 401
    assert r.json() == {"message": "please log in"}
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-was"] == "401"
    assert r.headers["content-length"] == str(len(r.body))


# ------------------------------------------------------------------ configuration
ERR = "failed to check the configuration of plugin response-rewrite err: "


@pytest.mark.parametrize("conf, err", [
    ({"status_code": 200, "headers": {"": 2}}, "invalid field length in header"),
    ({"status_code": 200, "headers": {"X-Name": {}}}, "invalid type as header value"),
    ({"body": "1", "body_base64": True}, "invalid base64 content"),
    ({"filters": [{"regex": "hello", "replace": "HELLO", "options": "h"}]},
     'regex "hello" validation failed: unknown flag "h" (flags "h")'),
    ({"filters": [{"regex": "l"}]},
     ('property "filters" validation failed: failed to validate item 1: '
      'property "replace" is required')),
    ({"filters": [{"regex": "", "replace": "m"}]},
     ('property "filters" validation failed: failed to validate item 1: '
      'property "regex" validation failed: string too short, expected at least 1, got 0')),
    ({"filters": [{"regex": "l", "replace": "m", "scope": ""}]},
     ('property "filters" validation failed: failed to validate item 1: '
      'property "scope" validation failed: matches none of the enum values')),
    ({"filters": [{"regex": "l", "replace": "$x"}]},
     "replace \"$x\" validation failed: invalid capturing variable name at '$x'"),
    ({"filters": [{"regex": "(", "replace": "m"}]}, 'regex "(" validation failed: '),
    ({"body": 2}, 'property "body" validation failed: wrong type: expected string, got number'),
    ({"vars": [["status", "=~=", 200]]}, "failed to validate the 'vars' expression: "),
])
def test_bad_config_is_refused_by_the_admin_api(kit, conf, err):
    r = kit.admin("PUT", "/routes/bad", {"uri": "/bad", "plugins": {"response-rewrite": conf},
                                         "upstream": {"nodes": {kit.upstream.addr: 1}}})
    assert r.status == 400
    msg = r.json()["error_msg"]
    if err.endswith(": "):
        assert msg.startswith(ERR + err)
    else:
        assert msg == ERR + err


def test_body_and_filters_exclude_each_other(kit):
    r = kit.admin("PUT", "/routes/bad", {"uri": "/bad", "plugins": {"response-rewrite": {
        "body": "test", "filters": [{"regex": "l", "replace": "m"}]}},
        "upstream": {"nodes": {kit.upstream.addr: 1}}})
    assert r.status == 400
    # APISIX names either property (Lua table order), its own test accepts both
    assert re.fullmatch(re.escape(ERR) + 'failed to validate dependent schema for "(body|filters)'
                        '": value wasn\'t supposed to match schema', r.json()["error_msg"])


def test_status_code_range_is_apisix_s(kit):
    for code, ok in ((199, False), (200, True), (598, True), (599, False)):
        r = kit.admin("PUT", "/routes/sc", {"uri": "/sc", "plugins": {
            "response-rewrite": {"status_code": code}},
            "upstream": {"nodes": {kit.upstream.addr: 1}}})
        assert (r.status < 300) is ok, (code, r.body)
    r = kit.admin("GET", "/plugins/response-rewrite")
    assert r.json()["properties"]["status_code"] == {
        "description": "new status code for response", "type": "integer",
        "minimum": 200, "maximum": 598}
