"""The stream proxy: raw TCP and UDP connections spliced to upstream nodes (docs/stream.md).
``StreamProxy`` (here) is a worker's; ``stream_session.py`` what TCP and UDP share,
``stream_tcp.py`` and ``stream_udp.py`` each side.

One ``TcpSession`` per client connection of a stream listener (``apisix.stream_proxy.tcp``):

1. **preread**: on a plain listener whose snapshot has ``sni`` routes, the first TLS record
   is read (not consumed: it goes to the upstream as it came) for the ClientHello's server
   name -- TLS passthrough; on a ``tls: true`` listener the handshake (certificates from the
   ``ssls`` objects) already gave the name.  Bounded: ``PREREAD_TIMEOUT`` and
   ``PREREAD_MAX`` bytes (nginx's ``preread_timeout`` / ``preread_buffer_size``).
2. **route**: the snapshot's ``StreamTable``; no route -- closed, as APISIX ("not hit any
   route").  The route's ``stream_preread`` plugin hooks run (they may ``peek``); a number
   returned ends the connection (APISIX: ``return 403``).
3. **connect**: the route's upstream runtime (the HTTP proxy's: same balancer, health
   state, passive reports); a failed or timed-out connect is reported and the next node
   tried, ``retries`` times at most (default: every node once) within ``retry_timeout``.
   ``scheme: tls``: TLS toward the node.
4. **splice**: bytes both ways with backpressure (a side whose write buffer is above 64 KiB
   pauses reading the other side), half-close (EOF from one side: shutdown of writing to the
   other), one idle bound: the upstream's ``timeout.read`` (else 10 min) between two reads
   or writes on either side (nginx's ``proxy_timeout``).  Byte counts for the log.
5. **log**: the route's ``stream_log`` hooks when both sides are closed.

UDP (``UdpListener``): a session per client address toward one node, replies sent back from
the listener's socket, expired after the same idle bound; at most ``MAX_UDP_SESSIONS`` per
worker (datagrams of a new client beyond it are dropped and counted in the log).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..observe.access_log import AccessLog
from ..pdk.stream import StreamContext
from .stream_tcp import TcpSession, client_hello_sni
from .stream_udp import UdpListener

if TYPE_CHECKING:
    from ..upstream.runtime import Runtimes
    from .stream_session import StreamSession

__all__ = ["StreamProxy", "TcpSession", "UdpListener", "client_hello_sni"]


class SnapshotSource(Protocol):
    """What the stream proxy reads of the worker: the snapshot holder's current snapshot
    (``compiled.stream``, ``upstreams``)."""

    @property
    def current(self) -> Any: ...


class StreamProxy:
    """A worker's stream proxy: the protocol factories of its stream listeners and the
    sessions alive (for draining)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, holder: SnapshotSource,
                 runtimes: Runtimes, access_log: str | None = None,
                 log_format: str = "") -> None:
        self.loop = loop
        self.holder = holder
        self.runtimes = runtimes
        #: ``nginx_config.stream.access_log``: a line per connection when it ends
        self.access_log: AccessLog[StreamContext] | None = AccessLog(
            loop, access_log, log_format, _stream_var) if access_log else None
        self.sessions: set[StreamSession] = set()
        self.udp_dropped = 0

    def tcp_factory(self, tls: bool) -> Callable[[], TcpSession]:
        return lambda: TcpSession(self, tls)

    def udp_factory(self) -> Callable[[], UdpListener]:
        return lambda: UdpListener(self)

    def abort_all(self) -> None:
        for s in list(self.sessions):
            s.close()
        if self.access_log is not None:
            self.access_log.close()


def _stream_var(name: str) -> Callable[[StreamContext], object]:
    """``$name`` of the stream access log format: the connection's variable."""
    return lambda c: c.var(name)
