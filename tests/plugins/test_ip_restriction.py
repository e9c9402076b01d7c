"""ip-restriction through a real gateway.  The Kit's client is 127.0.0.1; other addresses,
IPv6 ones included, arrive through real-ip (X-Real-IP from the trusted 127.0.0.1)."""

from __future__ import annotations

import pytest

from pylon.pdk.testing import Kit

DEFAULT_MSG = {"message": "Your IP address is not allowed"}
REAL_IP = {"source": "http_x_real_ip", "trusted_addresses": ["127.0.0.1"]}


def _route(rid, conf, real_ip=None):
    plugins = {"ip-restriction": conf}
    if real_ip is not None:
        plugins["real-ip"] = real_ip
    return {"id": rid, "uri": "/" + rid, "plugins": plugins}


DOC = {
    "routes": [
        _route("allow-exact", {"whitelist": ["127.0.0.1"]}),
        _route("allow-cidr", {"whitelist": ["10.0.0.0/8", "127.0.0.0/8"]}),
        _route("deny-not-listed", {"whitelist": ["10.0.0.0/8", "192.168.1.1"]}),
        _route("deny-listed", {"blacklist": ["127.0.0.0/24"], "message": "go away",
                               "response_code": 404}),
        _route("allow-not-blacklisted", {"blacklist": ["10.1.1.1", "::1"]}),
        _route("v6-allow", {"whitelist": ["2001:db8::/32", "192.0.2.7"]}, REAL_IP),
        _route("v6-deny", {"blacklist": ["fe80::/10", "2001:db8::1"]}, REAL_IP),
        _route("untrusted-peer", {"whitelist": ["2001:db8::/32"]},
               {"source": "http_x_real_ip", "trusted_addresses": ["10.0.0.0/8"]}),
    ],
}


@pytest.fixture(scope="module")
def kit():
    # the node's own X-Real-IP trust of 127.0.0.1 (APISIX's real_ip_from default) is off
    # here: the addresses arrive through the real-ip plugin and its trusted_addresses
    with Kit(DOC, node={"nginx_config": {"http": {"real_ip_from": []}}}) as k:
        yield k


def _real(ip):
    return {"X-Real-IP": ip}


def test_whitelisted_address_passes(kit):
    assert kit.get("/allow-exact").status == 200


def test_whitelisted_cidr_passes(kit):
    assert kit.get("/allow-cidr").status == 200


def test_address_outside_whitelist_is_403_with_default_message(kit):
    r = kit.get("/deny-not-listed")
    assert r.status == 403
    assert r.json() == DEFAULT_MSG


def test_blacklisted_address_gets_custom_message_and_response_code(kit):
    r = kit.get("/deny-listed")
    assert r.status == 404
    assert r.json() == {"message": "go away"}


def test_address_not_blacklisted_passes(kit):
    assert kit.get("/allow-not-blacklisted").status == 200


def test_ipv6_address_inside_whitelisted_cidr_passes(kit):
    r = kit.get("/v6-allow", headers=_real("2001:db8::5"))
    assert r.status == 200
    assert r.json()["headers"]["x-real-ip"] == "2001:db8::5"
    # written differently (upper case, leading zeros, brackets and port): the same address
    assert kit.get("/v6-allow", headers=_real("2001:0DB8:0:0::5")).status == 200
    assert kit.get("/v6-allow", headers=_real("[2001:db8::5]:8443")).status == 200


def test_ipv6_address_outside_whitelisted_cidr_is_403(kit):
    r = kit.get("/v6-allow", headers=_real("2001:db9::1"))
    assert r.status == 403
    assert r.json() == DEFAULT_MSG
    # the real client 127.0.0.1 is not whitelisted either
    assert kit.get("/v6-allow").status == 403


def test_ipv4_set_by_real_ip_is_checked(kit):
    assert kit.get("/v6-allow", headers=_real("192.0.2.7")).status == 200
    assert kit.get("/v6-allow", headers=_real("192.0.2.8")).status == 403


def test_ipv6_blacklist_cidr_and_exact_address(kit):
    assert kit.get("/v6-deny", headers=_real("fe80::abcd")).status == 403
    assert kit.get("/v6-deny", headers=_real("2001:db8::1")).status == 403
    assert kit.get("/v6-deny", headers=_real("2001:db8::2")).status == 200


def test_address_claimed_by_an_untrusted_peer_is_ignored(kit):
    r = kit.get("/untrusted-peer", headers=_real("2001:db8::5"))
    assert r.status == 403


@pytest.mark.parametrize("conf, why", [
    ({"whitelist": ["10.0.0.0/33"]}, "invalid ip address: 10.0.0.0/33"),
    ({"blacklist": ["not-an-ip"]}, "invalid ip address: not-an-ip"),
    ({"whitelist": ["2001:db8::/129"]}, "invalid ip address: 2001:db8::/129"),
    ({"whitelist": ["1.2.3.4"], "blacklist": ["5.6.7.8"]}, ""),
    ({"message": "x"}, ""),
    ({"whitelist": ["1.2.3.4"], "response_code": 500}, "response_code"),
])
def test_bad_configuration_rejects_the_route_and_logs_why(kit, conf, why):
    doc = {"routes": DOC["routes"] + [_route("bad", conf)]}
    before = len(kit.log())
    kit.apply(doc)
    try:
        new = kit.log()[before:]
        line = next((ln for ln in new.splitlines() if "(id bad)" in ln), "")
        assert "failed to check the configuration of plugin ip-restriction" in line
        assert why in line
        assert kit.get("/bad").status == 404
        assert kit.get("/allow-exact").status == 200
    finally:
        kit.apply(DOC)
