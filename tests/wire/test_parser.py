"""Sans-IO behaviour of the HTTP/1.1 parsers (``pylon.wire.h1``) and request-head helpers
(``pylon.wire.head``).  Every message is fed whole and one byte at a time: framing decisions
must not depend on how TCP happened to split the bytes."""

from __future__ import annotations

from typing import Any

import pytest

from pylon import errors
from pylon.wire.h1 import (
    Limits,
    RequestParser,
    ResponseParser,
    chunk,
    encode_headers,
    last_chunk,
    status_line,
)
from pylon.wire.head import RequestHead, host_of, normalize_path

FEEDS = ["whole", "bytewise"]


class ReqSink:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.heads: list[RequestHead] = []

    def on_request(self, head: RequestHead) -> None:
        self.heads.append(head)
        self.events.append(("head", head.method, head.target))

    def on_body(self, chunk: bytes) -> None:
        self.events.append(("body", chunk))

    def on_end(self, trailers: list[tuple[bytes, bytes]] | None) -> None:
        self.events.append(("end", trailers))

    def bodies(self) -> list[bytes]:
        """Body of each message, joined (body callbacks may split anywhere)."""
        out: list[bytes] = []
        for e in self.events:
            if e[0] == "head":
                out.append(b"")
            elif e[0] == "body":
                out[-1] += e[1]
        return out

    def ends(self) -> list[Any]:
        return [e[1] for e in self.events if e[0] == "end"]


class RespSink:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def on_response(self, status: int, headers: list[tuple[bytes, bytes]],
                    keep_alive: bool, *framing: Any) -> None:
        # ``framing`` (length, chunked) is optional: older sinks took three arguments
        self.events.append(("head", status, headers, keep_alive))

    def on_body(self, chunk: bytes) -> None:
        self.events.append(("body", chunk))

    def on_end(self, trailers: list[tuple[bytes, bytes]] | None) -> None:
        self.events.append(("end", trailers))

    def body(self) -> bytes:
        return b"".join(e[1] for e in self.events if e[0] == "body")


def feed(parser: Any, data: bytes, how: str) -> None:
    if how == "whole":
        parser.feed(data)
    else:
        for i in range(len(data)):
            parser.feed(data[i:i + 1])


def parse(data: bytes, how: str = "whole", limits: Limits | None = None) -> ReqSink:
    sink = ReqSink()
    feed(RequestParser(sink, limits or Limits()), data, how)
    return sink


def refused(data: bytes, how: str, limits: Limits | None = None) -> tuple[errors.GatewayError,
                                                                          ReqSink]:
    sink = ReqSink()
    p = RequestParser(sink, limits or Limits())
    with pytest.raises(errors.GatewayError) as ei:
        feed(p, data, how)
    return ei.value, sink


# ------------------------------------------------------------------------ well-formed input
@pytest.mark.parametrize("how", FEEDS)
def test_simple_get_yields_head_and_end(how: str) -> None:
    s = parse(b"GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: Example.COM:8080\r\nX-A: 1\r\n\r\n", how)
    assert [e[0] for e in s.events] == ["head", "end"]
    h = s.heads[0]
    assert (h.method, h.target, h.path, h.query) == ("GET", b"/a/b?x=1&y=2", "/a/b", b"x=1&y=2")
    assert h.version == "1.1" and h.keep_alive
    assert h.host == "example.com" and h.authority == b"Example.COM:8080"
    assert h.headers == [(b"Host", b"Example.COM:8080"), (b"X-A", b"1")]
    assert h.header(b"x-a") == b"1"
    assert h.content_length is None and not h.chunked and h.error is None


@pytest.mark.parametrize("how", FEEDS)
def test_content_length_body_is_delivered_exactly(how: str) -> None:
    s = parse(b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world", how)
    assert s.heads[0].content_length == 11
    assert s.bodies() == [b"hello world"]
    assert s.ends() == [None]


@pytest.mark.parametrize("how", FEEDS)
def test_chunked_body_is_dechunked_with_extensions_ignored(how: str) -> None:
    s = parse(b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5;name=val\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", how)
    assert s.heads[0].chunked and s.heads[0].content_length is None
    assert s.bodies() == [b"hello world"]
    assert s.ends() == [None]


@pytest.mark.parametrize("how", FEEDS)
def test_chunked_trailers_are_reported_at_the_end(how: str) -> None:
    s = parse(b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"3\r\nabc\r\n0\r\nX-Checksum: 42\r\nX-Other: yes\r\n\r\n", how)
    assert s.bodies() == [b"abc"]
    assert s.ends() == [[(b"X-Checksum", b"42"), (b"X-Other", b"yes")]]


@pytest.mark.parametrize("how", FEEDS)
def test_transfer_encoding_chunked_is_case_insensitive(how: str) -> None:
    s = parse(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n", how)
    assert s.heads[0].chunked and s.ends() == [None]


@pytest.mark.parametrize("how", FEEDS)
def test_pipelined_requests_in_one_buffer_come_out_in_order(how: str) -> None:
    data = (b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
            b"POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n"
            b"GET /4 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    s = parse(data, how)
    assert [h.target for h in s.heads] == [b"/1", b"/2", b"/3", b"/4"]
    assert s.bodies() == [b"", b"abc", b"de", b""]
    assert len(s.ends()) == 4
    assert [h.keep_alive for h in s.heads] == [True, True, True, False]


@pytest.mark.parametrize("how", FEEDS)
def test_http10_has_no_keepalive_unless_asked_and_needs_no_host(how: str) -> None:
    s = parse(b"GET /a HTTP/1.0\r\n\r\n", how)
    assert s.heads[0].version == "1.0" and not s.heads[0].keep_alive
    assert s.heads[0].host == "" and s.heads[0].error is None
    s = parse(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", how)
    assert s.heads[0].keep_alive


@pytest.mark.parametrize("how", FEEDS)
def test_absolute_form_target_authority_wins_over_host(how: str) -> None:
    s = parse(b"GET http://Api.Example.com:8080/x/y?q=1 HTTP/1.1\r\nHost: other\r\n\r\n", how)
    h = s.heads[0]
    assert h.host == "api.example.com"
    assert h.target == b"/x/y?q=1" and h.path == "/x/y" and h.query == b"q=1"


@pytest.mark.parametrize("how", FEEDS)
def test_connection_tokens_expect_and_upgrade_are_recorded(how: str) -> None:
    s = parse(b"POST / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Hop\r\n"
              b"Expect: 100-continue\r\nContent-Length: 0\r\n\r\n", how)
    h = s.heads[0]
    assert h.conn_tokens == frozenset({b"keep-alive", b"x-hop"})
    assert h.expect_continue


def test_upgrade_request_reports_where_the_other_protocol_starts() -> None:
    sink = ReqSink()
    p = RequestParser(sink, Limits())
    head = (b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    p.feed(head + b"\x81\x05hello")
    assert sink.heads[0].upgrade == b"websocket"
    assert p.upgrade_offset == len(head)


# ------------------------------------------------------------------ smuggling / framing
FRAMING_400 = {
    "cl_and_te": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te_and_cl": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                 b"Content-Length: 5\r\n\r\n0\r\n\r\n",
    "duplicate_cl_same": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                         b"Content-Length: 5\r\n\r\nhello",
    "duplicate_cl_different": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                              b"Content-Length: 6\r\n\r\nhello!",
    "cl_list": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello",
    "cl_plus": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
    "cl_negative": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
    "cl_hex": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello",
    "cl_inner_space": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n",
    "te_chunked_not_last": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip"
                           b"\r\n\r\n0\r\n\r\n",
    "te_twice": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te_chunked_twice_in_list": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, "
                                b"chunked\r\n\r\n0\r\n\r\n",
    "obs_fold": b"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n",
    "obs_fold_te": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n"
                   b"0\r\n\r\n",
    "space_before_colon": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n"
                          b"0\r\n\r\n",
    "bare_lf": b"GET / HTTP/1.1\nHost: a\n\n",
    "ctl_in_value": b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n",
    "bad_method": b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n",
    "bad_version": b"GET / HTTP/a.1\r\nHost: a\r\n\r\n",
    "two_hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "missing_host_11": b"GET / HTTP/1.1\r\nX: y\r\n\r\n",
    "climbs_above_root": b"GET /a/../../etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n",
    "encoded_climb": b"GET /%2e%2e/etc HTTP/1.1\r\nHost: a\r\n\r\n",
    "nul_in_path": b"GET /a%00b HTTP/1.1\r\nHost: a\r\n\r\n",
    "authority_form_connect": b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example\r\n\r\n",
}


@pytest.mark.parametrize("how", FEEDS)
@pytest.mark.parametrize("case", sorted(FRAMING_400))
def test_ambiguous_or_malformed_request_is_refused_with_400(case: str, how: str) -> None:
    err, sink = refused(FRAMING_400[case], how)
    assert err.status == 400 and err.close
    assert isinstance(err, errors.BadRequest)
    assert sink.ends() == [], "a refused request must never complete"


SMUGGLING_CODE = ["cl_and_te", "te_and_cl", "duplicate_cl_same", "duplicate_cl_different",
                  "cl_plus", "obs_fold"]


@pytest.mark.parametrize("case", SMUGGLING_CODE)
def test_framing_attacks_are_classified_as_ambiguous_framing(case: str) -> None:
    err, sink = refused(FRAMING_400[case], "whole")
    assert isinstance(err, errors.RequestSmuggling) and err.code == "ambiguous_framing"
    assert sink.heads == [], "the head must not reach the proxy"


@pytest.mark.parametrize("how", FEEDS)
@pytest.mark.parametrize("chunk_line", [b"zz", b"-5", b"5 5", b"0x5", b"fffffffffffffffffff"])
def test_bad_chunk_size_is_refused_with_400(chunk_line: bytes, how: str) -> None:
    err, sink = refused(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                        + chunk_line + b"\r\nhello\r\n0\r\n\r\n", how)
    assert err.status == 400 and err.close
    assert sink.ends() == []


@pytest.mark.parametrize("how", FEEDS)
def test_chunk_data_longer_than_its_size_is_refused(how: str) -> None:
    err, sink = refused(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"3\r\nabcdef\r\n0\r\n\r\n", how)
    assert err.status == 400 and sink.ends() == []


@pytest.mark.parametrize("how", FEEDS)
@pytest.mark.parametrize("coding", [b"gzip, chunked", b"xchunked", b"identity", b"gzip",
                                    b"deflate,chunked"])
def test_transfer_coding_other_than_chunked_is_501(coding: bytes, how: str) -> None:
    err, sink = refused(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: " + coding
                        + b"\r\n\r\n0\r\n\r\n", how)
    assert err.status == 501 and err.close
    assert isinstance(err, errors.UnsupportedTransferCoding)
    assert sink.heads == []


def test_http10_request_with_transfer_encoding_is_refused() -> None:
    err, _ = refused(b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n0\r\n\r\n", "whole")
    assert err.status == 400


# -------------------------------------------------------------------------------- limits
@pytest.mark.parametrize("how", FEEDS)
def test_uri_at_the_limit_passes_and_one_byte_more_is_414(how: str) -> None:
    lim = Limits(max_uri=64)
    ok = parse(b"GET /" + b"a" * 63 + b" HTTP/1.1\r\nHost: a\r\n\r\n", how, lim)
    assert len(ok.heads[0].target) == 64
    err, sink = refused(b"GET /" + b"a" * 64 + b" HTTP/1.1\r\nHost: a\r\n\r\n", how, lim)
    assert err.status == 414 and isinstance(err, errors.UriTooLong) and err.close
    assert sink.heads == []


@pytest.mark.parametrize("how", FEEDS)
def test_too_many_headers_is_431(how: str) -> None:
    lim = Limits(max_headers=5)
    ok = parse(b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(4))
               + b"\r\n", how, lim)
    assert len(ok.heads[0].headers) == 5
    err, sink = refused(b"GET / HTTP/1.1\r\nHost: a\r\n"
                        + b"".join(b"X-%d: v\r\n" % i for i in range(5)) + b"\r\n", how, lim)
    assert err.status == 431 and isinstance(err, errors.HeaderTooLarge) and err.close
    assert sink.heads == []


@pytest.mark.parametrize("how", FEEDS)
def test_too_large_header_block_is_431(how: str) -> None:
    lim = Limits(max_header_bytes=1024)
    parse(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * 900 + b"\r\n\r\n", how, lim)
    err, sink = refused(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * 1100 + b"\r\n\r\n",
                        how, lim)
    assert err.status == 431 and sink.heads == []
    # many small headers add up too
    err, _ = refused(b"GET / HTTP/1.1\r\nHost: a\r\n"
                     + b"".join(b"X-%02d: %s\r\n" % (i, b"v" * 40) for i in range(30)) + b"\r\n",
                     how, lim)
    assert err.status == 431


@pytest.mark.parametrize("how", FEEDS)
def test_huge_trailers_are_431(how: str) -> None:
    lim = Limits(max_header_bytes=256)
    err, sink = refused(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"1\r\na\r\n0\r\nX-T: " + b"t" * 400 + b"\r\n\r\n", how, lim)
    assert err.status == 431 and sink.ends() == []


@pytest.mark.parametrize("how", FEEDS)
def test_content_length_over_max_body_is_413_before_any_body(how: str) -> None:
    lim = Limits(max_body=10)
    ok = parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789", how, lim)
    assert ok.bodies() == [b"0123456789"]
    err, sink = refused(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", how, lim)
    assert err.status == 413 and isinstance(err, errors.BodyTooLarge) and err.close
    assert sink.heads == [], "the head must not be proxied when the length is already too big"


@pytest.mark.parametrize("how", FEEDS)
def test_chunked_body_growing_past_max_body_is_413(how: str) -> None:
    lim = Limits(max_body=10)
    ok = parse(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n", how, lim)
    assert ok.bodies() == [b"0123456789"]
    err, sink = refused(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"5\r\n01234\r\n6\r\n56789a\r\n0\r\n\r\n", how, lim)
    assert err.status == 413
    assert sum(len(b) for b in sink.bodies()) <= 10, "no byte past the limit is delivered"
    assert sink.ends() == []


def test_zero_max_body_means_unlimited() -> None:
    s = parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100000,
              "whole", Limits(max_body=0))
    assert s.bodies() == [b"x" * 100000]


def test_limits_apply_to_every_pipelined_request() -> None:
    sink = ReqSink()
    p = RequestParser(sink, Limits(max_uri=20))
    with pytest.raises(errors.UriTooLong):
        p.feed(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\nGET /" + b"x" * 40 + b" HTTP/1.1\r\n"
               b"Host: a\r\n\r\n")
    assert [h.target for h in sink.heads] == [b"/ok"]


# ------------------------------------------------------------------------- ResponseParser
def rparse(data: bytes, how: str = "whole", head_request: bool = False) -> RespSink:
    sink = RespSink()
    p = ResponseParser(sink)
    p.head_request = head_request
    feed(p, data, how)
    return sink


@pytest.mark.parametrize("how", FEEDS)
def test_response_with_content_length(how: str) -> None:
    s = rparse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello", how)
    assert s.events[0][:2] == ("head", 200) and s.events[0][3] is True
    assert (b"X-A", b"b") in s.events[0][2]
    assert s.body() == b"hello" and s.events[-1] == ("end", None)


@pytest.mark.parametrize("how", FEEDS)
def test_response_to_head_ends_after_the_head_despite_content_length(how: str) -> None:
    s = rparse(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", how, head_request=True)
    assert [e[0] for e in s.events] == ["head", "end"]
    assert s.events[0][1] == 200


def test_response_parser_is_reusable_after_a_head_response() -> None:
    sink = RespSink()
    p = ResponseParser(sink)
    p.head_request = True
    p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
    p.head_request = False
    p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert [e[0] for e in sink.events] == ["head", "end", "head", "body", "end"]
    assert sink.body() == b"ok"


@pytest.mark.parametrize("how", FEEDS)
@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_have_no_body(status: int, how: str) -> None:
    s = rparse(b"HTTP/1.1 %d X\r\nContent-Length: 5\r\n\r\n" % status, how)
    assert [e[0] for e in s.events] == ["head", "end"]


@pytest.mark.parametrize("how", FEEDS)
def test_chunked_response_with_trailers(how: str) -> None:
    s = rparse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 9\r\n\r\n", how)
    assert s.body() == b"abcde"
    assert s.events[-1] == ("end", [(b"X-Sum", b"9")])


def test_close_delimited_response_body_has_no_end_until_eof() -> None:
    s = rparse(b"HTTP/1.1 200 OK\r\n\r\nsome bytes")
    assert s.events[0][3] is False          # not reusable
    assert s.body() == b"some bytes"
    assert s.events[-1][0] == "body"


def test_http10_response_is_not_keep_alive() -> None:
    s = rparse(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert s.events[0][3] is False and s.body() == b"ok"


@pytest.mark.parametrize("data", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"NOT HTTP AT ALL\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
])
def test_malformed_upstream_response_is_upstream_bad_response(data: bytes) -> None:
    with pytest.raises(errors.UpstreamBadResponse) as ei:
        rparse(data)
    assert ei.value.status == 502


def test_huge_upstream_header_block_is_refused() -> None:
    sink = RespSink()
    p = ResponseParser(sink, max_header_bytes=1024)
    with pytest.raises(errors.UpstreamBadResponse):
        p.feed(b"HTTP/1.1 200 OK\r\nX-Big: " + b"b" * 2000 + b"\r\n\r\n")
    assert sink.events == []


def test_interim_response_is_reported_before_the_final_one() -> None:
    s = rparse(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
               b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    heads = [e for e in s.events if e[0] == "head"]
    assert [h[1] for h in heads] == [103, 200]
    assert s.body() == b"ok"


# ---------------------------------------------------------------------------- serialisation
def test_serialisation_helpers() -> None:
    assert status_line(200) == b"HTTP/1.1 200 OK\r\n"
    assert status_line(599) == b"HTTP/1.1 599 Unknown\r\n"
    assert encode_headers([(b"A", b"1"), (b"B", b"2")]) == b"A: 1\r\nB: 2\r\n"
    assert chunk(b"hello") == b"5\r\nhello\r\n"
    assert chunk(b"x" * 255) == b"ff\r\n" + b"x" * 255 + b"\r\n"
    assert last_chunk(None) == b"0\r\n\r\n"
    assert last_chunk([(b"X-T", b"1"), (b"Connection", b"x")]) == b"0\r\nX-T: 1\r\n\r\n"


def test_serialised_chunks_parse_back() -> None:
    body = [b"a" * 10, b"b" * 4096, b"c"]
    data = (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"".join(chunk(c) for c in body) + last_chunk([(b"X-T", b"v")]))
    s = parse(data)
    assert s.bodies() == [b"".join(body)] and s.ends() == [[(b"X-T", b"v")]]


# ------------------------------------------------------------------------ path and host
@pytest.mark.parametrize("raw,expected", [
    (b"/", "/"),
    (b"/plain/path", "/plain/path"),
    (b"/a/../b", "/b"),
    (b"/a/./b", "/a/b"),
    (b"//a//b", "/a/b"),
    (b"/a/b/..", "/a/"),
    (b"/a/b/.", "/a/b/"),
    (b"/a/b/", "/a/b/"),
    (b"/a/..", "/"),
    (b"/a/%2e%2e/b", "/b"),
    (b"/a/%2E%2E/b", "/b"),
    (b"/a/.%2e/b", "/b"),
    (b"/a%20b", "/a b"),
    (b"/caf%C3%A9", "/caf\u00e9"),
    (b"/a%2fb", "/a/b"),
    (b"/admin/../public/./x//y", "/public/x/y"),
    (b"*", "*"),
])
def test_normalize_path(raw: bytes, expected: str) -> None:
    assert normalize_path(raw) == expected


@pytest.mark.parametrize("raw", [b"/..", b"/../x", b"/a/../..", b"/%2e%2e", b"/a/%2e%2e/%2e%2e/b",
                                 b"/a%00", b"relative", b""])
def test_normalize_path_refuses_escaping_or_invalid_paths(raw: bytes) -> None:
    with pytest.raises(ValueError):
        normalize_path(raw)


@pytest.mark.parametrize("authority,expected", [
    (b"Example.COM:8080", "example.com"),
    (b"example.com", "example.com"),
    (b"[::1]:80", "::1"),
    (b"[::1]", "::1"),
    (b"127.0.0.1:9080", "127.0.0.1"),
    (b"", ""),
])
def test_host_of(authority: bytes, expected: str) -> None:
    assert host_of(authority) == expected


def test_request_head_header_lookup_is_case_insensitive_and_first_wins() -> None:
    h = RequestHead.from_h1("GET", b"/", [(b"Host", b"a"), (b"X-A", b"1"), (b"x-a", b"2")],
                            "1.1", True)
    assert h.header(b"x-a") == b"1"
    assert h.header_map()[b"host"] == b"a"
    assert h.header(b"missing") is None
