"""TLS termination on a running node: SNI selection, ssl objects live through the Admin API,
mTLS to clients, $ssl_* variables, protocols, resumption, ALPN, the redirect to HTTPS.

Real clients only: Python's ssl module (handshake facts), curl --resolve (requests),
openssl s_client (alerts); certificates are made per test module (tests/tls/certs.py).
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import time
from typing import Any

import pytest
from cryptography import x509

from tests.admin.test_admin_gateway import admin, admin_node
from tests.harness import free_port, route_doc

from .certs import CA, Pem

KEY = "k" * 32
#: a refused handshake: the TLS layer (uvloop's, like asyncio's) closes the connection without
#: flushing the alert, so clients read an EOF where APISIX sends internal_error
REFUSED = "INTERNAL_ERROR|UNEXPECTED_EOF|EOF occurred"


@pytest.fixture
def gateway_factory(quick_gateway_factory: Any) -> Any:
    return quick_gateway_factory


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA()


@pytest.fixture(scope="module")
def certs(ca: CA) -> dict[str, Pem]:
    return {
        "a": ca.issue("a.test"),
        "a_rsa": ca.issue("a.test", kind="rsa"),
        "wild": ca.issue("*.wild.test"),
        "b": ca.issue("b.test"),
        "fb": ca.issue("fallback.test"),
        "client": ca.issue("client one", client=True),
    }


def ssl_obj(pem: Pem, snis: list[str], **extra: Any) -> dict[str, Any]:
    return {"cert": pem.cert, "key": pem.key, "snis": snis, **extra}


def tls_node(port: int, **ssl_cfg: Any) -> dict[str, Any]:
    return {"pylon": {"ssl": {"listen": [{"ip": "127.0.0.1", "port": port}], **ssl_cfg}}}


def merge(*nodes: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in nodes:
        for k, v in n.items():
            out.setdefault(k, {}).update(v)
    return out


def client_ctx(ca: CA, alpn: list[str] | None = None, cert: tuple[str, str] | None = None,
               max_version: ssl.TLSVersion | None = None,
               ciphers: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=ca.pem)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if cert:
        ctx.load_cert_chain(*cert)
    if max_version:
        ctx.maximum_version = max_version
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


def handshake(port: int, sni: str | None, ctx: ssl.SSLContext,
              session: ssl.SSLSession | None = None) -> ssl.SSLSocket:
    if sni is None:
        ctx.check_hostname = False
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        return ctx.wrap_socket(raw, server_hostname=sni, session=session)
    except BaseException:
        raw.close()
        raise


def served(port: int, sni: str | None, ctx: ssl.SSLContext) -> x509.Certificate:
    with handshake(port, sni, ctx) as s:
        der = s.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der)


def serial(c: x509.Certificate) -> str:
    return format(c.serial_number, "X")


def curl(port: int, host: str, path: str, *args: str) -> tuple[int, str, dict[str, str]]:
    """(curl exit code, body, response headers) of ``https://host:port/path`` resolved to
    127.0.0.1."""
    out = subprocess.run(
        ["curl", "-sS", "--http1.1", "--max-time", "5", "-D", "-", "--resolve",
         f"{host}:{port}:127.0.0.1", *args, f"https://{host}:{port}{path}"],
        capture_output=True, text=True, timeout=15, check=False)
    head, _, body = out.stdout.partition("\n\n")      # text mode: CRLF read as LF
    headers = {}
    for line in head.split("\n")[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    status = head.split(" ")[1] if head.startswith("HTTP/") else ""
    headers[":status"] = status
    return out.returncode, body, headers


def wait_for(check: Any, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (OSError, ssl.SSLError) as e:
            last = e
        time.sleep(0.05)
    raise AssertionError(f"not reached in {timeout} s: {last!r}")


# ------------------------------------------------------------------------------ SNI
def test_sni_picks_exact_name_then_one_label_wildcard_case_insensitive(
        gateway_factory, upstream, ca, certs):
    port = free_port()
    doc = route_doc([upstream], uri="/*")
    doc["ssls"] = [ssl_obj(certs["a"], ["a.test"], id="1"),
                   ssl_obj(certs["wild"], ["*.wild.test"], id="2")]
    gateway_factory(doc, node=tls_node(port))
    ctx = client_ctx(ca)
    assert serial(served(port, "a.test", ctx)) == certs["a"].serial
    ctx.check_hostname = False                # the name sent differs from the cert's case
    assert serial(served(port, "A.TEST", ctx)) == certs["a"].serial
    ctx = client_ctx(ca)
    assert serial(served(port, "x.wild.test", ctx)) == certs["wild"].serial
    for name in ("y.x.wild.test", "wild.test", "other.test"):
        with pytest.raises(ssl.SSLError, match=REFUSED):
            served(port, name, client_ctx(ca))


def test_no_sni_is_looked_up_as_fallback_sni(gateway_factory, upstream, ca, certs):
    port = free_port()
    doc = route_doc([upstream], uri="/*")
    doc["ssls"] = [ssl_obj(certs["fb"], ["fallback.test"], id="1")]
    gateway_factory(doc, node=tls_node(port, fallback_sni="Fallback.Test"))
    assert serial(served(port, None, client_ctx(ca))) == certs["fb"].serial


def test_no_sni_and_no_fallback_fails_the_handshake(gateway_factory, upstream, ca, certs):
    port = free_port()
    doc = route_doc([upstream], uri="/*")
    doc["ssls"] = [ssl_obj(certs["a"], ["a.test"], id="1")]
    gw = gateway_factory(doc, node=tls_node(port))
    with pytest.raises(ssl.SSLError, match=REFUSED):
        served(port, None, client_ctx(ca))
    assert "failed to find SNI" in gw.log()


def test_node_default_certificate_serves_names_no_ssl_object_has(
        gateway_factory, upstream, ca, certs, tmp_path):
    port = free_port()
    cp, kp = certs["fb"].files(str(tmp_path), "default")
    doc = route_doc([upstream], uri="/*")
    doc["ssls"] = [ssl_obj(certs["a"], ["a.test"], id="1")]
    gateway_factory(doc, node=tls_node(port, ssl_cert=cp, ssl_cert_key=kp))
    ctx = client_ctx(ca)
    ctx.check_hostname = False
    assert serial(served(port, "unknown.test", ctx)) == certs["fb"].serial
    assert serial(served(port, "a.test", client_ctx(ca))) == certs["a"].serial


def test_rsa_and_ecdsa_for_one_name_are_chosen_by_what_the_client_offers(
        gateway_factory, upstream, ca, certs):
    port = free_port()
    doc = route_doc([upstream], uri="/*")
    doc["ssls"] = [ssl_obj(certs["a_rsa"], ["a.test"], id="1",
                           certs=[certs["a"].cert], keys=[certs["a"].key])]
    gateway_factory(doc, node=tls_node(port))
    tls12 = ssl.TLSVersion.TLSv1_2
    ecdsa = served(port, "a.test", client_ctx(ca, max_version=tls12,
                                               ciphers="ECDHE-ECDSA-AES128-GCM-SHA256"))
    rsa = served(port, "a.test", client_ctx(ca, max_version=tls12,
                                             ciphers="ECDHE-RSA-AES128-GCM-SHA256"))
    assert serial(ecdsa) == certs["a"].serial
    assert serial(rsa) == certs["a_rsa"].serial


def test_https_request_is_proxied_with_scheme_https(gateway_factory, upstream, ca, certs,
                                                    tmp_path):
    port = free_port()
    doc = route_doc([upstream], uri="/*")
    doc["ssls"] = [ssl_obj(certs["a"], ["a.test"], id="1")]
    gateway_factory(doc, node=tls_node(port))
    cafile = tmp_path / "ca.pem"
    cafile.write_text(ca.pem)
    rc, _, headers = curl(port, "a.test", "/x?y=1", "--cacert", str(cafile))
    assert rc == 0 and headers[":status"] == "200"
    seen = upstream.requests[-1]
    assert seen["path"] == "/x?y=1"
    assert seen["headers"]["x-forwarded-proto"] == "https"
    assert seen["headers"]["x-forwarded-port"] == str(port)


def test_alpn_offers_h2_only_on_listeners_with_enable_http2(gateway_factory, upstream, ca,
                                                             certs):
    p1, p2 = free_port(), free_port()
    doc = route_doc([upstream], uri="/*")
    doc["ssls"] = [ssl_obj(certs["a"], ["a.test"], id="1")]
    gateway_factory(doc, node={"pylon": {"ssl": {"listen": [
        {"ip": "127.0.0.1", "port": p1},
        {"ip": "127.0.0.1", "port": p2, "enable_http2": True}]}}})
    with handshake(p1, "a.test", client_ctx(ca, alpn=["h2", "http/1.1"])) as s:
        assert s.selected_alpn_protocol() == "http/1.1"
    with handshake(p2, "a.test", client_ctx(ca, alpn=["h2", "http/1.1"])) as s:
        assert s.selected_alpn_protocol() == "h2"


# ------------------------------------------------------------------------ live changes
def test_ssls_put_replaced_and_deleted_through_admin_api_are_live_on_every_worker(
        gateway_factory, upstream, ca, certs, tmp_path):
    port, aport = free_port(), free_port()
    gateway_factory(route_doc([upstream], uri="/*"), workers=2,
                    node=merge(tls_node(port), admin_node(aport, admin_key=[
                        {"name": "ops", "key": KEY}])))
    with pytest.raises(ssl.SSLError):
        served(port, "b.test", client_ctx(ca))
    status, body = admin(aport, "PUT", "/apisix/admin/ssls/9",
                         ssl_obj(certs["b"], ["b.test"]), key=KEY)
    assert status == 201, body
    assert "key" not in body["value"]                 # as APISIX: never answered
    wait_for(lambda: serial(served(port, "b.test", client_ctx(ca))) == certs["b"].serial)
    for _ in range(8):                                 # every worker has it
        assert serial(served(port, "b.test", client_ctx(ca))) == certs["b"].serial

    # a connection made with the old certificate keeps working across a replacement
    cafile = tmp_path / "ca.pem"
    cafile.write_text(ca.pem)
    old = handshake(port, "b.test", client_ctx(ca))
    renewed = ca.issue("b.test")
    status, _ = admin(aport, "PUT", "/apisix/admin/ssls/9",
                      ssl_obj(renewed, ["b.test"]), key=KEY)
    assert status == 200
    wait_for(lambda: serial(served(port, "b.test", client_ctx(ca))) == renewed.serial)
    old.sendall(b"GET /still HTTP/1.1\r\nHost: b.test\r\n\r\n")
    assert old.recv(100).startswith(b"HTTP/1.1 200")
    old.close()

    status, _ = admin(aport, "DELETE", "/apisix/admin/ssls/9", key=KEY)
    assert status == 200

    def gone() -> bool:
        try:
            served(port, "b.test", client_ctx(ca))
        except ssl.SSLError:
            return True
        return False
    wait_for(gone)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda o: o.update(cert="-----BEGIN CERTIFICATE-----\n" + "A" * 200 +
                        "\n-----END CERTIFICATE-----\n"),
     "failed to parse cert: PEM_read_bio_X509_AUX() failed"),
    (lambda o: o.update(key="-----BEGIN PRIVATE KEY-----\n" + "A" * 200 +
                        "\n-----END PRIVATE KEY-----\n"),
     "failed to parse key: PEM_read_bio_PrivateKey() failed"),
    (lambda o: o.update(certs=[o["cert"]]), "mismatched number of certs and keys"),
    (lambda o: o.update(client={"ca": "-----BEGIN CERTIFICATE-----\n" + "A" * 200 +
                                      "\n-----END CERTIFICATE-----\n"}),
     "failed to validate client_cert: failed to parse cert: PEM_read_bio_X509_AUX() failed"),
])
def test_admin_api_refuses_ssl_objects_apisix_refuses(gateway_factory, upstream, certs,
                                                      mutate, message):
    aport = free_port()
    gateway_factory(route_doc([upstream], uri="/*"),
                    node=admin_node(aport, admin_key=[{"name": "ops", "key": KEY}]))
    obj = ssl_obj(certs["a"], ["a.test"])
    mutate(obj)
    status, body = admin(aport, "PUT", "/apisix/admin/ssls/1", obj, key=KEY)
    assert (status, body) == (400, {"error_msg": message})


def test_admin_api_refuses_a_key_that_is_not_the_certificates(gateway_factory, upstream,
                                                              certs):
    aport = free_port()
    gateway_factory(route_doc([upstream], uri="/*"),
                    node=admin_node(aport, admin_key=[{"name": "ops", "key": KEY}]))
    obj = ssl_obj(certs["a"], ["a.test"], key=certs["b"].key)
    status, body = admin(aport, "PUT", "/apisix/admin/ssls/1", obj, key=KEY)
    assert status == 400 and "does not match" in body["error_msg"]


# ------------------------------------------------------------------------------ mTLS
def _mtls_gateway(gateway_factory, upstream, ca, certs, tmp_path, **client: Any) -> Any:
    port = free_port()
    doc = route_doc([upstream], uri="/*")
    doc["ssls"] = [ssl_obj(certs["b"], ["b.test"], id="1", client={"ca": ca.pem, **client}),
                   ssl_obj(certs["a"], ["a.test"], id="2")]
    fmt = ("$ssl_server_name|$ssl_protocol|$ssl_client_verify|$ssl_client_s_dn|"
           "$ssl_client_serial|$scheme|$https|$status")
    gw = gateway_factory(doc, node=tls_node(port), http={"access_log_format": fmt})
    (tmp_path / "ca.pem").write_text(ca.pem)
    gw.client_files = certs["client"].files(str(tmp_path), "client")
    gw.tls_port = port
    return gw


def test_mtls_without_skip_regex_requires_a_client_certificate_in_the_handshake(
        gateway_factory, upstream, ca, certs, tmp_path):
    gw = _mtls_gateway(gateway_factory, upstream, ca, certs, tmp_path)
    cacert = str(tmp_path / "ca.pem")
    rc, _, _ = curl(gw.tls_port, "b.test", "/x", "--cacert", cacert)
    assert rc != 0                               # TLS 1.3: refused right after the handshake
    stranger = CA("Another CA").issue("intruder", client=True)
    files = stranger.files(str(tmp_path), "intruder")
    rc, _, _ = curl(gw.tls_port, "b.test", "/x", "--cacert", cacert,
                    "--cert", files[0], "--key", files[1])
    assert rc != 0
    rc, _, headers = curl(gw.tls_port, "b.test", "/x", "--cacert", cacert,
                          "--cert", gw.client_files[0], "--key", gw.client_files[1])
    assert rc == 0 and headers[":status"] == "200"


def test_ssl_variables_reach_the_access_log(gateway_factory, upstream, ca, certs, tmp_path):
    gw = _mtls_gateway(gateway_factory, upstream, ca, certs, tmp_path)
    rc, _, headers = curl(gw.tls_port, "b.test", "/x", "--cacert", str(tmp_path / "ca.pem"),
                          "--cert", gw.client_files[0], "--key", gw.client_files[1])
    assert rc == 0 and headers[":status"] == "200"
    line = wait_for(lambda: [ln for ln in gw.access_log() if ln.endswith("|200")])[-1]
    sni, proto, verify, s_dn, ser, scheme, https, _ = line.split("|")
    assert (sni, verify, s_dn, ser, scheme, https) == (
        "b.test", "SUCCESS", "CN=client one", certs["client"].serial, "https", "on")
    assert proto in ("TLSv1.2", "TLSv1.3")


def test_skip_mtls_uri_regex_lets_listed_paths_in_and_answers_400_elsewhere(
        gateway_factory, upstream, ca, certs, tmp_path):
    gw = _mtls_gateway(gateway_factory, upstream, ca, certs, tmp_path,
                       skip_mtls_uri_regex=["^/public/.*"])
    cacert = str(tmp_path / "ca.pem")
    rc, _, headers = curl(gw.tls_port, "b.test", "/public/x", "--cacert", cacert)
    assert rc == 0 and headers[":status"] == "200"
    rc, body, headers = curl(gw.tls_port, "b.test", "/private", "--cacert", cacert)
    assert rc == 0 and headers[":status"] == "400"
    assert json.loads(body) == {"error_msg": "400 Bad Request"}
    rc, _, headers = curl(gw.tls_port, "b.test", "/private", "--cacert", cacert,
                          "--cert", gw.client_files[0], "--key", gw.client_files[1])
    assert rc == 0 and headers[":status"] == "200"
    line = wait_for(lambda: [ln for ln in gw.access_log() if ln.endswith("|400")])[-1]
    assert line.split("|")[2] == "NONE"
    assert "client certificate was not present" in gw.log()


def test_host_of_an_mtls_name_over_a_handshake_for_another_name_is_400(
        gateway_factory, upstream, ca, certs, tmp_path):
    gw = _mtls_gateway(gateway_factory, upstream, ca, certs, tmp_path)
    cacert = str(tmp_path / "ca.pem")
    rc, _, headers = curl(gw.tls_port, "a.test", "/x", "--cacert", cacert,
                          "-H", "Host: b.test")
    assert rc == 0 and headers[":status"] == "400"
    rc, _, headers = curl(gw.tls_port, "a.test", "/x", "--cacert", cacert)
    assert rc == 0 and headers[":status"] == "200"
    assert "client certificate verified with SNI a.test, but the host is b.test" in gw.log()


# ------------------------------------------------------------------ protocols, sessions
def test_ssl_protocols_of_an_object_refuse_other_versions(gateway_factory, upstream, ca,
                                                          certs):
    port = free_port()
    doc = route_doc([upstream], uri="/*")
    doc["ssls"] = [ssl_obj(certs["a"], ["a.test"], id="1", ssl_protocols=["TLSv1.3"]),
                   ssl_obj(certs["b"], ["b.test"], id="2")]
    gateway_factory(doc, node=tls_node(port))
    tls12 = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError, match=REFUSED + "|VERSION"):
        served(port, "a.test", client_ctx(ca, max_version=tls12))
    with handshake(port, "a.test", client_ctx(ca)) as s:
        assert s.version() == "TLSv1.3"
    with handshake(port, "b.test", client_ctx(ca, max_version=tls12)) as s:
        assert s.version() == "TLSv1.2"


def test_node_ssl_protocols_bound_every_handshake(gateway_factory, upstream, ca, certs):
    port = free_port()
    doc = route_doc([upstream], uri="/*")
    doc["ssls"] = [ssl_obj(certs["a"], ["a.test"], id="1")]
    gateway_factory(doc, node=tls_node(port, ssl_protocols="TLSv1.3"))
    with pytest.raises(ssl.SSLError):
        served(port, "a.test", client_ctx(ca, max_version=ssl.TLSVersion.TLSv1_2))


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_sessions_resume_on_the_worker_that_made_them(gateway_factory, upstream, ca, certs,
                                                      version):
    port = free_port()
    doc = route_doc([upstream], uri="/*")
    doc["ssls"] = [ssl_obj(certs["a"], ["a.test"], id="1")]
    gateway_factory(doc, node=tls_node(port))
    ctx = client_ctx(ca, max_version=version)
    with handshake(port, "a.test", ctx) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        s.recv(100)                   # TLS 1.3: the session arrives after the handshake
        sess = s.session
    assert sess is not None
    with handshake(port, "a.test", ctx, session=sess) as s:
        assert s.session_reused


# ----------------------------------------------------------------------- redirect
def test_redirect_http_to_https_points_at_the_tls_port(gateway_factory, upstream, ca, certs):
    port = free_port()
    doc = route_doc([upstream], uri="/*", plugins={"redirect": {"http_to_https": True}})
    doc["ssls"] = [ssl_obj(certs["a"], ["a.test"], id="1")]
    gw = gateway_factory(doc, node=tls_node(port))
    status, headers, _ = gw.get("/p?q=1", headers={"Host": "a.test"})
    assert status == 301
    assert headers["location"] == f"https://a.test:{port}/p?q=1"
    (rc, _, h) = curl(port, "a.test", "/p?q=1", "-k")
    assert rc == 0 and h[":status"] == "200"          # over TLS: proxied


# ------------------------------------------------------------------------ expiry
def test_certificate_expiry_is_listed_by_the_control_api_and_exported_as_a_gauge(
        gateway_factory, upstream, ca, tmp_path):
    port, cport, pport = free_port(), free_port(), free_port()
    soon = ca.issue("soon.test", days=3)
    later = ca.issue("later.test", days=200)
    cp, kp = later.files(str(tmp_path), "default")
    doc = route_doc([upstream], uri="/*")
    doc["ssls"] = [ssl_obj(soon, ["soon.test"], id="1"),
                   {"type": "client", "cert": later.cert, "key": later.key, "id": "c1"}]
    gateway_factory(doc, node={
        "pylon": {"enable_control": True, "control": {"ip": "127.0.0.1", "port": cport},
                  "ssl": {"listen": [{"ip": "127.0.0.1", "port": port}], "ssl_cert": cp,
                          "ssl_cert_key": kp}},
        "plugin_attr": {"prometheus": {"export_addr": {"ip": "127.0.0.1", "port": pport}}}})
    c = http.client.HTTPConnection("127.0.0.1", cport, timeout=5)
    c.request("GET", "/v1/certificates")
    listed = json.loads(c.getresponse().read())
    assert [o["id"] for o in listed] == ["1", "c1", "_node_default"]
    first = listed[0]
    assert first["snis"] == ["soon.test"] and first["type"] == "server"
    cert = first["certs"][0]
    assert cert["serial"] == soon.serial and cert["sans"] == ["soon.test"]
    assert 2 * 86400 < cert["expires_in"] <= 3 * 86400
    assert cert["key_type"] == "EC-secp256r1"
    assert listed[1]["type"] == "client" and listed[2]["file"] == cp

    def scrape() -> str:
        c = http.client.HTTPConnection("127.0.0.1", pport, timeout=5)
        c.request("GET", "/apisix/prometheus/metrics")
        return c.getresponse().read().decode()
    text = wait_for(lambda: scrape() if "ssl_certificate_expiry" in scrape() else None)
    rows = [ln for ln in text.splitlines()
            if ln.startswith("apisix_ssl_certificate_expiry_seconds{")]
    assert len(rows) == 3
    row = next(r for r in rows if 'id="1"' in r)
    assert 'snis="soon.test"' in row and f'serial="{soon.serial}"' in row
    assert 2 * 86400 < float(row.rsplit(" ", 1)[1]) <= 3 * 86400
