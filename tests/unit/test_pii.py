"""Tests for encryption, blind indexes and masking of personal data in shared.pii."""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.exceptions import InvalidTag

from shared.pii import PiiCipher, cipher_for, mask_id_number, mask_phone
from shared.settings import ServiceSettings

ID_NUMBER = "530129197503121239"
PHONE = "13812345678"


@pytest.fixture
def key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def hash_key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def cipher(key: bytes, hash_key: bytes) -> PiiCipher:
    return PiiCipher({"k1": key}, "k1", hash_key)


def test_round_trip(cipher: PiiCipher) -> None:
    for text in (ID_NUMBER, PHONE, "张三 云南省昆明市", ""):
        token = cipher.encrypt(text, purpose="id_number")
        assert cipher.decrypt(token, purpose="id_number") == text


def test_token_names_the_active_key(cipher: PiiCipher) -> None:
    assert cipher.encrypt(PHONE, purpose="phone").startswith("k1:")


def test_ciphertext_is_random_and_hides_the_plaintext(cipher: PiiCipher) -> None:
    first = cipher.encrypt(ID_NUMBER, purpose="id_number")
    second = cipher.encrypt(ID_NUMBER, purpose="id_number")
    assert first != second
    for token in (first, second):
        assert ID_NUMBER not in token
        assert ID_NUMBER[-4:] + ID_NUMBER[:3] not in token
        raw = base64.b64decode(token.partition(":")[2])
        assert ID_NUMBER.encode() not in raw
        # nonce + ciphertext + 16-byte tag
        assert len(raw) == 12 + len(ID_NUMBER) + 16
    # different nonces
    assert base64.b64decode(first[3:])[:12] != base64.b64decode(second[3:])[:12]


def test_decrypting_with_another_purpose_fails(cipher: PiiCipher) -> None:
    token = cipher.encrypt(PHONE, purpose="phone")
    with pytest.raises(InvalidTag):
        cipher.decrypt(token, purpose="id_number")


def test_decrypting_with_another_key_fails(cipher: PiiCipher, hash_key: bytes) -> None:
    token = cipher.encrypt(PHONE, purpose="phone")
    other = PiiCipher({"k1": os.urandom(32)}, "k1", hash_key)
    with pytest.raises(InvalidTag):
        other.decrypt(token, purpose="phone")


def test_old_key_still_decrypts_after_rotation(key: bytes, hash_key: bytes) -> None:
    old = PiiCipher({"old": key}, "old", hash_key)
    token = old.encrypt(ID_NUMBER, purpose="id_number")

    rotated = PiiCipher({"old": key, "new": os.urandom(32)}, "new", hash_key)
    assert rotated.decrypt(token, purpose="id_number") == ID_NUMBER

    fresh = rotated.encrypt(ID_NUMBER, purpose="id_number")
    assert fresh.startswith("new:")
    assert rotated.decrypt(fresh, purpose="id_number") == ID_NUMBER
    # the old-only cipher does not hold the new key
    with pytest.raises(KeyError):
        old.decrypt(fresh, purpose="id_number")


@pytest.mark.parametrize("position", [0, 12, -1])
def test_tampered_ciphertext_fails(cipher: PiiCipher, position: int) -> None:
    token = cipher.encrypt(ID_NUMBER, purpose="id_number")
    key_id, _, body = token.partition(":")
    raw = bytearray(base64.b64decode(body))
    raw[position] ^= 0x01
    tampered = f"{key_id}:{base64.b64encode(bytes(raw)).decode()}"
    with pytest.raises(InvalidTag):
        cipher.decrypt(tampered, purpose="id_number")


def test_truncated_ciphertext_fails(cipher: PiiCipher) -> None:
    token = cipher.encrypt(ID_NUMBER, purpose="id_number")
    key_id, _, body = token.partition(":")
    short = f"{key_id}:{base64.b64encode(base64.b64decode(body)[:-1]).decode()}"
    with pytest.raises(InvalidTag):
        cipher.decrypt(short, purpose="id_number")


def test_blind_index_is_deterministic(cipher: PiiCipher) -> None:
    first = cipher.blind_index(ID_NUMBER, purpose="id_number")
    assert first == cipher.blind_index(ID_NUMBER, purpose="id_number")
    assert len(first) == 64
    int(first, 16)  # hex
    assert ID_NUMBER not in first
    assert first != cipher.blind_index("11010519491231002X", purpose="id_number")


def test_blind_index_differs_by_purpose(cipher: PiiCipher) -> None:
    assert cipher.blind_index(PHONE, purpose="phone") != cipher.blind_index(
        PHONE, purpose="id_number"
    )


def test_blind_index_differs_by_hash_key(key: bytes) -> None:
    one = PiiCipher({"k1": key}, "k1", b"a" * 32)
    two = PiiCipher({"k1": key}, "k1", b"b" * 32)
    assert one.blind_index(PHONE, purpose="phone") != two.blind_index(PHONE, purpose="phone")


def test_blind_index_does_not_depend_on_the_encryption_key(hash_key: bytes) -> None:
    one = PiiCipher({"k1": os.urandom(32)}, "k1", hash_key)
    two = PiiCipher({"k2": os.urandom(32)}, "k2", hash_key)
    assert one.blind_index(PHONE, purpose="phone") == two.blind_index(PHONE, purpose="phone")


def test_mask_id_number() -> None:
    assert mask_id_number("530129197503121239") == "530***********1239"
    assert mask_id_number("11010519491231002X") == "110***********002X"


def test_mask_phone() -> None:
    assert mask_phone("13812345678") == "138****5678"


@pytest.mark.parametrize("value", ["", "1", "123", "1234567"])
def test_short_values_are_fully_masked(value: str) -> None:
    assert mask_phone(value) == "*" * len(value)
    assert mask_id_number(value) == "*" * len(value)


def test_shortest_value_that_keeps_head_and_tail() -> None:
    assert mask_phone("12345678") == "123*5678"


@pytest.mark.parametrize("length", [0, 8, 15, 31, 33, 64])
def test_bad_key_length_is_refused(length: int, hash_key: bytes) -> None:
    with pytest.raises(ValueError, match="16, 24 or 32 bytes"):
        PiiCipher({"k1": os.urandom(length)}, "k1", hash_key)


@pytest.mark.parametrize("length", [16, 24, 32])
def test_aes_key_lengths_are_accepted(length: int, hash_key: bytes) -> None:
    cipher = PiiCipher({"k1": os.urandom(length)}, "k1", hash_key)
    assert cipher.decrypt(cipher.encrypt(PHONE, purpose="p"), purpose="p") == PHONE


def test_key_id_with_colon_is_refused(key: bytes, hash_key: bytes) -> None:
    with pytest.raises(ValueError, match="':'"):
        PiiCipher({"k:1": key}, "k:1", hash_key)


def test_cipher_for_dev_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "RELIEF_ENV",
        "RELIEF_PII_KEYS",
        "RELIEF_PII_ACTIVE_KEY_ID",
        "RELIEF_PII_HASH_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = ServiceSettings()
    cipher = cipher_for(settings)
    token = cipher.encrypt(PHONE, purpose="phone")
    assert token.startswith(f"{settings.pii_active_key_id}:")
    assert cipher.decrypt(token, purpose="phone") == PHONE
    # the same settings give a cipher that reads the same data and finds the same index
    again = cipher_for(ServiceSettings())
    assert again.decrypt(token, purpose="phone") == PHONE
    assert again.blind_index(PHONE, purpose="phone") == cipher.blind_index(PHONE, purpose="phone")
