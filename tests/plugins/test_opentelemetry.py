"""opentelemetry through a real gateway, exporting to a real OTLP/HTTP receiver."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pylon.observe import otlp
from pylon.pdk.testing import Kit, free_port
from tests.otlp_receiver import OTLPReceiver

ADMIN_KEY = "otel-admin-key-0123456789"
SERVER = 2                   # SPAN_KIND_SERVER
ERROR = 2                    # STATUS_CODE_ERROR


def otel(sampler: dict | None = None, **kw) -> dict:
    conf = dict(kw)
    if sampler is not None:
        conf["sampler"] = sampler
    return {"opentelemetry": conf}


class Failing:
    """An upstream answering every request with 503."""

    def __init__(self) -> None:
        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                self.send_response(503)
                self.send_header("Content-Length", "4")
                self.end_headers()
                self.wfile.write(b"busy")

            def log_message(self, *a):
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture(scope="module")
def rcv():
    r = OTLPReceiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def kit(rcv):
    failing = Failing()
    always_on = {"name": "always_on"}
    doc = {
        "services": [{"id": "svc1", "name": "svc-name"}],
        "routes": [
            {"id": "on", "name": "traced", "uri": "/on/*", "service_id": "svc1",
             "plugins": otel(always_on, additional_attributes=["remote_addr", "arg_q", "nope"],
                             additional_header_prefix_attributes=["x-my-*", "X-Exact"])},
            {"id": "off", "uri": "/off", "plugins": otel({"name": "always_off"})},
            {"id": "default", "uri": "/default", "plugins": otel()},
            {"id": "r0", "uri": "/ratio0",
             "plugins": otel({"name": "trace_id_ratio", "options": {"fraction": 0}})},
            {"id": "r1", "uri": "/ratio1",
             "plugins": otel({"name": "trace_id_ratio", "options": {"fraction": 1}})},
            {"id": "rhalf", "uri": "/ratiohalf",
             "plugins": otel({"name": "trace_id_ratio", "options": {"fraction": 0.5}})},
            {"id": "pb", "uri": "/parent", "plugins": otel({"name": "parent_base"})},
            {"id": "pbon", "uri": "/parent-on", "plugins": otel(
                {"name": "parent_base", "options": {"root": {"name": "always_on"}}})},
            {"id": "err", "uri": "/err", "plugins": otel(always_on),
             "upstream": {"nodes": {f"127.0.0.1:{failing.port}": 1}}},
            {"id": "dead", "uri": "/dead", "plugins": otel(always_on),
             "upstream": {"nodes": {f"127.0.0.1:{free_port()}": 1}}},
        ],
    }
    attr = {"trace_id_source": "x-request-id",
            "resource": {"service.name": "edge", "deployment.environment": "test", "tier": 2},
            "collector": {"address": rcv.address, "request_timeout": 2,
                          "request_headers": {"X-Otel-Token": "t0k"}},
            "batch_span_processor": {"batch_timeout": 1, "inactive_timeout": 0.2,
                                     "max_export_batch_size": 50}}
    with Kit(doc, node={"plugin_attr": {"opentelemetry": attr}}, admin_key=ADMIN_KEY) as k:
        yield k
    failing.close()


def upstream_req(kit, marker: str) -> dict:
    got = [r for r in kit.upstream.requests if marker in r["path"]]
    assert len(got) == 1, (marker, len(got))
    return got[0]


def sent_traceparent(kit, marker: str) -> tuple[str, str, str]:
    tp = upstream_req(kit, marker)["headers"]["traceparent"]
    parsed = otlp.parse_traceparent(tp)
    assert parsed is not None, tp
    _, tid, pid, flags = tp.split("-")
    return tid, pid, flags


def mark() -> str:
    return uuid.uuid4().hex


def no_spans_for(rcv, kit, trace_ids: set[str]) -> None:
    """Send a sampled request after the ones checked and wait for its span: spans are
    exported in order, so any span of ``trace_ids`` would have arrived by then."""
    m = mark()
    assert kit.get(f"/on/barrier?m={m}").status == 200
    tid, _, _ = sent_traceparent(kit, m)
    assert rcv.find(tid) is not None
    assert not [s for s in rcv.spans if s["trace_id"] in trace_ids]


# ----------------------------------------------------------------------------- contents
def test_sampled_request_exports_one_server_span_with_http_and_route_attributes(kit, rcv):
    m = mark()
    t0 = time.time()
    r = kit.get(f"/on/x?q=1&m={m}", headers={"User-Agent": "otel-test/1", "X-My-A": "a",
                                              "X-My-B": "b", "X-Exact": "e", "X-Other": "o"})
    assert r.status == 200
    tid, pid, flags = sent_traceparent(kit, m)
    assert flags == "01"
    span = rcv.find(tid)
    assert span is not None
    assert span["span_id"] == pid                 # the upstream's parent is the server span
    assert span["parent_span_id"] == ""
    assert span["name"] == "GET /on/*"
    assert span["kind"] == SERVER
    assert span["status_code"] == 0
    assert t0 - 1 <= span["start"] / 1e9 <= span["end"] / 1e9 <= time.time() + 1
    a = span["attributes"]
    assert a["net.host.name"] == "127.0.0.1"
    assert a["http.method"] == "GET"
    assert a["http.scheme"] == "http"
    assert a["http.target"] == f"/on/x?q=1&m={m}"
    assert a["http.user_agent"] == "otel-test/1"
    assert a["apisix.route_id"] == "on"
    assert a["apisix.route_name"] == "traced"
    assert a["apisix.service_id"] == "svc1"
    assert a["apisix.service_name"] == "svc-name"
    assert a["http.route"] == "/on/*"
    assert a["http.status_code"] == 200
    assert a["http.response.status_code"] == 200
    assert a["pylon.upstream_addr"] == kit.upstream.addr
    assert a["remote_addr"] == "127.0.0.1"
    assert a["arg_q"] == "1"
    assert "nope" not in a
    assert (a["x-my-a"], a["x-my-b"], a["x-exact"]) == ("a", "b", "e")
    assert "x-other" not in a
    res = span["resource"]
    assert res["service.name"] == "edge"
    assert res["deployment.environment"] == "test"
    assert res["tier"] == 2
    assert res["hostname"] == socket.gethostname()
    assert span["scope"] == "pylon"


def test_export_is_otlp_protobuf_with_the_configured_headers(kit, rcv):
    m = mark()
    assert kit.get(f"/on/h?m={m}").status == 200
    tid, _, _ = sent_traceparent(kit, m)
    assert rcv.find(tid) is not None
    post = [p for p in rcv.posts if p["status"] == 200][-1]
    assert post["path"] == "/v1/traces"
    assert post["headers"]["content-type"] == "application/x-protobuf"
    assert post["headers"]["x-otel-token"] == "t0k"


# ----------------------------------------------------------------------------- parentage
def test_incoming_traceparent_makes_the_server_span_its_child(kit, rcv):
    tid, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    tid = tid[:-8] + mark()[:8]                   # a fresh trace per run
    m = mark()
    r = kit.get(f"/on/child?m={m}", headers={"traceparent": f"00-{tid}-{parent}-01",
                                              "tracestate": "rojo=00f067aa0ba902b7,congo=t61"})
    assert r.status == 200
    up_tid, up_parent, flags = sent_traceparent(kit, m)
    assert up_tid == tid
    assert up_parent != parent
    assert flags == "01"
    assert upstream_req(kit, m)["headers"]["tracestate"] == "rojo=00f067aa0ba902b7,congo=t61"
    span = rcv.find(tid)
    assert span is not None
    assert span["parent_span_id"] == parent
    assert span["span_id"] == up_parent
    assert span["trace_state"] == "rojo=00f067aa0ba902b7,congo=t61"
    assert span["flags"] & 0x300 == 0x300          # the parent is remote


@pytest.mark.parametrize("bad", [
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",   # upper case
    "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   # unknown version
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   # forbidden version
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",   # zero trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",   # zero parent id
    "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",    # short trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-00",  # trailing data
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bg-01",   # not hex
    "garbage",
])
def test_invalid_traceparent_starts_a_new_trace(kit, rcv, bad):
    m = mark()
    r = kit.get(f"/on/bad?m={m}", headers={"traceparent": bad, "tracestate": "rojo=1"})
    assert r.status == 200
    tid, pid, flags = sent_traceparent(kit, m)
    assert tid != "4bf92f3577b34da6a3ce929d0e0e4736"
    assert flags == "01"
    assert "tracestate" not in upstream_req(kit, m)["headers"]   # it belonged to that trace
    span = rcv.find(tid)
    assert span is not None
    assert span["parent_span_id"] == ""
    assert span["span_id"] == pid
    assert span["trace_state"] == ""


def test_w3c_parsing_and_formatting():
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert otlp.parse_traceparent(tp) == (0x4bf92f3577b34da6a3ce929d0e0e4736,
                                          0x00f067aa0ba902b7, 1)
    assert otlp.format_traceparent(0x4bf92f3577b34da6a3ce929d0e0e4736, 0x00f067aa0ba902b7,
                                   True) == tp
    assert otlp.format_traceparent(5, 6, False) == "00-" + "0" * 31 + "5-" + "0" * 15 + "6-00"
    assert otlp.valid_tracestate("rojo=00f067aa0ba902b7, congo=t61rcWkgMzE,,tenant@sys=x")
    assert not otlp.valid_tracestate("Rojo=1")                # keys are lower case
    assert not otlp.valid_tracestate("rojo")                  # no value
    assert not otlp.valid_tracestate(",".join(f"k{i}=v" for i in range(33)))


# ----------------------------------------------------------------------------- samplers
def test_always_off_exports_nothing_but_still_propagates(kit, rcv):
    incoming = "4bf92f3577b34da6a3ce929d0e0e" + mark()[:4]
    m1, m2, m3 = mark(), mark(), mark()
    assert kit.get(f"/off?m={m1}").status == 200
    assert kit.get(f"/off?m={m2}", headers={
        "traceparent": f"00-{incoming}-00f067aa0ba902b7-01"}).status == 200
    assert kit.get(f"/default?m={m3}").status == 200          # APISIX's default: always_off
    t1, _, f1 = sent_traceparent(kit, m1)
    t2, p2, f2 = sent_traceparent(kit, m2)
    t3, _, f3 = sent_traceparent(kit, m3)
    assert (f1, f2, f3) == ("00", "00", "00")
    assert t2 == incoming and p2 != "00f067aa0ba902b7"
    no_spans_for(rcv, kit, {t1, t2, t3})


def test_trace_id_ratio_fraction_zero_never_and_one_always_samples(kit, rcv):
    zeros, ones = [], []
    for _ in range(5):
        m = mark()
        assert kit.get(f"/ratio0?m={m}").status == 200
        zeros.append(sent_traceparent(kit, m))
        m = mark()
        assert kit.get(f"/ratio1?m={m}").status == 200
        ones.append(sent_traceparent(kit, m))
    assert {f for _, _, f in zeros} == {"00"}
    assert {f for _, _, f in ones} == {"01"}
    for tid, pid, _ in ones:
        span = rcv.find(tid)
        assert span is not None and span["span_id"] == pid
    no_spans_for(rcv, kit, {t for t, _, _ in zeros})


def test_trace_id_ratio_decides_on_the_lower_64_bits_of_the_trace_id(kit, rcv):
    high = mark()[:16]
    below = high + "7fffffffffffffff"            # lower 64 bits < 0.5 * 2**64: sampled
    above = high + "8000000000000000"            # == 0.5 * 2**64: not sampled
    for _ in range(3):                           # the same decision every time
        for tid, parent_flag, want in ((below, "00", "01"), (above, "01", "00")):
            m = mark()
            r = kit.get(f"/ratiohalf?m={m}",
                        headers={"traceparent": f"00-{tid}-00f067aa0ba902b7-{parent_flag}"})
            assert r.status == 200
            got_tid, _, flags = sent_traceparent(kit, m)
            assert (got_tid, flags) == (tid, want)
    assert len(rcv.wait_spans(lambda s: s["trace_id"] == below, 3)) == 3
    no_spans_for(rcv, kit, {above})


def test_parent_base_follows_the_parent_and_uses_root_without_one(kit, rcv):
    sampled_tid = mark()
    unsampled_tid = mark()
    cases = [("/parent", f"00-{sampled_tid}-00f067aa0ba902b7-01", "01"),
             ("/parent", f"00-{unsampled_tid}-00f067aa0ba902b7-00", "00"),
             ("/parent", None, "00"),            # root: always_off (the default)
             ("/parent-on", None, "01"),         # root: always_on
             ("/parent-on", f"00-{unsampled_tid}-00f067aa0ba902b7-00", "00")]
    got = []
    for path, tp, want in cases:
        m = mark()
        r = kit.get(f"{path}?m={m}", headers={"traceparent": tp} if tp else {})
        assert r.status == 200
        tid, pid, flags = sent_traceparent(kit, m)
        assert flags == want, (path, tp)
        got.append((tid, pid, flags))
    span = rcv.find(sampled_tid)
    assert span is not None and span["parent_span_id"] == "00f067aa0ba902b7"
    root_on = rcv.find(got[3][0])
    assert root_on is not None and root_on["parent_span_id"] == ""
    no_spans_for(rcv, kit, {unsampled_tid, got[2][0]})


# ----------------------------------------------------------------------------- status
def test_upstream_5xx_marks_the_span_as_error(kit, rcv):
    m = mark()
    r = kit.get(f"/err?m={m}")
    assert r.status == 503
    # the failing upstream does not record requests: find the span by its marker
    spans = rcv.wait_spans(lambda s: m in s["attributes"].get("http.target", ""), 1)
    assert spans
    span = spans[0]
    assert span["status_code"] == ERROR
    assert span["status_message"] == "upstream response status: 503"
    assert span["attributes"]["http.status_code"] == 503


def test_unreachable_upstream_502_marks_the_span_as_error(kit, rcv):
    m = mark()
    r = kit.get(f"/dead?m={m}")
    assert r.status == 502
    spans = rcv.wait_spans(lambda s: m in s["attributes"].get("http.target", ""), 1)
    assert spans
    assert spans[0]["status_code"] == ERROR
    assert spans[0]["attributes"]["http.status_code"] == 502


def test_x_request_id_becomes_the_trace_id_when_configured(kit, rcv):
    rid = str(uuid.uuid4())
    m = mark()
    assert kit.get(f"/on/rid?m={m}", headers={"X-Request-Id": rid}).status == 200
    tid, _, _ = sent_traceparent(kit, m)
    assert tid == rid.replace("-", "")
    assert rcv.find(tid) is not None
    m = mark()                                    # not usable as a trace id: a random one
    assert kit.get(f"/on/rid?m={m}", headers={"X-Request-Id": "abc"}).status == 200
    tid, _, _ = sent_traceparent(kit, m)
    assert len(tid) == 32 and int(tid, 16) != 0
    assert rcv.find(tid) is not None


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize(("conf", "needle"), [
    ({"sampler": {"name": "sometimes"}}, 'property "name" validation failed'),
    ({"sampler": {"name": "trace_id_ratio", "options": {"fraction": 1.5}}},
     'property "fraction" validation failed'),
    ({"sampler": {"name": "trace_id_ratio", "options": {"fraction": -0.1}}},
     'property "fraction" validation failed'),
    ({"sampler": {"name": "parent_base", "options": {"root": {"name": "parent_base"}}}},
     'property "root" validation failed'),
    ({"additional_attributes": [""]}, 'property "additional_attributes" validation failed'),
])
def test_admin_api_refuses_bad_sampler_configuration(kit, conf, needle):
    r = kit.admin("PUT", "/routes/bad", {"uri": "/bad", "plugins": {"opentelemetry": conf},
                                         "upstream": {"nodes": {kit.upstream.addr: 1}}})
    assert r.status == 400, r.text
    msg = r.json()["error_msg"]
    assert "failed to check the configuration of plugin opentelemetry err: " in msg
    assert needle in msg


def test_admin_api_accepts_a_good_sampler_configuration(kit):
    conf = {"sampler": {"name": "parent_base", "options": {
        "root": {"name": "trace_id_ratio", "options": {"fraction": 0.25}}}}}
    r = kit.admin("PUT", "/routes/good", {"uri": "/good", "plugins": {"opentelemetry": conf},
                                          "upstream": {"nodes": {kit.upstream.addr: 1}}})
    assert r.status in (200, 201), r.text
    assert kit.admin("DELETE", "/routes/good").status == 200


def _run(code: str) -> subprocess.CompletedProcess[str]:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=False,
                          cwd=root,
                          capture_output=True, text=True, timeout=60)


def test_loading_the_plugin_registry_does_not_import_opentelemetry():
    p = _run("""
        import sys
        from pylon.proxy import registry
        reg = registry.load()
        assert "opentelemetry" in reg, reg.errors
        spec = reg.get("opentelemetry")
        assert spec.priority == 12009
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
        spec.check_conf({"sampler": {"name": "always_on"}})     # configured: now it loads
        print("opentelemetry.proto.trace.v1.trace_pb2" in sys.modules)
    """)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["[]", "True"]


def test_configuring_it_without_the_otel_package_is_refused_clearly():
    p = _run("""
        import sys

        class Block:                         # as if opentelemetry-proto were not installed
            def find_spec(self, name, path=None, target=None):
                if name == "opentelemetry" or name.startswith("opentelemetry."):
                    raise ModuleNotFoundError(f"No module named {name!r}")
                return None

        sys.meta_path.insert(0, Block())
        from pylon.node import Node
        from pylon.pdk.runtime import install
        from pylon.proxy import registry
        reg = registry.load()
        install(Node(plugins=reg))
        try:
            reg.get("opentelemetry").check_conf({"sampler": {"name": "always_on"}})
        except registry.PluginConfigError as e:
            print(e)
        else:
            print("accepted")
    """)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().startswith(
        "failed to check the configuration of plugin opentelemetry err: opentelemetry needs "
        "the 'otel' extra: pip install pylon-gateway[otel]"), p.stdout


def test_bad_plugin_attr_is_reported_in_configurations_using_the_plugin():
    p = _run("""
        from pylon.node import Node
        from pylon.pdk.runtime import install
        from pylon.proxy import registry
        reg = registry.load()
        reg.attrs = {"opentelemetry": {"collector": {"address": "127.0.0.1:notaport"}}}
        install(Node(plugins=reg))
        try:
            reg.get("opentelemetry").check_conf({})
        except registry.PluginConfigError as e:
            print(e)
        reg.attrs = {"opentelemetry": {"trace_id_source": "uuid"}}
        try:
            reg.get("opentelemetry").check_conf({})
        except registry.PluginConfigError as e:
            print(e)
    """)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 2, p.stdout
    assert "plugin_attr.opentelemetry: collector.address '127.0.0.1:notaport'" in lines[0]
    assert "plugin_attr.opentelemetry: property \"trace_id_source\" validation failed" \
        in lines[1]


# ----------------------------------------------------------------------------- collector down
@pytest.fixture(scope="module")
def flaky():
    r = OTLPReceiver()
    attr = {"collector": {"address": r.address, "request_timeout": 1},
            "batch_span_processor": {"batch_timeout": 1, "inactive_timeout": 0.2,
                                     "max_export_batch_size": 4, "max_queue_size": 8}}
    doc = {"routes": [{"id": "t", "uri": "/t", "plugins": otel({"name": "always_on"})}]}
    with Kit(doc, node={"plugin_attr": {"opentelemetry": attr}}) as k:
        yield k, r
    r.close()


def _timed_get(kit, path: str) -> float:
    t = time.monotonic()
    r = kit.get(path)
    assert r.status == 200
    return time.monotonic() - t


def test_export_is_retried_after_a_collector_error(flaky):
    kit, r = flaky
    r.fail_next(2, 503)
    m = mark()
    assert kit.get(f"/t?m={m}").status == 200
    tid, _, _ = sent_traceparent(kit, m)
    span = r.find(tid, timeout=10)
    assert span is not None
    assert span["resource"]["service.name"] == "APISIX"      # APISIX's default
    assert [p["status"] for p in r.posts[-3:]] == [503, 503, 200]


def test_collector_down_does_not_slow_requests_and_spans_flow_when_it_returns(flaky):
    kit, r = flaky
    r.stop()
    try:
        took = [_timed_get(kit, f"/t?down={i}") for i in range(30)]
        assert max(took) < 0.5, took
        time.sleep(2.0)                  # batches failing in the background meanwhile
        took = [_timed_get(kit, f"/t?down2={i}") for i in range(10)]
        assert max(took) < 0.5, took
    finally:
        r.start()
    m = mark()
    deadline = time.monotonic() + 15
    span = None
    while span is None and time.monotonic() < deadline:     # earlier batches may be retrying
        m = mark()
        assert kit.get(f"/t?m={m}").status == 200
        tid, _, _ = sent_traceparent(kit, m)
        span = r.find(tid, timeout=1)
    assert span is not None
    log = kit.log()
    failures = log.count("opentelemetry: export to")
    assert 1 <= failures <= 4, log[-3000:]      # reported, not once per request or batch
    assert "works again" in log


def test_hanging_collector_does_not_slow_requests_and_the_queue_stays_bounded(flaky):
    kit, r = flaky
    before = len(r.spans)
    r.hang()
    try:
        took = [_timed_get(kit, f"/t?hang={i}") for i in range(40)]
        assert max(took) < 0.5, took
    finally:
        r.release()
    m = mark()
    deadline = time.monotonic() + 20
    span = None
    while span is None and time.monotonic() < deadline:
        m = mark()
        assert kit.get(f"/t?m={m}").status == 200
        tid, _, _ = sent_traceparent(kit, m)
        span = r.find(tid, timeout=1)
    assert span is not None
    hung = [s for s in r.spans[before:] if "hang=" in s["attributes"]["http.target"]]
    assert len(hung) <= 8                          # max_queue_size: the rest were dropped


def test_global_rule_traces_requests_no_route_matches():
    r = OTLPReceiver()
    try:
        attr = {"collector": {"address": r.address},
                "batch_span_processor": {"inactive_timeout": 0.2}}
        doc = {"global_rules": [{"id": "g", "plugins": otel({"name": "always_on"})}],
               "routes": [{"id": "x", "uri": "/x"}]}
        with Kit(doc, node={"plugin_attr": {"opentelemetry": attr}}) as kit:
            m = mark()
            assert kit.get(f"/nowhere?m={m}").status == 404
            assert kit.get(f"/x?m={m}").status == 200
            tid, pid, flags = sent_traceparent(kit, m)
            assert flags == "01"
            spans = r.wait_spans(lambda s: m in s["attributes"]["http.target"], 2)
            by_name = {s["name"]: s for s in spans}
            assert set(by_name) == {"GET", "GET /x"}
            miss = by_name["GET"]["attributes"]
            assert miss["http.status_code"] == 404
            assert "apisix.route_id" not in miss and "http.route" not in miss
            assert by_name["GET /x"]["span_id"] == pid
            assert by_name["GET /x"]["trace_id"] == tid
    finally:
        r.close()
