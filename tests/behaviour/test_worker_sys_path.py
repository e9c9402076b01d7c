"""Workers start with the current directory off ``sys.path``: a folder named ``pylon`` where
the node is started (a checkout, a config folder) must not shadow the installed package in
the worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import yaml

from pylon.pdk.testing import EchoUpstream, free_port


def test_node_started_next_to_a_pylon_folder_serves(tmp_path):
    (tmp_path / "pylon").mkdir()                       # empty: a namespace package
    # the installed package, as a user runs it: a checkout on PYTHONPATH would be a regular
    # package found before the namespace folder, and nothing would be shadowed
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    shadowed = subprocess.run([sys.executable, "-m", "pylon.cli", "version"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60,
                              check=False, env=env)
    assert shadowed.returncode != 0                   # the folder does shadow `-m pylon...`
    port = free_port()
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text(yaml.safe_dump({
        "pylon": {"node_listen": [{"ip": "127.0.0.1", "port": port}], "workers": 2,
                  "enable_admin": False, "enable_control": False},
        "nginx_config": {"error_log_level": "info", "worker_shutdown_timeout": "2s"},
        "plugin_attr": {"prometheus": {"enable_export_server": False}},
    }))
    up = EchoUpstream()
    (tmp_path / "conf" / "pylon.yaml").write_text(yaml.safe_dump({"routes": [
        {"id": "1", "uri": "/x", "upstream": {"type": "roundrobin",
                                              "nodes": {up.addr: 1}}}]}) + "#END\n")
    log = tmp_path / "out.log"
    # the master as the `pylon` console script runs it (its own directory first on sys.path)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-P", "-m", "pylon.cli", "start", "-p", "."],
                                cwd=tmp_path, stdout=out, stderr=out, start_new_session=True,
                                env=env)
    try:
        deadline = time.monotonic() + 30
        while "pylon started" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        for _ in range(6):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/x", timeout=10) as r:
                assert r.status == 200
        text = log.read_text()
        assert "worker 0 started" in text and "worker 1 started" in text
        assert "exited" not in text and "ImportError" not in text, text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        up.close()
