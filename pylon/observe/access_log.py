"""Access log: one line per request, nginx-style ``$variable`` format, written off the hot path.

At the end of a request its line is rendered and queued (a string: the finished exchange is
not kept alive, so its memory is reused while still warm).  A timer writes the queued lines
in one batch (every ``FLUSH_INTERVAL`` or ``FLUSH_LINES`` lines), with a single ``write`` on
an ``O_APPEND`` file so lines from several workers never interleave.  The queue is bounded:
beyond ``MAX_QUEUED`` lines are dropped and counted, never blocking a request.

The format is compiled once per configuration into one generated function of (exchange, bytes
sent): each ``$name`` is resolved then to the function that reads it (the caller's ``resolve``,
the proxy's variable table, compiled with the core), the log's own fields are plain attribute
reads, every ``$http_*`` field is found in one pass over the request headers, and
``$time_local`` / ``$time_iso8601`` are formatted once per second.  A line is what a
``var(name)`` per field gives, ``-`` for a field without a value.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Callable
from typing import Final, Generic, Protocol, TypeVar

from ..wire.head import header_is

log = logging.getLogger("pylon.access")

FLUSH_INTERVAL = 0.2
FLUSH_LINES = 1024
MAX_QUEUED = 65536
_VAR = re.compile(r"\$([a-zA-Z_][a-zA-Z0-9_]*)|\$\{([a-zA-Z_][a-zA-Z0-9_]*)\}")


class Finished(Protocol):
    """What the log reads of a finished exchange itself; every other ``$name`` goes through
    the getter ``resolve`` gives."""

    consumer_name: str | None
    #: why the request ended as it did (``$pylon_detail``)
    detail: str

    def wall_start(self) -> float: ...


X = TypeVar("X", bound=Finished)
Render = Callable[[X, int], str]
Getter = Callable[[X], object]
#: the request headers of a finished exchange, for the one pass of the ``$http_*`` fields
Headers = Callable[[X], list[tuple[bytes, bytes]]]


class _PerSecond:
    """``strftime(fmt, localtime(t))``, formatted again only when the second changes."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.sec = -1
        self.text = ""

    def at(self, t: float) -> str:
        sec = int(t)                     # localtime() floors the same way (t > 0)
        if sec != self.sec:
            self.text = time.strftime(self.fmt, time.localtime(sec))
            self.sec = sec
        return self.text


# what a field of a compiled format is
_TEXT: Final = 0        # literal text
_GET: Final = 1         # a getter's value, "-" when None or ""
_BYTES: Final = 2       # the bytes written to the client
_HEADER: Final = 3      # a request header found in the one pass ($http_*)
_CLOCK: Final = 4       # the request's start time, formatted once per second
_USER: Final = 5        # the consumer's name ($remote_user)
_DETAIL: Final = 6      # why the request ended ($pylon_detail)

_OWN: Final[dict[str, int]] = {
    "body_bytes_sent": _BYTES,
    "bytes_sent": _BYTES,
    "remote_user": _USER,
    "pylon_detail": _DETAIL,
}
_TIMES: Final[dict[str, str]] = {
    "time_local": "%d/%b/%Y:%H:%M:%S %z",
    "time_iso8601": "%Y-%m-%dT%H:%M:%S%z",
}


class _Field(Generic[X]):
    def __init__(self, kind: int, text: str = "", get: Getter[X] | None = None,
                 slot: int = 0, clock: _PerSecond | None = None) -> None:
        self.kind = kind
        self.text = text
        self.get = get
        #: _HEADER: the index of the header's value among those of the one pass
        self.slot = slot
        self.clock = clock


class Format(Generic[X]):
    """An nginx-style format compiled once per configuration: a list of fields rendered by
    one loop (compiled with the core), every ``$name`` already resolved to its getter."""

    def __init__(self, fmt: str, resolve: Callable[[str], Getter[X]],
                 headers: Headers[X] | None = None) -> None:
        self.fields: list[_Field[X]] = []
        #: without it, a ``$http_*`` field is read by its getter, like any other
        self.headers_of = headers
        #: the header names ``$http_*`` fields want (lower case, "-" for "_"), one slot each
        self.heads: list[bytes] = []
        self.timed = False
        pos = 0
        for m in _VAR.finditer(fmt):
            if m.start() > pos:
                self.fields.append(_Field(_TEXT, fmt[pos:m.start()]))
            self._add(m.group(1) or m.group(2), resolve)
            pos = m.end()
        if pos < len(fmt):
            self.fields.append(_Field(_TEXT, fmt[pos:]))

    def _add(self, name: str, resolve: Callable[[str], Getter[X]]) -> None:
        kind = _OWN.get(name)
        if kind is not None:
            self.fields.append(_Field(kind))
        elif name.startswith("http_") and self.headers_of is not None:
            want = name[5:].replace("_", "-").encode("latin-1")
            if want not in self.heads:
                self.heads.append(want)
            self.fields.append(_Field(_HEADER, slot=self.heads.index(want)))
        elif name in _TIMES:
            self.timed = True
            self.fields.append(_Field(_CLOCK, clock=_PerSecond(_TIMES[name])))
        else:
            self.fields.append(_Field(_GET, get=resolve(name)))

    def render(self, x: X, b: int) -> str:
        """One line of ``x``, which wrote ``b`` bytes to its client."""
        heads = self.heads
        found: list[bytes | None] = []
        headers_of = self.headers_of
        if heads and headers_of is not None:
            # one pass over the request headers for every $http_ field, the first of each
            found = [None] * len(heads)
            for hn, hv in headers_of(x):
                n = len(hn)
                for i in range(len(heads)):
                    if found[i] is None and len(heads[i]) == n and header_is(hn, heads[i]):
                        found[i] = hv
        ws = x.wall_start() if self.timed else 0.0
        out: list[str] = []
        for f in self.fields:
            k = f.kind
            if k == _TEXT:
                out.append(f.text)
            elif k == _GET:
                get = f.get
                assert get is not None
                out.append(_dash(get(x)))
            elif k == _HEADER:
                v = found[f.slot]
                out.append(v.decode("latin-1") if v else "-")
            elif k == _BYTES:
                out.append(str(b))
            elif k == _CLOCK:
                clock = f.clock
                assert clock is not None
                out.append(clock.at(ws))
            elif k == _USER:
                out.append(x.consumer_name or "-")
            else:
                out.append(x.detail or "-")
        return "".join(out)


def _dash(v: object) -> str:
    """A field's text: "-" for no value; every variable is a str or None but ``post_arg.*``,
    a JSON value as it is."""
    if v is None or v == "":
        return "-"
    return v if isinstance(v, str) else str(v)


def compile_format(fmt: str, resolve: Callable[[str], Getter[X]],
                   headers: Headers[X] | None = None) -> Render[X]:
    """Compile an nginx-style format once into a function of (exchange, bytes_sent).

    ``resolve(name)`` gives the function reading ``$name`` of an exchange (None or "" when
    it has no value); it is called here, once per field, never per line.  ``headers(x)``,
    when given, gives the request headers every ``$http_*`` field is found in, in one pass."""
    return Format(fmt, resolve, headers).render


class AccessLog(Generic[X]):
    def __init__(self, loop: asyncio.AbstractEventLoop, path: str, fmt: str,
                 resolve: Callable[[str], Getter[X]], headers: Headers[X] | None = None
                 ) -> None:
        self.loop = loop
        self.path = path
        self.render: Render[X] = compile_format(fmt, resolve, headers)
        d = os.path.dirname(path)
        if d:
            os.makedirs(d, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.queue: list[str] = []
        self.dropped = 0
        self._timer: asyncio.TimerHandle | None = None

    def add(self, exchange: X, bytes_out: int) -> None:
        q = self.queue
        if len(q) >= MAX_QUEUED:
            self.dropped += 1
            return
        try:
            q.append(self.render(exchange, bytes_out))
        except Exception:  # a bad variable must not lose the line's neighbours
            log.exception("access log format failed")
            return
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
        data = ("\n".join(q) + "\n").encode("utf-8", "replace")
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
