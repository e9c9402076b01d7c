"""An origin for the gzip and brotli tests, like APISIX's test server ``/echo``: it answers
with the request body and copies the request's Content-Type, Vary, ETag, Last-Modified and
Accept-Ranges into the response.  ``X-Status`` picks the status, ``X-Chunked: 1`` sends the
body chunked (no Content-Length), ``X-Precompressed: gzip`` answers with the body already
gzip-encoded; HEAD is answered with the Content-Length of ``PART1``.  ``/stream`` sends two
chunks and waits for ``GATE`` between them, so a test can prove the client decoded the first
before the second existed."""

from __future__ import annotations

import gzip
import http.client
import socket
import threading
from collections.abc import Callable
from typing import Any

from pylon.pdk.testing import EchoUpstream, Kit

COPIED = ("Content-Type", "Vary", "ETag", "Last-Modified", "Accept-Ranges")
PART1 = b"<html><body>" + b"first part " * 50
PART2 = b"second part " * 50 + b"</body></html>"
GATE = threading.Event()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _stream(h: Any) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "text/html")
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    h.wfile.write(_chunk(PART1))
    h.wfile.flush()
    GATE.wait(5)
    h.wfile.write(_chunk(PART2) + b"0\r\n\r\n")


def _answer(h: Any, rec: dict[str, Any]) -> None:
    if rec["path"] == "/stream":
        _stream(h)
        return
    hd = rec["headers"]
    status = int(hd.get("x-status", "200"))
    body = rec["body"].encode("latin-1") if h.command != "HEAD" else PART1   # its length
    h.send_response(status)
    for name in COPIED:
        if name.lower() in hd:
            h.send_header(name, hd[name.lower()])
    if hd.get("x-precompressed") == "gzip":
        body = gzip.compress(body)
        h.send_header("Content-Encoding", "gzip")
    if status in (204, 304):
        h.end_headers()
        return
    if hd.get("x-chunked"):
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        h.wfile.write(_chunk(body) + b"0\r\n\r\n")
        return
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


def origin() -> EchoUpstream:
    return EchoUpstream(_answer)


def raw_request(kit: Kit, data: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send raw bytes (an HTTP/1.0 request); read until the gateway closes."""
    with socket.create_connection(("127.0.0.1", kit.port), timeout=5) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return lines[0], headers, body


def read_streamed(kit: Kit, path: str, accept: str,
                  decode: Callable[[bytes], bytes]) -> tuple[bytes, bytes, str | None]:
    """GET ``path`` (the origin's ``/stream``) and decode the body as it arrives: returns what
    was decoded before the origin was let to send its second part, the whole decoded body
    and the Content-Encoding."""
    GATE.clear()
    c = http.client.HTTPConnection("127.0.0.1", kit.port, timeout=3)
    try:
        c.request("GET", path, headers={"Accept-Encoding": accept})
        r = c.getresponse()
        early = b""
        while len(early) < len(PART1):
            data = r.read1(65536)          # raises a timeout if the gateway held it back
            assert data, "the response ended before its first part"
            early += decode(data)
        GATE.set()
        rest = decode(r.read())
        return early, early + rest, r.getheader("Content-Encoding")
    finally:
        GATE.set()
        c.close()
