"""Request limits and connection timers through a real gateway (nginx ``http`` settings
under ``nginx_config.http``): URI, header and body sizes, header/body/keep-alive timeouts,
and malformed input.  Every refusal is a JSON ``error_msg`` and closes the connection; the
gateway keeps serving afterwards."""

from __future__ import annotations

import contextlib
import json
import socket
import time

import pytest

from tests.harness import (
    connect,
    error_json,
    generate_body,
    origin_factory,
    parse_responses,
    route_doc,
)

__all__ = ["origin_factory"]


@pytest.fixture
def upstream(origin_factory):
    return origin_factory("u1")


def refused(gw, data: bytes, status: int, message: str) -> None:
    """``data`` gets exactly one JSON error with ``status``, then the connection closes."""
    s, rd = connect(gw)
    with s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass                      # the gateway may close while we are still sending
        r = rd.response()
        assert r.status == status, r
        assert r.json() == {"error_msg": message}
        assert r.header("connection").lower() == "close"
        assert rd.at_eof()


def still_serving(gw, upstream, path: str = "/after") -> None:
    status, _, body = gw.get(path)
    assert status == 200, body
    assert path in [r["path"] for r in upstream.requests]


# ---------------------------------------------------------------------------------- sizes
def test_uri_longer_than_one_header_buffer_is_414(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), http={"large_client_header_buffers": "4 1k"})
    ok = b"/" + b"a" * 1000
    assert gw.get(ok.decode())[0] == 200
    refused(gw, b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414,
            "414 Request-URI Too Large")
    assert [r["path"] for r in upstream.requests] == [ok.decode()]
    still_serving(gw, upstream)


def test_header_block_over_max_header_bytes_is_431(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), http={"max_header_bytes": "2k"})
    assert gw.get("/", headers={"X-Fits": "v" * 1500})[0] == 200
    refused(gw, b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * 3000 + b"\r\n\r\n", 431,
            "431 Request Header Fields Too Large")
    refused(gw, b"GET / HTTP/1.1\r\nHost: a\r\n"
            + b"".join(b"X-H%02d: %s\r\n" % (i, b"v" * 100) for i in range(30)) + b"\r\n",
            431, "431 Request Header Fields Too Large")
    assert len(upstream.requests) == 1
    still_serving(gw, upstream)


def test_more_headers_than_max_headers_is_431(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), http={"max_headers": 10})
    fits = b"".join(b"X-H%d: v\r\n" % i for i in range(9))       # + Host = 10
    out = gw.raw(b"GET /fits HTTP/1.1\r\nHost: a\r\n" + fits + b"Connection: close\r\n\r\n")
    # Connection counts too: 11 headers
    assert parse_responses(out)[0].status == 431
    s, rd = connect(gw)
    with s:
        s.sendall(b"GET /fits HTTP/1.1\r\nHost: a\r\n" + fits + b"\r\n")
        assert rd.response().status == 200
    refused(gw, b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(20))
            + b"\r\n", 431, "431 Request Header Fields Too Large")
    assert [r["path"] for r in upstream.requests] == ["/fits"]
    still_serving(gw, upstream)


def test_content_length_over_client_max_body_size_is_413_without_reading_it(gateway_factory,
                                                                            upstream):
    gw = gateway_factory(route_doc([upstream]), http={"client_max_body_size": "1k"})
    assert gw.request("POST", "/fits", body=b"x" * 1024)[0] == 200
    # refused on the head alone: the client has not sent (and never sends) the body
    refused(gw, b"POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n", 413,
            "413 Request Entity Too Large")
    # also with Expect: 100-continue: no 100 Continue, straight to 413
    s, rd = connect(gw)
    with s:
        s.sendall(b"POST /big HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                  b"Content-Length: 5000\r\n\r\n")
        r = rd.response(interim=True)
        assert r.status == 413
        assert rd.at_eof()
    assert [r["path"] for r in upstream.requests] == ["/fits"]
    still_serving(gw, upstream)


def test_client_sending_its_whole_oversized_body_still_gets_413(gateway_factory, upstream):
    """http.client writes the whole body before reading; nginx's lingering close reads and
    drops the rest of the body so that such a client gets the 413."""
    gw = gateway_factory(route_doc([upstream]), http={"client_max_body_size": "1k"})
    status, _, body = gw.request("POST", "/big", body=b"x" * (8 << 20))
    assert status == 413 and json.loads(body) == {"error_msg": "413 Request Entity Too Large"}


def test_chunked_body_growing_past_client_max_body_size_is_413(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), http={"client_max_body_size": "1k"})
    s, rd = connect(gw)
    with s:
        s.sendall(b"POST /grow HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        # the gateway answers 413 and lingers (reads and drops the rest) before closing, so
        # the client can go on writing without being reset
        for _ in range(50):
            s.sendall(b"200\r\n" + b"z" * 512 + b"\r\n")
            time.sleep(0.01)
        r = rd.response()
        assert r.status == 413
        assert r.json() == {"error_msg": "413 Request Entity Too Large"}
    time.sleep(0.1)
    assert upstream.requests == [], "the upstream must not get a complete request"
    still_serving(gw, upstream)


def test_chunked_body_within_client_max_body_size_passes(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), http={"client_max_body_size": "1k"})
    out = gw.raw(b"POST /ok HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                 b"Connection: close\r\n\r\n200\r\n" + b"z" * 512 + b"\r\n200\r\n" + b"y" * 512
                 + b"\r\n0\r\n\r\n")
    assert parse_responses(out)[0].status == 200
    assert upstream.requests[-1]["body"] == b"z" * 512 + b"y" * 512


# -------------------------------------------------------------------------------- timers
def test_partial_head_on_a_reused_connection_gets_408(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), http={"client_header_timeout": "500ms"})
    s, rd = connect(gw)
    with s:
        s.sendall(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n")
        assert rd.response().status == 200
        t0 = time.monotonic()
        s.sendall(b"GET /2 HTTP/1.1\r\nHost: a\r\n")       # head never completed
        r = rd.response()
        assert r.status == 408 and r.json() == {"error_msg": "408 Request Timeout"}
        assert 0.4 <= time.monotonic() - t0 < 2.0
        assert rd.at_eof()
    still_serving(gw, upstream)


def test_partial_head_on_a_fresh_connection_gets_408(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), http={"client_header_timeout": "500ms"})
    s, rd = connect(gw)
    with s:
        s.sendall(b"GET /slow HTTP/1.1\r\nHost: a\r\nX-Partial: ")
        r = rd.response()
        assert r.status == 408 and r.json() == {"error_msg": "408 Request Timeout"}
        assert rd.at_eof()


def test_connection_that_sends_nothing_is_closed_after_header_timeout(gateway_factory,
                                                                      upstream):
    gw = gateway_factory(route_doc([upstream]), http={"client_header_timeout": "500ms"})
    s, rd = connect(gw)
    with s:
        t0 = time.monotonic()
        assert rd.at_eof(timeout=4)
        assert 0.4 <= time.monotonic() - t0 < 2.0
    still_serving(gw, upstream)


def test_stalled_body_gets_408_and_close(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), http={"client_body_timeout": "500ms"})
    s, rd = connect(gw)
    with s:
        s.sendall(b"POST /stall HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nonly-some")
        t0 = time.monotonic()
        r = rd.response()
        assert r.status == 408 and r.json() == {"error_msg": "408 Request Timeout"}
        assert 0.4 <= time.monotonic() - t0 < 2.0
        assert rd.at_eof()
    still_serving(gw, upstream)


def test_body_timeout_is_between_reads_not_for_the_whole_body(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]), http={"client_body_timeout": "500ms"})
    s, rd = connect(gw)
    with s:
        s.sendall(b"POST /trickle HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n")
        for b in b"abcde":               # 5 × 0.25 s = 1.25 s in total, gaps < 0.5 s
            time.sleep(0.25)
            s.sendall(bytes([b]))
        r = rd.response()
        assert r.status == 200 and r.json()["body"] == "abcde"


def test_idle_keepalive_connection_is_closed_after_keepalive_timeout(gateway_factory,
                                                                     upstream):
    gw = gateway_factory(route_doc([upstream]), http={"keepalive_timeout": "500ms"})
    s, rd = connect(gw)
    with s:
        s.sendall(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n")
        assert rd.response().status == 200
        time.sleep(0.3)                       # activity inside the timeout keeps it open
        s.sendall(b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
        assert rd.response().status == 200
        t0 = time.monotonic()
        assert rd.at_eof(timeout=4), "idle keep-alive connection must be closed"
        assert 0.4 <= time.monotonic() - t0 < 2.0
    still_serving(gw, upstream)


def test_client_that_stops_reading_is_dropped_after_send_timeout(gateway_factory,
                                                                 origin_factory):
    total = 64 << 20
    source = origin_factory("source", behaviour=generate_body(total))
    gw = gateway_factory(route_doc([source]), http={"send_timeout": "500ms"})
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    with s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        time.sleep(1.5)                      # read nothing: the gateway's buffer fills up
        got = 0
        with contextlib.suppress(ConnectionResetError):
            while True:
                b = s.recv(1 << 20)
                if not b:
                    break
                got += len(b)
        assert 0 < got < total, "the response must be cut off, not completed"


# ----------------------------------------------------------------------------- malformed
MALFORMED = [
    b"GARBAGE\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET / HTTP/1.1 extra\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.x\r\nHost: a\r\n\r\n",     # (HTTP/2.7 is a 505: test_smuggling_corpus)
    b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,     # a TLS ClientHello
]


def test_malformed_request_line_is_400_and_close(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]))
    for line in MALFORMED:
        status, body = error_json(gw.raw(line))
        assert (status, body) == (400, {"error_msg": "400 Bad Request"}), line
        still_serving(gw, upstream)
    assert len(upstream.requests) == len(MALFORMED)


def test_missing_host_on_http11_is_400(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]))
    status, body = error_json(gw.raw(b"GET / HTTP/1.1\r\nX: y\r\n\r\n"))
    assert status == 400 and body == {"error_msg": "400 Bad Request"}
    assert upstream.requests == []


def test_path_climbing_above_root_is_400(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream], uri="/public/*"))
    status, body = error_json(gw.raw(b"GET /public/../../admin HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert status == 400 and body == {"error_msg": "400 Bad Request"}
    # dot segments that stay inside the root are resolved before routing
    out = gw.raw(b"GET /admin/../public/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert parse_responses(out)[0].status == 200
    assert upstream.requests[-1]["path"].endswith("/public/x")


def test_client_that_resets_mid_request_does_not_hurt_the_gateway(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]))
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=2)
        s.sendall(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\npartial")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()                                     # RST
    still_serving(gw, upstream)
