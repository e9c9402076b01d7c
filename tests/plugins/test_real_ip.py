"""real-ip through a real gateway.  The Kit's client is 127.0.0.1; the address the gateway
settles on shows in the X-Real-IP / X-Forwarded-For it sends upstream."""

from __future__ import annotations

import http.client
import json

import pytest

from pylon.pdk.testing import Kit


def _route(rid, conf, **plugins):
    return {"id": rid, "uri": "/" + rid, "plugins": {"real-ip": conf, **plugins}}


DOC = {
    "routes": [
        _route("xri", {"source": "http_x_real_ip"}),
        _route("arg", {"source": "arg_realip", "trusted_addresses": ["127.0.0.0/24"]}),
        _route("xff", {"source": "http_x_forwarded_for",
                       "trusted_addresses": ["127.0.0.1", "10.0.0.0/8"]}),
        _route("xff-rec", {"source": "http_x_forwarded_for", "recursive": True,
                           "trusted_addresses": ["127.0.0.1", "10.0.0.0/8", "fd00::/8"]}),
        _route("untrusted", {"source": "http_x_real_ip", "trusted_addresses": ["10.0.0.0/8"]}),
        _route("restricted", {"source": "http_x_real_ip"},
               **{"ip-restriction": {"blacklist": ["198.51.100.0/24"]}}),
    ],
}


@pytest.fixture(scope="module")
def kit():
    # the node itself trusts X-Real-IP from 127.0.0.1 by default (APISIX's real_ip_from,
    # tests/behaviour/test_real_ip_default.py): turned off here so that only the plugin acts
    with Kit(DOC, node={"nginx_config": {"http": {"real_ip_from": []}}}) as k:
        yield k


def _client_seen(kit, path, headers=None):
    r = kit.get(path, headers=headers)
    assert r.status == 200, r
    return r.json()["headers"]


def test_address_from_header_becomes_the_client_address(kit):
    h = _client_seen(kit, "/xri", {"X-Real-IP": "1.2.3.4"})
    assert h["x-real-ip"] == "1.2.3.4"
    assert h["x-forwarded-for"].endswith("1.2.3.4")


def test_port_is_dropped_from_the_address(kit):
    assert _client_seen(kit, "/xri", {"X-Real-IP": "1.2.3.4:9080"})["x-real-ip"] == "1.2.3.4"


def test_ipv6_address_with_or_without_brackets(kit):
    assert _client_seen(kit, "/xri", {"X-Real-IP": "2001:db8::1"})["x-real-ip"] == "2001:db8::1"
    h = _client_seen(kit, "/xri", {"X-Real-IP": "[2001:DB8::1]:443"})
    assert h["x-real-ip"] == "2001:db8::1"


@pytest.mark.parametrize("bad", ["not-an-ip", "1.2.3.4:70000", "1.2.3.400", "[::1", ""])
def test_bad_or_missing_address_changes_nothing(kit, bad):
    assert _client_seen(kit, "/xri", {"X-Real-IP": bad})["x-real-ip"] == "127.0.0.1"


def test_missing_source_changes_nothing(kit):
    assert _client_seen(kit, "/xri")["x-real-ip"] == "127.0.0.1"


def test_address_from_query_argument(kit):
    assert _client_seen(kit, "/arg?realip=5.6.7.8:80")["x-real-ip"] == "5.6.7.8"


def test_forwarded_for_takes_the_last_address(kit):
    h = _client_seen(kit, "/xff", {"X-Forwarded-For": "9.9.9.9, 8.8.8.8,  10.0.0.1"})
    assert h["x-real-ip"] == "10.0.0.1"


def test_forwarded_for_recursive_skips_trusted_proxies_from_the_right(kit):
    h = _client_seen(kit, "/xff-rec", {"X-Forwarded-For": "9.9.9.9, 8.8.8.8, 10.0.0.2, 10.0.0.1"})
    assert h["x-real-ip"] == "8.8.8.8"
    h = _client_seen(kit, "/xff-rec", {"X-Forwarded-For": "2001:db8::7, fd00::1"})
    assert h["x-real-ip"] == "2001:db8::7"


def test_forwarded_for_recursive_all_trusted_takes_the_leftmost(kit):
    h = _client_seen(kit, "/xff-rec", {"X-Forwarded-For": "10.0.0.3, 10.0.0.2"})
    assert h["x-real-ip"] == "10.0.0.3"


def test_single_forwarded_for_address(kit):
    assert _client_seen(kit, "/xff-rec", {"X-Forwarded-For": "7.7.7.7"})["x-real-ip"] == "7.7.7.7"


def test_last_of_several_forwarded_for_headers_is_used(kit):
    c = http.client.HTTPConnection("127.0.0.1", kit.port, timeout=10)
    try:
        c.putrequest("GET", "/xff", skip_accept_encoding=True)
        c.putheader("X-Forwarded-For", "1.1.1.1")
        c.putheader("X-Forwarded-For", "3.3.3.3, 4.4.4.4")
        c.endheaders()
        r = c.getresponse()
        assert r.status == 200
        assert json.loads(r.read())["headers"]["x-real-ip"] == "4.4.4.4"
    finally:
        c.close()


def test_untrusted_peer_cannot_set_the_address(kit):
    assert _client_seen(kit, "/untrusted", {"X-Real-IP": "1.2.3.4"})["x-real-ip"] == "127.0.0.1"


def test_ip_restriction_sees_the_real_address(kit):
    r = kit.get("/restricted", headers={"X-Real-IP": "198.51.100.9"})
    assert r.status == 403
    assert r.json() == {"message": "Your IP address is not allowed"}
    assert kit.get("/restricted", headers={"X-Real-IP": "198.51.101.9"}).status == 200


@pytest.mark.parametrize("conf, why", [
    ({}, "source"),
    ({"source": ""}, "source"),
    ({"source": "http_x_real_ip", "trusted_addresses": ["10.0.0.0/40"]},
     "invalid ip address: 10.0.0.0/40"),
    ({"source": "http_x_real_ip", "trusted_addresses": ["localhost"]},
     "invalid ip address: localhost"),
    ({"source": "http_x_real_ip", "recursive": "yes"}, "recursive"),
])
def test_bad_configuration_rejects_the_route_and_logs_why(kit, conf, why):
    before = len(kit.log())
    kit.apply({"routes": DOC["routes"] + [_route("bad", conf)]})
    try:
        line = next((ln for ln in kit.log()[before:].splitlines() if "(id bad)" in ln), "")
        assert "failed to check the configuration of plugin real-ip" in line
        assert why in line
        assert kit.get("/bad").status == 404
        assert kit.get("/xri").status == 200
    finally:
        kit.apply(DOC)
