"""gzip through a real gateway: APISIX's t/plugin/gzip.t cases, nginx's gzip rules (status,
Accept-Encoding, Via, HEAD/204/304, encoded responses), streaming, curl --compressed."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import time
import zlib
from typing import Any

import pytest

from pylon.pdk.testing import Kit
from pylon.plugins import gzip as gzip_plugin
from pylon.proxy.registry import PluginSpec
from tests.plugins.compress_origin import PART1, PART2, origin, raw_request, read_streamed

BODY = "0123456789\n012345678"            # APISIX's test body: 20 bytes, min_length's default
HTML = {"Accept-Encoding": "gzip", "Content-Type": "text/html"}
ADMIN_KEY = "g" * 32


def _routes(up: str, log_path: str) -> list[dict[str, Any]]:
    def route(uri: str, plugins: dict[str, Any]) -> dict[str, Any]:
        return {"id": uri.strip("/"), "uri": uri, "plugins": plugins,
                "upstream": {"type": "roundrobin", "nodes": {up: 1}}}
    return [
        route("/echo", {"gzip": {}}),
        route("/level1", {"gzip": {"comp_level": 1}}),
        route("/level9", {"gzip": {"comp_level": 9}}),
        route("/min21", {"gzip": {"min_length": 21}}),
        route("/v10", {"gzip": {"http_version": 1.0}}),
        route("/types", {"gzip": {"types": ["text/plain", "text/xml"]}}),
        route("/all", {"gzip": {"types": "*"}}),
        route("/vary", {"gzip": {"vary": True}}),
        route("/stream", {"gzip": {}}),
        route("/rewritten", {"gzip": {}, "response-rewrite": {
            "filters": [{"regex": "plain", "replace": "PLAIN", "scope": "global"}]}}),
        route("/logged", {"gzip": {}, "file-logger": {"path": log_path,
                                                      "include_resp_body": True}}),
        route("/blocked", {"gzip": {"types": "*"},
                           "ip-restriction": {"blacklist": ["127.0.0.1"]}}),
    ]


@pytest.fixture(scope="module")
def up():
    u = origin()
    yield u
    u.close()


@pytest.fixture(scope="module")
def log_path(tmp_path_factory):
    return str(tmp_path_factory.mktemp("gzip") / "access.jsonl")


@pytest.fixture(scope="module")
def kit(up, log_path):
    with Kit({"routes": _routes(up.addr, log_path)}, admin_key=ADMIN_KEY) as k:
        yield k


def _post(kit: Kit, path: str, body: str = BODY, **headers: str):
    return kit.post(path, body, headers={**HTML, **{k.replace("_", "-"): v
                                                    for k, v in headers.items()}})


def test_hit_is_gzip_without_content_length_or_vary(kit):
    r = _post(kit, "/echo")
    assert r.status == 200
    assert r.headers["content-encoding"] == "gzip"
    assert "content-length" not in r.headers and "vary" not in r.headers
    assert gzip.decompress(r.body) == BODY.encode()


def test_comp_level_9_compresses_more_than_level_1(kit):
    body = "0123" * 1024
    low, high = _post(kit, "/level1", body), _post(kit, "/level9", body)
    assert low.headers["content-encoding"] == high.headers["content-encoding"] == "gzip"
    assert len(high.body) < len(low.body) < 4096
    assert gzip.decompress(low.body) == gzip.decompress(high.body) == body.encode()


def test_content_length_below_min_length_is_not_compressed(kit):
    r = _post(kit, "/min21")
    assert "content-encoding" not in r.headers
    assert r.headers["content-length"] == "20" and r.body == BODY.encode()


def test_min_length_is_not_checked_without_content_length(kit):
    r = _post(kit, "/min21", X_Chunked="1")               # like nginx
    assert r.headers["content-encoding"] == "gzip"
    assert gzip.decompress(r.body) == BODY.encode()


def _http10(kit: Kit, path: str) -> tuple[str, dict[str, str], bytes]:
    req = (f"POST {path} HTTP/1.0\r\nHost: x\r\nAccept-Encoding: gzip\r\n"
           f"Content-Type: text/html\r\nContent-Length: {len(BODY)}\r\n\r\n{BODY}")
    return raw_request(kit, req.encode())


def test_http_1_0_request_is_not_compressed_by_default(kit):
    status, headers, body = _http10(kit, "/echo")
    assert " 200 " in status and "content-encoding" not in headers
    assert body == BODY.encode()


def test_http_version_1_0_compresses_http_1_0_requests(kit):
    _, headers, body = _http10(kit, "/v10")
    assert headers["content-encoding"] == "gzip" and "content-length" not in headers
    assert gzip.decompress(body) == BODY.encode()          # delimited by the close


def test_types_match_the_mime_type_before_parameters(kit):
    assert "content-encoding" not in _post(kit, "/types").headers        # text/html
    assert _post(kit, "/types", Content_Type="text/xml").headers["content-encoding"] == "gzip"
    r = _post(kit, "/types", Content_Type="text/plain; charset=UTF-8")
    assert r.headers["content-encoding"] == "gzip"
    assert r.headers["content-type"] == "text/plain; charset=UTF-8"


def test_star_matches_any_type_but_not_a_missing_content_type(kit):
    r = _post(kit, "/all", Content_Type="video/3gpp")
    assert r.headers["content-encoding"] == "gzip"
    r = kit.post("/all", BODY, headers={"Accept-Encoding": "gzip"})      # no Content-Type
    assert "content-encoding" not in r.headers and r.body == BODY.encode()


def test_vary_adds_accept_encoding_after_the_upstream_vary(kit):
    r = _post(kit, "/vary", Vary="upstream")
    assert r.headers["content-encoding"] == "gzip"
    assert [v for k, v in r.header_list if k.lower() == "vary"] == ["upstream",
                                                                     "Accept-Encoding"]
    # the uncompressed variant says so too: caches must keep both apart
    r = kit.post("/vary", BODY, headers={"Content-Type": "text/html"})
    assert "content-encoding" not in r.headers and r.headers["vary"] == "Accept-Encoding"


@pytest.mark.parametrize("accept, hit", [
    ("gzip", True), ("GZIP", True), ("deflate, gzip;q=0.5", True), ("gzip ; q=1", True),
    ("br,gzip", True), ("gzip;q=0", False), ("gzip;q=0.000", False), ("x-gzip", False),
    ("*", False), ("deflate, br", False), ("", False)])
def test_accept_encoding_is_read_as_nginx_reads_it(kit, accept, hit):
    r = kit.post("/echo", BODY, headers={"Content-Type": "text/html", "Accept-Encoding": accept})
    assert (r.headers.get("content-encoding") == "gzip") is hit


def test_only_200_403_and_404_are_compressed(kit):
    for status, hit in (("200", True), ("403", True), ("404", True), ("201", False),
                        ("500", False)):
        r = _post(kit, "/echo", X_Status=status)
        assert r.status == int(status)
        assert (r.headers.get("content-encoding") == "gzip") is hit, status


def test_request_through_a_proxy_is_not_compressed(kit):
    r = _post(kit, "/echo", Via="1.1 cache")              # gzip_proxied off
    assert "content-encoding" not in r.headers and r.body == BODY.encode()


def test_encoded_upstream_response_passes_untouched(kit):
    r = _post(kit, "/echo", X_Precompressed="gzip")
    assert r.headers["content-encoding"] == "gzip"
    assert gzip.decompress(r.body) == BODY.encode()        # compressed once, not twice
    assert r.headers["content-length"] == str(len(r.body))


def test_head_204_and_304_are_untouched(kit):
    r = kit.request("HEAD", "/echo", headers=HTML)
    assert r.status == 200 and "content-encoding" not in r.headers and r.body == b""
    assert r.headers["content-length"] == str(len(PART1))
    for status in (204, 304):
        r = _post(kit, "/all", X_Status=str(status))
        assert r.status == status
        assert "content-encoding" not in r.headers and r.body == b""


def test_etag_becomes_weak_and_accept_ranges_goes(kit):
    r = _post(kit, "/echo", ETag='"v1"', Accept_Ranges="bytes")
    assert r.headers["content-encoding"] == "gzip"
    assert r.headers["etag"] == 'W/"v1"' and "accept-ranges" not in r.headers
    assert _post(kit, "/echo", ETag='W/"v2"').headers["etag"] == 'W/"v2"'
    assert "etag" not in _post(kit, "/echo", ETag="bare").headers


def test_response_rewrite_works_on_the_plain_body_before_compression(kit):
    r = _post(kit, "/rewritten", "<p>" + "plain text " * 20 + "</p>")
    assert r.headers["content-encoding"] == "gzip"
    assert gzip.decompress(r.body) == ("<p>" + "PLAIN text " * 20 + "</p>").encode()

def test_streamed_response_is_decoded_chunk_by_chunk(kit):
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    early, whole, enc = read_streamed(kit, "/stream", "gzip", d.decompress)
    assert enc == "gzip"
    assert early == PART1                  # decoded while the origin still held part two
    assert whole == PART1 + PART2 and d.eof


def test_plugin_reply_is_compressed_too(kit):
    r = kit.get("/blocked", headers={"Accept-Encoding": "gzip"})
    assert r.status == 403 and r.headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(r.body)) == {"message": "Your IP address is not allowed"}


def test_loggers_see_the_plain_body(kit, log_path):
    r = _post(kit, "/logged", "<p>" + "logged " * 20 + "</p>")
    assert r.headers["content-encoding"] == "gzip"
    deadline = time.monotonic() + 5
    while not os.path.exists(log_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    with open(log_path) as f:
        entry = json.loads(f.read().splitlines()[-1])
    assert entry["response"]["body"] == "<p>" + "logged " * 20 + "</p>"


def test_curl_compressed_gets_the_body_back(kit):
    big = "<li>item</li>" * 2000
    out = subprocess.run(
        ["curl", "-s", "--compressed", "-H", "Content-Type: text/html", "--data-binary", big,
         "-D", "-", f"http://127.0.0.1:{kit.port}/echo"],
        capture_output=True, timeout=10, check=True).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"content-encoding: gzip" in head.lower()
    assert body == big.encode()


def test_defaults_are_apisix_s():
    spec = PluginSpec.from_module(gzip_plugin, "builtin")
    assert (spec.name, spec.priority) == ("gzip", 995)
    conf = spec.check_conf({}, "route")
    assert conf == {"types": ["text/html"], "min_length": 20, "comp_level": 1,
                    "http_version": 1.1, "buffers": {"number": 32, "size": 4096}}
    assert spec.check_conf({"buffers": {"number": 1}}, "route")["buffers"] == \
        {"number": 1, "size": 4096}


@pytest.mark.parametrize("conf, err", [
    ({"comp_level": 10}, ('property "comp_level" validation failed: '
                          "expected 10 to be at most 9")),
    ({"types": []}, 'property "types" validation failed: object matches none of the required'),
    ({"min_length": 0}, ('property "min_length" validation failed: '
                         "expected 0 to be at least 1")),
    ({"http_version": 2}, ('property "http_version" validation failed: '
                           "matches none of the enum values")),
])
def test_bad_config_is_refused_by_the_admin_api(kit, up, conf, err):
    r = kit.admin("PUT", "/routes/bad", {"uri": "/bad", "plugins": {"gzip": conf},
                                         "upstream": {"nodes": {up.addr: 1}}})
    assert r.status == 400
    assert r.json() == {"error_msg": f"failed to check the configuration of plugin gzip err: {err}"}
