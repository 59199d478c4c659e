"""Two-step sign-in with time-based one-time codes (RFC 6238; checklist row 31).

Codes come from `cryptography.hazmat.primitives.twofactor.totp` (6 digits, SHA-1, 30 s,
what every authenticator app speaks); no extra dependency. The 160-bit secret is stored
sealed with AES-256-GCM under a subkey of the server's encryption key (HKDF, its own
purpose) and bound to the user by the associated data, like the Anthropic keys
(cloud_server/crypto.py). One step of clock drift is accepted each way, and a step once
used is never accepted again (replay).
"""

from __future__ import annotations

import base64
import secrets
import time

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA1, SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.twofactor import InvalidToken
from cryptography.hazmat.primitives.twofactor.totp import TOTP

from ..server_secrets import KeyRing

STEP_SECONDS = 30
DIGITS = 6
ISSUER = "Home Mind"
_PURPOSE = b"homemind/totp-secret/v1"
_VERSION = "totp1"


class SealError(ValueError):
    pass


def new_secret() -> bytes:
    return secrets.token_bytes(20)


def secret_text(secret: bytes) -> str:
    """The base32 form people type into an authenticator app."""
    return base64.b32encode(secret).decode().rstrip("=")


def _totp(secret: bytes) -> TOTP:
    # SHA-1 is RFC 6238's default and the one authenticator apps all support (an HMAC).
    return TOTP(secret, DIGITS, SHA1(), STEP_SECONDS)  # noqa: S303  # nosec B303 (RFC 6238 HMAC-SHA1, see docs/hardening.md)


def provisioning_uri(secret: bytes, email: str) -> str:
    return _totp(secret).get_provisioning_uri(email, ISSUER)


def code_at(secret: bytes, when: float) -> str:
    return _totp(secret).generate(int(when)).decode()


def _key(ring: KeyRing, kid: str) -> bytes:
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=_PURPOSE).derive(ring.keys[kid])


def seal(ring: KeyRing, user_id: str, secret: bytes) -> str:
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(_key(ring, ring.active_kid)).encrypt(nonce, secret, f"totp|{user_id}".encode())
    payload = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
    return f"{_VERSION}.{ring.active_kid}.{payload}"


def unseal(ring: KeyRing, user_id: str, value: str) -> bytes:
    try:
        version, kid, payload = value.split(".")
        if version != _VERSION or kid not in ring.keys:
            raise SealError("unknown sealed value")
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        return AESGCM(_key(ring, kid)).decrypt(raw[:12], raw[12:], f"totp|{user_id}".encode())
    except (ValueError, InvalidTag) as err:
        raise SealError("the sealed secret cannot be opened") from err


def verify(secret: bytes, code: str, last_step: int | None, now: float | None = None) -> int | None:
    """The time step the code belongs to (now, or one step either side), or None.

    A step at or before `last_step` is refused: each code works once.
    """
    code = code.strip().replace(" ", "")
    if not code.isdigit() or len(code) != DIGITS:
        return None
    moment = time.time() if now is None else now
    current = int(moment) // STEP_SECONDS
    for step in (current, current - 1, current + 1):
        if last_step is not None and step <= last_step:
            continue
        try:
            _totp(secret).verify(code.encode(), step * STEP_SECONDS)
        except InvalidToken:
            continue
        return step
    return None
