"""The access log's compiled renderer: the same lines as a ``var()`` per field, for every
variable Pylon knows, on a corpus of real exchanges (in-process worker, in-memory transports).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
import uvloop

from pylon.node import Node
from pylon.observe import access_log
from pylon.observe.access_log import AccessLog, compile_format
from pylon.pdk.runtime import install
from pylon.pdk.testing import MemoryTransport
from pylon.proxy.registry import load
from pylon.proxy.variables import VARS, getter, request_headers, seconds
from pylon.server.h1 import H1Connection
from pylon.server.worker import Worker
from pylon.settings import DEFAULT_LOG_FORMAT, load_settings
from pylon.upstream.pool import UpstreamConnection

DOC: dict[str, Any] = {
    "upstreams": [
        {"id": "u", "nodes": {"127.0.0.1:18080": 1},
         "keepalive_pool": {"requests": 1000000, "idle_timeout": 300}},
        # nothing listens on port 1: refused, retried on the second node, then 502
        {"id": "dead", "nodes": {"127.0.0.1:1": 1, "127.0.0.2:1": 1}, "retries": 1},
    ],
    "consumers": [{"username": "alice", "plugins": {"key-auth": {"key": "k-alice"}}}],
    "routes": [
        {"id": "ok", "uris": ["/ok", "/ok/*"], "upstream_id": "u"},
        {"id": "auth", "name": "authed", "uri": "/auth/*", "upstream_id": "u",
         "plugins": {"key-auth": {}}},
        {"id": "dead", "uri": "/dead/*", "upstream_id": "dead"},
    ],
}

OK = (b"HTTP/1.1 200 OK\r\nServer: origin\r\nContent-Type: text/plain\r\n"
      b"X-Up-Thing: \"q\" \xc3\xa9\r\nContent-Length: 6\r\n\r\nhello\n")
ERR = b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\nX-Up-Thing: busy\r\n\r\n"
CHUNKED = (b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nLocation: /ok/1\r\n\r\n"
           b"3\r\nabc\r\n0\r\n\r\n")

#: (request bytes, the upstream's answer: None when the request does not reach ours)
CORPUS: list[tuple[bytes, bytes | None]] = [
    (b"GET /ok HTTP/1.1\r\nHost: 127.0.0.1:18081\r\n\r\n", OK),
    (b"GET /ok/items?page=2&q=%22x%22 HTTP/1.1\r\nHost: api.example.com\r\n"
     b"User-Agent: Mozilla/5.0 (X11; \"quoted\") \xc3\xa9t\xc3\xa9\r\n"
     b"Referer: https://example.com/a?b=c\r\nCookie: session=abc123; theme=dark\r\n"
     b"X-Custom: a\tb\r\nno_cache: 1\r\nX-Empty: \r\n\r\n", OK),
    (b"POST /ok/form HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded"
     b"\r\nContent-Length: 7\r\n\r\nname=jo", OK),
    (b"HEAD /ok/x HTTP/1.1\r\nHost: h\r\n\r\n", ERR),
    (b"DELETE /ok/x HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", CHUNKED),
    (b"PUT /ok/j HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
     b"Content-Length: 13\r\n\r\n{\"a\": [1, 2]}", OK),
    (b"GET /nowhere/%41?x HTTP/1.1\r\nHost: h\r\nUser-Agent: curl/8.5\r\n\r\n", None),
    (b"GET /auth/me HTTP/1.1\r\nHost: h\r\napikey: k-alice\r\n\r\n", OK),
    (b"GET /auth/me HTTP/1.1\r\nHost: h\r\napikey: wrong\r\n\r\n", None),
    (b"GET /dead/x?retry=1 HTTP/1.1\r\nHost: h\r\nX-Real-IP: 10.9.9.9\r\n\r\n", None),
    (b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", None),
]

#: every variable the table knows, the prefixed families, ${} spelling, an unknown name
ALL_VARS = " ".join(f"{n}=${n}" for n in sorted(VARS)) + (
    " $remote_user $pylon_detail $http_host $http_user_agent $http_referer $http_x_custom"
    " $http_no_cache $http_x_empty $http_x_missing $arg_page $arg_q $arg_none $cookie_theme"
    " $cookie_nope $sent_http_content_type $sent_http_location $upstream_http_x_up_thing"
    " $upstream_http_none $post_arg_name $post_arg.a $post_arg.a[1] ${uri}suffix $nonesuch"
    " \"$request\" [$time_local] $$ $ end")
#: the same without what moves between runs (clock, pid, timings): its lines are kept below
#: (the TLS variables came later: all empty on these plain HTTP exchanges, left out)
STABLE = " ".join(f"{n}=${n}" for n in sorted(VARS) if n not in {
    "msec", "time_iso8601", "time_local", "pid", "hostname", "request_time",
    "upstream_response_time", "upstream_header_time"} and n != "https" and
    not n.startswith("ssl_")) + (
    " $remote_user $pylon_detail $http_host $http_user_agent $http_x_custom $http_no_cache"
    " $http_x_empty $arg_page $cookie_theme $sent_http_content_type"
    " $upstream_http_x_up_thing $post_arg_name $post_arg.a[1] ${uri}suffix $nonesuch")


class _Recorder:
    """An access log's renderer that keeps each finished exchange (rendered again later)."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, int]] = []

    def __call__(self, exchange: Any, bytes_out: int) -> str:
        self.seen.append((exchange, bytes_out))
        return ""


async def _exchanges(log_path: str) -> list[tuple[Any, int]]:
    loop = asyncio.get_running_loop()
    settings, _ = load_settings({"nginx_config": {"http": {"enable_access_log": False}}},
                                "/tmp", "test")
    node = Node(settings, load())
    install(node)
    w = Worker(node, loop)
    rec = _Recorder()
    w.access_log = AccessLog(loop, log_path, "", getter)
    w.access_log.render = rec
    await w.apply(1, DOC)
    rt = next(u for u in w.holder.current.upstreams.values()
              if any(n.port == 18080 for n in u.plan.nodes))
    pool = next(iter(rt.pools.values()))
    up = UpstreamConnection(pool)
    up.connection_made(MemoryTransport(("127.0.0.1", 18080), ("127.0.0.1", 50000)))
    pool.put(up)
    for i, (req, resp) in enumerate(CORPUS):
        conn = H1Connection(w)
        conn.connection_made(MemoryTransport(("127.0.0.1", 40000 + i), ("127.0.0.1", 18081)))
        want = len(rec.seen) + 1
        conn.data_received(req)
        if resp is not None:
            up.data_received(resp)
        deadline = time.monotonic() + 5
        while len(rec.seen) < want:
            assert time.monotonic() < deadline, (req, conn.transport.out)
            await asyncio.sleep(0.01)
        conn.transport.close()
    return rec.seen


@pytest.fixture(scope="module")
def exchanges(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Any, int]]:
    return uvloop.run(_exchanges(str(tmp_path_factory.mktemp("log") / "access.log")))


#: the lines of ``STABLE`` the renderer of issue 14 (a ``var()`` per field) wrote for CORPUS
GOLDEN = [
    ("args=- balancer_ip=127.0.0.1 balancer_port=18080 body_bytes_sent=148 bytes_sent=148 co"
     "nsumer_name=- host=127.0.0.1 query_string=- real_request_uri=/ok realip_remote_addr=12"
     "7.0.0.1 realip_remote_port=40000 remote_addr=127.0.0.1 remote_port=40000 request=GET /"
     "ok HTTP/1.1 request_length=0 request_method=GET request_uri=/ok route_id=ok route_name"
     "=- scheme=http server_addr=127.0.0.1 server_port=18081 server_protocol=HTTP/1.1 servic"
     "e_id=- service_name=- status=200 upstream_addr=127.0.0.1:18080 upstream_status=200 ups"
     "tream_uri=/ok uri=/ok - - 127.0.0.1:18081 - - - - - - - \"q\" \u00c3\u00a9 - -.a[1] /o"
     "ksuffix -"),
    ("args=page=2&q=%22x%22 balancer_ip=127.0.0.1 balancer_port=18080 body_bytes_sent=148 by"
     "tes_sent=148 consumer_name=- host=api.example.com query_string=page=2&q=%22x%22 real_r"
     "equest_uri=/ok/items?page=2&q=%22x%22 realip_remote_addr=127.0.0.1 realip_remote_port="
     "40001 remote_addr=127.0.0.1 remote_port=40001 request=GET /ok/items?page=2&q=%22x%22 H"
     "TTP/1.1 request_length=0 request_method=GET request_uri=/ok/items?page=2&q=%22x%22 rou"
     "te_id=ok route_name=- scheme=http server_addr=127.0.0.1 server_port=18081 server_proto"
     "col=HTTP/1.1 service_id=- service_name=- status=200 upstream_addr=127.0.0.1:18080 upst"
     "ream_status=200 upstream_uri=/ok/items?page=2&q=%22x%22 uri=/ok/items - - api.example."
     "com Mozilla/5.0 (X11; \"quoted\") \u00c3\u00a9t\u00c3\u00a9 a\tb 1 - 2 dark - \"q\" "
     "\u00c3\u00a9 - -.a[1] /ok/itemssuffix -"),
    ("args=- balancer_ip=127.0.0.1 balancer_port=18080 body_bytes_sent=148 bytes_sent=148 co"
     "nsumer_name=- host=h query_string=- real_request_uri=/ok/form realip_remote_addr=127.0"
     ".0.1 realip_remote_port=40002 remote_addr=127.0.0.1 remote_port=40002 request=POST /ok"
     "/form HTTP/1.1 request_length=7 request_method=POST request_uri=/ok/form route_id=ok r"
     "oute_name=- scheme=http server_addr=127.0.0.1 server_port=18081 server_protocol=HTTP/1"
     ".1 service_id=- service_name=- status=200 upstream_addr=127.0.0.1:18080 upstream_statu"
     "s=200 upstream_uri=/ok/form uri=/ok/form - - h - - - - - - - \"q\" \u00c3\u00a9 - -.a["
     "1] /ok/formsuffix -"),
    ("args=- balancer_ip=127.0.0.1 balancer_port=18080 body_bytes_sent=162 bytes_sent=162 co"
     "nsumer_name=- host=h query_string=- real_request_uri=/ok/x realip_remote_addr=127.0.0."
     "1 realip_remote_port=40003 remote_addr=127.0.0.1 remote_port=40003 request=HEAD /ok/x "
     "HTTP/1.1 request_length=0 request_method=HEAD request_uri=/ok/x route_id=ok route_name"
     "=- scheme=http server_addr=127.0.0.1 server_port=18081 server_protocol=HTTP/1.1 servic"
     "e_id=- service_name=- status=503 upstream_addr=127.0.0.1:18080 upstream_status=503 ups"
     "tream_uri=/ok/x uri=/ok/x - - h - - - - - - - busy - -.a[1] /ok/xsuffix -"),
    ("args=- balancer_ip=127.0.0.1 balancer_port=18080 body_bytes_sent=121 bytes_sent=121 co"
     "nsumer_name=- host=h query_string=- real_request_uri=/ok/x realip_remote_addr=127.0.0."
     "1 realip_remote_port=40004 remote_addr=127.0.0.1 remote_port=40004 request=DELETE /ok/"
     "x HTTP/1.0 request_length=0 request_method=DELETE request_uri=/ok/x route_id=ok route_"
     "name=- scheme=http server_addr=127.0.0.1 server_port=18081 server_protocol=HTTP/1.0 se"
     "rvice_id=- service_name=- status=201 upstream_addr=127.0.0.1:18080 upstream_status=201"
     " upstream_uri=/ok/x uri=/ok/x - - h - - - - - - - - - -.a[1] /ok/xsuffix -"),
    ("args=- balancer_ip=127.0.0.1 balancer_port=18080 body_bytes_sent=148 bytes_sent=148 co"
     "nsumer_name=- host=h query_string=- real_request_uri=/ok/j realip_remote_addr=127.0.0."
     "1 realip_remote_port=40005 remote_addr=127.0.0.1 remote_port=40005 request=PUT /ok/j H"
     "TTP/1.1 request_length=13 request_method=PUT request_uri=/ok/j route_id=ok route_name="
     "- scheme=http server_addr=127.0.0.1 server_port=18081 server_protocol=HTTP/1.1 service"
     "_id=- service_name=- status=200 upstream_addr=127.0.0.1:18080 upstream_status=200 upst"
     "ream_uri=/ok/j uri=/ok/j - - h - - - - - - - \"q\" \u00c3\u00a9 - -.a[1] /ok/jsuffix -"),
    ("args=x balancer_ip=- balancer_port=- body_bytes_sent=210 bytes_sent=210 consumer_name="
     "- host=h query_string=x real_request_uri=/nowhere/%41?x realip_remote_addr=127.0.0.1 r"
     "ealip_remote_port=40006 remote_addr=127.0.0.1 remote_port=40006 request=GET /nowhere/%"
     "41?x HTTP/1.1 request_length=0 request_method=GET request_uri=/nowhere/%41?x route_id="
     "- route_name=- scheme=http server_addr=127.0.0.1 server_port=18081 server_protocol=HTT"
     "P/1.1 service_id=- service_name=- status=404 upstream_addr=- upstream_status=- upstrea"
     "m_uri=/nowhere/%41?x uri=/nowhere/A - route_not_found h curl/8.5 - - - - - - - - -.a[1"
     "] /nowhere/Asuffix -"),
    ("args=- balancer_ip=127.0.0.1 balancer_port=18080 body_bytes_sent=148 bytes_sent=148 co"
     "nsumer_name=alice host=h query_string=- real_request_uri=/auth/me realip_remote_addr=1"
     "27.0.0.1 realip_remote_port=40007 remote_addr=127.0.0.1 remote_port=40007 request=GET "
     "/auth/me HTTP/1.1 request_length=0 request_method=GET request_uri=/auth/me route_id=au"
     "th route_name=authed scheme=http server_addr=127.0.0.1 server_port=18081 server_protoc"
     "ol=HTTP/1.1 service_id=- service_name=- status=200 upstream_addr=127.0.0.1:18080 upstr"
     "eam_status=200 upstream_uri=/auth/me uri=/auth/me alice - h - - - - - - - \"q\" \u00c3"
     "\u00a9 - -.a[1] /auth/mesuffix -"),
    ("args=- balancer_ip=- balancer_port=- body_bytes_sent=256 bytes_sent=256 consumer_name="
     "- host=h query_string=- real_request_uri=/auth/me realip_remote_addr=127.0.0.1 realip_"
     "remote_port=40008 remote_addr=127.0.0.1 remote_port=40008 request=GET /auth/me HTTP/1."
     "1 request_length=0 request_method=GET request_uri=/auth/me route_id=auth route_name=au"
     "thed scheme=http server_addr=127.0.0.1 server_port=18081 server_protocol=HTTP/1.1 serv"
     "ice_id=- service_name=- status=401 upstream_addr=- upstream_status=- upstream_uri=/aut"
     "h/me uri=/auth/me - plugin_key-auth h - - - - - - - - - -.a[1] /auth/mesuffix -"),
    ("args=retry=1 balancer_ip=127.0.0.2 balancer_port=1 body_bytes_sent=244 bytes_sent=244 "
     "consumer_name=- host=h query_string=retry=1 real_request_uri=/dead/x?retry=1 realip_re"
     "mote_addr=127.0.0.1 realip_remote_port=40009 remote_addr=10.9.9.9 remote_port=40009 re"
     "quest=GET /dead/x?retry=1 HTTP/1.1 request_length=0 request_method=GET request_uri=/de"
     "ad/x?retry=1 route_id=dead route_name=- scheme=http server_addr=127.0.0.1 server_port="
     "18081 server_protocol=HTTP/1.1 service_id=- service_name=- status=502 upstream_addr=12"
     "7.0.0.2:1 upstream_status=502 upstream_uri=/dead/x?retry=1 uri=/dead/x - upstream_conn"
     "ect_failed h - - - - - - - - - -.a[1] /dead/xsuffix -"),
    ("args=- balancer_ip=- balancer_port=- body_bytes_sent=210 bytes_sent=210 consumer_name="
     "- host=h query_string=- real_request_uri=* realip_remote_addr=127.0.0.1 realip_remote_"
     "port=40010 remote_addr=127.0.0.1 remote_port=40010 request=OPTIONS * HTTP/1.1 request_"
     "length=0 request_method=OPTIONS request_uri=* route_id=- route_name=- scheme=http serv"
     "er_addr=127.0.0.1 server_port=18081 server_protocol=HTTP/1.1 service_id=- service_name"
     "=- status=404 upstream_addr=- upstream_status=- upstream_uri=* uri=* - route_not_found"
     " h - - - - - - - - - -.a[1] *suffix -"),
]


def _dash(v: Any) -> str:
    return "-" if v is None or v == "" else str(v)


def reference(fmt: str) -> Callable[[Any, int], str]:
    """The renderer before issue 15, kept as the definition: a ``var()`` per field, the byte
    count from the connection, ``$remote_user`` / ``$pylon_detail`` read from the exchange."""
    own: dict[str, Callable[[Any, int], Any]] = {
        "remote_user": lambda x, b: x.consumer_name, "pylon_detail": lambda x, b: x.detail,
        "body_bytes_sent": lambda x, b: b, "bytes_sent": lambda x, b: b}
    pieces: list[Any] = []
    pos = 0
    for m in access_log._VAR.finditer(fmt):
        pieces.append(fmt[pos:m.start()])
        name = m.group(1) or m.group(2)
        pieces.append(own.get(name) or (lambda n: lambda x, b: x.var(n))(name))
        pos = m.end()
    pieces.append(fmt[pos:])
    return lambda x, b: "".join(p if isinstance(p, str) else _dash(p(x, b)) for p in pieces)


def test_the_lines_of_the_corpus_are_the_ones_written_before(exchanges):
    render = compile_format(STABLE, getter, request_headers)
    assert [render(x, b) for x, b in exchanges] == GOLDEN


@pytest.mark.parametrize("fmt", [DEFAULT_LOG_FORMAT, ALL_VARS, "", "plain text", "$status",
                                 "${status}$status$$status", "$time_iso8601 $time_local"])
def test_every_variable_renders_as_its_var(exchanges, fmt):
    render, ref = compile_format(fmt, getter, request_headers), reference(fmt)
    for x, b in exchanges:
        assert render(x, b) == ref(x, b)


def test_time_strings_are_the_clock_of_the_request_across_seconds(exchanges, monkeypatch):
    render = compile_format("$time_local|$time_iso8601|$msec", getter)
    x, b = exchanges[0]
    for offset in (0.0, 0.2, 0.7499, 0.75, 1.5, 3600.0, -86400.0, 0.0, 1e-7):
        monkeypatch.setattr(x, "t_start", 1796612345.25 + offset - x.down.wall_offset)
        ws = x.wall_start()
        assert render(x, b) == "|".join((
            time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(ws)),
            time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ws)), f"{ws:.3f}"))


def test_a_batch_is_written_as_lines_of_the_format(exchanges, tmp_path):
    loop = asyncio.new_event_loop()
    try:
        path = str(tmp_path / "logs" / "access.log")
        al = AccessLog(loop, path, "$status $request", getter, request_headers)
        for x, b in exchanges:
            al.add(x, b)
        al.close()
    finally:
        loop.close()
    with open(path, encoding="utf-8") as f:
        assert f.read().splitlines() == [f"{x.status} {x.var('request')}" for x, _ in exchanges]


def test_durations_read_from_the_table_are_what_formatting_gives():
    # every millisecond under a second, either side of each, and the edges of the table
    ds = [i / 1000 + e for i in range(1000) for e in (0.0, 0.00049, -0.00049, 0.0004999)]
    ds += [0.0, 1e-9, 0.9993, 0.99939, 0.9994, 0.99949, 0.9995, 1.0, 1.2345, 86400.5, -0.5]
    for d in ds:
        assert seconds(d) == f"{d:.3f}", d


def test_http_fields_take_the_first_header_of_either_spelling(exchanges):
    render = compile_format("$http_no_cache|$http_x_a|$http_user_agent", getter,
                            request_headers)
    no_cache = getter("http_no_cache")
    x, b = exchanges[0]
    saved = x.head.headers
    try:
        for headers, line in [
            ([(b"No_Cache", b"u"), (b"no-cache", b"d")], "u|-|-"),
            ([(b"no-cache", b"d"), (b"no_cache", b"u")], "d|-|-"),
            ([(b"X-A", b"1"), (b"x_a", b"2"), (b"User_Agent", b"c/1")], "-|1|c/1"),
            ([(b"x-a", b""), (b"x-a", b"2")], "-|-|-"),
        ]:
            x.head.headers = headers
            assert render(x, b) == line
            first = line.split("|")[0]
            assert no_cache(x) == (None if first == "-" else first)   # $http_* as a variable
    finally:
        x.head.headers = saved      # the exchanges are shared by the module's tests
