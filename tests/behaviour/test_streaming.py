"""Large bodies stream through the gateway in bounded memory: a request body is forwarded
as it arrives (flow control pauses the client when the upstream is slow) and a response
body is relayed as it is produced.  The worker's resident set must not grow with the body.
"""

from __future__ import annotations

import http.client
import json
import time

import pytest

from tests.harness import (
    BLOCK,
    RSSSampler,
    count_body,
    counter,
    generate_body,
    node,
    origin_factory,
)

__all__ = ["origin_factory"]

MiB = 1 << 20
RSS_BUDGET = 32 * MiB


def make_world(gateway_factory, origin_factory, total: int, chunked_download: bool,
               sink_delay: float = 0.0):
    sink = origin_factory("sink", behaviour=counter(sink_delay) if sink_delay else count_body,
                          read_body=False)
    source = origin_factory("source", behaviour=generate_body(total, chunked=chunked_download))
    gw = gateway_factory({"routes": [
        {"id": "up", "uri": "/upload", "upstream": {"nodes": [node(sink.port)]}},
        {"id": "down", "uri": "/download", "upstream": {"nodes": [node(source.port)]}},
        {"id": "warm", "uri": "/warm", "upstream": {"nodes": [node(sink.port)]}},
    ]}, workers=1)
    # warm the worker up (first request, pools, buffers) so the baseline is fair
    for _ in range(3):
        c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
        c.request("POST", "/warm", body=BLOCK * 16)
        assert c.getresponse().read()
        c.close()
    pids = gw.worker_pids()
    assert len(pids) == 1
    return gw, sink, pids


def upload(gw, total: int, chunked: bool) -> dict:
    c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=60)
    try:
        c.putrequest("POST", "/upload")
        if chunked:
            c.putheader("Transfer-Encoding", "chunked")
        else:
            c.putheader("Content-Length", str(total))
        c.endheaders()
        sent = 0
        piece = BLOCK * 4                                   # 256 KiB writes
        frame = b"%x\r\n" % len(piece)
        while sent < total:
            n = min(len(piece), total - sent)
            data = piece if n == len(piece) else piece[:n]
            if chunked:
                c.send(frame if n == len(piece) else b"%x\r\n" % n)
                c.send(data)
                c.send(b"\r\n")
            else:
                c.send(data)
            sent += n
        if chunked:
            c.send(b"0\r\n\r\n")
        r = c.getresponse()
        assert r.status == 200
        return json.loads(r.read())
    finally:
        c.close()


def download(gw, total: int, delay: float = 0.0) -> tuple[int, bool]:
    c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=60)
    try:
        c.request("GET", "/download")
        r = c.getresponse()
        assert r.status == 200
        chunked = r.chunked
        got = 0
        first = r.read(len(BLOCK))
        assert first == BLOCK[:len(first)]
        got += len(first)
        while True:
            b = r.read(65536 if delay else 1 << 20)
            if not b:
                break
            got += len(b)
            if delay:
                time.sleep(delay)
        return got, chunked
    finally:
        c.close()


def check_upload(gateway_factory, origin_factory, total: int, chunked: bool,
                 sink_delay: float = 0.0) -> None:
    gw, sink, pids = make_world(gateway_factory, origin_factory, MiB, False, sink_delay)
    t0 = time.monotonic()
    with RSSSampler(pids) as rss:
        assert upload(gw, total, chunked) == {"received": total}
    took = time.monotonic() - t0
    print(f"upload {total / MiB:.0f} MiB chunked={chunked}: {took:.2f}s, "
          f"RSS +{rss.growth() / MiB:.1f} MiB")
    assert sink.counted[-1] == total
    assert rss.growth() < RSS_BUDGET, (
        f"worker RSS grew {rss.growth() / MiB:.1f} MiB streaming {total / MiB:.0f} MiB "
        f"in {took:.1f}s")


def check_download(gateway_factory, origin_factory, total: int, chunked: bool,
                   client_delay: float = 0.0) -> None:
    gw, _, pids = make_world(gateway_factory, origin_factory, total, chunked)
    t0 = time.monotonic()
    with RSSSampler(pids) as rss:
        got, was_chunked = download(gw, total, client_delay)
    print(f"download {total / MiB:.0f} MiB chunked={chunked}: {time.monotonic() - t0:.2f}s, "
          f"RSS +{rss.growth() / MiB:.1f} MiB")
    assert got == total
    assert was_chunked == chunked
    assert rss.growth() < RSS_BUDGET, (
        f"worker RSS grew {rss.growth() / MiB:.1f} MiB relaying {total / MiB:.0f} MiB")


def test_256mib_upload_streams_in_bounded_memory(gateway_factory, origin_factory):
    check_upload(gateway_factory, origin_factory, 256 * MiB, chunked=False)


def test_256mib_download_streams_in_bounded_memory(gateway_factory, origin_factory):
    check_download(gateway_factory, origin_factory, 256 * MiB, chunked=True)


def test_slow_upstream_pauses_a_fast_client_upload(gateway_factory, origin_factory):
    """The sink reads ~4x slower than the client sends: without flow control the worker
    would hold most of the 96 MiB."""
    check_upload(gateway_factory, origin_factory, 96 * MiB, chunked=True, sink_delay=0.0005)


def test_slow_client_pauses_a_fast_upstream_download(gateway_factory, origin_factory):
    """The client reads ~4x slower than the upstream produces."""
    check_download(gateway_factory, origin_factory, 96 * MiB, chunked=False,
                   client_delay=0.0005)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_1gib_upload_streams_in_bounded_memory(gateway_factory, origin_factory, chunked):
    check_upload(gateway_factory, origin_factory, 1024 * MiB, chunked=chunked)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_1gib_download_streams_in_bounded_memory(gateway_factory, origin_factory, chunked):
    check_download(gateway_factory, origin_factory, 1024 * MiB, chunked=chunked)
