"""grpc-web as APISIX: gRPC-Web requests over HTTP/1.1 (binary and base64 text), frames
encoded by hand per PROTOCOL-WEB.md, to the real gRPC server; trailers framed into the body;
CORS headers; refusals."""

from __future__ import annotations

import base64
import http.client
from collections.abc import Iterator
from typing import Any

import pytest

from tests.grpc.service import GrpcServer, generated
from tests.harness import closing_factory

pb2, _ = generated()


@pytest.fixture
def grpc_server() -> Iterator[Any]:
    yield from closing_factory(GrpcServer)


def web_doc(addr: str, **conf: Any) -> dict[str, Any]:
    return {"routes": [{"id": "1", "uri": "/grpc/web/*", "plugins": {"grpc-web": conf},
                        "upstream": {"scheme": "grpc", "type": "roundrobin",
                                     "nodes": {addr: 1}}}]}


def frame(msg: Any) -> bytes:
    data = msg.SerializeToString()
    return b"\0" + len(data).to_bytes(4, "big") + data


def unframe(body: bytes) -> list[tuple[int, bytes]]:
    """The gRPC-Web frames of a response body: (flags, payload)."""
    out = []
    i = 0
    while i < len(body):
        n = int.from_bytes(body[i + 1:i + 5], "big")
        out.append((body[i], body[i + 5:i + 5 + n]))
        i += 5 + n
    assert i == len(body), body
    return out


def call(port: int, path: str, body: bytes, ctype: str = "application/grpc-web+proto",
         method: str = "POST", headers: dict[str, str] | None = None
         ) -> tuple[int, dict[str, str], bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path, body=body, headers={"Content-Type": ctype,
                                                    "X-Grpc-Web": "1", **(headers or {})})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def test_binary_unary_and_server_streaming_calls_with_the_trailer_frame(gateway_factory,
                                                                         grpc_server):
    server = grpc_server()
    gw = gateway_factory(web_doc(server.addr))
    status, headers, body = call(gw.port, "/grpc/web/echo.Echo/Unary",
                                 frame(pb2.Msg(text="hi", count=1)))
    assert status == 200
    assert headers["content-type"] == "application/grpc-web+proto"
    assert headers["access-control-allow-origin"] == "*"
    assert headers["access-control-expose-headers"] == "grpc-message,grpc-status"
    frames = unframe(body)
    assert frames[0][0] == 0 and pb2.Msg.FromString(frames[0][1]).count == 2
    assert frames[1] == (0x80, b"grpc-status:0\r\ngrpc-message:\r\n")
    status, _, body = call(gw.port, "/grpc/web/echo.Echo/Repeat",
                           frame(pb2.Msg(text="s", count=3)), ctype="application/grpc-web")
    frames = unframe(body)
    assert [pb2.Msg.FromString(p).count for f, p in frames[:-1]] == [0, 1, 2]
    assert frames[-1][0] == 0x80 and frames[-1][1].startswith(b"grpc-status:0\r\n")


def test_text_mode_is_base64_both_ways(gateway_factory, grpc_server):
    server = grpc_server()
    gw = gateway_factory(web_doc(server.addr))
    status, headers, body = call(gw.port, "/grpc/web/echo.Echo/Unary",
                                 base64.b64encode(frame(pb2.Msg(text="t"))),
                                 ctype="application/grpc-web-text")
    assert status == 200 and headers["content-type"] == "application/grpc-web-text"
    raw = b"".join(base64.b64decode(body[i:i + 4]) for i in range(0, len(body), 4))
    frames = unframe(raw)
    assert pb2.Msg.FromString(frames[0][1]).text == "t"
    assert frames[-1][1].startswith(b"grpc-status:0")


def test_errors_in_trailers_and_trailers_only_answers(gateway_factory, grpc_server):
    server = grpc_server()
    gw = gateway_factory(web_doc(server.addr))
    status, headers, body = call(gw.port, "/grpc/web/echo.Echo/Unary",
                                 frame(pb2.Msg(text="fail")))
    assert status == 200
    assert unframe(body)[-1][1].startswith(b"grpc-status:5\r\ngrpc-message:no such thing")
    # Trailers-Only (an unknown method): the status is in the head, no trailer frame
    status, headers, body = call(gw.port, "/grpc/web/echo.Echo/Nope", frame(pb2.Msg()))
    assert (status, headers["grpc-status"], body) == (200, "12", b"")


def test_preflight_and_refusals(gateway_factory, grpc_server):
    server = grpc_server()
    gw = gateway_factory(web_doc(server.addr, cors_allow_headers="content-type,x-custom"))
    status, headers, _ = call(gw.port, "/grpc/web/echo.Echo/Unary", b"", method="OPTIONS")
    assert status == 204
    assert headers["access-control-allow-methods"] == "POST"
    assert headers["access-control-allow-headers"] == "content-type,x-custom"
    assert headers["access-control-allow-origin"] == "*"
    assert call(gw.port, "/grpc/web/echo.Echo/Unary", b"", method="GET")[0] == 405
    assert call(gw.port, "/grpc/web/echo.Echo/Unary", b"x", ctype="text/plain")[0] == 400
