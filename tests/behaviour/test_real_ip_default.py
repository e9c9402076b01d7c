"""The node trusts ``X-Real-IP`` from 127.0.0.1 by default, as APISIX's nginx does
(``nginx_config.http.real_ip_header: X-Real-IP``, ``real_ip_from: [127.0.0.1, "unix:"]``,
``real_ip_recursive: off``): ``$remote_addr`` is the header's address from before routing on,
``$realip_remote_addr`` keeps the peer.  The Kit's client connects from 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import yaml

from pylon.pdk.testing import Kit

DOC = {"routes": [
    {"id": "echo", "uri": "/echo"},
    {"id": "only-doc-net", "uri": "/only", "remote_addrs": ["192.0.2.0/24"]},
    {"id": "vars", "uri": "/vars", "vars": [["remote_addr", "==", "198.51.100.7"],
                                            ["realip_remote_addr", "==", "127.0.0.1"]]},
    {"id": "deny", "uri": "/deny",
     "plugins": {"ip-restriction": {"blacklist": ["203.0.113.0/24"]}}},
]}


@pytest.fixture(scope="module")
def kit():
    with Kit(DOC) as k:
        yield k


def seen(r) -> dict:
    assert r.status == 200, r
    return r.json()["headers"]


def test_x_real_ip_from_localhost_becomes_the_client_address(kit):
    h = seen(kit.get("/echo", headers={"X-Real-IP": "198.51.100.7"}))
    assert h["x-real-ip"] == "198.51.100.7"
    assert h["x-forwarded-for"] == "198.51.100.7"
    h = seen(kit.get("/echo", headers={"X-Real-IP": "[2001:DB8::1]:443"}))
    assert h["x-real-ip"] == "2001:db8::1"


def test_without_the_header_or_with_garbage_the_peer_stays(kit):
    assert seen(kit.get("/echo"))["x-real-ip"] == "127.0.0.1"
    assert seen(kit.get("/echo", headers={"X-Real-IP": "not-an-ip"}))["x-real-ip"] == "127.0.0.1"


def test_last_address_of_a_list_is_taken_when_not_recursive(kit):
    h = seen(kit.get("/echo", headers={"X-Real-IP": "192.0.2.1, 198.51.100.9"}))
    assert h["x-real-ip"] == "198.51.100.9"


def test_routing_vars_and_plugins_see_the_real_address(kit):
    assert kit.get("/only").status == 404
    assert kit.get("/only", headers={"X-Real-IP": "192.0.2.44"}).status == 200
    assert kit.get("/vars", headers={"X-Real-IP": "198.51.100.7"}).status == 200
    assert kit.get("/vars").status == 404
    r = kit.get("/deny", headers={"X-Real-IP": "203.0.113.5"})
    assert r.status == 403
    assert kit.get("/deny").status == 200


def test_access_log_has_the_real_address(kit):
    kit.get("/echo", headers={"X-Real-IP": "198.51.100.77"})
    deadline = time.monotonic() + 5                  # the access log is written in batches
    while not any(line.startswith("198.51.100.77 ") for line in kit.access_log()):
        assert time.monotonic() < deadline, kit.access_log()[-3:]
        time.sleep(0.05)


def test_untrusted_peer_cannot_set_it():
    with Kit(DOC, node={"nginx_config": {"http": {"real_ip_from": ["10.0.0.0/8"]}}}) as k:
        assert seen(k.get("/echo", headers={"X-Real-IP": "198.51.100.7"}))["x-real-ip"] \
            == "127.0.0.1"


def test_other_header_and_recursive():
    node = {"nginx_config": {"http": {"real_ip_header": "X-Forwarded-For",
                                      "real_ip_recursive": "on",
                                      "real_ip_from": ["127.0.0.1", "10.0.0.0/8"]}}}
    with Kit(DOC, node=node) as k:
        h = seen(k.get("/echo", headers={"X-Forwarded-For": "192.0.2.9, 10.1.1.1, 10.2.2.2"}))
        assert h["x-real-ip"] == "192.0.2.9"
        h = seen(k.get("/echo", headers={"X-Real-IP": "198.51.100.7"}))   # not the header now
        assert h["x-real-ip"] == "127.0.0.1"


def test_bad_real_ip_from_stops_the_node_with_the_path(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text(yaml.safe_dump(
        {"nginx_config": {"http": {"real_ip_from": ["127.0.0.1", "not-a-cidr"]}}}))
    r = subprocess.run([sys.executable, "-m", "pylon.cli", "validate", "-p", str(tmp_path)],
                       capture_output=True, text=True, timeout=60, check=False)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "nginx_config.http.real_ip_from[1]" in out and "not-a-cidr" in out
