"""The accounts use-cases shared by the JSON API and the dashboard pages.

Each flow takes the application and plain inputs, applies every rule once (throttles,
password policy, no account enumeration, verification before the trial) and raises
`ApiError` with the API's stable codes; the JSON routes render those as problem+json and
the pages show `detail` (and each field error) next to the form field.
"""

from __future__ import annotations

import logging

from aiohttp import web

from homemind_client.models import ErrorCode, FieldError

from ..app_keys import SETTINGS
from ..db.engine import DB_SESSIONMAKER
from ..db.models import User
from ..errors import ApiError
from . import email_tokens, service, totp
from .app_keys import MAILER, SERVER_SECRETS, THROTTLE, spawn
from .passwords import PasswordPolicyError

LOGGER = logging.getLogger(__name__)

INVALID_CREDENTIALS = "The email or password is not correct."
LINK_SENT = "If the account exists, a link is on its way."
LINK_INVALID = "This link is not valid any more; ask for a new one."


def field_error(field: str, message: str) -> ApiError:
    return ApiError(
        ErrorCode.VALIDATION_ERROR,
        message,
        errors=[FieldError(loc=[field], msg=message, type="value_error")],
    )


def throttled(retry_after: int) -> ApiError:
    return ApiError(
        ErrorCode.RATE_LIMITED,
        "Too many attempts; wait a moment and try again.",
        retry_after=retry_after,
    )


def _link(app: web.Application, page: str, token: str) -> str:
    # From the configured public URL, never the Host header; the token after `#` never
    # reaches a server log or a Referer.
    return f"{app[SETTINGS].effective_public_url}/{page}#token={token}"


async def login(
    app: web.Application,
    email: str,
    password: str,
    *,
    ip: str,
    totp_code: str | None = None,
) -> tuple[User, service.Tokens]:
    """Password (and, with two-step sign-in on, the authenticator code) → a new session."""
    throttle = app[THROTTLE]
    account = email.strip().lower()
    retry = await throttle.login_retry_after(account, ip)
    if retry is not None:
        LOGGER.info("Login throttled (ip=%s)", ip)
        raise throttled(retry)
    problem: ApiError | None = None
    async with app[DB_SESSIONMAKER].begin() as session:
        user = await service.authenticate(session, email, password, ip=ip)
        tokens = None
        if user is not None and user.totp_secret is not None:
            problem = _second_factor(app, user, totp_code)
        if user is not None and problem is None:
            tokens = await service.start_session(session, app[SERVER_SECRETS].jwt, user)
    if problem is not None:
        if problem.code is not ErrorCode.TOTP_REQUIRED:
            await throttle.login_failed(account)
        raise problem
    if user is None or tokens is None:
        await throttle.login_failed(account)
        raise ApiError(ErrorCode.INVALID_CREDENTIALS, INVALID_CREDENTIALS)
    await throttle.login_succeeded(account)
    return user, tokens


def _second_factor(app: web.Application, user: User, code: str | None) -> ApiError | None:
    """None when the code is right (its step is then spent), else the error to answer."""
    if not code:
        message = "Enter the code from your authenticator app."
        return ApiError(
            ErrorCode.TOTP_REQUIRED,
            message,
            errors=[FieldError(loc=["totp_code"], msg=message, type="value_error")],
        )
    assert user.totp_secret is not None
    try:
        secret = totp.unseal(app[SERVER_SECRETS].encryption, user.id, user.totp_secret)
    except totp.SealError:
        LOGGER.error("The two-step secret of user %s cannot be opened", user.id)
        secret = None
    step = totp.verify(secret, code, user.totp_last_step) if secret else None
    if step is None:
        message = "This code is not correct; use the newest one from your app."
        return ApiError(
            ErrorCode.INVALID_CREDENTIALS,
            message,
            errors=[FieldError(loc=["totp_code"], msg=message, type="value_error")],
        )
    user.totp_last_step = step
    return None


def verification_required(app: web.Application) -> bool:
    """Hosted sign-ups confirm their address before the trial; self-hosted needs none."""
    return app[SETTINGS].hosted


async def register(
    app: web.Application, email: str, password: str, name: str | None, *, ip: str
) -> tuple[User, service.Tokens]:
    user, tokens = await _create_account(app, email, password, name, ip=ip, sign_in=True)
    assert tokens is not None
    return user, tokens


async def _create_account(
    app: web.Application, email: str, password: str, name: str | None, *, ip: str, sign_in: bool
) -> tuple[User, service.Tokens | None]:
    """A new account and its first session; hosted: unverified, a verification mail sent.

    Raises 409 `email_taken` for a taken address: callers that must not reveal it (the
    sign-up page) catch it and answer as for a new account, see `register_quietly`.
    """
    retry = await app[THROTTLE].hit("register", ip)
    if retry is not None:
        raise throttled(retry)
    verify = verification_required(app)
    try:
        async with app[DB_SESSIONMAKER].begin() as session:
            user = await service.create_user(
                session, email, password, name, ip=ip, email_verified=not verify
            )
            tokens = await service.start_session(session, app[SERVER_SECRETS].jwt, user)
            token = (
                await email_tokens.issue(session, user, email_tokens.VERIFY_EMAIL)
                if verify
                else None
            )
    except service.InvalidEmailError as err:
        raise field_error("email", str(err)) from err
    except PasswordPolicyError as err:
        raise field_error("password", str(err)) from err
    except service.EmailTakenError as err:
        raise ApiError(
            ErrorCode.EMAIL_TAKEN,
            "An account with this email exists; log in or reset the password.",
        ) from err
    if token is not None:
        spawn(app, app[MAILER].send_verification(user.email, _link(app, "verify-email", token)))
    return user, tokens


async def register_quietly(
    app: web.Application, email: str, password: str, name: str | None, *, ip: str
) -> User | None:
    """Sign-up without telling whether the address was taken (the hosted sign-up page).

    A new address gets the verification mail; a taken one gets a mail telling its owner
    that someone tried to sign up with it. Both answer alike (the argon2 work is done
    in both cases by `create_user`). Returns the new user, or None for a taken address.
    """
    try:
        user, _ = await _create_account(app, email, password, name, ip=ip, sign_in=False)
    except ApiError as err:
        if err.code is not ErrorCode.EMAIL_TAKEN:
            raise
        normalized = email.strip()
        spawn(
            app,
            app[MAILER].send_signup_attempt(
                normalized, f"{app[SETTINGS].effective_public_url}/signin"
            ),
        )
        return None
    return user


async def resend_verification(app: web.Application, user_id: str) -> None:
    async with app[DB_SESSIONMAKER].begin() as session:
        user = await service.get_user(session, user_id)
        if user is None or user.email_verified_at is not None:
            return
        retry = await app[THROTTLE].hit("reset_email", user.email_normalized)
        if retry is not None:
            raise throttled(retry)
        token = await email_tokens.issue(session, user, email_tokens.VERIFY_EMAIL)
    spawn(app, app[MAILER].send_verification(user.email, _link(app, "verify-email", token)))


async def verify_email(
    app: web.Application, token: str, *, sign_in: bool = False
) -> tuple[User, service.Tokens | None]:
    """Confirm the address of the link's account; with `sign_in`, also open a session
    (the page's case: opening the link proves the mailbox, as a magic link does)."""
    async with app[DB_SESSIONMAKER].begin() as session:
        user = await email_tokens.consume(session, token, email_tokens.VERIFY_EMAIL)
        tokens = None
        if user is not None:
            await email_tokens.mark_verified(session, user)
            if sign_in:
                tokens = await service.start_session(session, app[SERVER_SECRETS].jwt, user)
    if user is None:
        raise ApiError(ErrorCode.INVALID_LINK, LINK_INVALID)
    return user, tokens


async def request_password_reset(app: web.Application, email: str, *, ip: str) -> None:
    throttle = app[THROTTLE]
    retry = await throttle.hit("reset_ip", ip)
    if retry is not None:
        raise throttled(retry)
    # Over the per-email budget: answer the same, send nothing (no enumeration, no mail bomb).
    if await throttle.hit("reset_email", email.strip().lower()) is not None:
        return
    async with app[DB_SESSIONMAKER].begin() as session:
        found = await service.request_password_reset(session, email)
    if found is not None:
        user, token = found
        minutes = int(service.RESET_LIFETIME.total_seconds() // 60)
        # In the background: the answer takes the same time whether or not mail is sent.
        spawn(
            app,
            app[MAILER].send_password_reset(
                user.email, _link(app, "reset-password", token), minutes
            ),
        )


async def confirm_password_reset(app: web.Application, token: str, password: str) -> None:
    try:
        async with app[DB_SESSIONMAKER].begin() as session:
            done = await service.confirm_password_reset(session, token, password)
    except PasswordPolicyError as err:
        raise field_error("password", str(err)) from err
    if not done:
        raise ApiError(
            ErrorCode.INVALID_RESET_TOKEN,
            "This reset link is not valid any more; ask for a new one.",
        )


async def request_magic_link(
    app: web.Application, email: str, *, ip: str, browser_nonce: str | None = None
) -> None:
    """Mail a sign-in link (10 minutes, single use); the same answer for unknown addresses."""
    throttle = app[THROTTLE]
    retry = await throttle.hit("reset_ip", ip)
    if retry is not None:
        raise throttled(retry)
    if await throttle.hit("reset_email", email.strip().lower()) is not None:
        return
    async with app[DB_SESSIONMAKER].begin() as session:
        user = await service.find_user_by_email(session, email)
        # With two-step sign-in on, a mailed link would skip the second step: none is sent.
        if user is None or not user.is_active or user.totp_secret is not None:
            return
        token = await email_tokens.issue(
            session, user, email_tokens.MAGIC_LINK, browser_nonce=browser_nonce
        )
    minutes = int(email_tokens.LIFETIMES[email_tokens.MAGIC_LINK].total_seconds() // 60)
    spawn(app, app[MAILER].send_magic_link(user.email, _link(app, "magic-link", token), minutes))


async def confirm_magic_link(
    app: web.Application, token: str, *, ip: str, browser_nonce: str | None = None
) -> tuple[User, service.Tokens]:
    """Sign in with a mailed link, under the login throttle (per IP, and per account)."""
    throttle = app[THROTTLE]
    retry = await throttle.login_retry_after("magic-link", ip)
    if retry is not None:
        raise throttled(retry)
    async with app[DB_SESSIONMAKER].begin() as session:
        user = await email_tokens.consume(
            session, token, email_tokens.MAGIC_LINK, browser_nonce=browser_nonce
        )
        tokens = None
        if user is not None:
            # Opening the link proves the mailbox: it verifies the address too.
            await email_tokens.mark_verified(session, user)
            tokens = await service.start_session(session, app[SERVER_SECRETS].jwt, user)
    if user is None or tokens is None:
        raise ApiError(ErrorCode.INVALID_LINK, LINK_INVALID)
    return user, tokens
