"""EtcdStore against a real etcd: APISIX data sets, transactions, leases, the watch through
compactions and restarts, outages, auth and TLS.

Each test gets its own etcd (``etcd`` fixture, free ports) and runs its coroutine on uvloop
-- the master's loop -- under an overall deadline, so a hang fails instead of stalling.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aetcd
import pytest
import uvloop

from pylon.config import etcd_store
from pylon.config.etcd_store import EtcdStore
from pylon.config.store import Conflict, Event, Item, Op, StoreError
from pylon.settings import EtcdSection, EtcdTls

from ..etcd_server import EtcdServer, find_etcd


def run(coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
    return uvloop.run(asyncio.wait_for(coro, timeout))


def make_store(server: EtcdServer, **kw: Any) -> EtcdStore:
    kw.setdefault("host", [server.url])
    kw.setdefault("timeout", 5)
    return EtcdStore(EtcdSection(**kw))


def raw_client(server: EtcdServer, **kw: Any) -> aetcd.Client:
    return aetcd.Client(host="127.0.0.1", port=server.client_port, timeout=5, **kw)


class Sink:
    """Records what the store delivers and mirrors it into a key -> value state."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.state: dict[str, dict[str, Any]] = {}
        self.revision = 0
        self.delivered: list[int] = []          # every event revision, in order

    def events(self, events: list[Event], revision: int) -> None:
        assert events, "empty batches are not delivered"
        self.calls.append(("events", list(events), revision))
        for ev in events:
            assert ev.revision > self.revision, f"event {ev} at or below {self.revision}"
            self.delivered.append(ev.revision)
            if ev.value is None:
                self.state.pop(ev.key, None)
            else:
                self.state[ev.key] = ev.value
        self.revision = revision

    def reset(self, items: dict[str, Item], revision: int) -> None:
        self.calls.append(("reset", dict(items), revision))
        self.state = {k: v.value for k, v in items.items()}
        self.revision = revision

    def status(self, ok: bool, detail: str) -> None:
        self.calls.append(("status", ok, detail))

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == kind]

    async def wait(self, pred: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; calls={self.calls}")
            await asyncio.sleep(0.02)


class Watching:
    """``async with Watching(store, revision) as sink`` runs a watch for the block and checks
    that it stops promptly when asked."""

    def __init__(self, store: EtcdStore, revision: int) -> None:
        self.store, self.revision = store, revision
        self.sink = Sink()
        self.stop = asyncio.Event()

    async def __aenter__(self) -> Sink:
        self.task = asyncio.ensure_future(self.store.watch(self.revision, self.sink, self.stop))
        await asyncio.sleep(0.1)
        return self.sink

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        t0 = time.monotonic()
        await asyncio.wait_for(self.task, 2.0)
        assert time.monotonic() - t0 < 1.0, "watch did not return promptly on stop"
        await self.store.close()


# -- load ------------------------------------------------------------------------------------
APISIX_KEYS: dict[str, bytes] = {
    # what ``apisix init_etcd`` leaves behind: directory placeholders
    "/apisix/routes": b"init_dir",
    "/apisix/upstreams": b"",
    "/apisix/routes/1": b'{"id":"1","uri":"/hello","upstream_id":"u1"}',
    "/apisix/routes/2": b'{"id":"2","uris":["/a","/b"],"plugins":{"limit-count":{"count":2}}}',
    "/apisix/upstreams/u1": b'{"id":"u1","type":"roundrobin","nodes":{"127.0.0.1:80":1}}',
    "/apisix/consumers/jack": b'{"username":"jack"}',
    "/apisix/consumers/jack/credentials/c1": b'{"id":"c1","plugins":{"key-auth":{"key":"k"}}}',
    "/apisix/secrets/vault/1": b'{"uri":"http://127.0.0.1:8200","prefix":"kv","token":"t"}',
    "/apisix/plugin_metadata/http-logger": b'{"log_format":{"host":"$host"}}',
    # not configuration: skipped, not fatal
    "/apisix/routes/garbage": b"not json {",
    "/apisix/routes/list": b"[1,2,3]",
    "/apisix/routes/binary": b"\xff\xfe\x00",
    # outside the prefix (one shares its first characters)
    "/apisix2/routes/9": b'{"uri":"/nine"}',
    "/other/routes/1": b'{"uri":"/x"}',
}


def test_load_reads_an_apisix_data_set_and_skips_what_is_not_a_json_object(
        etcd: EtcdServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(etcd_store, "PAGE_SIZE", 3)          # several pages

    async def main() -> None:
        revs: dict[str, int] = {}
        async with raw_client(etcd) as c:
            for key, value in APISIX_KEYS.items():
                revs[key] = (await c.put(key.encode(), value)).header.revision
            lease = await c.lease(60)
            revs["/apisix/routes/leased"] = (await c.put(
                b"/apisix/routes/leased", b'{"uri":"/l"}', lease=lease)).header.revision
            current = (await c.put(b"/unrelated", b"x")).header.revision
        store = make_store(etcd)
        try:
            items, rev = await store.load()
        finally:
            await store.close()
        assert rev == current
        assert sorted(items) == sorted([
            "routes/1", "routes/2", "upstreams/u1", "consumers/jack",
            "consumers/jack/credentials/c1", "secrets/vault/1",
            "plugin_metadata/http-logger", "routes/leased"])
        assert items["routes/2"].value == {"id": "2", "uris": ["/a", "/b"],
                                           "plugins": {"limit-count": {"count": 2}}}
        r1 = items["routes/1"]
        assert (r1.created, r1.modified, r1.lease) == (revs["/apisix/routes/1"],) * 2 + (0,)
        assert items["routes/leased"].lease == lease.id

    run(main())


def test_load_sees_updates_with_created_and_modified_revisions(etcd: EtcdServer) -> None:
    async def main() -> None:
        store = make_store(etcd)
        r1 = await store.commit([Op("routes/1", {"uri": "/v1"})])
        r2 = await store.commit([Op("routes/1", {"uri": "/v2"})])
        items, rev = await store.load()
        assert items["routes/1"] == Item({"uri": "/v2"}, r1, r2, 0)
        assert rev == r2
        await store.close()

    run(main())


def test_load_of_an_empty_prefix_returns_the_current_revision(etcd: EtcdServer) -> None:
    async def main() -> None:
        store = make_store(etcd, prefix="/nothing-here/")
        assert await store.load() == ({}, etcd.revision())
        assert store.where == f"etcd {etcd.url}/nothing-here"
        await store.close()

    run(main())


# -- commit ----------------------------------------------------------------------------------
def test_commit_puts_and_deletes_and_returns_the_new_revision(etcd: EtcdServer) -> None:
    async def main() -> None:
        store = make_store(etcd)
        rev = await store.commit([Op("routes/1", {"uri": "/a"}), Op("upstreams/1", {"n": 1})])
        items, now = await store.load()
        assert now == rev and items["routes/1"].modified == rev == items["upstreams/1"].created
        rev2 = await store.commit([Op("routes/1", None), Op("routes/never-existed", None)])
        assert rev2 == rev + 1
        items, _ = await store.load()
        assert list(items) == ["upstreams/1"]
        async with raw_client(etcd) as c:       # stored as APISIX stores it
            got = await c.get(b"/apisix/upstreams/1")
            assert got is not None and got.value == b'{"n":1}'
        await store.close()

    run(main())


def test_commit_with_expect_zero_creates_once_then_conflicts(etcd: EtcdServer) -> None:
    async def main() -> None:
        store = make_store(etcd)
        rev = await store.commit([Op("routes/1", {"uri": "/a"}, expect=0)])
        with pytest.raises(Conflict) as err:
            await store.commit([Op("routes/1", {"uri": "/b"}, expect=0)])
        assert err.value.key == "routes/1"
        items, now = await store.load()
        assert items["routes/1"].value == {"uri": "/a"} and now == rev
        await store.close()

    run(main())


def test_commit_with_expect_revision_conflicts_when_the_key_moved(etcd: EtcdServer) -> None:
    async def main() -> None:
        store = make_store(etcd)
        r1 = await store.commit([Op("routes/1", {"v": 1})])
        r2 = await store.commit([Op("routes/1", {"v": 2}, expect=r1)])
        with pytest.raises(Conflict) as err:                      # stale: r1 is gone
            await store.commit([Op("routes/1", {"v": 3}, expect=r1)])
        assert err.value.key == "routes/1"
        with pytest.raises(Conflict):                             # deleted meanwhile
            await store.commit([Op("routes/404", {"v": 1}, expect=r2)])
        r3 = await store.commit([Op("routes/1", None, expect=r2)])
        items, now = await store.load()
        assert items == {} and now == r3
        await store.close()

    run(main())


def test_a_failing_compare_writes_nothing_and_names_the_moved_key(etcd: EtcdServer) -> None:
    async def main() -> None:
        store = make_store(etcd)
        r1 = await store.commit([Op("routes/1", {"v": 1}), Op("routes/2", {"v": 1})])
        await store.commit([Op("routes/2", {"v": 2})])            # routes/2 moves on
        before = await store.load()
        with pytest.raises(Conflict) as err:
            await store.commit([
                Op("routes/1", {"v": 9}, expect=r1),              # holds
                Op("routes/3", {"v": 9}, expect=0),               # holds
                Op("routes/2", {"v": 9}, expect=r1),              # fails
                Op("upstreams/1", {"v": 9}),
                Op("routes/1", None),
            ])
        assert err.value.key == "routes/2"
        assert await store.load() == before                       # nothing, not even a rev
        await store.close()

    run(main())


def test_commit_with_ttl_puts_a_leased_key_that_expires(etcd: EtcdServer) -> None:
    async def main() -> None:
        store = make_store(etcd)
        await store.commit([Op("routes/tmp", {"uri": "/t"}, ttl=2), Op("routes/keep", {})])
        items, _ = await store.load()
        assert items["routes/tmp"].lease != 0 and items["routes/keep"].lease == 0
        deadline = time.monotonic() + 10
        while "routes/tmp" in items:
            assert time.monotonic() < deadline, "the ttl key never expired"
            await asyncio.sleep(0.25)
            items, _ = await store.load()
        assert list(items) == ["routes/keep"]
        await store.close()

    run(main(), timeout=20)


# -- watch -----------------------------------------------------------------------------------
def test_watch_delivers_each_transaction_as_one_ordered_batch(etcd: EtcdServer) -> None:
    async def main() -> None:
        store = make_store(etcd)
        r0 = await store.commit([Op("routes/1", {"v": 0})])
        async with Watching(store, r0) as sink:
            writer = make_store(etcd)
            r1 = await writer.commit([Op("routes/2", {"v": 1}), Op("upstreams/1", {"u": 1})])
            r2 = await writer.commit([Op("routes/1", {"v": 2})])
            r3 = await writer.commit([Op("routes/2", None)])
            etcd.put("/apisix/routes/1", "oops, not json")        # reads as a delete
            r4 = r3 + 1
            etcd.put("/apisix2/routes/1", '{"outside": true}')    # not ours: no event
            await writer.commit([Op("routes/5", {"v": 5})])
            await sink.wait(lambda: "routes/5" in sink.state, "routes/5")
            await writer.close()
        batches = [(c[1], c[2]) for c in sink.of("events")]
        assert batches[0] == ([Event("routes/2", {"v": 1}, r1, r1),
                               Event("upstreams/1", {"u": 1}, r1, r1)], r1)
        assert batches[1] == ([Event("routes/1", {"v": 2}, r0, r2)], r2)
        assert batches[2] == ([Event("routes/2", None, 0, r3)], r3)
        assert batches[3] == ([Event("routes/1", None, 0, r4)], r4)
        assert batches[4][0][0].key == "routes/5" and batches[4][0][0].revision == r4 + 2
        assert len(batches) == 5
        assert not sink.of("status") and not sink.of("reset")
        assert sink.state == {"upstreams/1": {"u": 1}, "routes/5": {"v": 5}}

    run(main())


def test_watch_catches_up_a_long_history_including_fragmented_responses(
        etcd: EtcdServer) -> None:
    """Catching up, etcd packs up to 1000 revisions in a response and fragments responses
    over 1.5 MB: every change still arrives once, in order, whole."""
    async def main() -> None:
        store = make_store(etcd, timeout=10)
        r0 = (await store.load())[1]
        big = "x" * 12_000
        for t in range(3):                              # 3 x 1.2 MB transactions
            await store.commit([Op(f"big/{t}/{i}", {"pad": big}) for i in range(100)])
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            async with sem:
                await store.commit([Op(f"routes/{i % 50}", {"n": i})])

        await asyncio.gather(*(one(i) for i in range(1200)))
        expected, rev = await store.load()
        async with Watching(store, r0) as sink:
            await sink.wait(lambda: sink.revision == rev, f"revision {rev}", timeout=20)
        assert sink.delivered == sorted(sink.delivered)
        assert len(sink.delivered) == 300 + 1200 and not sink.of("reset")
        assert sink.state == {k: v.value for k, v in expected.items()}
        # the first catch-up response (~3.6 MB) came in fragments, delivered as one batch
        first = sink.of("events")[0][1]
        assert [e.key for e in first[:300]] == [f"big/{t}/{i}" for t in range(3)
                                                 for i in range(100)]
        assert len(sink.of("events")) <= 3

    run(main(), timeout=60)


def test_watch_from_a_compacted_revision_resets_with_the_full_state(etcd: EtcdServer) -> None:
    async def main() -> None:
        store = make_store(etcd)
        r0 = await store.commit([Op("routes/1", {"v": 0}), Op("routes/2", {"v": 0})])
        await store.commit([Op("routes/1", {"v": 1})])
        await store.commit([Op("routes/2", None), Op("routes/3", {"v": 3})])
        compacted = etcd.compact()                                # r0 + 1 is history now
        async with Watching(store, r0) as sink:
            await sink.wait(lambda: bool(sink.of("reset")), "reset")
            _, items, rev = sink.of("reset")[0]
            assert rev == compacted
            assert {k: i.value for k, i in items.items()} == {"routes/1": {"v": 1},
                                                             "routes/3": {"v": 3}}
            r4 = await store.commit([Op("routes/4", {"v": 4})])
            await sink.wait(lambda: "routes/4" in sink.state, "routes/4 after the reset")
        assert sink.calls[0][0] == "reset" and sink.delivered == [r4]
        assert not sink.of("status")
        assert sink.state == {"routes/1": {"v": 1}, "routes/3": {"v": 3}, "routes/4": {"v": 4}}

    run(main())


def test_a_sink_that_raises_is_resynchronised_with_a_reset(etcd: EtcdServer) -> None:
    class Flaky(Sink):
        failed = False

        def events(self, events: list[Event], revision: int) -> None:
            if not self.failed:
                self.failed = True
                raise RuntimeError("bug in the master")
            super().events(events, revision)

    async def main() -> None:
        store = make_store(etcd)
        r0 = await store.commit([Op("routes/1", {"v": 0})])
        watching = Watching(store, r0)
        watching.sink = sink = Flaky()
        async with watching:
            await store.commit([Op("routes/2", {"v": 2})])      # lost by the sink...
            await sink.wait(lambda: bool(sink.of("reset")), "reset")
            r3 = await store.commit([Op("routes/3", {"v": 3})])
            await sink.wait(lambda: sink.revision == r3, "r3")
        assert sink.state == {"routes/1": {"v": 0}, "routes/2": {"v": 2},   # ...not by us
                              "routes/3": {"v": 3}}
        assert not sink.of("status")

    run(main())


def test_watch_reports_an_outage_and_resumes_after_restart(etcd: EtcdServer) -> None:
    async def main() -> None:
        store = make_store(etcd, timeout=2)
        r0 = await store.commit([Op("routes/1", {"v": 0})])
        async with Watching(store, r0) as sink:
            r1 = await store.commit([Op("routes/1", {"v": 1})])
            await sink.wait(lambda: sink.revision == r1, "r1")
            etcd.stop()
            await sink.wait(lambda: bool(sink.of("status")), "status(False)")
            with pytest.raises(StoreError):
                await store.commit([Op("routes/x", {})])
            await asyncio.sleep(0.5)                              # a few failed retries
            etcd.start()
            r2 = await store.commit([Op("routes/2", {"v": 2})])  # the store reconnects too
            await sink.wait(lambda: "routes/2" in sink.state, "routes/2 after restart")
            await sink.wait(lambda: len(sink.of("status")) == 2, "status(True)")
        statuses = sink.of("status")
        assert [s[1] for s in statuses] == [False, True]
        assert "etcd" in statuses[0][2] and statuses[1][2] == ""
        assert sink.delivered == [r1, r2] and not sink.of("reset")

    run(main())


def test_watch_resets_when_history_was_compacted_during_an_outage(etcd: EtcdServer) -> None:
    async def main() -> None:
        store = make_store(etcd, timeout=2)
        store.backoff_initial = 3.0              # a wide window between outage and retry
        r0 = await store.commit([Op("routes/1", {"v": 0})])
        async with Watching(store, r0) as sink:
            etcd.kill()                          # a crash, not a clean shutdown
            await sink.wait(lambda: bool(sink.of("status")), "status(False)")
            etcd.start()
            writer = make_store(etcd)
            await writer.commit([Op("routes/1", None), Op("routes/2", {"v": 2})])
            await writer.commit([Op("routes/3", {"v": 3})])
            compacted = etcd.compact()
            assert not sink.of("reset"), "the watch retried too early for this test"
            await sink.wait(lambda: bool(sink.of("reset")), "reset", timeout=15)
            r4 = await writer.commit([Op("routes/4", {"v": 4})])
            await sink.wait(lambda: "routes/4" in sink.state, "routes/4")
            await writer.close()
        kinds = [c[0] if c[0] != "status" else f"status:{c[1]}" for c in sink.calls]
        # etcd accepts the watch (reachable again), then says its start was compacted
        assert kinds == ["status:False", "status:True", "reset", "events"]
        assert sink.of("reset")[0][2] == compacted and sink.delivered == [r4]
        assert sink.state == {"routes/2": {"v": 2}, "routes/3": {"v": 3}, "routes/4": {"v": 4}}

    run(main())


def test_watch_started_while_etcd_is_down_catches_up_when_it_comes(etcd: EtcdServer) -> None:
    async def main() -> None:
        store = make_store(etcd, timeout=1)
        r0 = await store.commit([Op("routes/1", {"v": 0})])
        etcd.stop()
        async with Watching(store, r0) as sink:
            await sink.wait(lambda: bool(sink.of("status")), "status(False)")
            etcd.start()
            r1 = await store.commit([Op("routes/1", {"v": 1})])
            await sink.wait(lambda: sink.revision == r1, "r1", timeout=15)
        assert [c[1] for c in sink.of("status")] == [False, True]

    run(main())


# -- outages ---------------------------------------------------------------------------------
def test_load_and_commit_raise_store_error_within_the_timeout_when_etcd_is_down(
        etcd: EtcdServer) -> None:
    etcd.stop()

    async def main() -> None:
        store = make_store(etcd, timeout=1.5)
        for call in (store.load(), store.commit([Op("routes/1", {})])):
            t0 = time.monotonic()
            with pytest.raises(StoreError, match="unreachable"):
                await call
            assert time.monotonic() - t0 < 1.5 + 0.5
        await store.close()

    run(main())


def test_a_server_that_never_answers_times_out_with_store_error() -> None:
    """A black hole (TCP accepted, no HTTP/2 ever): every wait is bounded by the timeout."""
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(16)
        url = f"http://127.0.0.1:{hole.getsockname()[1]}"

        async def main() -> None:
            store = EtcdStore(EtcdSection(host=[url], timeout=1))
            for call in (store.load(), store.commit([Op("routes/1", {})])):
                t0 = time.monotonic()
                with pytest.raises(StoreError):
                    await call
                assert time.monotonic() - t0 < 1 + 0.5
            sink, stop = Sink(), asyncio.Event()
            task = asyncio.ensure_future(store.watch(0, sink, stop))
            await sink.wait(lambda: bool(sink.of("status")), "status(False)", timeout=5)
            stop.set()
            await asyncio.wait_for(task, 1.0)
            await store.close()

        run(main())


def test_commit_and_load_fail_over_to_the_next_host(etcd: EtcdServer) -> None:
    dead = EtcdServer()                  # reserved ports, never started
    try:
        async def main() -> None:
            store = make_store(etcd, host=[dead.url, etcd.url], timeout=3)
            rev = await store.commit([Op("routes/1", {"v": 1})])
            assert (await store.load())[1] == rev
            async with Watching(store, 0) as sink:
                await sink.wait(lambda: "routes/1" in sink.state, "routes/1")
            assert [c[1] for c in sink.of("status")] in ([], [False, True])

        run(main())
    finally:
        dead.close()


# -- auth ------------------------------------------------------------------------------------
def test_auth_works_with_user_and_password_and_fails_clearly_without(etcd: EtcdServer) -> None:
    etcd.enable_auth("root", "s3cret")

    async def main() -> None:
        store = make_store(etcd, user="root", password="s3cret")
        r1 = await store.commit([Op("routes/1", {"v": 1}, ttl=30)])
        items, rev = await store.load()
        assert rev == r1 and items["routes/1"].value == {"v": 1}
        async with Watching(store, 0) as sink:
            await sink.wait(lambda: "routes/1" in sink.state, "routes/1 through auth")
            await store.commit([Op("routes/2", {"v": 2})])
            await sink.wait(lambda: "routes/2" in sink.state, "routes/2 through auth")
        assert not sink.of("status")

        anonymous = make_store(etcd)
        with pytest.raises(StoreError, match="authentication enabled"):
            await anonymous.load()
        with pytest.raises(StoreError, match="authentication enabled"):
            await anonymous.commit([Op("routes/3", {})])
        wrong = make_store(etcd, user="root", password="nope")
        with pytest.raises(StoreError, match="user and password"):
            await wrong.load()
        for s in (anonymous, wrong):
            await s.close()

    run(main())


def test_an_expired_auth_token_is_renewed_transparently() -> None:
    if find_etcd() is None:
        pytest.skip("no etcd server binary")
    with EtcdServer(args=["--auth-token-ttl", "1"]) as server:
        server.enable_auth("root", "s3cret")

        async def main() -> None:
            store = make_store(server, user="root", password="s3cret")
            r1 = await store.commit([Op("routes/1", {})])
            await asyncio.sleep(2.5)                   # etcd forgets the idle token
            r2 = await store.commit([Op("routes/2", {})])
            assert r2 == r1 + 1 and len((await store.load())[0]) == 2
            await store.close()

        run(main())


def test_user_and_password_are_ignored_when_etcd_has_no_auth(etcd: EtcdServer) -> None:
    async def main() -> None:
        store = make_store(etcd, user="root", password="x")
        rev = await store.commit([Op("routes/1", {})])
        assert (await store.load())[1] == rev
        await store.close()

    run(main())


# -- TLS -------------------------------------------------------------------------------------
def _make_pki(d: str) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 / etcd.test and a client certificate."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> Any:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(cn: str, key: Any, issuer: Any, issuer_key: Any, *, ca: bool = False,
             san: list[Any] | None = None, usage: Any = None) -> Any:
        b = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(issuer)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        if usage:
            b = b.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    def write(fname: str, data: bytes) -> str:
        path = os.path.join(d, fname)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def pem_key(key: Any) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert("pylon test CA", ca_key, name("pylon test CA"), ca_key, ca=True)
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv = cert("etcd.test", srv_key, ca.subject, ca_key,
               san=[x509.DNSName("etcd.test"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
               usage=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    cli_key = ec.generate_private_key(ec.SECP256R1())
    cli = cert("pylon", cli_key, ca.subject, ca_key, usage=[ExtendedKeyUsageOID.CLIENT_AUTH])
    enc = serialization.Encoding.PEM
    return {
        "ca": write("ca.pem", ca.public_bytes(enc)),
        "cert": write("server.pem", srv.public_bytes(enc)),
        "key": write("server-key.pem", pem_key(srv_key)),
        "client_cert": write("client.pem", cli.public_bytes(enc)),
        "client_key": write("client-key.pem", pem_key(cli_key)),
    }


def test_tls_with_ca_client_certificate_sni_and_verify_off(tmp_path: Any) -> None:
    if find_etcd() is None:
        pytest.skip("no etcd server binary")
    pki = _make_pki(str(tmp_path))
    with EtcdServer(tls=pki) as server:
        async def main() -> None:
            verified = make_store(server, tls=EtcdTls(
                ca=pki["ca"], cert=pki["client_cert"], key=pki["client_key"]))
            rev = await verified.commit([Op("routes/1", {"tls": True})])
            assert (await verified.load())[1] == rev
            async with Watching(verified, 0) as sink:
                await sink.wait(lambda: "routes/1" in sink.state, "routes/1 over TLS")

            by_name = make_store(server, tls=EtcdTls(
                ca=pki["ca"], sni="etcd.test", cert=pki["client_cert"], key=pki["client_key"]))
            assert (await by_name.load())[1] == rev

            pinned = make_store(server, tls=EtcdTls(
                verify=False, cert=pki["client_cert"], key=pki["client_key"]))
            assert (await pinned.load())[1] == rev

            untrusted = make_store(server, timeout=2, tls=EtcdTls(
                cert=pki["client_cert"], key=pki["client_key"]))   # system CAs only
            with pytest.raises(StoreError):
                await untrusted.load()
            no_client_cert = make_store(server, timeout=2, tls=EtcdTls(ca=pki["ca"]))
            with pytest.raises(StoreError):
                await no_client_cert.load()
            for s in (by_name, pinned, untrusted, no_client_cert):
                await s.close()

        run(main())


# -- scale -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_load_of_100k_keys(etcd: EtcdServer) -> None:
    """100k APISIX-sized routes: written in 128-op transactions, loaded in a few seconds."""
    n = 100_000

    async def main() -> float:
        store = make_store(etcd, timeout=30)
        route = {"uri": "/r/{}", "methods": ["GET"], "upstream": {
            "type": "roundrobin", "nodes": {"127.0.0.1:1980": 1}}, "plugins": {}}
        sem = asyncio.Semaphore(16)

        async def batch(start: int) -> None:
            async with sem:
                await store.commit([Op(f"routes/{i}", {**route, "uri": f"/r/{i}"})
                                    for i in range(start, min(start + 128, n))])

        await asyncio.gather(*(batch(s) for s in range(0, n, 128)))
        t0 = time.monotonic()
        items, _ = await store.load()
        took = time.monotonic() - t0
        assert len(items) == n
        await store.close()
        return took

    took = run(main(), timeout=300)
    print(f"load() of {n} keys: {took:.2f}s")
    assert took < 10
