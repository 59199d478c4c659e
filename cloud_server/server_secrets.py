"""The server's own secrets: the master encryption key(s) and the JWT signing key(s).

Hosted mode takes them from the environment and refuses to start without them.
Self-hosted mode generates them once into the data folder (mode 0600).

Both variables accept a comma-separated key ring, newest first: the first key signs
or encrypts, every listed key still verifies or decrypts (rotation). A key id is
derived from each key (a short hash), so values carry the id of the key they need.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .settings import Settings

SECRETS_FILE = "secrets.json"
ENCRYPTION_KEY_BYTES = 32
MIN_JWT_KEY_BYTES = 32


class ConfigError(Exception):
    """The server cannot start with this configuration; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class KeyRing:
    """Keys by id; `active_kid` is the one used for new values."""

    keys: dict[str, bytes]
    active_kid: str

    @property
    def active(self) -> bytes:
        return self.keys[self.active_kid]

    def __repr__(self) -> str:  # never show key material
        return f"KeyRing(kids={list(self.keys)}, active_kid={self.active_kid!r})"


@dataclass(frozen=True, slots=True)
class ServerSecrets:
    encryption: KeyRing
    jwt: KeyRing


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"homemind-kid:" + key).hexdigest()[:8]


def _ring(keys: list[bytes]) -> KeyRing:
    ordered = {key_id(k): k for k in keys}
    return KeyRing(keys=ordered, active_kid=key_id(keys[0]))


def parse_encryption_keys(value: str, variable: str = "ENCRYPTION_KEY") -> KeyRing:
    keys: list[bytes] = []
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        try:
            key = base64.b64decode(part, validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != ENCRYPTION_KEY_BYTES:
            raise ConfigError(
                f"{variable} must be {ENCRYPTION_KEY_BYTES} random bytes in base64 "
                "(e.g. the output of `openssl rand -base64 32`)"
            )
        keys.append(key)
    if not keys:
        raise ConfigError(f"{variable} is empty")
    return _ring(keys)


def parse_jwt_keys(value: str, variable: str = "JWT_SECRET") -> KeyRing:
    keys = [p.strip().encode() for p in value.split(",") if p.strip()]
    if not keys:
        raise ConfigError(f"{variable} is empty")
    if any(len(k) < MIN_JWT_KEY_BYTES for k in keys):
        raise ConfigError(f"{variable} must be at least {MIN_JWT_KEY_BYTES} bytes long")
    return _ring(keys)


def _load_or_create_file(data_dir: Path) -> dict[str, str]:
    path = data_dir / SECRETS_FILE
    # 0700 when we create it: it also holds the SQLite database (household facts).
    data_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
    if path.exists():
        loaded: dict[str, str] = json.loads(path.read_text())
        return loaded
    generated = {
        "encryption_key": base64.b64encode(secrets.token_bytes(ENCRYPTION_KEY_BYTES)).decode(),
        "jwt_secret": secrets.token_urlsafe(48),
    }
    # O_EXCL: two processes starting at once never overwrite each other's keys.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        loaded = json.loads(path.read_text())
        return loaded
    with os.fdopen(fd, "w") as handle:
        json.dump(generated, handle)
    return generated


def load_server_secrets(settings: Settings) -> ServerSecrets:
    """The key rings for this server, or `ConfigError` naming the variable to fix."""
    if settings.billing_enabled and settings.stripe_webhook_secret is None:
        raise ConfigError("STRIPE_WEBHOOK_SECRET is required when STRIPE_SECRET_KEY is set")
    enc = settings.encryption_key.get_secret_value() if settings.encryption_key else None
    jwt = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
    if settings.hosted:
        if not enc:
            raise ConfigError("ENCRYPTION_KEY is required in hosted mode")
        if not jwt:
            raise ConfigError("JWT_SECRET is required in hosted mode")
    if not enc or not jwt:
        stored = _load_or_create_file(settings.data_dir)
        enc = enc or stored["encryption_key"]
        jwt = jwt or stored["jwt_secret"]
    found = ServerSecrets(encryption=parse_encryption_keys(enc), jwt=parse_jwt_keys(jwt))
    if settings.hosted:
        _check_public_url(settings.public_url)
    return found


def _check_public_url(value: str | None) -> None:
    """Hosted links (password reset) need the public address, never the bind address."""
    if not value:
        raise ConfigError(
            "HOMEMIND_PUBLIC_URL is required in hosted mode (the address in password-reset "
            "links, e.g. https://homemind.example)"
        )
    parsed = urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError("HOMEMIND_PUBLIC_URL must be an http(s) address such as https://host")


def _write_secrets_file(path: Path, data: dict[str, str]) -> None:
    """Replace the file atomically, keeping mode 0600 (never readable by others)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def rotate_file_encryption_key(data_dir: Path, *, prune: bool = False) -> str:
    """Self-hosted rotation of the generated key; returns the active key id.

    Without `prune`: a new key goes in front of the ring (new values use it, old
    ones still decrypt). With `prune`: only the active key is kept (call it once
    every value has been re-encrypted).
    """
    path = data_dir / SECRETS_FILE
    data = _load_or_create_file(data_dir)
    keys = [k.strip() for k in data["encryption_key"].split(",") if k.strip()]
    if prune:
        keys = keys[:1]
    else:
        keys.insert(0, base64.b64encode(secrets.token_bytes(ENCRYPTION_KEY_BYTES)).decode())
    data["encryption_key"] = ",".join(keys)
    _write_secrets_file(path, data)
    return parse_encryption_keys(data["encryption_key"]).active_kid
