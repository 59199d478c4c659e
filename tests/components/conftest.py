"""Harness setup shared by the home_mind tests.

Our `custom_components` package must be imported before anything imports the harness's
own top-level `custom_components` (its testing config), or HA would not find home_mind.
"""

from __future__ import annotations

import pytest

import custom_components.home_mind  # noqa: F401  # first, see the module docstring


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Every test may load custom integrations."""
