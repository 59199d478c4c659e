"""Property tests of the installation-token format and checksum (accounts/tokens.py)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_server.accounts.tokens import (
    BASE62,
    INSTALLATION_TOKEN_LENGTH,
    INSTALLATION_TOKEN_RE,
    is_well_formed_installation_token,
    new_installation_token,
    token_hint,
)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32))
def test_every_new_token_has_the_format_and_a_valid_checksum(_: int) -> None:
    token = new_installation_token()
    assert len(token) == INSTALLATION_TOKEN_LENGTH
    assert INSTALLATION_TOKEN_RE.fullmatch(token)
    assert is_well_formed_installation_token(token)
    assert token_hint(token).endswith(token[-4:])
    assert token[3:-4] not in token_hint(token)


@settings(max_examples=500, deadline=None)
@given(st.integers(3, INSTALLATION_TOKEN_LENGTH - 1), st.integers(1, len(BASE62) - 1))
def test_any_single_character_change_is_refused(index: int, shift: int) -> None:
    token = new_installation_token()
    replacement = BASE62[(BASE62.index(token[index]) + shift) % len(BASE62)]
    mutated = token[:index] + replacement + token[index + 1 :]
    # CRC32 catches every single-character change (a burst shorter than 32 bits).
    assert not is_well_formed_installation_token(mutated)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text_is_never_well_formed_by_accident(text: str) -> None:
    if is_well_formed_installation_token(text):
        assert INSTALLATION_TOKEN_RE.fullmatch(text)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 5))
def test_transposed_or_truncated_tokens_are_refused(_: int, cut: int) -> None:
    token = new_installation_token()
    assert not is_well_formed_installation_token(token[:-cut])
    assert not is_well_formed_installation_token(token + "0" * cut)
    swapped = token[:10] + token[11] + token[10] + token[12:]
    if swapped != token:
        assert not is_well_formed_installation_token(swapped)
