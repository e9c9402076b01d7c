"""The worked example of docs/writing-a-plugin.md runs as documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from pylon.pdk.testing import Kit

EXAMPLES = str(Path(__file__).resolve().parents[2] / "examples" / "plugins")


@pytest.fixture(scope="module")
def kit():
    doc = {"routes": [{"uri": "/q", "plugins": {"header-quota": {"max_headers": 5}}}]}
    with Kit(doc, plugin_dirs=[EXAMPLES], admin_key="k" * 32) as k:
        yield k


def test_too_many_headers_is_431(kit):
    r = kit.get("/q", headers={f"X-{i}": "v" for i in range(10)})
    assert r.status == 431
    assert r.json()["message"].startswith("12 headers")


def test_count_reaches_upstream(kit):
    r = kit.get("/q")
    assert r.status == 200
    assert r.json()["headers"]["x-header-count"] == "2"


def test_check_hook_refuses_an_inconsistent_config(kit):
    r = kit.admin("PUT", "/routes/x", {"uri": "/x", "plugins": {
        "header-quota": {"max_headers": 10, "max_bytes": 5}},
        "upstream": {"nodes": {kit.upstream.addr: 1}}})
    assert r.status == 400
    assert r.json()["error_msg"].endswith("max_bytes must be at least max_headers")
