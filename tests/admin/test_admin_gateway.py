"""The Admin API of a running node: served by the master, writes go live on every worker."""

from __future__ import annotations

import http.client
import json
import os
import re
import stat
import time
from pathlib import Path

from tests.harness import free_port, route_doc


def admin(port: int, method: str, path: str, body: object = None, key: str | None = None
          ) -> tuple[int, dict]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"X-API-KEY": key} if key else {}
        data = json.dumps(body).encode() if body is not None else None
        c.request(method, path, body=data, headers=headers)
        r = c.getresponse()
        raw = r.read()
        assert r.getheader("X-API-VERSION") == "v3"
        return r.status, json.loads(raw) if raw else {}
    finally:
        c.close()


def admin_node(port: int, **admin_cfg: object) -> dict:
    return {"pylon": {"enable_admin": True},
            "deployment": {"admin": {"admin_listen": {"ip": "127.0.0.1", "port": port},
                                     **admin_cfg}}}


def wait_status(gw, path: str, status: int, timeout: float = 3.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if gw.get(path)[0] == status:
            return time.monotonic() - t0
        time.sleep(0.02)
    raise AssertionError(f"{path} never answered {status}")


def test_route_put_through_the_admin_api_serves_on_every_worker(gateway_factory, upstream):
    port = free_port()
    gw = gateway_factory(route_doc([upstream], uri="/old"), workers=2,
                         node=admin_node(port, admin_key=[{"name": "ops", "key": "k" * 32}]))
    route = {"uri": "/new/*", "upstream": {"nodes": {upstream.addr: 1}}}
    status, body = admin(port, "PUT", "/apisix/admin/routes/r2", route, key="k" * 32)
    assert status == 201 and body["key"] == "/apisix/routes/r2"
    assert wait_status(gw, "/new/x", 200) < 1.5
    for _ in range(10):                       # both workers have it
        assert gw.get("/new/y")[0] == 200
    # the file store holds it, so a restart would keep it
    assert "/new/*" in Path(gw.doc_path).read_text()
    status, body = admin(port, "GET", "/apisix/admin/routes", key="k" * 32)
    assert status == 200 and body["total"] == 2
    status, body = admin(port, "DELETE", "/apisix/admin/routes/r2", key="k" * 32)
    assert status == 200 and body == {"deleted": "1", "key": "/apisix/routes/r2"}
    wait_status(gw, "/new/x", 404)


def test_invalid_route_is_refused_with_its_field_path_and_nothing_changes(gateway_factory,
                                                                          upstream):
    port = free_port()
    gw = gateway_factory(route_doc([upstream], uri="/a"),
                         node=admin_node(port, admin_key=[{"key": "secret-key-1234"}]))
    before = Path(gw.doc_path).read_text()
    status, body = admin(port, "PUT", "/apisix/admin/routes/bad",
                         {"uri": "/b", "upstream": {"nodes": [{"host": "h", "port": "x"}]}},
                         key="secret-key-1234")
    assert (status, body) == (400, {"error_msg": 'invalid configuration: property "upstream"'
                                    ' validation failed: property "nodes" validation failed:'
                                    ' object matches none of the required'})
    assert Path(gw.doc_path).read_text() == before
    assert gw.get("/a")[0] == 200


def test_without_a_configured_key_one_is_generated_stored_and_printed_once(gateway_factory,
                                                                          upstream):
    port = free_port()
    gw = gateway_factory(route_doc([upstream]), node=admin_node(port))
    m = re.search(r"generated an Admin API key .*?\n\n\s+([0-9a-f]{40})\n", gw.log(), re.S)
    assert m, gw.log()
    key = m.group(1)
    text = Path(gw.conf_path).read_text()
    assert key in text
    assert stat.S_IMODE(os.stat(gw.conf_path).st_mode) == 0o600
    assert admin(port, "GET", "/apisix/admin/routes")[0] == 401
    assert admin(port, "GET", "/apisix/admin/routes", key="wrong")[0] == 401
    assert admin(port, "GET", "/apisix/admin/routes", key=key)[0] == 200
    # the key is never written to the error log file
    err = os.path.join(gw.prefix, "logs", "error.log")
    assert key not in Path(err).read_text()


def test_viewer_key_reads_but_cannot_write(gateway_factory, upstream):
    port = free_port()
    gateway_factory(route_doc([upstream]), node=admin_node(
        port, admin_key=[{"key": "admin-key-123456", "role": "admin"},
                         {"name": "ro", "key": "viewer-key-12345", "role": "viewer"}]))
    assert admin(port, "GET", "/apisix/admin/routes", key="viewer-key-12345")[0] == 200
    status, body = admin(port, "PUT", "/apisix/admin/routes/x", {"uri": "/x"},
                         key="viewer-key-12345")
    assert status == 401 and body["error_msg"] == "failed to check token"


def test_pylon_admin_cli_round_trip(gateway_factory, upstream, tmp_path):
    import subprocess
    import sys

    port = free_port()
    gw = gateway_factory(route_doc([upstream], uri="/a"),
                         node=admin_node(port, admin_key=[{"key": "cli-key-123456789"}]))
    body = tmp_path / "route.yaml"
    body.write_text(f"uri: /cli/*\nupstream:\n  nodes:\n    \"{upstream.addr}\": 1\n")

    def pylon(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pylon.cli", "admin", *args, "-p",
                               gw.prefix], capture_output=True, check=False, text=True, timeout=30)

    r = pylon("put", "routes", "c1", "-f", str(body))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["key"] == "/apisix/routes/c1"
    wait_status(gw, "/cli/x", 200)
    r = pylon("list", "routes")
    assert r.returncode == 0 and json.loads(r.stdout)["total"] == 2
    r = pylon("get", "routes", "nope")
    assert r.returncode == 1 and json.loads(r.stdout) == {"message": "Key not found"}
    r = pylon("delete", "routes", "c1")
    assert r.returncode == 0
    wait_status(gw, "/cli/x", 404)


def test_explain_asks_a_live_worker_and_the_cli_prints_it(gateway_factory, upstream):
    import subprocess
    import sys
    port = free_port()
    doc = {"routes": [
        {"id": "any", "uri": "/api/*", "upstream": {"nodes": {upstream.addr: 1}}},
        {"id": "post", "uri": "/api/users", "methods": ["POST"],
         "upstream": {"nodes": {upstream.addr: 1}}}]}
    gw = gateway_factory(doc, node=admin_node(port, admin_key=[{"key": "x" * 24}]))
    status, body = admin(port, "GET", "/apisix/admin/explain?method=GET&uri=/api/users",
                         key="x" * 24)
    assert status == 200 and body["matched"]["route_id"] == "any"
    post = next(c for c in body["candidates"] if c["route_id"] == "post")
    assert post["result"] == "not matched" and "method GET" in post["reasons"][0]
    assert admin(port, "GET", "/apisix/admin/explain", key="x" * 24)[0] == 400
    out = subprocess.run([sys.executable, "-m", "pylon.cli", "explain", "POST", "/api/users",
                          "-p", gw.prefix, "--key", "x" * 24], capture_output=True, check=False,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "=> route post on /api/users" in out.stdout
