"""Diagnostic sensors: messages this period, the allowance, the plan and the subscription."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.typing import StateType

from homemind_client import models
from homemind_client.models import InstallationInfo

from . import HomeMindConfigEntry
from .coordinator import HomeMindCoordinator
from .entity import HomeMindEntity

# Entities only read the coordinator's data; it does the polling.
PARALLEL_UPDATES = 0

TIERS: list[str] = list(models.TIERS)
# Includes "none": no subscription (self-hosted, or a hosted account that never subscribed).
SUBSCRIPTION_STATUSES = list(models.SUBSCRIPTION_STATUSES)


def _known(value: str, options: list[str]) -> str | None:
    """A value a newer server may add shows as unknown rather than failing the entity."""
    return value if value in options else None


@dataclass(frozen=True, kw_only=True)
class HomeMindSensorEntityDescription(SensorEntityDescription):
    """How a sensor reads the installation."""

    value_fn: Callable[[InstallationInfo], StateType]
    last_reset_fn: Callable[[InstallationInfo], datetime | None] | None = None


SENSORS: tuple[HomeMindSensorEntityDescription, ...] = (
    HomeMindSensorEntityDescription(
        key="messages",
        translation_key="messages",
        # A count that starts again at 0 every billing period: `total` with the period's
        # start as `last_reset` keeps long-term statistics right across the reset.
        state_class=SensorStateClass.TOTAL,
        value_fn=lambda info: info.usage.messages,
        last_reset_fn=lambda info: info.usage.period_start,
    ),
    HomeMindSensorEntityDescription(
        key="allowance",
        translation_key="allowance",
        # None means "no limit" (self-hosted, BYOK): shown as unknown, the plan sensor
        # says why; a number sensor cannot hold "unlimited".
        value_fn=lambda info: info.usage.allowance,
    ),
    HomeMindSensorEntityDescription(
        key="tier",
        translation_key="tier",
        device_class=SensorDeviceClass.ENUM,
        options=TIERS,
        value_fn=lambda info: _known(info.tier, TIERS),
    ),
    HomeMindSensorEntityDescription(
        key="subscription_status",
        translation_key="subscription_status",
        device_class=SensorDeviceClass.ENUM,
        options=SUBSCRIPTION_STATUSES,
        value_fn=lambda info: _known(info.subscription.status, SUBSCRIPTION_STATUSES),
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: HomeMindConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the installation's sensors."""
    coordinator = entry.runtime_data.coordinator
    async_add_entities(HomeMindSensor(coordinator, description) for description in SENSORS)


class HomeMindSensor(HomeMindEntity, SensorEntity):
    """One figure of the installation's plan or usage."""

    _attr_entity_category = EntityCategory.DIAGNOSTIC
    entity_description: HomeMindSensorEntityDescription

    def __init__(
        self, coordinator: HomeMindCoordinator, description: HomeMindSensorEntityDescription
    ) -> None:
        super().__init__(coordinator, description.key)
        self.entity_description = description

    @property
    def native_value(self) -> StateType:
        """The current figure."""
        return self.entity_description.value_fn(self.coordinator.data)

    @property
    def last_reset(self) -> datetime | None:
        """When the count started again (the billing period's start)."""
        if self.entity_description.last_reset_fn is None:
            return None
        return self.entity_description.last_reset_fn(self.coordinator.data)
