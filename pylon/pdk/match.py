"""Matching for plugins: APISIX's ``vars`` expressions, PCRE patterns, IP ranges and the
client-address parsing of ``real-ip`` (and of the node's own ``real_ip_*`` settings).

The matchers are the router's own (``pylon.routing.expr``), re-exported so a plugin's ``vars``,
regexes and CIDRs mean exactly what they mean on a route.
"""

from __future__ import annotations

import ipaddress

from ..routing.expr import (
    ExprError,
    IpMatcher,
    Predicate,
    compile_expr,
    compile_pcre,
    lua_tostring,
    pcre_to_python,
)


def valid_cidr(item: str) -> bool:
    """An IPv4/IPv6 address or CIDR as APISIX accepts it (host bits may be set)."""
    if item.startswith("[") and item.endswith("]"):
        item = item[1:-1]
    addr, sep, mask = item.partition("/")
    if sep and not (mask.isascii() and mask.isdigit()):
        return False
    try:
        ipaddress.ip_network(item, strict=False)
    except ValueError:
        return False
    return bool(addr)


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


__all__ = ["ExprError", "IpMatcher", "Predicate", "compile_expr", "compile_pcre",
           "forwarded_addr", "host_of", "lua_tostring", "parse_addr", "pcre_to_python",
           "split_addr", "valid_cidr"]
