"""A real node with the Admin API and its dashboard on a free port, an admin and a viewer
key; plain HTTP helpers for the session rules (the browser tests are in test_browser.py)."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any

import pytest

from tests.harness import Gateway, free_port

ADMIN_KEY = "a" * 32
VIEWER_KEY = "v" * 32


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw) if self.raw else None


@dataclass
class Dashboard:
    gw: Gateway
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ui/"

    def call(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> Reply:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
            h = dict(headers or {})
            if data is not None:
                h.setdefault("Content-Type", "application/json")
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            return Reply(r.status, r.headers, r.read())
        finally:
            c.close()

    def sign_in(self, key: str = ADMIN_KEY) -> tuple[str, str]:
        """(cookie header value, CSRF token)."""
        r = self.call("POST", "/ui/api/session", {"key": key})
        assert r.status == 200, r.raw
        cookie = r.headers["Set-Cookie"].split(";", 1)[0]
        return cookie, r.json["csrf"]


KEYS = [{"name": "ops", "key": ADMIN_KEY, "role": "admin"},
        {"name": "watcher", "key": VIEWER_KEY, "role": "viewer"}]


def dashboard_node(port: int, **admin: Any) -> dict[str, Any]:
    return {"pylon": {"enable_admin": True},
            "deployment": {"admin": {
                "admin_listen": {"ip": "127.0.0.1", "port": port},
                "admin_key": KEYS, **admin}}}


@pytest.fixture
def gateway_factory(quick_gateway_factory: Any) -> Any:
    return quick_gateway_factory


@pytest.fixture
def dashboard(gateway_factory: Any) -> Dashboard:
    port = free_port()
    gw = gateway_factory({}, node=dashboard_node(port))
    return Dashboard(gw, port)


@pytest.fixture
def keyless(gateway_factory: Any) -> Dashboard:
    """A node without Admin API keys (``admin_key_required: false``, loopback only)."""
    port = free_port()
    gw = gateway_factory({}, node=dashboard_node(port, admin_key=[], admin_key_required=False))
    return Dashboard(gw, port)
