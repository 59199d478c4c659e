"""The deployment files name settings that exist and the paths the server serves."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
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


# --------------------------------------------------------------------------- offline tools

_COMPOSE_ENV = {
    "POSTGRES_PASSWORD": "placeholder",
    "ENCRYPTION_KEY": "placeholder",
    "JWT_SECRET": "placeholder",
    "HOMEMIND_PUBLIC_URL": "https://homemind.example",
}


def _compose_command() -> list[str] | None:
    """`docker compose` (the v2 plugin) or Debian's `docker-compose`; None when neither."""
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run(
            [docker, "compose", "version"], check=False, capture_output=True
        ).returncode
        == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_file_passes_compose_own_validation() -> None:
    # `config` validates against the Compose specification and resolves anchors and
    # variables without a Docker daemon (.ci/run installs Debian's docker-compose).
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor docker-compose is installed")
    env = {**os.environ, **_COMPOSE_ENV}
    result = subprocess.run(
        [*command, "-f", str(ROOT / "docker-compose.yml"), "config"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    for name in ("server-1", "server-2", "migrate"):
        assert resolved["services"][name]["environment"]["JWT_SECRET"] == "placeholder"
    # A missing secret stops compose with the variable's name, before anything starts.
    env.pop("JWT_SECRET")
    result = subprocess.run(
        [*command, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode != 0
    assert "JWT_SECRET" in result.stderr


def test_haproxy_defaults_point_at_the_compose_instances_and_the_config_is_valid() -> None:
    haproxy_cfg = (ROOT / "deploy/haproxy/haproxy.cfg").read_text()
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    # What compose runs without setting the addresses: its own services, on the image's port.
    defaults = re.findall(r'"\$\{HOMEMIND_SERVER_\d-([^}]+)\}"', haproxy_cfg)
    image_port = re.search(r"HOMEMIND_PORT=(\d+)", (ROOT / "Dockerfile").read_text())
    assert image_port is not None
    assert defaults == [f"server-1:{image_port[1]}", f"server-2:{image_port[1]}"]
    assert set(name.split(":")[0] for name in defaults) <= set(compose["services"])
    mount = compose["services"]["haproxy"]["volumes"][0]
    assert mount.startswith("./deploy/haproxy/haproxy.cfg:")
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not os.access(binary, os.X_OK):
        pytest.skip("haproxy is not installed")
    env = {  # `-c` only parses: nothing binds these
        **os.environ,
        "HOMEMIND_LB_BIND": "127.0.0.1:18080",
        "HOMEMIND_SERVER_1": "127.0.0.1:18081",
        "HOMEMIND_SERVER_2": "127.0.0.1:18082",
    }
    result = subprocess.run(
        [binary, "-c", "-f", str(ROOT / "deploy/haproxy/haproxy.cfg")],
        check=False,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_shell_script_is_linted() -> None:
    # `make lint` runs shellcheck over SHELL_SCRIPTS: a new script must be listed there.
    listed = re.search(r"^SHELL_SCRIPTS := (.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert listed is not None
    tracked = subprocess.run(
        ["git", "ls-files"], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout.split()
    scripts = {
        path
        for path in tracked
        if (ROOT / path).is_file()
        and (ROOT / path).read_bytes()[:64].split(b"\n")[0].startswith(b"#!")
        and re.search(rb"\b(ba)?sh\b", (ROOT / path).read_bytes()[:64].split(b"\n")[0])
    }
    assert scripts == set(listed[1].split())
