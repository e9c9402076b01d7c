"""The plugin system through a real gateway: custom plugins from a directory, phase order,
merging (global rules, service, plugin_config, consumer), _meta, async hooks, failures,
response phases, the Admin API's view of plugins, and reload without dropping requests."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from pylon.pdk.testing import Kit

PROBE = '''
import asyncio
name = "{name}"
priority = {priority}
version = 1.0
schema = {{"type": "object", "properties": {{
    "tag": {{"type": "string", "default": "{name}"}},
    "deny": {{"type": "integer"}}, "crash": {{"type": "boolean", "default": False}},
    "slow": {{"type": "number"}}, "upper": {{"type": "boolean", "default": False}},
    "log_file": {{"type": "string"}}}}, "additionalProperties": False}}
GENERATION = "{generation}"

def _trail(ctx, what):
    t = ctx.store.setdefault("trail", [])
    t.append(what)
    ctx.set_header("X-Trail", ",".join(t))

def rewrite(conf, ctx):
    _trail(ctx, conf["tag"] + ".rewrite")

def access(conf, ctx):
    _trail(ctx, conf["tag"] + ".access")
    ctx.set_header("X-Generation-" + name, GENERATION)
    if conf["crash"]:
        raise RuntimeError("boom")
    if conf.get("deny"):
        return conf["deny"], {{"message": "denied by " + conf["tag"]}}
    if conf.get("slow") is not None:
        return _slow(conf, ctx)

async def _slow(conf, ctx):
    await asyncio.sleep(conf["slow"])
    body = await ctx.read_body()
    ctx.set_header("X-Body-Len", str(len(body)))

def header_filter(conf, ctx):
    ctx.set_resp_header("X-Probe-" + conf["tag"], str(ctx.status))
    if conf["upper"]:
        ctx.body_will_change()

def body_filter(conf, ctx, chunk, last):
    return chunk.upper() if conf["upper"] else chunk

def log(conf, ctx):
    if conf.get("log_file"):
        with open(conf["log_file"], "a") as f:
            f.write(f"{{ctx.status}} {{ctx.route_id}} {{ctx.consumer_name}}\\n")
'''


def write_probe(d: Path, name: str, priority: int, generation: str = "1") -> None:
    (d / f"{name}.py").write_text(PROBE.format(name=name, priority=priority,
                                               generation=generation))


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("plugins")
    write_probe(d, "probe", 91000)
    write_probe(d, "probe2", 91500)
    return d


@pytest.fixture(scope="module")
def log_file(tmp_path_factory):
    return str(tmp_path_factory.mktemp("log") / "probe.log")


def doc(log_file: str) -> dict:
    return {
        "global_rules": [{"id": "g", "plugins": {"probe2": {"tag": "g", "_meta": {
            "filter": [["uri", "~~", "^/(ordered|nowhere)"]]}}}},
                         {"id": "g2", "plugins": {"probe": {"tag": "gdeny", "deny": 418,
                                                            "_meta": {"filter": [
                                                                ["uri", "==", "/teapot"]]}}}}],
        "consumers": [{"username": "jack", "plugins": {"key-auth": {"key": "jk"},
                                                       "probe": {"tag": "c"}}}],
        "services": [{"id": "s1", "plugins": {"probe": {"tag": "s"}, "probe2": {"tag": "s2"}}}],
        "plugin_configs": [{"id": "pc1", "plugins": {"probe2": {"tag": "pc"}}}],
        "routes": [
            {"id": "ordered", "uri": "/ordered", "plugins": {"probe": {"tag": "r"}}},
            {"id": "disabled", "uri": "/disabled",
             "plugins": {"probe": {"deny": 403, "_meta": {"disable": True}}}},
            {"id": "prio", "uri": "/prio", "plugins": {"probe": {"deny": 401, "tag": "a"},
                                                       "probe2": {"deny": 402, "tag": "b"}}},
            {"id": "prio2", "uri": "/prio2",
             "plugins": {"probe": {"deny": 401, "tag": "a", "_meta": {"priority": 99999}},
                         "probe2": {"deny": 402, "tag": "b"}}},
            {"id": "errresp", "uri": "/errresp",
             "plugins": {"probe": {"deny": 403, "_meta": {"error_response": {"msg": "custom"}}}}},
            {"id": "crash", "uri": "/crash", "plugins": {"probe": {"crash": True}}},
            {"id": "slow", "uri": "/slow", "plugins": {"probe": {"slow": 0.05}}},
            {"id": "merged", "uri": "/merged", "service_id": "s1", "plugin_config_id": "pc1",
             "plugins": {"probe": {"tag": "r"}}},
            {"id": "consumer", "uri": "/consumer",
             "plugins": {"key-auth": {}, "probe": {"tag": "r"}}},
            {"id": "upper", "uri": "/upper",
             "plugins": {"probe": {"upper": True, "log_file": log_file}}},
        ],
    }


@pytest.fixture(scope="module")
def kit(plugin_dir, log_file):
    with Kit(doc(log_file), plugin_dirs=[str(plugin_dir)], admin_key="a" * 32) as k:
        yield k


def trail(r) -> list[str]:
    return r.json()["headers"]["x-trail"].split(",")


def test_global_rule_phases_run_before_the_routes_in_each_phase(kit):
    r = kit.get("/ordered")
    assert r.status == 200
    assert trail(r) == ["g.rewrite", "g.access", "r.rewrite", "r.access"]
    assert r.headers["x-probe-g"] == "200" and r.headers["x-probe-r"] == "200"


def test_global_rules_run_for_requests_no_route_matches(kit):
    r = kit.get("/teapot")
    assert r.status == 418 and r.json() == {"message": "denied by gdeny"}
    r = kit.get("/nowhere")
    assert r.status == 404                    # after the global rule ran:
    assert r.headers["x-probe-g"] == "404"    # its header_filter saw the 404


def test_meta_filter_limits_a_global_rule(kit):
    r = kit.get("/disabled")
    assert "x-probe-g" not in r.headers


def test_meta_disable_turns_a_plugin_off(kit):
    assert kit.get("/disabled").status == 200


def test_higher_priority_runs_first_and_meta_priority_overrides(kit):
    r = kit.get("/prio")
    assert r.status == 402 and r.json() == {"message": "denied by b"}
    r = kit.get("/prio2")
    assert r.status == 401 and r.json() == {"message": "denied by a"}


def test_meta_error_response_replaces_the_reply_body(kit):
    r = kit.get("/errresp")
    assert r.status == 403 and r.json() == {"msg": "custom"}


def test_a_plugin_that_raises_gives_500_and_the_gateway_keeps_serving(kit):
    r = kit.get("/crash")
    assert r.status == 500
    assert r.json() == {"error_msg": "500 Internal Server Error"}
    assert "plugin probe failed in access" in kit.log()
    assert "RuntimeError: boom" in kit.log()
    assert kit.get("/ordered").status == 200
    time.sleep(0.2)
    assert any("/crash" in ln and "plugin_failed" in ln for ln in kit.access_log())


def test_async_hook_reads_the_body_and_the_body_still_reaches_upstream(kit):
    r = kit.post("/slow", body=b"hello world")
    assert r.status == 200
    echo = r.json()
    assert echo["body"] == "hello world"
    assert echo["headers"]["x-body-len"] == "11"
    big = b"x" * (300 * 1024)                 # beyond the 64 KiB pending buffer
    r = kit.post("/slow", body=big)
    assert r.status == 200 and r.json()["headers"]["x-body-len"] == str(len(big))
    assert len(r.json()["body"]) == len(big)


def test_route_overrides_plugin_config_overrides_service(kit):
    r = kit.get("/merged")
    assert r.status == 200
    # probe: route's (r) over the service's (s); probe2: plugin_config's (pc) over service's
    assert trail(r) == ["pc.rewrite", "r.rewrite", "pc.access", "r.access"]


def test_consumer_plugins_override_the_routes_after_authentication(kit):
    r = kit.get("/consumer", headers={"apikey": "jk"})
    assert r.status == 200
    # the route's probe rewrite runs before auth; then the consumer's probe replaces it
    assert trail(r) == ["r.rewrite", "c.rewrite", "c.access"]
    assert kit.get("/consumer").status == 401


def test_header_and_body_filters_rewrite_the_response_and_log_runs(kit, log_file):
    r = kit.get("/upper")
    assert r.status == 200
    assert r.body == r.body.upper() and b'"PATH": "/UPPER"' in r.body
    assert "content-length" not in r.headers        # streamed chunked after the change
    deadline = time.monotonic() + 5
    seen = ""
    while time.monotonic() < deadline and "200 upper None" not in seen:
        time.sleep(0.02)
        if os.path.exists(log_file):
            seen = Path(log_file).read_text()
    assert "200 upper None" in seen


def test_admin_api_publishes_and_enforces_plugin_schemas(kit):
    r = kit.admin("GET", "/plugins/list")
    names = r.json()
    assert "probe" in names and "key-auth" in names
    assert names.index("probe2") < names.index("probe")      # by priority
    r = kit.admin("GET", "/plugins/probe")
    assert r.status == 200 and r.json()["properties"]["tag"]["type"] == "string"
    r = kit.admin("PUT", "/routes/bad", {"uri": "/bad", "plugins": {"probe": {"tag": 5}},
                                         "upstream": {"nodes": {"127.0.0.1:1": 1}}})
    assert r.status == 400
    assert "failed to check the configuration of plugin probe err" in r.json()["error_msg"]
    assert 'property "tag"' in r.json()["error_msg"]
    r = kit.admin("PUT", "/routes/bad", {"uri": "/bad", "plugins": {"nope": {}},
                                         "upstream": {"nodes": {"127.0.0.1:1": 1}}})
    assert r.status == 400 and "unknown plugin [nope]" in r.json()["error_msg"]


def test_consumer_keys_are_encrypted_at_rest_and_duplicates_refused(kit):
    r = kit.admin("PUT", "/consumers", {"username": "ann",
                                        "plugins": {"key-auth": {"key": "ann-secret-key"}}})
    assert r.status in (200, 201), r.body
    assert "ann-secret-key" not in Path(kit.doc_path).read_text()          # stored encrypted
    r = kit.admin("GET", "/consumers/ann")
    assert r.json()["value"]["plugins"]["key-auth"]["key"] == "ann-secret-key"
    r = kit.admin("PUT", "/consumers", {"username": "eve",
                                        "plugins": {"key-auth": {"key": "ann-secret-key"}}})
    assert r.status == 400
    assert r.json() == {"error_msg": "duplicate key found with consumer: ann"}
    r = kit.admin("PUT", "/consumers/ann/credentials/c2",
                  {"plugins": {"key-auth": {"key": "jk"}}})
    assert r.status == 400 and "duplicate key found with consumer: jack" in r.text
    # the encrypted key works on the data plane
    kit.admin("PUT", "/routes/ka", {"uri": "/ka", "plugins": {"key-auth": {}},
                                    "upstream": {"nodes": {kit.upstream.addr: 1}}})
    deadline = time.monotonic() + 5
    while kit.get("/ka", headers={"apikey": "ann-secret-key"}).status != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    r = kit.get("/ka", headers={"apikey": "ann-secret-key"})
    assert r.json()["headers"]["x-consumer-username"] == "ann"
    assert "ann-secret-key" not in kit.log()


def test_plugin_reload_picks_up_new_code_without_dropping_requests(kit, plugin_dir):
    assert kit.get("/ordered").json()["headers"]["x-generation-probe"] == "1"
    failures: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            s = kit.get("/ordered").status
            if s != 200:
                failures.append(s)

    t = threading.Thread(target=hammer)
    t.start()
    try:
        write_probe(plugin_dir, "probe", 91000, generation="2")
        r = kit.admin("PUT", "/plugins/reload")
        assert r.status == 200 and r.json() == "done"
        deadline = time.monotonic() + 5
        while kit.get("/ordered").json()["headers"]["x-generation-probe"] != "2":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # a broken plugin file refuses the reload; the running plugins stay
        (plugin_dir / "broken.py").write_text("name = 'broken'\npriority = 91700\n1/0\n")
        r = kit.admin("PUT", "/plugins/reload")
        assert r.status == 503 and "ZeroDivisionError" in r.json()["error_msg"]
        (plugin_dir / "broken.py").unlink()
    finally:
        stop.set()
        t.join(10)
    assert failures == []
    assert kit.get("/ordered").json()["headers"]["x-generation-probe"] == "2"


def test_node_plugins_list_limits_what_loads(plugin_dir):
    with Kit({"routes": [{"id": "p", "uri": "/p", "plugins": {"probe": {}}},
                         {"id": "k", "uri": "/k", "plugins": {"key-auth": {}}}]},
             plugin_dirs=[str(plugin_dir)], plugins=["key-auth"]) as k:
        assert k.get("/k").status == 401
        assert k.get("/p").status == 404
        assert "unknown plugin [probe]" in k.log()


def test_installed_package_plugins_load_through_entry_points(tmp_path):
    site = tmp_path / "site"
    (site / "acme_plugins").mkdir(parents=True)
    (site / "acme_plugins" / "__init__.py").write_text("")
    (site / "acme_plugins" / "stamp.py").write_text(
        "name = 'acme-stamp'\npriority = 91900\n"
        "def access(conf, ctx):\n    ctx.set_header('X-Acme', 'stamped')\n")
    dist = site / "acme_plugins-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-plugins\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[pylon.plugins]\nacme-stamp = acme_plugins.stamp\n")
    path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    with Kit({"routes": [{"uri": "/e", "plugins": {"acme-stamp": {}}}]},
             env={"PYTHONPATH": path}) as k:
        r = k.get("/e")
        assert r.status == 200 and r.json()["headers"]["x-acme"] == "stamped"
