"""Request smuggling through a real gateway, on raw sockets.

Each attack hides a second request (``GET /smuggled``) where a front end and a back end
could disagree about where the first one ends.  The gateway must refuse the message (400,
or 501 for a transfer coding it cannot re-frame) with a JSON ``error_msg``, close the
connection, and the upstream must never see the hidden request.
"""

from __future__ import annotations

import time

import pytest

from tests.harness import connect, error_json, origin_factory, parse_responses, route_doc

__all__ = ["origin_factory"]

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"


@pytest.fixture
def upstream(origin_factory):
    return origin_factory("u1")


ATTACKS = {
    # front end uses Content-Length, back end Transfer-Encoding
    "cl_te": (400, b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 45\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED),
    # front end uses Transfer-Encoding, back end Content-Length
    "te_cl": (400, b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                   b"Content-Length: 4\r\n\r\n2c\r\n" + SMUGGLED[:44].ljust(44, b"x")
              + b"\r\n0\r\n\r\n"),
    "duplicate_content_length": (400, b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n"
                                      b"Content-Length: 39\r\n\r\n" + SMUGGLED),
    "content_length_list": (400, b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 0, 39\r\n\r\n"
                            + SMUGGLED),
    "content_length_plus": (400, b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: +39\r\n\r\n"
                            + SMUGGLED),
    "transfer_encoding_xchunked": (501, b"POST /a HTTP/1.1\r\nHost: a\r\n"
                                        b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + SMUGGLED),
    "transfer_encoding_gzip_chunked": (501, b"POST /a HTTP/1.1\r\nHost: a\r\n"
                                            b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
                                       + SMUGGLED),
    "transfer_encoding_chunked_not_last": (400, b"POST /a HTTP/1.1\r\nHost: a\r\n"
                                                b"Transfer-Encoding: chunked, identity\r\n"
                                                b"Content-Length: 39\r\n\r\n" + SMUGGLED),
    "obs_fold_transfer_encoding": (400, b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 39\r\n"
                                        b"X-Pad: x\r\n Transfer-Encoding: chunked\r\n\r\n"
                                   + SMUGGLED),
    "space_before_colon": (400, b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n"
                                b"Content-Length: 39\r\n\r\n" + SMUGGLED),
    "bad_chunk_size": (400, b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"1;\x00\r\nx\r\n0\r\n\r\n" + SMUGGLED),
    "chunk_size_with_0x": (400, b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
                                b"\r\n\r\n0x2c\r\n" + SMUGGLED[:44].ljust(44, b"x")
                           + b"\r\n0\r\n\r\n"),
    "bare_lf_line_endings": (400, b"POST /a HTTP/1.1\nHost: a\nContent-Length: 39\n\n" + SMUGGLED),
}


#: each has its own world; the remaining variants share one (see below)
PRIMARY = ["cl_te", "te_cl", "duplicate_content_length", "content_length_plus",
           "transfer_encoding_xchunked", "obs_fold_transfer_encoding", "bad_chunk_size",
           "bare_lf_line_endings"]


def assert_refused(gw, payload: bytes, status: int) -> None:
    s, rd = connect(gw)
    with s:
        s.sendall(payload)
        r = rd.response()
        assert r.status == status, r
        assert set(r.json()) == {"error_msg"} and r.json()["error_msg"].startswith(str(status))
        assert r.header("connection").lower() == "close"
        assert rd.at_eof(), "the connection must be closed after a framing error"


@pytest.mark.parametrize("attack", PRIMARY)
def test_smuggling_attempt_is_refused_and_never_reaches_upstream(attack, gateway_factory,
                                                                  upstream):
    status, payload = ATTACKS[attack]
    gw = gateway_factory(route_doc([upstream]))
    assert_refused(gw, payload, status)
    # the gateway keeps serving, and the upstream saw neither the attack nor the hidden request
    assert gw.get("/after")[0] == 200
    time.sleep(0.05)
    assert [r["path"] for r in upstream.requests] == ["/after"]


def test_other_framing_variants_are_refused(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]))
    for attack in sorted(set(ATTACKS) - set(PRIMARY)):
        status, payload = ATTACKS[attack]
        assert_refused(gw, payload, status)
    assert gw.get("/after")[0] == 200
    time.sleep(0.05)
    assert [r["path"] for r in upstream.requests] == ["/after"]


def test_smuggling_attempt_on_a_reused_connection_is_refused(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]))
    s, rd = connect(gw)
    with s:
        s.sendall(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
        assert rd.response().status == 200
        s.sendall(ATTACKS["cl_te"][1])
        assert rd.response().status == 400
        assert rd.at_eof()
    assert [r["path"] for r in upstream.requests] == ["/first"]


def test_pipelined_smuggling_after_a_valid_request_is_refused(gateway_factory, upstream):
    """nginx answers the valid request, then 400 for the bad one, then closes."""
    gw = gateway_factory(route_doc([upstream]))
    out = gw.raw(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n" + ATTACKS["te_cl"][1])
    rs = parse_responses(out)
    assert [r.status for r in rs] == [200, 400]
    time.sleep(0.05)
    assert [r["path"] for r in upstream.requests] == ["/first"]


def test_body_that_looks_like_a_request_stays_a_body(gateway_factory, upstream):
    """A well-framed body containing request bytes is forwarded with its length, so the
    upstream reads it as a body, not as a second request."""
    gw = gateway_factory(route_doc([upstream]))
    out = gw.raw(b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                 % len(SMUGGLED) + SMUGGLED)
    (r,) = parse_responses(out)
    assert r.status == 200 and r.json()["body"] == SMUGGLED.decode()
    time.sleep(0.05)
    assert [(r["path"], r["body"]) for r in upstream.requests] == [("/a", SMUGGLED)]


def test_chunked_body_that_looks_like_a_request_stays_a_body(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]))
    out = gw.raw(b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                 b"Connection: close\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED))
    (r,) = parse_responses(out)
    assert r.status == 200
    time.sleep(0.05)
    assert [(r["path"], r["body"]) for r in upstream.requests] == [("/a", SMUGGLED)]


def test_two_host_headers_are_refused(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]))
    status, body = error_json(gw.raw(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"))
    assert status == 400 and body == {"error_msg": "400 Bad Request"}
    assert upstream.requests == []


def test_http10_request_with_transfer_encoding_is_refused(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]))
    out = gw.raw(b"POST /a HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"5\r\nhello\r\n0\r\n\r\n")
    rs = parse_responses(out)
    assert [r.status for r in rs] == [400]
    time.sleep(0.05)
    assert upstream.requests == []
