"""The Node: what one running Pylon is made of (settings, plugins, keyring), built once from
the node config and passed in; plugins reach it only through ``pylon.pdk.node()``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from pylon.config.compiler import ConfigModel
from pylon.errors import ConfigError
from pylon.node import Node
from pylon.pdk.runtime import DETACHED, install, node
from pylon.proxy.registry import load

UP = {"nodes": {"127.0.0.1:1980": 1}}


def write_conf(tmp_path: Path, node_conf: dict[str, Any]) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(node_conf))
    return str(path)


def test_node_load_reads_the_settings_the_plugins_they_name_and_the_keyring(
        tmp_path: Path) -> None:
    path = write_conf(tmp_path, {
        "plugins": ["key-auth", "no-such-plugin"],
        "plugin_attr": {"key-auth": {"x": 1}},
        "apisix": {"data_encryption": {"keyring": ["0123456789abcdef"]}},
    })
    n = Node.load(path, str(tmp_path))
    assert n.settings is not None and n.settings.prefix == str(tmp_path)
    assert list(n.plugins.plugins) == ["key-auth"]
    assert any("no-such-plugin" in w for w in n.warnings)       # reported, not fatal
    assert n.plugin_attr("key-auth") == {"x": 1} and n.plugin_attr("jwt-auth") == {}
    assert n.keyring is not None
    assert n.keyring.open(n.keyring.seal("secret")) == "secret"


def test_node_load_without_plugins_reads_only_the_settings(tmp_path: Path) -> None:
    path = write_conf(tmp_path, {"plugins": ["key-auth"]})
    n = Node.load(path, str(tmp_path), plugins=False)
    assert n.settings is not None and n.settings.plugins == ["key-auth"]
    assert not n.plugins.plugins and n.keyring is None


def test_node_load_of_an_invalid_node_config_raises_config_error(tmp_path: Path) -> None:
    path = write_conf(tmp_path, {"apisix": {"router": {"http": "nope"}}})
    with pytest.raises(ConfigError, match="apisix.router.http"):
        Node.load(path, str(tmp_path))


def test_a_whole_compile_after_a_plugin_reload_sees_the_new_plugins() -> None:
    n = Node(plugins=load(["key-auth"]))
    model = ConfigModel(node=n)
    doc = {"routes": [{"id": "r", "uri": "/r", "upstream": UP, "plugins": {"jwt-auth": {}}}]}
    assert [r.id for r in model.load(doc).rejected] == ["r"]
    n.plugins = load(["jwt-auth"])                  # what a plugin reload does
    compiled = model.load(doc)
    assert not compiled.rejected and "jwt-auth" in compiled.routes["r"].chain.names


def test_plugins_see_the_installed_node_and_a_detached_one_before() -> None:
    n = Node(plugins=load(["key-auth"]))
    old = install(n)
    try:
        assert node() is n
        assert node().plugin("key-auth") is n.plugins.get("key-auth")
        assert node().plugin("jwt-auth") is None
    finally:
        install(old)
    assert install(old) is old and node() is old
    assert DETACHED.plugin("key-auth") is None


class _Master:
    def __init__(self, answer: Any = None, error: BaseException | None = None) -> None:
        self.answer, self.error = answer, error
        self.asked: list[tuple[str, float]] = []

    async def ask(self, t: str, timeout: float) -> Any:
        self.asked.append((t, timeout))
        if self.error is not None:
            raise self.error
        return self.answer


def test_ask_master_answers_through_the_workers_channel_and_none_without_an_answer() -> None:
    n = Node()
    assert asyncio.run(n.ask_master("scrape")) is None          # no master: a single process
    n.master = up = _Master("metrics text")
    assert asyncio.run(n.ask_master("scrape", 2.0)) == "metrics text"
    assert up.asked == [("scrape", 2.0)]
    n.master = _Master(error=TimeoutError())
    assert asyncio.run(n.ask_master("scrape")) is None
    n.master = _Master(error=ConnectionError("the master is gone"))
    assert asyncio.run(n.ask_master("scrape")) is None
