"""WebSocket through the gateway: enable_websocket routes splice client and upstream."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

websockets = pytest.importorskip("websockets")
from websockets.asyncio.client import connect as ws_connect  # noqa: E402
from websockets.asyncio.server import serve as ws_serve  # noqa: E402
from websockets.exceptions import InvalidStatus  # noqa: E402


class WsOrigin:
    """A real websockets server on loopback in its own thread: echoes, prefixed."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.paths: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def handler(ws):  # type: ignore[no-untyped-def]
            self.paths.append(ws.request.path)
            async for msg in ws:
                await ws.send(b"echo:" + msg if isinstance(msg, bytes) else "echo:" + msg)

        async def main() -> None:
            self.server = await ws_serve(handler, "127.0.0.1", 0, max_size=None)
            self.port = self.server.sockets[0].getsockname()[1]
            self.ready.set()
            await self.server.serve_forever()

        try:
            self.loop.run_until_complete(main())
        except asyncio.CancelledError:
            pass

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.thread.join(5)


@pytest.fixture
def ws_origin():
    o = WsOrigin()
    yield o
    o.close()


def ws_doc(origin: WsOrigin, websocket: bool = True) -> dict:
    return {"routes": [{"id": "ws", "uri": "/ws/*", "enable_websocket": websocket,
                        "upstream": {"nodes": {f"127.0.0.1:{origin.port}": 1}}}]}


def test_websocket_messages_flow_both_ways_through_the_gateway(gateway_factory, ws_origin):
    gw = gateway_factory(ws_doc(ws_origin))

    async def talk() -> list[object]:
        async with ws_connect(f"ws://127.0.0.1:{gw.port}/ws/chat?room=1",
                              open_timeout=5) as ws:
            out = []
            for msg in ("hello", b"\x00\x01binary", "x" * 200_000):
                await ws.send(msg)
                out.append(await asyncio.wait_for(ws.recv(), 5))
            return out

    got = asyncio.run(talk())
    assert got[0] == "echo:hello"
    assert got[1] == b"echo:\x00\x01binary"
    assert got[2] == "echo:" + "x" * 200_000
    assert ws_origin.paths == ["/ws/chat?room=1"]
    # the connection is logged when the tunnel closes, with status 101
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not any(
            '"GET /ws/chat?room=1 HTTP/1.1" 101' in line for line in gw.access_log()):
        time.sleep(0.05)
    assert any('"GET /ws/chat?room=1 HTTP/1.1" 101' in line for line in gw.access_log())


def test_many_websocket_sessions_at_once(gateway_factory, ws_origin):
    gw = gateway_factory(ws_doc(ws_origin))

    async def one(i: int) -> str:
        async with ws_connect(f"ws://127.0.0.1:{gw.port}/ws/{i}", open_timeout=5) as ws:
            await ws.send(f"m{i}")
            return await asyncio.wait_for(ws.recv(), 5)  # type: ignore[return-value]

    async def all_of_them() -> list[str]:
        return await asyncio.gather(*(one(i) for i in range(20)))

    assert asyncio.run(all_of_them()) == [f"echo:m{i}" for i in range(20)]


def test_upgrade_on_a_route_without_enable_websocket_is_not_switched(gateway_factory, ws_origin):
    gw = gateway_factory(ws_doc(ws_origin, websocket=False))

    async def attempt() -> None:
        async with ws_connect(f"ws://127.0.0.1:{gw.port}/ws/x", open_timeout=5):
            pass

    # the Upgrade header is hop-by-hop: the origin sees a plain GET and answers 426
    with pytest.raises(InvalidStatus) as e:
        asyncio.run(attempt())
    assert e.value.response.status_code == 426
    assert gw.get("/ws/plain")[0] == 426          # and the gateway keeps serving HTTP
