"""proxy-cache through a real gateway: APISIX's doc examples (disk and memory strategies,
no_cache, cache_bypass), TTLs, PURGE, what is never stored, eviction of a zone over its size,
a disk zone that outlives a restart and a memory zone shared by the workers."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from email.utils import formatdate
from urllib.parse import parse_qs, urlsplit

import pytest

from pylon.pdk.testing import Kit

ZONES = [
    {"name": "disk_cache_one", "memory_size": "50m", "disk_size": "1G",
     "disk_path": "cache/one", "cache_levels": "1:2"},
    {"name": "memory_cache", "memory_size": "50m"},
    {"name": "tiny", "memory_size": "1m", "disk_size": "40k", "disk_path": "cache/tiny",
     "cache_levels": "2"},
]


def pc(**kw):
    return {"proxy-cache": kw}


DOC = {"routes": [
    {"id": "disk", "uri": "/d/*", "plugins": pc(cache_strategy="disk")},
    {"id": "mem", "uri": "/m/*", "plugins": pc(cache_strategy="memory",
                                                cache_zone="memory_cache", cache_ttl=2)},
    {"id": "nocache", "uri": "/nc/*", "plugins": pc(no_cache=["$arg_no_cache",
                                                               "$http_no_cache"])},
    {"id": "bypass", "uri": "/bp/*", "plugins": pc(cache_bypass=["$arg_bypass",
                                                                  "$http_bypass"])},
    {"id": "mbypass", "uri": "/mbp/*", "plugins": pc(
        cache_strategy="memory", cache_zone="memory_cache",
        cache_bypass=["$arg_bypass"])},
    {"id": "only200", "uri": "/o/*", "plugins": pc(cache_http_status=[200])},
    {"id": "hide", "uri": "/h/*", "plugins": pc(hide_cache_headers=True)},
    {"id": "cc", "uri": "/cc/*", "plugins": pc(cache_strategy="memory",
                                                cache_zone="memory_cache",
                                                cache_control=True, cache_ttl=10)},
    {"id": "tiny", "uri": "/t/*", "plugins": pc(cache_zone="tiny")},
    {"id": "post", "uri": "/p/*", "plugins": pc(cache_method=["GET", "POST"])},
]}


def behaviour(h, rec):
    """The origin: ``?status=``, ``?cc=`` (Cache-Control), ``?expires=<seconds from now>``,
    ``?cookie=1``, ``?vary=``, ``?size=`` (body padding) shape the answer; ``n`` numbers the
    origin's answers, so a cached body is recognisable."""
    q = {k: v[0] for k, v in parse_qs(urlsplit(rec["path"]).query).items()}
    body = json.dumps({"path": rec["path"], "n": rec["n"], "method": rec["method"],
                       "pad": "x" * int(q.get("size", 0))}).encode()
    h.send_response(int(q.get("status", 200)))
    h.send_header("Content-Type", "application/json")
    if "cc" in q:
        h.send_header("Cache-Control", q["cc"])
    if "expires" in q:
        h.send_header("Expires", formatdate(time.time() + int(q["expires"]), usegmt=True))
    if "cookie" in q:
        h.send_header("Set-Cookie", "session=abc; Path=/")
    if "vary" in q:
        h.send_header("Vary", q["vary"])
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


def install(kit: Kit) -> None:
    lock = threading.Lock()
    count = [0]

    def numbered(h, rec):
        with lock:
            count[0] += 1
            rec["n"] = count[0]
        behaviour(h, rec)

    kit.upstream.behaviour = numbered


@pytest.fixture(scope="module")
def kit():
    with Kit(DOC, node={"pylon": {"proxy_cache": {"cache_ttl": "2s", "zones": ZONES}}},
             admin_key="k-proxy-cache") as k:
        install(k)
        yield k


def seen(kit: Kit, path: str) -> int:
    """How many requests for ``path`` the origin has answered."""
    return sum(1 for r in kit.upstream.requests if r["path"] == path)


def status(r) -> str:
    return r.headers.get("apisix-cache-status", "")


def test_disk_miss_then_hit_answers_without_the_upstream(kit):
    a = kit.get("/d/first")
    b = kit.get("/d/first")
    assert (a.status, status(a), b.status, status(b)) == (200, "MISS", 200, "HIT")
    assert b.body == a.body
    assert b.headers["content-type"] == "application/json"
    assert seen(kit, "/d/first") == 1
    # the entry is a file where nginx would put it: md5 of the key, levels 1:2
    digest = hashlib.md5(b"127.0.0.1/d/first").hexdigest()
    assert os.path.isfile(os.path.join(kit.prefix, "cache/one", digest[-1], digest[-3:-1],
                                       digest))


def test_disk_ttl_is_the_node_cache_ttl_unless_the_response_gives_one(kit):
    assert status(kit.get("/d/ttl")) == "MISS"
    assert status(kit.get("/d/ttl?cc=max-age%3D60")) == "MISS"
    assert status(kit.get("/d/ttl?expires=60")) == "MISS"
    assert status(kit.get("/d/ttl")) == "HIT"
    time.sleep(2.1)                                 # apisix.proxy_cache.cache_ttl: 2s
    expired = kit.get("/d/ttl")
    assert status(expired) == "EXPIRED"
    assert seen(kit, "/d/ttl") == 2
    assert status(kit.get("/d/ttl")) == "HIT"       # stored again
    assert status(kit.get("/d/ttl?cc=max-age%3D60")) == "HIT"
    assert status(kit.get("/d/ttl?expires=60")) == "HIT"


def test_responses_that_forbid_sharing_are_never_stored(kit):
    for q in ("cc=max-age%3D0", "cc=private", "cc=no-store", "cc=no-cache", "cookie=1",
              "expires=-10", "vary=*"):
        path = "/d/never?" + q
        assert [status(kit.get(path)) for _ in range(2)] == ["MISS", "MISS"], q
        assert seen(kit, path) == 2


def test_status_codes_not_listed_are_not_cached(kit):
    assert [kit.get("/d/s?status=500").status for _ in range(2)] == [500, 500]
    assert seen(kit, "/d/s?status=500") == 2
    r = [kit.get("/d/s?status=404") for _ in range(2)]  # 404 is in the default list
    assert [(x.status, status(x)) for x in r] == [(404, "MISS"), (404, "HIT")]
    r = [kit.get("/o/s?status=404") for _ in range(2)]  # cache_http_status: [200]
    assert [(x.status, status(x)) for x in r] == [(404, "MISS"), (404, "MISS")]
    assert seen(kit, "/o/s?status=404") == 2


def test_memory_strategy_hit_has_age_then_expires_after_cache_ttl(kit):
    a, b = kit.get("/m/x"), kit.get("/m/x")
    assert (status(a), status(b)) == ("MISS", "HIT")
    assert b.body == a.body and b.headers["age"] == "0"
    assert seen(kit, "/m/x") == 1
    time.sleep(2.1)                                 # the plugin's cache_ttl: 2
    assert status(kit.get("/m/x")) == "EXPIRED"
    assert status(kit.get("/m/x")) == "HIT"
    assert seen(kit, "/m/x") == 2


def test_no_cache_doc_example(kit):
    for _ in range(2):
        r = kit.get("/nc/anything?no_cache=1")
        assert (r.status, status(r)) == (200, "MISS")
    assert [status(kit.get("/nc/anything?no_cache=0")) for _ in range(2)] == ["MISS", "HIT"]
    hdr = {"no_cache": "1"}
    assert [status(kit.get("/nc/hdr", headers=hdr)) for _ in range(2)] == ["MISS", "MISS"]
    assert seen(kit, "/nc/hdr") == 2


def test_cache_bypass_doc_example(kit):
    assert status(kit.get("/bp/anything?bypass=1")) == "BYPASS"
    assert status(kit.get("/bp/anything?bypass=0")) == "MISS"
    assert status(kit.get("/bp/anything?bypass=0")) == "HIT"
    before = seen(kit, "/bp/anything?bypass=0")
    r = kit.get("/bp/anything?bypass=0", headers={"bypass": "1"})
    assert status(r) == "BYPASS"
    assert seen(kit, "/bp/anything?bypass=0") == before + 1
    # the disk strategy still stores what a bypassed request fetched (nginx)
    assert status(kit.get("/bp/anything?bypass=0")) == "HIT"
    assert json.loads(kit.get("/bp/anything?bypass=0").body)["n"] == json.loads(r.body)["n"]


def test_memory_bypass_neither_reads_nor_stores(kit):
    assert status(kit.get("/mbp/a?bypass=1")) == "BYPASS"
    assert status(kit.get("/mbp/a?bypass=1")) == "BYPASS"
    assert seen(kit, "/mbp/a?bypass=1") == 2


def test_purge_removes_the_entry_then_404(kit):
    kit.get("/d/purge")
    assert status(kit.get("/d/purge")) == "HIT"
    r = kit.request("PURGE", "/d/purge")
    assert (r.status, r.body) == (200, b"")
    assert status(kit.get("/d/purge")) == "MISS"
    assert kit.request("PURGE", "/d/purge").status == 200
    assert kit.request("PURGE", "/d/purge").status == 404
    kit.get("/m/purge")
    assert kit.request("PURGE", "/m/purge").status == 200
    assert kit.request("PURGE", "/m/purge").status == 404
    assert seen(kit, "/d/purge") == 2


def test_hide_cache_headers_on_miss_and_hit(kit):
    for want in ("MISS", "HIT"):
        r = kit.get("/h/x?cc=max-age%3D60&expires=60")
        assert status(r) == want
        assert "cache-control" not in r.headers and "expires" not in r.headers
    r = kit.get("/d/shown?cc=max-age%3D60")
    r = kit.get("/d/shown?cc=max-age%3D60")
    assert (status(r), r.headers["cache-control"]) == ("HIT", "max-age=60")


def test_methods_head_and_post(kit):
    # disk: a method outside cache_method is a BYPASS and is not stored
    assert [status(kit.post("/d/post", body="x")) for _ in range(2)] == ["BYPASS", "BYPASS"]
    # memory: a MISS
    assert status(kit.post("/m/post", body="x")) == "MISS"
    # POST listed: cached under the same key as GET (the key has no method)
    assert [status(kit.post("/p/post", body="x")) for _ in range(2)] == ["MISS", "HIT"]
    # HEAD: answered from a stored GET, never stored itself (its response has no body)
    assert status(kit.request("HEAD", "/d/head")) == "MISS"
    assert status(kit.get("/d/head")) == "MISS"
    r = kit.request("HEAD", "/d/head")
    assert (r.status, status(r), r.body) == (200, "HIT", b"")
    assert int(r.headers["content-length"]) == len(kit.get("/d/head").body)


def test_memory_cache_control_directives(kit):
    assert status(kit.get("/cc/a?cc=max-age%3D60")) == "MISS"
    assert status(kit.get("/cc/a?cc=max-age%3D60")) == "HIT"
    # no freshness from the response: cache_control does not store it
    assert [status(kit.get("/cc/plain")) for _ in range(2)] == ["MISS", "MISS"]
    assert status(kit.get("/cc/a?cc=max-age%3D60", headers={"Cache-Control": "no-store"})) \
        == "BYPASS"
    assert status(kit.get("/cc/a?cc=max-age%3D60",
                          headers={"Cache-Control": "min-fresh=300"})) == "STALE"
    r = kit.get("/cc/none", headers={"Cache-Control": "only-if-cached"})
    assert (r.status, status(r)) == (504, "MISS")
    assert seen(kit, "/cc/none") == 0


def test_vary_request_header_must_match(kit):
    en = {"Accept-Language": "en"}
    fr = {"Accept-Language": "fr"}
    assert status(kit.get("/d/v?vary=Accept-Language", headers=en)) == "MISS"
    assert status(kit.get("/d/v?vary=Accept-Language", headers=en)) == "HIT"
    assert status(kit.get("/d/v?vary=Accept-Language", headers=fr)) == "MISS"


def test_zone_over_its_size_evicts_least_recently_used(kit):
    zone = os.path.join(kit.prefix, "cache/tiny")
    paths = [f"/t/{i}?size=7000" for i in range(7)]
    kit.get(paths[0])
    kit.get(paths[1])
    for p in paths[2:]:
        assert status(kit.get(paths[0])) == "HIT"       # /t/0 stays recently used
        kit.get(p)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(zone)
                for f in fs if not f.startswith("."))
    assert total <= 40 * 1024
    assert status(kit.get(paths[0])) == "HIT"
    assert status(kit.get(paths[1])) == "MISS"          # the least recently used: gone
    assert status(kit.get(paths[-1])) == "HIT"


def test_response_larger_than_an_entry_streams_through_uncached(kit):
    big = "/t/big?size=20000"                           # a tiny zone keeps <= 10k entries
    a, b = kit.get(big), kit.get(big)
    assert (status(a), status(b)) == ("MISS", "MISS")
    assert len(b.body) > 20000 and json.loads(b.body)["n"] != json.loads(a.body)["n"]


@pytest.mark.parametrize("conf, msg", [
    ({"cache_strategy": "network"},
     'property "cache_strategy" validation failed: matches none of the enum values'),
    ({"cache_strategy": "memory", "cache_zone": "invalid_cache_zone"},
     "cache_zone invalid_cache_zone not found"),
    ({"cache_strategy": "memory"}, "invalid or empty cache_zone for cache_strategy: memory"),
    ({"cache_key": ["$host", "$request_method"]},
     "cache_key variable $request_method unsupported"),
])
def test_bad_config_is_refused_by_the_admin_api(kit, conf, msg):
    r = kit.admin("PUT", "/routes/bad", {"uri": "/bad", "plugins": {"proxy-cache": conf},
                                         "upstream": {"nodes": {kit.upstream.addr: 1}}})
    assert r.status == 400
    assert r.json()["error_msg"].startswith(
        "failed to check the configuration of plugin proxy-cache err: ")
    assert msg in r.json()["error_msg"]


def test_disk_zone_survives_a_restart_and_memory_zone_is_shared_by_workers(tmp_path):
    node = {"pylon": {"proxy_cache": {"cache_ttl": "10m", "zones": [
        {"name": "disk_cache_one", "disk_path": str(tmp_path / "disk"), "disk_size": "1m"},
        {"name": "memory_cache", "memory_size": "1m"}]}},
            "nginx_config": {"http": {"access_log_format": "$pid $uri"}}}
    doc = {"routes": [{"uri": "/d", "plugins": pc()},
                      {"uri": "/m", "plugins": pc(cache_strategy="memory",
                                                  cache_zone="memory_cache")}]}
    with Kit(doc, node=node, workers=2, start_timeout=60) as k:
        install(k)
        first = k.get("/d")
        assert status(first) == "MISS"
        # new connections spread over both workers; one origin request in all
        assert [status(k.get("/m")) for _ in range(12)] == ["MISS"] + ["HIT"] * 11
        assert seen(k, "/m") == 1
        time.sleep(0.2)
        pids = {line.split()[0] for line in k.access_log() if line.endswith(" /m")}
        assert len(pids) == 2                           # both workers answered
    with Kit(doc, node=node, start_timeout=60) as k:
        install(k)
        again = k.get("/d")
        assert (status(again), again.body) == ("HIT", first.body)
        assert status(k.get("/m")) == "MISS"             # memory goes with the node
        assert seen(k, "/d") == 0
