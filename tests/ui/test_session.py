"""The dashboard's sign-in and CSRF rules over plain HTTP (no browser): the key is
exchanged for an HttpOnly SameSite=Strict session cookie, writes need the CSRF token, a
viewer session cannot write, sign-out ends the session, scripts keep using X-API-KEY."""

from __future__ import annotations

import gzip
import re

from pylon.admin.auth import AdminKey
from pylon.admin.ui import Sessions
from tests.harness import free_port

from .conftest import ADMIN_KEY, VIEWER_KEY, Dashboard, dashboard_node

UPSTREAM = {"nodes": {"127.0.0.1:1980": 1}, "type": "roundrobin"}


def test_sign_in_sets_an_httponly_samesite_strict_cookie_with_a_lifetime(dashboard: Dashboard):
    r = dashboard.call("POST", "/ui/api/session", {"key": ADMIN_KEY})
    assert r.status == 200
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("pylon_ui_session=")
    attrs = [a.strip() for a in cookie.split(";")]
    assert "HttpOnly" in attrs and "SameSite=Strict" in attrs and "Path=/" in attrs
    assert "Max-Age=3600" in attrs
    token = attrs[0].split("=", 1)[1]
    assert len(token) >= 40 and ADMIN_KEY not in cookie and ADMIN_KEY not in r.raw.decode()
    body = r.json
    assert body["role"] == "admin" and body["name"] == "ops" and len(body["csrf"]) >= 40
    assert "routes" in [k["name"] for k in body["kinds"]]


def test_a_wrong_key_is_refused_and_no_cookie_is_set(dashboard: Dashboard):
    r = dashboard.call("POST", "/ui/api/session", {"key": "x" * 32})
    assert r.status == 401 and "Set-Cookie" not in r.headers
    assert r.json["error_msg"] == "failed to check token"
    r = dashboard.call("POST", "/ui/api/session", b"not json",
                       headers={"Content-Type": "application/json"})
    assert r.status == 400 and "error_msg" in r.json
    # a form posted from another page is not a sign-in, even with the right key
    r = dashboard.call("POST", "/ui/api/session", f'{{"key": "{ADMIN_KEY}"}}'.encode(),
                       headers={"Content-Type": "text/plain"})
    assert r.status == 400 and "Set-Cookie" not in r.headers


def test_admin_api_with_the_session_cookie_reads_and_writes_with_the_csrf_token(
        dashboard: Dashboard):
    cookie, csrf = dashboard.sign_in()
    r = dashboard.call("GET", "/apisix/admin/upstreams", headers={"Cookie": cookie})
    assert r.status == 200 and r.json["total"] == 0
    # a write without the token, or with a wrong one, is refused and changes nothing
    r = dashboard.call("PUT", "/apisix/admin/upstreams/u1", UPSTREAM, headers={"Cookie": cookie})
    assert r.status == 403 and "CSRF" in r.json["error_msg"]
    r = dashboard.call("PUT", "/apisix/admin/upstreams/u1", UPSTREAM,
                       headers={"Cookie": cookie, "X-CSRF-Token": csrf[:-1] + "x"})
    assert r.status == 403
    assert dashboard.call("GET", "/apisix/admin/upstreams",
                          headers={"Cookie": cookie}).json["total"] == 0
    r = dashboard.call("PUT", "/apisix/admin/upstreams/u1", UPSTREAM,
                       headers={"Cookie": cookie, "X-CSRF-Token": csrf})
    assert r.status == 201, r.raw
    # the audit log names the session's key
    r = dashboard.call("GET", "/ui/api/audit", headers={"Cookie": cookie})
    assert r.status == 200 and r.json["total"] == 1
    entry = r.json["list"][0]
    assert entry["key_name"] == "ops" and entry["method"] == "PUT"
    assert entry["changes"][0]["after"]["nodes"] == UPSTREAM["nodes"]


def test_a_viewer_session_reads_but_cannot_write(dashboard: Dashboard):
    cookie, csrf = dashboard.sign_in(VIEWER_KEY)
    assert dashboard.call("GET", "/apisix/admin/routes", headers={"Cookie": cookie}).status == 200
    r = dashboard.call("PUT", "/apisix/admin/upstreams/u1", UPSTREAM,
                       headers={"Cookie": cookie, "X-CSRF-Token": csrf})
    assert r.status == 403 and r.json["error_msg"] == "the viewer role is read-only"
    r = dashboard.call("GET", "/apisix/admin/upstreams", headers={"X-API-KEY": ADMIN_KEY})
    assert r.json["total"] == 0


def test_sign_out_ends_the_session(dashboard: Dashboard):
    cookie, csrf = dashboard.sign_in()
    assert dashboard.call("GET", "/ui/api/session", headers={"Cookie": cookie}).status == 200
    r = dashboard.call("DELETE", "/ui/api/session", headers={"Cookie": cookie})
    assert r.status == 403                   # signing out is a write: it needs the token
    r = dashboard.call("DELETE", "/ui/api/session",
                       headers={"Cookie": cookie, "X-CSRF-Token": csrf})
    assert r.status == 200 and "Max-Age=0" in r.headers["Set-Cookie"]
    assert dashboard.call("GET", "/ui/api/session", headers={"Cookie": cookie}).status == 401
    r = dashboard.call("GET", "/apisix/admin/routes", headers={"Cookie": cookie})
    assert r.status == 401 and r.json["error_msg"] == "failed to check token"


def test_scripts_keep_using_x_api_key_unchanged(dashboard: Dashboard):
    r = dashboard.call("PUT", "/apisix/admin/upstreams/u1", UPSTREAM,
                       headers={"X-API-KEY": ADMIN_KEY})
    assert r.status == 201
    assert dashboard.call("GET", "/apisix/admin/routes").status == 401
    r = dashboard.call("PUT", "/apisix/admin/upstreams/u2", UPSTREAM,
                       headers={"X-API-KEY": VIEWER_KEY})
    assert r.status == 401 and r.json["description"] == "invalid method for role viewer"


def test_ui_api_needs_a_session(dashboard: Dashboard):
    for path in ("/ui/api/session", "/ui/api/metrics", "/ui/api/health", "/ui/api/audit"):
        r = dashboard.call("GET", path)
        assert r.status == 401 and r.json["error_msg"] == "failed to check token", path
    r = dashboard.call("GET", "/ui/api/metrics", headers={"X-API-KEY": ADMIN_KEY})
    assert r.status == 401                   # the UI's own endpoints take the session only


def test_the_page_is_served_gzipped_with_a_strict_csp_and_under_300_kib(dashboard: Dashboard):
    r = dashboard.call("GET", "/ui")
    assert r.status == 301 and r.headers["Location"] == "/ui/"
    r = dashboard.call("GET", "/ui/", headers={"Accept-Encoding": "gzip"})
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/html")
    assert r.headers["Content-Encoding"] == "gzip"
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    html = gzip.decompress(r.raw).decode()
    assert "<script" in html and "http" not in html.replace("http-equiv", "")   # no CDN
    total = len(r.raw)
    for asset in re.findall(r'(?:src|href)="(/ui/assets/[^"]+)"', html):
        a = dashboard.call("GET", asset, headers={"Accept-Encoding": "gzip"})
        assert a.status == 200, asset
        total += len(a.raw)
    assert 0 < total < 300 * 1024, total
    print(f"dashboard first load: {total} bytes gzip'd")
    assert dashboard.call("GET", "/ui/assets/nope.js").status == 404


def test_the_dashboard_is_off_with_enable_admin_ui_false(gateway_factory):
    port = free_port()
    gw = gateway_factory({}, node=dashboard_node(port, enable_admin_ui=False))
    d = Dashboard(gw, port)
    assert d.call("GET", "/ui/").status == 404
    assert d.call("POST", "/ui/api/session", {"key": ADMIN_KEY}).status == 404
    assert d.call("GET", "/apisix/admin/routes", headers={"X-API-KEY": ADMIN_KEY}).status == 200


def test_sessions_expire_after_their_lifetime():
    now = [1000.0]
    s = Sessions(60, clock=lambda: now[0])
    token, sess = s.open(AdminKey("ops", "k", "admin"))
    assert s.find(token) is sess and s.find(token + "x") is None
    now[0] += 59
    assert s.find(token) is sess
    now[0] += 2
    assert s.find(token) is None and not s.by_digest


def test_metrics_text_is_summarized_per_route():
    from pylon.admin.ui import summarize

    text = """# TYPE apisix_http_status counter
apisix_http_status{code="200",route="r1",node="n"} 7
apisix_http_status{code="502",route="r1",node="n"} 1
apisix_http_status{code="404",route=""} 2
apisix_http_latency_bucket{type="request",route="r1",node="n",le="1"} 3
apisix_http_latency_bucket{type="request",route="r1",node="n",le="5"} 8
apisix_http_latency_bucket{type="request",route="r1",node="n",le="+Inf"} 8
apisix_http_latency_bucket{type="upstream",route="r1",node="n",le="1"} 99
"""
    rows = {r["route"]: r for r in summarize(text, "apisix_")}
    assert rows["r1"]["total"] == 8 and rows["r1"]["status"]["2xx"] == 7
    assert rows["r1"]["status"]["5xx"] == 1
    assert rows["r1"]["buckets"] == [1.0, 5.0] and rows["r1"]["counts"] == [3, 8, 8]
    assert rows[""]["status"]["4xx"] == 2 and rows[""]["counts"] == [0]


def test_a_node_with_keys_asks_for_one(dashboard: Dashboard):
    r = dashboard.call("GET", "/ui/api/sign-in")
    assert r.status == 200 and r.json == {"key_required": True}
    r = dashboard.call("POST", "/ui/api/session", {})
    assert r.status == 400 and "Set-Cookie" not in r.headers and "key" in r.json["error_msg"]
    assert dashboard.call("GET", "/ui/api/session").status == 401
    assert dashboard.call("POST", "/ui/api/session", {"key": ""}).status == 400


def test_a_keyless_node_opens_a_session_without_a_key_and_still_wants_the_csrf_token(
        keyless: Dashboard):
    r = keyless.call("GET", "/ui/api/sign-in")
    assert r.status == 200 and r.json == {"key_required": False}
    r = keyless.call("POST", "/ui/api/session", {})
    assert r.status == 200, r.raw
    attrs = [a.strip() for a in r.headers["Set-Cookie"].split(";")]
    assert attrs[0].startswith("pylon_ui_session=") and len(attrs[0]) > 40
    assert "HttpOnly" in attrs and "SameSite=Strict" in attrs
    body = r.json
    assert body["key_required"] is False and body["role"] == "admin"
    assert body["name"] == "anonymous" and len(body["csrf"]) >= 40
    cookie, csrf = attrs[0], body["csrf"]
    assert keyless.call("GET", "/ui/api/session", headers={"Cookie": cookie}).json[
        "key_required"] is False
    # a write through the session needs the CSRF token, as on a node with keys
    r = keyless.call("PUT", "/apisix/admin/upstreams/u1", UPSTREAM, headers={"Cookie": cookie})
    assert r.status == 403 and "CSRF" in r.json["error_msg"]
    assert keyless.call("GET", "/apisix/admin/upstreams/u1",
                        headers={"Cookie": cookie}).status == 404
    r = keyless.call("PUT", "/apisix/admin/upstreams/u1", UPSTREAM,
                     headers={"Cookie": cookie, "X-CSRF-Token": csrf})
    assert r.status == 201, r.raw
    # a form posted from another page opens nothing; a signed-out session is gone
    r = keyless.call("POST", "/ui/api/session", b"{}", headers={"Content-Type": "text/plain"})
    assert r.status == 400 and "Set-Cookie" not in r.headers
    assert keyless.call("DELETE", "/ui/api/session", headers={"Cookie": cookie}).status == 403
    r = keyless.call("DELETE", "/ui/api/session", headers={"Cookie": cookie, "X-CSRF-Token": csrf})
    assert r.status == 200
    r = keyless.call("PUT", "/apisix/admin/upstreams/u2", UPSTREAM,
                     headers={"Cookie": cookie, "X-CSRF-Token": csrf})
    assert r.status == 401 and keyless.call("GET", "/ui/api/metrics",
                                            headers={"Cookie": cookie}).status == 401
