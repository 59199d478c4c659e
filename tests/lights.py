"""Lights for the HA-harness tests without HA's `demo` integration.

`demo` needs turbojpeg on HA 2026.x (its camera) and no longer sets lights up from YAML;
a small light platform registered through the harness works the same on every release.
"""

from __future__ import annotations

from typing import Any

from homeassistant.components.light import ColorMode, LightEntity
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddEntitiesCallback
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import (
    MockModule,
    MockPlatform,
    mock_integration,
    mock_platform,
)

LIGHT_NAMES = ("Kitchen Lights", "Bed Light", "Ceiling Lights")


class HomeLight(LightEntity):
    """An on/off light that does what it is told."""

    _attr_color_mode = ColorMode.ONOFF
    _attr_supported_color_modes = {ColorMode.ONOFF}
    _attr_should_poll = False

    def __init__(self, name: str) -> None:
        self._attr_name = name
        self._attr_unique_id = name.lower().replace(" ", "_")
        self._attr_is_on = False

    async def async_turn_on(self, **kwargs: Any) -> None:
        self._attr_is_on = True
        self.async_write_ha_state()

    async def async_turn_off(self, **kwargs: Any) -> None:
        self._attr_is_on = False
        self.async_write_ha_state()


async def setup_lights(hass: HomeAssistant) -> None:
    """Kitchen Lights, Bed Light and Ceiling Lights (light.kitchen_lights, ...), all off."""

    async def async_setup_platform(
        hass: HomeAssistant, config: Any, add_entities: AddEntitiesCallback, info: Any = None
    ) -> None:
        add_entities([HomeLight(name) for name in LIGHT_NAMES])

    mock_integration(hass, MockModule("home_lights"))
    mock_platform(
        hass, "home_lights.light", MockPlatform(async_setup_platform=async_setup_platform)
    )
    assert await async_setup_component(hass, "light", {"light": [{"platform": "home_lights"}]})
    await hass.async_block_till_done()
