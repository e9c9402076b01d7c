"""forward-auth through a real gateway and a real authorization service (a thread)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pylon.pdk.testing import Kit, free_port
from pylon.proxy import registry


class _Auth(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def _reply(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        rec = {"method": self.command, "path": self.path, "body": body.decode(),
               "headers": {k.lower(): v for k, v in self.headers.items()},
               "port": self.client_address[1]}
        self.server.seen.append(rec)
        auth = self.headers.get("Authorization", "")
        if self.path.startswith("/slow"):
            time.sleep(2)
            self._reply(200, b"", [])
        elif self.path.startswith("/body"):
            if b"allow" in body:
                self._reply(200, b"", [("X-User-ID", "poster")])
            else:
                self._reply(401, b"body says no", [])
        elif auth == "Bearer good":
            self._reply(200, b"ignored", [("X-User-ID", "i-am-user"), ("X-Consumer", "jack"),
                                          ("X-Multi", "a"), ("X-Multi", "b")])
        elif auth == "Bearer ghost":
            self._reply(200, b"", [("X-Consumer", "nobody")])
        elif auth == "Bearer redirect":
            self._reply(302, b"", [("Location", "http://login.example/?next=x")])
        else:
            self._reply(403, b"forbidden by the auth service",
                        [("X-Reason", "bad token"), ("X-Internal", "secret"),
                         ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])

    do_GET = do_POST = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass                    # a client gone after a timeout: expected here


@pytest.fixture(scope="module")
def auth():
    srv = _Server(("127.0.0.1", 0), _Auth)
    srv.seen = []  # type: ignore[attr-defined]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _doc(auth_port: int) -> dict[str, Any]:
    base = f"http://127.0.0.1:{auth_port}"
    dead = f"http://127.0.0.1:{free_port()}/auth"
    return {
        "consumers": [{"username": "jack"}],
        "routes": [
            {"id": "main", "uri": "/main/*", "plugins": {"forward-auth": {
                "uri": base + "/auth", "request_headers": ["Authorization"],
                "upstream_headers": ["X-User-ID", "X-Multi"],
                "client_headers": ["X-Reason", "Location", "Set-Cookie"]}}},
            {"id": "post", "uri": "/post", "plugins": {"forward-auth": {
                "uri": base + "/body", "request_method": "POST",
                "upstream_headers": ["X-User-ID"]}}},
            {"id": "dead", "uri": "/dead", "plugins": {"forward-auth": {"uri": dead}}},
            {"id": "dead503", "uri": "/dead503", "plugins": {"forward-auth": {
                "uri": dead, "status_on_error": 503}}},
            {"id": "degrade", "uri": "/degrade", "plugins": {"forward-auth": {
                "uri": dead, "allow_degradation": True}}},
            {"id": "slow", "uri": "/slow", "plugins": {"forward-auth": {
                "uri": base + "/slow", "timeout": 300}}},
            {"id": "extra", "uri": "/extra", "plugins": {"forward-auth": {
                "uri": base + "/auth",
                "extra_headers": {"X-Client": "$remote_addr", "X-Req": "uri=${request_uri}",
                                  "X-Lit": "plain", "Authorization": "Bearer good",
                                  "X-Missing": "[$no_such_var]"}}}},
            {"id": "consumer", "uri": "/consumer", "plugins": {"forward-auth": {
                "uri": base + "/auth", "request_headers": ["Authorization"],
                "consumer_header": "X-Consumer"}}},
        ],
    }


@pytest.fixture(scope="module")
def kit(auth):
    with Kit(_doc(auth.server_address[1])) as k:
        yield k


def last_auth(auth: Any) -> dict[str, Any]:
    return auth.seen[-1]  # type: ignore[no-any-return]


def test_allowed_request_reaches_upstream_with_auth_response_headers(kit, auth):
    r = kit.get("/main/x?q=1", headers={"Authorization": "Bearer good"})
    assert r.status == 200
    up = r.json()["headers"]
    assert up["x-user-id"] == "i-am-user"
    assert up["x-multi"] == "a, b"
    assert "x-consumer" not in up            # not listed in upstream_headers


def test_auth_service_gets_forwarded_headers_and_request_headers(kit, auth):
    kit.get("/main/a/b?x=1&y=2", headers={"Authorization": "Bearer good",
                                          "X-Other": "not-forwarded"})
    h = last_auth(auth)["headers"]
    assert last_auth(auth)["method"] == "GET"
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-method"] == "GET"
    assert h["x-forwarded-host"] == "127.0.0.1"
    assert h["x-forwarded-uri"] == "/main/a/b?x=1&y=2"
    assert h["x-forwarded-for"] == "127.0.0.1"
    assert h["authorization"] == "Bearer good"
    assert "x-other" not in h


def test_client_cannot_spoof_an_upstream_header_the_service_did_not_set(kit):
    r = kit.get("/main/x", headers={"Authorization": "Bearer good", "X-Multi": "forged"})
    assert r.json()["headers"]["x-multi"] == "a, b"
    r = kit.get("/main/x", headers={"Authorization": "Bearer good", "X-User-ID": "admin"})
    assert r.json()["headers"]["x-user-id"] == "i-am-user"


def test_denied_request_gets_the_service_status_body_and_client_headers(kit):
    r = kit.get("/main/x", headers={"Authorization": "Bearer bad"})
    assert r.status == 403
    assert r.body == b"forbidden by the auth service"
    assert r.headers["x-reason"] == "bad token"
    assert "x-internal" not in r.headers
    assert [v for k, v in r.header_list if k.lower() == "set-cookie"] == ["a=1", "b=2"]


def test_denied_request_never_reaches_upstream(kit):
    before = len(kit.upstream.requests)
    kit.get("/main/x")
    assert len(kit.upstream.requests) == before


def test_redirect_from_the_service_is_passed_to_the_client(kit):
    r = kit.get("/main/x", headers={"Authorization": "Bearer redirect"})
    assert r.status == 302
    assert r.headers["location"] == "http://login.example/?next=x"


def test_post_method_forwards_the_request_body(kit, auth):
    r = kit.post("/post", body="please allow me", headers={"Content-Type": "text/plain"})
    assert r.status == 200
    assert last_auth(auth)["method"] == "POST"
    assert last_auth(auth)["body"] == "please allow me"
    assert last_auth(auth)["headers"]["content-length"] == str(len("please allow me"))
    up = r.json()
    assert up["body"] == "please allow me"              # still sent upstream
    assert up["headers"]["x-user-id"] == "poster"
    r = kit.post("/post", body="deny")
    assert (r.status, r.body) == (401, b"body says no")


def test_unreachable_service_is_403_by_default(kit):
    r = kit.get("/dead")
    assert r.status == 403


def test_status_on_error_is_used_when_the_service_fails(kit):
    assert kit.get("/dead503").status == 503


def test_allow_degradation_lets_the_request_through(kit):
    r = kit.get("/degrade")
    assert r.status == 200
    assert r.json()["path"] == "/degrade"


def test_timeout_in_milliseconds_bounds_the_call(kit):
    t0 = time.monotonic()
    r = kit.get("/slow")
    assert r.status == 403
    assert time.monotonic() - t0 < 1.5


def test_extra_headers_resolve_variables(kit, auth):
    r = kit.get("/extra?k=v")
    assert r.status == 200
    h = last_auth(auth)["headers"]
    assert h["x-client"] == "127.0.0.1"
    assert h["x-req"] == "uri=/extra?k=v"
    assert h["x-lit"] == "plain"
    assert h["x-missing"] == "[]"


def test_consumer_header_attaches_the_named_consumer(kit):
    r = kit.get("/consumer", headers={"Authorization": "Bearer good"})
    assert r.status == 200
    assert r.json()["headers"]["x-consumer-username"] == "jack"
    r = kit.get("/consumer", headers={"Authorization": "Bearer ghost"})
    assert (r.status, r.text) == (403, "consumer not found")


def test_keepalive_reuses_the_connection_to_the_service(kit, auth):
    ports = []
    for _ in range(3):
        kit.get("/main/x", headers={"Authorization": "Bearer good"})
        ports.append(last_auth(auth)["port"])
    assert len(set(ports)) == 1


def test_schema_defaults_and_validation():
    spec = registry.load(["forward-auth"]).get("forward-auth")
    assert spec is not None and spec.priority == 2002
    conf = spec.check_conf({"uri": "http://auth.local/verify"})
    assert conf["timeout"] == 3000
    assert conf["status_on_error"] == 403
    assert conf["request_method"] == "GET"
    assert conf["ssl_verify"] is True and conf["keepalive"] is True
    assert conf["keepalive_timeout"] == 60000 and conf["keepalive_pool"] == 5
    assert conf["allow_degradation"] is False
    for bad in ({}, {"uri": "http://a", "request_method": "PUT"},
                {"uri": "http://a", "timeout": 0}, {"uri": "http://a", "status_on_error": 700},
                {"uri": "http://a", "extra_headers": {}}, {"uri": "ftp://a"}):
        with pytest.raises(registry.PluginConfigError):
            spec.check_conf(bad)
    assert json.dumps(spec.info()["schema"])       # published as APISIX does


def test_no_plugin_failure_in_the_gateway_log(kit):
    log = kit.log()
    assert "Traceback" not in log and "plugin_failed" not in log
