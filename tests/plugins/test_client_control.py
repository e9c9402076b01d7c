"""client-control through a real gateway: Content-Length and chunked bodies over the limit."""

from __future__ import annotations

import socket
import time

import pytest

from pylon.pdk.testing import Kit

DOC = {
    "routes": [
        {"id": "small", "uri": "/small", "plugins": {"client-control": {"max_body_size": 1000}}},
        {"id": "off", "uri": "/off", "plugins": {"client-control": {"max_body_size": 0}}},
        {"id": "unset", "uri": "/unset", "plugins": {"client-control": {}}},
    ],
}
TOO_LARGE = {"error_msg": "413 Request Entity Too Large"}


@pytest.fixture(scope="module")
def kit():
    with Kit(DOC) as k:
        yield k


def raw(kit, data: bytes, *later: bytes) -> tuple[int, bytes]:
    """Send ``data`` as is (then each of ``later`` after a pause); the status and the body
    of the first response."""
    with socket.create_connection(("127.0.0.1", kit.port), timeout=10) as s:
        try:
            s.sendall(data)
            for part in later:
                time.sleep(0.2)
                s.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = b""
        while b"\r\n\r\n" not in out:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        head, _, body = out.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
    return int(out.split(b" ", 2)[1]), body


def chunked(path: str, parts: list[bytes]) -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    return (f"POST {path} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n").encode() + body


def test_content_length_over_the_limit_is_413_before_proxying(kit):
    before = len(kit.upstream.requests)
    r = kit.post("/small", body=b"x" * 1001)
    assert r.status == 413
    assert r.json() == TOO_LARGE
    assert len(kit.upstream.requests) == before


def test_content_length_at_the_limit_is_proxied(kit):
    r = kit.post("/small", body=b"x" * 1000)
    assert r.status == 200
    assert r.json()["body"] == "x" * 1000


def test_large_declared_body_is_refused_without_100_continue(kit):
    status, _ = raw(kit, b"POST /small HTTP/1.1\r\nHost: t\r\nContent-Length: 5000000\r\n"
                            b"Expect: 100-continue\r\n\r\n")
    assert status == 413


def test_chunked_body_over_the_limit_is_413(kit):
    before = len(kit.upstream.requests)
    status, body = raw(kit, chunked("/small", [b"a" * 600, b"b" * 600]))
    assert status == 413
    assert b"413 Request Entity Too Large" in body
    assert len(kit.upstream.requests) == before


def test_chunked_body_going_over_the_limit_while_streaming_is_413(kit):
    before = len(kit.upstream.requests)
    req = chunked("/small", [b"a" * 500, b"b" * 400, b"c" * 400])
    cut = req.index(b"\r\n\r\n") + 4
    status, _ = raw(kit, req[:cut + 300], req[cut + 300:cut + 800], req[cut + 800:])
    assert status == 413
    assert len(kit.upstream.requests) == before


def test_chunked_body_within_the_limit_is_proxied_whole(kit):
    status, _ = raw(kit, chunked("/small", [b"a" * 400, b"b" * 400]))
    assert status == 200
    assert kit.last_upstream_request()["body"] == "a" * 400 + "b" * 400


def test_zero_or_unset_means_no_limit_from_the_plugin(kit):
    for path in ("/off", "/unset"):
        r = kit.post(path, body=b"x" * 100_000)
        assert r.status == 200, path
        assert len(r.json()["body"]) == 100_000
        status, _ = raw(kit, chunked(path, [b"a" * 50_000, b"b" * 50_000]))
        assert status == 200, path


def test_negative_size_is_refused_at_config_time(kit):
    doc = {"routes": DOC["routes"] + [
        {"id": "neg", "uri": "/neg", "plugins": {"client-control": {"max_body_size": -1}}}]}
    kit.apply(doc)
    try:
        assert kit.get("/neg").status == 404
        assert 'property "max_body_size" validation failed' in kit.log()
    finally:
        kit.apply(DOC)
