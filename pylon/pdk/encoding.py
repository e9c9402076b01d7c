"""What the response-compressing plugins share (gzip, brotli): their common schema
properties, the prepared configuration with the checks both make (``Compression``), a
streaming ``encode(chunk, last)`` over a compressor, and which answers carry no body.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from .context import Context

#: the schema properties gzip and brotli share (APISIX's, word for word)
COMMON_PROPERTIES: dict[str, Any] = {
    "types": {
        "anyOf": [
            {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
            {"enum": ["*"]},
        ],
        "default": ["text/html"],
    },
    "min_length": {"type": "integer", "minimum": 1, "default": 20},
    "http_version": {"enum": [1.1, 1.0], "default": 1.1},
    "vary": {"type": "boolean"},
}

Encode = Callable[[bytes, bool], bytes]
_VERSIONS = {"HTTP/1.0": 1.0, "HTTP/1.1": 1.1, "HTTP/2": 2.0, "HTTP/2.0": 2.0, "HTTP/0.9": 0.9}


class Compression:
    """A prepared gzip or brotli configuration: the checks both plugins make."""

    __slots__ = ("http_version", "make", "min_length", "start", "types", "vary")

    def __init__(self, conf: dict[str, Any], make: Callable[[], Encode],
                 start: Callable[[Compression, Context], Encode | None]) -> None:
        types = conf["types"]
        self.types = None if types == "*" else frozenset(types)
        self.min_length: int = conf["min_length"]
        self.http_version = float(conf["http_version"])
        self.vary = bool(conf.get("vary"))
        #: a new encoder for one response
        self.make = make
        #: what ``ctx.encode_body`` runs once the response headers are final
        self.start = partial(start, self)

    def applies(self, ctx: Context) -> bool:
        """The plugin's own checks (APISIX's Lua): Content-Type present and one of
        ``types``, Content-Length (when known) at least ``min_length``, the request's HTTP
        version at least ``http_version``."""
        ctype = ctx.resp_header("Content-Type")
        if ctype is None:
            return False          # like nginx: no Content-Type, no compression
        types = self.types
        if types is not None and ctype.split(";", 1)[0] not in types:
            return False
        length = ctx.resp_length
        if length is not None and not ctx.body_changed and length < self.min_length:
            return False
        return _VERSIONS.get(ctx.var("server_protocol") or "", 1.1) >= self.http_version


def streaming(compress: Callable[[bytes], bytes], sync: Callable[[], bytes],
              finish: Callable[[], bytes]) -> Encode:
    """``encode(chunk, last)`` over a compressor: each chunk compressed and flushed so the
    client can decode it as it arrives; the end finishes the stream."""
    def encode(data: bytes, last: bool) -> bytes:
        if last:
            return compress(data) + finish() if data else finish()
        return compress(data) + sync() if data else b""
    return encode


def no_body(ctx: Context) -> bool:
    """HEAD, 204 and 304 answers carry no body to encode."""
    return ctx.method == "HEAD" or ctx.status in (204, 304)


__all__ = ["COMMON_PROPERTIES", "Compression", "Encode", "no_body", "streaming"]
