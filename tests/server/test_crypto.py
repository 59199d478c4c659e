"""AES-256-GCM for stored Anthropic keys (docs/security-checklist.md rows 11 and 33)."""

from __future__ import annotations

import base64

import pytest

from cloud_server.crypto import (
    DecryptionError,
    decrypt_api_key,
    encrypt_api_key,
    envelope_kid,
    reencrypt_api_key,
)
from cloud_server.server_secrets import parse_encryption_keys

KEY_A = base64.b64encode(b"A" * 32).decode()
KEY_B = base64.b64encode(b"B" * 32).decode()
SECRET = "sk-ant-test-fake"


def ring(value: str = KEY_A):
    return parse_encryption_keys(value)


def test_round_trip_and_envelope_format():
    r = ring()
    value = encrypt_api_key(r, SECRET, user_id="u1", installation_id="i1")
    version, kid, payload = value.split(".")
    assert version == "gcm1" and kid == r.active_kid
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    assert len(raw) == 12 + len(SECRET) + 16  # nonce | ciphertext | tag
    assert SECRET not in value
    assert decrypt_api_key(r, value, user_id="u1", installation_id="i1") == SECRET


def test_every_tampered_byte_fails():
    r = ring()
    value = encrypt_api_key(r, SECRET, user_id="u1", installation_id="i1")
    prefix, payload = value.rsplit(".", 1)
    raw = bytearray(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    for index in range(len(raw)):
        changed = bytearray(raw)
        changed[index] ^= 0x01
        tampered = prefix + "." + base64.urlsafe_b64encode(bytes(changed)).decode().rstrip("=")
        with pytest.raises(DecryptionError):
            decrypt_api_key(r, tampered, user_id="u1", installation_id="i1")


@pytest.mark.parametrize(("user", "installation"), [("u2", "i1"), ("u1", "i2"), ("u2", "i2")])
def test_value_moved_to_another_owner_fails(user, installation):
    r = ring()
    value = encrypt_api_key(r, SECRET, user_id="u1", installation_id="i1")
    with pytest.raises(DecryptionError):
        decrypt_api_key(r, value, user_id=user, installation_id=installation)


def test_fresh_nonce_every_time():
    r = ring()
    nonces = {
        base64.urlsafe_b64decode(v.split(".")[2] + "==")[:12]
        for v in (
            encrypt_api_key(r, SECRET, user_id="u", installation_id="i") for _ in range(10_000)
        )
    }
    assert len(nonces) == 10_000


def test_unknown_kid_and_garbage_are_clear_errors():
    value = encrypt_api_key(ring(KEY_A), SECRET, user_id="u", installation_id="i")
    with pytest.raises(DecryptionError, match="not configured") as caught:
        decrypt_api_key(ring(KEY_B), value, user_id="u", installation_id="i")
    assert KEY_B not in str(caught.value) and SECRET not in str(caught.value)
    for garbage in ["", "plain", "gcm1.x", "gcm2.k.abc", f"gcm1.{ring().active_kid}.!!!"]:
        with pytest.raises(DecryptionError):
            decrypt_api_key(ring(), garbage, user_id="u", installation_id="i")


def test_reencrypt_moves_to_active_key_and_is_idempotent():
    old = encrypt_api_key(ring(KEY_A), SECRET, user_id="u", installation_id="i")
    both = ring(f"{KEY_B},{KEY_A}")
    moved = reencrypt_api_key(both, old, user_id="u", installation_id="i")
    assert envelope_kid(moved) == both.active_kid != envelope_kid(old)
    assert reencrypt_api_key(both, moved, user_id="u", installation_id="i") == moved
    assert decrypt_api_key(ring(KEY_B), moved, user_id="u", installation_id="i") == SECRET
