"""Repair issues when the subscription needs the user; gone at the next poll once resolved."""

from __future__ import annotations

from datetime import timedelta

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.home_mind.const import DOMAIN
from homemind_client.models import InstallationInfo, SubscriptionSummary

from .fake_homemind import INSTALLATION_ID, TOKEN, FakeHomeMind

KINDS = ("payment_failed", "trial_ending", "subscription_ended")


def installation(tier: str, **subscription: object) -> InstallationInfo:
    return InstallationInfo.model_validate(
        {
            "id": INSTALLATION_ID,
            "name": "Test home",
            "tier": tier,
            "subscription": SubscriptionSummary.model_validate(
                {"tier": tier, **subscription}
            ).model_dump(),
        }
    )


def soon(days: float) -> str:
    return (dt_util.utcnow() + timedelta(days=days)).isoformat()


ACTIVE = installation("managed", status="active")


def issues(hass: HomeAssistant, entry: MockConfigEntry) -> dict[str, ir.IssueEntry]:
    registry = ir.async_get(hass)
    found = {}
    for kind in KINDS:
        issue = registry.async_get_issue(DOMAIN, f"{kind}_{entry.entry_id}")
        if issue is not None:
            found[kind] = issue
    return found


async def setup(
    hass: HomeAssistant, fake: FakeHomeMind, entry: MockConfigEntry, info: InstallationInfo
) -> None:
    fake.installations[TOKEN] = info
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()


async def poll(hass: HomeAssistant) -> None:
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(minutes=15, seconds=1))
    await hass.async_block_till_done(wait_background_tasks=True)


@pytest.mark.parametrize(
    ("info", "kind", "severity"),
    [
        (
            installation("managed", status="past_due", payment_failed=True, grace_until=soon(5)),
            "payment_failed",
            ir.IssueSeverity.ERROR,
        ),
        # A failed renewal is flagged before Stripe moves the status.
        (
            installation("byok", status="active", payment_failed=True),
            "payment_failed",
            ir.IssueSeverity.ERROR,
        ),
        (
            installation("managed", status="trialing", trial_end=soon(2)),
            "trial_ending",
            ir.IssueSeverity.WARNING,
        ),
        (
            installation("free", status="canceled"),
            "subscription_ended",
            ir.IssueSeverity.ERROR,
        ),
        (
            installation("free", status="unpaid", payment_failed=True),
            "subscription_ended",
            ir.IssueSeverity.ERROR,
        ),
        (installation("free", status="paused"), "subscription_ended", ir.IssueSeverity.ERROR),
        (
            installation("free", status="incomplete_expired"),
            "subscription_ended",
            ir.IssueSeverity.ERROR,
        ),
        # The hosted sign-up trial ran out and no plan was chosen.
        (
            installation("free", status="trial_expired"),
            "subscription_ended",
            ir.IssueSeverity.ERROR,
        ),
    ],
)
async def test_issue_raised_and_removed_when_resolved(
    hass: HomeAssistant,
    fake_homemind: FakeHomeMind,
    mock_config_entry: MockConfigEntry,
    info: InstallationInfo,
    kind: str,
    severity: ir.IssueSeverity,
) -> None:
    await setup(hass, fake_homemind, mock_config_entry, info)

    found = issues(hass, mock_config_entry)
    assert list(found) == [kind]
    issue = found[kind]
    assert issue.translation_key == kind
    assert issue.severity is severity
    assert not issue.is_fixable
    # The dashboard, where the plan and the payment method are managed.
    assert issue.learn_more_url == f"{fake_homemind.base_url}/"
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["name"] == "Test home"

    fake_homemind.installations[TOKEN] = ACTIVE
    await poll(hass)

    assert issues(hass, mock_config_entry) == {}


async def test_trial_end_date_is_in_the_issue(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, mock_config_entry: MockConfigEntry
) -> None:
    end = dt_util.utcnow() + timedelta(days=1)
    await setup(
        hass,
        fake_homemind,
        mock_config_entry,
        installation("managed", status="trialing", trial_end=end.isoformat()),
    )

    issue = issues(hass, mock_config_entry)["trial_ending"]
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["trial_end"] == dt_util.as_local(end).date().isoformat()


@pytest.mark.parametrize(
    "info",
    [
        ACTIVE,
        # Self-hosted: no billing, no subscription.
        installation("free", status="none"),
        installation("managed", status="trialing", trial_end=soon(10)),
        installation("byok", status="active", cancel_at_period_end=True),
    ],
)
async def test_no_issue_when_nothing_needs_the_user(
    hass: HomeAssistant,
    fake_homemind: FakeHomeMind,
    mock_config_entry: MockConfigEntry,
    info: InstallationInfo,
) -> None:
    await setup(hass, fake_homemind, mock_config_entry, info)

    assert issues(hass, mock_config_entry) == {}


async def test_issue_appears_at_a_later_poll(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, mock_config_entry: MockConfigEntry
) -> None:
    await setup(hass, fake_homemind, mock_config_entry, ACTIVE)
    assert issues(hass, mock_config_entry) == {}

    fake_homemind.installations[TOKEN] = installation(
        "managed", status="past_due", payment_failed=True
    )
    await poll(hass)

    assert list(issues(hass, mock_config_entry)) == ["payment_failed"]


async def test_issue_stays_while_the_cloud_is_away(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, mock_config_entry: MockConfigEntry
) -> None:
    await setup(hass, fake_homemind, mock_config_entry, installation("free", status="canceled"))
    fake_homemind.away = True

    await poll(hass)

    # Not knowing is not the same as resolved.
    assert list(issues(hass, mock_config_entry)) == ["subscription_ended"]


async def test_removing_the_entry_removes_its_issues(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, mock_config_entry: MockConfigEntry
) -> None:
    await setup(hass, fake_homemind, mock_config_entry, installation("free", status="canceled"))

    assert await hass.config_entries.async_remove(mock_config_entry.entry_id)
    await hass.async_block_till_done()

    assert issues(hass, mock_config_entry) == {}


async def test_unloading_the_entry_removes_its_issues(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, mock_config_entry: MockConfigEntry
) -> None:
    await setup(hass, fake_homemind, mock_config_entry, installation("free", status="canceled"))

    assert await hass.config_entries.async_unload(mock_config_entry.entry_id)

    assert issues(hass, mock_config_entry) == {}
