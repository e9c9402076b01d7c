"""grpc-web: browser gRPC-Web requests (HTTP/1.1) proxied to a gRPC upstream (APISIX).

The route is a prefix route (``/grpc/web/*``) whose upstream is a gRPC server (``scheme:
grpc``).  ``access``: OPTIONS (a CORS preflight) answers 204; another method than POST 405;
a content type other than ``application/grpc-web``, ``application/grpc-web+proto``
(binary) or ``application/grpc-web-text``, ``application/grpc-web-text+proto`` (base64)
400.  The part of the path after the prefix becomes the gRPC path
(``/grpc/web/pkg.Service/Method`` → ``/pkg.Service/Method``), the body (base64-decoded for
``-text``) is sent as ``application/grpc``.  The response goes back with the request's
content type, its messages as they come (base64-encoded for ``-text``) and, at its end, the
gRPC-Web trailer frame (``0x80``, length, ``grpc-status:<s>\\r\\ngrpc-message:<m>\\r\\n``)
from the upstream's trailers (``2`` / "upstream grpc status not received" without them) --
except after a Trailers-Only answer, whose status is already in the response head.

CORS as APISIX's plugin: ``Access-Control-Allow-Origin: *`` unless the cors plugin set
one, ``Access-Control-Expose-Headers: grpc-message,grpc-status``, and on OPTIONS
``Access-Control-Allow-Methods: POST`` and ``Access-Control-Allow-Headers``
(``cors_allow_headers``).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from pylon import pdk
from pylon.pdk import protos

name = "grpc-web"
priority = 505
version = 0.1

DEFAULT_CORS_ALLOW_HEADERS = "content-type,x-grpc-web,x-user-agent"

schema = {
    "type": "object",
    "properties": {
        "cors_allow_headers": {
            "description": "multiple header use ',' to split. default: "
                           "content-type,x-grpc-web,x-user-agent.",
            "type": "string",
            "default": DEFAULT_CORS_ALLOW_HEADERS,
        },
    },
}

_ENCODING = {"application/grpc-web": False, "application/grpc-web+proto": False,
             "application/grpc-web-text": True, "application/grpc-web-text+proto": True}


class _State:
    """This request's gRPC-Web facts (``ctx.store``)."""

    __slots__ = ("mime", "text", "skip", "metadata_sent")

    def __init__(self, mime: str | None) -> None:
        self.mime = mime
        self.text = False
        #: the plugin answered (preflight, refusal): the body is left alone
        self.skip = False
        self.metadata_sent = False


def trailer_frame(status: str, message: str) -> bytes:
    """The gRPC-Web trailer frame (PROTOCOL-WEB.md)."""
    block = f"grpc-status:{status}\r\ngrpc-message:{message}\r\n".encode("latin-1", "replace")
    return b"\x80" + len(block).to_bytes(4, "big") + block


def _grpc_path(ctx: pdk.Context) -> str | None:
    """What the route's ``*`` matched (APISIX's ``:ext``), as a path."""
    m = ctx.match
    if m is None or not m.matched_uri.endswith("*"):
        return None
    ext = ctx.uri[len(m.matched_uri) - 1:]
    if not ext:
        return None
    return ext if ext.startswith("/") else "/" + ext


async def access(conf: dict[str, Any], ctx: pdk.Context) -> Any:
    st = ctx.store[name] = _State(ctx.header("content-type"))
    method = ctx.method
    if method == "OPTIONS":
        st.skip = True
        return 204
    if method != "POST":
        pdk.log.error("request method: `%s` invalid", method)
        st.skip = True
        return 405
    text = _ENCODING.get(st.mime or "")
    if text is None:
        pdk.log.error("request Content-Type: `%s` invalid", st.mime)
        st.skip = True
        return 400
    st.text = text
    path = _grpc_path(ctx)
    if path is not None:
        ctx.set_uri(path)
    body = await ctx.read_body()
    if text:
        try:
            body = base64.b64decode(body, validate=False)
        except (binascii.Error, ValueError):
            pdk.log.error("failed to decode request body")
            st.skip = True
            return 400
    ctx.store[protos.CONVERTED] = True
    ctx.set_headers({"content-type": "application/grpc", "te": "trailers"})
    ctx.set_body(body)
    return None


def header_filter(conf: dict[str, Any], ctx: pdk.Context) -> None:
    st: _State | None = ctx.store.get(name)
    if st is None:
        return
    if ctx.method == "OPTIONS":
        ctx.set_resp_header("Access-Control-Allow-Methods", "POST")
        ctx.set_resp_header("Access-Control-Allow-Headers", conf["cors_allow_headers"])
    if ctx.resp_header("Access-Control-Allow-Origin") is None:
        ctx.set_resp_header("Access-Control-Allow-Origin", "*")
    ctx.set_resp_header("Access-Control-Expose-Headers", "grpc-message,grpc-status")
    if not st.skip:
        ctx.set_resp_header("Content-Type", st.mime)
        ctx.set_resp_header("Content-Length", None)
        ctx.body_will_change()
    # a Trailers-Only answer: its status is in the head, no trailer frame follows
    st.metadata_sent = ctx.resp_header("grpc-status") is not None


def body_filter(conf: dict[str, Any], ctx: pdk.Context, chunk: bytes, last: bool
                ) -> bytes | None:
    st: _State | None = ctx.store.get(name)
    if st is None or st.skip or not st.mime:
        return None
    if st.text and chunk:
        chunk = base64.b64encode(chunk)
    if last and not st.metadata_sent:
        status = ctx.var("upstream_trailer_grpc_status")
        if status:
            frame = trailer_frame(status, ctx.var("upstream_trailer_grpc_message") or "")
        else:
            frame = trailer_frame("2", "upstream grpc status not received")
        chunk += base64.b64encode(frame) if st.text else frame
    return chunk
