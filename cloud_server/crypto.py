"""AES-256-GCM encryption of users' Anthropic keys at rest.

Stored value: ``gcm1.<kid>.<base64url(nonce(12) | ciphertext | tag(16))>`` — the plan's
``base64(iv + ciphertext + tag)`` behind a version and the id of the master key, so
`homemind-server rotate-encryption-key` can move every row to a new key.

Each master key is narrowed to this one purpose with HKDF, and the associated data
binds a value to its user and installation: a ciphertext copied onto another row
does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .server_secrets import KeyRing

VERSION = "gcm1"
NONCE_BYTES = 12
_PURPOSE = b"homemind/anthropic-api-key/v1"


class DecryptionError(Exception):
    """The value cannot be decrypted here (tampered, moved, or its key is gone).

    The message never contains the value or any key material.
    """


def _subkey(master: bytes) -> bytes:
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=_PURPOSE).derive(master)


def associated_data(user_id: str, installation_id: str) -> bytes:
    return f"anthropic_api_key|v1|user:{user_id}|installation:{installation_id}".encode()


def encrypt_api_key(ring: KeyRing, plaintext: str, *, user_id: str, installation_id: str) -> str:
    """Encrypt with the ring's active key and a fresh random 96-bit nonce."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = AESGCM(_subkey(ring.active)).encrypt(
        nonce, plaintext.encode(), associated_data(user_id, installation_id)
    )
    payload = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
    return f"{VERSION}.{ring.active_kid}.{payload}"


def envelope_kid(value: str) -> str:
    """The id of the master key a stored value needs."""
    parts = value.split(".")
    if len(parts) != 3 or parts[0] != VERSION:
        raise DecryptionError("unknown encrypted value format")
    return parts[1]


def decrypt_api_key(ring: KeyRing, value: str, *, user_id: str, installation_id: str) -> str:
    kid = envelope_kid(value)
    key = ring.keys.get(kid)
    if key is None:
        raise DecryptionError(f"encryption key {kid!r} is not configured")
    payload = value.split(".")[2]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    except (binascii.Error, ValueError) as err:
        raise DecryptionError("malformed encrypted value") from err
    if len(raw) < NONCE_BYTES + 16:
        raise DecryptionError("malformed encrypted value")
    try:
        plain = AESGCM(_subkey(key)).decrypt(
            raw[:NONCE_BYTES], raw[NONCE_BYTES:], associated_data(user_id, installation_id)
        )
    except InvalidTag as err:
        raise DecryptionError("encrypted value failed authentication") from err
    return plain.decode()


def reencrypt_api_key(ring: KeyRing, value: str, *, user_id: str, installation_id: str) -> str:
    """The value under the active key; unchanged when it already uses it (idempotent)."""
    if envelope_kid(value) == ring.active_kid:
        return value
    plain = decrypt_api_key(ring, value, user_id=user_id, installation_id=installation_id)
    return encrypt_api_key(ring, plain, user_id=user_id, installation_id=installation_id)


def key_hint(api_key: str) -> str:
    """What the API may show of a key: its last four characters."""
    return api_key[-4:]
