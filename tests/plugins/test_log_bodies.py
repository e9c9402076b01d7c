"""include_req_body / include_resp_body of the loggers, through a real gateway to real sinks."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import tempfile
import time
from importlib import import_module

import pytest

from pylon.pdk.testing import Kit
from pylon.proxy.registry import PluginConfigError, PluginSpec

from .log_receivers import HttpCollector, TcpReceiver, UdpReceiver, json_lines, wait_for

BLOCK = bytes(range(32, 127)) * 690               # 65,550 bytes of text
BIG = len(BLOCK) * 128                            # ~8.4 MB streamed
FILE = os.path.join(tempfile.mkdtemp(prefix="pylon-bodies-"), "bodies.log")
LOGGERS = ("http_logger", "tcp_logger", "udp_logger", "syslog", "file_logger")


def origin(h, rec):
    """The upstream: /big streams BIG bytes, /gz answers gzip, anything else echoes (404
    for a path with "missing")."""
    if rec["path"].startswith("/big"):
        h.send_response(200)
        h.send_header("Content-Type", "text/plain")
        h.send_header("Content-Length", str(BIG))
        h.end_headers()
        for _ in range(BIG // len(BLOCK)):
            h.wfile.write(BLOCK)
        return
    if rec["path"].startswith("/gz"):
        out, enc = gzip.compress(b'{"zipped": "yes"}'), "gzip"
    else:
        out, enc = json.dumps({"echo": rec["body"]}).encode(), None
    h.send_response(404 if "missing" in rec["path"] else 200)
    h.send_header("Content-Type", "application/json")
    if enc:
        h.send_header("Content-Encoding", enc)
    h.send_header("Content-Length", str(len(out)))
    h.end_headers()
    h.wfile.write(out)


@pytest.fixture(scope="module")
def col():
    with HttpCollector() as c:
        yield c


@pytest.fixture(scope="module")
def sinks():
    with TcpReceiver() as tcp, UdpReceiver() as udp:
        yield tcp, udp


@pytest.fixture(scope="module")
def kit(col, sinks):
    tcp, udp = sinks

    def logger(path, **kw):
        return {"http-logger": {"uri": f"http://127.0.0.1:{col.port}/{path}",
                                "batch_max_size": 1, **kw}}

    req, resp = {"include_req_body": True}, {"include_resp_body": True}
    doc = {"routes": [
        {"id": "req", "uri": "/req", "plugins": logger("req", **req)},
        {"id": "chunked", "uri": "/chunked", "plugins": logger("chunked", **req)},
        {"id": "cap", "uri": "/cap", "plugins": logger("cap", **req, max_req_body_bytes=16)},
        {"id": "expr", "uri": "/expr", "plugins": logger(
            "expr", **req, include_req_body_expr=[["arg_log", "==", "yes"]])},
        {"id": "resp", "uri": "/resp", "plugins": logger("resp", **resp)},
        {"id": "rcap", "uri": "/rcap", "plugins": logger("rcap", **resp, max_resp_body_bytes=10)},
        {"id": "rexpr", "uri": "/rexpr*", "plugins": logger(
            "rexpr", **resp, include_resp_body_expr=[["status", "==", "404"]])},
        {"id": "big", "uri": "/big", "plugins": logger("big", **resp, max_resp_body_bytes=1000)},
        {"id": "gz", "uri": "/gz", "plugins": logger("gz", **resp)},
        {"id": "plain", "uri": "/plain", "plugins": logger("plain")},
        {"id": "two", "uri": "/two", "plugins": {
            **logger("two", **req, **resp, max_req_body_bytes=8, max_resp_body_bytes=8),
            "tcp-logger": {"host": "127.0.0.1", "port": tcp.port, "batch_max_size": 1,
                           **req, **resp}}},
        {"id": "read", "uri": "/read", "plugins": {   # the body is read before the loggers
            "request-validation": {"body_schema": {"type": "object"}},
            **logger("read", **req, max_req_body_bytes=8),
            "file-logger": {"path": FILE, **req}}},
        {"id": "fmt", "uri": "/fmt", "plugins": {"udp-logger": {
            "host": "127.0.0.1", "port": udp.port, "batch_max_size": 1, **resp,
            "max_req_body_bytes": 5,
            "log_format": {"rb": "$request_body", "sb": "$response_body"}}}},
    ]}
    with Kit(doc) as k:
        k.upstream.behaviour = origin
        yield k


def one(col, path):
    """The single log entry posted for ``path``."""
    entries = col.entries(1, "/" + path)
    assert len(entries) == 1, entries
    return entries[0]


def test_json_request_body_is_logged(kit, col):
    body = {"name": "pylon", "tags": ["a", "b"]}
    r = kit.post("/req", body=body)
    assert r.status == 200
    e = one(col, "req")
    assert json.loads(e["request"]["body"]) == body
    assert "body" not in e["response"]


def test_request_body_over_the_cap_is_truncated_and_still_sent_whole(kit, col):
    body = b"0123456789abcdefXYZ" + b"\xff" * 100_000
    assert kit.post("/cap", body=body).status == 200
    assert kit.last_upstream_request()["body"].encode("latin-1") == body
    e = one(col, "cap")
    assert e["request"]["body"] == "0123456789abcdef"          # APISIX: the first max bytes
    assert e["request"]["size"] == len(body)


def test_chunked_request_body_is_captured_as_it_streams(kit, col):
    parts = [b'{"part": 1, ', b'"more": "' + b"x" * 70_000 + b'", ', b'"end": true}']

    def slowly():
        for p in parts:
            yield p
            time.sleep(0.1)

    c = http.client.HTTPConnection("127.0.0.1", kit.port, timeout=10)
    try:
        c.request("POST", "/chunked", body=slowly(), encode_chunked=True,
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        assert r.status == 200
    finally:
        c.close()
    e = one(col, "chunked")
    assert e["request"]["headers"]["transfer-encoding"] == "chunked"
    assert e["request"]["body"] == b"".join(parts).decode()


def test_request_body_only_when_the_expression_matches(kit, col):
    assert kit.post("/expr", body="secret=1").status == 200
    assert kit.post("/expr?log=yes", body="shown=1").status == 200
    es = col.entries(2, "/expr")
    by_uri = {e["request"]["uri"]: e["request"] for e in es}
    assert "body" not in by_uri["/expr"]
    assert by_uri["/expr?log=yes"]["body"] == "shown=1"


def test_response_body_is_logged(kit, col):
    r = kit.post("/resp", body="ping")
    assert r.status == 200
    e = one(col, "resp")
    assert e["response"]["body"] == r.text == '{"echo": "ping"}'
    assert "body" not in e["request"]


def test_response_body_is_cut_at_max_resp_body_bytes(kit, col):
    r = kit.post("/rcap", body="a longer body")
    assert r.text == '{"echo": "a longer body"}'                  # the client gets it all
    assert one(col, "rcap")["response"]["body"] == r.text[:10]


def test_response_body_only_when_its_expression_matches(kit, col):
    assert kit.get("/rexpr").status == 200                       # status 200: no body
    r = kit.get("/rexpr/missing")
    assert r.status == 404
    es = {e["request"]["uri"]: e["response"] for e in col.entries(2, "/rexpr")}
    assert "body" not in es["/rexpr"]
    assert es["/rexpr/missing"]["body"] == r.text == '{"echo": ""}'


def test_large_streamed_response_reaches_the_client_whole_and_only_the_cap_is_logged(kit, col):
    c = http.client.HTTPConnection("127.0.0.1", kit.port, timeout=30)
    try:
        c.request("GET", "/big")
        r = c.getresponse()
        digest, n = hashlib.sha256(), 0
        while chunk := r.read(1 << 16):
            digest.update(chunk)
            n += len(chunk)
    finally:
        c.close()
    assert r.status == 200 and n == BIG
    assert digest.hexdigest() == hashlib.sha256(BLOCK * (BIG // len(BLOCK))).hexdigest()
    e = one(col, "big")
    assert e["response"]["body"] == BLOCK[:1000].decode()
    assert e["response"]["size"] >= BIG


def test_compressed_response_is_logged_decoded(kit, col):
    r = kit.get("/gz")
    assert r.headers["content-encoding"] == "gzip"
    assert gzip.decompress(r.body) == b'{"zipped": "yes"}'
    assert one(col, "gz")["response"]["body"] == '{"zipped": "yes"}'


def test_loggers_without_include_options_log_no_bodies(kit, col):
    assert kit.post("/plain", body="not logged").status == 200
    e = one(col, "plain")
    assert "body" not in e["request"] and "body" not in e["response"]


def test_two_sinks_on_one_route_each_log_the_bodies_at_their_own_cap(kit, col, sinks):
    tcp, _ = sinks
    before = len(tcp.wait(0))
    r = kit.post("/two", body="request body of the two sinks")
    assert r.status == 200
    e = one(col, "two")
    assert e["request"]["body"] == "request "
    assert e["response"]["body"] == r.text[:8]
    got = wait_for(lambda: tcp.wait(0)[before:], bool)
    t = json.loads(got[0])
    assert t["route_id"] == "two"
    assert t["request"]["body"] == "request body of the two sinks"
    assert t["response"]["body"] == r.text


def test_a_body_read_before_the_loggers_is_captured_whole_for_each(kit, col):
    r = kit.post("/read", body={"msg": "read by request-validation first"})
    assert r.status == 200
    sent = kit.last_upstream_request()["body"]
    assert one(col, "read")["request"]["body"] == sent[:8]
    (f,) = json_lines(FILE, 1)
    assert f["route_id"] == "read" and f["request"]["body"] == sent


def test_log_format_body_variables(kit, sinks):
    _, udp = sinks
    r = kit.post("/fmt", body="hello world")
    e = json.loads(udp.recv())
    assert e == {"rb": "hello", "sb": r.text, "route_id": "fmt"}


@pytest.mark.parametrize("module", LOGGERS)
def test_every_logger_has_apisix_body_options(module):
    spec = PluginSpec.from_module(import_module(f"pylon.plugins.{module}"), "builtin")
    base = {"uri": "http://127.0.0.1:1/x", "host": "127.0.0.1", "port": 1, "path": "/tmp/x"}
    base = {k: v for k, v in base.items() if k in spec.schema["properties"]}
    conf = spec.check_conf(base)
    assert (conf["include_req_body"], conf["include_resp_body"]) == (False, False)
    assert conf["max_req_body_bytes"] == conf["max_resp_body_bytes"] == 524288
    with pytest.raises(PluginConfigError) as e:
        spec.check_conf({**base, "include_req_body_expr": [["arg_x", "=~", "1"]]})
    assert str(e.value).startswith(f"failed to check the configuration of plugin {spec.name} "
                                   "err: failed to validate the 'include_req_body_expr' "
                                   "expression: ")
    with pytest.raises(PluginConfigError, match="max_resp_body_bytes"):
        spec.check_conf({**base, "max_resp_body_bytes": 0})
