"""The `home_mind.remember` and `home_mind.forget` actions, against the fake server."""

from __future__ import annotations

import pytest
from homeassistant.config_entries import SOURCE_REAUTH
from homeassistant.const import CONF_TOKEN, CONF_URL
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.home_mind.const import DOMAIN
from homemind_client.models import ErrorCode

from .fake_homemind import OTHER_INSTALLATION_ID, OTHER_TOKEN, FakeHomeMind, Problem


async def _call(hass: HomeAssistant, service: str, data: dict[str, object]) -> dict[str, object]:
    response = await hass.services.async_call(
        DOMAIN, service, data, blocking=True, return_response=True
    )
    assert response is not None
    return dict(response)


async def test_actions_exist_without_any_entry(hass: HomeAssistant) -> None:
    assert await async_setup_component(hass, DOMAIN, {})

    assert hass.services.has_service(DOMAIN, "remember")
    assert hass.services.has_service(DOMAIN, "forget")
    with pytest.raises(ServiceValidationError) as caught:
        await hass.services.async_call(
            DOMAIN, "remember", {"content": "Ana is our daughter."}, blocking=True
        )
    assert caught.value.translation_key == "no_loaded_entry"
    # HA renders the translated sentence (and drops its final full stop).
    assert str(caught.value) == (
        "No Home Mind installation is ready. Check the integration in the Home Assistant settings"
    )


async def test_remember_stores_a_household_fact(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_homemind: FakeHomeMind
) -> None:
    response = await _call(
        hass, "remember", {"content": "  Ana is our daughter. ", "category": "person"}
    )

    assert fake_homemind.memory_requests == [
        {"content": "Ana is our daughter.", "category": "person"}
    ]
    memory = response["memory"]
    assert isinstance(memory, dict)
    assert memory["content"] == "Ana is our daughter."
    assert memory["category"] == "person"
    assert memory["speaker_id"] is None
    assert [item.content for item in fake_homemind.memories] == ["Ana is our daughter."]


async def test_remember_for_a_person_uses_their_user(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_homemind: FakeHomeMind
) -> None:
    user = await hass.auth.async_create_user("Ana")
    assert await async_setup_component(
        hass, "person", {"person": [{"id": "ana", "name": "Ana", "user_id": user.id}]}
    )

    response = await _call(
        hass,
        "remember",
        {
            "config_entry_id": init_integration.entry_id,
            "content": "Ana likes jazz.",
            "person": "person.ana",
        },
    )

    assert fake_homemind.memory_requests[-1] == {
        "content": "Ana likes jazz.",
        "speaker_id": user.id,
    }
    memory = response["memory"]
    assert isinstance(memory, dict)
    assert memory["speaker_id"] == user.id


async def test_person_without_user_is_refused(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_homemind: FakeHomeMind
) -> None:
    assert await async_setup_component(hass, "person", {"person": [{"id": "tom", "name": "Tom"}]})

    with pytest.raises(ServiceValidationError) as caught:
        await _call(hass, "remember", {"content": "Tom likes tea.", "person": "person.tom"})

    assert caught.value.translation_key == "person_without_user"
    assert str(caught.value).startswith("Tom has no Home Assistant user")
    assert fake_homemind.memory_requests == []


async def test_forget_returns_what_was_forgotten(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_homemind: FakeHomeMind
) -> None:
    await _call(hass, "remember", {"content": "The garage code is 4711."})
    await _call(hass, "remember", {"content": "Ana is our daughter."})

    response = await _call(hass, "forget", {"query": "garage code"})

    forgotten = response["forgotten"]
    assert isinstance(forgotten, list)
    assert [item["content"] for item in forgotten] == ["The garage code is 4711."]
    assert [item.content for item in fake_homemind.memories] == ["Ana is our daughter."]
    assert fake_homemind.memory_requests[-1] == {"query": "garage code"}


async def test_forget_with_nothing_to_forget(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    with pytest.raises(ServiceValidationError) as caught:
        await _call(hass, "forget", {"query": "the garage"})

    assert caught.value.translation_key == "nothing_to_forget"
    assert str(caught.value) == 'Home Mind remembers nothing that matches "the garage"'


async def test_unloaded_entry_is_refused(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_homemind: FakeHomeMind
) -> None:
    assert await hass.config_entries.async_unload(init_integration.entry_id)

    with pytest.raises(ServiceValidationError) as caught:
        await _call(
            hass,
            "remember",
            {"config_entry_id": init_integration.entry_id, "content": "Ana is our daughter."},
        )

    assert caught.value.translation_key == "entry_not_loaded"
    assert "Test home" in str(caught.value)
    assert fake_homemind.memory_requests == []


async def test_unknown_entry_is_refused(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    with pytest.raises(ServiceValidationError) as caught:
        await _call(hass, "forget", {"config_entry_id": "nope", "query": "garage"})

    assert caught.value.translation_key == "entry_not_found"


async def test_two_installations_need_a_choice(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_homemind: FakeHomeMind
) -> None:
    other = MockConfigEntry(
        domain=DOMAIN,
        title="Other home",
        unique_id=OTHER_INSTALLATION_ID,
        data={CONF_URL: fake_homemind.base_url, CONF_TOKEN: OTHER_TOKEN},
    )
    other.add_to_hass(hass)
    assert await hass.config_entries.async_setup(other.entry_id)

    with pytest.raises(ServiceValidationError) as caught:
        await _call(hass, "remember", {"content": "Ana is our daughter."})
    assert caught.value.translation_key == "entry_required"

    await _call(
        hass, "remember", {"config_entry_id": other.entry_id, "content": "Ana is our daughter."}
    )
    assert len(fake_homemind.memories) == 1


async def test_unreachable_server(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_homemind: FakeHomeMind
) -> None:
    fake_homemind.away = True

    with pytest.raises(HomeAssistantError) as caught:
        await _call(hass, "remember", {"content": "Ana is our daughter."})

    assert not isinstance(caught.value, ServiceValidationError)
    assert caught.value.translation_key == "cannot_connect"
    assert str(caught.value) == (
        "I can't reach Home Mind right now. Please check the internet connection and try again"
    )


@pytest.mark.parametrize("code", [ErrorCode.INVALID_TOKEN, ErrorCode.INSTALLATION_REVOKED])
async def test_refused_token_starts_reauth(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    fake_homemind: FakeHomeMind,
    code: ErrorCode,
) -> None:
    fake_homemind.memory_problem = Problem(code)

    with pytest.raises(HomeAssistantError) as caught:
        await _call(hass, "forget", {"query": "garage"})

    assert caught.value.translation_key == code
    await hass.async_block_till_done()
    assert len(list(init_integration.async_get_active_flows(hass, {SOURCE_REAUTH}))) == 1


async def test_blank_content_is_invalid(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_homemind: FakeHomeMind
) -> None:
    with pytest.raises(Exception, match="length"):
        await _call(hass, "remember", {"content": "   "})

    assert fake_homemind.memory_requests == []


async def test_unknown_person_is_refused(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_homemind: FakeHomeMind
) -> None:
    with pytest.raises(ServiceValidationError) as caught:
        await _call(hass, "forget", {"query": "jazz", "person": "person.nobody"})

    assert caught.value.translation_key == "person_not_found"
    assert fake_homemind.memory_requests == []
