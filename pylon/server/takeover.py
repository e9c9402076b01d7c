"""A new master taking over from one that died (``docs/operations.md``).

When its master dies (kill -9, OOM killer, a crash), a worker keeps serving the last
configuration it has and waits, as an *orphan*, for a new master of the same node: it listens
on an abstract Unix socket named after the node (its pid file) and its own pid.  A master
that starts on that node (``pylon start`` again, as systemd's ``Restart=always`` does):

1. finds the orphans: the node's names among the listening sockets in ``/proc/net/unix``;
   connecting is the proof of life, so a recycled pid can never be mistaken for an orphan;
2. gets from each, over that connection, its listening sockets (``SCM_RIGHTS``) and its
   shared-memory directory; the new workers accept from the very same sockets, so nothing
   queued on them is lost, and the node's counters carry on;
3. once its own workers serve, tells each orphan ``drain``: the orphan stops accepting,
   finishes what is in flight (``worker_shutdown_timeout``) and exits; its exit closes the
   connection, which is how the master sees it go.

Both ends check that the peer runs as the same user (``SO_PEERCRED``; root may also ask an
orphan): an abstract socket has no file permissions, and the listening sockets it hands out
carry the node's traffic.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
import struct
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("pylon.master")

_PREFIX = "pylon-orphan-"
#: an orphan waits this long for a new master that connected to say ``drain``
HANDOVER_WAIT = 300.0
_CRED = struct.Struct("3i")


def node_tag(pid_file: str) -> str:
    """The node's name in orphan socket names: a hash of its pid file's path."""
    return hashlib.blake2b(os.path.abspath(pid_file).encode(), digest_size=8).hexdigest()


def orphan_name(pid_file: str, pid: int) -> str:
    return f"\0{_PREFIX}{node_tag(pid_file)}-{pid}"


def peer_uid(sock: socket.socket) -> int:
    return _CRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))[1]


@dataclass(eq=False)
class Orphan:
    """A live orphaned worker found by a new master, and the connection to it."""
    pid: int
    slot: int
    rev: int
    shm: str
    conn: socket.socket
    socks: list[socket.socket] = field(default_factory=list)

    def drain(self) -> bool:
        """Tell it to drain and exit; False when it is gone already."""
        try:
            self.conn.sendall(b"drain\n")
            return True
        except OSError:
            return False

    async def gone(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) for it to exit: its end of the connection
        closes."""
        loop = asyncio.get_running_loop()
        self.conn.setblocking(False)
        try:
            while await asyncio.wait_for(loop.sock_recv(self.conn, 64), timeout):
                pass
        except TimeoutError:
            return False
        except OSError:
            pass
        finally:
            self.conn.close()
        return True


def _names(tag: str) -> list[str]:
    want = f"@{_PREFIX}{tag}-"
    try:
        with open("/proc/net/unix") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return []
    names = set()
    for line in lines:
        parts = line.split()
        if len(parts) >= 8 and parts[7].startswith(want):
            names.add("\0" + parts[7][1:])
    return sorted(names)


def find_orphans(pid_file: str, timeout: float = 2.0,
                 skip: Collection[int] = ()) -> list[Orphan]:
    """The orphaned workers of this node (but those of pids in ``skip``), each having
    handed over its listening sockets."""
    found: list[Orphan] = []
    for name in _names(node_tag(pid_file)):
        if name.rsplit("-", 1)[1] in {str(p) for p in skip}:
            continue
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        fds: list[int] = []
        try:
            s.connect(name)
            if peer_uid(s) != os.getuid():
                raise OSError("it runs as another user")
            msg, fds, _, _ = socket.recv_fds(s, 65536, 64)
            for fd in fds:               # passed to the one worker that serves it only
                os.set_inheritable(fd, False)
            hello = json.loads(msg)
            orphan = Orphan(int(hello["pid"]), int(hello["slot"]), int(hello["rev"]),
                            str(hello["shm"]), s, [socket.socket(fileno=fd) for fd in fds])
        except (OSError, ValueError, KeyError, TypeError) as e:
            if not isinstance(e, ConnectionRefusedError):     # gone meanwhile: not news
                log.warning("orphaned worker %s not taken over: %s", name[1:], e)
            s.close()
            for fd in fds:
                os.close(fd)
            continue
        log.warning("taking over orphaned worker %d (pid %d, config revision %d)",
                    orphan.slot, orphan.pid, orphan.rev)
        found.append(orphan)
    return found


#: the connection of the master that told this orphan to drain: open until the process exits
_drained_by: list[socket.socket] = []


async def await_new_master(pid_file: str, hello: Callable[[], dict[str, Any]],
                           fds: list[int], drain: Callable[[], None]) -> None:
    """An orphan's side: hand ``fds`` and ``hello()`` to each new master that asks, and
    call ``drain`` when one of them says so."""
    loop = asyncio.get_running_loop()
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        srv.bind(orphan_name(pid_file, os.getpid()))
        srv.listen(8)
        srv.setblocking(False)
        while True:
            conn, _ = await loop.sock_accept(srv)
            try:
                uid = peer_uid(conn)
                if uid not in (os.getuid(), 0):
                    raise OSError(f"refused a takeover by uid {uid}")
                conn.setblocking(True)
                conn.settimeout(5.0)
                socket.send_fds(conn, [json.dumps(hello()).encode()], fds)
                conn.setblocking(False)
                said = await asyncio.wait_for(loop.sock_recv(conn, 64), HANDOVER_WAIT)
            except (OSError, TimeoutError) as e:
                log.warning("takeover by a new master failed: %s; still serving", e)
                conn.close()
                continue
            if said.startswith(b"drain"):
                _drained_by.append(conn)
                log.warning("a new master took over; draining")
                drain()
                return
            conn.close()
            log.warning("a new master connected but did not take over; still serving")
    except OSError as e:
        log.error("cannot wait for a new master: %s; serving until SIGTERM", e)
    finally:
        srv.close()
