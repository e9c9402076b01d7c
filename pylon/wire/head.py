"""Protocol-neutral request head.

A ``RequestHead`` is what every downstream protocol (HTTP/1.1 now, HTTP/2 later) hands to the
proxy pipeline: method, raw target, normalised path, headers as received (byte pairs, in
order), and the framing facts the pipeline needs.  HTTP/1.1 specifics (keep-alive, chunked)
are plain fields here so an HTTP/2 stream can fill the same object.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from .. import errors

#: RFC 9110 §7.6.1 connection-specific fields, never forwarded; Content-Length is re-framed
HOP_BY_HOP = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                        b"transfer-encoding", b"upgrade", b"proxy-authenticate",
                        b"proxy-authorization", b"content-length"))
#: request headers the gateway sets itself for the upstream
SET_BY_GATEWAY = frozenset((b"host", b"x-forwarded-for", b"x-forwarded-proto",
                            b"x-forwarded-host", b"x-forwarded-port", b"x-real-ip", b"expect"))

_H_HOST, _H_CL, _H_TE, _H_CONN, _H_EXPECT, _H_UPGRADE = range(6)
_SPECIAL = {b"host": _H_HOST, b"content-length": _H_CL, b"transfer-encoding": _H_TE,
            b"connection": _H_CONN, b"expect": _H_EXPECT, b"upgrade": _H_UPGRADE}
# exact spellings seen on the wire, so the common case skips bytes.lower()
_SPECIAL.update({k.title(): v for k, v in list(_SPECIAL.items())})
_SPECIAL.update({k.upper(): v for k, v in list(_SPECIAL.items())})
#: Connection header value → its lower-case tokens (bounded cache)
_CONN_TOKENS: dict[bytes, frozenset[bytes]] = {}
#: header names seen that are none of the above (bounded)
_PLAIN: set[bytes] = set()
#: Host header value → host; a small bounded cache (few distinct hosts in practice).  Only
#: valid authorities are cached, so a hit is also the validation.
_HOSTS: dict[bytes, str] = {}
#: RFC 9110 §7.2 / RFC 3986 §3.2.2: ``uri-host [ ":" port ]``; uri-host is an IP-literal or a
#: reg-name (unreserved / pct-encoded / sub-delims): no userinfo, space, "/", "?", "#", CTL
_AUTHORITY = re.compile(
    rb"(?:\[[0-9A-Za-z:._~%!$&'()*+,;=-]+\]|[0-9A-Za-z._~%!$&'()*+,;=-]+)(?::[0-9]*)?")


FWD_KEEP, FWD_DROP, FWD_XFF = 0, 1, 2
_FWD: dict[bytes, int] = {}


def forward_kind(name: bytes) -> int:
    """How a request header travels upstream: kept, dropped (hop-by-hop or set by the
    gateway), or merged into X-Forwarded-For.  Cached by exact spelling (bounded)."""
    kind = _FWD.get(name)
    if kind is None:
        ln = name.lower()
        kind = FWD_XFF if ln == b"x-forwarded-for" else \
            FWD_DROP if ln in HOP_BY_HOP or ln in SET_BY_GATEWAY else FWD_KEEP
        if len(_FWD) < 2048:
            _FWD[name] = kind
    return kind


class RequestHead:
    method: str
    target: bytes          # raw request-target as received (sent upstream unchanged)
    path: str              # normalised, percent-decoded path used for routing ($uri)
    query: bytes = b""     # raw query string without '?'
    headers: list[tuple[bytes, bytes]]
    version: str           # "1.1", "1.0", "2"
    keep_alive: bool
    host: str = ""         # lower-case host without port ("" when absent)
    authority: bytes = b""  # the Host header value as received
    content_length: int | None = None
    chunked = False
    expect_continue = False
    upgrade: bytes | None = None
    conn_tokens: frozenset[bytes] = frozenset()
    error: errors.GatewayError | None = None
    _lower: dict[bytes, bytes] | None = None

    @classmethod
    def from_h1(cls, method: str, target: bytes, headers: list[tuple[bytes, bytes]],
                version: str, keep_alive: bool) -> RequestHead:
        self = cls()
        self.method = method
        self.target = target
        self.headers = headers
        self.version = version
        self.keep_alive = keep_alive
        authority = None
        special = _SPECIAL
        plain = _PLAIN
        for name, value in headers:
            kind = special.get(name)
            if kind is None:
                if name in plain:
                    continue
                kind = special.get(name.lower())
                if kind is None:
                    if len(plain) < 2048:
                        plain.add(name)
                    continue
            if kind == _H_HOST:
                if authority is not None:
                    self.error = errors.BadRequest("more than one Host header")
                authority = value
            elif kind == _H_CL:
                self.content_length = int(value)   # llhttp already checked digits/duplicates
            elif kind == _H_TE:
                if version == "1.0":    # RFC 9112 §6.1: faulty framing, possibly smuggling
                    self.error = errors.RequestSmuggling(
                        "Transfer-Encoding in an HTTP/1.0 request")
                elif value.strip().lower() != b"chunked":
                    self.error = errors.UnsupportedTransferCoding(
                        "only the chunked transfer coding is accepted")
                self.chunked = True
            elif kind == _H_CONN:
                tokens = _CONN_TOKENS.get(value)
                if tokens is None:
                    tokens = frozenset([t.strip().lower() for t in value.split(b",")])
                    if len(_CONN_TOKENS) < 256:
                        _CONN_TOKENS[value] = tokens
                self.conn_tokens = tokens
            elif kind == _H_EXPECT:
                if value.lower() == b"100-continue":
                    self.expect_continue = True
            else:
                self.upgrade = value
        if target[0] != 47 and target != b"*":    # absolute-form (RFC 9112 §3.2.2)
            target, authority = _absolute_form(self, target, authority)
        if authority is None:
            if version == "1.1" and self.error is None:
                self.error = errors.BadRequest("missing Host header")
        else:
            self.authority = authority
            host = _HOSTS.get(authority)
            if host is None:                    # a cache hit is also the validation
                host = host_of(authority)
                if not _valid_authority(authority):
                    if self.error is None:
                        self.error = errors.BadRequest("invalid Host header")
                elif len(_HOSTS) < 4096:
                    _HOSTS[authority] = host
            self.host = host
        q = target.find(b"?")
        if q < 0:
            raw_path = target
        else:
            raw_path, self.query = target[:q], target[q + 1:]
        if b"%" not in raw_path and b"/." not in raw_path and b"//" not in raw_path \
                and raw_path[:1] == b"/":
            self.path = raw_path.decode("latin-1")
        else:
            try:
                self.path = normalize_path(raw_path)
            except ValueError as e:
                self.path = "/"
                if self.error is None:
                    self.error = errors.BadRequest(str(e))
        return self

    def header(self, lname: bytes) -> bytes | None:
        """First value of a header by lower-case name."""
        d = self._lower
        if d is None:
            d = self._lower = {}
            for n, v in self.headers:
                d.setdefault(n.lower(), v)
        return d.get(lname)

    def header_map(self) -> dict[bytes, bytes]:
        self.header(b"")
        return self._lower  # type: ignore[return-value]


def header_is(name: bytes, want: bytes) -> bool:
    """A request header's ``name`` is ``want`` (lower case, "-" for "_") as nginx compares
    them for ``$http_*``: case-blind, and with underscores_in_headers on (APISIX's setting)
    "_" taken for "-" (``$http_no_cache`` reads a ``no_cache`` header too)."""
    low = name.lower()
    return low == want or (b"_" in low and low.replace(b"_", b"-") == want)


def _valid_authority(authority: bytes) -> bool:
    """A Host header value or absolute-form authority as RFC 9110 §7.2 allows it; like
    nginx, also no empty host and no ".." (a name cannot have an empty label)."""
    return _AUTHORITY.fullmatch(authority) is not None and b".." not in authority \
        and authority[:1] != b":"


def _absolute_form(head: RequestHead, target: bytes,
                   authority: bytes | None) -> tuple[bytes, bytes | None]:
    """``http://host[:port][/path][?query]`` → (``/path?query``, ``host[:port]``), as nginx
    reads it: no path means "/", the query is kept, and the target's authority wins over
    the Host header (which HTTP/1.1 still requires, and which must still be valid).
    Userinfo or an empty or invalid authority is refused (400).  Another scheme is left as
    it is, for the path check to refuse."""
    sep = target.find(b"://")
    if sep < 0 or target[:sep].lower() not in (b"http", b"https"):
        return target, authority
    rest = target[sep + 3:]
    end = len(rest)
    for c in (b"/", b"?"):
        i = rest.find(c)
        if 0 <= i < end:
            end = i
    auth, path = rest[:end], rest[end:]
    path = b"/" + path if path[:1] == b"?" else path or b"/"
    head.target = path
    if head.error is None:
        if authority is None:
            if head.version == "1.1":
                head.error = errors.BadRequest("missing Host header")
        elif authority not in _HOSTS and not _valid_authority(authority):
            head.error = errors.BadRequest("invalid Host header")
    if not _valid_authority(auth):
        if head.error is None:
            head.error = errors.BadRequest("invalid host in request line")
        return path, authority
    return path, auth


def host_of(authority: bytes) -> str:
    """``Example.COM:8080`` → ``example.com``; ``[::1]:80`` → ``::1``."""
    if not authority:
        return ""
    a = authority.decode("latin-1").lower()
    if a.startswith("["):
        end = a.find("]")
        return a[1:end] if end > 0 else a
    colon = a.rfind(":")
    if colon >= 0:
        a = a[:colon]
    return a.removesuffix(".")          # "example.com." is example.com (nginx)


def normalize_path(raw: bytes) -> str:
    """nginx-style ``$uri``: percent-decoded, ``//`` merged, dot segments resolved.

    The fast path (nothing to normalise) costs one scan.  A path that climbs above the root
    is refused, as nginx does, so that routes on ``/admin/*`` cannot be bypassed.
    """
    if not raw.startswith(b"/"):
        if raw == b"*":
            return "*"
        raise ValueError("request target must start with /")
    if b"%" not in raw and b"/." not in raw and b"//" not in raw:
        return raw.decode("latin-1")
    data = unquote_to_bytes(raw) if b"%" in raw else raw
    if b"\x00" in data:
        raise ValueError("NUL in path")
    out: list[bytes] = []
    for seg in data.split(b"/")[1:]:
        if seg == b"..":
            if not out:
                raise ValueError("path climbs above the root")
            out.pop()
        elif seg == b"." or seg == b"":
            continue
        else:
            out.append(seg)
    trailing = data.endswith(b"/") or data.endswith(b"/.") or data.endswith(b"/..")
    path = b"/" + b"/".join(out)
    if trailing and out:
        path += b"/"
    try:
        return path.decode("utf-8")
    except UnicodeDecodeError:
        return path.decode("latin-1")
