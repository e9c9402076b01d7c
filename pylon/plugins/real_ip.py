"""real-ip: take the client address from a header or argument set by a trusted proxy (APISIX).

``source`` (required): a variable holding the address, optionally with a port, e.g.
``http_x_forwarded_for``, ``http_x_real_ip``, ``arg_realip``.  ``trusted_addresses``
(IPv4/IPv6 addresses and CIDRs): when given, only a connecting peer in them is believed.
``recursive`` (false): with ``http_x_forwarded_for`` and ``trusted_addresses``, walk the
X-Forwarded-For list from the right skipping trusted addresses and take the first untrusted
one (the leftmost when all are trusted), as nginx's ``real_ip_recursive``; otherwise the
last address of the (last) X-Forwarded-For header is taken.

A missing or malformed address changes nothing.  (The node itself already trusts
``X-Real-IP`` from ``nginx_config.http.real_ip_from`` -- 127.0.0.1 by default, as APISIX's
nginx does -- before routing; this plugin then works from that address.  The parsing is
shared: ``pylon.pdk.match``.)  The new address is ``$remote_addr`` from
here on: ``ip-restriction``, ``vars`` on ``remote_addr``, logs, and the X-Real-IP /
X-Forwarded-For sent upstream all follow.  Runs first of all (rewrite, priority 23000).
"""

from __future__ import annotations

from typing import Any

from pylon import pdk
from pylon.pdk.match import IpMatcher, forwarded_addr, parse_addr, valid_cidr

name = "real-ip"
priority = 23000
version = 0.1

schema = {
    "type": "object",
    "properties": {
        "trusted_addresses": {"type": "array", "minItems": 1,
                              "items": {"type": "string", "minLength": 1}},
        "source": {"type": "string", "minLength": 1},
        "recursive": {"type": "boolean", "default": False},
    },
    "required": ["source"],
}

_XFF = b"x-forwarded-for"


def check(conf: dict[str, Any], schema_type: str) -> None:
    for item in conf.get("trusted_addresses") or ():
        if not valid_cidr(item):
            raise ValueError(f"invalid ip address: {item}")


class Prepared:
    __slots__ = ("matcher", "recursive", "source", "xff")

    def __init__(self, conf: dict[str, Any]) -> None:
        trusted = conf.get("trusted_addresses")
        self.matcher = IpMatcher(trusted) if trusted else None
        self.source = conf["source"]
        self.xff = self.source == "http_x_forwarded_for"
        self.recursive = bool(conf["recursive"]) and self.matcher is not None


def prepare(conf: dict[str, Any]) -> Prepared:
    return Prepared(conf)


def _from_xff(conf: Prepared, ctx: pdk.Context) -> str | None:
    value = None
    for n, v in ctx.head.headers:           # the last X-Forwarded-For header
        if n.lower() == _XFF:
            value = v
    if value is None:
        return None
    return forwarded_addr(value.decode("latin-1"), conf.matcher, conf.recursive)


def rewrite(conf: Prepared, ctx: pdk.Context) -> None:
    matcher = conf.matcher
    if matcher is not None and not matcher.match(ctx.remote_addr):
        return
    addr = _from_xff(conf, ctx) if conf.xff else ctx.var(conf.source)
    if not addr:
        pdk.log.debug("real-ip: missing real address in %s", conf.source)
        return
    ip = parse_addr(addr)
    if ip is None:
        pdk.log.info("real-ip: bad address: %r", addr[:64])
        return
    ctx.set_remote_addr(ip)
