"""Pylon nodes sharing one real etcd: writes through one node are live on all of them, an
APISIX data set loads unchanged, etcd outages keep the last config serving."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.admin.test_admin_gateway import admin
from tests.admin.test_admin_gateway import wait_status as wait_for
from tests.etcd_server import EtcdServer, find_etcd
from tests.harness import free_port

KEY = "cluster-admin-key-0123456789"

pytestmark = pytest.mark.skipif(find_etcd() is None, reason="no etcd binary (apt install "
                                                           "etcd-server; scripts/test does)")


@pytest.fixture
def etcd() -> Iterator[EtcdServer]:
    with EtcdServer() as server:
        yield server


def etcd_node(etcd: EtcdServer, admin_port: int | None = None) -> dict[str, Any]:
    dep: dict[str, Any] = {"config_provider": "etcd",
                           "etcd": {"host": [etcd.url], "prefix": "/apisix", "timeout": 3}}
    node: dict[str, Any] = {"deployment": dep}
    if admin_port:
        node["pylon"] = {"enable_admin": True}
        dep["admin"] = {"admin_listen": {"ip": "127.0.0.1", "port": admin_port},
                        "admin_key": [{"name": "ops", "key": KEY}]}
    return node


def route(uri: str, upstream: Any) -> dict[str, Any]:
    return {"uri": uri, "upstream": {"type": "roundrobin", "nodes": {upstream.addr: 1}}}


def test_a_write_through_one_node_is_live_on_both(gateway_factory, etcd, upstream):
    pa = free_port()
    a = gateway_factory({}, workers=2, node=etcd_node(etcd, pa))
    b = gateway_factory({}, node=etcd_node(etcd))
    status, _ = admin(pa, "PUT", "/apisix/admin/routes/r1", route("/one", upstream), key=KEY)
    assert status == 201
    wait_for(a, "/one", 200)
    wait_for(b, "/one", 200)
    for _ in range(6):                       # every worker of node A has it
        assert a.get("/one")[0] == 200
    assert admin(pa, "DELETE", "/apisix/admin/routes/r1", key=KEY)[0] == 200
    wait_for(b, "/one", 404)


def test_an_apisix_etcd_data_set_loads_unchanged(gateway_factory, etcd, upstream):
    # as APISIX leaves it: directory placeholder keys, upstream referenced by id
    etcd.put("/apisix/routes", "init_dir")
    etcd.put("/apisix/upstreams/1", json.dumps(
        {"id": "1", "type": "roundrobin", "nodes": {upstream.addr: 1},
         "create_time": 1700000000, "update_time": 1700000000}))
    etcd.put("/apisix/routes/1", json.dumps({"id": "1", "uri": "/legacy/*",
                                             "upstream_id": "1", "status": 1}))
    gw = gateway_factory({}, node=etcd_node(etcd))
    assert gw.get("/legacy/x")[0] == 200


def test_boots_from_the_last_known_good_copy_when_etcd_is_down(gateway_factory, etcd,
                                                               upstream):
    pa = free_port()
    gw = gateway_factory({}, node=etcd_node(etcd, pa))
    assert admin(pa, "PUT", "/apisix/admin/routes/r1", route("/kept", upstream),
                 key=KEY)[0] == 201
    wait_for(gw, "/kept", 200)
    time.sleep(1.5)                          # the copy is saved at most once a second
    gw.stop()
    etcd.stop()
    gw.start()                               # etcd still down
    assert gw.get("/kept")[0] == 200
    assert "last-known-good" in gw.log()
    etcd.start()
    etcd.put("/apisix/routes/r2", json.dumps(route("/later", upstream)))
    wait_for(gw, "/later", 200, timeout=15)  # the watch catches up once etcd is back


def test_etcd_restarted_while_writing_loses_no_change(gateway_factory, etcd, upstream):
    gw = gateway_factory({}, node=etcd_node(etcd))
    etcd.put("/apisix/routes/r0", json.dumps(route("/r0", upstream)))
    wait_for(gw, "/r0", 200)
    etcd.kill()
    assert gw.get("/r0")[0] == 200           # keeps serving the last config
    etcd.start()
    for i in range(1, 6):
        etcd.put(f"/apisix/routes/r{i}", json.dumps(route(f"/r{i}", upstream)))
    for i in range(6):
        wait_for(gw, f"/r{i}", 200, timeout=15)
    assert "unreachable" in gw.log()


def test_compaction_while_nodes_watch_re_lists_without_losing_a_change(gateway_factory,
                                                                       etcd, upstream):
    gw = gateway_factory({}, node=etcd_node(etcd))
    for i in range(20):
        etcd.put(f"/apisix/routes/c{i}", json.dumps(route(f"/c{i}", upstream)))
    wait_for(gw, "/c19", 200)
    etcd.compact()
    etcd.put("/apisix/routes/c20", json.dumps(route("/c20", upstream)))
    wait_for(gw, "/c20", 200)
    for i in range(21):
        assert gw.get(f"/c{i}")[0] == 200
