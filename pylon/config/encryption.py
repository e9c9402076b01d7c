"""Secret fields encrypted at rest, as APISIX's ``data_encryption`` does it.

Which fields are secret: each plugin's ``encrypt_fields`` (its module; dotted paths), read by
``pylon.proxy.registry.Registry.map_secrets``, and the resources' own fields in
``RESOURCE_SECRET_FIELDS``.  The same declarations drive encryption here and masking in the
audit log and for viewer keys (``pylon.admin.audit.mask_secrets``).

AES-128-CBC with PKCS#7 padding, key and IV both the 16-byte keyring entry, base64 of the
ciphertext -- the format APISIX writes, so an etcd data set holding APISIX-encrypted SSL keys
loads unchanged (given the same keyring), and the other way round.  Encryption uses the
first keyring entry; decryption tries each one, so keys can be rotated by putting a new one
first.  A value that still looks like PEM (``-----BEGIN``) is plaintext and is passed
through by ``decrypt``.

Pylon has no built-in keyring: without ``apisix.data_encryption.keyring`` a random one is
generated at first start into ``conf/keyring`` (mode 0600).  Nodes sharing an etcd must be
given the same keyring in their node config.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..errors import ConfigError

log = logging.getLogger("pylon.config")


#: secrets that are fields of a resource rather than of a plugin (dotted paths, by kind):
#: masked wherever configurations are shown; SSL private keys are also encrypted at rest
RESOURCE_SECRET_FIELDS: dict[str, tuple[str, ...]] = {
    "ssls": ("key", "keys"),
    "upstreams": ("tls.client_key",),
    "routes": ("upstream.tls.client_key",),
    "services": ("upstream.tls.client_key",),
    "stream_routes": ("upstream.tls.client_key",),
    "secrets": ("token", "secret_access_key", "session_token", "auth_config.private_key"),
}


class Keyring:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ConfigError("the keyring needs at least one key", "data_encryption.keyring")
        for i, k in enumerate(keys):
            if len(k.encode()) != 16:
                raise ConfigError("each key must be exactly 16 bytes (AES-128)",
                                  f"data_encryption.keyring[{i}]")
        self.keys = [k.encode() for k in keys]

    def encrypt(self, plain: str) -> str:
        k = self.keys[0]
        padder = padding.PKCS7(128).padder()
        data = padder.update(plain.encode()) + padder.finalize()
        enc = Cipher(algorithms.AES(k), modes.CBC(k)).encryptor()
        return base64.b64encode(enc.update(data) + enc.finalize()).decode()

    def decrypt(self, stored: str) -> str:
        """The plaintext of ``stored`` (raises ValueError when no key opens it)."""
        if stored.lstrip().startswith("-----"):
            return stored
        try:
            raw = base64.b64decode(stored, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not base64 and not PEM") from None
        if not raw or len(raw) % 16:
            raise ValueError("ciphertext length is not a multiple of the AES block")
        for k in self.keys:
            dec = Cipher(algorithms.AES(k), modes.CBC(k)).decryptor()
            unpadder = padding.PKCS7(128).unpadder()
            try:
                data = unpadder.update(dec.update(raw) + dec.finalize()) + unpadder.finalize()
                return data.decode()
            except (ValueError, UnicodeDecodeError):
                continue
        raise ValueError("no keyring entry decrypts it")

    def open(self, value: Any) -> Any:
        """``value`` decrypted; one that does not decrypt (plain text written by hand or by
        a node without encryption, a non-string) is returned as it is."""
        if not isinstance(value, str):
            return value
        try:
            return self.decrypt(value)
        except ValueError:
            return value

    def seal(self, value: Any) -> Any:
        """``value`` encrypted; one this keyring already opens (and non-strings) is kept."""
        if not isinstance(value, str):
            return value
        if not value.lstrip().startswith("-----"):     # PEM passes decrypt as it is
            try:
                self.decrypt(value)
                return value
            except ValueError:
                pass
        return self.encrypt(value)

    def seal_ssl(self, value: dict[str, Any]) -> dict[str, Any]:
        """An ssl object with its private key(s) encrypted (already encrypted ones kept)."""
        out = dict(value)
        if isinstance(out.get("key"), str) and out["key"].lstrip().startswith("-----"):
            out["key"] = self.encrypt(out["key"])
        if isinstance(out.get("keys"), list):
            out["keys"] = [self.encrypt(k) if isinstance(k, str) and
                           k.lstrip().startswith("-----") else k for k in out["keys"]]
        return out


def node_keyring(configured: Sequence[str] | None, prefix: str) -> Keyring:
    """The configured keyring, else the node's generated one (created on first use)."""
    if configured:
        return Keyring(configured)
    path = os.path.join(prefix, "conf", "keyring")
    try:
        with open(path, encoding="utf-8") as f:
            keys = [ln.strip() for ln in f if ln.strip()]
        return Keyring(keys)
    except FileNotFoundError:
        pass
    key = secrets.token_hex(8)                   # 16 characters
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    log.warning("generated the data encryption keyring %s; nodes sharing a config store "
                "need the same apisix.data_encryption.keyring", path)
    return Keyring([key])
