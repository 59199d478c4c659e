"""Polls `GET /api/installation`: plan, subscription and usage, and the repair issues they need.

The coordinator owns the "is the cloud reachable" state: when a poll fails it logs once
(an error) and its entities go unavailable; the first poll that works again logs once
(info) and they come back. A refused token raises `ConfigEntryAuthFailed`, which starts
HA's reauth flow.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryAuthFailed
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed
from homeassistant.util import dt as dt_util

from homemind_client.client import HomeMindClient
from homemind_client.errors import HomeMindAuthenticationError, HomeMindError
from homemind_client.models import InstallationInfo

from .const import DOMAIN, LOGGER, SETUP_TIMEOUT
from .errors import translation_key_for

if TYPE_CHECKING:
    from . import HomeMindConfigEntry

# Plan and usage change slowly; a message count a quarter of an hour old is fine.
UPDATE_INTERVAL: Final = timedelta(minutes=15)

ISSUE_PAYMENT_FAILED: Final = "payment_failed"
ISSUE_TRIAL_ENDING: Final = "trial_ending"
ISSUE_SUBSCRIPTION_ENDED: Final = "subscription_ended"
ISSUE_KINDS: Final = (ISSUE_PAYMENT_FAILED, ISSUE_TRIAL_ENDING, ISSUE_SUBSCRIPTION_ENDED)

TRIAL_ENDING_WITHIN: Final = timedelta(days=3)
# Statuses after which a paid plan fell back to free. Only a server with billing reports
# them; a self-hosted server always says "none".
ENDED_STATUSES: Final = frozenset(
    {"canceled", "unpaid", "paused", "incomplete_expired", "trial_expired"}
)


def subscription_issues(info: InstallationInfo, now: datetime) -> dict[str, dict[str, str]]:
    """The repair issues this installation needs, each with its placeholders."""
    sub = info.subscription
    issues: dict[str, dict[str, str]] = {}
    if info.tier == "free" and sub.status in ENDED_STATUSES:
        # Ended is what the user must fix now; an old failed payment is part of that story.
        issues[ISSUE_SUBSCRIPTION_ENDED] = {}
    elif sub.status == "past_due" or sub.payment_failed:
        until = sub.grace_until
        issues[ISSUE_PAYMENT_FAILED] = {
            "grace_until": dt_util.as_local(until).date().isoformat() if until else "-"
        }
    if (
        sub.status == "trialing"
        and sub.trial_end is not None
        and now <= sub.trial_end <= now + TRIAL_ENDING_WITHIN
    ):
        issues[ISSUE_TRIAL_ENDING] = {
            "trial_end": dt_util.as_local(sub.trial_end).date().isoformat()
        }
    return issues


def issue_id(kind: str, entry_id: str) -> str:
    """One issue per kind and installation."""
    return f"{kind}_{entry_id}"


def async_delete_issues(hass: HomeAssistant, entry_id: str) -> None:
    """Remove every subscription issue of an entry (it was removed)."""
    for kind in ISSUE_KINDS:
        ir.async_delete_issue(hass, DOMAIN, issue_id(kind, entry_id))


class HomeMindCoordinator(DataUpdateCoordinator[InstallationInfo]):
    """The installation as the server sees it, refreshed every `UPDATE_INTERVAL`."""

    config_entry: HomeMindConfigEntry

    def __init__(
        self, hass: HomeAssistant, entry: HomeMindConfigEntry, client: HomeMindClient
    ) -> None:
        super().__init__(
            hass,
            LOGGER,
            config_entry=entry,
            name=DOMAIN,
            update_interval=UPDATE_INTERVAL,
        )
        self.client = client

    async def _async_update_data(self) -> InstallationInfo:
        try:
            info = await self.client.get_installation(timeout=SETUP_TIMEOUT)
        except HomeMindAuthenticationError as err:
            # Covers a revoked installation too: both need a new token from the user.
            raise ConfigEntryAuthFailed(
                translation_domain=DOMAIN, translation_key=translation_key_for(err)
            ) from err
        except HomeMindError as err:
            # The client's message names the server and the failure, never the token.
            raise UpdateFailed(
                str(err), translation_domain=DOMAIN, translation_key="cannot_connect"
            ) from err
        self._async_update_issues(info)
        return info

    def _async_update_issues(self, info: InstallationInfo) -> None:
        """Raise the issues the subscription needs; delete those that were resolved."""
        entry = self.config_entry
        wanted = subscription_issues(info, dt_util.utcnow())
        dashboard = f"{self.client.base_url}/"
        for kind in ISSUE_KINDS:
            if kind not in wanted:
                ir.async_delete_issue(self.hass, DOMAIN, issue_id(kind, entry.entry_id))
                continue
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                issue_id(kind, entry.entry_id),
                is_fixable=False,
                is_persistent=False,
                learn_more_url=dashboard,
                severity=(
                    ir.IssueSeverity.WARNING
                    if kind == ISSUE_TRIAL_ENDING
                    else ir.IssueSeverity.ERROR
                ),
                translation_key=kind,
                translation_placeholders={"name": entry.title, "url": dashboard, **wanted[kind]},
            )
