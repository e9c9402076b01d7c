"""request-id: give every request an id, upstream and in the response (APISIX).

``header_name`` (``X-Request-Id``), ``include_in_response`` (true), ``algorithm``: ``uuid``
(default, random v4), ``uuidv7`` (RFC 9562 version 7: 48 bits of Unix milliseconds, then a
12-bit counter that keeps the ids one worker makes in the same millisecond in order, then 62
random bits -- ids sort by creation time), ``nanoid`` (21 URL-safe characters), ``range_id``
(``range_id.length`` characters, default 16, drawn from ``range_id.char_set``) or ``ksuid``.

An id the client sent in the header is kept; otherwise one is made and set on the request
sent upstream.  The response gets the header unless the upstream already answered with it.
The id is also in ``ctx.store["request_id"]`` (and, as APISIX keeps it,
``ctx.store["request-id-<header_name>"]``) for log plugins; ``$http_x_request_id`` reads it
too.  Runs early (rewrite, priority 12015), so replies from later plugins carry it.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from pylon import pdk

name = "request-id"
priority = 12015
version = 0.1

#: APISIX's default, with its typo (no J, a second G) kept so ids look the same
DEFAULT_CHAR_SET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIGKLMNOPQRSTUVWXYZ0123456789"

schema = {
    "type": "object",
    "properties": {
        "header_name": {"type": "string", "default": "X-Request-Id"},
        "include_in_response": {"type": "boolean", "default": True},
        "algorithm": {"type": "string", "enum": ["uuid", "uuidv7", "nanoid", "range_id",
                                                       "ksuid"],
                      "default": "uuid"},
        "range_id": {
            "type": "object",
            "properties": {
                "length": {"type": "integer", "minimum": 6, "default": 16},
                "char_set": {"type": "string", "minLength": 6, "default": DEFAULT_CHAR_SET},
            },
            "default": {"length": 16, "char_set": DEFAULT_CHAR_SET},
        },
    },
}

_NANOID_ALPHABET = "_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_KSUID_EPOCH = 1_400_000_000


def _uuid() -> str:
    """A version-4 UUID string (what ``str(uuid.uuid4())`` gives, at less than half the cost)."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class _UUIDv7:
    """RFC 9562 UUIDv7 with a counter in ``rand_a`` (section 6.2, method 1): strictly
    increasing in one process, also when several ids fall in one millisecond or the clock
    steps back (the last millisecond is kept until the clock passes it)."""

    __slots__ = ("ms", "seq")

    def __init__(self) -> None:
        self.ms = 0
        self.seq = 0

    def __call__(self) -> str:
        ms = time.time_ns() // 1_000_000
        rnd = os.urandom(10)
        if ms > self.ms:
            self.ms = ms
            self.seq = rnd[0] << 3 | rnd[1] >> 5      # a random start below 2048
        else:
            self.seq += 1
            if self.seq > 0xFFF:                     # counter spent: borrow the next ms
                self.ms += 1
                self.seq = 0
        b = self.ms.to_bytes(6, "big") + (0x7000 | self.seq).to_bytes(2, "big") + \
            bytes([0x80 | rnd[2] & 0x3F]) + rnd[3:]
        h = b.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_uuidv7 = _UUIDv7()


def _nanoid() -> str:
    # 64 symbols: the low 6 bits of a random byte pick one without bias
    a = _NANOID_ALPHABET
    return "".join([a[b & 63] for b in os.urandom(21)])


def _ksuid() -> str:
    ts = max(0, int(time.time()) - _KSUID_EPOCH) & 0xFFFFFFFF
    n = int.from_bytes(ts.to_bytes(4, "big") + os.urandom(16), "big")
    out = []
    while n:
        n, r = divmod(n, 62)
        out.append(_BASE62[r])
    return "".join(reversed(out)).rjust(27, "0")


def _range_id(char_set: str, length: int) -> Any:
    choices = random.choices

    def gen() -> str:
        return "".join(choices(char_set, k=length))
    return gen


class Prepared:
    __slots__ = ("gen", "header", "lname", "response", "store_key")

    def __init__(self, conf: dict[str, Any]) -> None:
        self.header = conf["header_name"]
        self.lname = self.header.lower().encode("latin-1")
        self.response = conf["include_in_response"]
        self.store_key = "request-id-" + self.header
        algo = conf["algorithm"]
        if algo == "nanoid":
            self.gen = _nanoid
        elif algo == "ksuid":
            self.gen = _ksuid
        elif algo == "uuidv7":
            self.gen = _uuidv7
        elif algo == "range_id":
            r = conf.get("range_id") or {}
            self.gen = _range_id(r.get("char_set") or DEFAULT_CHAR_SET,
                                 r.get("length") or 16)
        else:
            self.gen = _uuid


def prepare(conf: dict[str, Any]) -> Prepared:
    return Prepared(conf)


def rewrite(conf: Prepared, ctx: pdk.Context) -> None:
    raw = ctx.head.header(conf.lname)
    if raw:
        rid = raw.decode("latin-1")
    else:
        rid = conf.gen()
        ctx.set_header(conf.header, rid)
    store = ctx.store
    store["request_id"] = rid
    store[conf.store_key] = rid


def header_filter(conf: Prepared, ctx: pdk.Context) -> None:
    if not conf.response:
        return
    rid = ctx.store.get(conf.store_key)
    if rid is not None and not ctx.resp_header(conf.header):
        ctx.set_resp_header(conf.header, rid)
