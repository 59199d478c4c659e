"""The confirmation gate's parts: what counts as a yes, expiry, HA's automation editor."""

from __future__ import annotations

import sys
from datetime import timedelta

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util

from custom_components.home_mind import compat
from custom_components.home_mind.automations import (
    PROPOSAL_TTL,
    PendingProposals,
    Proposal,
    pending_proposals,
)
from custom_components.home_mind.confirmation import is_confirmation


@pytest.mark.parametrize(
    ("words", "language"),
    [
        ("Yes", "en"),
        ("yes please", "en-GB"),
        ("Ja, mach das.", "de"),
        ("Oui, vas-y", "fr"),
        ("D'accord", "fr"),
        ("Sí, claro", "es"),
        ("Doe maar", "nl"),
        ("OK", "nl"),
    ],
)
def test_a_yes_in_each_language(words: str, language: str) -> None:
    assert is_confirmation(words, language)


@pytest.mark.parametrize(
    ("words", "language"),
    [
        ("No", "en"),
        ("Don't", "en"),
        ("Yes, but at eight", "en"),
        ("Ja, aber später", "de"),
        ("Nee", "nl"),
        ("Ja", "en"),  # German for yes, in an English conversation
        ("What would it do?", "en"),
        ("", "en"),
        ("Make the kitchen lights come on at sunset yes okay", "en"),
    ],
)
def test_not_a_yes(words: str, language: str) -> None:
    assert not is_confirmation(words, language)


def _proposal(proposal_id: str = "p1") -> Proposal:
    return Proposal(
        id=proposal_id,
        action="create",
        automation_id="home_mind_1",
        config={"alias": "x"},
        alias="x",
        user_id="u",
        user_turn=1,
        expires=dt_util.utcnow() + PROPOSAL_TTL,
    )


def test_a_proposal_expires_and_a_newer_one_replaces_it(freezer: FrozenDateTimeFactory) -> None:
    proposals = PendingProposals()
    proposals.put("conv", _proposal("p1"))
    proposals.put("conv", _proposal("p2"))
    assert proposals.get("conv", "p1") is None
    assert proposals.get("other", "p2") is None
    assert proposals.get("conv", "p2") is not None

    freezer.tick(PROPOSAL_TTL + timedelta(seconds=1))
    assert proposals.get("conv", "p2") is None


def test_proposals_belong_to_one_ha_run(hass: HomeAssistant) -> None:
    assert pending_proposals(hass) is pending_proposals(hass)
    assert pending_proposals(hass).get("conv", "p1") is None


def test_has_automation_editor() -> None:
    """Both harnesses' HA releases have the editor the gate writes through."""
    assert compat.automation_editor() is not None


def test_no_editor_without_the_config_view(monkeypatch: pytest.MonkeyPatch) -> None:
    """A release without HA's editor module: no automation tools can write (no crash)."""
    monkeypatch.setitem(sys.modules, "homeassistant.components.config.automation", None)
    assert compat.automation_editor() is None


def test_no_chat_log_outside_a_turn() -> None:
    assert compat.current_chat_log() is None
