"""The dashboard end to end in headless Chromium (Debian's ``chromium``, driven by Playwright
for Python; no browser download): sign in, create an upstream and a route through the
forms, send a request through the gateway and see it in the live view, explain it, edit and
delete (the reference check and ``force``), a bad value shown at its field, the audit log,
and a viewer key's read-only UI.  Screenshots of the main pages go to ``tests/ui/artifacts``
(gitignored; the path is printed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import ADMIN_KEY, VIEWER_KEY, Dashboard

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "artifacts")
WAIT_MS = 10_000

sync_api = pytest.importorskip("playwright.sync_api")
if not os.path.exists(CHROMIUM):
    pytest.skip("Debian's chromium is not installed (scripts/test installs it)",
                allow_module_level=True)


@pytest.fixture
def browser() -> Iterator[Any]:
    profile = tempfile.mkdtemp(prefix="pylon-ui-chromium-")
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True,
            viewport={"width": 1366, "height": 768},
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"])
        ctx.set_default_timeout(WAIT_MS)
        try:
            yield ctx
        finally:
            ctx.close()
            shutil.rmtree(profile, ignore_errors=True)


def shot(page: Any, name: str) -> None:
    os.makedirs(ARTIFACTS, exist_ok=True)
    path = os.path.join(ARTIFACTS, f"{name}.png")
    page.screenshot(path=path, full_page=True)
    print(f"screenshot: {path}")


def sign_in(ctx: Any, d: Dashboard, key: str) -> Any:
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # script errors only: a refused request (401 before sign-in, 400 on a bad value) is
    # logged by the browser as "Failed to load resource" and is expected
    page.on("console", lambda m: errors.append(m.text) if m.type == "error"
            and not m.text.startswith("Failed to load resource") else None)
    page.goto(d.url)
    page.get_by_label("Admin API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign out").wait_for()
    page.errors = errors                     # type: ignore[attr-defined]
    return page


def wait_gateway(d: Dashboard, path: str, status: int) -> None:
    deadline = time.monotonic() + 5
    while d.gw.get(path)[0] != status:
        assert time.monotonic() < deadline, f"{path} never answered {status}"
        time.sleep(0.05)


def test_admin_creates_routes_through_forms_and_watches_them_live(
        browser: Any, dashboard: Dashboard, upstream: Any, upstream_factory: Any) -> None:
    expect = sync_api.expect
    page = browser.new_page()
    page.goto(dashboard.url)
    expect(page.get_by_label("Admin API key")).to_be_visible()
    shot(page, "sign-in")
    page.get_by_label("Admin API key").fill("wrong" * 8)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong key.")
    page.close()

    page = sign_in(browser, dashboard, ADMIN_KEY)
    # the key is in no URL and in neither storage; the cookie is HttpOnly
    assert ADMIN_KEY not in page.url
    assert page.evaluate("JSON.stringify(localStorage) + JSON.stringify(sessionStorage)") \
        in ("{}{}",)
    assert page.evaluate("document.cookie") == ""
    cookie = next(c for c in browser.cookies() if c["name"] == "pylon_ui_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    # an upstream through the form
    page.get_by_role("link", name="Upstreams", exact=True).click()
    page.get_by_role("link", name="Create", exact=True).click()
    page.get_by_label("ID (empty: generated)").fill("web")
    page.get_by_label("name", exact=True).fill("web servers")
    page.get_by_label("nodes", exact=True).fill(f'{{"{upstream.addr}": 1}}')
    page.get_by_label("type", exact=True).select_option("roundrobin")
    raw = {"name": "web servers", "nodes": {upstream.addr: 1}, "type": "roundrobin"}
    expect(page.get_by_label("Raw JSON")).to_have_value(json.dumps(raw, indent=2))
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Saved web.")
    expect(page.locator("tr[data-id=web]")).to_contain_text("roundrobin")

    # a route through the form, with the prometheus plugin for the live view
    page.get_by_role("link", name="Routes", exact=True).click()
    page.get_by_role("link", name="Create", exact=True).click()
    page.get_by_label("ID (empty: generated)").fill("hello")
    page.get_by_label("uri", exact=True).fill("/hello")
    page.get_by_label("GET", exact=True).check()
    page.get_by_label("upstream_id", exact=True).fill("web")
    page.get_by_label("Add a plugin").select_option("prometheus")
    # the plugin's own form, from its schema
    expect(page.locator("fieldset[data-plugin=prometheus]")).to_contain_text("prefer_name")
    expect(page.get_by_label("Raw JSON")).to_have_value(re.compile(r'"prometheus": \{\}'))
    shot(page, "route-editor")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Saved hello.")
    shot(page, "routes")

    wait_gateway(dashboard, "/hello", 200)
    for _ in range(5):
        assert dashboard.gw.get("/hello")[0] == 200

    # an upstream with health checks (made by a script: X-API-KEY works as before); one of
    # its nodes listens, the other does not
    dead = upstream_factory("dead")
    dead_addr = dead.addr
    dead.close()
    checks = {"active": {"http_path": "/", "timeout": 1,
                         "healthy": {"interval": 1, "successes": 1},
                         "unhealthy": {"interval": 1, "tcp_failures": 1, "http_failures": 1}}}
    r = dashboard.call("PUT", "/apisix/admin/upstreams/checked",
                       {"nodes": {upstream.addr: 1, dead_addr: 1}, "checks": checks},
                       headers={"X-API-KEY": ADMIN_KEY})
    assert r.status == 201, r.raw

    # the live view polls and shows the requests
    page.get_by_role("link", name="Live", exact=True).click()
    row = page.locator("#live-routes tr[data-route=hello]")
    # 5 and the one wait_gateway sent
    expect(row.locator("td.total")).to_have_text("6", timeout=15_000)
    url_before = page.url
    for _ in range(3):
        assert dashboard.gw.get("/hello")[0] == 200
    expect(row.locator("td.total")).to_have_text("9", timeout=15_000)   # no reload
    assert page.url == url_before
    expect(row).to_contain_text(" ms")
    health = page.locator("#live-health")
    expect(health.locator("tr", has_text=upstream.addr)).to_contain_text("healthy",
                                                                         timeout=15_000)
    expect(health.locator("tr", has_text=dead_addr)).to_contain_text("unhealthy",
                                                                    timeout=15_000)
    shot(page, "live")
    r = dashboard.call("DELETE", "/apisix/admin/upstreams/checked",
                       headers={"X-API-KEY": ADMIN_KEY})
    assert r.status == 200

    # explain shows the matched route
    page.get_by_role("link", name="Explain", exact=True).click()
    page.get_by_label("URL or path").fill("/hello?x=1")
    page.get_by_role("button", name="Explain").click()
    expect(page.locator("#matched")).to_contain_text("hello")
    expect(page.locator("#matched")).to_contain_text(upstream.addr.split(":")[0])
    expect(page.locator("#matched")).to_contain_text("prometheus")
    shot(page, "explain")

    # a bad value: the Admin API's error at its field
    page.get_by_role("link", name="Routes", exact=True).click()
    page.locator("tr[data-id=hello]").get_by_role("link", name="Edit", exact=True).click()
    page.get_by_label("host", exact=True).fill("bad host!")
    page.get_by_role("button", name="Save").click()
    field = page.locator("[data-field=host]")
    expect(field.locator(".field-error")).to_contain_text('property "host" validation failed')
    expect(page.get_by_label("host", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#form-error")).to_contain_text("see the field host")
    shot(page, "field-error")
    # a reference to nothing: at the reference's field
    page.get_by_label("host", exact=True).fill("")
    page.get_by_label("upstream_id", exact=True).fill("nope")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("[data-field=upstream_id] .field-error")).to_have_text(
        "failed to fetch upstream info by upstream id [nope], response code: 404")
    expect(page.locator("[data-field=host] .field-error")).to_have_count(0)
    # edit: fix it, change the uri
    page.get_by_label("upstream_id", exact=True).fill("web")
    page.get_by_label("uri", exact=True).fill("/hi")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Saved hello.")
    wait_gateway(dashboard, "/hi", 200)
    assert dashboard.gw.get("/hello")[0] == 404

    # delete: the upstream is still used by the route -> refused, force offered
    page.get_by_role("link", name="Upstreams", exact=True).click()
    page.get_by_role("button", name="Delete web").click()
    page.get_by_role("alertdialog").get_by_role("button", name="Delete", exact=True).click()
    expect(page.get_by_role("alertdialog").get_by_role("alert")).to_contain_text(
        "route [hello] is still using it")
    expect(page.get_by_role("button", name="Delete anyway (force)")).to_be_visible()
    page.get_by_role("button", name="Cancel").click()
    page.get_by_role("link", name="Routes", exact=True).click()
    page.get_by_role("button", name="Delete hello").click()
    page.get_by_role("alertdialog").get_by_role("button", name="Delete", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("Deleted hello.")
    expect(page.locator("tr[data-id=hello]")).to_have_count(0)
    wait_gateway(dashboard, "/hi", 404)
    page.get_by_role("link", name="Upstreams", exact=True).click()
    page.get_by_role("button", name="Delete web").click()
    page.get_by_role("alertdialog").get_by_role("button", name="Delete", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("Deleted web.")

    # the audit log: who, what, the diff
    page.get_by_role("link", name="Audit log", exact=True).click()
    entries = page.locator("ol.audit > li")
    expect(entries).to_have_count(7)
    expect(entries.first).to_contain_text("ops")
    expect(entries.first).to_contain_text("DELETE /apisix/admin/upstreams/web")
    edit = entries.nth(2)
    expect(edit).to_contain_text("PUT /apisix/admin/routes/hello")
    edit.locator("summary").click()
    expect(edit.locator("pre.diff")).to_contain_text('- uri: "/hello"')
    expect(edit.locator("pre.diff")).to_contain_text('+ uri: "/hi"')
    assert '- uri: "/hello"\n+ uri: "/hi"' in edit.locator("pre.diff").inner_text()
    shot(page, "audit")

    # sign out: the session is gone
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Admin API key")).to_be_visible()
    assert not [c for c in browser.cookies() if c["name"] == "pylon_ui_session" and c["value"]]
    assert page.errors == []                  # type: ignore[attr-defined]


#: WCAG 2 contrast of every visible text against its background (disabled controls exempt)
CONTRAST = """() => {
  const lum = (c) => {
    const [r, g, b] = c.match(/[\\d.]+/g).slice(0, 3).map((v) => {
      v = Number(v) / 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const bg = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const m = getComputedStyle(e).backgroundColor.match(/[\\d.]+/g);
      if (m && (m.length < 4 || Number(m[3]) > 0.5)) return getComputedStyle(e).backgroundColor;
    }
    return 'rgb(255, 255, 255)';
  };
  const bad = [];
  for (const el of document.querySelectorAll('body *')) {
    if (![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
    if (el.closest(':disabled') || !el.getClientRects().length) continue;
    const a = lum(getComputedStyle(el).color);
    const b = lum(bg(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const text = el.textContent.trim().slice(0, 30);
    if (ratio < 4.5) bad.push(`${el.tagName} ${text}: ${ratio.toFixed(2)}`);
  }
  return bad;
}"""


def test_the_dashboard_is_keyboard_usable_labelled_and_legible(
        browser: Any, dashboard: Dashboard) -> None:
    expect = sync_api.expect
    page = browser.new_page()
    page.goto(dashboard.url)
    expect(page.get_by_label("Admin API key")).to_be_focused()     # focused on arrival
    page.keyboard.type(ADMIN_KEY)
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Sign out").wait_for()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content", exact=True)).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Routes", exact=True)).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")             # Services
    expect(page.get_by_role("heading", name="Services")).to_be_visible()
    # every form control on an editor has a label
    assert page.evaluate(CONTRAST) == []
    page.goto(dashboard.url + "#/r/routes/new")
    page.get_by_label("uri", exact=True).wait_for()
    page.get_by_role("button", name="Save").click()        # an error on the page too
    page.locator("#form-error").wait_for()
    assert page.evaluate(CONTRAST) == []
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
        .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                       && !e.closest('label')).map((e) => e.outerHTML)""")
    assert unlabelled == []


def test_a_viewer_key_gets_a_read_only_dashboard(browser: Any, dashboard: Dashboard) -> None:
    expect = sync_api.expect
    r = dashboard.call("PUT", "/apisix/admin/routes/r1",
                       {"uri": "/x", "upstream": {"nodes": {"127.0.0.1:1": 1}}},
                       headers={"X-API-KEY": ADMIN_KEY})
    assert r.status == 201
    page = sign_in(browser, dashboard, VIEWER_KEY)
    expect(page.locator(".role")).to_have_text("viewer")
    expect(page.locator("tr[data-id=r1]")).to_be_visible()
    expect(page.get_by_role("link", name="Create", exact=True)).to_have_count(0)
    expect(page.get_by_role("button", name="Delete r1")).to_have_count(0)
    page.locator("tr[data-id=r1]").get_by_role("link", name="View", exact=True).click()
    expect(page.get_by_label("uri", exact=True)).to_be_disabled()
    expect(page.get_by_role("button", name="Save")).to_have_count(0)
    expect(page.get_by_text("Read-only: your key has the viewer role.")).to_be_visible()
    shot(page, "viewer-route")
    # and the server refuses a write from this session, even with its CSRF token
    status = page.evaluate("""async () => {
        const s = await (await fetch('/ui/api/session')).json();
        const r = await fetch('/apisix/admin/routes/r1', {method: 'DELETE',
            headers: {'X-CSRF-Token': s.csrf}});
        return [r.status, (await r.json()).error_msg];
    }""")
    assert status == [403, "the viewer role is read-only"]
    assert dashboard.call("GET", "/apisix/admin/routes/r1",
                          headers={"X-API-KEY": ADMIN_KEY}).status == 200


def test_lists_page_and_search_and_every_kind_has_a_page(
        browser: Any, dashboard: Dashboard) -> None:
    expect = sync_api.expect
    ops = [{"method": "PUT", "path": f"/apisix/admin/routes/r{i:02d}",
            "body": {"uri": f"/p{i}", "name": f"route-{i:02d}",
                     "upstream": {"nodes": {"127.0.0.1:1": 1}}}} for i in range(25)]
    r = dashboard.call("POST", "/apisix/admin/batch", {"operations": ops},
                       headers={"X-API-KEY": ADMIN_KEY})
    assert r.status == 200, r.raw
    page = sign_in(browser, dashboard, ADMIN_KEY)
    expect(page.locator(".pager span")).to_have_text("Page 1 of 2 · 25 in all")
    expect(page.locator("table.list tbody tr")).to_have_count(20)
    page.get_by_role("button", name="Next").click()
    expect(page.locator("table.list tbody tr")).to_have_count(5)
    expect(page.locator("tr[data-id=r24]")).to_be_visible()
    page.get_by_label("Search by name").fill("route-07")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("table.list tbody tr")).to_have_count(1)
    expect(page.locator("tr[data-id=r07]")).to_contain_text("/p7")
    kinds = dashboard.call("GET", "/ui/api/session",
                           headers={"Cookie": "; ".join(
                               f"{c['name']}={c['value']}" for c in browser.cookies())}
                           ).json["kinds"]
    for k in kinds:
        page.goto(f"{dashboard.url}#/r/{k['name']}")
        expect(page.locator("h1")).to_have_text(
            page.locator(f"nav.side a[href='#/r/{k['name']}']").inner_text())
        expect(page.locator(".pager")).to_be_visible()
        expect(page.locator("p.error")).to_have_count(0)


def test_consumers_and_their_credentials_through_the_forms(
        browser: Any, dashboard: Dashboard) -> None:
    expect = sync_api.expect
    page = sign_in(browser, dashboard, ADMIN_KEY)
    page.get_by_role("link", name="Consumers", exact=True).click()
    page.get_by_role("link", name="Create", exact=True).click()
    page.get_by_label("username *", exact=True).fill("jack")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Saved jack.")
    page.locator("tr[data-id=jack]").get_by_role("link", name="Edit").click()
    expect(page.get_by_role("heading", name="Credentials of jack")).to_be_visible()
    page.get_by_role("link", name="Create", exact=True).click()
    page.get_by_label("ID *", exact=True).fill("k1")
    page.get_by_label("Add a plugin").select_option("key-auth")
    page.locator("fieldset[data-plugin=key-auth]").get_by_label("key *").fill("jack-key")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Saved k1.")
    expect(page.locator("tr[data-id=k1]")).to_contain_text("key-auth")
    shot(page, "consumer")
    r = dashboard.call("GET", "/apisix/admin/consumers/jack/credentials/k1",
                       headers={"X-API-KEY": ADMIN_KEY})
    assert r.status == 200 and r.json["value"]["plugins"]["key-auth"]["key"] == "jack-key"


def test_a_route_is_edited_in_yaml_and_a_yaml_syntax_error_saves_nothing(
        browser: Any, dashboard: Dashboard) -> None:
    expect = sync_api.expect
    route = {"uri": "/y", "name": "yaml-route",
             "upstream": {"nodes": {"127.0.0.1:1980": 1}, "type": "roundrobin"}}
    r = dashboard.call("PUT", "/apisix/admin/routes/y1", route, headers={"X-API-KEY": ADMIN_KEY})
    assert r.status == 201, r.raw

    def stored() -> dict[str, Any]:
        got = dashboard.call("GET", "/apisix/admin/routes/y1", headers={"X-API-KEY": ADMIN_KEY})
        assert got.status == 200, got.raw
        return {k: v for k, v in got.json["value"].items()
                if k not in ("id", "create_time", "update_time")}

    page = sign_in(browser, dashboard, ADMIN_KEY)
    fetched: list[str] = []
    page.on("request", lambda req: fetched.append(req.url))
    page.goto(f"{dashboard.url}#/r/routes/edit/y1")
    expect(page.get_by_label("Raw JSON")).to_have_value(re.compile(r'"uri": "/y"'))
    # the YAML library is not part of the first load: fetched when YAML is first chosen
    assert not [u for u in fetched if u.endswith("/ui/assets/yaml.js")]
    page.get_by_label("YAML", exact=True).check()
    raw = page.get_by_label("Raw YAML")
    expect(raw).to_have_value(re.compile(r"^uri: /y$", re.M))
    expect(raw).to_have_value(re.compile(r"^  nodes:\n    127\.0\.0\.1:1980: 1$", re.M))
    assert [u for u in fetched if u.endswith("/ui/assets/yaml.js")]

    # a syntax error: shown at the editor, the form keeps the last good value, nothing sent
    raw.fill("uri: /broken\nname: [yaml-route\n")
    expect(page.locator("#raw-error")).to_contain_text("not valid YAML")
    expect(raw).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("JSON", exact=True)).to_be_disabled()
    expect(page.get_by_label("uri", exact=True)).to_have_value("/y")
    shot(page, "yaml-error")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#form-error")).to_contain_text("Not saved")
    expect(page.locator("#form-error")).to_contain_text("not valid YAML")
    assert stored() == route
    # valid YAML that is not a mapping is refused the same way
    raw.fill("- uri: /z\n")
    expect(page.locator("#raw-error")).to_contain_text("must be a mapping")

    # YAML -> form, form -> YAML
    raw.fill("uri: /z\nname: yaml-route\ndesc: edited in YAML\n"
             "upstream:\n  type: roundrobin\n  nodes:\n    127.0.0.1:1980: 2\n")
    expect(page.locator("#raw-error")).to_have_count(0)
    expect(page.get_by_label("uri", exact=True)).to_have_value("/z")
    page.get_by_label("name", exact=True).fill("renamed")
    expect(raw).to_have_value(re.compile(r"^name: renamed$", re.M))
    expect(raw).to_have_value(re.compile(r"^desc: edited in YAML$", re.M))
    shot(page, "yaml-editor")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Saved y1.")
    assert stored() == {"uri": "/z", "name": "renamed", "desc": "edited in YAML",
                        "upstream": {"nodes": {"127.0.0.1:1980": 2}, "type": "roundrobin"}}

    # and back to JSON: the same object
    page.locator("tr[data-id=y1]").get_by_role("link", name="Edit", exact=True).click()
    page.get_by_label("YAML", exact=True).check()
    expect(page.get_by_label("Raw YAML")).to_have_value(re.compile(r"^uri: /z$", re.M))
    page.get_by_label("JSON", exact=True).check()
    shown = json.loads(page.get_by_label("Raw JSON").input_value())
    assert shown == stored()
    assert page.errors == []                  # type: ignore[attr-defined]


def test_a_keyless_node_opens_without_a_key(browser: Any, keyless: Dashboard) -> None:
    expect = sync_api.expect
    page = browser.new_page()
    page.goto(keyless.url)
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    expect(page.locator("main .notice.warn")).to_contain_text("no Admin API key")
    expect(page.get_by_label("Admin API key")).to_have_count(0)
    cookie = next(c for c in browser.cookies() if c["name"] == "pylon_ui_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    shot(page, "keyless")
    # a write through the form (the session's CSRF token goes with it)
    page.get_by_role("link", name="Upstreams", exact=True).click()
    page.get_by_role("link", name="Create", exact=True).click()
    page.get_by_label("ID (empty: generated)").fill("k")
    page.get_by_label("nodes", exact=True).fill('{"127.0.0.1:1980": 1}')
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Saved k.")
    assert keyless.call("GET", "/apisix/admin/upstreams/k").json["value"]["nodes"] == {
        "127.0.0.1:1980": 1}
    # signed out (after a reload, which finds the session): no key asked either, one button
    # opens a new session
    page.reload()
    expect(page.locator("main .notice.warn")).to_contain_text("no Admin API key")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Open the dashboard")).to_be_visible()
    expect(page.locator("main.signin")).to_contain_text("no Admin API key")
    expect(page.get_by_label("Admin API key")).to_have_count(0)
    page.get_by_role("button", name="Open the dashboard").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
