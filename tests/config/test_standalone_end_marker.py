"""The standalone file applies only when it ends with ``#END`` (as APISIX's ``apisix.yaml``):
a file caught half-written keeps the last good config serving; the Admin API's own writes end
with the marker; JSON needs none.  Temporary files of an interrupted write are removed at
start."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from pylon.config import loader
from pylon.config.store import Op
from pylon.config.yaml_store import YamlStore
from tests.admin.test_admin_gateway import wait_status
from tests.behaviour.test_config_reload import wait_log
from tests.harness import Upstream, route_doc


def up_conf(u: Upstream) -> dict:
    return {"nodes": {u.addr: 1}, "type": "roundrobin"}


MISSING = "missing valid end flag"


def routes_doc(upstream, n: int, extra: list[dict] | None = None) -> dict:
    return {"routes": [{"id": f"r{i}", "uri": f"/r{i}", "upstream": up_conf(upstream)}
                       for i in range(n)] + (extra or [])}


def test_file_written_in_two_halves_never_applies_the_first_half(gateway_factory, upstream):
    gw = gateway_factory(routes_doc(upstream, 40))
    assert gw.get("/r39")[0] == 200
    new = routes_doc(upstream, 40, [{"id": "new", "uri": "/new", "upstream": up_conf(upstream)}])
    text = (yaml.safe_dump(new, sort_keys=False) + "#END\n").encode()
    cut = text.index(b"- id: r20\n")           # the first half parses: routes r0..r19
    statuses: Counter[int] = Counter()
    during = [0]                              # answers while the file was half-written
    half = threading.Event()
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            for path in ("/r39", "/r0"):
                statuses[gw.get(path)[0]] += 1
                during[0] += half.is_set()

    t = threading.Thread(target=load)
    t.start()
    try:
        time.sleep(0.3)
        fd = os.open(gw.doc_path, os.O_WRONLY | os.O_TRUNC)     # written in place
        try:
            os.write(fd, text[:cut])
            half.set()
            time.sleep(0.4)
            half.clear()
            os.write(fd, text[cut:])
        finally:
            os.close(fd)
        wait_status(gw, "/new", 200)
        time.sleep(0.3)
    finally:
        stop.set()
        t.join(10)
    print(f"two-write edit: {sum(statuses.values())} requests, {during[0]} while the file was "
          f"half-written, statuses {dict(statuses)}")
    assert set(statuses) == {200} and during[0] >= 3, (statuses, during)
    assert MISSING in gw.log()


def test_file_without_end_mark_is_reported_once_and_applies_once_marked(gateway_factory,
                                                                        upstream):
    gw = gateway_factory(route_doc([upstream], uri="/good"))
    body = yaml.safe_dump({"routes": [{"id": "r", "uri": "/next", "upstream": up_conf(upstream)}]})
    with open(gw.doc_path, "w") as f:
        f.write(body)
    m = wait_log(gw, r"\[WARNING\].*not applied, revision \d+ keeps serving: .*" + MISSING)
    assert gw.doc_path in m.group(0)
    assert gw.get("/good")[0] == 200 and gw.get("/next")[0] == 404
    time.sleep(2.2)                            # two polls of the unchanged file: no repeat
    assert gw.log().count(MISSING) == 1
    with open(gw.doc_path, "a") as f:
        f.write("#END\n")
    wait_status(gw, "/next", 200)
    assert gw.get("/good")[0] == 404


def test_start_refuses_a_yaml_file_without_end_mark(gateway_factory, upstream):
    gw = gateway_factory(start=False)
    with open(gw.doc_path, "w") as f:
        f.write(yaml.safe_dump(route_doc([upstream], uri="/a")))
    with pytest.raises(RuntimeError, match="exited with 1"):
        gw.start()
    assert MISSING in gw.log() and "#END" in gw.log()


def test_end_mark_rules_follow_apisix():
    assert loader.parse_standalone(b"routes: []\n#END\n", "a.yaml") == {"routes": []}
    assert loader.parse_standalone(b"routes: []\n#END   \n\n", "a.yaml") == {"routes": []}
    assert loader.parse_standalone(b"routes: [] #END", "a.yaml") == {"routes": []}
    assert loader.parse_standalone(b"", "a.yaml") is None          # empty: nothing half-applied
    with pytest.raises(loader.MissingEndMark):
        loader.parse_standalone(b"routes: []\n", "a.yaml")
    with pytest.raises(loader.MissingEndMark):
        loader.parse_standalone(b"routes: []\n#END\nupstreams: []\n", "a.yaml")
    assert loader.parse_standalone(b'{"routes": []}', "a.json") == {"routes": []}   # JSON: none


@pytest.mark.parametrize("name", ["pylon.yaml", "pylon.json"])
def test_admin_api_writes_of_the_file_end_with_the_mark(tmp_path: Path, name: str):
    path = tmp_path / name
    path.write_text('{"routes": []}' if name.endswith(".json") else "routes: []\n#END\n")

    async def put() -> None:
        store = YamlStore(str(path))
        await store.load()
        await store.commit([Op("routes/1", {"id": "1", "uri": "/a"})])

    asyncio.run(put())
    text = path.read_text()
    if name.endswith(".json"):
        assert json.loads(text) == {"routes": [{"id": "1", "uri": "/a"}]}
    else:
        assert text.endswith("\n#END\n")
        assert loader.parse_standalone(text.encode(), str(path)) == {
            "routes": [{"id": "1", "uri": "/a"}]}


def test_temporary_files_of_an_interrupted_write_are_removed_at_start(gateway_factory,
                                                                       upstream):
    gw = gateway_factory(route_doc([upstream], uri="/a"), start=False)
    conf = Path(gw.doc_path).parent
    stale = conf / ".pylon-k3x_9q2a.tmp"       # mkstemp's name for a write killed mid-way
    stale.write_text("routes:\n  - id: half")
    past = time.time() - 60
    os.utime(stale, (past, past))
    kept = [conf / ".pylon-notes.txt", conf / "pylon.yaml.tmp", conf / ".pylon-toolong12.tmp"]
    for p in kept:
        p.write_text("not ours")
        os.utime(p, (past, past))
    gw.start()
    assert not stale.exists()
    assert all(p.exists() for p in kept)
    assert f"removed {stale}, left by an interrupted write" in gw.log()
    assert gw.get("/a")[0] == 200
