"""Secret fields at rest: APISIX's data_encryption format (AES-128-CBC, key = IV)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pylon.config.encryption import Keyring, node_keyring
from pylon.errors import ConfigError

PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"


def openssl(args: list[str], data: bytes) -> bytes:
    return subprocess.run(["openssl", "enc", *args], input=data, capture_output=True,
                          check=True).stdout


def test_ciphertext_is_what_openssl_produces_with_key_as_iv() -> None:
    kr = Keyring(["edd1c9f0985e76a2"])
    hexkey = b"edd1c9f0985e76a2".hex()
    want = openssl(["-aes-128-cbc", "-K", hexkey, "-iv", hexkey, "-base64", "-A"],
                   PEM.encode()).decode().strip()
    assert kr.encrypt(PEM) == want
    assert openssl(["-d", "-aes-128-cbc", "-K", hexkey, "-iv", hexkey, "-base64", "-A"],
                   want.encode()).decode() == PEM


def test_rotation_decrypts_with_any_key_and_encrypts_with_the_first() -> None:
    old = Keyring(["qeddd145sfvddff3"])
    sealed = old.encrypt(PEM)
    both = Keyring(["0123456789abcdef", "qeddd145sfvddff3"])
    assert both.decrypt(sealed) == PEM
    assert both.encrypt(PEM) != sealed
    with pytest.raises(ValueError):
        Keyring(["0123456789abcdef"]).decrypt(sealed)
    assert both.decrypt(PEM) == PEM                        # plaintext passes through


def test_ssl_keys_are_sealed_once() -> None:
    kr = Keyring(["0123456789abcdef"])
    sealed = kr.seal_ssl({"cert": "C", "key": PEM, "keys": [PEM, "already"]})
    assert sealed["cert"] == "C" and kr.decrypt(sealed["key"]) == PEM
    assert kr.decrypt(sealed["keys"][0]) == PEM and sealed["keys"][1] == "already"
    assert kr.seal_ssl(sealed) == sealed


def test_keys_must_be_16_bytes_and_a_node_keyring_is_generated_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        Keyring(["short"])
    assert e.value.path == "data_encryption.keyring[0]"
    a = node_keyring(None, str(tmp_path))
    b = node_keyring(None, str(tmp_path))
    assert a.keys == b.keys and len(a.keys[0]) == 16
    assert (tmp_path / "conf" / "keyring").stat().st_mode & 0o777 == 0o600
    assert node_keyring(["fedcba9876543210"], str(tmp_path)).keys == [b"fedcba9876543210"]
