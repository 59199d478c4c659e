"""One version number everywhere a user or Home Assistant reads one.

The release is tagged `v<version>`; HA installs `homemind-client==<version>` from the
manifest, so the manifest, both distributions, the CLIs and the server's /healthz must agree.
"""

from __future__ import annotations

import json
import re
import tomllib
from importlib.metadata import version as installed_version
from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request

import cloud_server
import homemind_client
from cloud_server import cli as server_cli
from cloud_server.app import healthz
from homemind_client import cli as client_cli

ROOT = Path(__file__).resolve().parents[2]


def _pyproject(path: Path) -> dict[str, object]:
    project = tomllib.loads(path.read_text())["project"]
    assert isinstance(project, dict)
    return project


SERVER = _pyproject(ROOT / "pyproject.toml")
CLIENT = _pyproject(ROOT / "homemind_client" / "pyproject.toml")
MANIFEST = json.loads((ROOT / "custom_components" / "home_mind" / "manifest.json").read_text())
VERSION = CLIENT["version"]


def test_the_two_distributions_and_the_manifest_share_one_version() -> None:
    assert CLIENT["name"] == "homemind-client"
    assert SERVER["name"] == "homemind-server"
    assert re.fullmatch(r"\d+\.\d+\.\d+", str(VERSION))
    assert SERVER["version"] == VERSION
    assert MANIFEST["version"] == VERSION


def test_the_server_and_the_manifest_require_exactly_this_client_release() -> None:
    assert MANIFEST["requirements"] == [f"homemind-client=={VERSION}"]
    dependencies = SERVER["dependencies"]
    assert isinstance(dependencies, list)
    assert f"homemind-client=={VERSION}" in dependencies


def test_the_packages_and_their_installed_metadata_carry_the_version() -> None:
    assert homemind_client.__version__ == VERSION
    assert cloud_server.__version__ == VERSION
    assert installed_version("homemind-client") == VERSION
    assert installed_version("homemind-server") == VERSION


def test_both_command_lines_print_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        client_cli.main(["--version"])
    with pytest.raises(SystemExit):
        server_cli.main(["--version"])
    printed = capsys.readouterr().out.split()
    assert printed == ["homemind", VERSION, VERSION]


async def test_healthz_reports_the_version() -> None:
    response = await healthz(make_mocked_request("GET", "/healthz"))
    assert json.loads(response.text or "")["version"] == VERSION
