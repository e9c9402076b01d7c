"""A real OTLP/HTTP trace receiver for tests.

An HTTP/1.1 server on 127.0.0.1 that accepts ``POST /v1/traces`` with
``Content-Type: application/x-protobuf``, decodes the ``ExportTraceServiceRequest`` with
``opentelemetry-proto``, records every span (with its resource and scope) and answers 200 with
an empty ``ExportTraceServiceResponse``.  It can be told to answer 503 to the next N exports
(``fail_next``), to hang (``hang()``: requests are read and never answered until
``release()``), or to stop listening and start again on the same port (``stop``/``start``).
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind in ("array_value", "kvlist_value"):
        return str(getattr(v, kind))
    return getattr(v, kind)


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


class OTLPReceiver:
    def __init__(self, port: int = 0) -> None:
        self.spans: list[dict[str, Any]] = []
        self.posts: list[dict[str, Any]] = []      # every POST: status answered, headers
        self.cond = threading.Condition()
        self._fail = 0
        self._fail_status = 503
        self._hang = threading.Event()
        self._released = threading.Event()
        self.srv: ThreadingHTTPServer | None = None
        self.port = port
        self.start()

    # -- control ---------------------------------------------------------------------------
    def start(self) -> None:
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                outer._handle(self)

            def log_message(self, *a: Any) -> None:
                pass

        srv = ThreadingHTTPServer(("127.0.0.1", self.port), H)
        srv.daemon_threads = True
        self.srv = srv
        self.port = srv.server_address[1]
        threading.Thread(target=srv.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop listening (connections are refused) until ``start``."""
        if self.srv is not None:
            self.srv.shutdown()
            self.srv.server_close()
            self.srv = None

    def fail_next(self, n: int, status: int = 503) -> None:
        with self.cond:
            self._fail = n
            self._fail_status = status

    def hang(self) -> None:
        self._released.clear()
        self._hang.set()

    def release(self) -> None:
        self._hang.clear()
        self._released.set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- reading ---------------------------------------------------------------------------
    def wait_spans(self, pred: Any = None, n: int = 1, timeout: float = 10.0) -> list[dict]:
        """The recorded spans matching ``pred`` once there are ``n`` of them (fewer when
        ``timeout`` passes first)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [s for s in self.spans if pred is None or pred(s)]
                if len(got) >= n or time.monotonic() > deadline:
                    return got
                self.cond.wait(0.05)

    def find(self, trace_id: str, timeout: float = 10.0) -> dict[str, Any] | None:
        got = self.wait_spans(lambda s: s["trace_id"] == trace_id, 1, timeout)
        return got[0] if got else None

    # -- server ----------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        n = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(n)
        rec = {"path": h.path, "headers": {k.lower(): v for k, v in h.headers.items()},
               "status": 0}
        if self._hang.is_set():
            self._released.wait(30)
            h.close_connection = True
            return
        with self.cond:
            if self._fail > 0:
                self._fail -= 1
                rec["status"] = self._fail_status
                self.posts.append(rec)
                self.cond.notify_all()
                self._answer(h, self._fail_status, b"", "text/plain")
                return
        ctype = h.headers.get("Content-Type", "")
        if h.path != "/v1/traces" or ctype != "application/x-protobuf":
            rec["status"] = 415 if h.path == "/v1/traces" else 404
            with self.cond:
                self.posts.append(rec)
            self._answer(h, rec["status"], b"", "text/plain")
            return
        req = trace_service_pb2.ExportTraceServiceRequest()
        try:
            req.ParseFromString(body)
        except Exception:  # noqa: BLE001 - a bad body is the gateway's bug: 400, recorded
            rec["status"] = 400
            with self.cond:
                self.posts.append(rec)
            self._answer(h, 400, b"", "text/plain")
            return
        spans = []
        for rs in req.resource_spans:
            resource = _attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    spans.append({
                        "trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(),
                        "parent_span_id": s.parent_span_id.hex(), "name": s.name,
                        "kind": s.kind, "trace_state": s.trace_state, "flags": s.flags,
                        "start": s.start_time_unix_nano, "end": s.end_time_unix_nano,
                        "attributes": _attrs(s.attributes), "status_code": s.status.code,
                        "status_message": s.status.message, "resource": resource,
                        "scope": ss.scope.name, "scope_version": ss.scope.version})
        rec["status"] = 200
        rec["spans"] = len(spans)
        with self.cond:
            self.posts.append(rec)
            self.spans.extend(spans)
            self.cond.notify_all()
        out = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self._answer(h, 200, out, "application/x-protobuf")

    @staticmethod
    def _answer(h: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def close(self) -> None:
        self.release()
        self.stop()
