"""Fixtures: the fake Home Mind server, a config entry and a home with lights."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable

import pytest
from homeassistant.auth.models import User
from homeassistant.components.homeassistant.exposed_entities import async_expose_entity
from homeassistant.const import CONF_LLM_HASS_API, CONF_TOKEN, CONF_URL
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import llm
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.home_mind.const import CONF_OFFLINE_FALLBACK, DOMAIN
from tests.lights import setup_lights

from .fake_homemind import INSTALLATION_ID, TOKEN, FakeHomeMind


@pytest.fixture(autouse=True)
async def core(hass: HomeAssistant) -> None:
    """HA's core integration, always loaded in a real HA (conversation needs it)."""
    assert await async_setup_component(hass, "homeassistant", {})


@pytest.fixture
async def fake_homemind(socket_enabled: None) -> AsyncGenerator[FakeHomeMind]:
    """The scripted Home Mind server, listening on 127.0.0.1."""
    server = FakeHomeMind()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
def offline_fallback() -> bool:
    """The entry's offline fallback option; tests of spoken errors parametrize it off."""
    return True


@pytest.fixture
def mock_config_entry(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, offline_fallback: bool
) -> MockConfigEntry:
    """An entry for the fake server's installation, with the Assist API enabled."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Test home",
        unique_id=INSTALLATION_ID,
        data={CONF_URL: fake_homemind.base_url, CONF_TOKEN: TOKEN},
        options={
            CONF_LLM_HASS_API: [llm.LLM_API_ASSIST],
            CONF_OFFLINE_FALLBACK: offline_fallback,
        },
    )
    entry.add_to_hass(hass)
    return entry


@pytest.fixture
async def home(hass: HomeAssistant) -> None:
    """A home with lights (tests/lights.py): the kitchen exposed to Assist, the bed light not."""
    assert await async_setup_component(hass, "intent", {})
    await setup_lights(hass)
    async_expose_entity(hass, "conversation", "light.kitchen_lights", True)
    for entity_id in hass.states.async_entity_ids("light"):
        if entity_id != "light.kitchen_lights":
            async_expose_entity(hass, "conversation", entity_id, False)


@pytest.fixture
async def init_integration(
    hass: HomeAssistant, home: None, mock_config_entry: MockConfigEntry
) -> MockConfigEntry:
    """The integration set up against the fake server."""
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    return mock_config_entry


type AddPerson = Callable[[str, str], Awaitable[User]]


@pytest.fixture
def add_person(hass: HomeAssistant) -> AddPerson:
    """`await add_person("anna", "Anna")`: a person with an HA user of their own.

    The user is named `anna_account`, so a test sees whether the person's name is used.
    """

    async def add(person_id: str, name: str) -> User:
        user = await hass.auth.async_create_user(f"{person_id}_account")
        person = {"id": person_id, "name": name, "user_id": user.id}
        assert await async_setup_component(hass, "person", {"person": [person]})
        return user

    return add


@pytest.fixture
def agent_id(hass: HomeAssistant, init_integration: MockConfigEntry) -> str:
    """The entity id of the Home Mind agent."""
    entity_id = er.async_get(hass).async_get_entity_id(
        "conversation", DOMAIN, init_integration.entry_id
    )
    assert entity_id is not None
    return entity_id
