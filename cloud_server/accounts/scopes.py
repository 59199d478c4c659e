"""Installation scopes: stored space-separated on the installation, NULL meaning all.

Home Assistant's tokens have every scope; a token made for another client can be limited,
e.g. to `mcp memory:read` for a Claude Desktop that may search the memory but not add to it.
"""

from __future__ import annotations

from collections.abc import Iterable

from homemind_client.models import ErrorCode
from homemind_client.models.accounts import ALL_INSTALLATION_SCOPES, InstallationScope

from ..errors import ApiError

__all__ = [
    "ALL_INSTALLATION_SCOPES",
    "InstallationScope",
    "listed",
    "parse",
    "require_scope",
    "stored",
]


def stored(scopes: Iterable[InstallationScope] | None) -> str | None:
    """The column's value: None when every scope is given (so new scopes reach HA too)."""
    if scopes is None:
        return None
    chosen = set(scopes)
    if chosen >= set(ALL_INSTALLATION_SCOPES):
        return None
    return " ".join(scope for scope in ALL_INSTALLATION_SCOPES if scope in chosen)


def parse(column: str | None) -> frozenset[InstallationScope]:
    """The scopes of a stored value (unknown words are ignored: never more than stored)."""
    if column is None:
        return frozenset(ALL_INSTALLATION_SCOPES)
    words = set(column.split())
    return frozenset(scope for scope in ALL_INSTALLATION_SCOPES if scope in words)


def listed(column: str | None) -> list[InstallationScope]:
    """The scopes of a stored value, in their canonical order (for responses)."""
    scopes = parse(column)
    return [scope for scope in ALL_INSTALLATION_SCOPES if scope in scopes]


def require_scope(scopes: frozenset[InstallationScope], scope: InstallationScope) -> None:
    """403 `forbidden` unless the token has `scope`."""
    if scope not in scopes:
        raise ApiError(
            ErrorCode.FORBIDDEN, f"This installation token does not have the '{scope}' scope."
        )
