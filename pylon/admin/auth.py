"""Admin API access control: the ``allow_admin`` address list and API keys.

As APISIX: the key is read from the ``api_key`` query argument, then the ``X-API-KEY``
header, then the ``X-API-KEY`` cookie; a key with role ``viewer`` may only GET.  A refused
key is answered 401 ``{"error_msg": "failed to check token", "description": <why>}``; a client
outside ``allow_admin`` gets 403 before its key is looked at.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Any

from ..errors import ConfigError

#: APISIX's default ``deployment.admin.allow_admin``
DEFAULT_ALLOW = ("127.0.0.0/24",)
ROLES = ("admin", "viewer")
VIEWER_METHODS = frozenset({"GET", "HEAD"})

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class AdminKey:
    name: str
    key: str
    role: str = "admin"


def parse_keys(rows: Iterable[Mapping[str, Any]] | None) -> list[AdminKey]:
    """``deployment.admin.admin_key`` rows → keys; raises ConfigError naming the row."""
    out: list[AdminKey] = []
    for i, row in enumerate(rows or []):
        where = f"deployment.admin.admin_key[{i}]"
        if not isinstance(row, Mapping):
            raise ConfigError("must be a mapping with name, key and role", where)
        key = row.get("key")
        role = row.get("role", "admin")
        if not isinstance(key, str) or not key:
            raise ConfigError("key must be a non-empty string", f"{where}.key")
        if role not in ROLES:
            raise ConfigError(f"role must be one of {', '.join(ROLES)}", f"{where}.role")
        out.append(AdminKey(str(row.get("name") or f"key{i}"), key, str(role)))
    return out


def parse_allow(cidrs: Iterable[str] | None) -> list[IPNetwork]:
    """``allow_admin`` entries (CIDR or single address) → networks."""
    out: list[IPNetwork] = []
    for i, c in enumerate(DEFAULT_ALLOW if cidrs is None else cidrs):
        try:
            out.append(ipaddress.ip_network(str(c).strip(), strict=False))
        except ValueError as e:
            raise ConfigError(str(e), f"deployment.admin.allow_admin[{i}]") from None
    return out


class Auth:
    def __init__(self, keys: Iterable[AdminKey], allow: Iterable[IPNetwork] | None,
                 key_required: bool = True) -> None:
        self.keys = list(keys)
        #: None: every address may connect (allow_admin not configured at all)
        self.allow = None if allow is None else list(allow)
        self.key_required = key_required

    def address_allowed(self, remote_addr: str | None) -> bool:
        if self.allow is None:
            return True
        if not remote_addr:
            return False
        try:
            ip = ipaddress.ip_address(remote_addr.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self.allow)

    def check(self, method: str, query: Mapping[str, str],
              headers: Mapping[str, str]) -> str | None:
        """None when the request may proceed, else why the token check failed."""
        return self.authenticate(method, query, headers)[1]

    def authenticate(self, method: str, query: Mapping[str, str],
                     headers: Mapping[str, str]) -> tuple[str | None, str | None]:
        """(name of the key used, None) when the request may proceed, else (None, why)."""
        key, why = self.identify(method, query, headers)
        return (key.name if key is not None else None), why

    def identify(self, method: str, query: Mapping[str, str],
                 headers: Mapping[str, str]) -> tuple[AdminKey | None, str | None]:
        """(the key used, None) when the request may proceed -- (None, None) when no key is
        required -- else (None, why)."""
        if not self.key_required:
            return None, None
        token = query.get("api_key") or headers.get("x-api-key") or _cookie(headers)
        if not token:
            return None, "missing apikey"
        found: AdminKey | None = None
        given = token.encode("utf-8", "surrogateescape")
        for k in self.keys:   # compare against every key: timing does not reveal which
            if hmac.compare_digest(given, k.key.encode("utf-8")) and found is None:
                found = k
        if found is None:
            return None, "wrong apikey"
        if found.role == "viewer" and method.upper() not in VIEWER_METHODS:
            return None, "invalid method for role viewer"
        return found, None


def _cookie(headers: Mapping[str, str]) -> str | None:
    return cookie(headers, "x-api-key")


def cookie(headers: Mapping[str, str], wanted: str) -> str | None:
    """The value of cookie ``wanted`` (lower-case; names match case-insensitively, as
    nginx's ``$cookie_x_api_key``), None when absent or empty."""
    raw = headers.get("cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except CookieError:
        return None
    for name, morsel in jar.items():
        if name.lower() == wanted:
            return morsel.value or None
    return None
