"""The node config's ``apisix.ssl`` section and the ssl objects' write-time checks, without a
running node: what is accepted, and the clear error (with its key path) for what is not."""

from __future__ import annotations

import ssl

import pytest

from pylon.admin.checks import check_resource
from pylon.errors import ConfigError
from pylon.settings import load_settings
from pylon.tls.table import SslCompiler

from .certs import CA


def settings(data):
    return load_settings(data, "/srv/pylon", "/srv/pylon/conf/config.yaml")[0]


def test_apisix_ssl_listen_adds_tls_listeners_beside_node_listen():
    s = settings({"apisix": {"node_listen": [9080], "ssl": {
        "listen": [9443, {"ip": "127.0.0.1", "port": 9444, "enable_http2": True}],
        "ssl_protocols": "TLSv1.3"}}})
    assert s.listen == [("0.0.0.0", 9080), ("0.0.0.0", 9443), ("127.0.0.1", 9444)]
    assert s.tls_listen == {("0.0.0.0", 9443): False, ("127.0.0.1", 9444): True}
    assert s.ssl_ports == [9443, 9444]
    assert s.tls.min_version == s.tls.max_version == ssl.TLSVersion.TLSv1_3


def test_ssl_enable_false_opens_no_tls_listener():
    s = settings({"apisix": {"ssl": {"enable": False, "listen": [9443]}}})
    assert s.tls_listen == {} and s.listen == [("0.0.0.0", 9080)]


@pytest.mark.parametrize(("ssl_cfg", "path", "words"), [
    ({"ssl_protocols": "TLSv1.2 SSLv3"}, "apisix.ssl.ssl_protocols", "unknown protocol 'SSLv3'"),
    ({"ssl_ciphers": "NO-SUCH-CIPHER"}, "apisix.ssl.ssl_ciphers", "no usable cipher"),
    ({"ssl_cert": "/nonexistent.crt"}, "apisix.ssl.ssl_cert", "go together"),
    ({"ssl_cert": "/nonexistent.crt", "ssl_cert_key": "/nonexistent.key"},
     "apisix.ssl.ssl_cert", "cannot load"),
    ({"listen": [9080]}, "apisix.ssl.listen[0]", "also a plain HTTP listener"),
])
def test_bad_ssl_section_stops_the_start_naming_the_key(ssl_cfg, path, words):
    with pytest.raises(ConfigError) as e:
        settings({"apisix": {"ssl": ssl_cfg}})
    assert path in str(e.value) and words in str(e.value)


@pytest.fixture(scope="module")
def pair():
    return CA().issue("a.test")


def test_secret_references_in_ssl_objects_are_refused_at_write(pair):
    conf = {"cert": pair.cert, "key": "$secret://vault/1/ssl/key", "snis": ["a.test"]}
    err = check_resource("ssls", conf, lambda k, i: False, None)  # type: ignore[arg-type]
    assert err is not None and "$secret://" in err and "not supported" in err


def test_status_0_objects_are_kept_but_serve_no_name(pair):
    c = SslCompiler()
    obj = {"cert": pair.cert, "key": pair.key, "snis": ["a.test"]}
    assert c.update({"1": {**obj, "status": 0}}, set()) == []
    assert c.table.find("a.test") is None
    c.update({"1": obj}, set())
    found = c.table.find("a.test")
    assert found is not None and found.id == "1"


def test_smaller_id_serves_a_name_two_objects_claim_and_wildcards_are_one_label(pair):
    c = SslCompiler()
    obj = {"cert": pair.cert, "key": pair.key}
    c.update({"20": {**obj, "snis": ["a.test", "*.w.test"]},
              "3": {**obj, "snis": ["A.Test."]}}, set())
    assert c.table.find("a.test").id == "3"           # type: ignore[union-attr]
    assert c.table.find("x.w.test").id == "20"        # type: ignore[union-attr]
    assert c.table.find("y.x.w.test") is None and c.table.find("w.test") is None
    c.update({}, {"3"})
    assert c.table.find("a.test").id == "20"          # type: ignore[union-attr]
