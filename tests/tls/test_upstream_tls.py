"""Upstream TLS: ``tls.verify`` against ``apisix.ssl.ssl_trusted_certificate``,
``tls.client_cert_id`` naming a ``type: client`` ssl object (live through the Admin API),
and APISIX's refusals of a client_cert_id that is missing or of the wrong type."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import pytest

from tests.admin.test_admin_gateway import admin, admin_node
from tests.harness import Origin, closing_factory, free_port

from .certs import CA, Pem
from .test_tls_listener import KEY, wait_for


@pytest.fixture
def gateway_factory(quick_gateway_factory: Any) -> Any:
    return quick_gateway_factory


@pytest.fixture
def origin_factory() -> Iterator[Any]:
    yield from closing_factory(Origin)


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA()


def mtls_origin(origin_factory: Any, ca: CA, tmp_path: Any) -> Origin:
    """An HTTPS origin for 127.0.0.1 that requires a client certificate from ``ca``."""
    server = ca.issue("127.0.0.1", sans=["localhost"])
    cp, kp = server.files(str(tmp_path), "origin")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cp, kp)
    ctx.load_verify_locations(cadata=ca.pem)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return origin_factory("tls", ssl_context=ctx)


def client_ssl(pem: Pem, oid: str = "c1") -> dict[str, Any]:
    return {"id": oid, "type": "client", "cert": pem.cert, "key": pem.key}


def test_client_cert_id_presents_the_client_certificate_and_follows_its_replacement(
        gateway_factory, origin_factory, ca, tmp_path):
    origin = mtls_origin(origin_factory, ca, tmp_path)
    (tmp_path / "ca.pem").write_text(ca.pem)
    aport = free_port()
    doc = {"routes": [{"id": "r1", "uri": "/*", "upstream_id": "u1"}],
           "upstreams": [{"id": "u1", "scheme": "https", "pass_host": "node",
                          "nodes": {f"localhost:{origin.port}": 1},
                          "tls": {"client_cert_id": "c1", "verify": True}}],
           "ssls": [client_ssl(ca.issue("gateway one", client=True))]}
    gw = gateway_factory(doc, node={
        **admin_node(aport, admin_key=[{"name": "ops", "key": KEY}]),
        "pylon": {"enable_admin": True,
                  "ssl": {"ssl_trusted_certificate": str(tmp_path / "ca.pem")}}})
    status, _, _ = gw.get("/x")
    assert status == 200
    assert origin.requests[-1]["path"] == "/x"

    # a certificate from another CA: the origin refuses the handshake (502)
    other = CA("Other CA").issue("gateway two", client=True)
    status, body = admin(aport, "PUT", "/apisix/admin/ssls/c1", client_ssl(other), key=KEY)
    assert status == 200, body
    wait_for(lambda: gw.get("/y")[0] == 502)
    status, _ = admin(aport, "PUT", "/apisix/admin/ssls/c1",
                      client_ssl(ca.issue("gateway three", client=True)), key=KEY)
    wait_for(lambda: gw.get("/z")[0] == 200)


def test_tls_verify_refuses_an_origin_the_trusted_certificate_does_not_vouch_for(
        gateway_factory, origin_factory, ca, tmp_path):
    origin = mtls_origin(origin_factory, ca, tmp_path)
    other = CA("Other CA")
    (tmp_path / "other.pem").write_text(other.pem)
    doc = {"routes": [{"id": "r1", "uri": "/*", "upstream": {
        "scheme": "https", "pass_host": "node", "nodes": {f"localhost:{origin.port}": 1},
        "tls": {"client_cert_id": "c1", "verify": True}}}],
        "ssls": [client_ssl(ca.issue("gateway", client=True))]}
    gw = gateway_factory(doc, node={"pylon": {"ssl": {
        "ssl_trusted_certificate": str(tmp_path / "other.pem")}}})
    assert gw.get("/x")[0] == 502
    assert origin.requests == []


@pytest.mark.parametrize(("ssls", "message"), [
    ([], "failed to fetch ssl info by ssl id [c1], response code: 404"),
    ([{"id": "c1", "snis": ["a.test"]}], "failed to fetch ssl info by ssl id [c1], "
                                         "wrong ssl type"),
])
def test_admin_api_refuses_a_client_cert_id_that_is_no_client_ssl(
        gateway_factory, ca, ssls, message):
    aport = free_port()
    pem = ca.issue("a.test")
    doc: dict[str, Any] = {"ssls": [{**s, "cert": pem.cert, "key": pem.key} for s in ssls]}
    gateway_factory(doc, node=admin_node(aport, admin_key=[{"name": "ops", "key": KEY}]))
    up = {"nodes": {"127.0.0.1:1": 1}, "scheme": "https", "tls": {"client_cert_id": "c1"}}
    status, body = admin(aport, "PUT", "/apisix/admin/upstreams/u1", up, key=KEY)
    assert (status, body) == (400, {"error_msg": message})
