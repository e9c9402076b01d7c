"""gRPC (and plain HTTP) toward HTTP/2 upstreams: the request as HTTP/2 fields, gRPC
deadlines, and the gateway's own answers to gRPC clients.

* ``request_headers``: the upstream request's header list (``upstream/h2.py`` sends it):
  pseudo-headers, the client's fields without the hop-by-hop ones (``te: trailers`` is
  kept: gRPC servers require it), Host per ``pass_host`` as ``:authority``, the forwarding
  headers as on HTTP/1.1.
* ``timeout``: a ``grpc-timeout`` value (``1S``, ``500m`` ...) in seconds.
* ``is_grpc`` / ``trailers_only``: when the gateway itself answers a gRPC request (no route,
  a plugin's 401 or 429, upstream unreachable...), the answer is a gRPC *Trailers-Only*
  response -- HTTP 200, ``content-type: application/grpc``, ``grpc-status`` and
  ``grpc-message`` in the one HEADERS frame -- so a gRPC client reports a gRPC status
  instead of a protocol error.  The status follows the gRPC HTTP-to-gRPC status mapping
  (doc/http-grpc-status-mapping.md, which Envoy also applies to its local replies), with
  the gateway's own timeouts as DEADLINE_EXCEEDED (Envoy's router does the same).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

from .. import errors
from ..pdk.protos import CONVERTED
from ..wire.head import FWD_KEEP, FWD_XFF, forward_kind

if TYPE_CHECKING:
    from .exchange import Exchange

Headers = list[tuple[bytes, bytes]]

# gRPC status codes (grpc/doc/statuscodes.md)
OK, CANCELLED, UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED, NOT_FOUND = 0, 1, 2, 3, 4, 5
ALREADY_EXISTS, PERMISSION_DENIED, RESOURCE_EXHAUSTED, FAILED_PRECONDITION = 6, 7, 8, 9
ABORTED, OUT_OF_RANGE, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS = 10, 11, 12, 13, 14, 15
UNAUTHENTICATED: Final = 16

#: HTTP status → gRPC status (http-grpc-status-mapping.md); any other: UNKNOWN
HTTP_TO_GRPC: Final = {400: INTERNAL, 401: UNAUTHENTICATED, 403: PERMISSION_DENIED,
                       404: UNIMPLEMENTED, 429: UNAVAILABLE, 502: UNAVAILABLE,
                       503: UNAVAILABLE, 504: UNAVAILABLE}
_UNITS: Final = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}
#: request fields dropped toward an HTTP/2 upstream besides the hop-by-hop ones
_NOT_H2: Final = frozenset((b"host", b"content-length"))


def is_grpc(ex: Exchange) -> bool:
    """The request is a gRPC call (``application/grpc``, ``application/grpc+proto`` ...;
    gRPC-Web is ``application/grpc-web*`` and is not)."""
    ct = ex.head.header(b"content-type")
    if ct is None or not ct.startswith(b"application/grpc"):
        return False
    store = ex.store_if_any
    if store is not None and CONVERTED in store:     # (set by grpc-transcode, grpc-web)
        return False
    rest = ct[16:17]
    return rest in (b"", b"+", b";")


def timeout(value: bytes | None) -> float | None:
    """``grpc-timeout`` (1 to 8 digits and a unit) in seconds; None when absent or bad."""
    if not value or len(value) > 9:
        return None
    unit = _UNITS.get(value[-1:])
    digits = value[:-1]
    if unit is None or not digits.isdigit():
        return None
    return int(digits) * unit


def grpc_status(http_status: int, error: errors.GatewayError | None) -> int:
    if isinstance(error, (errors.UpstreamReadTimeout, errors.UpstreamSendTimeout,
                          errors.GrpcDeadlineExceeded)):
        return DEADLINE_EXCEEDED
    return HTTP_TO_GRPC.get(http_status, UNKNOWN)


def _message(body: bytes) -> str:
    """The text of a local reply's body for ``grpc-message``: APISIX's ``error_msg`` (or a
    plugin's ``message``) from a JSON body, else the body as text."""
    text = body.decode("utf-8", "replace").strip()
    if text[:1] == "{":
        try:
            doc = json.loads(text)
        except ValueError:
            return text
        if isinstance(doc, dict):
            for k in ("error_msg", "message"):
                v = doc.get(k)
                if isinstance(v, str):
                    return v
    return text


def trailers_only(http_status: int, body: bytes, error: errors.GatewayError | None
                  ) -> Headers:
    """The fields of a Trailers-Only answer standing for the local reply
    ``http_status`` / ``body``."""
    code = grpc_status(http_status, error)
    msg = _message(body)[:1024]
    out: Headers = [(b"content-type", b"application/grpc"),
                    (b"grpc-status", str(code).encode())]
    if msg:
        # grpc-message is percent-encoded (PROTOCOL-HTTP2.md: Percent-Encoded)
        out.append((b"grpc-message", quote(msg, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")
                    .encode()))
    return out


def status_trailers(error: errors.GatewayError) -> Headers:
    """Trailers ending a gRPC response that failed after its head went out."""
    return [(b"grpc-status", str(grpc_status(error.status, error)).encode()),
            (b"grpc-message", quote(error.message, safe=" ").encode())]


def request_headers(ex: Exchange) -> Headers:
    """The request as HTTP/2 fields toward the upstream."""
    head = ex.head
    rt = ex.rt
    plan = rt.plan
    if ex.up_host is not None:          # a plugin's (proxy-rewrite ``host``)
        host = ex.up_host
    elif plan.pass_host == "pass":
        host = head.authority
    elif plan.pass_host == "node":
        host = rt.host_headers[ex.node.addr]  # type: ignore[union-attr]
    else:
        host = (plan.upstream_host or "").encode()
    out: Headers = [(b":method", (ex.up_method or head.method).encode()),
                    (b":scheme", b"https" if rt.tls else b"http"),
                    (b":path", head.target), (b":authority", host)]
    xff = None
    drop = head.conn_tokens
    for n, v in head.headers:
        kind = forward_kind(n)
        ln = n.lower()
        if kind != FWD_KEEP:
            if kind == FWD_XFF:
                xff = v if xff is None else xff + b", " + v
            elif ln == b"te" and v.strip().lower() == b"trailers":
                out.append((b"te", b"trailers"))
            continue
        if ln in _NOT_H2 or (drop and ln in drop):
            continue
        out.append((ln, v))
    down = ex.client
    remote = ex._remote_addr
    client = (down.client_addr if remote is None else remote).encode()
    out += [(b"x-real-ip", client),
            (b"x-forwarded-for", xff + b", " + client if xff else client),
            (b"x-forwarded-proto", down.scheme.encode()),
            (b"x-forwarded-host", head.host.encode("latin-1")),
            (b"x-forwarded-port", down.server_port_s.encode())]
    return out
