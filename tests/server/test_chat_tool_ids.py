"""Signed tool-call ids: a follow-up is free only when it answers calls this server made."""

from __future__ import annotations

import re

from cloud_server.chat.tool_ids import (
    MAX_AGE_SECONDS,
    all_signed,
    sign_call_id,
    signing_keys,
    verify_call_id,
)
from cloud_server.secrets import parse_jwt_keys
from homemind_client.models import TOOL_NAME_PATTERN

RING = parse_jwt_keys("a" * 40)
OTHER = parse_jwt_keys("b" * 40)
KEY = signing_keys(RING)[0]
NOW = 1_800_000_000.0
CLAUDE_ID = "toolu_01A09q90qw90lq917835lq9"


def signed(installation: str = "inst-1", text: str = "Turn on the light") -> str:
    return sign_call_id(KEY, installation, CLAUDE_ID, text, now=NOW)


def test_signed_id_is_a_valid_tool_id_and_verifies() -> None:
    call_id = signed()
    assert re.fullmatch(TOOL_NAME_PATTERN, call_id)
    assert call_id.startswith(CLAUDE_ID + "_")
    assert verify_call_id(signing_keys(RING), "inst-1", call_id, "Turn on the light", now=NOW)


def test_another_installation_question_or_key_does_not_verify() -> None:
    call_id = signed()
    keys = signing_keys(RING)
    assert not verify_call_id(keys, "inst-2", call_id, "Turn on the light", now=NOW)
    assert not verify_call_id(keys, "inst-1", call_id, "Write me a poem", now=NOW)
    assert not verify_call_id(signing_keys(OTHER), "inst-1", call_id, "Turn on the light", now=NOW)


def test_made_up_and_tampered_ids_do_not_verify() -> None:
    keys = signing_keys(RING)
    call_id = signed()
    tampered = call_id[:-1] + ("A" if call_id[-1] != "A" else "B")
    for candidate in ("call_1", "x", "", tampered, CLAUDE_ID, call_id + "_"):
        assert not verify_call_id(keys, "inst-1", candidate, "Turn on the light", now=NOW)


def test_ids_expire() -> None:
    keys = signing_keys(RING)
    call_id = signed()
    later = NOW + MAX_AGE_SECONDS + 1
    assert verify_call_id(keys, "inst-1", call_id, "Turn on the light", now=NOW + 60)
    assert not verify_call_id(keys, "inst-1", call_id, "Turn on the light", now=later)


def test_rotated_key_still_verifies_while_in_the_ring() -> None:
    rotated = parse_jwt_keys("c" * 40 + "," + "a" * 40)
    assert verify_call_id(signing_keys(rotated), "inst-1", signed(), "Turn on the light", now=NOW)


def test_all_signed_needs_every_call_signed() -> None:
    keys = signing_keys(RING)
    good = signed()
    assert all_signed(keys, "inst-1", [good, good], "Turn on the light", now=NOW)
    assert not all_signed(keys, "inst-1", [good, "call_2"], "Turn on the light", now=NOW)
    assert not all_signed(keys, "inst-1", [], "Turn on the light", now=NOW)


def test_long_model_ids_stay_within_128_characters() -> None:
    call_id = sign_call_id(KEY, "inst-1", "t" * 200, "hi", now=NOW)
    assert len(call_id) <= 128
    assert verify_call_id(signing_keys(RING), "inst-1", call_id, "hi", now=NOW)


def test_every_signature_shape_verifies() -> None:
    # base64url signatures contain "_" and "-" now and then; parsing must not depend on luck.
    keys = signing_keys(RING)
    for n in range(300):
        raw = f"toolu_{n:04d}_x"
        call_id = sign_call_id(KEY, "inst-1", raw, f"question {n}", now=NOW)
        assert verify_call_id(keys, "inst-1", call_id, f"question {n}", now=NOW), call_id
