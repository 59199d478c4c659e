"""Password hashing (argon2id, off the event loop) and the password policy."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .blocklist import is_common_password

MIN_LENGTH = 8
MAX_LENGTH = 128

# OWASP floor for argon2id (19 MiB, t=2, p=1): ~35 ms here, so login stays cheap under load.
HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, type=Type.ID)

# Bounded: every concurrent hash holds memory_cost KiB; the C code releases the GIL.
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")


class PasswordPolicyError(ValueError):
    """The password is refused; the message says why (never echoes it)."""


def check_password_policy(password: str) -> None:
    """8-128 characters, not a common password; no composition rules, no normalisation."""
    if len(password) < MIN_LENGTH:
        raise PasswordPolicyError(f"Use at least {MIN_LENGTH} characters.")
    if len(password) > MAX_LENGTH:
        raise PasswordPolicyError(f"Use at most {MAX_LENGTH} characters.")
    if is_common_password(password):
        raise PasswordPolicyError("This password is too common; choose another one.")


async def hash_password(password: str, hasher: PasswordHasher = HASHER) -> str:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_POOL, hasher.hash, password)


def _verify(hasher: PasswordHasher, stored: str, password: str) -> bool:
    try:
        return hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_password(stored: str, password: str, hasher: PasswordHasher = HASHER) -> bool:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_POOL, _verify, hasher, stored, password)


def needs_rehash(stored: str, hasher: PasswordHasher = HASHER) -> bool:
    try:
        return hasher.check_needs_rehash(stored)
    except InvalidHashError:
        return True


@lru_cache(maxsize=1)
def dummy_hash() -> str:
    """A hash to verify against when the email is unknown, so both paths cost the same."""
    return HASHER.hash("not-a-real-password: timing equaliser")
