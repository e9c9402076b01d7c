"""Admin API v3 over a real loopback socket: AdminApp + start_admin in a background loop,
persisting to a temporary standalone file through write_doc_atomically."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pylon.admin import AdminApp, AdminKey, parse_allow, start_admin, write_doc_atomically
from pylon.admin.app import answer
from pylon.config.hub import ConfigHub
from pylon.config.loader import read_file
from pylon.config.yaml_store import YamlStore
from pylon.model.validate import parse_resources
from pylon.node import Node
from pylon.proxy import registry
from tests.tls.certs import CA

ADMIN = "edd1c9f034335f136f87ad84b625c8f1"
VIEWER = "4054f7cf07e344346cd3f287985e76a2"
UP = {"type": "roundrobin", "nodes": {"127.0.0.1:1980": 1}}
# a real certificate and its key: APISIX (and Pylon) refuse an ssl object whose cert or key
# does not parse ("failed to parse cert: PEM_read_bio_X509_AUX() failed")
_PAIR = CA().issue("a")
CERT, PKEY = _PAIR.cert, _PAIR.key


class Admin:
    """A running Admin API and a client for it."""

    def __init__(self, path: Path, doc: Any, allow: list[str] | None = None,
                 audit: Path | None = None) -> None:
        self.path = path
        self.node = Node(plugins=registry.load())
        write_doc_atomically(str(path), doc)
        self.hub = ConfigHub(YamlStore(str(path)))
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        async def boot() -> None:
            await self.hub.load()
            self.hub.start_watch()
            self.app = AdminApp(self.hub, [AdminKey("admin", ADMIN, "admin"),
                                           AdminKey("viewer", VIEWER, "viewer")],
                                parse_allow(allow), audit_path=str(audit) if audit else None,
                                node=self.node)
            self.server = await start_admin(self.loop, self.app, "127.0.0.1", 0)
            started.set()

        self.thread = threading.Thread(target=self._run, args=(boot,), daemon=True)
        self.thread.start()
        assert started.wait(5), "admin server did not start"
        self.port = self.server.sockets[0].getsockname()[1]
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)

    def _run(self, boot: Any) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(boot())
        self.loop.run_forever()

    def call(self, method: str, url: str, body: Any = None, key: str | None = ADMIN,
             raw: bytes | None = None, headers: dict[str, str] | None = None
             ) -> tuple[int, Any, http.client.HTTPResponse]:
        hdrs = dict(headers or {})
        if key is not None:
            hdrs["X-API-KEY"] = key
        data = raw if raw is not None else (None if body is None else json.dumps(body))
        self.conn.request(method, "/apisix/admin" + url, body=data, headers=hdrs)
        resp = self.conn.getresponse()
        payload = resp.read()
        if resp.will_close:
            self.conn.close()
        return resp.status, (json.loads(payload) if payload else None), resp

    def close(self) -> None:
        self.conn.close()

        async def stop() -> None:
            self.server.close()
            await self.server.wait_closed()
            await self.hub.close()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[Admin]:
    a = Admin(tmp_path / "pylon.yaml", {"routes": []})
    yield a
    a.close()


def route(uri: str = "/hello", **kw: Any) -> dict[str, Any]:
    return {"uri": uri, "upstream": UP, **kw}


# -- envelopes -----------------------------------------------------------------------------
def test_put_creates_201_then_replaces_200_with_v3_envelope(admin: Admin) -> None:
    status, body, resp = admin.call("PUT", "/routes/1", route())
    assert status == 201
    assert resp.getheader("X-API-VERSION") == "v3"
    assert resp.getheader("Content-Type") == "application/json"
    assert body["key"] == "/apisix/routes/1"
    assert body["value"]["id"] == "1" and body["value"]["uri"] == "/hello"
    assert isinstance(body["value"]["create_time"], int)
    created = body["value"]["create_time"]
    status, body, _ = admin.call("PUT", "/routes/1", route("/other"))
    assert status == 200 and body["value"]["uri"] == "/other"
    assert body["value"]["create_time"] == created


def test_get_one_and_list_envelopes_with_indices(admin: Admin) -> None:
    admin.call("PUT", "/routes/1", route())
    admin.call("PUT", "/routes/2", route("/two"))
    status, one, _ = admin.call("GET", "/routes/1")
    assert status == 200
    assert set(one) == {"key", "value", "createdIndex", "modifiedIndex"}
    assert one["key"] == "/apisix/routes/1" and one["value"]["uri"] == "/hello"
    status, lst, _ = admin.call("GET", "/routes")
    assert status == 200 and lst["total"] == 2
    assert [n["key"] for n in lst["list"]] == ["/apisix/routes/1", "/apisix/routes/2"]
    assert lst["list"][1]["modifiedIndex"] > lst["list"][0]["modifiedIndex"]


def test_modified_index_grows_and_created_index_stays(admin: Admin) -> None:
    admin.call("PUT", "/routes/1", route())
    _, a, _ = admin.call("GET", "/routes/1")
    admin.call("PATCH", "/routes/1", {"name": "n"})
    _, b, _ = admin.call("GET", "/routes/1")
    assert b["createdIndex"] == a["createdIndex"]
    assert b["modifiedIndex"] > a["modifiedIndex"]


def test_empty_list_and_missing_key_shapes(admin: Admin) -> None:
    assert admin.call("GET", "/upstreams")[:2] == (200, {"list": [], "total": 0})
    assert admin.call("GET", "/routes/nope")[:2] == (404, {"message": "Key not found"})
    assert admin.call("DELETE", "/routes/nope")[:2] == (404, {"message": "Key not found"})


def test_unknown_paths_are_404_json(admin: Admin) -> None:
    status, body, resp = admin.call("GET", "/nothing")
    assert (status, body) == (404, {"error_msg": "Unsupported resource type: nothing"})
    assert resp.getheader("X-API-VERSION") == "v3"
    admin.conn.request("GET", "/elsewhere", headers={"X-API-KEY": ADMIN})
    resp = admin.conn.getresponse()
    assert resp.status == 404 and json.loads(resp.read()) == {"error_msg": "not found"}


def test_post_generates_20_digit_id(admin: Admin) -> None:
    status, body, _ = admin.call("POST", "/routes", route())
    assert status == 201
    oid = body["value"]["id"]
    assert len(oid) == 20 and oid.isdigit()
    assert body["key"] == f"/apisix/routes/{oid}"
    assert admin.call("GET", f"/routes/{oid}")[0] == 200
    _, other, _ = admin.call("POST", "/routes", route("/b"))
    assert other["value"]["id"] != oid


def test_post_with_an_id_is_refused(admin: Admin) -> None:
    status, body, _ = admin.call("POST", "/routes", {**route(), "id": "9"})
    assert (status, body) == (400, {"error_msg": "wrong route id, do not need it"})


def test_put_body_id_must_match_url_id(admin: Admin) -> None:
    status, body, _ = admin.call("PUT", "/routes/1", {**route(), "id": "2"})
    assert (status, body) == (400, {"error_msg": "wrong route id"})
    status, body, _ = admin.call("PUT", "/routes", route())
    assert (status, body) == (400, {"error_msg": "missing route id"})
    assert admin.call("PUT", "/routes", {**route(), "id": "7"})[0] == 201


def test_delete_envelope(admin: Admin) -> None:
    admin.call("PUT", "/routes/1", route())
    status, body, _ = admin.call("DELETE", "/routes/1")
    assert (status, body) == (200, {"deleted": "1", "key": "/apisix/routes/1"})
    assert admin.call("GET", "/routes/1")[0] == 404


# -- PATCH ---------------------------------------------------------------------------------
def test_patch_merges_objects_deletes_nulls_and_replaces_arrays(admin: Admin) -> None:
    admin.call("PUT", "/routes/1", route(methods=["GET", "POST"], desc="d",
                                         labels={"a": "1", "b": "2"}))
    status, body, _ = admin.call("PATCH", "/routes/1", {
        "methods": ["PUT"], "desc": None, "labels": {"b": None, "c": "3"}})
    assert status == 200
    v = body["value"]
    assert v["methods"] == ["PUT"]
    assert "desc" not in v
    assert v["labels"] == {"a": "1", "c": "3"}
    assert v["upstream"] == UP and v["id"] == "1"


def test_patch_sub_path_replaces_that_value(admin: Admin) -> None:
    admin.call("PUT", "/routes/1", route())
    status, body, _ = admin.call("PATCH", "/routes/1/upstream/nodes",
                                 {"127.0.0.2:8080": 3})
    assert status == 200
    assert body["value"]["upstream"]["nodes"] == {"127.0.0.2:8080": 3}
    assert body["value"]["upstream"]["type"] == "roundrobin"
    status, body, _ = admin.call("PATCH", "/routes/1/uri/x", "/y")
    assert (status, body) == (400, {"error_msg": "invalid sub-path: /uri"})


def test_patch_refusals(admin: Admin) -> None:
    assert admin.call("PATCH", "/routes/9", {"uri": "/x"})[:2] == \
        (404, {"message": "Key not found"})
    admin.call("PUT", "/routes/1", route())
    assert admin.call("PATCH", "/routes/1")[:2] == \
        (400, {"error_msg": "missing new configuration"})
    assert admin.call("PATCH", "/routes/1", [1])[:2] == \
        (400, {"error_msg": "invalid configuration"})
    assert admin.call("PATCH", "/routes/1", {"id": "2"})[:2] == \
        (400, {"error_msg": "wrong route id"})


# -- references ----------------------------------------------------------------------------
def test_references_must_exist_on_write(admin: Admin) -> None:
    status, body, _ = admin.call("PUT", "/routes/1", {"uri": "/a", "upstream_id": "u1"})
    assert (status, body) == (400, {"error_msg": "failed to fetch upstream info by upstream "
                                                 "id [u1], response code: 404"})
    status, body, _ = admin.call("PUT", "/services/s1", {"upstream_id": "u1"})
    assert status == 400 and "upstream id [u1]" in body["error_msg"]
    status, body, _ = admin.call("PUT", "/routes/1", {"uri": "/a", "service_id": "s1"})
    assert (status, body) == (400, {"error_msg": "failed to fetch service info by service "
                                                 "id [s1], response code: 404"})


def test_delete_refused_while_referenced_unless_forced(admin: Admin) -> None:
    assert admin.call("PUT", "/upstreams/u1", UP)[0] == 201
    assert admin.call("PUT", "/services/s1", {"upstream_id": "u1"})[0] == 201
    assert admin.call("PUT", "/routes/1", {"uri": "/a", "service_id": "s1"})[0] == 201
    assert admin.call("DELETE", "/upstreams/u1")[:2] == (400, {
        "error_msg": "can not delete this upstream, service [s1] is still using it now"})
    assert admin.call("DELETE", "/services/s1")[:2] == (400, {
        "error_msg": "can not delete this service directly, route [1] is still using it now"})
    assert admin.call("DELETE", "/services/s1?force=anything")[0] == 400
    assert admin.call("DELETE", "/services/s1?force=true")[0] == 200
    assert admin.call("DELETE", "/upstreams/u1?force=true")[0] == 200


# -- access --------------------------------------------------------------------------------
def test_missing_or_wrong_key_is_401(admin: Admin) -> None:
    assert admin.call("GET", "/routes", key=None)[:2] == \
        (401, {"error_msg": "failed to check token", "description": "missing apikey"})
    assert admin.call("GET", "/routes", key="nope")[:2] == \
        (401, {"error_msg": "failed to check token", "description": "wrong apikey"})


def test_key_accepted_from_query_and_cookie(admin: Admin) -> None:
    assert admin.call("GET", f"/routes?api_key={ADMIN}", key=None)[0] == 200
    assert admin.call("GET", "/routes", key=None,
                      headers={"Cookie": f"X-API-KEY={ADMIN}"})[0] == 200


def test_viewer_may_read_but_not_write(admin: Admin) -> None:
    assert admin.call("GET", "/routes", key=VIEWER)[0] == 200
    for method in ("PUT", "POST", "PATCH", "DELETE"):
        status, body, _ = admin.call(method, "/routes/1", route(), key=VIEWER)
        assert (status, body) == (401, {"error_msg": "failed to check token",
                                        "description": "invalid method for role viewer"})
    assert admin.hub.state.revision == 0 and not admin.hub.state.kinds.get("routes")


def test_address_outside_allow_admin_is_403(tmp_path: Path) -> None:
    a = Admin(tmp_path / "c.yaml", {}, allow=["10.0.0.0/8"])
    try:
        status, body, _ = a.call("GET", "/routes")
        assert status == 403 and "error_msg" in body
    finally:
        a.close()


# -- validation and limits -----------------------------------------------------------------
def test_validation_error_names_the_field_path(admin: Admin) -> None:
    bad = {"uri": "/a", "upstream": {"nodes": [{"host": "h", "port": "x", "weight": 1}]}}
    status, body, _ = admin.call("PUT", "/routes/1", bad)
    assert status == 400
    assert body["error_msg"] == ('invalid configuration: property "upstream" validation failed:'
                                 ' property "nodes" validation failed: object matches none of'
                                 ' the required')
    assert admin.call("GET", "/routes/1")[0] == 404


def test_bad_json_body_is_400(admin: Admin) -> None:
    status, body, _ = admin.call("PUT", "/routes/1", raw=b"{not json")
    assert status == 400 and body["error_msg"].startswith("invalid request body: ")


def test_page_and_page_size(admin: Admin) -> None:
    for i in range(25):
        admin.call("PUT", f"/upstreams/u{i}", UP)
    _, p3, _ = admin.call("GET", "/upstreams?page=3&page_size=10")
    assert p3["total"] == 25
    assert [n["value"]["id"] for n in p3["list"]] == [f"u{i}" for i in range(20, 25)]
    assert admin.call("GET", "/upstreams?page=1&page_size=5")[:2] == \
        (400, {"error_msg": "page_size must be between 10 and 500"})
    assert admin.call("GET", "/upstreams?page=1&page_size=501")[0] == 400
    assert admin.call("GET", "/upstreams")[1]["total"] == 25


def test_body_over_1_5_mib_is_413(admin: Admin) -> None:
    big = json.dumps({"uri": "/a", "desc": "x" * (1536 * 1024)}).encode()
    status, body, _ = admin.call("PUT", "/routes/1", raw=big)
    assert status == 413 and "error_msg" in body
    # just under the limit is read (then refused by validation, not by size)
    ok = json.dumps({"uri": "/a", "labels": {"k": "x" * (1500 * 1024)}}).encode()
    assert admin.call("PUT", "/routes/2", raw=ok)[0] != 413


def test_keep_alive_serves_many_requests_on_one_connection(admin: Admin) -> None:
    for i in range(5):
        status, _, resp = admin.call("PUT", f"/routes/{i}", route(f"/{i}"))
        assert status == 201 and not resp.will_close
    assert admin.call("GET", "/routes")[1]["total"] == 5


def test_failed_store_write_is_503_and_changes_nothing(admin: Admin) -> None:
    # a real failure: the file's place is taken by a non-empty directory, so the atomic
    # rename over it fails
    admin.path.unlink()
    admin.path.mkdir()
    (admin.path / "x").write_text("x")
    try:
        status, body, _ = admin.call("PUT", "/routes/1", route())
        assert status == 503 and "failed to store the configuration" in body["error_msg"]
        assert admin.call("GET", "/routes/1")[0] == 404
    finally:
        (admin.path / "x").unlink()
        admin.path.rmdir()


# -- other kinds ---------------------------------------------------------------------------
def test_consumers_are_keyed_by_username(admin: Admin) -> None:
    status, body, _ = admin.call("PUT", "/consumers", {"username": "jack", "plugins": {}})
    assert status == 201 and body["key"] == "/apisix/consumers/jack"
    assert admin.call("GET", "/consumers/jack")[1]["value"]["username"] == "jack"
    assert admin.call("POST", "/consumers", {"username": "x"})[0] == 405


def test_stored_kinds_must_be_objects_and_ssl_keys_are_hidden(admin: Admin) -> None:
    assert admin.call("PUT", "/global_rules/1", [1])[0] == 400
    assert admin.call("PUT", "/ssls/1", {"cert": "C", "key": "K", "snis": ["a"]})[0] == 400
    assert admin.call("PUT", "/ssls/1", {"cert": CERT, "key": PKEY, "snis": ["a"]})[0] == 201
    _, got, _ = admin.call("GET", "/ssls/1")
    assert got["value"]["cert"] == CERT and "key" not in got["value"]
    assert admin.call("PUT", "/secrets/vault/1", {"uri": "http://v", "prefix": "kv/apisix",
                                                  "token": "t"})[1]["key"] == \
        "/apisix/secrets/vault/1"
    # metadata of a plugin this node does not load is refused, as APISIX does
    assert admin.call("PUT", "/plugin_metadata/no-such-plugin", {"log_format": {}})[:2] == \
        (400, {"error_msg": "invalid plugin name"})


# -- persistence ---------------------------------------------------------------------------
def test_written_file_parses_back_unchanged(admin: Admin) -> None:
    admin.call("PUT", "/upstreams/u1", {**UP, "name": "on"})
    admin.call("PUT", "/routes/1", {"uri": "/a", "upstream_id": "u1", "methods": ["GET"]})
    admin.call("PUT", "/consumers", {"username": "jack"})
    doc = read_file(str(admin.path))
    assert doc["routes"] == [admin.call("GET", "/routes/1")[1]["value"]]
    assert doc["upstreams"][0]["name"] == "on"
    res, rejected = parse_resources(doc)
    assert rejected == []
    assert set(res.routes) == {"1"} and res.routes["1"].upstream_id == "u1"
    assert res.other["consumers"] == [{"username": "jack", **{
        k: doc["consumers"][0][k] for k in ("create_time", "update_time")}}]


def test_yaml_end_marker_and_json_files_are_preserved(tmp_path: Path) -> None:
    y = tmp_path / "a.yaml"
    y.write_text("routes: []\n#END\n")
    write_doc_atomically(str(y), {"routes": [{"id": "1", "uri": "/a"}]})
    assert y.read_text().rstrip().endswith("#END")
    assert read_file(str(y)) == {"routes": [{"id": "1", "uri": "/a"}]}
    j = tmp_path / "a.json"
    write_doc_atomically(str(j), {"routes": [{"id": "1"}]})
    assert json.loads(j.read_text()) == {"routes": [{"id": "1"}]}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# -- beyond the basics ---------------------------------------------------------------------
def test_credentials_live_under_their_consumer_and_go_with_it(admin: Admin) -> None:
    assert admin.call("PUT", "/consumers/jack/credentials/c1", {"plugins": {}})[:2] == \
        (404, {"error_msg": "consumer not found"})
    admin.call("PUT", "/consumers", {"username": "jack"})
    status, body, _ = admin.call("PUT", "/consumers/jack/credentials/c1",
                                 {"desc": "first", "plugins": {}})
    assert status == 201 and body["key"] == "/apisix/consumers/jack/credentials/c1"
    assert body["value"]["id"] == "c1"
    status, lst, _ = admin.call("GET", "/consumers/jack/credentials")
    assert status == 200 and [n["key"] for n in lst["list"]] == \
        ["/apisix/consumers/jack/credentials/c1"]
    # credentials are not consumers
    assert admin.call("GET", "/consumers")[1]["total"] == 1
    assert admin.call("DELETE", "/consumers/jack")[0] == 200
    assert admin.call("GET", "/consumers/jack/credentials/c1")[0] == 404


def test_list_filters_name_label_uri_and_field(admin: Admin) -> None:
    admin.call("PUT", "/upstreams/u1", UP)
    admin.call("PUT", "/routes/1", route("/shop/cart", name="cart-api",
                                         labels={"team": "shop", "env": "prod"}))
    admin.call("PUT", "/routes/2", {"uri": "/users", "upstream_id": "u1", "name": "users",
                                    "labels": {"team": "id"}})

    def ids(q: str) -> list[str]:
        return [n["value"]["id"] for n in admin.call("GET", "/routes?" + q)[1]["list"]]
    assert ids("name=cart") == ["1"]
    assert ids("label=team") == ["1", "2"]
    assert ids("label=team:id") == ["2"]
    assert ids("uri=shop") == ["1"]
    assert ids("filter=upstream_id%3Du1") == ["2"]


def test_ttl_puts_expire(admin: Admin) -> None:
    assert admin.call("PUT", "/routes/1?ttl=abc", route())[0] == 400
    assert admin.call("PUT", "/routes/1?ttl=1", route())[0] == 201
    assert admin.call("GET", "/routes/1")[0] == 200
    deadline = time.monotonic() + 5
    while admin.call("GET", "/routes/1")[0] == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert admin.call("GET", "/routes/1")[0] == 404


def test_batch_applies_all_or_nothing_in_one_revision(admin: Admin) -> None:
    ops = [{"method": "PUT", "path": "/upstreams/u1", "body": UP},
           {"method": "PUT", "path": "/routes/1", "body": {"uri": "/a", "upstream_id": "u1"}},
           {"method": "PATCH", "path": "/routes/1", "body": {"name": "a"}}]
    status, body, _ = admin.call("POST", "/batch", {"operations": ops})
    assert status == 200 and [r["status"] for r in body["results"]] == [201, 201, 200]
    one = admin.call("GET", "/routes/1")[1]
    assert one["value"]["name"] == "a"
    assert one["modifiedIndex"] == admin.call("GET", "/upstreams/u1")[1]["modifiedIndex"]
    bad = [{"method": "PUT", "path": "/routes/2", "body": route("/b")},
           {"method": "DELETE", "path": "/upstreams/u1"}]          # still used by route 1
    status, body, _ = admin.call("POST", "/batch", {"operations": bad})
    assert status == 400 and body["error_msg"].startswith("operations[1]")
    assert admin.call("GET", "/routes/2")[0] == 404
    assert admin.call("POST", "/batch", {"operations": []})[0] == 400
    assert admin.call("POST", "/batch", {"operations": [{"method": "GET",
                                                          "path": "/routes"}]})[0] == 400


def test_concurrent_conflicting_writes_never_lose_an_update(admin: Admin) -> None:
    admin.call("PUT", "/routes/1", route())
    state = admin.hub.state
    # two writers read the same version; the second one to commit is refused
    from pylon.admin.resources import View
    from pylon.model.kinds import SPECS

    async def race() -> list[int]:
        res = admin.app.resources
        plans = [res.plan_patch(View(state), SPECS["routes"], "1", "", {"name": n})
                 for n in ("first", "second")]
        out = []
        for p in plans:
            reply = await answer(admin.app._commit(p, "PATCH", "/routes/1", "t", None))
            out.append(reply[0])
        return out

    statuses = asyncio.run_coroutine_threadsafe(race(), admin.loop).result(5)
    assert statuses == [200, 503]
    assert admin.call("GET", "/routes/1")[1]["value"]["name"] == "first"


def test_a_request_overtaken_by_another_write_is_planned_again_on_the_newer_state(
        admin: Admin) -> None:
    admin.call("PUT", "/routes/1", route())
    from pylon.admin.resources import View
    from pylon.model.kinds import SPECS

    async def race() -> tuple[int, Any]:
        res = admin.app.resources
        other = res.plan_patch(View(admin.hub.state), SPECS["routes"], "1", "",
                               {"desc": "other writer"})
        # the other write takes the store first; the request plans on the state before it
        # and its commit conflicts -- it is planned again, and merges onto the new value
        first = asyncio.ensure_future(admin.hub.commit(other.ops))
        mine = asyncio.ensure_future(admin.app.handle(
            "PATCH", "/apisix/admin/routes/1", "", {"x-api-key": ADMIN},
            b'{"name": "mine"}', "127.0.0.1"))
        await first
        return await mine

    status, body = asyncio.run_coroutine_threadsafe(race(), admin.loop).result(5)
    assert status == 200
    value = admin.call("GET", "/routes/1")[1]["value"]
    assert value["name"] == "mine" and value["desc"] == "other writer"


def test_every_write_is_audited_without_secrets(tmp_path: Path) -> None:
    audit = tmp_path / "audit.log"
    a = Admin(tmp_path / "p.yaml", {"routes": []}, audit=audit)
    try:
        a.call("PUT", "/routes/1", route())
        assert a.call("PUT", "/ssls/1", {"cert": CERT, "key": PKEY, "snis": ["a"]})[0] == 201
        a.call("DELETE", "/routes/1")
        a.call("GET", "/routes")
    finally:
        a.close()
    lines = [json.loads(x) for x in audit.read_text().splitlines()]
    assert [(x["method"], x["path"]) for x in lines] == [
        ("PUT", "/apisix/admin/routes/1"), ("PUT", "/apisix/admin/ssls/1"),
        ("DELETE", "/apisix/admin/routes/1")]
    assert lines[0]["key_name"] == "admin" and lines[0]["changes"][0]["before"] is None
    assert lines[2]["changes"][0]["after"] is None
    assert PKEY.splitlines()[1] not in audit.read_text()


def test_ssl_private_keys_are_encrypted_at_rest_and_never_returned(tmp_path: Path) -> None:
    from pylon.config.encryption import Keyring
    pem = PKEY
    a = Admin(tmp_path / "p.yaml", {"routes": []})
    kr = Keyring(["0123456789abcdef"])
    a.node.keyring = kr
    try:
        status, body, _ = a.call("PUT", "/ssls/1", {"cert": CERT, "key": pem, "snis": ["a"]})
        assert status == 201 and "key" not in body["value"]
        assert "PRIVATE KEY" not in a.path.read_text()
        stored = read_file(str(a.path))["ssls"][0]["key"]
        assert kr.decrypt(stored) == pem
        # a PATCH that does not touch the key keeps it sealed once, not twice
        a.call("PATCH", "/ssls/1", {"snis": ["b"]})
        assert kr.decrypt(read_file(str(a.path))["ssls"][0]["key"]) == pem
    finally:
        a.close()
