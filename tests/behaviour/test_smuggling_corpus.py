"""A request-smuggling and parsing corpus, run against one real gateway.

Every case sends raw bytes on a fresh client connection and checks two views:

* the client's: the statuses it gets back, in order, and whether the gateway then closes the
  connection (with nothing more sent: no unsolicited response) or keeps it usable (a probe
  request on the same connection is answered 200);
* the origin's: a raw-socket origin records exactly the bytes that arrive and parses them
  strictly (one Content-Length or ``chunked``, CRLF only); each case lists the requests it
  must see (method, target, body), and most often that it sees nothing at all.  An origin
  that cannot parse what the gateway sent fails every case.

Where Pylon deliberately differs from nginx the case says so (``# nginx: ...``).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.harness import Gateway, HTTPReader, Response
from tests.raw_origin import RawOrigin, Seen

# ------------------------------------------------------------------------------ the cases
H = b"Host: a\r\n"
GET2 = b"GET /second HTTP/1.1\r\nHost: a\r\n\r\n"
UPG = b"Connection: Upgrade\r\nUpgrade: h2c\r\n"
WS = b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZQ==\r\n" \
     b"Sec-WebSocket-Version: 13\r\n"
NONE: list[tuple[str, str, bytes]] = []


@dataclass
class Case:
    payload: bytes
    statuses: list[int]
    close: bool
    origin: list[tuple[str, str, bytes]]
    check: Callable[[list[Seen]], Any] | None = None


def post(headers: bytes, body: bytes, target: bytes = b"/p") -> bytes:
    return b"POST " + target + b" HTTP/1.1\r\n" + H + headers + b"\r\n" + body


def get(target: bytes, headers: bytes = H, version: bytes = b"1.1") -> bytes:
    return b"GET " + target + b" HTTP/" + version + b"\r\n" + headers + b"\r\n"


def no_upgrade_header(seen: list[Seen]) -> None:
    for s in seen:
        assert "upgrade" not in s.names(), s.raw
        assert "upgrade" not in (s.header("connection") or "").lower(), s.raw


def host_is(value: str) -> Callable[[list[Seen]], None]:
    def check(seen: list[Seen]) -> None:
        assert [s.header("host") for s in seen] == [value]
    return check


def trailer_forwarded(seen: list[Seen]) -> None:
    assert seen[0].trailers == [("X-Sum", "42")], seen[0].raw


CASES: dict[str, Case] = {
    # -- Content-Length / Transfer-Encoding combinations and obfuscations
    "cl_and_te": Case(post(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                           b"0\r\n\r\n" + GET2), [400], True, NONE),
    "te_and_cl": Case(post(b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                           b"0\r\n\r\n" + GET2), [400], True, NONE),
    "te_space_before_colon": Case(post(b"Transfer-Encoding : chunked\r\nContent-Length: 5\r\n",
                                       b"0\r\n\r\n" + GET2), [400], True, NONE),
    "te_value_leading_spaces": Case(post(b"Transfer-Encoding:   chunked\r\n",
                                         b"3\r\nabc\r\n0\r\n\r\n"), [200], False,
                                    [("POST", "/p", b"abc")]),
    "te_value_tab": Case(post(b"Transfer-Encoding:\tchunked\r\n", b"3\r\nabc\r\n0\r\n\r\n"),
                         [200], False, [("POST", "/p", b"abc")]),
    # nginx ignores trailing whitespace; llhttp keeps a trailing tab in the value: refused
    "te_value_trailing_tab": Case(post(b"Transfer-Encoding: chunked\t\r\n",
                                       b"0\r\n\r\n" + GET2), [400], True, NONE),
    "te_value_upper_case": Case(post(b"Transfer-Encoding: CHUNKED\r\n", b"3\r\nabc\r\n0\r\n\r\n"),
                                [200], False, [("POST", "/p", b"abc")]),
    # nginx: 501 for every coding other than exactly "chunked"; llhttp refuses these first
    "te_chunked_identity": Case(post(b"Transfer-Encoding: chunked, identity\r\n",
                                     b"0\r\n\r\n" + GET2), [400], True, NONE),
    "te_chunked_chunked": Case(post(b"Transfer-Encoding: chunked, chunked\r\n",
                                    b"0\r\n\r\n" + GET2), [400], True, NONE),
    "te_twice": Case(post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                          b"0\r\n\r\n" + GET2), [400], True, NONE),
    "te_identity_chunked": Case(post(b"Transfer-Encoding: identity, chunked\r\n",
                                     b"0\r\n\r\n" + GET2), [501], True, NONE),
    "te_gzip_chunked": Case(post(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n" + GET2),
                            [501], True, NONE),
    "te_xchunked": Case(post(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n" + GET2),
                        [501], True, NONE),
    "te_chunked_suffix_garbage": Case(post(b"Transfer-Encoding: chunkedx\r\n",
                                           b"0\r\n\r\n" + GET2), [501], True, NONE),
    "te_identity_only": Case(post(b"Transfer-Encoding: identity\r\nContent-Length: 3\r\n",
                                  b"abc" + GET2), [400], True, NONE),
    "te_vertical_tab": Case(post(b"Transfer-Encoding: \x0bchunked\r\n", b"0\r\n\r\n" + GET2),
                            [400], True, NONE),
    "te_nul": Case(post(b"Transfer-Encoding: chunked\x00\r\n", b"0\r\n\r\n" + GET2),
                   [400], True, NONE),
    "te_obs_fold": Case(post(b"Content-Length: 3\r\nX-A: b\r\n Transfer-Encoding: chunked\r\n",
                             b"abc" + GET2), [400], True, NONE),
    "te_in_http10": Case(b"POST /p HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                         b"0\r\n\r\n" + GET2, [400], True, NONE),
    "cl_duplicate_different": Case(post(b"Content-Length: 3\r\nContent-Length: 4\r\n",
                                        b"abcd"), [400], True, NONE),
    "cl_duplicate_same": Case(post(b"Content-Length: 3\r\nContent-Length: 3\r\n", b"abc"),
                              [400], True, NONE),
    "cl_list": Case(post(b"Content-Length: 3, 3\r\n", b"abc"), [400], True, NONE),
    "cl_plus": Case(post(b"Content-Length: +3\r\n", b"abc"), [400], True, NONE),
    "cl_negative": Case(post(b"Content-Length: -3\r\n", b"abc"), [400], True, NONE),
    "cl_hex": Case(post(b"Content-Length: 0x3\r\n", b"abc"), [400], True, NONE),
    "cl_inner_space": Case(post(b"Content-Length: 1 2\r\n", b"abc"), [400], True, NONE),
    "cl_empty": Case(post(b"Content-Length: \r\n", b"abc"), [400], True, NONE),
    "cl_overflow": Case(post(b"Content-Length: 99999999999999999999999\r\n", b"abc"),
                        [400], True, NONE),
    "cl_leading_zeros": Case(post(b"Content-Length: 0003\r\n", b"abc"), [200], False,
                             [("POST", "/p", b"abc")]),
    "cl_trailing_space": Case(post(b"Content-Length: 3 \r\n", b"abc"), [200], False,
                              [("POST", "/p", b"abc")]),
    "cl_zero_then_pipelined": Case(post(b"Content-Length: 0\r\n", b"") + GET2, [200, 200],
                                   False, [("POST", "/p", b""), ("GET", "/second", b"")]),
    "cl_body_looks_like_request": Case(post(b"Content-Length: %d\r\n" % len(GET2), GET2),
                                       [200], False, [("POST", "/p", GET2)]),
    "get_with_body": Case(b"GET /g HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n\r\nabc" + GET2,
                          [200, 200], False, [("GET", "/g", b"abc"), ("GET", "/second", b"")]),
    # -- chunk-size tricks
    "chunk_size_overflow": Case(post(b"Transfer-Encoding: chunked\r\n",
                                     b"ffffffffffffffffff1\r\nx\r\n0\r\n\r\n"), [400], True, NONE),
    "chunk_size_0x": Case(post(b"Transfer-Encoding: chunked\r\n", b"0x3\r\nabc\r\n0\r\n\r\n"),
                          [400], True, NONE),
    "chunk_size_negative": Case(post(b"Transfer-Encoding: chunked\r\n",
                                     b"-3\r\nabc\r\n0\r\n\r\n"), [400], True, NONE),
    "chunk_size_leading_space": Case(post(b"Transfer-Encoding: chunked\r\n",
                                          b" 3\r\nabc\r\n0\r\n\r\n"), [400], True, NONE),
    "chunk_size_trailing_space": Case(post(b"Transfer-Encoding: chunked\r\n",
                                           b"3 \r\nabc\r\n0\r\n\r\n"), [400], True, NONE),
    "chunk_size_upper_hex": Case(post(b"Transfer-Encoding: chunked\r\n",
                                      b"A\r\n0123456789\r\n0\r\n\r\n"), [200], False,
                                 [("POST", "/p", b"0123456789")]),
    "chunk_size_leading_zeros": Case(post(b"Transfer-Encoding: chunked\r\n",
                                          b"0003\r\nabc\r\n00\r\n\r\n"), [200], False,
                                     [("POST", "/p", b"abc")]),
    "chunk_extension": Case(post(b"Transfer-Encoding: chunked\r\n",
                                 b"3;name=value\r\nabc\r\n0;x\r\n\r\n"), [200], False,
                            [("POST", "/p", b"abc")]),
    "chunk_extension_quoted": Case(post(b"Transfer-Encoding: chunked\r\n",
                                        b"3;n=\"a;b\"\r\nabc\r\n0\r\n\r\n"), [200], False,
                                   [("POST", "/p", b"abc")]),
    "chunk_extension_bare_lf": Case(post(b"Transfer-Encoding: chunked\r\n",
                                         b"3;x\nabc\r\n0\r\n\r\n" + GET2), [400], True, NONE),
    "chunk_extension_nul": Case(post(b"Transfer-Encoding: chunked\r\n",
                                     b"3;\x00\r\nabc\r\n0\r\n\r\n"), [400], True, NONE),
    "chunk_data_too_long": Case(post(b"Transfer-Encoding: chunked\r\n",
                                     b"3\r\nabcd\r\n0\r\n\r\n"), [400], True, NONE),
    "chunk_missing_crlf": Case(post(b"Transfer-Encoding: chunked\r\n",
                                    b"3\r\nabc0\r\n\r\n" + GET2), [400], True, NONE),
    "chunk_bare_lf": Case(post(b"Transfer-Encoding: chunked\r\n", b"3\nabc\n0\n\n" + GET2),
                          [400], True, NONE),
    "chunk_bare_cr": Case(post(b"Transfer-Encoding: chunked\r\n", b"3\rabc\r0\r\r" + GET2),
                          [400], True, NONE),
    "chunk_last_with_trailer": Case(post(b"Transfer-Encoding: chunked\r\n",
                                         b"3\r\nabc\r\n0\r\nX-Sum: 42\r\n\r\n"), [200], False,
                                    [("POST", "/p", b"abc")], trailer_forwarded),
    # a framing field in the trailers: refused (llhttp), and the request never completes
    "chunk_trailer_content_length": Case(post(b"Transfer-Encoding: chunked\r\n",
                                              b"3\r\nabc\r\n0\r\nContent-Length: 40\r\n\r\n"
                                              + GET2), [400], True, NONE),
    "chunk_body_looks_like_request": Case(post(b"Transfer-Encoding: chunked\r\n",
                                               b"%x\r\n%s\r\n0\r\n\r\n" % (len(GET2), GET2)),
                                          [200], False, [("POST", "/p", GET2)]),
    # -- bare CR / LF, obs-fold, header syntax
    "bare_cr_in_value": Case(get(b"/h", H + b"X-A: a\rb\r\n"), [400], True, NONE),
    "bare_cr_line_end": Case(get(b"/h", H + b"X-A: a\rX-B: b\r\n"), [400], True, NONE),
    "bare_lf_line_endings": Case(b"GET /h HTTP/1.1\nHost: a\n\n", [400], True, NONE),
    "bare_lf_one_header": Case(get(b"/h", H + b"X-A: a\nX-B: b\r\n"), [400], True, NONE),
    "obs_fold": Case(get(b"/h", H + b"X-A: a\r\n b\r\n"), [400], True, NONE),
    "obs_fold_first_header": Case(b"GET /h HTTP/1.1\r\n Host: a\r\n\r\n", [400], True, NONE),
    "space_before_colon": Case(get(b"/h", b"Host : a\r\n"), [400], True, NONE),
    "space_in_name": Case(get(b"/h", H + b"X A: b\r\n"), [400], True, NONE),
    "empty_name": Case(get(b"/h", H + b": b\r\n"), [400], True, NONE),
    "nul_in_value": Case(get(b"/h", H + b"X-A: a\x00b\r\n"), [400], True, NONE),
    "ctl_in_value": Case(get(b"/h", H + b"X-A: a\x01b\r\n"), [400], True, NONE),
    "obs_text_in_value": Case(get(b"/h", H + b"X-A: caf\xc3\xa9\r\n"), [200], False,
                              [("GET", "/h", b"")]),
    # -- request line and version
    "double_space": Case(b"GET  /r HTTP/1.1\r\n" + H + b"\r\n", [200], False,  # as nginx
                         [("GET", "/r", b"")]),
    "tab_separator": Case(b"GET\t/r HTTP/1.1\r\n" + H + b"\r\n", [400], True, NONE),
    "lower_case_method": Case(b"get /r HTTP/1.1\r\n" + H + b"\r\n", [400], True, NONE),
    "lower_case_protocol": Case(b"GET /r http/1.1\r\n" + H + b"\r\n", [400], True, NONE),
    "space_in_target": Case(b"GET /r x HTTP/1.1\r\n" + H + b"\r\n", [400], True, NONE),
    "http_2_0": Case(get(b"/r", version=b"2.0"), [505], True, NONE),
    "http_3_0": Case(get(b"/r", version=b"3.0"), [505], True, NONE),
    "http_0_9_with_version": Case(get(b"/r", version=b"0.9"), [505], True, NONE),
    "http2_preface": Case(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", [505], True, NONE),
    "http_1_2_is_1_1": Case(get(b"/r", version=b"1.2"), [200], False, [("GET", "/r", b"")]),
    # -- request target and Host (RFC 9110 §7.2, RFC 9112 §3.2)
    "absolute_form_query_no_path": Case(get(b"http://evil.example?x=1"), [200], False,
                                        [("GET", "/?x=1", b"")], host_is("evil.example")),
    "absolute_form_no_path": Case(get(b"http://evil.example"), [200], False,
                                  [("GET", "/", b"")], host_is("evil.example")),
    "absolute_form_with_port": Case(get(b"http://Evil.Example:8080/a/b?x"), [200], False,
                                    [("GET", "/a/b?x", b"")], host_is("Evil.Example:8080")),
    "absolute_form_upper_case_scheme": Case(get(b"HTTP://b.example/u"), [200], False,
                                            [("GET", "/u", b"")], host_is("b.example")),
    "absolute_form_https": Case(get(b"https://b.example/s"), [200], False,
                                [("GET", "/s", b"")], host_is("b.example")),
    "absolute_form_ipv6": Case(get(b"http://[::1]:81/v6"), [200], False,
                               [("GET", "/v6", b"")], host_is("[::1]:81")),
    "absolute_form_userinfo": Case(get(b"http://u:p@evil.example/x"), [400], True, NONE),
    "absolute_form_empty_userinfo": Case(get(b"http://@evil.example/x"), [400], True, NONE),
    "absolute_form_empty_host": Case(get(b"http:///x"), [400], True, NONE),
    "absolute_form_bad_port": Case(get(b"http://a:b/x"), [400], True, NONE),
    "absolute_form_fragment": Case(get(b"http://a#f/x"), [400], True, NONE),
    "absolute_form_other_scheme": Case(get(b"ftp://a/x"), [400], True, NONE),
    # nginx also requires Host with absolute-form in HTTP/1.1
    "absolute_form_without_host": Case(get(b"http://a/x", b""), [400], True, NONE),
    "absolute_form_bad_host_header": Case(get(b"http://a/x", b"Host: a b\r\n"), [400], True,
                                          NONE),
    "host_space": Case(get(b"/h", b"Host: a b\r\n"), [400], True, NONE),
    "host_slash": Case(get(b"/h", b"Host: a/b\r\n"), [400], True, NONE),
    "host_backslash": Case(get(b"/h", b"Host: a\\b\r\n"), [400], True, NONE),
    "host_userinfo": Case(get(b"/h", b"Host: u@a\r\n"), [400], True, NONE),
    "host_question_mark": Case(get(b"/h", b"Host: a?b\r\n"), [400], True, NONE),
    "host_dot_dot": Case(get(b"/h", b"Host: a..b\r\n"), [400], True, NONE),
    "host_empty": Case(get(b"/h", b"Host: \r\n"), [400], True, NONE),
    "host_bad_port": Case(get(b"/h", b"Host: a:xy\r\n"), [400], True, NONE),
    "host_missing_http11": Case(get(b"/h", b""), [400], True, NONE),
    "host_missing_http10": Case(get(b"/h", b"", b"1.0"), [200], True, [("GET", "/h", b"")]),
    "host_twice": Case(get(b"/h", b"Host: a\r\nHost: b\r\n"), [400], True, NONE),
    "host_with_port": Case(get(b"/h", b"Host: A.example:8080\r\n"), [200], False,
                           [("GET", "/h", b"")], host_is("A.example:8080")),
    "host_ipv6": Case(get(b"/h", b"Host: [::1]:9\r\n"), [200], False, [("GET", "/h", b"")],
                      host_is("[::1]:9")),
    "host_trailing_dot": Case(get(b"/h", b"Host: a.example.\r\n"), [200], False,
                              [("GET", "/h", b"")]),
    # -- Upgrade with bodies: an ordinary request, body and all, without the upgrade headers
    "upgrade_h2c_content_length_body": Case(post(UPG + b"Content-Length: 3\r\n", b"a=1"),
                                            [200], False, [("POST", "/p", b"a=1")],
                                            no_upgrade_header),
    "upgrade_h2c_chunked_body": Case(post(UPG + b"Transfer-Encoding: chunked\r\n",
                                          b"3\r\na=1\r\n0\r\n\r\n"), [200], False,
                                     [("POST", "/p", b"a=1")], no_upgrade_header),
    "upgrade_body_then_pipelined": Case(post(UPG + b"Content-Length: 3\r\n", b"a=1") + GET2,
                                        [200, 200], False,
                                        [("POST", "/p", b"a=1"), ("GET", "/second", b"")],
                                        no_upgrade_header),
    "upgrade_body_looks_like_request": Case(post(UPG + b"Content-Length: %d\r\n" % len(GET2),
                                                 GET2), [200], False, [("POST", "/p", GET2)]),
    "upgrade_websocket_body_on_ws_route": Case(post(WS + b"Content-Length: 3\r\n", b"a=1",
                                                    b"/ws/p"), [200], False,
                                               [("POST", "/ws/p", b"a=1")], no_upgrade_header),
    "upgrade_body_http10": Case(b"POST /p HTTP/1.0\r\n" + H + UPG + b"Content-Length: 3\r\n\r\n"
                                b"a=1" + GET2, [200], True, [("POST", "/p", b"a=1")]),
    "upgrade_body_connection_close": Case(post(b"Connection: Upgrade, close\r\nUpgrade: h2c\r\n"
                                               b"Content-Length: 3\r\n", b"a=1") + GET2,
                                          [200], True, [("POST", "/p", b"a=1")]),
    "upgrade_without_connection_token": Case(post(b"Upgrade: h2c\r\nContent-Length: 3\r\n",
                                                  b"a=1") + GET2, [200, 200], False,
                                             [("POST", "/p", b"a=1"), ("GET", "/second", b"")],
                                             no_upgrade_header),
    # a bodiless upgrade the route does not take: answered as a plain GET, then closed (the
    # bytes after it may belong to the other protocol); nginx would keep the connection
    "upgrade_bodiless_not_taken": Case(get(b"/u", H + UPG) + GET2, [200], True,
                                       [("GET", "/u", b"")], no_upgrade_header),
    "upgrade_websocket_bodiless_not_taken": Case(get(b"/u", H + WS) + b"\x81\x05hello", [200],
                                                 True, [("GET", "/u", b"")], no_upgrade_header),
    # -- pipelining after errors and after close
    "pipelined_after_connection_close": Case(get(b"/1", H + b"Connection: close\r\n") + GET2,
                                             [200], True, [("GET", "/1", b"")]),
    "pipelined_after_http10": Case(get(b"/1", H, b"1.0") + GET2, [200], True,
                                   [("GET", "/1", b"")]),
    "pipelined_after_http10_keep_alive": Case(get(b"/1", H + b"Connection: keep-alive\r\n",
                                                  b"1.0") + GET2, [200, 200], False,
                                              [("GET", "/1", b""), ("GET", "/second", b"")]),
    "pipelined_garbage_after_close": Case(get(b"/1", H + b"Connection: close\r\n")
                                          + b"\x16\x03\x01garbage\r\n\r\n", [200], True,
                                          [("GET", "/1", b"")]),
    "pipelined_body_after_close": Case(post(b"Connection: close\r\nContent-Length: 3\r\n",
                                            b"abc") + post(b"Content-Length: 1\r\n", b"x"),
                                       [200], True, [("POST", "/p", b"abc")]),
    "pipelined_bad_after_good": Case(get(b"/1") + post(b"Content-Length: 3\r\n"
                                                       b"Transfer-Encoding: chunked\r\n",
                                                       b"0\r\n\r\n" + GET2),
                                     [200, 400], True, [("GET", "/1", b"")]),
    "pipelined_good_after_bad": Case(get(b"/h", b"Host: a b\r\n") + GET2, [400], True, NONE),
    "pipelined_three": Case(get(b"/1") + post(b"Content-Length: 2\r\n", b"xy") + get(b"/3"),
                            [200, 200, 200], False,
                            [("GET", "/1", b""), ("POST", "/p", b"xy"), ("GET", "/3", b"")]),
    "pipelined_error_status_after_good": Case(get(b"/1") + get(b"/2", b"Host: a/b\r\n"),
                                              [200, 400], True, [("GET", "/1", b"")]),
}


# -------------------------------------------------------------------------------- running
@pytest.fixture(scope="module")
def origin() -> Iterator[RawOrigin]:
    o = RawOrigin()
    yield o
    o.close()


@pytest.fixture(scope="module")
def gateway(origin: RawOrigin, tmp_path_factory: Any) -> Iterator[Gateway]:
    up = {"nodes": {f"127.0.0.1:{origin.port}": 1}, "type": "roundrobin"}
    doc = {"routes": [{"id": "ws", "uri": "/ws/*", "enable_websocket": True, "upstream": up},
                      {"id": "all", "uri": "/*", "upstream": up}]}
    gw = Gateway(str(tmp_path_factory.mktemp("corpus")), doc,
                 http={"client_header_timeout": "3s", "client_body_timeout": "3s"})
    gw.start()
    yield gw
    gw.stop()


def _marker(gw: Gateway, origin: RawOrigin, name: str) -> int:
    """Send a marker request and return the origin's record count once it has it: every
    request a case made the gateway send upstream was sent before it."""
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    with s:
        s.sendall(b"GET /__mark/%s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                  % name.encode())
        assert HTTPReader(s).response().status == 200
    with origin.lock:
        assert origin.seen[-1].target == f"/__mark/{name}"
        return len(origin.seen)


def run_case(gw: Gateway, origin: RawOrigin, name: str, case: Case) -> None:
    start = _marker(gw, origin, "before-" + name)
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    with s:
        s.sendall(case.payload)
        rd = HTTPReader(s)
        got: list[Response] = []
        try:
            for _ in case.statuses:
                got.append(rd.response())
        except (EOFError, ConnectionResetError):
            pass
        assert [r.status for r in got] == case.statuses, got
        for r in got:
            if r.status >= 400:
                assert r.json()["error_msg"].startswith(str(r.status)), r
        if case.close:
            assert all((r.header("connection") or "").lower() == "close" for r in got[-1:])
            assert rd.at_eof(5), "the connection must close, with nothing more sent"
        else:
            s.sendall(b"GET /__alive HTTP/1.1\r\nHost: a\r\n\r\n")
            probe = rd.response()
            assert probe.status == 200 and probe.body == b"seen /__alive", probe
    end = _marker(gw, origin, "after-" + name)
    with origin.lock:
        seen = [x for x in origin.seen[start:end - 1] if x.target != "/__alive"]
        assert origin.bad == [], origin.bad
    assert [(x.method, x.target, x.body) for x in seen] == case.origin, [x.raw for x in seen]
    if case.check is not None:
        case.check(seen)


@pytest.mark.parametrize("name", list(CASES))
def test_corpus_case(name: str, gateway: Gateway, origin: RawOrigin) -> None:
    run_case(gateway, origin, name, CASES[name])


def test_corpus_leaves_the_gateway_healthy(gateway: Gateway, origin: RawOrigin) -> None:
    """After the whole corpus (this runs last): the worker is the one that started, nothing
    was logged as an internal error, and the origin never got bytes it could not parse."""
    time.sleep(0.1)
    log = gateway.log()
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]
    assert origin.bad == []
    assert len(CASES) >= 60
