"""``protos`` objects as plugins use them (grpc-transcode): compiled descriptors, JSON and
request arguments ⇄ protobuf messages, gRPC message framing.

A proto's ``content`` is ``.proto`` text (compiled in-process by ``grpc_tools.protoc`` into
a descriptor set) or, as APISIX also accepts, a base64 ``FileDescriptorSet``
(``protoc --include_imports --descriptor_set_out``).  Text may import another proto object
as ``"<its id>.proto"`` and the well-known types (``google/protobuf/*.proto``).  Compiled
sets are cached by content (a config change that keeps a proto's text costs nothing).

``compile_proto(content, others)`` raises ``ProtoError`` with protoc's message (the Admin API
answers ``invalid content: <message>`` as APISIX does); ``find(ctx, proto_id)`` is the
proto of the request's configuration snapshot.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import PylonError

__all__ = ["ProtoError", "ProtoSet", "compile_proto", "find", "frame", "messages",
           "rpc_status"]

#: ``ctx.store`` key a plugin sets when it turned another protocol into gRPC (grpc-transcode,
#: grpc-web): the client is not a gRPC client, the gateway's own answers stay HTTP ones
CONVERTED = "pylon.grpc.converted"
_IMPORT = re.compile(r'\bimport\s+(?:public\s+|weak\s+)?"([^"]+)"\s*;', re.M)
_CACHE_SIZE = 64
_cache: OrderedDict[tuple[str, tuple[tuple[str, str], ...]], ProtoSet] = OrderedDict()
_lock = threading.Lock()


class ProtoError(PylonError):
    """A proto's content that does not compile (protoc's words)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ProtoSet:
    """The services and messages of one compiled proto (with its imports)."""

    def __init__(self, files: bytes) -> None:
        from google.protobuf import descriptor_pb2, descriptor_pool
        fds = descriptor_pb2.FileDescriptorSet.FromString(files)
        self.pool = descriptor_pool.DescriptorPool()
        for f in fds.file:          # (dependencies first, as protoc lists them)
            try:
                self.pool.Add(f)
            except (TypeError, ValueError, KeyError) as e:  # a duplicate or broken file
                raise ProtoError(f"bad descriptor set: {e}") from None
        self.files = list(fds.file)
        self._classes: dict[str, Any] = {}

    def method(self, service: str, method: str) -> Any | None:
        """The ``MethodDescriptor`` of ``service`` (``package.Service``) / ``method``."""
        try:
            return self.pool.FindServiceByName(service).FindMethodByName(method)
        except KeyError:
            return None

    def message_class(self, full_name: str) -> Any:
        cls = self._classes.get(full_name)
        if cls is None:
            from google.protobuf import message_factory
            cls = self._classes[full_name] = message_factory.GetMessageClass(
                self.pool.FindMessageTypeByName(full_name))
        return cls


def _imports(content: str, others: Callable[[str], str | None]) -> dict[str, str]:
    """The proto objects ``content`` imports (transitively), as file name -> text."""
    out: dict[str, str] = {}
    todo = [content]
    while todo:
        for name in _IMPORT.findall(todo.pop()):
            if name in out or name.startswith("google/protobuf/"):
                continue
            text = others(name[:-6]) if name.endswith(".proto") else None
            if text is not None:
                out[name] = text
                todo.append(text)
    return out


def _protoc(content: str, deps: dict[str, str]) -> bytes:
    from grpc_tools import _protoc_compiler, protoc
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    with tempfile.TemporaryDirectory(prefix="pylon-proto-") as d:
        main = "__content__.proto"
        for name, text in [(main, content), *deps.items()]:
            path = os.path.join(d, name)
            if os.path.dirname(name):
                os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        try:        # (errors as text; the descriptor set comes from the main entry)
            _protoc_compiler.get_protos(main.encode(), [d.encode(), include.encode()])
        except (_protoc_compiler.ProtocErrors, _protoc_compiler.ProtocError) as e:
            raise ProtoError(str(e).replace(main + ":", "").strip()) from None
        out = os.path.join(d, "out.pb")
        rc = _protoc_compiler.run_main([
            b"protoc", b"-I" + d.encode(), b"-I" + include.encode(),
            b"--include_imports", b"--descriptor_set_out=" + out.encode(), main.encode()])
        if rc != 0:
            raise ProtoError("failed to compile the proto")
        with open(out, "rb") as f:
            return f.read()


def compile_proto(content: str, others: Callable[[str], str | None] = lambda _: None
                  ) -> ProtoSet:
    """The compiled proto of ``content``; ``others(id)``: another proto object's content
    (imports).  Raises ``ProtoError``."""
    deps = _imports(content, others)
    key = (content, tuple(sorted(deps.items())))
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    try:
        ps = ProtoSet(_protoc(content, deps))
    except ProtoError as text_error:
        # APISIX also takes a base64 FileDescriptorSet
        try:
            raw = base64.b64decode(content.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise text_error from None
        from google.protobuf.message import DecodeError
        try:
            ps = ProtoSet(raw)
        except (DecodeError, ProtoError):
            raise text_error from None
        if not ps.files:
            raise text_error from None
    with _lock:
        _cache[key] = ps
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return ps


def find(ctx: Any, proto_id: Any) -> ProtoSet | None:
    """The proto object ``proto_id`` of the request's configuration, compiled (None: no
    such object, or it does not compile)."""
    protos: Mapping[str, str] = ctx.snap.compiled.protos
    content = protos.get(str(proto_id))
    if content is None:
        return None
    try:
        return compile_proto(content, protos.get)
    except ProtoError:
        return None


# ------------------------------------------------------------------ gRPC message framing
def frame(data: bytes) -> bytes:
    """One gRPC length-prefixed message (uncompressed)."""
    return b"\0" + len(data).to_bytes(4, "big") + data


def messages(data: bytes) -> list[bytes]:
    """The length-prefixed messages in ``data`` (a trailing partial one is left out)."""
    out = []
    i = 0
    while i + 5 <= len(data):
        n = int.from_bytes(data[i + 1:i + 5], "big")
        if i + 5 + n > len(data):
            break
        out.append(data[i + 5:i + 5 + n])
        i += 5 + n
    return out


_status_cls: Any = None


def rpc_status(raw: bytes) -> Any:
    """``grpc-status-details-bin`` (decoded from base64) as a ``google.rpc.Status`` message
    (``code``, ``message``, ``details``: ``Any`` messages); protobuf errors propagate."""
    global _status_cls
    if _status_cls is None:
        from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory
        fdp = descriptor_pb2.FieldDescriptorProto
        pool = descriptor_pool.DescriptorPool()
        pool.Add(descriptor_pb2.FileDescriptorProto.FromString(any_pb2.DESCRIPTOR.serialized_pb))
        fd = descriptor_pb2.FileDescriptorProto(
            name="google/rpc/status.proto", package="google.rpc", syntax="proto3",
            dependency=["google/protobuf/any.proto"])
        m = fd.message_type.add(name="Status")
        m.field.add(name="code", number=1, type=fdp.TYPE_INT32, label=fdp.LABEL_OPTIONAL)
        m.field.add(name="message", number=2, type=fdp.TYPE_STRING, label=fdp.LABEL_OPTIONAL)
        m.field.add(name="details", number=3, type=fdp.TYPE_MESSAGE,
                    label=fdp.LABEL_REPEATED, type_name=".google.protobuf.Any")
        pool.Add(fd)
        _status_cls = message_factory.GetMessageClass(
            pool.FindMessageTypeByName("google.rpc.Status"))
    return _status_cls.FromString(raw)
