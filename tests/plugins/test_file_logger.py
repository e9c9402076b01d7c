"""file-logger through a real gateway."""

from __future__ import annotations

import os
import tempfile

import pytest

from pylon.pdk.testing import Kit

from .log_receivers import json_lines

DIR = tempfile.mkdtemp(prefix="pylon-filelog-")
FMT = os.path.join(DIR, "sub", "fmt.log")
META = os.path.join(DIR, "meta.log")


@pytest.fixture(scope="module")
def kit():
    doc = {
        "routes": [
            {"id": "fmt", "uri": "/fmt", "plugins": {"file-logger": {
                "path": FMT, "log_format": {"m": "$request_method", "u": "$uri"}}}},
            {"id": "meta", "uri": "/meta", "plugins": {"file-logger": {"path": META}}},
        ],
        "plugin_metadata": [{"id": "file-logger",
                             "log_format": {"host": "$host", "ip": "$remote_addr"}}],
    }
    with Kit(doc) as k:
        yield k


def test_plugin_metadata_log_format_applies_without_route_format(kit):
    kit.get("/meta")
    got = json_lines(META, 1)
    assert got == [{"host": "127.0.0.1", "ip": "127.0.0.1", "route_id": "meta"}]


def test_route_log_format_wins_and_directories_are_made(kit):
    kit.get("/fmt")
    kit.post("/fmt", body="x")
    got = json_lines(FMT, 2)
    assert [g["m"] for g in got] == ["GET", "POST"]
    assert all(g["u"] == "/fmt" and g["route_id"] == "fmt" for g in got)
