"""proxy-rewrite through a real gateway: APISIX's doc examples, uri / regex_uri / method /
host / headers, escaping, and what a hostile request cannot inject upstream."""

from __future__ import annotations

import socket
import ssl
import threading
import time

import pytest

from pylon.pdk.testing import Kit
from tests.harness import self_signed_cert, server_tls_context

ADMIN_KEY = "p" * 32


class RawUpstream:
    """An origin that answers every request with the exact bytes of its head (request line
    and headers as they came over the wire), so duplicates and line breaks are visible."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.addr = f"127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        if self.tls is not None:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError):      # plain http spoken to the TLS port
                conn.close()
                return
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                got = conn.recv(65536)
                if not got:
                    return
                data += got
            head = data.split(b"\r\n\r\n", 1)[0]
            if self.tls is not None:
                head = b"TLS " + head
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                         % len(head) + head)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def raw():
    r = RawUpstream()
    yield r
    r.close()


@pytest.fixture(scope="module")
def raw_tls(tmp_path_factory):
    r = RawUpstream(server_tls_context(*self_signed_cert(str(tmp_path_factory.mktemp("tls")))))
    yield r
    r.close()


def doc(raw_addr: str, tls_addr: str) -> dict:
    raw_up = {"nodes": {raw_addr: 1}, "type": "roundrobin"}
    tls_plain = {"nodes": {tls_addr: 1}, "type": "roundrobin", "scheme": "http"}
    tls_up = {"nodes": {tls_addr: 1}, "type": "roundrobin", "scheme": "https"}
    return {
        "consumers": [{"username": "jack", "plugins": {
            "key-auth": {"key": "jack-key"},
            "proxy-rewrite": {"headers": {"set": {"X-Who": "$consumer_name"}}}}}],
        "services": [{"id": "svc", "plugins": {"proxy-rewrite": {"uri": "/from-service"}}}],
        "routes": [
            # the example of APISIX's doc page, unchanged
            {"id": "doc", "methods": ["GET"], "uri": "/test/index.html", "plugins": {
                "proxy-rewrite": {"uri": "/test/home.html", "host": "iresty.com",
                                  "headers": {"X-Api-Version": "v1", "X-Api-Engine": "apisix",
                                              "X-Api-useless": ""}}}},
            {"id": "own-query", "uri": "/own-query", "plugins": {
                "proxy-rewrite": {"uri": "/target?from=conf"}}},
            {"id": "vars", "uri": "/vars", "plugins": {
                "proxy-rewrite": {"uri": "/v/$arg_name/${http_x_id}/$nope",
                                  "headers": {"set": {"X-Name": "$arg_name"}}}}},
            {"id": "regex", "uri": "/iresty/*", "plugins": {"proxy-rewrite": {
                "regex_uri": ["^/iresty/(.*)/(.*)", "/$1-$2", "^/iresty/(x)", "/second",
                              "^/(iresty)/(.*)", "/third/$2"],
                "headers": {"set": {"X-Caps": "$1|${2}|$9", "X-Host": "$host"}}}}},
            {"id": "regex-none", "uri": "/nomatch/*", "plugins": {"proxy-rewrite": {
                "regex_uri": ["^/other/(.*)", "/o/$1"],
                "headers": {"set": {"X-Caps": "[$1]"}}}}},
            {"id": "uri-wins", "uri": "/both", "plugins": {"proxy-rewrite": {
                "uri": "/by-uri", "regex_uri": ["^/both", "/by-regex"]}}},
            {"id": "method", "uri": "/method", "plugins": {"proxy-rewrite": {"method": "POST"}}},
            {"id": "to-head", "uri": "/to-head", "plugins": {
                "proxy-rewrite": {"method": "HEAD"}}},
            {"id": "ops", "uri": "/ops", "upstream": raw_up, "plugins": {"proxy-rewrite": {
                "headers": {"add": {"X-Multi": "added", "X-Num": 42},
                            "set": {"X-Set": "s-$arg_v", "X-Gone": "", "X-Flt": 1.5},
                            "remove": ["X-Drop", "X-Set-Too"]}}}},
            {"id": "crlf", "uri": "/crlf/*", "upstream": raw_up, "plugins": {"proxy-rewrite": {
                "regex_uri": ["^/crlf/(.*)", "/c/$1"],
                "headers": {"set": {"X-Arg": "$arg_x", "X-Cap": "$1"}}}}},
            {"id": "crlf-uri", "uri": "/crlf-uri", "upstream": raw_up, "plugins": {
                "proxy-rewrite": {"uri": "/u/$arg_x?q=$arg_x"}}},
            {"id": "hdr-only", "uri": "/hdr-only/*", "upstream": raw_up, "plugins": {
                "proxy-rewrite": {"headers": {"X-A": "1"}}}},
            {"id": "real", "uri": "/real/*", "upstream": raw_up, "plugins": {
                "proxy-rewrite": {"use_real_request_uri_unsafe": True}}},
            {"id": "unicode", "uri": "/unicode", "plugins": {
                "proxy-rewrite": {"uri": "/中文 x#y"}}},
            {"id": "svc-route", "uri": "/svc", "service_id": "svc"},
            {"id": "to-https", "uri": "/to-https", "upstream": tls_plain, "plugins": {
                "proxy-rewrite": {"scheme": "https"}}},
            {"id": "no-scheme", "uri": "/no-scheme", "upstream": tls_plain},
            {"id": "to-http", "uri": "/to-http", "upstream": tls_up, "plugins": {
                "proxy-rewrite": {"scheme": "http"}}},
            {"id": "same-https", "uri": "/same-https", "upstream": tls_up, "plugins": {
                "proxy-rewrite": {"scheme": "https", "uri": "/same"}}},
            {"id": "consumer", "uri": "/consumer", "plugins": {"key-auth": {}}},
        ],
    }


@pytest.fixture(scope="module")
def kit(raw, raw_tls):
    with Kit(doc(raw.addr, raw_tls.addr), admin_key=ADMIN_KEY) as k:
        yield k


def raw_head(r) -> list[bytes]:
    assert r.status == 200, r.body
    return r.body.split(b"\r\n")


# ----------------------------------------------------------------------------- uri
def test_doc_example_rewrites_uri_host_and_headers(kit):
    r = kit.get("/test/index.html?a=1", headers={"X-Api-useless": "drop me"})
    assert r.status == 200
    up = r.json()
    assert up["path"] == "/test/home.html?a=1"
    assert up["headers"]["host"] == "iresty.com"
    assert up["headers"]["x-api-version"] == "v1"
    assert up["headers"]["x-api-engine"] == "apisix"
    assert "x-api-useless" not in up["headers"]        # an empty value removes the header


def test_query_string_is_appended_with_ampersand_to_a_uri_with_its_own(kit):
    assert kit.get("/own-query?a=1").json()["path"] == "/target?from=conf&a=1"
    assert kit.get("/own-query").json()["path"] == "/target?from=conf"


def test_uri_variables_are_filled_and_percent_escaped(kit):
    r = kit.get("/vars?name=a%20b%3Fc", headers={"X-Id": "7"})
    up = r.json()
    # a '?' inside a variable is %3F (escape_separator), then the path is ngx.escape_uri'd
    assert up["path"] == "/v/a%20b%253Fc/7/?name=a%20b%3Fc"
    assert up["headers"]["x-name"] == "a b?c"


def test_regex_uri_first_match_wins(kit):
    assert kit.get("/iresty/hello/world").json()["path"] == "/hello-world"
    # the first pair does not match one segment; the second does
    assert kit.get("/iresty/x").json()["path"] == "/second"
    assert kit.get("/iresty/y?k=v").json()["path"] == "/third/y?k=v"


def test_regex_uri_captures_fill_header_values(kit):
    up = kit.get("/iresty/hello/world", headers={"Host": "h.example"}).json()
    assert up["headers"]["x-caps"] == "hello|world|"
    assert up["headers"]["x-host"] == "h.example"


def test_regex_uri_without_a_match_keeps_the_path_and_captures_are_empty(kit):
    up = kit.get("/nomatch/a?z=1").json()
    assert up["path"] == "/nomatch/a?z=1"
    assert up["headers"]["x-caps"] == "[]"


def test_uri_wins_over_regex_uri(kit):
    assert kit.get("/both").json()["path"] == "/by-uri"


def test_configured_non_ascii_uri_is_sent_utf8_percent_encoded(kit):
    assert kit.get("/unicode").json()["path"] == "/%E4%B8%AD%E6%96%87%20x%23y"


def test_without_uri_options_the_normalised_path_is_re_encoded(kit):
    head = raw_head(kit.get("/hdr-only/a%2Fb/./c%20d?x=%2F"))
    assert head[0] == b"GET /hdr-only/a/b/c%20d?x=%2F HTTP/1.1"


def test_use_real_request_uri_unsafe_sends_the_raw_target(kit):
    head = raw_head(kit.get("/real/a%2Fb/./c?x=1"))
    assert head[0] == b"GET /real/a%2Fb/./c?x=1 HTTP/1.1"


# ----------------------------------------------------------------------------- method, host
def test_method_is_rewritten(kit):
    up = kit.get("/method?m=1").json()
    assert up["method"] == "POST"
    assert up["path"] == "/method?m=1"


def test_get_sent_upstream_as_head_answers_the_client_without_hanging(kit):
    r = kit.get("/to-head")
    assert r.status == 200
    assert r.body == b""
    assert kit.upstream.requests[-1]["method"] == "HEAD"


def test_scheme_https_reaches_an_http_upstream_over_tls(kit):
    for _ in range(3):                          # the variant is built once, then reused
        head = raw_head(kit.get("/to-https?a=1"))
        assert head[0] == b"TLS GET /to-https?a=1 HTTP/1.1"
    # the same upstream without the plugin is still spoken to in plain http (and fails)
    assert kit.get("/no-scheme").status == 502


def test_scheme_http_on_an_https_upstream_speaks_plain_http(kit):
    assert kit.get("/to-http").status == 502     # the node only speaks TLS
    assert raw_head(kit.get("/same-https"))[0] == b"TLS GET /same HTTP/1.1"


# ----------------------------------------------------------------------------- headers
def test_add_keeps_existing_set_replaces_remove_drops(kit):
    head = raw_head(kit.get("/ops?v=9", headers={
        "X-Multi": "client", "X-Set": "client", "X-Drop": "x", "X-Set-Too": "y",
        "X-Gone": "z"}))
    lines = [h.lower() for h in head[1:]]
    assert b"x-multi: client" in lines and b"x-multi: added" in lines
    assert b"x-num: 42" in lines
    assert b"x-set: s-9" in lines and b"x-set: client" not in lines
    assert b"x-flt: 1.5" in lines
    assert not [h for h in lines if h.startswith((b"x-drop", b"x-set-too", b"x-gone"))]


def test_encoded_crlf_in_a_variable_never_becomes_a_header(kit):
    head = raw_head(kit.get("/crlf/a%0d%0aX-Evil-Cap:%201?x=v%0d%0aX-Evil:%20yes%0d%0a"))
    assert not [h for h in head if h.lower().startswith(b"x-evil")]
    assert head[0] == b"GET /c/a%0D%0AX-Evil-Cap:%201?x=v%0d%0aX-Evil:%20yes%0d%0a HTTP/1.1"
    assert b"X-Arg: v%0D%0AX-Evil: yes%0D%0A" in head
    assert b"X-Cap: a%0D" in head           # PCRE's '.' stops at the LF, as in APISIX


def test_encoded_crlf_in_a_uri_variable_never_splits_the_request_line(kit):
    head = raw_head(kit.get("/crlf-uri?x=%0d%0aHost:%20evil"))
    assert head[0] == (b"GET /u/%0D%0AHost:%20evil?q=%0D%0AHost:%20evil&x=%0d%0aHost:%20evil"
                       b" HTTP/1.1")
    assert [h for h in head if h.lower().startswith(b"host:")] == [
        f"Host: 127.0.0.1:{kit.port}".encode()]


# ----------------------------------------------------------------------------- merging
def test_service_plugin_applies_to_its_routes(kit):
    assert kit.get("/svc").json()["path"] == "/from-service"


def test_consumer_plugin_applies_after_authentication(kit):
    up = kit.get("/consumer", headers={"apikey": "jack-key"}).json()
    assert up["headers"]["x-who"] == "jack"


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(("conf", "needle"), [
    ({"regex_uri": ["^/(", "/x"]}, "invalid regex_uri(^/(, /x): "),
    ({"regex_uri": ["^/a", "/b", "^/c"]}, "The length of regex_uri should be an even number"),
    ({"regex_uri": ["^/a/(.*)", "/b/$x"]}, "invalid regex_uri(^/a/(.*), /b/$x): "),
    ({"method": "GET1"}, "method"),
    ({"uri": "no-slash"}, "uri"),
    ({"host": "evil.com\r\nX-A: b"}, "host"),
    ({"scheme": "ftp"}, "scheme"),
    ({"headers": {"X A": "v"}}, "invalid field character in header"),
    ({"headers": {"X-A": "a\r\nX-B: c"}}, "invalid value character in header"),
    ({"headers": {"add": {"X-A": True}}}, "headers"),
    ({"headers": {}}, "headers"),
])
def test_admin_api_refuses_bad_configuration(kit, conf, needle):
    r = kit.admin("PUT", "/routes/bad", {"uri": "/bad", "plugins": {"proxy-rewrite": conf},
                                         "upstream": {"nodes": {kit.upstream.addr: 1}}})
    assert r.status == 400, r.text
    msg = r.json()["error_msg"]
    assert "failed to check the configuration of plugin proxy-rewrite err: " in msg
    assert needle in msg


def test_admin_api_accepts_apisix_configurations(kit):
    for conf in ({"uri": "/x", "scheme": "http", "method": "PATCH", "host": "a.b:8080"},
                 {"regex_uri": ["^/a/(.*)", "/b/$1", "^/c", "/d"]},
                 {"headers": {"add": {"X-A": 1}, "set": {"X-B": "$remote_addr"},
                              "remove": ["X-C"]}},
                 {"use_real_request_uri_unsafe": True}):
        r = kit.admin("PUT", "/routes/good", {"uri": "/good",
                                              "plugins": {"proxy-rewrite": conf},
                                              "upstream": {"nodes": {kit.upstream.addr: 1}}})
        assert r.status in (200, 201), (conf, r.text)


# ----------------------------------------------------------------------------- scheme runtimes
def test_scheme_variant_shares_balancer_and_its_pools_live_as_long_as_the_upstream():
    import asyncio

    from pylon.upstream.balancer import Node
    from pylon.upstream.runtime import Runtimes, UpstreamPlan

    async def run() -> None:
        rts = Runtimes(asyncio.get_running_loop())
        plan = UpstreamPlan(key="upstreams/1", nodes=(Node("127.0.0.1", 1, 1),))
        rt = rts.reconcile({"upstreams/1": plan})["upstreams/1"]
        v = rts.with_scheme(rt, "https")
        assert rts.with_scheme(rt, "https") is v                 # built once
        assert v.balancer is rt.balancer and v.tls and not rt.tls
        assert v.plan.key == rt.plan.key                         # health reports: same key
        pool = v.pools["127.0.0.1:1"]
        assert pool is not rt.pools["127.0.0.1:1"] and pool.ssl is not None
        assert rts.reconcile({"upstreams/1": plan})["upstreams/1"] is rt
        assert pool in rts._pools.values()                       # kept with its upstream
        rts.update({"upstreams/1": None})
        assert pool not in rts._pools.values()                   # gone with it
        assert not rts._pools

    asyncio.run(run())


def test_access_log_and_request_uri_keep_the_clients_request(kit):
    kit.get("/own-query?mark=log1")
    deadline = time.monotonic() + 5                 # the access log is written in batches
    while not (lines := [e for e in kit.access_log() if "mark=log1" in e]):
        assert time.monotonic() < deadline, "no access log line"
        time.sleep(0.05)
    line = lines[-1]
    assert "GET /own-query?mark=log1 HTTP/1.1" in line
    assert "/target" not in line
