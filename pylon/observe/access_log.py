"""Access log: one line per request, nginx-style ``$variable`` format, written off the hot path.

At the end of a request only a reference to the finished exchange is queued.  A timer formats
and writes the queued lines in one batch (every ``FLUSH_INTERVAL`` or ``FLUSH_LINES`` lines),
with a single ``write`` on an ``O_APPEND`` file so lines from several workers never interleave.
The queue is bounded: beyond ``MAX_QUEUED`` lines are dropped and counted, never blocking a
request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Callable
from typing import Any

log = logging.getLogger("pylon.access")

FLUSH_INTERVAL = 0.2
FLUSH_LINES = 1024
MAX_QUEUED = 65536
_VAR = re.compile(r"\$([a-zA-Z_][a-zA-Z0-9_]*)|\$\{([a-zA-Z_][a-zA-Z0-9_]*)\}")


def _dash(v: Any) -> str:
    return "-" if v is None or v == "" else str(v)


_Getter = Callable[[Any, int], str]
#: what only the access log knows (the bytes written, counted before the connection reset
#: them) or spells its own way; every other ``$name`` is ``exchange.var(name)``
_FIELDS: dict[str, _Getter] = {
    "remote_user": lambda x, b: _dash(x.consumer_name),
    "body_bytes_sent": lambda x, b: str(b),
    "bytes_sent": lambda x, b: str(b),
    "pylon_detail": lambda x, b: _dash(x.detail),
}


def compile_format(fmt: str) -> Callable[[Any, int], str]:
    """Compile an nginx-style format once into a function of (exchange, bytes_sent)."""
    pieces: list[str | _Getter] = []
    pos = 0
    for m in _VAR.finditer(fmt):
        if m.start() > pos:
            pieces.append(fmt[pos:m.start()])
        name = m.group(1) or m.group(2)
        getter = _FIELDS.get(name)
        if getter is None:
            getter = (lambda n: lambda x, b: _dash(x.var(n)))(name)
        pieces.append(getter)
        pos = m.end()
    if pos < len(fmt):
        pieces.append(fmt[pos:])

    def render(x: Any, b: int) -> str:
        return "".join(p if isinstance(p, str) else p(x, b) for p in pieces)

    return render


class AccessLog:
    def __init__(self, loop: asyncio.AbstractEventLoop, path: str, fmt: str) -> None:
        self.loop = loop
        self.path = path
        self.render = compile_format(fmt)
        d = os.path.dirname(path)
        if d:
            os.makedirs(d, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.queue: list[tuple[Any, int]] = []
        self.dropped = 0
        self._timer: asyncio.TimerHandle | None = None

    def add(self, exchange: Any, bytes_out: int) -> None:
        q = self.queue
        if len(q) >= MAX_QUEUED:
            self.dropped += 1
            return
        q.append((exchange, bytes_out))
        if self._timer is None:
            self._timer = self.loop.call_later(FLUSH_INTERVAL, self.flush)
        elif len(q) >= FLUSH_LINES:
            self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        q, self.queue = self.queue, []
        if not q:
            return
        lines = []
        render = self.render
        for x, b in q:
            try:
                lines.append(render(x, b))
            except Exception:  # a bad variable must not lose the batch
                log.exception("access log format failed")
        data = ("\n".join(lines) + "\n").encode("utf-8", "replace")
        try:
            os.write(self.fd, data)
        except OSError as e:
            self.dropped += len(q)
            log.warning("access log write failed: %s", e)

    def reopen(self) -> None:
        self.flush()
        os.close(self.fd)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def close(self) -> None:
        self.flush()
        os.close(self.fd)
