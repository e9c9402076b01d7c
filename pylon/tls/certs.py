"""Certificates and keys as APISIX stores them (PEM text): checks, facts, loading.

* ``check_ssl_conf``: what APISIX's ``apisix.ssl.check_ssl_conf`` refuses after the schema
  (its messages), plus a key that does not belong to its certificate (APISIX leaves that to
  the first handshake);
* ``facts``: subject, SANs, serial, validity of a certificate (expiry gauge, Control API);
* ``load_chain``: a PEM certificate chain and key into an ``SSLContext``.  Python's ``ssl``
  loads them only from files, so they go through a private directory on a memory file
  system (``/dev/shm`` where there is one) for the duration of the call: a private key never
  touches a disk.
"""

from __future__ import annotations

import datetime
import functools
import os
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

#: opens a stored secret (the node's keyring: an encrypted private key -> its PEM text)
Opener = Callable[[Any], Any]

_CERT_ERR = "PEM_read_bio_X509_AUX() failed"
_KEY_ERR = "PEM_read_bio_PrivateKey() failed"


def is_pem(value: Any) -> bool:
    return isinstance(value, str) and value.lstrip().startswith("-----BEGIN")


@functools.lru_cache(maxsize=4096)
def parse_certs(pem: str) -> tuple[x509.Certificate, ...]:
    """The certificates of a PEM chain, leaf first (ValueError when there is none)."""
    return tuple(x509.load_pem_x509_certificates(pem.encode()))


def _parse_key(pem: str) -> Any:
    return serialization.load_pem_private_key(pem.encode(), password=None)


def _validate(cert: Any, key: Any) -> str | None:
    """APISIX's ``validate(cert, key)``: the cert parses, then the key (if given)."""
    if not isinstance(cert, str):
        return f"failed to parse cert: {_CERT_ERR}"
    if not is_pem(cert):
        return None                         # a $secret:// / $env:// reference
    try:
        certs = parse_certs(cert)
    except ValueError:
        return f"failed to parse cert: {_CERT_ERR}"
    if key is None or not is_pem(key):      # no key, or stored encrypted (checked at write)
        return None
    try:
        pkey = _parse_key(key)
    except (ValueError, TypeError):
        return f"failed to parse key: {_KEY_ERR}"
    if certs[0].public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != \
            pkey.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo):
        return "failed to handle cert-key pair: the key does not match the certificate"
    return None


def check_ssl_conf(conf: dict[str, Any]) -> str | None:
    """The first thing APISIX refuses in an ssl object that passed its schema, or None."""
    for field in ("cert", "key", "certs", "keys"):
        v = conf.get(field)
        for item in v if isinstance(v, list) else [v]:
            if isinstance(item, str) and item.startswith("$secret://"):
                return (f"{field}: $secret:// references in ssl objects are not supported "
                        "yet (use PEM text or $env://)")
    err = _validate(conf.get("cert"), conf.get("key"))
    if err is not None:
        return err
    if conf.get("type") == "client":
        return None
    certs = conf.get("certs") or []
    keys = conf.get("keys") or []
    if len(certs) != len(keys):
        return "mismatched number of certs and keys"
    for i, (c, k) in enumerate(zip(certs, keys, strict=True)):
        err = _validate(c, k)
        if err is not None:
            return f"failed to handle cert-key pair[{i + 1}]: {err}"
    client = conf.get("client")
    if isinstance(client, dict):
        from .native import available
        if not available():
            return "client tls verify unsupported"
        err = _validate(client.get("ca"), None)
        if err is not None:
            return f"failed to validate client_cert: {err}"
    return None


# ------------------------------------------------------------------------------ facts
@dataclass(frozen=True, slots=True)
class CertFacts:
    subject: str
    issuer: str
    serial: str
    not_before: float         # epoch seconds
    not_after: float
    sans: tuple[str, ...]
    key_type: str             # "RSA-2048", "EC-secp256r1", ...

    def as_dict(self, now: float) -> dict[str, Any]:
        return {"subject": self.subject, "issuer": self.issuer, "serial": self.serial,
                "not_before": int(self.not_before), "not_after": int(self.not_after),
                "expires_in": int(self.not_after - now), "sans": list(self.sans),
                "key_type": self.key_type}


def _key_type(cert: x509.Certificate) -> str:
    k = cert.public_key()
    if isinstance(k, rsa.RSAPublicKey):
        return f"RSA-{k.key_size}"
    if isinstance(k, ec.EllipticCurvePublicKey):
        return f"EC-{k.curve.name}"
    if isinstance(k, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(k, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(k, dsa.DSAPublicKey):
        return f"DSA-{k.key_size}"
    return type(k).__name__


def _stamp(t: datetime.datetime) -> float:
    return t.timestamp()


@functools.lru_cache(maxsize=4096)
def facts(pem: str) -> CertFacts | None:
    """What a certificate (the leaf of a PEM chain) says; None when it does not parse."""
    try:
        cert = parse_certs(pem)[0]
    except ValueError:
        return None
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        sans = tuple(str(n) for n in ext.value.get_values_for_type(x509.DNSName)) + \
            tuple(str(n) for n in ext.value.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        sans = ()
    return CertFacts(cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(),
                     format(cert.serial_number, "X"),
                     _stamp(cert.not_valid_before_utc), _stamp(cert.not_valid_after_utc),
                     sans, _key_type(cert))


# ------------------------------------------------------------------------------ loading
def _secret_dir() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) \
        else None


def load_chain(ctx: ssl.SSLContext, cert: str, key: str) -> None:
    """Load a certificate chain and its private key given as PEM text (or as file paths,
    as the node config gives them).  Raises ``ssl.SSLError`` / ``ValueError``."""
    if not is_pem(cert):
        ctx.load_cert_chain(cert, key)
        return
    with tempfile.TemporaryDirectory(prefix="pylon-tls-", dir=_secret_dir()) as d:
        cp, kp = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
        for path, text in ((cp, cert), (kp, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
        ctx.load_cert_chain(cp, kp)
