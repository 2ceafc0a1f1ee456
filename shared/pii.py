"""Personal data at rest: AES-GCM encryption with key ids (for rotation), a keyed hash for
look-ups, and masking for lists. ID numbers and phones never leave a service in plain text
except through an endpoint that shows one in full on purpose."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from functools import cache

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.settings import ServiceSettings

_NONCE_BYTES = 12


class PiiCipher:
    def __init__(self, keys: dict[str, bytes], active_key_id: str, hash_key: bytes) -> None:
        for key_id, key in keys.items():
            if len(key) not in (16, 24, 32):
                raise ValueError(f"PII key {key_id!r} must be 16, 24 or 32 bytes")
            if ":" in key_id:
                raise ValueError("PII key ids may not contain ':'")
        self._aead = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._active = active_key_id
        self._hash_key = hash_key

    def encrypt(self, plaintext: str, *, purpose: str) -> str:
        """`<key id>:<base64(nonce | ciphertext)>`; `purpose` is bound as associated data, so
        a phone's ciphertext cannot be passed off as an ID number's."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead[self._active].encrypt(nonce, plaintext.encode(), purpose.encode())
        return f"{self._active}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str, *, purpose: str) -> str:
        key_id, _, body = token.partition(":")
        raw = base64.b64decode(body)
        return (
            self._aead[key_id]
            .decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], purpose.encode())
            .decode()
        )

    def blind_index(self, value: str, *, purpose: str) -> str:
        """A keyed hash to find equal values without storing them."""
        return hmac.new(
            self._hash_key, f"{purpose}\x00{value}".encode(), hashlib.sha256
        ).hexdigest()


@cache
def _cipher(keys: tuple[tuple[str, str], ...], active: str, hash_key: str) -> PiiCipher:
    return PiiCipher(
        {key_id: base64.b64decode(key) for key_id, key in keys}, active, hash_key.encode()
    )


def cipher_for(settings: ServiceSettings) -> PiiCipher:
    return _cipher(
        tuple(sorted(settings.pii_keys.items())),
        settings.pii_active_key_id,
        settings.pii_hash_key.get_secret_value(),
    )


def _mask(value: str, *, keep_head: int = 3, keep_tail: int = 4) -> str:
    if len(value) <= keep_head + keep_tail:
        return "*" * len(value)
    return value[:keep_head] + "*" * (len(value) - keep_head - keep_tail) + value[-keep_tail:]


def mask_id_number(value: str) -> str:
    """530102199001011234 -> 530***********1234"""
    return _mask(value)


def mask_phone(value: str) -> str:
    """13812345678 -> 138****5678"""
    return _mask(value)
