"""The node config of the stream proxy: APISIX's keys, and a bad value stops the start with
its key path."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
import yaml

from pylon.errors import ConfigError
from pylon.settings import load_settings


def settings(apisix: dict[str, Any]) -> Any:
    return load_settings({"apisix": apisix}, "/tmp", "config.yaml")


def test_listeners_in_every_form_apisix_accepts() -> None:
    s, warnings = settings({"proxy_mode": "http&stream", "stream_proxy": {
        "tcp": [9100, "127.0.0.1:9101", {"addr": "[::1]:9102", "tls": True},
                {"addr": 9103}],
        "udp": [9200, "127.0.0.1:9211"]}})
    assert not warnings
    assert s.stream_tcp == {("0.0.0.0", 9100): False, ("127.0.0.1", 9101): False,
                            ("::1", 9102): True, ("0.0.0.0", 9103): False}
    assert s.udp_listen == [("0.0.0.0", 9200), ("127.0.0.1", 9211)]
    assert ("0.0.0.0", 9080) in s.listen and ("127.0.0.1", 9101) in s.listen


def test_stream_mode_opens_no_http_listener() -> None:
    s, _ = settings({"proxy_mode": "stream", "stream_proxy": {"udp": [9200]}})
    assert s.listen == [] and s.udp_listen == [("0.0.0.0", 9200)]


def test_stream_proxy_without_a_stream_mode_is_ignored_with_a_warning() -> None:
    s, warnings = settings({"stream_proxy": {"tcp": [9100]}})
    assert s.proxy_mode == "http" and s.stream_tcp == {}
    assert any("proxy_mode is http" in w for w in warnings)


@pytest.mark.parametrize(("apisix", "path", "words"), [
    ({"proxy_mode": "tcp"}, "apisix.proxy_mode", "Invalid enum value 'tcp'"),
    ({"proxy_mode": "stream"}, "apisix.stream_proxy", "needs at least one tcp or udp"),
    ({"proxy_mode": "stream", "stream_proxy": {"tcp": ["db:9100"]}},
     "apisix.stream_proxy.tcp[0]", "bad address 'db:9100'"),
    ({"proxy_mode": "stream", "stream_proxy": {"tcp": [9100, "127.0.0.1:99999"]}},
     "apisix.stream_proxy.tcp[1]", "bad port"),
    ({"proxy_mode": "stream", "stream_proxy": {"udp": [0]}},
     "apisix.stream_proxy.udp[0]", "Expected int >= 1"),
    ({"proxy_mode": "stream", "stream_proxy": {"tcp": [{"addr": 9100, "tls": "yes"}]}},
     "apisix.stream_proxy.tcp[0]", ""),
    ({"proxy_mode": "http&stream", "stream_proxy": {"tcp": [9080]}},
     "apisix.stream_proxy.tcp[0]", "0.0.0.0:9080 is already a listener"),
])
def test_bad_stream_config_names_its_key(apisix: dict[str, Any], path: str,
                                         words: str) -> None:
    with pytest.raises(ConfigError) as e:
        settings(apisix)
    assert e.value.path.startswith(path), (e.value.path, str(e.value))
    assert words in str(e.value)


def test_pylon_start_refuses_a_bad_stream_listener(tmp_path: Any) -> None:
    os.makedirs(tmp_path / "conf")
    with open(tmp_path / "conf" / "config.yaml", "w") as f:
        yaml.safe_dump({"apisix": {"proxy_mode": "stream",
                                   "stream_proxy": {"tcp": ["nowhere:1"]}}}, f)
    out = subprocess.run([sys.executable, "-m", "pylon.cli", "start", "-p", str(tmp_path)],
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode != 0
    assert "apisix.stream_proxy.tcp[0]" in out.stderr + out.stdout


def test_stream_plugins_list_as_apisix() -> None:
    """``stream_plugins:`` names what stream routes may use; with only a ``plugins:`` list
    it is APISIX's default list; with neither, every plugin with stream hooks."""
    from pylon.node import load_plugins
    s, _ = load_settings({"plugins": ["key-auth", "ip-restriction"],
                          "stream_plugins": ["mqtt-proxy", "ip-restriction"]}, "/tmp", "x")
    reg = load_plugins(s)
    assert reg.check_plugins({"mqtt-proxy": {"protocol_name": "MQTT", "protocol_level": 4}},
                             "stream") is None
    assert reg.check_plugins({"syslog": {"host": "h", "port": 1}}, "stream") == \
        "unknown plugin [syslog]"
    assert reg.check_plugins({"mqtt-proxy": {}}) == "unknown plugin [mqtt-proxy]"
    assert reg.check_plugins({"ip-restriction": {"whitelist": ["1.2.3.4"]}}) is None

    s, _ = load_settings({"plugins": ["key-auth"], "apisix": {
        "proxy_mode": "stream", "stream_proxy": {"tcp": [9100]}}}, "/tmp", "x")
    assert s.stream_plugins == ["ip-restriction", "limit-conn", "mqtt-proxy", "syslog"]
    assert load_plugins(s).check_plugins({"ip-restriction": {"whitelist": ["1.2.3.4"]}}) \
        == "unknown plugin [ip-restriction]"          # http: not in `plugins`
    s, _ = load_settings({"plugins": ["key-auth"]}, "/tmp", "x")
    assert s.stream_plugins == []                # no stream proxy: no stream plugins
    s, _ = load_settings({}, "/tmp", "x")
    assert s.stream_plugins is None
    assert load_plugins(s).check_plugins({"prometheus": {}}, "stream") is None
