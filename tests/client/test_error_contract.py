"""The error contract is defined once (`ErrorCode`) and every consumer keeps up with it.

A new code fails here until it has a client class, a sentence in every language of the
integration and a row in docs/api.md; a row there for a code that is gone fails too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from homemind_client import errors
from homemind_client.models import TOOL_NAME_PATTERN, ErrorCode, Recovery

ROOT = Path(__file__).parents[2]
COMPONENT = ROOT / "custom_components" / "home_mind"
LANGUAGES = ("en", "de", "fr", "es", "nl")
API_DOC = ROOT / "docs" / "api.md"

# `| `code` | status | recovery | meaning |` in the "Error codes" table of docs/api.md.
_ROW = re.compile(r"^\|\s*`([a-z_]+)`\s*\|\s*(\d{3})\s*\|\s*`([a-z_]+)`\s*\|(.+)\|\s*$")


def _documented() -> dict[str, tuple[int, str, str]]:
    text = API_DOC.read_text(encoding="utf-8")
    section = text.split("## Error codes", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[int, str, str]] = {}
    for line in section.splitlines():
        match = _ROW.match(line)
        if match:
            code, status, recovery, meaning = match.groups()
            assert code not in rows, f"{code} is listed twice in docs/api.md"
            rows[code] = (int(status), recovery, meaning.strip())
    return rows


def _expected_row(code: ErrorCode) -> str:
    return f"| `{code}` | {code.status} | `{code.recovery}` | {code.meaning} |"


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_code_has_exactly_one_client_class(code: ErrorCode) -> None:
    cls = errors.ERRORS_BY_CODE[code]
    claimed = [
        obj
        for obj in vars(errors).values()
        if isinstance(obj, type) and issubclass(obj, errors.HomeMindError) and code in obj.codes
    ]
    assert claimed == [cls]
    error = errors.error_for(status=code.status, code=code.value, detail="x")
    assert type(error) is cls
    assert error.error_code is code


@pytest.mark.parametrize("code", list(ErrorCode))
def test_token_codes_and_only_they_are_authentication_errors(code: ErrorCode) -> None:
    cls = errors.ERRORS_BY_CODE[code]
    assert issubclass(cls, errors.HomeMindAuthenticationError) is code.reauth


def test_retry_semantics_match_the_statuses() -> None:
    for code in ErrorCode:
        if code.recovery is Recovery.RETRY_AFTER:
            assert code.status in (429, 503), code
        if code.reauth:
            assert code.status == 401, code


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_code_is_spoken_in_every_language(language: str) -> None:
    exceptions = json.loads((COMPONENT / "translations" / f"{language}.json").read_text())[
        "exceptions"
    ]
    strings = json.loads((COMPONENT / "strings.json").read_text())["exceptions"]
    for code in ErrorCode:
        assert exceptions.get(code.value, {}).get("message", "").strip(), (language, code)
        assert strings.get(code.value, {}).get("message", "").strip(), code


def test_every_code_is_documented_with_its_status_and_recovery() -> None:
    rows = _documented()
    missing = [_expected_row(code) for code in ErrorCode if code.value not in rows]
    assert not missing, "add to docs/api.md's error table:\n" + "\n".join(missing)
    stale = sorted(set(rows) - {code.value for code in ErrorCode})
    assert not stale, f"docs/api.md lists codes the API does not have: {stale}"
    for code in ErrorCode:
        status, recovery, meaning = rows[code.value]
        assert (status, recovery) == (code.status, code.recovery.value), _expected_row(code)
        assert meaning, code


def test_the_contracts_codes_keep_their_strings_and_statuses() -> None:
    # The codes the public contract names (clients in the wild branch on these).
    fixed = {
        "invalid_token": 401,
        "installation_revoked": 401,
        "subscription_required": 402,
        "usage_limit_reached": 402,
        "no_api_key": 409,
        "rate_limited": 429,
        "upstream_unavailable": 503,
        "upstream_rejected_key": 502,
        "validation_error": 422,
        "temporarily_unavailable": 503,
        "upstream_rejected": 502,
        "email_taken": 409,
        "memory_not_found": 404,
        "memory_unavailable": 503,
        "not_found": 404,
        "payload_too_large": 413,
        "unsupported_media_type": 415,
    }
    by_value = {code.value: code.status for code in ErrorCode}
    assert {value: by_value.get(value) for value in fixed} == fixed
    assert ErrorCode.RATE_LIMITED.recovery is Recovery.RETRY_AFTER


def test_tool_name_pattern_is_claudes_rule() -> None:
    # Claude's Messages API: tool names match ^[a-zA-Z0-9_-]{1,128}$; everything else
    # (the server's checks, the integration's name mapping) uses this one pattern.
    assert TOOL_NAME_PATTERN == r"^[A-Za-z0-9_-]{1,128}$"
