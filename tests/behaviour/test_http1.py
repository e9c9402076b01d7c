"""HTTP/1.1 semantics through a real gateway: connection reuse, pipelining, framing of
request and response bodies, interim responses, bodiless responses, hop-by-hop and
forwarding headers, Host handling (APISIX ``pass_host``), and a real client (curl)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from tests.harness import (
    chunked_response,
    connect,
    echo,
    node,
    origin_factory,
    parse_responses,
    respond,
    route_doc,
)

__all__ = ["origin_factory"]     # fixtures used below


# fast-stopping variants of the conftest fixtures (same interface)
@pytest.fixture
def upstream_factory(origin_factory):
    return origin_factory


@pytest.fixture
def upstream(origin_factory):
    return origin_factory("u1")


def by_path(table: dict[str, Callable[..., None]],
            default: Callable[..., None] = echo) -> Callable[..., None]:
    """A behaviour dispatching on the request path (without query)."""
    def behaviour(h: BaseHTTPRequestHandler, body: bytes) -> None:
        table.get(h.path.split("?")[0], default)(h, body)
    return behaviour


def send(sock: Any, data: bytes) -> None:
    sock.sendall(data)


# ------------------------------------------------------------------ connection reuse
def test_keepalive_connection_serves_several_requests(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]))
    s, rd = connect(gw)
    with s:
        for i in range(5):
            if i % 2:
                send(s, b"POST /r%d HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nb%02d" % (i, i))
            else:
                send(s, b"GET /r%d HTTP/1.1\r\nHost: a\r\n\r\n" % i)
            r = rd.response()
            assert r.status == 200
            assert r.header("connection") is None or r.header("connection").lower() != "close"
            got = r.json()
            assert got["path"] == f"/r{i}"
            assert got["body"] == ("" if i % 2 == 0 else f"b{i:02d}")
        assert not rd.at_eof(timeout=0.2), "keep-alive connection must stay open"
    assert len(upstream.requests) == 5


def test_connection_close_request_closes_after_the_response(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]))
    s, rd = connect(gw)
    with s:
        send(s, b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        r = rd.response()
        assert r.status == 200 and r.header("connection").lower() == "close"
        assert rd.at_eof()


def test_http10_keepalive_is_honoured_when_asked(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]))
    s, rd = connect(gw)
    with s:
        for i in range(2):
            send(s, b"GET /k%d HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n" % i)
            r = rd.response()
            assert r.status == 200 and r.json()["path"] == f"/k{i}"
            assert r.header("connection").lower() == "keep-alive"
            assert r.header("content-length") is not None
        send(s, b"GET /last HTTP/1.0\r\nHost: a\r\n\r\n")
        r = rd.response()
        assert r.json()["path"] == "/last"
        assert rd.at_eof(), "HTTP/1.0 without keep-alive closes after the response"


# ------------------------------------------------------------------------- pipelining
def test_pipelined_requests_are_answered_in_order(gateway_factory, upstream_factory):
    def slow_first(h: BaseHTTPRequestHandler, body: bytes) -> None:
        if h.path == "/1":
            time.sleep(0.3)          # the first answer is the slowest
        echo(h, body)

    up = upstream_factory("u", behaviour=slow_first)
    gw = gateway_factory(route_doc([up]))
    s, rd = connect(gw)
    with s:
        send(s, b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
                b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
                b"PUT /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"3\r\nabc\r\n0\r\n\r\n")
        got = [rd.response().json() for _ in range(3)]
        assert [(g["method"], g["path"], g["body"]) for g in got] == [
            ("GET", "/1", ""), ("POST", "/2", "hello"), ("PUT", "/3", "abc")]
        send(s, b"GET /4 HTTP/1.1\r\nHost: a\r\n\r\n")
        assert rd.response().json()["path"] == "/4"
    assert [r["path"] for r in up.requests] == ["/1", "/2", "/3", "/4"]


def test_pipelined_request_with_a_large_body_behind_a_slow_one(gateway_factory,
                                                               upstream_factory):
    def slow_first(h: BaseHTTPRequestHandler, body: bytes) -> None:
        if h.path == "/slow":
            time.sleep(0.3)
        echo(h, body)

    up = upstream_factory("u", behaviour=slow_first)
    # a short shutdown: a connection stuck with reading paused holds the drain until then
    gw = gateway_factory(route_doc([up]), node={"nginx_config": {"worker_shutdown_timeout": "1s"}})
    big = bytes(range(256)) * 1200                        # 300 KiB, several read buffers
    s, rd = connect(gw, timeout=2)
    with s:
        s.sendall(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n"
                  b"POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(big)
                  + big + b"GET /last HTTP/1.1\r\nHost: a\r\n\r\n")
        assert rd.response().json()["path"] == "/slow"
        r = rd.response()
        assert r.json()["path"] == "/big" and len(r.json()["body"]) == len(big)
        assert rd.response().json()["path"] == "/last"
    assert up.requests[1]["body"] == big


def test_pipelined_head_and_get_keep_their_framing(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]))
    s, rd = connect(gw)
    with s:
        send(s, b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\nGET /g HTTP/1.1\r\nHost: a\r\n\r\n")
        head = rd.response(head=True)
        assert head.status == 200 and head.body == b""
        assert rd.response().json()["path"] == "/g"


# ---------------------------------------------------------------------- request bodies
def test_chunked_request_body_reaches_upstream_intact(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]))
    pieces = [b"first-", b"x" * 5000, b"-\r\n-middle-", bytes(range(256)), b"-last"]
    data = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces)
    s, rd = connect(gw)
    with s:
        send(s, b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(data), 777):           # arbitrary splits on the wire
            send(s, data[i:i + 777])
            time.sleep(0.001)
        send(s, b"0\r\n\r\n")
        assert rd.response().status == 200
    seen = upstream.requests[-1]
    assert seen["body"] == b"".join(pieces)
    assert seen["headers"].get("transfer-encoding", "").lower() == "chunked"
    assert "content-length" not in seen["headers"]


def test_content_length_request_body_is_forwarded_with_its_length(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]))
    body = bytes(range(256)) * 40
    status, _, _ = gw.request("PUT", "/cl", body=body)
    assert status == 200
    seen = upstream.requests[-1]
    assert seen["body"] == body
    assert seen["headers"]["content-length"] == str(len(body))
    assert "transfer-encoding" not in seen["headers"]


def test_expect_100_continue_gets_interim_then_final_response(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]))
    s, rd = connect(gw)
    with s:
        send(s, b"POST /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                b"Content-Length: 5\r\n\r\n")
        interim = rd.response(interim=True)
        assert interim.status == 100 and interim.body == b""
        send(s, b"hello")
        final = rd.response()
        assert final.status == 200 and final.json()["body"] == "hello"
    assert "expect" not in upstream.requests[-1]["headers"]


def test_upstream_answering_before_the_body_is_read_leaves_the_connection_usable(
        gateway_factory, upstream_factory):
    """The upstream refuses a large upload without reading it (a 401 right after the head).
    The gateway relays the 401, discards the rest of the body as it arrives, and serves the
    next request on the same connection (nginx: ``ngx_http_discard_request_body``)."""
    def deny(h: BaseHTTPRequestHandler, _body: None) -> None:
        out = b'{"denied":true}'
        h.send_response(401)
        h.send_header("Content-Length", str(len(out)))
        h.end_headers()
        h.wfile.write(out)
        h.close_connection = True

    early = upstream_factory("early", behaviour=deny, read_body=False)
    ok = upstream_factory("ok")
    gw = gateway_factory({"routes": [
        {"id": "early", "uri": "/early", "upstream": {"nodes": [node(early.port)]}},
        {"id": "ok", "uri": "/ok", "upstream": {"nodes": [node(ok.port)]}}]})
    total = 1 << 20
    piece = b"b" * 65536
    s, rd = connect(gw)
    with s:
        s.sendall(b"POST /early HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % total
                  + piece)
        r = rd.response()
        assert r.status == 401 and r.body == b'{"denied":true}'
        for _ in range(total // len(piece) - 1):          # the rest of the body, afterwards
            s.sendall(piece)
        s.sendall(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n")
        r = rd.response()
        assert r.status == 200 and r.json()["path"] == "/ok"
    assert "internal error" not in gw.log()


# --------------------------------------------------------------------- response bodies
def test_upstream_chunked_response_is_relayed_chunked_to_http11_client(gateway_factory,
                                                                        upstream_factory):
    up = upstream_factory("u", behaviour=chunked_response([b"hello ", b"chunked ", b"world"]))
    gw = gateway_factory(route_doc([up]))
    s, rd = connect(gw)
    with s:
        send(s, b"GET /c HTTP/1.1\r\nHost: a\r\n\r\n")
        r = rd.response()
        assert r.status == 200 and r.chunked
        assert r.header("content-length") is None
        assert r.body == b"hello chunked world"
        send(s, b"GET /c HTTP/1.1\r\nHost: a\r\n\r\n")      # still usable
        assert rd.response().body == b"hello chunked world"


def test_upstream_chunked_response_is_close_delimited_for_http10_client(gateway_factory,
                                                                         upstream_factory):
    up = upstream_factory("u", behaviour=chunked_response([b"hello ", b"world"]))
    gw = gateway_factory(route_doc([up]))
    out = gw.raw(b"GET /c HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding" not in head.lower(), "HTTP/1.0 does not know chunked"
    assert b"connection: close" in head.lower()
    assert body == b"hello world"


def test_content_length_response_is_passed_through(gateway_factory, upstream_factory):
    up = upstream_factory("u", behaviour=respond(200, [("X-Kind", "fixed")], b"0123456789"))
    gw = gateway_factory(route_doc([up]))
    for version in (b"1.1", b"1.0"):
        out = gw.raw(b"GET / HTTP/" + version + b"\r\nHost: a\r\nConnection: close\r\n\r\n")
        (r,) = parse_responses(out)
        assert r.status == 200 and not r.chunked
        assert r.header("content-length") == "10" and r.body == b"0123456789"
        assert r.header("x-kind") == "fixed"


def test_close_delimited_upstream_response_reaches_client_whole(gateway_factory,
                                                                 upstream_factory):
    body = b"no length, ends at close " * 100
    up = upstream_factory("u", behaviour=respond(200, [], body, content_length=False))
    gw = gateway_factory(route_doc([up]))
    status, headers, got = gw.get("/")
    assert status == 200 and got == body


def test_head_response_has_no_body_even_with_upstream_content_length(gateway_factory,
                                                                      upstream):
    gw = gateway_factory(route_doc([upstream]))
    s, rd = connect(gw)
    with s:
        send(s, b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n")
        r = rd.response(head=True)
        assert r.status == 200 and int(r.header("content-length")) > 0
        send(s, b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n")
        # if the HEAD response had carried body bytes this would not parse
        assert rd.response().json()["path"] == "/after"
    assert upstream.requests[0]["method"] == "HEAD"


def test_204_and_304_responses_have_no_body(gateway_factory, upstream_factory):
    up = upstream_factory("u", behaviour=by_path({
        "/204": respond(204, [("X-S", "204")], content_length=False, close=False),
        "/304": respond(304, [("ETag", '"v1"'), ("Content-Length", "42")],
                        content_length=False, close=False),
    }))
    gw = gateway_factory(route_doc([up]))
    s, rd = connect(gw)
    with s:
        for path, status in (("/204", 204), ("/304", 304)):
            send(s, b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % path.encode())
            r = rd.response()
            assert r.status == status and r.body == b""
            assert r.header("transfer-encoding") is None
        send(s, b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n")
        assert rd.response().json()["path"] == "/after"


def test_interim_103_from_upstream_is_relayed_before_the_final_response(gateway_factory,
                                                                         upstream_factory):
    def early_hints(h: BaseHTTPRequestHandler, body: bytes) -> None:
        h.wfile.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
        h.wfile.flush()
        time.sleep(0.05)
        echo(h, body)

    up = upstream_factory("u", behaviour=early_hints)
    gw = gateway_factory(route_doc([up]))
    s, rd = connect(gw, timeout=1.5)
    with s:
        send(s, b"GET /hints HTTP/1.1\r\nHost: a\r\n\r\n")
        interim = rd.response(interim=True)
        assert interim.status == 103 and interim.header("link") == "</a.css>; rel=preload"
        final = rd.response()
        assert final.status == 200 and final.json()["path"] == "/hints"


# ---------------------------------------------------------------------------- headers
def test_hop_by_hop_headers_are_removed_both_ways(gateway_factory, upstream_factory):
    up = upstream_factory("u", behaviour=respond(200, [
        ("Connection", "X-Resp-Hop"), ("X-Resp-Hop", "secret"), ("Keep-Alive", "timeout=5"),
        ("Proxy-Authenticate", "Basic"), ("Upgrade", "h2c"), ("Trailer", "X-T"),
        ("X-End-To-End", "kept")], b"ok"))
    gw = gateway_factory(route_doc([up]))
    s, rd = connect(gw)
    with s:
        send(s, b"GET /hop HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Req-Hop\r\n"
                b"X-Req-Hop: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n"
                b"Upgrade: h2c\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\n"
                b"Proxy-Connection: keep-alive\r\nX-Kept: yes\r\n\r\n")
        r = rd.response()
        assert r.status == 200 and r.body == b"ok"
        names = r.names()
        for gone in ("x-resp-hop", "keep-alive", "proxy-authenticate", "upgrade", "trailer"):
            assert gone not in names, f"{gone} leaked to the client"
        assert r.header("connection") in (None, "keep-alive")
        assert r.header("x-end-to-end") == "kept"
    seen = up.requests[-1]["headers"]
    for gone in ("x-req-hop", "keep-alive", "te", "upgrade", "proxy-authorization",
                 "proxy-connection"):
        assert gone not in seen, f"{gone} was forwarded to the upstream"
    assert seen.get("connection", "keep-alive").lower() in ("keep-alive", "close")
    assert seen["x-kept"] == "yes"


def test_forwarding_headers_are_set_for_the_upstream(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]))
    s, rd = connect(gw)
    with s:
        send(s, b"GET /f HTTP/1.1\r\nHost: Api.Example.com:8443\r\n"
                b"X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2, 10.0.0.3\r\n"
                b"X-Real-IP: 6.6.6.6\r\n\r\n")
        assert rd.response().status == 200
    seen = upstream.requests[-1]["headers"]
    # the client is 127.0.0.1, which APISIX's default real_ip_from trusts: its X-Real-IP is
    # the client address (an untrusted peer cannot: tests/behaviour/test_real_ip_default.py)
    assert seen["x-forwarded-for"] == "10.0.0.1, 10.0.0.2, 10.0.0.3, 6.6.6.6"
    assert seen["x-real-ip"] == "6.6.6.6"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == "api.example.com"
    assert seen["x-forwarded-port"] == str(gw.port)
    assert seen["host"] == "Api.Example.com:8443"


def test_x_forwarded_for_is_created_when_absent(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]))
    assert gw.get("/")[0] == 200
    assert upstream.requests[-1]["headers"]["x-forwarded-for"] == "127.0.0.1"


def test_pass_host_pass_node_and_rewrite(gateway_factory, upstream_factory):
    up = upstream_factory("u")
    nodes = [node(up.port)]
    doc = {"routes": [
        {"id": "pass", "uri": "/pass", "upstream": {"nodes": nodes, "pass_host": "pass"}},
        {"id": "node", "uri": "/node", "upstream": {"nodes": nodes, "pass_host": "node"}},
        {"id": "rewrite", "uri": "/rewrite",
         "upstream": {"nodes": nodes, "pass_host": "rewrite",
                      "upstream_host": "backend.internal"}},
    ]}
    gw = gateway_factory(doc)
    hosts = {}
    for path in ("/pass", "/node", "/rewrite"):
        status, _, body = gw.get(path, headers={"Host": "client.example:9999"})
        assert status == 200, body
        hosts[path] = json.loads(body)["headers"]["Host"]
    assert hosts == {"/pass": "client.example:9999", "/node": f"127.0.0.1:{up.port}",
                     "/rewrite": "backend.internal"}
    for r in up.requests:   # X-Forwarded-Host is always the client's host
        assert r["headers"]["x-forwarded-host"] == "client.example"


def test_gateway_answers_with_server_and_date_on_its_own_errors(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream], uri="/only"))
    (r,) = parse_responses(gw.raw(b"GET /nope HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))
    assert r.status == 404 and r.json() == {"error_msg": "404 Route Not Found"}
    assert r.header("server").startswith("Pylon/") and r.header("date")
    assert r.header("content-type").startswith("application/json")


def test_proxied_response_carries_the_gateway_server_header(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]))
    (r,) = parse_responses(gw.raw(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))
    assert r.status == 200
    assert r.header_all("server") == [r.header("server")]
    assert r.header("server").startswith("Pylon/"), r.header("server")
    assert len(r.header_all("date")) == 1


# ------------------------------------------------------------------------------- curl
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_as_a_client(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]))
    base = f"http://127.0.0.1:{gw.port}"
    out = subprocess.run(["curl", "-s", "-i", "--max-time", "10", "-X", "POST",
                          "-H", "X-From: curl", "--data-binary", "curl body",
                          f"{base}/curl?q=1"], capture_output=True, check=False, timeout=15)
    assert out.returncode == 0, out.stderr
    (r,) = parse_responses(out.stdout)
    assert r.status == 200
    got = r.json()
    assert got["path"] == "/curl?q=1" and got["body"] == "curl body"
    assert got["headers"]["X-From"] == "curl"
    # chunked upload and two URLs over one connection
    out = subprocess.run(["curl", "-s", "-i", "--max-time", "10", "-H",
                          "Transfer-Encoding: chunked", "--data-binary", "streamed",
                          f"{base}/one", "--next", "-s", "-i", f"{base}/two"],
                         capture_output=True, check=False, timeout=15)
    assert out.returncode == 0, out.stderr
    rs = parse_responses(out.stdout)
    assert [r.status for r in rs] == [200, 200]
    assert rs[0].json()["body"] == "streamed" and rs[1].json()["path"] == "/two"
    assert rs[0].json()["headers"]["Transfer-Encoding"] == "chunked"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_http2_upgrade_attempt_delivers_the_body(gateway_factory, upstream):
    """``curl --http2`` sends ``Upgrade: h2c`` with its POST: the route does not switch
    protocols, so it is an ordinary request, body included, without the upgrade headers
    (before: the body was dropped and the origin waited until a 504)."""
    gw = gateway_factory(route_doc([upstream]))
    base = f"http://127.0.0.1:{gw.port}"
    for extra in ([], ["-H", "Transfer-Encoding: chunked"]):
        out = subprocess.run(["curl", "-s", "-i", "--max-time", "10", "--http2", *extra,
                              "-d", "a=1", f"{base}/x"], capture_output=True, timeout=15,
                             check=False)
        assert out.returncode == 0, out.stderr
        (r,) = parse_responses(out.stdout)
        assert r.status == 200
        got = r.json()
        assert got["body"] == "a=1"
        assert "Upgrade" not in got["headers"]
