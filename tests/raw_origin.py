"""A raw-socket HTTP/1.1 origin for the smuggling corpus and the live fuzz test.

It records exactly the bytes that arrive, parses them strictly (one Content-Length or
``chunked``, CRLF line ends, one Host, token field names) and answers every request it can
parse with 200 and ``seen <target>``.  Anything it cannot parse is recorded in ``bad`` and the
connection is dropped: a gateway must never send such bytes upstream.
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass, field

__all__ = ["RawOrigin", "Seen", "parse_one"]

_REQ_LINE = re.compile(rb"([A-Z]+) (\S+) HTTP/1\.1")
_FIELD = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+): ?([\x21-\x7e\x80-\xff]"
                    rb"(?:[\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?")


@dataclass
class Seen:
    """One request as it arrived at the origin."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        vals = [v for n, v in self.headers if n.lower() == name]
        return vals[0] if vals else None

    def names(self) -> set[str]:
        return {n.lower() for n, _ in self.headers}


class _Bad(Exception):
    pass


def _fields(block: bytes) -> list[tuple[str, str]]:
    out = []
    for line in block.split(b"\r\n") if block else []:
        m = _FIELD.fullmatch(line)
        if m is None:
            raise _Bad(f"bad field line {line!r}")
        out.append((m.group(1).decode(), (m.group(2) or b"").decode("latin-1")))
    return out


def parse_one(buf: bytes) -> tuple[Seen | None, int]:
    """The first complete request in ``buf`` and its length; (None, 0) when incomplete.
    Raises _Bad for anything a strict HTTP/1.1 server would refuse."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > 65536:
            raise _Bad("head too large")
        return None, 0
    head = buf[:end]
    if b"\n" in head.replace(b"\r\n", b"") or b"\r" in head.replace(b"\r\n", b""):
        raise _Bad("bare CR or LF in the head")
    line, _, block = head.partition(b"\r\n")
    m = _REQ_LINE.fullmatch(line)
    if m is None:
        raise _Bad(f"bad request line {line!r}")
    headers = _fields(block)
    names = [n.lower() for n, _ in headers]
    cl = [v for n, v in headers if n.lower() == "content-length"]
    te = [v for n, v in headers if n.lower() == "transfer-encoding"]
    if names.count("host") != 1:
        raise _Bad("not exactly one Host")
    if cl and te or len(cl) > 1 or len(te) > 1:
        raise _Bad("ambiguous framing")
    pos = end + 4
    trailers: list[tuple[str, str]] = []
    if te:
        if te[0] != "chunked":
            raise _Bad(f"transfer coding {te[0]!r}")
        parts = []
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None, 0
            size_s = buf[pos:eol]
            if not re.fullmatch(rb"[0-9a-f]{1,16}", size_s):
                raise _Bad(f"chunk size {size_s!r}")
            size = int(size_s, 16)
            pos = eol + 2
            if size == 0:
                tend = buf.find(b"\r\n\r\n", pos - 2)
                if tend < 0:
                    return None, 0
                trailers = _fields(buf[pos:tend])
                pos = tend + 4
                break
            if len(buf) < pos + size + 2:
                return None, 0
            if buf[pos + size:pos + size + 2] != b"\r\n":
                raise _Bad("chunk data not followed by CRLF")
            parts.append(buf[pos:pos + size])
            pos += size + 2
        body = b"".join(parts)
    elif cl:
        if not re.fullmatch(r"[0-9]+", cl[0]):
            raise _Bad(f"content-length {cl[0]!r}")
        n = int(cl[0])
        if len(buf) < pos + n:
            return None, 0
        body = buf[pos:pos + n]
        pos += n
    else:
        body = b""
    return Seen(m.group(1).decode(), m.group(2).decode("latin-1"), headers, body, buf[:pos],
                trailers), pos


class RawOrigin:
    """A threaded TCP origin: records every request exactly as it arrives (and any byte
    sequence it cannot parse strictly, in ``bad``), answers each with 200."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.seen: list[Seen] = []
        self.bad: list[tuple[str, bytes]] = []
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c: socket.socket) -> None:
        buf = b""
        with c:
            while True:
                try:
                    data = c.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                while buf:
                    try:
                        seen, n = parse_one(buf)
                    except _Bad as e:
                        with self.lock:
                            self.bad.append((str(e), buf))
                        return
                    if seen is None:
                        break
                    buf = buf[n:]
                    with self.lock:
                        self.seen.append(seen)
                    body = b"seen " + seen.target.encode("latin-1")
                    try:
                        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                    except OSError:
                        return

    def close(self) -> None:
        self.stopping = True
        self.sock.close()
