"""Declarative config (standalone file) and node config: parsing, validation, compilation.

Every rejection names the object (id) and the field path inside the document, so that
``pylon validate`` and the error log point at the line an operator has to fix.
"""

from __future__ import annotations

import pytest

from pylon.config.compiler import compile_resources
from pylon.config.loader import parse_text
from pylon.errors import ConfigError
from pylon.model.validate import parse_resources
from pylon.settings import load_settings

UP = {"nodes": {"127.0.0.1:1980": 1}, "type": "roundrobin"}


def compile_doc(doc):
    res, rejected = parse_resources(doc)
    compiled = compile_resources(res)
    return compiled, rejected + compiled.rejected


def by_path(rejections):
    return {r.path: r for r in rejections}


def match(compiled, path, host="example.com", method="GET"):
    m = compiled.router.match(method, host, path, None, "127.0.0.1")
    return m.route_id if m is not None else None


# ----------------------------------------------------------------- field paths and ids
def test_nested_field_error_is_reported_with_its_full_path_and_object_id():
    doc = {"routes": [
        {"id": "ok", "uri": "/ok", "upstream": UP},
        {"id": "bad", "uri": "/bad",
         "upstream": {"nodes": [{"host": "127.0.0.1", "port": 70000}]}},
    ]}
    compiled, rejected = compile_doc(doc)
    assert len(rejected) == 1
    r = rejected[0]
    assert r.path == "routes[1].upstream.nodes[0].port"
    assert r.id == "bad"
    assert r.kind == "routes"
    assert "65535" in r.message
    assert str(r).startswith("routes[1].upstream.nodes[0].port (id bad): ")
    assert set(compiled.routes) == {"ok"}, "the valid route still applies"


def test_bad_node_address_in_map_form_is_rejected_at_the_upstream():
    compiled, rejected = compile_doc({"upstreams": [
        {"id": "u", "nodes": {"127.0.0.1:99999": 1}}]})
    assert [(r.path, r.id) for r in rejected] == [("upstreams[0]", "u")]
    assert "99999" in rejected[0].message


def test_wrong_type_is_reported_with_the_field_path():
    _, rejected = compile_doc({"routes": [{"id": 7, "uri": "/x", "priority": "high"}]})
    assert [(r.path, r.id) for r in rejected] == [("routes[0].priority", "7")]
    assert "int" in rejected[0].message


def test_unknown_field_is_rejected_naming_the_field():
    compiled, rejected = compile_doc({"routes": [
        {"id": "r", "uri": "/r", "upstream": UP, "hsots": ["a.com"]}]})
    assert len(rejected) == 1
    assert rejected[0].path.startswith("routes[0]")
    assert rejected[0].id == "r"
    assert "hsots" in rejected[0].message
    assert compiled.routes == {}


def test_unknown_nested_field_is_rejected_with_the_nested_path():
    _, rejected = compile_doc({"upstreams": [
        {"id": "u", "nodes": {"127.0.0.1:1": 1},
         "timeout": {"connect": 1, "send": 1, "read": 1, "conect": 1}}]})
    assert rejected[0].path.startswith("upstreams[0].timeout")
    assert "conect" in rejected[0].message


def test_unknown_top_level_key_is_reported_and_the_rest_applies():
    compiled, rejected = compile_doc({"routs": [], "routes": [{"id": "r", "uri": "/r",
                                                              "upstream": UP}]})
    assert [r.path for r in rejected] == ["routs"]
    assert set(compiled.routes) == {"r"}


def test_non_list_kind_and_non_mapping_item_are_rejected():
    _, rejected = compile_doc({"routes": {"id": "r"}, "upstreams": ["x"]})
    paths = by_path(rejected)
    assert "routes" in paths and "list" in paths["routes"].message
    assert "upstreams[0]" in paths and "mapping" in paths["upstreams[0]"].message


def test_top_level_that_is_not_a_mapping_is_rejected():
    _, rejected = compile_doc(["routes"])
    assert len(rejected) == 1 and "mapping" in rejected[0].message


def test_route_without_uri_is_rejected():
    _, rejected = compile_doc({"routes": [{"id": "r", "upstream": UP}]})
    assert rejected[0].id == "r" and "uri" in rejected[0].message


# ----------------------------------------------------------------- ids
def test_items_without_id_are_named_arr_n_one_based():
    compiled, rejected = compile_doc({"routes": [
        {"uri": "/a", "upstream": UP},
        {"uri": "/b", "upstream": UP},
        {"uri": "/c", "upstream": {"nodes": {"127.0.0.1:0": 1}}},
    ]})
    assert set(compiled.routes) == {"arr_1", "arr_2"}
    assert [(r.path, r.id) for r in rejected] == [("routes[2].upstream", "arr_3")]
    assert match(compiled, "/b") == "arr_2"


def test_integer_ids_are_stringified():
    compiled, rejected = compile_doc({"upstreams": [dict(UP, id=1)],
                                      "routes": [{"id": 2, "uri": "/x", "upstream_id": 1}]})
    assert rejected == []
    assert compiled.routes["2"].upstream_key == "upstreams/1"


def test_duplicate_id_rejects_the_later_object_and_keeps_the_first():
    compiled, rejected = compile_doc({"routes": [
        {"id": "r", "uri": "/first", "upstream": UP},
        {"id": "r", "uri": "/second", "upstream": UP},
    ]})
    assert [(r.path, r.id) for r in rejected] == [("routes[1]", "r")]
    assert "duplicate" in rejected[0].message
    assert match(compiled, "/first") == "r"
    assert match(compiled, "/second") is None


def test_bad_id_characters_are_rejected():
    _, rejected = compile_doc({"routes": [{"id": "a b", "uri": "/", "upstream": UP}]})
    assert rejected[0].path == "routes[0].id"


# ----------------------------------------------------------------- references
def test_missing_upstream_id_is_rejected_with_the_reference_path():
    compiled, rejected = compile_doc({"routes": [{"id": "r", "uri": "/r",
                                                  "upstream_id": "nope"}]})
    assert [(r.path, r.id) for r in rejected] == [("routes[0].upstream_id", "r")]
    assert "'nope'" in rejected[0].message
    assert compiled.routes == {}


def test_missing_service_id_is_rejected_with_the_reference_path():
    _, rejected = compile_doc({"routes": [{"id": "r", "uri": "/r", "service_id": "s9"}]})
    assert [(r.path, r.id) for r in rejected] == [("routes[0].service_id", "r")]
    assert "'s9'" in rejected[0].message


def test_reference_to_a_rejected_upstream_cascades_to_service_and_route():
    compiled, rejected = compile_doc({
        "upstreams": [{"id": "u", "nodes": {"127.0.0.1:1": 1}, "type": "bogus"}],
        "services": [{"id": "s", "upstream_id": "u"}],
        "routes": [{"id": "r", "uri": "/r", "service_id": "s"},
                   {"id": "ok", "uri": "/ok", "upstream": UP}],
    })
    paths = by_path(rejected)
    assert paths["upstreams[0].type"].id == "u"
    assert paths["services[0].upstream_id"].id == "s"
    assert paths["routes[0].service_id"].id == "r"
    assert set(compiled.routes) == {"ok"}


def test_route_on_a_service_rejected_at_compile_time_is_rejected_too():
    compiled, rejected = compile_doc({
        "services": [{"id": "s", "upstream": UP, "plugins": {"no-such-plugin": {}}}],
        "routes": [{"id": "r", "uri": "/r", "service_id": "s"},
                   {"id": "ok", "uri": "/ok", "upstream": UP}],
    })
    paths = by_path(rejected)
    assert "no-such-plugin" in paths["services[0].plugins"].message
    assert paths["routes[0].service_id"].id == "r"
    assert "'s'" in paths["routes[0].service_id"].message
    assert set(compiled.routes) == {"ok"}


def test_unknown_plugin_is_refused_with_its_name_and_path():
    compiled, rejected = compile_doc({"routes": [
        {"id": "r", "uri": "/r", "upstream": UP, "plugins": {"limit-kount": {}}}]})
    assert [(r.path, r.id) for r in rejected] == [("routes[0].plugins", "r")]
    assert "limit-kount" in rejected[0].message
    assert compiled.routes == {}


def test_lua_filter_func_and_script_are_refused():
    _, rejected = compile_doc({"routes": [
        {"id": "f", "uri": "/f", "upstream": UP, "filter_func": "function(vars) return true end"},
        {"id": "s", "uri": "/s", "upstream": UP, "script": "return 1"},
    ]})
    assert {r.id for r in rejected} == {"f", "s"}
    assert all("Lua" in r.message for r in rejected)


def test_invalid_vars_expression_is_rejected_by_the_router_with_the_route_path():
    compiled, rejected = compile_doc({"routes": [
        {"id": "v", "uri": "/v", "upstream": UP, "vars": [["arg_x", "~~~", "1"]]},
        {"id": "ok", "uri": "/ok", "upstream": UP}]})
    assert [(r.path, r.id) for r in rejected] == [("routes[0]", "v")]
    assert "vars" in rejected[0].message
    assert set(compiled.routes) == {"ok"}
    assert match(compiled, "/v") is None


def test_later_kinds_are_kept_verbatim_without_errors():
    res, rejected = parse_resources({"consumers": [{"username": "jack"}]})
    assert rejected == []
    assert res.other == {"consumers": [{"username": "jack"}]}


# ----------------------------------------------------------------- precedence
PRECEDENCE_DOC = {
    "upstreams": [
        {"id": "u-route", "nodes": {"127.0.0.1:1": 1}},
        {"id": "u-svc", "nodes": {"127.0.0.1:2": 1},
         "timeout": {"connect": 7, "send": 8, "read": 9}},
    ],
    "services": [
        {"id": "s-inline", "upstream": {"nodes": {"127.0.0.1:3": 1}}, "upstream_id": "u-svc"},
        {"id": "s-ref", "upstream_id": "u-svc"},
    ],
    "routes": [
        {"id": "all", "uri": "/all", "service_id": "s-inline", "upstream_id": "u-route",
         "upstream": {"nodes": {"127.0.0.1:4": 1}}},
        {"id": "ref", "uri": "/ref", "service_id": "s-inline", "upstream_id": "u-route"},
        {"id": "svc-inline", "uri": "/svc-inline", "service_id": "s-inline"},
        {"id": "svc-ref", "uri": "/svc-ref", "service_id": "s-ref"},
        {"id": "none", "uri": "/none"},
    ],
}


@pytest.mark.parametrize("rid, key", [
    ("all", "routes/all/upstream"),             # route inline upstream wins
    ("ref", "upstreams/u-route"),               # then route upstream_id
    ("svc-inline", "services/s-inline/upstream"),  # then the service's inline upstream
    ("svc-ref", "upstreams/u-svc"),             # then the service's upstream_id
    ("none", None),
])
def test_upstream_precedence_route_inline_then_id_then_service(rid, key):
    compiled, rejected = compile_doc(PRECEDENCE_DOC)
    assert rejected == []
    assert compiled.routes[rid].upstream_key == key
    if key is not None:
        assert key in compiled.plans


def test_route_timeout_overrides_the_upstream_timeout():
    compiled, _ = compile_doc({
        "upstreams": [{"id": "u", "nodes": {"127.0.0.1:1": 1},
                       "timeout": {"connect": 1, "send": 2, "read": 3}}],
        "routes": [{"id": "own", "uri": "/own", "upstream_id": "u",
                    "timeout": {"connect": 4, "send": 5, "read": 6}},
                   {"id": "inherit", "uri": "/inherit", "upstream_id": "u"}]})
    own, inherit = compiled.routes["own"], compiled.routes["inherit"]
    assert (own.connect_timeout, own.send_timeout, own.read_timeout) == (4, 5, 6)
    assert (inherit.connect_timeout, inherit.send_timeout, inherit.read_timeout) == (1, 2, 3)


def test_partial_timeout_is_rejected_as_in_apisix():
    _, rejected = compile_doc({"routes": [{"id": "r", "uri": "/", "upstream": UP,
                                           "timeout": {"connect": 1}}]})
    assert rejected[0].path == "routes[0].timeout"
    assert "send" in rejected[0].message


def test_service_timeout_of_its_upstream_applies_to_routes_on_the_service():
    compiled, _ = compile_doc(PRECEDENCE_DOC)
    r = compiled.routes["svc-ref"]
    assert (r.connect_timeout, r.send_timeout, r.read_timeout) == (7, 8, 9)


def test_service_hosts_are_inherited_by_routes_without_hosts():
    compiled, rejected = compile_doc({
        "services": [{"id": "s", "upstream": UP, "hosts": ["svc.example.com"]}],
        "routes": [{"id": "inherits", "uri": "/a", "service_id": "s"},
                   {"id": "own", "uri": "/b", "service_id": "s", "hosts": ["own.example.com"]}],
    })
    assert rejected == []
    assert match(compiled, "/a", host="svc.example.com") == "inherits"
    assert match(compiled, "/a", host="other.example.com") is None
    assert match(compiled, "/b", host="own.example.com") == "own"
    assert match(compiled, "/b", host="svc.example.com") is None


def test_status_0_route_is_valid_but_compiled_out():
    compiled, rejected = compile_doc({"routes": [
        {"id": "off", "uri": "/off", "upstream": UP, "status": 0},
        {"id": "on", "uri": "/on", "upstream": UP, "status": 1}]})
    assert rejected == []
    assert set(compiled.routes) == {"on"}
    assert match(compiled, "/off") is None
    assert match(compiled, "/on") == "on"


def test_bad_status_value_is_rejected():
    _, rejected = compile_doc({"routes": [{"id": "r", "uri": "/", "status": 2}]})
    assert rejected[0].path == "routes[0].status"


# ----------------------------------------------------------------- loader
def test_yaml_with_end_marker_parses():
    doc = parse_text("routes:\n  - id: r\n    uri: /r\n#END\n", "pylon.yaml")
    assert doc == {"routes": [{"id": "r", "uri": "/r"}]}


def test_json_document_parses():
    assert parse_text(b'{"routes": []}', "pylon.json") == {"routes": []}


def test_bad_json_is_an_error_naming_the_file():
    with pytest.raises(ConfigError) as e:
        parse_text(b'{"routes": [', "pylon.json")
    assert "pylon.json" in str(e.value)


def test_duplicate_yaml_key_is_refused_with_its_line():
    text = "routes:\n  - id: r\n    uri: /a\n    uri: /b\n"
    with pytest.raises(ConfigError) as e:
        parse_text(text, "conf/pylon.yaml")
    assert "duplicate key 'uri'" in str(e.value)
    assert e.value.path == "conf/pylon.yaml line 4"


def test_duplicate_top_level_yaml_key_is_refused():
    with pytest.raises(ConfigError, match="duplicate key 'routes'"):
        parse_text("routes: []\nroutes: []\n", "f.yaml")


def test_yaml_merge_keys_are_not_duplicates():
    doc = parse_text("base: &b {a: 1}\nx:\n  <<: *b\n  c: 2\n", "f.yaml")
    assert doc["x"] == {"a": 1, "c": 2}


def test_bad_yaml_is_an_error_with_line_and_column():
    text = "routes:\n  - id: r\n    uri: [/a,\n"
    with pytest.raises(ConfigError) as e:
        parse_text(text, "conf/pylon.yaml")
    assert e.value.path.startswith("conf/pylon.yaml line ")
    assert " column " in e.value.path


def test_bad_indentation_points_at_the_offending_line():
    text = "routes:\n  - id: r\n    uri: /a\n   bad: 1\n"
    with pytest.raises(ConfigError) as e:
        parse_text(text, "p.yaml")
    assert e.value.path.startswith("p.yaml line 4 column")


@pytest.mark.parametrize("data, where", [
    (b"routes: []\nname: a\x00b\n", "p.yaml line 2 column 8"),
    (b"routes: []\nname: \xff\n", "p.yaml line 2 column 7"),
])
def test_bad_bytes_are_an_error_with_line_and_column(data, where):
    with pytest.raises(ConfigError) as e:
        parse_text(data, "p.yaml")
    assert e.value.path == where
    assert "unacceptable character" in e.value.message


def test_python_tags_are_refused():
    with pytest.raises(ConfigError, match="constructor"):
        parse_text("a: !!python/object/apply:os.system [echo]\n", "p.yaml")


def test_empty_document_is_none_and_compiles_to_nothing():
    doc = parse_text("", "p.yaml")
    compiled, rejected = compile_doc(doc)
    assert rejected == [] and compiled.routes == {}


# ----------------------------------------------------------------- node config
def settings(data):
    return load_settings(data, "/srv/pylon", "/srv/pylon/conf/config.yaml")


def test_node_config_defaults():
    s, warnings = settings({})
    assert warnings == []
    assert s.listen == [("0.0.0.0", 9080)]
    assert s.router == "radixtree_host_uri"
    assert s.standalone_file == "/srv/pylon/conf/pylon.yaml"
    assert s.client_header_timeout == 60 and s.send_timeout == 10
    assert s.max_body == 0 and s.max_uri == 8192 and s.max_header_bytes == 32768
    assert s.shutdown_timeout == 240
    assert s.error_log == "/srv/pylon/logs/error.log"
    assert s.access_log == "/srv/pylon/logs/access.log"
    assert s.pid_file == "/srv/pylon/logs/pylon.pid"


def test_none_document_means_defaults():
    s, _ = settings(None)
    assert s.listen == [("0.0.0.0", 9080)]


@pytest.mark.parametrize("value, seconds", [
    ("500ms", 0.5), ("2s", 2.0), ("1m", 60.0), ("1h", 3600.0), (5, 5.0), (1.5, 1.5),
    ("7", 7.0)])
def test_durations(value, seconds):
    s, _ = settings({"nginx_config": {"http": {"keepalive_timeout": value}}})
    assert s.keepalive_timeout == seconds


@pytest.mark.parametrize("value, n", [("8k", 8192), ("1m", 1 << 20), ("2g", 2 << 30),
                                      (1000, 1000), ("12", 12)])
def test_sizes(value, n):
    s, _ = settings({"nginx_config": {"http": {"client_max_body_size": value}}})
    assert s.max_body == n


def test_large_client_header_buffers_sets_the_uri_limit():
    s, _ = settings({"nginx_config": {"http": {"large_client_header_buffers": "4 16k"}}})
    assert s.max_uri == 16384


@pytest.mark.parametrize("section, key, value", [
    ("http", "client_header_timeout", "5 parsecs"),
    ("http", "keepalive_timeout", -1),
    ("http", "client_max_body_size", "1x"),
    ("http", "large_client_header_buffers", "8k"),
])
def test_bad_duration_or_size_is_an_error_with_its_path(section, key, value):
    with pytest.raises(ConfigError) as e:
        settings({"nginx_config": {section: {key: value}}})
    assert e.value.path == f"nginx_config.http.{key}"


def test_bad_worker_shutdown_timeout_is_an_error_with_its_path():
    with pytest.raises(ConfigError) as e:
        settings({"nginx_config": {"worker_shutdown_timeout": "soon"}})
    assert e.value.path == "nginx_config.worker_shutdown_timeout"


def test_type_error_in_node_config_has_its_path():
    with pytest.raises(ConfigError) as e:
        settings({"pylon": {"node_listen": [{"ip": "127.0.0.1", "port": 70000}]}})
    assert e.value.path == "pylon.node_listen[0].port"


def test_bad_router_kind_is_an_error():
    with pytest.raises(ConfigError) as e:
        settings({"pylon": {"router": "fastest"}})
    assert e.value.path.startswith("pylon.router")


def test_unknown_keys_are_warnings_with_their_paths():
    s, warnings = settings({"pylon": {"node_listen": [9100], "enable_debug": True},
                            "nginx_config": {"http": {"lua_shared_dict": {}}},
                            "graphql": {}})
    assert s.listen == [("0.0.0.0", 9100)]
    text = "\n".join(warnings)
    assert "pylon.enable_debug" in text
    assert "nginx_config.http.lua_shared_dict" in text
    assert "graphql" in text


def test_unknown_keys_inside_listen_items_are_warnings():
    _, warnings = settings({"pylon": {"node_listen": [{"port": 9100, "enable_http3": True}]}})
    assert any("pylon.node_listen[0].enable_http3" in w for w in warnings)


def test_apisix_section_is_read_like_pylon():
    s, warnings = settings({"apisix": {"node_listen": [{"ip": "127.0.0.1", "port": 9181}],
                                       "router": {"http": "radixtree_uri"}}})
    assert warnings == []
    assert s.listen == [("127.0.0.1", 9181)]
    assert s.router == "radixtree_uri"


def test_plain_port_listens_on_all_addresses_and_ipv6_when_enabled():
    s, _ = settings({"pylon": {"node_listen": [9100], "enable_ipv6": True}})
    assert s.listen == [("0.0.0.0", 9100), ("::", 9100)]


def test_workers_number_and_auto():
    s, _ = settings({"pylon": {"workers": 3}})
    assert s.workers == 3
    s, _ = settings({"pylon": {"workers": "auto"}})
    assert s.workers >= 1
    s, _ = settings({"nginx_config": {"worker_processes": 2}})
    assert s.workers == 2


def test_etcd_provider_from_role_section_with_apisix_defaults():
    s, _ = settings({"deployment": {"role": "traditional",
                                    "role_traditional": {"config_provider": "etcd"}}})
    assert s.config_provider == "etcd"
    assert s.etcd.host == ["http://127.0.0.1:2379"] and s.etcd.prefix == "/apisix"
    assert s.etcd_snapshot.endswith("conf/etcd-snapshot.json")


def test_etcd_settings_are_checked_with_their_path():
    with pytest.raises(ConfigError) as e:
        settings({"deployment": {"config_provider": "etcd", "etcd": {"prefix": "apisix"}}})
    assert e.value.path == "deployment.etcd.prefix"
    with pytest.raises(ConfigError) as e:
        settings({"deployment": {"config_provider": "etcd", "etcd": {"host": []}}})
    assert e.value.path == "deployment.etcd.host"


def test_access_log_off():
    s, _ = settings({"nginx_config": {"http": {"enable_access_log": False}}})
    assert s.access_log is None


def test_relative_paths_resolve_against_the_prefix_and_absolute_ones_stay():
    s, _ = settings({"deployment": {"standalone_file": "/etc/pylon/routes.yaml"},
                     "nginx_config": {"error_log": "var/err.log"}})
    assert s.standalone_file == "/etc/pylon/routes.yaml"
    assert s.error_log == "/srv/pylon/var/err.log"


def test_node_config_top_level_must_be_a_mapping():
    with pytest.raises(ConfigError, match="mapping"):
        settings([1, 2])
