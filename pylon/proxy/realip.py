"""The client address a trusted proxy reports: nginx's realip module and APISIX's ``real-ip``
plugin, one piece of code for both.

``RealIp`` is the node-wide default, from ``nginx_config.http`` as in APISIX's default
``config.yaml``: ``real_ip_header`` (``X-Real-IP``), ``real_ip_from`` (``127.0.0.1`` and
``unix:``) and ``real_ip_recursive`` (off).  When the connecting peer is in ``real_ip_from``
and the request carries the header with a valid address, ``$remote_addr`` is that address
from before routing on (``remote_addrs``, ``vars``, ``ip-restriction``, logs, the X-Real-IP
and X-Forwarded-For sent upstream); ``$realip_remote_addr`` keeps the peer.
The address parsing (``forwarded_addr``, ``parse_addr``) is ``pylon.pdk.match``'s, which the
``real-ip`` plugin uses too.
"""

from __future__ import annotations

from typing import Any

from ..pdk.match import IpMatcher, forwarded_addr, parse_addr


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


__all__ = ["RealIp"]
