"""Password hashing (argon2id, off the event loop) and the password policy."""

from __future__ import annotations

import asyncio
import contextlib
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
# Created on first use and shut down with the app (`shutdown`), so no thread outlives it.
_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool  # noqa: PLW0603 - one bounded pool per process
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")
    return _pool


async def shutdown() -> None:
    """Stop the argon2 threads (after the work in flight); the next use starts new ones."""
    global _pool
    pool, _pool = _pool, None
    if pool is not None:
        await asyncio.get_running_loop().run_in_executor(None, pool.shutdown, True)


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


# The only two places argon2 work is done: always on the argon2 pool, never on the event loop.
def _argon2_hash(hasher: PasswordHasher, password: str) -> str:
    return hasher.hash(password)


def _argon2_verify(hasher: PasswordHasher, stored: str, password: str) -> bool:
    return hasher.verify(stored, password)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # Computed in a pool thread (by `prepare` at start-up, or lazily by the first verify).
    return _argon2_hash(HASHER, "not-a-real-password: timing equaliser")


async def prepare() -> None:
    """Compute the dummy hash at start-up, off the event loop, before any login needs it."""
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(_executor(), _dummy_hash)


async def hash_password(password: str, hasher: PasswordHasher = HASHER) -> str:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor(), _argon2_hash, hasher, password)


def _verify(hasher: PasswordHasher, stored: str, password: str) -> bool:
    if not stored.startswith("$argon2"):
        # No argon2 hash at all (an account created without a password, `NO_PASSWORD`):
        # refuse, but only after the same work as a real check, so the timing matches.
        return _verify_dummy(hasher, password)
    try:
        return _argon2_verify(hasher, stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _verify_dummy(hasher: PasswordHasher, password: str) -> bool:
    with contextlib.suppress(VerifyMismatchError, VerificationError, InvalidHashError):
        _argon2_verify(hasher, _dummy_hash(), password)
    return False


async def verify_password(stored: str, password: str, hasher: PasswordHasher = HASHER) -> bool:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor(), _verify, hasher, stored, password)


async def verify_dummy(password: str, hasher: PasswordHasher = HASHER) -> bool:
    """Always False, after a full argon2 verify (unknown email): both paths cost the same."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor(), _verify_dummy, hasher, password)


def needs_rehash(stored: str, hasher: PasswordHasher = HASHER) -> bool:
    try:
        return hasher.check_needs_rehash(stored)
    except InvalidHashError:
        return True
