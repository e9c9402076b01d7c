"""Secrets declared by the plugins (``encrypt_fields``) drive both encryption at rest and
masking, on a real node (master + worker) over the standalone file and over a real etcd.

For every plugin of the registry that declares secret fields (and a test plugin with a nested
one, so a plugin added later is covered the same way) each declared field is written through
the Admin API into every kind of resource that carries that plugin's configuration.  Then:

* the store (the standalone file, etcd) holds ciphertext the node keyring opens -- never
  the plaintext;
* the audit log holds neither the plaintext nor the ciphertext: the field reads ``******``;
* an admin key reads the plaintext (as APISIX answers), a viewer key reads ``******``
  (``deployment.admin.viewer_secrets: masked``, the default; ``clear`` gives viewers what
  admins read).
"""

from __future__ import annotations

import base64
import functools
import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from pylon.admin.audit import MASK
from pylon.config.encryption import Keyring
from pylon.proxy.registry import PluginSpec, load
from tests.admin.test_admin_gateway import admin, admin_node
from tests.etcd_server import EtcdServer, b64, find_etcd
from tests.harness import Gateway, Upstream, free_port
from tests.tls.certs import CA

KEYRING = "pylon-secrets-16"
ADMIN_KEY = "admin-key-for-secrets-test"
VIEWER_KEY = "viewer-key-for-secrets-test"
#: every plaintext secret of these tests contains this (PEM keys: "PRIVATE KEY")
MARK = "s3cr3t"
UP = {"type": "roundrobin", "nodes": {"127.0.0.1:1980": 1}}
#: a certificate and its key (APISIX refuses an ssl object whose cert does not parse)
PAIR = CA().issue("sec.example")
PEM = PAIR.key


#: a plugin written for this test (loaded from ``pylon.extra_plugin_dirs``): a secret nested
#: two objects deep and one at the top, as a plugin added later would declare them
TEST_PLUGIN = '''
name = "x-secret-holder"
priority = 1
schema = {"type": "object", "properties": {
    "api_token": {"type": "string"},
    "backend": {"type": "object", "properties": {
        "auth": {"type": "object", "properties": {"password": {"type": "string"}}},
        "user": {"type": "string"}}}}}
encrypt_fields = ("api_token", "backend.auth.password")
'''

#: what a plugin's schema cannot say (its ``check`` wants it): merged into the example
BASE: dict[str, dict[str, Any]] = {
    "limit-count": {"count": 10, "time_window": 60},
    "openid-connect": {"discovery": "http://127.0.0.1:1/.well-known/openid-configuration"},
}
#: a route-level configuration is written on each of these (a consumer-level one on a
#: consumer and one of its credentials, a metadata one on plugin_metadata)
ROUTE_KINDS = ("routes", "services", "plugin_configs", "global_rules", "consumer_groups")


# -- a minimal valid configuration of any plugin, from its schema ------------------------
def sub_schema(schema: Any, path: str) -> Any:
    """The schema of dotted ``path`` in an object schema (None: not declared there)."""
    cur = schema
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        props = dict(cur.get("properties") or {})
        for alt in ("then", "else"):
            if isinstance(cur.get(alt), dict):
                props.update(cur[alt].get("properties") or {})
        for alt in ("allOf", "anyOf", "oneOf"):
            for s in cur.get(alt) or ():
                if isinstance(s, dict):
                    props.update(s.get("properties") or {})
        if part not in props:
            return None
        cur = props[part]
    return cur


def example(s: Any, seed: str) -> Any:
    """A small value that satisfies schema ``s`` (required properties only)."""
    if not isinstance(s, dict):
        return seed
    if "default" in s:
        return s["default"]
    if "enum" in s:
        return s["enum"][0]
    for alt in ("oneOf", "anyOf"):
        if s.get(alt) and "properties" not in s and "type" not in s:
            return example(s[alt][0], seed)
    t = s.get("type")
    t = t[0] if isinstance(t, list) else t
    if t == "object" or "properties" in s:
        req = list(s.get("required") or ())
        for alt in ("oneOf", "anyOf"):            # the first way to satisfy it
            first = (s.get(alt) or [None])[0]
            if isinstance(first, dict):
                req += [k for k in first.get("required") or () if k not in req]
        return {k: example((s.get("properties") or {}).get(k), f"{seed}-{k}") for k in req}
    if t == "array":
        return [example(s.get("items"), seed) for _ in range(s.get("minItems", 0))]
    if t in ("integer", "number"):
        return max(1, s.get("minimum", 1))
    if t == "boolean":
        return False
    v = "http://127.0.0.1:1980/x" if "pattern" in s else seed
    return v + "x" * max(0, s.get("minLength", 0) - len(v))


def put_at(conf: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for p in parents:
        conf = conf.setdefault(p, {})
    conf[last] = value


def get_at(conf: Any, path: str) -> Any:
    for p in path.split("."):
        conf = conf.get(p) if isinstance(conf, dict) else None
    return conf


def holder(store_key: str, value: dict[str, Any], plugin: str) -> dict[str, Any]:
    """Where ``plugin``'s configuration sits in a stored object."""
    return value if store_key.startswith("plugin_metadata/") else value["plugins"][plugin]


def secret(plugin: str, path: str, where: str) -> str:
    return PEM if "private_key" in path else f"{MARK}-{plugin}-{path}-{where}-0123456789"


def plugin_conf(spec: PluginSpec, schema_type: str, where: str) -> tuple[dict[str, Any],
                                                                          list[str]]:
    """A valid ``schema_type`` configuration of ``spec`` with every declared secret of that
    schema set (and the declared paths it holds)."""
    schema = spec.schema_for(schema_type)
    paths = [p for p in spec.encrypt_fields if sub_schema(schema, p) is not None]
    conf = {**example(schema, spec.name), **BASE.get(spec.name, {})}
    if spec.consumer_key and schema_type == "consumer":
        conf[spec.consumer_key] = f"{spec.name}-{where}-id"
    for p in paths:
        put_at(conf, p, secret(spec.name, p, where))
    try:
        spec.check_conf(conf, schema_type)
    except ValueError as e:
        pytest.fail(f"no valid {schema_type} configuration of {spec.name} could be made "
                    f"({e}); add what its check needs to BASE in this file")
    return conf, paths


# -- the nodes ----------------------------------------------------------------------------
class Node:
    def __init__(self, gw: Gateway, admin_port: int, etcd: EtcdServer | None) -> None:
        self.gw, self.port, self.etcd = gw, admin_port, etcd
        self.keyring = Keyring([KEYRING])

    def call(self, method: str, path: str, body: Any = None, key: str = ADMIN_KEY
             ) -> tuple[int, dict[str, Any]]:
        return admin(self.port, method, "/apisix/admin/" + path, body, key)

    def raw_store(self) -> str:
        """Everything the store holds, as text."""
        if self.etcd is None:
            with open(self.gw.doc_path, encoding="utf-8") as f:
                return f.read()
        return "\n".join(f"{k}={v}" for k, v in self.etcd_values().items())

    def etcd_values(self) -> dict[str, str]:
        assert self.etcd is not None
        out = self.etcd.call("/v3/kv/range", {"key": b64("/apisix/"),
                                              "range_end": b64("/apisix0")})
        return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv["value"]).decode()
                for kv in out.get("kvs", [])}

    def stored(self, store_key: str) -> dict[str, Any]:
        """The object under ``store_key`` (``routes/1``, ``consumers/u/credentials/c``) as the
        store holds it."""
        if self.etcd is not None:
            return json.loads(self.etcd_values()[f"/apisix/{store_key}"])
        kind, oid = store_key.split("/", 1)
        with open(self.gw.doc_path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        for obj in doc.get(kind) or ():
            if str(obj.get("id", obj.get("username"))) == oid:
                return obj
        raise AssertionError(f"{store_key} not in the standalone file")

    def audit(self) -> str:
        with open(os.path.join(self.gw.prefix, "logs", "admin-audit.log"),
                  encoding="utf-8") as f:
            return f.read()


def node_config(admin_port: int, etcd: EtcdServer | None, plugin_dir: str,
                **admin_cfg: Any) -> dict[str, Any]:
    node = admin_node(admin_port, admin_key=[
        {"name": "root", "key": ADMIN_KEY, "role": "admin"},
        {"name": "ro", "key": VIEWER_KEY, "role": "viewer"}], **admin_cfg)
    node["pylon"].update({"data_encryption": {"keyring": [KEYRING]},
                          "extra_plugin_dirs": [plugin_dir]})
    if etcd is not None:
        node["deployment"].update({"config_provider": "etcd", "etcd": {
            "host": [etcd.url], "prefix": "/apisix", "timeout": 3}})
    return node


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    d = tmp_path_factory.mktemp("plugins")
    (d / "x_secret_holder.py").write_text(TEST_PLUGIN)
    return str(d)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory, plugin_dir: str) -> Iterator[dict[str, Node]]:
    """Three nodes started side by side: over the standalone file, over etcd (when an etcd
    binary is installed), and one with ``viewer_secrets: clear``."""
    etcd = EtcdServer().start() if find_etcd() is not None else None
    made: dict[str, Node] = {}
    try:
        for name, store, extra in (("standalone-file", None, {}), ("etcd", etcd, {}),
                                   ("clear", None, {"viewer_secrets": "clear"})):
            if name == "etcd" and etcd is None:
                continue
            port = free_port()
            gw = Gateway(str(tmp_path_factory.mktemp(name)), {},
                         node=node_config(port, store, plugin_dir, **extra))
            made[name] = Node(gw.start(wait=False), port, store)
        for n in made.values():
            n.gw.wait_ready()
        yield made
    finally:
        for n in made.values():
            n.gw.signal(signal.SIGTERM)
        for n in made.values():
            n.gw.stop()
        if etcd is not None:
            etcd.close()


@pytest.fixture(params=["standalone-file", "etcd"])
def node(request: pytest.FixtureRequest, nodes: dict[str, Node]) -> Node:
    if request.param not in nodes:
        pytest.skip("no etcd binary (apt install etcd-server; scripts/test does)")
    return nodes[request.param]


@functools.cache
def registry(plugin_dir: str | None = None) -> Any:
    return load(None, [plugin_dir] if plugin_dir else [])


def declaring_plugins() -> list[str]:
    """Every plugin of the registry that declares secret fields, and the test plugin."""
    names = sorted(n for n, s in registry().plugins.items() if s.encrypt_fields)
    return [*names, "x-secret-holder"]


# -- the tests ----------------------------------------------------------------------------
def write_everywhere(node: Node, spec: PluginSpec
                     ) -> list[tuple[str, dict[str, Any], list[str]]]:
    """``spec``'s configuration, with every declared secret set, written (one Admin API
    batch) on each kind of resource that can carry it: [(store key, configuration written,
    secret paths in it)]."""
    plugin = spec.name
    user = "sec_" + plugin.replace("-", "_")
    ops: list[tuple[str, str, dict[str, Any]]] = []          # (key, schema type, body)
    if spec.consumer_schema is not None and plugin_conf(spec, "consumer", "-")[1]:
        ops += [(f"consumers/{user}", "consumer", {"username": user}),
                (f"consumers/{user}/credentials/c1", "consumer", {})]
    if plugin_conf(spec, "route", "-")[1]:
        ops += [(f"{kind}/sec-{plugin}", "route",
                 {"uri": f"/sec/{plugin}", "upstream": UP} if kind == "routes" else {})
                for kind in ROUTE_KINDS]
    if spec.metadata_schema is not None and plugin_conf(spec, "metadata", "-")[1]:
        ops.append((f"plugin_metadata/{plugin}", "metadata", {}))
    written, batch = [], []
    for key, schema_type, body in ops:
        conf, paths = plugin_conf(spec, schema_type, key.rsplit("/", 1)[-1])
        body = conf if schema_type == "metadata" else {**body, "plugins": {plugin: conf}}
        batch.append({"method": "PUT", "path": f"/apisix/admin/{key}", "body": body})
        written.append((key, conf, paths))
    status, answer = node.call("POST", "batch", {"operations": batch})
    assert status == 200, answer
    return written


@pytest.mark.parametrize("plugin", declaring_plugins())
def test_declared_secrets_are_ciphertext_at_rest_masked_in_the_audit_log_and_for_viewers(
        node: Node, plugin_dir: str, plugin: str) -> None:
    spec = registry(plugin_dir).get(plugin)
    assert spec is not None and spec.encrypt_fields
    written: list[tuple[str, dict[str, Any], list[str]]] = []
    ciphertexts: list[str] = []
    try:
        written = write_everywhere(node, spec)
        covered = {p for _, _, paths in written for p in paths}
        assert covered == set(spec.encrypt_fields), \
            f"{plugin} declares {set(spec.encrypt_fields) - covered} in none of its schemas"
        for key, conf, paths in written:
            stored = holder(key, node.stored(key), plugin)
            admin_view = holder(key, node.call("GET", key)[1]["value"], plugin)
            status, viewer = node.call("GET", key, key=VIEWER_KEY)
            assert status == 200
            for p in paths:
                plain, sealed = get_at(conf, p), get_at(stored, p)
                assert sealed != plain and node.keyring.decrypt(sealed) == plain, (key, p)
                ciphertexts.append(sealed)
                assert get_at(admin_view, p) == plain, (key, p)       # as APISIX answers
                assert get_at(holder(key, viewer["value"], plugin), p) == MASK, (key, p)
        for parent in {k.rsplit("/", 1)[0] for k, _, _ in written}:   # lists likewise
            status, listed = node.call("GET", parent, key=VIEWER_KEY)
            assert status == 200 and listed["total"] >= 1, (parent, listed)
            text = json.dumps(listed)
            assert MARK not in text and "PRIVATE KEY" not in text, parent
            assert not any(c in text for c in ciphertexts), parent
        raw = node.raw_store()
        assert MARK not in raw and "PRIVATE KEY" not in raw
    finally:
        if written:                                 # a delete is audited too (its before)
            status, answer = node.call("POST", "batch", {"operations": [
                {"method": "DELETE", "path": f"/apisix/admin/{key}"}
                for key, _, _ in reversed(written) if "/credentials/" not in key]})
            assert status == 200, answer              # credentials go with their consumer
    audit = node.audit()
    assert MARK not in audit and "PRIVATE KEY" not in audit
    assert not any(c in audit for c in ciphertexts)
    changes = [c for line in audit.splitlines() for c in json.loads(line)["changes"]]
    for key, _, paths in written:
        seen = [c for c in changes if c["key"] == f"/apisix/{key}"]
        assert [c["before"] is None for c in seen] == [True, False], (key, seen)
        for v in (seen[0]["after"], seen[1]["before"]):
            assert all(get_at(holder(key, v, plugin), p) == MASK for p in paths), (key, v)


def test_the_node_uses_the_plaintext_of_a_secret_stored_encrypted(node: Node) -> None:
    """http-logger's ``auth_header`` is ciphertext in the store and the Authorization header
    the log server gets is the plaintext."""
    got: list[str | None] = []

    def collector(h: Any, body: bytes) -> None:
        got.append(h.headers.get("Authorization"))
        h.send_response(200)
        h.send_header("Content-Length", "0")
        h.end_headers()

    logs, origin = Upstream("logs", collector), Upstream("origin")
    try:
        plain = f"Bearer {MARK}-http-logger-e2e"
        route = {"uri": "/logged", "upstream": {"nodes": {origin.addr: 1},
                                                 "type": "roundrobin"},
                 "plugins": {"http-logger": {"uri": f"http://{logs.addr}/log",
                                             "auth_header": plain, "batch_max_size": 1}}}
        assert node.call("PUT", "routes/logged", route)[0] in (200, 201)
        assert get_at(node.stored("routes/logged"), "plugins.http-logger.auth_header") != plain
        deadline = time.monotonic() + 10
        while node.gw.get("/logged")[0] != 200:
            assert time.monotonic() < deadline, node.gw.log()[-3000:]
            time.sleep(0.05)
        while not got:
            assert time.monotonic() < deadline, "the log server got nothing"
            time.sleep(0.05)
        assert got[0] == plain
    finally:
        node.call("DELETE", "routes/logged")
        logs.close()
        origin.close()


def test_resource_secrets_are_masked_too(node: Node) -> None:
    """Secrets that are fields of a resource rather than of a plugin: SSL private keys,
    an upstream's ``tls.client_key`` (inline in a route as well) and a secret manager's
    credentials."""
    cert = PAIR.cert
    tls = {"client_cert": cert, "client_key": PEM}
    writes = {
        "ssls/sec-ssl": {"cert": cert, "key": PEM, "snis": ["sec.example"]},
        "upstreams/sec-up": {**UP, "scheme": "https", "tls": tls},
        "routes/sec-tls": {"uri": "/sec-tls", "upstream": {**UP, "scheme": "https",
                                                           "tls": tls}},
        "secrets/vault/sec-vault": {"uri": "http://127.0.0.1:8200", "prefix": "kv/apisix",
                                    "token": f"{MARK}-vault-token"},
    }
    for url, body in writes.items():
        status, answer = node.call("PUT", url, body)
        assert status in (200, 201), (url, answer)
    try:
        for url in writes:
            viewer = json.dumps(node.call("GET", url, key=VIEWER_KEY)[1])
            assert MARK not in viewer and "PRIVATE KEY" not in viewer, url
        up = node.call("GET", "upstreams/sec-up", key=VIEWER_KEY)[1]["value"]
        assert up["tls"] == {"client_cert": cert, "client_key": MASK}
        assert node.call("GET", "secrets/vault/sec-vault")[1]["value"]["token"] == \
            f"{MARK}-vault-token"                              # admins read it
        assert "key" not in node.call("GET", "ssls/sec-ssl")[1]["value"]   # nobody does
    finally:
        for url in writes:
            node.call("DELETE", url)
    audit = node.audit()
    assert MARK not in audit and "PRIVATE KEY" not in audit
    ssl_key = get_at(node_audit_after(audit, "ssls/sec-ssl"), "key")
    assert ssl_key == MASK


def node_audit_after(audit: str, store_key: str) -> dict[str, Any]:
    """The value the first audit line that wrote ``store_key`` recorded."""
    for line in audit.splitlines():
        for c in json.loads(line)["changes"]:
            if c["key"] == f"/apisix/{store_key}" and c["after"] is not None:
                return c["after"]
    raise AssertionError(f"{store_key} not in the audit log")


def test_a_field_named_like_a_secret_but_not_declared_is_logged(node: Node) -> None:
    """Masking follows the declarations, not field names: limit-count's ``key`` (the
    variable it counts by) is no secret and stays readable in the audit log."""
    body = {"uri": "/counted", "upstream": UP,
            "plugins": {"limit-count": {"count": 5, "time_window": 60,
                                        "key": "http_x_tenant"}}}
    assert node.call("PUT", "routes/counted", body)[0] in (200, 201)
    node.call("DELETE", "routes/counted")
    after = node_audit_after(node.audit(), "routes/counted")
    assert after["plugins"]["limit-count"]["key"] == "http_x_tenant"


def test_viewer_secrets_clear_gives_viewers_what_admins_read(nodes: dict[str, Node]) -> None:
    n = nodes["clear"]
    body = {"username": "jack", "plugins": {"key-auth": {"key": f"{MARK}-jack"}}}
    assert n.call("PUT", "consumers", body)[0] == 201
    viewer = n.call("GET", "consumers/jack", key=VIEWER_KEY)[1]["value"]
    assert viewer["plugins"]["key-auth"]["key"] == f"{MARK}-jack"
    assert MARK not in n.raw_store() and MARK not in n.audit()      # still sealed, masked


def test_a_plugin_this_node_does_not_know_is_masked_whole() -> None:
    """A stored configuration of a plugin missing from the registry (e.g. left out of the
    node's ``plugins`` list after it was written): its secrets are unknown, so all of it
    is masked."""
    from pylon.admin.audit import mask_secrets
    value = {"uri": "/x", "plugins": {"gone-plugin": {"token": "t"},
                                      "key-auth": {"header": "apikey"}}}
    out = mask_secrets("routes", value, registry())
    assert out["plugins"] == {"gone-plugin": MASK, "key-auth": {"header": "apikey"}}
    assert value["plugins"]["gone-plugin"] == {"token": "t"}       # the input is untouched
