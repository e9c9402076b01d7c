"""The ``pylon`` command line: validate, version, help, first start, reload/stop without a
running gateway.  Every command runs as a real subprocess against a temporary prefix."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import pylon
from pylon import _native
from tests.harness import free_port

PKG_CONF = Path(pylon.__file__).parent / "conf"


def run(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pylon.cli", *args], capture_output=True,
                          check=False, text=True, timeout=timeout)


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    """A prefix holding copies of the embedded default configuration."""
    (tmp_path / "conf").mkdir()
    for f in PKG_CONF.glob("*.yaml"):
        shutil.copy(f, tmp_path / "conf" / f.name)
    return tmp_path


def write_node(prefix: Path, **sections) -> None:
    cfg = {"pylon": {"node_listen": [{"ip": "127.0.0.1", "port": free_port()}], "workers": 1,
                     "enable_admin": False}}
    cfg.update(sections)
    (prefix / "conf").mkdir(exist_ok=True)
    (prefix / "conf" / "config.yaml").write_text(yaml.safe_dump(cfg))


# ----------------------------------------------------------------- validate
def test_validate_accepts_the_default_configuration(prefix):
    r = run("validate", "-p", str(prefix))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok" in r.stdout
    assert "1 routes" in r.stdout


def test_validate_prints_every_error_with_its_path_and_exits_1(prefix):
    (prefix / "conf" / "pylon.yaml").write_text("""\
upstreams:
  - id: web
    nodes: {"127.0.0.1:8080": 1}
routes:
  - id: good
    uri: /good
    upstream_id: web
  - id: bad-port
    uri: /bad
    upstream:
      nodes: [{host: 127.0.0.1, port: 70000}]
  - id: orphan
    uri: /orphan
    upstream_id: nowhere
  - id: plugin
    uri: /p
    upstream_id: web
    plugins: {no-such-plugin: {}}
#END
""")
    r = run("validate", "-p", str(prefix))
    assert r.returncode == 1
    out = r.stdout
    assert "routes[1].upstream.nodes[0].port (id bad-port)" in out
    assert "routes[2].upstream_id (id orphan)" in out and "'nowhere'" in out
    assert "routes[3].plugins (id plugin)" in out and "no-such-plugin" in out
    assert "3 error(s); 1 route(s) valid" in out
    path = str(prefix / "conf" / "pylon.yaml")
    errors = [line for line in out.splitlines() if line.startswith(path)]
    assert len(errors) == 3, out


def test_validate_reports_a_yaml_syntax_error_with_line_and_column(prefix):
    (prefix / "conf" / "pylon.yaml").write_text("routes:\n  - id: r\n    uri: [/a,\n#END\n")
    r = run("validate", "-p", str(prefix))
    assert r.returncode == 1
    assert "pylon.yaml line 5 column 1" in r.stdout


def test_validate_reports_a_yaml_file_without_end_mark(prefix):
    (prefix / "conf" / "pylon.yaml").write_text("routes: []\n")
    r = run("validate", "-p", str(prefix))
    assert r.returncode == 1
    assert "missing valid end flag" in r.stdout


def test_validate_reports_a_duplicate_yaml_key_with_its_line(prefix):
    (prefix / "conf" / "pylon.yaml").write_text("routes: []\nupstreams: []\nroutes: []\n#END\n")
    r = run("validate", "-p", str(prefix))
    assert r.returncode == 1
    assert "line 3: duplicate key 'routes'" in r.stdout


def test_validate_reports_a_bad_node_config_with_its_path(prefix):
    write_node(prefix, nginx_config={"http": {"keepalive_timeout": "forever"}})
    r = run("validate", "-p", str(prefix))
    assert r.returncode == 1
    assert "nginx_config.http.keepalive_timeout: bad duration 'forever'" in r.stdout


def test_validate_prints_warnings_for_unknown_node_settings_but_passes(prefix):
    write_node(prefix, apisix_extra={"x": 1})
    r = run("validate", "-p", str(prefix))
    assert r.returncode == 0, r.stdout
    assert "warning: unknown setting apisix_extra (ignored)" in r.stdout


def test_validate_reads_a_json_standalone_file_named_in_the_node_config(tmp_path):
    write_node(tmp_path, deployment={"standalone_file": "conf/routes.json"})
    (tmp_path / "conf" / "routes.json").write_text(
        '{"routes": [{"id": "r", "uri": "/", "upstream": {"nodes": {"127.0.0.1:1": 1}}}]}')
    r = run("validate", "-p", str(tmp_path))
    assert r.returncode == 0, r.stdout
    assert "routes.json: ok (1 routes" in r.stdout


def test_validate_with_an_explicit_config_path(prefix, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("etc") / "node.yaml"
    shutil.copy(prefix / "conf" / "config.yaml", elsewhere)
    r = run("validate", "-p", str(prefix), "-c", str(elsewhere))
    assert r.returncode == 0, r.stdout


def test_validate_with_a_missing_standalone_file(prefix):
    (prefix / "conf" / "pylon.yaml").unlink()
    r = run("validate", "-p", str(prefix))
    assert r.returncode == 1
    assert "No such file" in r.stdout


# ----------------------------------------------------------------- version and help
def test_version_command_and_flag():
    r = run("version")
    assert r.returncode == 0
    # the version, then which core runs (compiled or the sources, and why)
    assert r.stdout.strip() == f"pylon {pylon.__version__}, {_native.describe()}"
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"pylon {pylon.__version__}"


def test_help_lists_the_commands_and_hides_the_internal_one():
    r = run("--help")
    assert r.returncode == 0
    for cmd in ("start", "validate", "reload", "stop", "version"):
        assert cmd in r.stdout
    assert "_worker" not in r.stdout


def test_no_command_is_a_usage_error():
    r = run()
    assert r.returncode == 2
    assert "usage: pylon" in r.stderr


# ----------------------------------------------------------------- start
@contextlib.contextmanager
def port_9080_taken():
    """Hold 127.0.0.1:9080 (or find it already taken) so a default start cannot bind."""
    s = socket.socket()
    try:
        with contextlib.suppress(OSError):
            s.bind(("127.0.0.1", 9080))
            s.listen(1)
        yield
    finally:
        s.close()


def test_first_start_writes_the_default_configuration_into_the_prefix(tmp_path):
    # the defaults listen on 9080; keep that port taken so the start stops right after
    # writing the files (and exercises the cannot-bind path) instead of serving
    with port_9080_taken():
        r = run("start", "-p", str(tmp_path), timeout=60)
    assert "wrote the default configuration" in r.stderr
    for name in ("config.yaml", "pylon.yaml"):
        assert (tmp_path / "conf" / name).read_bytes() == (PKG_CONF / name).read_bytes()
    assert r.returncode == 1
    assert "cannot start" in r.stderr and "in use" in r.stderr
    assert not (tmp_path / "logs" / "pylon.pid").exists(), "no pid file left behind"


def test_start_with_a_node_config_but_no_standalone_file_fails_and_writes_nothing(tmp_path):
    write_node(tmp_path)
    r = run("start", "-p", str(tmp_path))
    assert r.returncode == 1
    assert "cannot load" in r.stderr and "pylon.yaml" in r.stderr
    assert not (tmp_path / "conf" / "pylon.yaml").exists()


def test_start_with_an_invalid_node_config_fails_with_the_path(tmp_path):
    write_node(tmp_path, pylon={"node_listen": [{"ip": "127.0.0.1", "port": "x"}]})
    (tmp_path / "conf" / "pylon.yaml").write_text("routes: []\n")
    r = run("start", "-p", str(tmp_path))
    assert r.returncode == 1
    assert "invalid node config" in r.stderr and "pylon.node_listen[0].port" in r.stderr


def test_start_with_a_missing_explicit_config_fails_without_writing_defaults(tmp_path):
    r = run("start", "-p", str(tmp_path), "-c", str(tmp_path / "nope.yaml"))
    assert r.returncode == 1
    assert "nope.yaml" in r.stderr
    assert not (tmp_path / "conf").exists()


def test_start_with_an_unparseable_standalone_file_fails_with_the_location(tmp_path):
    write_node(tmp_path)
    (tmp_path / "conf" / "pylon.yaml").write_text("routes:\n  - uri: [\n#END\n")
    r = run("start", "-p", str(tmp_path))
    assert r.returncode == 1
    assert "pylon.yaml line" in r.stderr


# ----------------------------------------------------------------- reload / stop
@pytest.mark.parametrize("cmd", ["reload", "stop"])
def test_reload_and_stop_without_a_running_gateway_exit_1(prefix, cmd):
    r = run(cmd, "-p", str(prefix))
    assert r.returncode == 1
    assert "not running" in r.stderr
    assert str(prefix / "logs" / "pylon.pid") in r.stderr


def test_reload_with_a_stale_pid_file_says_not_running(prefix):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (prefix / "logs").mkdir()
    (prefix / "logs" / "pylon.pid").write_text(f"{dead.pid}\n")
    r = run("reload", "-p", str(prefix))
    assert r.returncode == 1
    assert "not running" in r.stderr


def test_reload_with_an_invalid_node_config_exits_1(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text("pylon: [\n")
    r = run("reload", "-p", str(tmp_path))
    assert r.returncode == 1
    assert "invalid node config" in r.stderr and "line" in r.stderr
