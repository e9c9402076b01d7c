"""The shared batch processor, on a real asyncio loop."""

from __future__ import annotations

import asyncio

from pylon.observe import batch
from pylon.observe.batch import BatchProcessor


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_full_batch_is_sent_at_batch_max_size():
    async def main():
        got = []

        async def sender(b):
            got.append(list(b))

        p = BatchProcessor(sender, batch_max_size=3, inactive_timeout=5)
        for i in range(7):
            p.push(i)
        await asyncio.sleep(0.05)
        assert got == [[0, 1, 2], [3, 4, 5]]
        assert p.pending == 1
        await p.flush()
        assert got[-1] == [6] and p.sent == 7 and p.batches == 3
    run(main())


def test_inactive_timeout_sends_a_partial_batch():
    async def main():
        got = []

        async def sender(b):
            got.append(list(b))

        p = BatchProcessor(sender, batch_max_size=100, inactive_timeout=0.2)
        p.push("a")
        p.push("b")
        await asyncio.sleep(0.1)
        assert got == []
        await asyncio.sleep(0.25)
        assert got == [["a", "b"]]
    run(main())


def test_buffer_duration_bounds_a_busy_batch():
    async def main():
        got = []

        async def sender(b):
            got.append(list(b))

        p = BatchProcessor(sender, batch_max_size=1000, inactive_timeout=0.3,
                           buffer_duration=0.4)
        for i in range(8):              # an entry every 0.1 s: never inactive
            p.push(i)
            await asyncio.sleep(0.1)
        assert got and len(got[0]) <= 5
    run(main())


def test_failed_batch_is_retried_then_dropped_and_counted():
    async def main():
        calls = []

        async def sender(b):
            calls.append(len(b))
            raise OSError("down")

        p = BatchProcessor(sender, batch_max_size=2, max_retry_count=2, retry_delay=0.05)
        p.push(1)
        p.push(2)
        await p.flush()
        assert calls == [2, 2, 2]
        assert p.failed == 2 and p.sent == 0 and p.pending == 0
    run(main())


def test_a_retry_succeeds():
    async def main():
        calls = []

        async def sender(b):
            calls.append(1)
            if len(calls) == 1:
                raise OSError("once")

        p = BatchProcessor(sender, batch_max_size=1, max_retry_count=1, retry_delay=0.01)
        p.push(1)
        await p.flush()
        assert p.sent == 1 and p.failed == 0 and len(calls) == 2
    run(main())


def test_slow_sink_never_blocks_push_and_drops_beyond_the_bound():
    async def main():
        release = asyncio.Event()

        async def sender(b):
            await release.wait()

        p = BatchProcessor(sender, batch_max_size=10, max_pending=50)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        accepted = sum(p.push(i) for i in range(1000))
        assert loop.time() - t0 < 0.5
        assert accepted == 50 and p.dropped == 950 and p.pending == 50
        release.set()
        await p.flush()
        assert p.sent == 50 and p.pending == 0
        assert p.push("again")            # room again once sent
        p.close()
    run(main())


def test_manager_gives_one_processor_per_plugin_route_and_conf():
    async def send(b):
        pass

    def sender(conf):
        return send

    conf = {"batch_max_size": 5, "name": "x"}
    k = batch.conf_key(conf)
    a = batch.processor("http-logger", "r1", k, conf, sender)
    assert batch.processor("http-logger", "r1", k, conf, sender) is a
    assert batch.processor("http-logger", "r2", k, conf, sender) is not a
    k2 = batch.conf_key({**conf, "batch_max_size": 6})
    assert batch.processor("http-logger", "r1", k2, conf, sender) is not a
    assert a.batch_max_size == 5 and a.name == "x"
