"""Access tokens: short-lived JWTs (RFC 9068 profile), HS256 pinned, keys by `kid`.

Header ``{"alg": "HS256", "typ": "at+jwt", "kid": <ring kid>}``; claims ``iss``,
``aud``, ``sub`` (user id), ``sid`` (the session / refresh family), ``iat``, ``nbf``,
``exp`` (+15 min) and ``jti``. Decoding trusts nothing from the header but the
``kid``, which only selects among configured keys.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import jwt

from ..server_secrets import KeyRing

ALGORITHM = "HS256"
TOKEN_TYPE = "at+jwt"  # noqa: S105 (a JWT type, not a secret)
ISSUER = "homemind"
AUDIENCE = "homemind-api"
ACCESS_TTL_SECONDS = 15 * 60
LEEWAY_SECONDS = 30
_REQUIRED = ["iss", "aud", "sub", "sid", "iat", "nbf", "exp", "jti"]
_FORBIDDEN_HEADERS = {"jwk", "jku", "x5u", "x5c", "crit"}


class InvalidAccessToken(Exception):
    """The token is not a valid access token of this server (reason for logs only)."""


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: str
    session_id: str
    issued_at: int
    jti: str


def issue_access_token(
    ring: KeyRing, user_id: str, session_id: str, now: float | None = None
) -> str:
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": user_id,
        "sid": session_id,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ACCESS_TTL_SECONDS,
        "jti": secrets.token_hex(16),
    }
    return jwt.encode(
        claims,
        ring.active,
        algorithm=ALGORITHM,
        headers={"typ": TOKEN_TYPE, "kid": ring.active_kid},
    )


def decode_access_token(ring: KeyRing, token: str) -> AccessClaims:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as err:
        raise InvalidAccessToken("malformed") from err
    if header.get("alg") != ALGORITHM:
        raise InvalidAccessToken("algorithm not allowed")
    if header.get("typ") != TOKEN_TYPE:
        raise InvalidAccessToken("not an access token")
    if _FORBIDDEN_HEADERS & header.keys():
        raise InvalidAccessToken("untrusted key header")
    kid = header.get("kid")
    key = ring.keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise InvalidAccessToken("unknown key id")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=LEEWAY_SECONDS,
            options={"require": _REQUIRED, "strict_aud": True},
        )
    except jwt.PyJWTError as err:
        raise InvalidAccessToken(type(err).__name__) from err
    sub, sid, iat, jti = claims["sub"], claims["sid"], claims["iat"], claims["jti"]
    if not (isinstance(sub, str) and isinstance(sid, str) and isinstance(jti, str)):
        raise InvalidAccessToken("bad claim types")
    if not isinstance(iat, int) or claims["exp"] - iat > ACCESS_TTL_SECONDS:
        raise InvalidAccessToken("lifetime too long")
    return AccessClaims(user_id=sub, session_id=sid, issued_at=iat, jti=jti)
