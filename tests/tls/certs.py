"""Certificates made for a test (the cryptography library): a CA, server certificates
(RSA or ECDSA P-256, any names), client certificates signed by the CA."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


@dataclass
class Pem:
    cert: str
    key: str
    serial: str
    subject: str

    def files(self, d: str, name: str) -> tuple[str, str]:
        """The pair written as ``name.crt`` / ``name.key`` under ``d``."""
        cp, kp = os.path.join(d, name + ".crt"), os.path.join(d, name + ".key")
        with open(cp, "w") as f:
            f.write(self.cert)
        with open(kp, "w") as f:
            f.write(self.key)
        return cp, kp


class CA:
    def __init__(self, cn: str = "Pylon Test CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (x509.CertificateBuilder().subject_name(self.name).issuer_name(self.name)
                     .public_key(self.key.public_key())
                     .serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=365))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                     .sign(self.key, hashes.SHA256()))
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def issue(self, cn: str, sans: list[str] | None = None, kind: str = "ec",
              days: int = 90, client: bool = False) -> Pem:
        key = ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else \
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.datetime.now(datetime.UTC)
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
             .issuer_name(self.name).public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(days=1))
             .not_valid_after(now + datetime.timedelta(days=days))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), True))
        if not client:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(s) for s in (sans or [cn])]), False)
        cert = b.sign(self.key, hashes.SHA256())
        return Pem(cert.public_bytes(serialization.Encoding.PEM).decode(),
                   key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode(),
                   format(cert.serial_number, "X"), cert.subject.rfc4514_string())
