"""brotli: compress responses for clients that accept br (APISIX ``brotli``, priority 996).

As APISIX: the client's Accept-Encoding must name ``br`` or ``*`` (``q=0`` refuses; APISIX's
own token scan, lower case), the upstream response must not be encoded already, its
Content-Type must be one of ``types`` (``"*"``: any) and its Content-Length (when known) at
least ``min_length``, the request's HTTP version at least ``http_version``.  Then ``Vary:
Accept-Encoding`` is added when ``vary``; Content-Length, Last-Modified and ETag go and
``Content-Encoding: br`` is set.  Any status is compressed (APISIX's brotli is Lua, not
nginx's filter).  ``mode``, ``comp_level`` (quality), ``lgwin`` and ``lgblock`` configure
the encoder (``lgwin: 0`` — "let the compressor decide" — is brotli's default window, 22).

With gzip on the same route, brotli runs first (996 > 995): a client accepting br gets br,
one accepting only gzip gets gzip.

Differences from APISIX, on purpose: the body is compressed, and ``Content-Encoding: br``
set, after every other plugin's header and body filter (``ctx.encode_body``, where nginx's
gzip filter works), so later plugins — response-rewrite, the loggers' ``include_resp_body``
— see the plain body (APISIX compresses in its own Lua filter at 996: they saw br bytes);
HEAD, 204 and 304 answers are left as they are (no body to encode); ``br;q=0.0`` refuses
like ``q=0`` (APISIX compares the text with ``"0"``); and a last body chunk with data is not
lost (APISIX's ``eof`` branch overwrites it with the compressor's tail).
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

import brotli as _brotli  # type: ignore[import-untyped]

from pylon import pdk
from pylon.pdk.encoding import COMMON_PROPERTIES, Compression, Encode, no_body, streaming

name = "brotli"
priority = 996
version = 0.1

schema = {
    "type": "object",
    "properties": {
        **COMMON_PROPERTIES,
        # 0: generic, 1: text (UTF-8), 2: font (WOFF 2.0)
        "mode": {"type": "integer", "minimum": 0, "maximum": 2, "default": 0},
        # ngx_brotli's brotli_comp_level default
        "comp_level": {"type": "integer", "minimum": 0, "maximum": 11, "default": 6},
        "lgwin": {"type": "integer", "default": 19,
                  "enum": [0, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24]},
        "lgblock": {"type": "integer", "default": 0,
                    "enum": [0, 16, 17, 18, 19, 20, 21, 22, 23, 24]},
    },
}

#: APISIX's Accept-Encoding scan: a token, then an optional ``;q=`` and its value
_TOKEN = re.compile(r"([a-z*]+)(;q=)?([0-9.]*)")


def _q_zero(q: str) -> bool:
    try:
        return float(q) == 0
    except ValueError:
        return False


def accepts_br(ae: str | None) -> bool:
    if ae is None:
        return False
    if ae == "*" or ae == "br":
        return True
    for m in _TOKEN.finditer(ae):
        if m.group(1) in ("br", "*") and (m.group(2) is None or not _q_zero(m.group(3))):
            return True
    return False


def _encoder(mode: int, quality: int, lgwin: int, lgblock: int) -> Encode:
    c = _brotli.Compressor(mode=mode, quality=quality, lgwin=lgwin, lgblock=lgblock)
    return streaming(c.process, c.flush, c.finish)


def _start(conf: Compression, ctx: pdk.Context) -> Encode | None:
    """Once every header filter has run (one may have encoded the response meanwhile)."""
    if ctx.resp_header("Content-Encoding") is not None:
        return None
    # APISIX's clear_header_as_body_modified (Content-Length goes with body_changed)
    ctx.set_resp_header("Last-Modified", None)
    ctx.set_resp_header("ETag", None)
    ctx.set_resp_header("Content-Encoding", "br")
    return conf.make()


def prepare(conf: dict[str, Any]) -> Compression:
    make = partial(_encoder, conf["mode"], conf["comp_level"], conf["lgwin"] or 22,
                   conf["lgblock"])
    return Compression(conf, make, _start)


def header_filter(conf: Compression, ctx: pdk.Context) -> None:
    if not accepts_br(ctx.header("Accept-Encoding")):
        return
    if ctx.resp_header("Content-Encoding") is not None or not conf.applies(ctx):
        return
    if conf.vary:
        ctx.add_resp_header("Vary", "Accept-Encoding")
    if not no_body(ctx):
        ctx.encode_body(conf.start)
