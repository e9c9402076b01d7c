"""brotli through a real gateway: APISIX's t/plugin/brotli.t cases (Accept-Encoding, levels,
min_length, http_version, types, vary, schema errors, decoded body, encoded upstream), with
gzip on the same route, streaming, HEAD/204/304, curl --compressed."""

from __future__ import annotations

import gzip
import subprocess
from typing import Any

import brotli
import pytest

from pylon.pdk.testing import Kit
from pylon.plugins import brotli as brotli_plugin
from pylon.proxy.registry import PluginSpec
from tests.plugins.compress_origin import PART1, PART2, origin, raw_request, read_streamed

BODY = "0123456789\n012345678"
HTML = {"Accept-Encoding": "br", "Content-Type": "text/html"}
ADMIN_KEY = "b" * 32


def _routes(up: str) -> list[dict[str, Any]]:
    def route(uri: str, plugins: dict[str, Any]) -> dict[str, Any]:
        return {"id": uri.strip("/"), "uri": uri, "plugins": plugins,
                "upstream": {"type": "roundrobin", "nodes": {up: 1}}}
    return [
        route("/echo", {"brotli": {}}),
        route("/level0", {"brotli": {"comp_level": 0}}),
        route("/level11", {"brotli": {"comp_level": 11}}),
        route("/min21", {"brotli": {"min_length": 21}}),
        route("/v10", {"brotli": {"http_version": 1.0}}),
        route("/types", {"brotli": {"types": ["text/plain", "text/xml"]}}),
        route("/all", {"brotli": {"types": "*"}}),
        route("/vary", {"brotli": {"vary": True}}),
        route("/tuned", {"brotli": {"mode": 1, "lgwin": 0, "lgblock": 16, "comp_level": 4}}),
        route("/both", {"brotli": {}, "gzip": {}}),
        route("/stream", {"brotli": {}}),
        route("/rewritten", {"brotli": {}, "response-rewrite": {
            "filters": [{"regex": "plain", "replace": "PLAIN", "scope": "global"}]}}),
    ]


@pytest.fixture(scope="module")
def up():
    u = origin()
    yield u
    u.close()


@pytest.fixture(scope="module")
def kit(up):
    with Kit({"routes": _routes(up.addr)}, admin_key=ADMIN_KEY) as k:
        yield k


def _post(kit, path: str, body: str = BODY, **headers: str):
    return kit.post(path, body, headers={**HTML, **{k.replace("_", "-"): v
                                                    for k, v in headers.items()}})


@pytest.mark.parametrize("accept, hit", [
    ("br", True), ("*", True), ("gzip", False), ("gzip, br", True), ("gzip, *", True),
    ("gzip, deflate", False), ("gzip;q=0.5, br;q=0.6", True), ("gzip;q=0.5, br;q=0", False),
    ("gzip;q=0.8, deflate, sdch;q=0.6, *;q=0.1", True), ("br;q=0.0", False), ("", False)])
def test_accept_encoding_as_apisix_reads_it(kit, accept, hit):
    r = kit.post("/echo", BODY, headers={"Content-Type": "text/html", "Accept-Encoding": accept})
    assert r.status == 200 and "vary" not in r.headers
    if hit:
        assert r.headers["content-encoding"] == "br" and "content-length" not in r.headers
        assert brotli.decompress(r.body) == BODY.encode()
    else:
        assert "content-encoding" not in r.headers and r.body == BODY.encode()


def test_comp_level_11_compresses_more_than_level_0(kit):
    body = "0123" * 1024
    low, high = _post(kit, "/level0", body), _post(kit, "/level11", body)
    assert len(high.body) < len(low.body) < 4096
    assert brotli.decompress(low.body) == brotli.decompress(high.body) == body.encode()


def test_decompressed_body_is_the_request_body(kit):
    body = "abcdf01234" * 1024
    r = kit.post("/all", body, headers={"Accept-Encoding": "br", "Content-Type": "text/plain"})
    assert r.headers["content-encoding"] == "br"
    assert brotli.decompress(r.body) == body.encode()


def test_encoder_options_are_applied(kit):
    body = "<p>text mode</p>" * 300
    r = _post(kit, "/tuned", body)
    assert r.headers["content-encoding"] == "br"
    assert brotli.decompress(r.body) == body.encode()


def test_content_length_below_min_length_is_not_compressed(kit):
    r = _post(kit, "/min21")
    assert "content-encoding" not in r.headers and r.headers["content-length"] == "20"
    r = _post(kit, "/min21", X_Chunked="1")               # no Content-Length: no check
    assert brotli.decompress(r.body) == BODY.encode()


def test_http_version(kit):
    def http10(path: str) -> tuple[str, dict[str, str], bytes]:
        return raw_request(kit, (
            f"POST {path} HTTP/1.0\r\nHost: x\r\nAccept-Encoding: br\r\n"
            f"Content-Type: text/html\r\nContent-Length: {len(BODY)}\r\n\r\n{BODY}").encode())
    _, headers, body = http10("/echo")
    assert "content-encoding" not in headers and body == BODY.encode()
    _, headers, body = http10("/v10")
    assert headers["content-encoding"] == "br" and brotli.decompress(body) == BODY.encode()


def test_types(kit):
    assert "content-encoding" not in _post(kit, "/types").headers
    assert _post(kit, "/types", Content_Type="text/xml").headers["content-encoding"] == "br"
    r = _post(kit, "/types", Content_Type="text/plain; charset=UTF-8")
    assert r.headers["content-encoding"] == "br"
    assert _post(kit, "/all", Content_Type="video/3gpp").headers["content-encoding"] == "br"
    r = kit.post("/all", BODY, headers={"Accept-Encoding": "br"})       # no Content-Type
    assert "content-encoding" not in r.headers and r.body == BODY.encode()


def test_vary_adds_accept_encoding_after_the_upstream_vary(kit):
    r = _post(kit, "/vary", Vary="upstream")
    assert r.headers["content-encoding"] == "br"
    assert [v for k, v in r.header_list if k.lower() == "vary"] == ["upstream",
                                                                     "Accept-Encoding"]


def test_encoded_upstream_response_is_returned_as_it_is(kit):
    body = "abcdf01234" * 1024
    r = kit.post("/all", body, headers={"Accept-Encoding": "gzip, br", "X-Precompressed": "gzip",
                                        "Content-Type": "text/html"})
    assert r.headers["content-encoding"] == "gzip"
    assert gzip.decompress(r.body) == body.encode()


def test_any_status_is_compressed_but_head_204_304_are_untouched(kit):
    r = _post(kit, "/echo", X_Status="500")
    assert r.status == 500 and brotli.decompress(r.body) == BODY.encode()
    r = kit.request("HEAD", "/echo", headers=HTML)
    assert r.status == 200 and "content-encoding" not in r.headers
    assert r.headers["content-length"] == str(len(PART1))
    for status in (204, 304):
        r = _post(kit, "/echo", X_Status=str(status))
        assert r.status == status and "content-encoding" not in r.headers


def test_etag_and_last_modified_go_as_the_body_changes(kit):
    r = _post(kit, "/echo", ETag='"v1"', Last_Modified="Mon, 07 Dec 2026 00:00:00 GMT")
    assert r.headers["content-encoding"] == "br"
    assert "etag" not in r.headers and "last-modified" not in r.headers


@pytest.mark.parametrize("accept, encoding", [
    ("gzip, br", "br"), ("br", "br"), ("gzip", "gzip"), ("deflate", None)])
def test_with_gzip_on_the_route_br_wins_when_accepted(kit, accept, encoding):
    r = kit.post("/both", BODY, headers={"Content-Type": "text/html", "Accept-Encoding": accept})
    assert r.headers.get("content-encoding") == encoding
    decode = {"br": brotli.decompress, "gzip": gzip.decompress, None: bytes}[encoding]
    assert decode(r.body) == BODY.encode()


def test_response_rewrite_works_on_the_plain_body_before_compression(kit):
    r = _post(kit, "/rewritten", "<p>" + "plain text " * 20 + "</p>")
    assert r.headers["content-encoding"] == "br"
    assert brotli.decompress(r.body) == ("<p>" + "PLAIN text " * 20 + "</p>").encode()

def test_streamed_response_is_decoded_chunk_by_chunk(kit):
    d = brotli.Decompressor()
    early, whole, enc = read_streamed(kit, "/stream", "br", d.process)
    assert enc == "br"
    assert early == PART1                  # decoded while the origin still held part two
    assert whole == PART1 + PART2 and d.is_finished()


def test_curl_compressed_gets_the_body_back(kit):
    big = "<li>item</li>" * 2000
    out = subprocess.run(
        ["curl", "-s", "--compressed", "-H", "Content-Type: text/html", "--data-binary", big,
         "-D", "-", f"http://127.0.0.1:{kit.port}/both"],
        capture_output=True, timeout=10, check=True).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"content-encoding: br" in head.lower()     # curl offers gzip and br
    assert body == big.encode()


def test_defaults_are_apisix_s():
    spec = PluginSpec.from_module(brotli_plugin, "builtin")
    assert (spec.name, spec.priority) == ("brotli", 996)
    assert spec.check_conf({}, "route") == {
        "comp_level": 6, "http_version": 1.1, "lgblock": 0, "lgwin": 19, "min_length": 20,
        "mode": 0, "types": ["text/html"]}


@pytest.mark.parametrize("conf, err", [
    ({"types": []}, 'property "types" validation failed: object matches none of the required'),
    ({"min_length": 0}, 'property "min_length" validation failed: expected 0 to be at least 1'),
    ({"mode": 4}, 'property "mode" validation failed: expected 4 to be at most 2'),
    ({"comp_level": 12}, 'property "comp_level" validation failed: expected 12 to be at most 11'),
    ({"http_version": 2}, ('property "http_version" validation failed: '
                           "matches none of the enum values")),
    ({"lgwin": 100}, 'property "lgwin" validation failed: matches none of the enum values'),
    ({"lgblock": 8}, 'property "lgblock" validation failed: matches none of the enum values'),
    ({"vary": 0}, 'property "vary" validation failed: wrong type: expected boolean, got number'),
])
def test_bad_config_is_refused_as_apisix_refuses_it(kit, conf, err):
    r = kit.admin("PUT", "/global_rules/1", {"id": "1", "plugins": {"brotli": conf}})
    assert r.status == 400
    assert r.json() == {
        "error_msg": f"failed to check the configuration of plugin brotli err: {err}"}
