"""TLS toward clients: the listener's context, SNI selection per handshake, the connection's
TLS facts (``$ssl_*``) and APISIX's per-request client certificate rules.

One ``server_context`` per kind of TLS listener (with or without HTTP/2 in ALPN) and
worker.  Its SNI callback reads the worker's current snapshot table (``SniTable``, compiled
when the snapshot was built) and switches the connection to the matching ssl object's
context: that object's certificates (RSA and ECDSA side by side: OpenSSL picks by what the
client offers), trust store and ALPN list.  No match: the node's default certificate
(``apisix.ssl.ssl_cert``, Pylon) when there is one, else the handshake fails as APISIX's
does (alert ``internal_error``).  Connections already open keep the context they were served
with, whatever changes after.

Settings of the listener context (copied into each connection when it starts, so they hold
whichever object is chosen): ``ssl_protocols`` (the node's), ``ssl_ciphers``,
``ssl_session_tickets``.  An object's own ``ssl_protocols`` is checked against the version
the client and the node agreed on: a version it does not allow fails the handshake
(``protocol_version``).
"""

from __future__ import annotations

import hashlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from cryptography.hazmat.primitives.serialization import Encoding

from ..errors import ConfigError
from . import native
from .certs import load_chain
from .table import EntryContext, SniTable, SslEntry, normalize_sni

log = logging.getLogger("pylon.tls")

#: APISIX's ``apisix.ssl.ssl_ciphers`` default
DEFAULT_CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                   "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                   "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
                   "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384")
_TLS_VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLSv1": ssl.TLSVersion.TLSv1, "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """``apisix.ssl`` resolved: what every TLS listener of the node shares."""

    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    ciphers: str = DEFAULT_CIPHERS
    session_tickets: bool = False
    fallback_sni: str | None = None
    #: Pylon: the certificate served when no ssl object matches (paths)
    cert: str | None = None
    key: str | None = None

    @classmethod
    def of(cls, protocols: str, ciphers: str, tickets: bool, fallback_sni: str | None,
           cert: str | None, key: str | None, path: str) -> TlsSettings:
        names = protocols.split()
        bad = [n for n in names if n not in _TLS_VERSIONS]
        if bad or not names:
            raise ConfigError(f"unknown protocol {bad[0] if bad else protocols!r} (use "
                              "TLSv1.2, TLSv1.3)", path + "ssl_protocols")
        versions = sorted(_TLS_VERSIONS[n] for n in names)
        if (cert is None) != (key is None):
            raise ConfigError("ssl_cert and ssl_cert_key go together", path + "ssl_cert")
        probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            probe.set_ciphers(ciphers)
        except ssl.SSLError:
            raise ConfigError(f"no usable cipher in {ciphers!r}", path + "ssl_ciphers") \
                from None
        if cert is not None and key is not None:
            try:
                load_chain(probe, cert, key)
            except (ssl.SSLError, OSError) as e:
                raise ConfigError(f"cannot load {cert} / {key}: {e}", path + "ssl_cert") \
                    from None
        return cls(versions[0], versions[-1], ciphers, tickets,
                   normalize_sni(fallback_sni) if fallback_sni else None, cert, key)


def server_context(opts: TlsSettings, alpn: tuple[str, ...],
                   table: Callable[[], SniTable]) -> ssl.SSLContext:
    """The context a TLS listener hands connections to; ``table`` gives the SNI table of
    the snapshot current at each handshake."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = opts.min_version
    ctx.maximum_version = opts.max_version
    ctx.set_ciphers(opts.ciphers)
    if not opts.session_tickets:
        # APISIX's default: no tickets (forward secrecy); sessions are still resumed from
        # this worker's session cache (TLS 1.2 ids, TLS 1.3 stateful tickets)
        ctx.options |= ssl.OP_NO_TICKET
    ctx.set_alpn_protocols(list(alpn))
    has_default = opts.cert is not None and opts.key is not None
    if has_default:
        load_chain(ctx, opts.cert, opts.key)  # type: ignore[arg-type]
    fallback = opts.fallback_sni

    def on_sni(obj: ssl.SSLObject, name: str | None, _base: ssl.SSLContext) -> int | None:
        sni = normalize_sni(name) if name else fallback
        obj.pylon_sni = (name, sni)  # type: ignore[attr-defined]
        try:
            entry = table().find(sni) if sni else None
            if entry is None:
                if has_default:
                    return None
                if sni is None:
                    log.warning("failed to find SNI: the client sent none (it connects by "
                                "IP address?) and there is no fallback_sni")
                else:
                    log.warning("failed to find any SSL certificate by SNI: %s", sni)
                return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
            protocols = entry.protocols
            if protocols is not None and native.version(obj) not in protocols:
                log.warning("ssl %s (SNI %s) does not allow the protocol version the client "
                            "negotiated", entry.id, sni)
                return ssl.ALERT_DESCRIPTION_PROTOCOL_VERSION
            obj.context = entry.contexts[alpn]
            client = entry.client
            if client is not None:
                native.set_verify(obj, client.skip is None, client.depth)
        except Exception:      # a bug fails this handshake, not the worker
            log.exception("TLS: choosing the certificate for %r failed", name)
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        return None

    ctx.sni_callback = on_sni
    return ctx


# ------------------------------------------------------------------ the connection's TLS
class TlsConn:
    """What a TLS client connection was established with (read after the handshake, once
    per connection; the ``$ssl_*`` variables read it lazily)."""

    __slots__ = ("_peer", "entry", "obj", "server_name", "sni")

    def __init__(self, obj: ssl.SSLObject) -> None:
        self.obj = obj
        ctx = obj.context
        #: the ssl object the handshake was served with (None: the node's default cert)
        self.entry: SslEntry | None = ctx.entry if isinstance(ctx, EntryContext) else None
        name, sni = getattr(obj, "pylon_sni", (None, None))
        #: what the client sent (``$ssl_server_name``) and what was looked up
        #: (normalised; ``fallback_sni`` when the client sent none)
        self.server_name: str | None = name
        self.sni: str | None = sni
        self._peer: Any = False

    @property
    def alpn(self) -> str | None:
        """The application protocol agreed on ("h2", "http/1.1"), None if none was."""
        return self.obj.selected_alpn_protocol()

    def peer(self) -> Any:
        """The client certificate (a ``cryptography`` certificate), None without one."""
        p = self._peer
        if p is False:
            der = self.obj.getpeercert(binary_form=True)
            if der is None:
                p = None
            else:
                from cryptography import x509
                p = x509.load_der_x509_certificate(der)
            self._peer = p
        return p

    def client_verify(self) -> str:
        """nginx's ``$ssl_client_verify``: NONE, SUCCESS or FAILED:<reason>."""
        if self.obj.getpeercert(binary_form=True) is None:
            return "NONE"
        code = native.verify_result(self.obj)
        return "SUCCESS" if code == 0 else "FAILED:" + native.verify_error(code)

    def refused(self, table: SniTable, host: str, uri: str) -> bool:
        """APISIX's ``verify_https_client``: a request answered 400 because it needs a
        client certificate it does not have.  (1) The object the handshake chose has
        ``skip_mtls_uri_regex`` and ``uri`` is not in it: the certificate must have been
        verified.  (2) The object the Host header names asks for client certificates:
        the handshake must have been made for that same name (no other SNI, no
        certificate checked for one host and used for another)."""
        e = self.entry
        if e is not None:
            c = e.client
            if c is not None and c.skip is not None and not c.skips(uri):
                verdict = self.client_verify()
                if verdict != "SUCCESS":
                    if verdict == "NONE":
                        log.error("client certificate was not present")
                    else:
                        log.error("client certificate verification is not passed: %s",
                                  verdict)
                    return True
        h = table.find(host)
        if h is not None and h.client is not None and self.sni != host:
            log.error("client certificate verified with SNI %s, but the host is %s",
                      self.sni, host)
            return True
        return False


def tls_conn(transport: Any) -> TlsConn | None:
    """The TLS facts of a connection (None when the transport is not TLS)."""
    obj = transport.get_extra_info("ssl_object")
    return TlsConn(obj) if obj is not None else None


# ------------------------------------------------------------------ $ssl_* variables
def _verify(c: TlsConn) -> str:
    return c.client_verify()


def _peer_attr(f: Callable[[Any], str | None]) -> Callable[[TlsConn], str | None]:
    def get(c: TlsConn) -> str | None:
        p = c.peer()
        return f(p) if p is not None else None
    return get


def _pem(p: Any) -> str:
    return str(p.public_bytes(Encoding.PEM).decode())


def _session_id(c: TlsConn) -> str | None:
    s = c.obj.session
    return s.id.hex() if s is not None else None


def _cipher(c: TlsConn) -> str | None:
    ci = c.obj.cipher()
    return ci[0] if ci else None


def _remain(p: Any) -> str:
    import time
    return str(max(int((p.not_valid_after_utc.timestamp() - time.time()) // 86400), 0))


#: nginx's ``$ssl_*`` of a TLS connection (None on plain HTTP)
SSL_VARS: dict[str, Callable[[TlsConn], str | None]] = {
    "ssl_server_name": lambda c: c.server_name,
    "ssl_protocol": lambda c: c.obj.version(),
    "ssl_cipher": _cipher,
    "ssl_alpn_protocol": lambda c: c.alpn or "",
    "ssl_session_reused": lambda c: "r" if c.obj.session_reused else ".",
    "ssl_session_id": _session_id,
    "ssl_client_verify": _verify,
    "ssl_client_s_dn": _peer_attr(lambda p: p.subject.rfc4514_string()),
    "ssl_client_i_dn": _peer_attr(lambda p: p.issuer.rfc4514_string()),
    "ssl_client_serial": _peer_attr(lambda p: format(p.serial_number, "X")),
    "ssl_client_fingerprint": _peer_attr(
        lambda p: hashlib.sha1(p.public_bytes(Encoding.DER)).hexdigest()),
    "ssl_client_v_start": _peer_attr(
        lambda p: p.not_valid_before_utc.strftime("%b %d %H:%M:%S %Y GMT")),
    "ssl_client_v_end": _peer_attr(
        lambda p: p.not_valid_after_utc.strftime("%b %d %H:%M:%S %Y GMT")),
    "ssl_client_v_remain": _peer_attr(_remain),
    "ssl_client_raw_cert": _peer_attr(_pem),
    "ssl_client_escaped_cert": _peer_attr(lambda p: quote(_pem(p), safe="")),
}
