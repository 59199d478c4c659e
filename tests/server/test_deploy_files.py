"""The deployment files name settings that exist and the paths the server serves."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from cloud_server.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
# Variables the deployment files set that are not Settings (the database image's own).
_NOT_OURS = {"POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD", "PYTHONUNBUFFERED", "PATH"}


def setting_names() -> set[str]:
    names: set[str] = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        names.update(str(choice) for choice in getattr(alias, "choices", []))
    return names


def test_compose_servers_use_real_settings_and_the_balancer_checks_readiness() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"server-1", "server-2", "postgres", "redis", "haproxy", "migrate"} <= set(services)
    env = services["server-1"]["environment"]
    assert set(env) - _NOT_OURS <= setting_names()
    assert services["migrate"]["command"] == ["homemind-server", "migrate"]
    haproxy = (ROOT / "deploy/haproxy/haproxy.cfg").read_text()
    assert "option httpchk GET /readyz" in haproxy


def test_fly_runs_two_machines_checks_readiness_and_migrates_on_release() -> None:
    fly = tomllib.loads((ROOT / "fly.toml").read_text())
    assert fly["deploy"]["release_command"] == "homemind-server migrate"
    assert fly["http_service"]["min_machines_running"] == 2
    assert fly["http_service"]["checks"][0]["path"] == "/readyz"
    assert set(fly["env"]) <= setting_names()


def test_addon_options_match_its_schema_and_map_to_settings() -> None:
    folder = ROOT / "homeassistant-addon/homemind"
    config = yaml.safe_load((folder / "config.yaml").read_text())
    for key in ("name", "version", "slug", "description", "arch"):
        assert config[key]
    assert set(config["options"]) == set(config["schema"])
    run = (folder / "run.sh").read_text()
    for option in config["options"]:
        assert f"option {option}" in run
    exported = set(re.findall(r"^(?:export )?([A-Z_]+)=", run, re.MULTILINE))
    assert exported <= setting_names()
    assert "HOMEMIND_DATA_DIR=/data" in run
