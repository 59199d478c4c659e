"""Every string in strings.json exists in all five languages, with the same placeholders."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

COMPONENT = Path(__file__).parents[3] / "custom_components" / "home_mind"
LANGUAGES = ("en", "de", "fr", "es", "nl")


def flatten(data: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(data, dict):
        out: dict[str, str] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): data}


def placeholders(text: str) -> set[str]:
    return set(re.findall(r"{(\w+)}", text))


STRINGS = flatten(json.loads((COMPONENT / "strings.json").read_text()))


@pytest.mark.parametrize("language", LANGUAGES)
def test_language_has_every_string(language: str) -> None:
    translated = flatten(json.loads((COMPONENT / "translations" / f"{language}.json").read_text()))

    assert set(translated) == set(STRINGS)
    for key, text in STRINGS.items():
        assert translated[key].strip(), key
        assert placeholders(translated[key]) == placeholders(text), key


def test_english_file_is_strings_json() -> None:
    english = json.loads((COMPONENT / "translations" / "en.json").read_text())
    assert english == json.loads((COMPONENT / "strings.json").read_text())


def test_every_action_field_is_described() -> None:
    services = yaml.safe_load((COMPONENT / "services.yaml").read_text())
    for service, spec in services.items():
        assert f"services.{service}.name" in STRINGS
        assert f"services.{service}.description" in STRINGS
        for field in spec["fields"]:
            assert f"services.{service}.fields.{field}.name" in STRINGS
            assert f"services.{service}.fields.{field}.description" in STRINGS


def test_every_sensor_state_is_translated() -> None:
    from custom_components.home_mind.sensor import SENSORS

    for description in SENSORS:
        assert f"entity.sensor.{description.translation_key}.name" in STRINGS
        for option in description.options or ():
            assert f"entity.sensor.{description.translation_key}.state.{option}" in STRINGS
