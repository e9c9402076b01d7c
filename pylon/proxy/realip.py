"""The client address a trusted proxy reports: nginx's realip module and APISIX's ``real-ip``
plugin, one piece of code for both.

``RealIp`` is the node-wide default, from ``nginx_config.http`` as in APISIX's default
``config.yaml``: ``real_ip_header`` (``X-Real-IP``), ``real_ip_from`` (``127.0.0.1`` and
``unix:``) and ``real_ip_recursive`` (off).  When the connecting peer is in ``real_ip_from``
and the request carries the header with a valid address, ``$remote_addr`` is that address
from before routing on (``remote_addrs``, ``vars``, ``ip-restriction``, logs, the X-Real-IP
and X-Forwarded-For sent upstream); ``$realip_remote_addr`` keeps the peer.
``forwarded_addr`` and ``parse_addr`` are what the ``real-ip`` plugin uses too.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from ..routing.expr import ExprError, IpMatcher


def forwarded_addr(value: str, trusted: IpMatcher | None, recursive: bool) -> str:
    """The address a comma separated list (X-Forwarded-For style) names: the last one; with
    ``recursive`` the rightmost one not in ``trusted`` (the leftmost when all are), as
    nginx's ``real_ip_recursive`` / the ``real-ip`` plugin's ``recursive``."""
    if "," not in value:
        return value
    if recursive and trusted is not None:
        parts = value.split(",")
        for p in reversed(parts[1:]):
            p = p.strip()
            if not trusted.match(host_of(p)):
                return p
        return parts[0].strip()
    return value.rpartition(",")[2].lstrip(" ")


def split_addr(addr: str) -> tuple[str, str | None]:
    """APISIX ``core.utils.parse_addr``: host (IPv6 brackets kept) and port text or None."""
    if addr.startswith("["):
        if addr.endswith("]"):
            return addr, None
        pos = addr.rfind(":")
        if pos <= 0 or addr[pos - 1] != "]":
            return addr, None
        return addr[:pos], addr[pos + 1:]
    if addr.count(":") > 1:                 # a bare IPv6 address: no port
        return addr, None
    host, sep, port = addr.rpartition(":")
    return (host, port) if sep else (addr, None)


def host_of(addr: str) -> str:
    """The address part of ``addr`` (``1.2.3.4:80``, ``[::1]:80``, ``::1``...)."""
    host, _ = split_addr(addr)
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def parse_addr(addr: str) -> str | None:
    """``addr`` (an address, optionally with a port) as a normalised IP string, or None when
    it is not a valid address (or its port is out of range)."""
    host, port = split_addr(addr.strip())
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if port is not None and port.isascii() and port.isdigit() and not 1 <= int(port) <= 65535:
        return None
    return str(ip)


class RealIp:
    """The node's ``real_ip_*`` settings, compiled once per worker."""

    __slots__ = ("header_b", "matcher", "recursive", "unix")

    def __init__(self, header: str, trusted: list[str], recursive: bool) -> None:
        self.header_b = header.lower().encode("latin-1")
        self.recursive = recursive
        self.unix = "unix:" in trusted
        cidrs = [t for t in trusted if t != "unix:"]
        self.matcher = IpMatcher(cidrs) if cidrs else None

    @classmethod
    def from_settings(cls, s: Any) -> RealIp | None:
        """None when ``real_ip_from`` is empty (nothing trusted: nothing to do)."""
        if not s.real_ip_from:
            return None
        return cls(s.real_ip_header, s.real_ip_from, s.real_ip_recursive)

    @staticmethod
    def check(trusted: list[str], path: str) -> None:
        """Raise ``ExprError`` naming the bad entry of ``real_ip_from``."""
        IpMatcher([t for t in trusted if t != "unix:"], path)

    def trusts(self, peer: str | None) -> bool:
        """The connecting peer (None: a unix socket) may set the address."""
        if peer is None:
            return self.unix
        return self.matcher is not None and self.matcher.match(peer)

    def addr(self, raw: bytes) -> str | None:
        """The client address the header value ``raw`` gives, or None (left unchanged)."""
        value = raw.decode("latin-1")
        return parse_addr(forwarded_addr(value, self.matcher, self.recursive)) if value else None


__all__ = ["ExprError", "RealIp", "forwarded_addr", "host_of", "parse_addr", "split_addr"]
