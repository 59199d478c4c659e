"""The base of Home Mind's coordinator entities, and the installation's service device."""

from __future__ import annotations

from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from homemind_client.models import InstallationInfo

from .const import DOMAIN, MANUFACTURER
from .coordinator import HomeMindCoordinator


def installation_device_info(entry_id: str, installation: InstallationInfo) -> dr.DeviceInfo:
    """The one service device of an installation; every entity of the entry belongs to it."""
    return dr.DeviceInfo(
        identifiers={(DOMAIN, entry_id)},
        name=installation.name,
        manufacturer=MANUFACTURER,
        model=f"{installation.tier} plan",
        entry_type=dr.DeviceEntryType.SERVICE,
    )


class HomeMindEntity(CoordinatorEntity[HomeMindCoordinator]):
    """An entity fed by the installation coordinator; unavailable while the cloud is down."""

    _attr_has_entity_name = True

    def __init__(self, coordinator: HomeMindCoordinator, key: str) -> None:
        super().__init__(coordinator)
        entry_id = coordinator.config_entry.entry_id
        self._attr_unique_id = f"{entry_id}_{key}"
        self._attr_device_info = installation_device_info(entry_id, coordinator.data)
