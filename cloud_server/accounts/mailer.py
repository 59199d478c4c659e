"""Outgoing mail through SMTP (aiosmtplib)."""

from __future__ import annotations

import logging
from email.message import EmailMessage

import aiosmtplib

from ..settings import Settings

LOGGER = logging.getLogger(__name__)


class Mailer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def configured(self) -> bool:
        return bool(self.settings.smtp_host)

    async def send(self, to: str, subject: str, body: str) -> None:
        settings = self.settings
        if not settings.smtp_host:
            LOGGER.warning("SMTP is not configured (SMTP_HOST): mail %r not sent", subject)
            return
        message = EmailMessage()
        message["From"] = settings.smtp_from
        message["To"] = to
        message["Subject"] = subject
        message.set_content(body)
        await aiosmtplib.send(
            message,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=(
                settings.smtp_password.get_secret_value() if settings.smtp_password else None
            ),
            start_tls=settings.smtp_starttls,
            timeout=30,
        )

    async def _send_quietly(self, to: str, subject: str, body: str, what: str) -> None:
        try:
            await self.send(to, subject, body)
        except (aiosmtplib.SMTPException, OSError) as err:
            # Links hold secrets: log the failure, never the message.
            LOGGER.error("Could not send the %s mail: %s", what, type(err).__name__)

    async def send_verification(self, to: str, link: str) -> None:
        body = (
            "Welcome to Home Mind.\n\n"
            f"To confirm this address and start your trial, open this link:\n\n{link}\n\n"
            "If you did not sign up, ignore this mail.\n"
        )
        await self._send_quietly(to, "Confirm your Home Mind address", body, "verification")

    async def send_signup_attempt(self, to: str, signin_link: str) -> None:
        body = (
            "Someone tried to sign up for Home Mind with this address, which already has "
            f"an account.\n\nIf it was you, sign in instead:\n\n{signin_link}\n\n"
            "If it was not you, ignore this mail: nothing has changed.\n"
        )
        await self._send_quietly(to, "You already have a Home Mind account", body, "sign-up")

    async def send_magic_link(self, to: str, link: str, minutes: int) -> None:
        body = (
            f"To sign in to Home Mind, open this link within {minutes} minutes, in the "
            f"browser where you asked for it:\n\n{link}\n\n"
            "If it was not you, ignore this mail.\n"
        )
        await self._send_quietly(to, "Your Home Mind sign-in link", body, "sign-in link")

    async def send_password_reset(self, to: str, link: str, minutes: int) -> None:
        body = (
            "Someone asked to reset the password of your Home Mind account.\n\n"
            f"To choose a new password, open this link within {minutes} minutes:\n\n{link}\n\n"
            "If it was not you, ignore this mail: your password stays as it is.\n"
        )
        try:
            await self.send(to, "Reset your Home Mind password", body)
        except (aiosmtplib.SMTPException, OSError) as err:
            # The link holds a secret: log the failure, never the message.
            LOGGER.error("Could not send the password-reset mail: %s", type(err).__name__)
