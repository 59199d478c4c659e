"""Opaque tokens: installation tokens, refresh tokens, password-reset tokens.

Installation token: ``hm_`` + 55 random base62 characters (~327 bits) + 6 base62
characters of CRC32 over everything before them — 64 characters that secret scanners
can recognise and check offline, and that we can refuse before touching the database.
Only the SHA-256 of a token is ever stored.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import zlib

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
INSTALLATION_PREFIX = "hm_"
INSTALLATION_TOKEN_LENGTH = 64
_CHECKSUM_LENGTH = 6
_BODY_LENGTH = INSTALLATION_TOKEN_LENGTH - len(INSTALLATION_PREFIX) - _CHECKSUM_LENGTH
INSTALLATION_TOKEN_RE = re.compile(r"^hm_[0-9A-Za-z]{61}$")

REFRESH_PREFIX = "hmr_"
RESET_PREFIX = "hmp_"
_OPAQUE_RE = re.compile(r"^hm[rp]_[A-Za-z0-9_-]{43}$")


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(BASE62[rest])
    return "".join(reversed(digits)).rjust(width, "0")


def _checksum(text: str) -> str:
    return _base62(zlib.crc32(text.encode()), _CHECKSUM_LENGTH)


def new_installation_token() -> str:
    head = INSTALLATION_PREFIX + "".join(secrets.choice(BASE62) for _ in range(_BODY_LENGTH))
    return head + _checksum(head)


def is_well_formed_installation_token(token: str) -> bool:
    """Prefix, length, alphabet and checksum — no database needed."""
    if not INSTALLATION_TOKEN_RE.fullmatch(token):
        return False
    head, check = token[:-_CHECKSUM_LENGTH], token[-_CHECKSUM_LENGTH:]
    return secrets.compare_digest(_checksum(head), check)


def token_hint(token: str) -> str:
    """A recognisable, harmless form for lists: the prefix and the last four characters."""
    return f"{INSTALLATION_PREFIX}…{token[-4:]}"


def hash_token(token: str) -> str:
    """SHA-256 (hex): enough for high-entropy random tokens, and indexable."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_refresh_token() -> str:
    return REFRESH_PREFIX + secrets.token_urlsafe(32)


def new_reset_token() -> str:
    return RESET_PREFIX + secrets.token_urlsafe(32)


def is_well_formed_opaque(token: str, prefix: str) -> bool:
    return token.startswith(prefix) and bool(_OPAQUE_RE.fullmatch(token))
