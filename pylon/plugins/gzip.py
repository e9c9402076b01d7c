"""gzip: compress responses for clients that accept gzip (APISIX ``gzip``, priority 995).

APISIX's plugin checks the response's Content-Type against ``types`` (``"*"``: any; the part
before ``;`` compared exactly), Content-Length against ``min_length`` (no Content-Length: no
check) and the request's HTTP version against ``http_version``, adds ``Vary:
Accept-Encoding`` when ``vary``, and hands the rest to nginx's gzip filter, which compresses
only a 200, 403 or 404 answer to a request whose Accept-Encoding allows ``gzip`` (nginx's
parser: ``q=0`` refuses), that has no Via header (``gzip_proxied off``), is not HEAD, and
whose response is not encoded already.  The compressed response has ``Content-Encoding:
gzip``, no Content-Length or Accept-Ranges, and a weak ETag.  All of that is done here.

The compression streams: every body chunk is compressed and sync-flushed as it passes (a
streamed response stays streamed; nothing is buffered), after every other plugin's body
filter, as nginx's filter runs after the Lua ones (``ctx.encode_body``).  ``buffers`` is
accepted for compatibility and unused: there are no output buffers to size.

The checks both compression plugins share live here; ``brotli`` imports them.
"""

from __future__ import annotations

import zlib
from functools import partial
from typing import Any

from pylon import pdk
from pylon.pdk.encoding import COMMON_PROPERTIES, Compression, Encode, no_body, streaming

name = "gzip"
priority = 995
version = 0.1

schema = {
    "type": "object",
    "properties": {
        **COMMON_PROPERTIES,
        "comp_level": {"type": "integer", "minimum": 1, "maximum": 9, "default": 1},
        "buffers": {
            "type": "object",
            "properties": {
                "number": {"type": "integer", "minimum": 1, "default": 32},
                "size": {"type": "integer", "minimum": 1, "default": 4096},
            },
            "default": {"number": 32, "size": 4096},
        },
    },
}

def _gzip_encoder(level: int) -> Encode:
    c = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return streaming(c.compress, partial(c.flush, zlib.Z_SYNC_FLUSH), c.flush)


def _quantity_nonzero(s: str) -> bool:
    """nginx's ``ngx_http_gzip_quantity(...) != 0`` for the text after ``q=``."""
    if not s or s[0] not in "01":
        return False
    q = (s[0] == "1") * 100
    if len(s) == 1 or s[1] in ", ":
        return q > 0
    if s[1] != ".":
        return False
    n = 0
    for c in s[2:]:
        if c in ", ":
            break
        if not "0" <= c <= "9":
            return False
        q += ord(c) - 48
        n += 1
    return 0 < q <= 100 and n <= 3


def accepts_gzip(ae: str | None) -> bool:
    """nginx's ``ngx_http_gzip_accept_encoding``: a ``gzip`` token (any case) not refused by
    ``q=0``.  ``*`` does not count, as in nginx."""
    if ae is None:
        return False
    low = ae.lower()
    start = 0
    while True:
        p = low.find("gzip", start)
        if p < 0:
            return False
        if p == 0 or low[p - 1] in ", ":
            break
        start = p + 4
    i, end = p + 4, len(low)
    while i < end:
        c = low[i]
        i += 1
        if c == ",":
            return True
        if c == ";":
            break
        if c != " ":
            return False
    else:
        return True
    while i < end:                       # after ';': spaces, then q=
        c = low[i]
        i += 1
        if c == "q":
            break
        if c != " ":
            return False
    else:
        return True
    if i + 2 > end or low[i] != "=":
        return False
    return _quantity_nonzero(low[i + 1:])


def _weak_etag(ctx: pdk.Context) -> None:
    """nginx's ``ngx_http_weak_etag``: a strong ETag becomes weak; a malformed one goes."""
    etag = ctx.resp_header("ETag")
    if etag is None or (len(etag) > 2 and etag.startswith("W/")):
        return
    ctx.set_resp_header("ETag", "W/" + etag if etag.startswith('"') else None)


def _start(conf: Compression, ctx: pdk.Context) -> Encode | None:
    """nginx's gzip filter, once every header filter has run."""
    if ctx.status not in (200, 403, 404) or ctx.resp_header("Content-Encoding") or \
            no_body(ctx) or ctx.header("Via") is not None or \
            not accepts_gzip(ctx.header("Accept-Encoding")):
        return None
    ctx.set_resp_header("Content-Encoding", "gzip")
    ctx.set_resp_header("Accept-Ranges", None)
    _weak_etag(ctx)
    return conf.make()


def prepare(conf: dict[str, Any]) -> Compression:
    return Compression(conf, partial(_gzip_encoder, conf["comp_level"]), _start)


def header_filter(conf: Compression, ctx: pdk.Context) -> None:
    if not conf.applies(ctx):
        return
    if conf.vary:
        ctx.add_resp_header("Vary", "Accept-Encoding")
    ctx.encode_body(conf.start)         # a no-op when brotli (996) has chosen br already
