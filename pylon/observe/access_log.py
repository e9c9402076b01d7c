"""Access log: one line per request, nginx-style ``$variable`` format, written off the hot path.

At the end of a request only a reference to the finished exchange is queued.  A timer formats
and writes the queued lines in one batch (every ``FLUSH_INTERVAL`` or ``FLUSH_LINES`` lines),
with a single ``write`` on an ``O_APPEND`` file so lines from several workers never interleave.
The queue is bounded: beyond ``MAX_QUEUED`` lines are dropped and counted, never blocking a
request.

The format is compiled once per configuration into one generated function of (exchange, bytes
sent): each ``$name`` is resolved then to the function that reads it (the caller's ``resolve``,
the proxy's variable table), the log's own fields are plain attribute reads, and
``$time_local`` / ``$time_iso8601`` are formatted once per second.  A line is what a
``var(name)`` per field gives, ``-`` for a field without a value.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from typing import Generic, Protocol, TypeVar, cast

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


class _PerSecond:
    """``strftime(fmt, localtime(t))``, formatted again only when the second changes."""

    __slots__ = ("fmt", "sec", "text")

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.sec = -1
        self.text = ""

    def __call__(self, t: float) -> str:
        sec = int(t)                     # localtime() floors the same way (t > 0)
        if sec != self.sec:
            self.text = time.strftime(self.fmt, time.localtime(sec))
            self.sec = sec
        return self.text


def _dash(v: object) -> str:
    return "-" if v is None or v == "" else str(v)


#: fields the log spells itself (a source expression of ``x``, the exchange, and ``b``, the
#: bytes written, counted before the connection reset them), never empty
_OWN: dict[str, str] = {
    "body_bytes_sent": "str(b)",
    "bytes_sent": "str(b)",
}
#: fields read straight from the exchange: str or None, "-" when empty
_ATTRS: dict[str, str] = {
    "remote_user": "x.consumer_name",
    "pylon_detail": "x.detail",
}
_TIMES: dict[str, str] = {
    "time_local": "%d/%b/%Y:%H:%M:%S %z",
    "time_iso8601": "%Y-%m-%dT%H:%M:%S%z",
}


def compile_format(fmt: str, resolve: Callable[[str], Callable[[X], object]],
                   inline: Mapping[str, str] | None = None) -> Render[X]:
    """Compile an nginx-style format once into a function of (exchange, bytes_sent).

    ``resolve(name)`` gives the function reading ``$name`` of an exchange (None or "" when
    it has no value); it is called here, once per field, never per line.  ``inline`` maps
    some names to a Python expression of ``x`` (the exchange) giving the same str or None,
    written into the function in place of a call."""
    inline = inline or {}
    parts: list[str] = []
    env: dict[str, object] = {"_dash": _dash}
    clocks: dict[str, str] = {}
    #: ``$http_<name>``: the header name wanted -> the local variable its value goes to
    heads: dict[bytes, str] = {}
    pos = 0

    def bind(value: object) -> str:
        ref = f"_{len(env)}"
        env[ref] = value
        return ref

    for m in _VAR.finditer(fmt):
        if m.start() > pos:
            parts.append(repr(fmt[pos:m.start()]))
        name = m.group(1) or m.group(2)
        if name in _OWN:
            parts.append(_OWN[name])
        elif name in _ATTRS or name in inline:
            parts.append(f"({_ATTRS.get(name) or inline[name]} or '-')")
        elif name.startswith("http_"):
            want = name[5:].replace("_", "-").encode("latin-1")
            h = heads.setdefault(want, f"h{len(heads)}")
            value = f"{h}.decode('latin-1')"
            if b"-" in want:   # not there as such: "_" for "-" (resolve's getter knows)
                value = f"({value} if {h} is not None else {bind(resolve(name))}(x))"
            parts.append(f"({value} if {h} else '-')" if b"-" not in want else
                         f"({value} or '-')")
        elif name in _TIMES:
            clocks[name] = bind(_PerSecond(_TIMES[name]))
            parts.append(f"{clocks[name]}(ws)")
        else:
            ref = bind(resolve(name))
            # every variable is a str or None but ``post_arg.*``, a JSON value as it is
            parts.append(f"_dash({ref}(x))" if name.startswith("post_arg") else
                         f"({ref}(x) or '-')")
        pos = m.end()
    if pos < len(fmt):
        parts.append(repr(fmt[pos:]))
    body = "''.join((" + "".join(p + ", " for p in parts) + "))" if parts else "''"
    pre = "    ws = x.wall_start()\n" if clocks else ""
    if heads:
        # one pass over the request headers for every $http_ field, the first of each name
        pre += "    " + " = ".join(heads.values()) + " = None\n"
        pre += "    for hn, hv in x.head.headers:\n        n = len(hn)\n"
        for want, h in heads.items():
            pre += (f"        if n == {len(want)} and {h} is None and hn.lower() == {want!r}:"
                    f"\n            {h} = hv\n")
    # what the function reads, bound as defaults: local variables, not global look-ups
    args = "".join(f", {k}={k}" for k in env)
    src = f"def render(x, b{args}):\n{pre}    return {body}\n"
    exec(compile(src, f"<access_log_format {fmt!r}>", "exec"), env)   # noqa: S102 - our source
    return cast("Render[X]", env["render"])


class AccessLog(Generic[X]):
    def __init__(self, loop: asyncio.AbstractEventLoop, path: str, fmt: str,
                 resolve: Callable[[str], Callable[[X], object]],
                 inline: Mapping[str, str] | None = None) -> None:
        self.loop = loop
        self.path = path
        self.render: Render[X] = compile_format(fmt, resolve, inline)
        d = os.path.dirname(path)
        if d:
            os.makedirs(d, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.queue: list[tuple[X, int]] = []
        self.dropped = 0
        self._timer: asyncio.TimerHandle | None = None

    def add(self, exchange: X, bytes_out: int) -> None:
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
