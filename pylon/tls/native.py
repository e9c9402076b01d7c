"""What Python's ``ssl`` module does not expose, reached through OpenSSL itself (ctypes).

A certificate chosen by SNI comes from another ``SSLContext`` (``SSLObject.context = ...``
in the SNI callback: OpenSSL's ``SSL_set_SSL_CTX``).  That call switches the certificate,
the trust store and ALPN, but not what OpenSSL copied from the listener's context when the
connection began: whether a client certificate is asked for (``SSL_set_verify``), the
verification depth, and the protocol version already chosen from the ClientHello.  nginx
sets the first two per connection after the switch; so do we, here, on the connection's
``SSL*``:

* ``set_verify``: ask for a client certificate (required, or optional with every verdict
  recorded instead of failing the handshake: ``skip_mtls_uri_regex``), with a depth;
* ``version``: the protocol version negotiated so far (an ssl object's ``ssl_protocols``);
* ``verify_result`` / ``verify_error``: the verdict on the client certificate
  (``$ssl_client_verify``).

The ``SSL*`` is read from CPython's ``_ssl._SSLSocket`` object (its first field after the
object header and the socket weak reference); ``available()`` checks that layout once per
process against ``SSL_get_SSL_CTX`` before anything relies on it.  Where it does not hold
(another Python implementation), mutual TLS and per-object protocols are refused with
APISIX's "client tls verify unsupported".
"""

from __future__ import annotations

import ctypes
import functools
import logging
import ssl
import sys
from typing import Any

log = logging.getLogger("pylon.tls")

VERIFY_PEER = 0x01
VERIFY_FAIL_IF_NO_PEER_CERT = 0x02
#: offsets in CPython's ``PySSLSocket`` / ``PySSLContext`` (``Modules/_ssl.c``): after
#: ``PyObject_HEAD`` (two words) come ``Socket`` then ``ssl``; a context's ``ctx`` first
_WORD = ctypes.sizeof(ctypes.c_void_p)
_SSL_OFFSET = 3 * _WORD
_CTX_OFFSET = 2 * _WORD

_VerifyCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


def _record_only(ok: int, store: int | None) -> int:
    """A verify callback that lets the handshake go on whatever the verdict: OpenSSL still
    records it (``SSL_get_verify_result``), and the request decides (400)."""
    return 1


class _Lib:
    __slots__ = ("accept_any", "get_ctx", "get_verify_result", "set_verify",
                 "set_verify_depth", "ssl_version", "verify_string")

    def __init__(self, lib: ctypes.CDLL) -> None:
        def fn(name: str, restype: Any, *argtypes: Any) -> Any:
            f = getattr(lib, name)
            f.argtypes, f.restype = list(argtypes), restype
            return f

        vp, i = ctypes.c_void_p, ctypes.c_int
        self.set_verify = fn("SSL_set_verify", None, vp, i, vp)
        self.set_verify_depth = fn("SSL_set_verify_depth", None, vp, i)
        self.get_ctx = fn("SSL_get_SSL_CTX", vp, vp)
        self.get_verify_result = fn("SSL_get_verify_result", ctypes.c_long, vp)
        self.ssl_version = fn("SSL_version", i, vp)
        self.verify_string = fn("X509_verify_cert_error_string", ctypes.c_char_p, ctypes.c_long)
        #: kept alive with the library: OpenSSL holds only its address
        self.accept_any = _VerifyCallback(_record_only)


def _pointer(obj: object, offset: int) -> int:
    return ctypes.c_void_p.from_address(id(obj) + offset).value or 0


@functools.cache
def _lib() -> _Lib | None:
    if sys.implementation.name != "cpython":
        return None
    try:
        import _ssl
        lib = _Lib(ctypes.CDLL(_ssl.__file__))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        obj = ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=True)
        ptr = _pointer(obj._sslobj, _SSL_OFFSET)  # type: ignore[attr-defined]
        if not ptr or lib.get_ctx(ptr) != _pointer(ctx, _CTX_OFFSET):
            log.warning("TLS: this Python's ssl objects are not laid out as expected; "
                        "client certificate verification (mTLS) is not available")
            return None
        return lib
    except (OSError, AttributeError, ImportError, ValueError) as e:
        log.warning("TLS: OpenSSL not reachable (%s); mTLS is not available", e)
        return None


def available() -> bool:
    """Per-connection verification and versions can be set (checked once per process)."""
    return _lib() is not None


def _ssl_ptr(obj: Any) -> int:
    return _pointer(obj._sslobj, _SSL_OFFSET)


def set_verify(obj: ssl.SSLObject, required: bool, depth: int) -> None:
    """Ask this connection's client for a certificate, verified to ``depth`` against the
    trust store of the context the connection uses now.  ``required``: no certificate or
    a bad one fails the handshake; otherwise both are recorded and the handshake goes on."""
    lib = _lib()
    assert lib is not None
    ptr = _ssl_ptr(obj)
    if required:
        lib.set_verify(ptr, VERIFY_PEER | VERIFY_FAIL_IF_NO_PEER_CERT, None)
    else:
        lib.set_verify(ptr, VERIFY_PEER, ctypes.cast(lib.accept_any, ctypes.c_void_p))
    lib.set_verify_depth(ptr, depth)


def version(obj: ssl.SSLObject) -> int:
    """The protocol version chosen for this connection (0x0303 TLS 1.2, 0x0304 TLS 1.3);
    known from the SNI callback on."""
    lib = _lib()
    return lib.ssl_version(_ssl_ptr(obj)) if lib is not None else 0


def verify_result(obj: ssl.SSLObject) -> int:
    """OpenSSL's verdict on the client certificate (0: X509_V_OK)."""
    lib = _lib()
    return lib.get_verify_result(_ssl_ptr(obj)) if lib is not None else 0


def verify_error(code: int) -> str:
    lib = _lib()
    if lib is None:
        return str(code)
    text: bytes | None = lib.verify_string(code)
    return text.decode() if text else str(code)
