"""Signed ids for the tool calls the server hands to Home Assistant.

A chat request whose conversation ends with tool results is a follow-up of an earlier
answer: it is not a new message for billing. The server keeps no per-turn state, so a
client could otherwise dress a new question up as a follow-up (a made-up tool call and
result) and chat past its plan's limit. Each tool-call id the server issues therefore
carries a timestamp and an HMAC binding it to the installation and to the user text it
answered; a follow-up counts as free only when the calls it answers carry a valid,
recent signature. Anything else is simply counted as a new message (never refused), so
an old conversation or a rotated key costs at most one message.

Format: `<model's id>_<issued, base36 seconds>_<22 chars of base64url HMAC-SHA256>`,
within `TOOL_NAME_PATTERN` (homemind_client/models/chat.py), which Claude accepts too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterable, Sequence

from ..secrets import KeyRing

MAX_AGE_SECONDS = 30 * 60
_MAC_CHARS = 22
_KEY_LABEL = b"homemind-tool-call-ids"


def signing_keys(ring: KeyRing) -> list[bytes]:
    """Per-purpose keys from the server's JWT ring (the active key first)."""
    ordered = [ring.active] + [k for kid, k in ring.keys.items() if kid != ring.active_kid]
    return [hmac.new(k, _KEY_LABEL, hashlib.sha256).digest() for k in ordered]


def _base36(value: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        value, rest = divmod(value, 36)
        out = digits[rest] + out
        if value == 0:
            return out


def _mac(key: bytes, installation_id: str, raw_id: str, issued: str, user_text: str) -> str:
    text_hash = hashlib.sha256(user_text.encode()).hexdigest()
    message = "\x1f".join((installation_id, raw_id, issued, text_hash)).encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:_MAC_CHARS]


def sign_call_id(
    key: bytes, installation_id: str, raw_id: str, user_text: str, now: float | None = None
) -> str:
    issued = _base36(int(time.time() if now is None else now))
    # Keep the whole id within 128 characters even for a long model id.
    raw = raw_id[: 128 - len(issued) - _MAC_CHARS - 2]
    return f"{raw}_{issued}_{_mac(key, installation_id, raw, issued, user_text)}"


def verify_call_id(
    keys: Iterable[bytes],
    installation_id: str,
    call_id: str,
    user_text: str,
    now: float | None = None,
    *,
    max_age: float = MAX_AGE_SECONDS,
) -> bool:
    # The MAC is base64url and may itself contain "_": cut it off by length.
    if len(call_id) < _MAC_CHARS + 4 or call_id[-_MAC_CHARS - 1] != "_":
        return False
    rest = call_id[-_MAC_CHARS:]
    raw, sep, issued = call_id[: -_MAC_CHARS - 1].rpartition("_")
    if not sep or not raw or not issued:
        return False
    try:
        issued_at = int(issued, 36)
    except ValueError:
        return False
    age = (time.time() if now is None else now) - issued_at
    if not -60 <= age <= max_age:  # a minute of clock skew between instances
        return False
    return any(
        hmac.compare_digest(_mac(key, installation_id, raw, issued, user_text), rest)
        for key in keys
    )


def all_signed(
    keys: Sequence[bytes],
    installation_id: str,
    call_ids: Iterable[str],
    user_text: str,
    now: float | None = None,
) -> bool:
    ids = list(call_ids)
    return bool(ids) and all(
        verify_call_id(keys, installation_id, call_id, user_text, now) for call_id in ids
    )
