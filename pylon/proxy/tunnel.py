"""Raw bytes both ways after a protocol switch (WebSocket, HTTP/1.1 ``101``).

Once the upstream answers ``101 Switching Protocols`` to an upgrade request on a route with
``enable_websocket``, neither side speaks HTTP any more: the client and the upstream
connections are spliced.  Flow control crosses over (a full write buffer on one side pauses
reading on the other) and the tunnel closes when either side closes or when nothing moves in
either direction for the route's read timeout (nginx applies proxy_read_timeout the same way).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..timer import Deadline


class Tunnel:
    __slots__ = ("client", "upstream", "loop", "idle", "deadline", "closed", "on_close",
                 "bytes_up", "bytes_down")

    def __init__(self, loop: asyncio.AbstractEventLoop, client: asyncio.Transport,
                 upstream: asyncio.Transport, idle_timeout: float,
                 on_close: Callable[[Tunnel], None]) -> None:
        self.loop = loop
        self.client = client
        self.upstream = upstream
        self.idle = idle_timeout
        self.closed = False
        self.on_close = on_close
        self.bytes_up = 0
        self.bytes_down = 0
        self.deadline = Deadline(loop, self.close)
        self.deadline.set(loop.time() + idle_timeout)

    def from_client(self, data: bytes) -> None:
        if not self.closed:
            self.bytes_up += len(data)
            self.deadline.due = self.loop.time() + self.idle
            self.upstream.write(data)

    def from_upstream(self, data: bytes) -> None:
        if not self.closed:
            self.bytes_down += len(data)
            self.deadline.due = self.loop.time() + self.idle
            self.client.write(data)

    # a side's write buffer is full: stop reading the other side until it drains
    def client_writable(self, writable: bool) -> None:
        if not self.closed and not self.upstream.is_closing():
            (self.upstream.resume_reading if writable else self.upstream.pause_reading)()

    def upstream_writable(self, writable: bool) -> None:
        if not self.closed and not self.client.is_closing():
            (self.client.resume_reading if writable else self.client.pause_reading)()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.deadline.cancel()
        for t in (self.client, self.upstream):
            if not t.is_closing():
                t.close()
        self.on_close(self)
