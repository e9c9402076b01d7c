"""The gRPC upstream of the tests: ``echo.proto`` compiled at test time with grpc_tools and
served by a real ``grpcio`` server (h2c, or TLS with the test certificates)."""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import time
from concurrent import futures
from types import ModuleType
from typing import Any

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.join(HERE, "echo.proto")
_modules: tuple[ModuleType, ModuleType] | None = None


def generated() -> tuple[ModuleType, ModuleType]:
    """``echo_pb2`` and ``echo_pb2_grpc``, generated once per test process."""
    global _modules
    if _modules is None:
        from grpc_tools import protoc
        out = tempfile.mkdtemp(prefix="pylon-grpc-gen-")
        rc = protoc.main(["protoc", f"-I{HERE}", f"--python_out={out}",
                          f"--grpc_python_out={out}", PROTO])
        assert rc == 0, "protoc failed"
        sys.path.insert(0, out)
        _modules = (importlib.import_module("echo_pb2"), importlib.import_module("echo_pb2_grpc"))
    return _modules


def status_details(code: int, message: str, detail: Any) -> bytes:
    """A serialized ``google.rpc.Status`` (``grpc-status-details-bin``) with one detail."""
    from google.protobuf import any_pb2

    from pylon.pdk.protos import rpc_status
    st = rpc_status(b"")
    st.code = code
    st.message = message
    d = any_pb2.Any()
    d.Pack(detail)
    st.details.add(type_url=d.type_url, value=d.value)
    return st.SerializeToString()


def servicer() -> Any:
    pb2, pb2_grpc = generated()

    class Echo(pb2_grpc.EchoServicer):  # type: ignore[name-defined,misc]
        def Unary(self, req: Any, ctx: grpc.ServicerContext) -> Any:
            md = dict(ctx.invocation_metadata())
            if req.text == "denied":        # Trailers-Only, with google.rpc.Status details
                ctx.set_trailing_metadata((("grpc-status-details-bin", status_details(
                    7, "not for you", pb2.Inner(note="ask the admin"))),))
                ctx.abort(grpc.StatusCode.PERMISSION_DENIED, "not for you")
            if req.text == "sleep":          # (before any header: a deadline can still win)
                time.sleep(req.count / 1000)
            ctx.send_initial_metadata((("x-initial", "i1"),))
            if req.text == "fail":
                ctx.set_trailing_metadata((("x-why", "asked-to-fail"),))
                ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing: é")
            if req.text == "peer":                  # which connection carried the call
                return pb2.Msg(text=ctx.peer())
            if req.text == "metadata":
                keys = ",".join(sorted(k for k in md if k.startswith("x-")))
                return pb2.Msg(text="|".join((keys, md.get("x-forwarded-for", ""),
                                              md.get("x-forwarded-host", ""))))
            ctx.set_trailing_metadata((("x-trailer", "t1"),))
            return pb2.Msg(text=req.text, count=req.count + 1, blob=req.blob, big=req.big,
                           kind=req.kind,
                           inner=req.inner if req.HasField("inner") else None)

        def Collect(self, reqs: Any, ctx: grpc.ServicerContext) -> Any:
            texts = [r.text for r in reqs]
            return pb2.Msg(text="".join(texts), count=len(texts))

        def Repeat(self, req: Any, ctx: grpc.ServicerContext) -> Any:
            for i in range(req.count):
                yield pb2.Msg(text=req.text, count=i, blob=req.blob)
            ctx.set_trailing_metadata((("x-sent", str(req.count)),))

        def Chat(self, reqs: Any, ctx: grpc.ServicerContext) -> Any:
            for r in reqs:
                yield pb2.Msg(text=r.text.upper(), count=r.count)

    return Echo()


class GrpcServer:
    """A ``grpcio`` server with the Echo service on 127.0.0.1 (TLS with ``creds``)."""

    def __init__(self, creds: grpc.ServerCredentials | None = None, workers: int = 16,
                 options: list[tuple[str, Any]] | None = None) -> None:
        _, pb2_grpc = generated()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                                  options=options or [])
        pb2_grpc.add_EchoServicer_to_server(servicer(), self.server)
        if creds is None:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        else:
            self.port = self.server.add_secure_port("127.0.0.1:0", creds)
        self.server.start()

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.stop(grace=None).wait(5)
