"""The install path as a HACS user's Home Assistant takes it, on a real HA process.

The client wheel is built from this repo into a find-links folder (standing in for the
published release), HA runs from a plain install of `homeassistant==VERSION` WITHOUT
homemind-client (scripts/ha-venv, cached per machine; each test runs on a hard-linked copy,
so HA's install never reaches the cache), with only `custom_components/home_mind/` in its
configuration. HA installs the manifest's requirement itself, with `uv pip install` reading
UV_FIND_LINKS; the owner is created through the onboarding API, the config flow completed over
REST against the real server (the fake Claude behind it), and one conversation turn answered.

Each HA release runs on the Python it needs: 2025.4.4 on this machine's 3.13 venv, 2026.11.0
on 3.14 in the scripts/py314 chroot; `make test-install` runs both.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from cloud_server.settings import Settings
from tests.fakes import claude
from tests.install.home_assistant import ROOT, HomeAssistant
from tests.live_server import LiveStack

MANIFEST = json.loads((ROOT / "custom_components" / "home_mind" / "manifest.json").read_text())
(REQUIREMENT,) = MANIFEST["requirements"]
ANSWER = "The kitchen light is on, and the kettle has just boiled."

# HA release -> the Python it runs on here (3.14 only exists in the scripts/py314 chroot).
HA_RELEASES = {"2025.4.4": (3, 13), "2026.11.0": (3, 14)}


def _ha_venv(version: str) -> Path:
    """The cached plain HA install (built on first use, then found by its stamp)."""
    # Its stderr (a failed build's log tail) stays visible in the test's report.
    done = subprocess.run(
        [str(ROOT / "scripts" / "ha-venv"), version, sys.executable],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return Path(done.stdout.strip().splitlines()[-1])


def _clone(venv: Path, into: Path) -> Path:
    """A hard-linked copy: seconds instead of minutes. HA's installer only adds files
    (and would unlink, never rewrite, old ones), so the cached venv stays as it was."""
    linked = subprocess.run(["cp", "-al", str(venv), str(into)], check=False, capture_output=True)
    if linked.returncode != 0:  # another filesystem: a real copy
        shutil.rmtree(into, ignore_errors=True)
        subprocess.run(["cp", "-a", str(venv), str(into)], check=True)
    return into / "bin" / "python"


def _build_client_wheel(ha_python: Path, tmp_path: Path) -> Path:
    """`uv build` of homemind_client/ (a copy: no build/ folder lands in the repo)."""
    source = tmp_path / "src" / "homemind_client"
    shutil.copytree(
        ROOT / "homemind_client",
        source,
        ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"),
    )
    find_links = tmp_path / "find-links"
    subprocess.run(
        [str(ha_python), "-m", "uv", "build", "--quiet", "--wheel", "--out-dir", str(find_links)],
        cwd=source,
        check=True,
    )
    (wheel,) = find_links.glob("homemind_client-*.whl")
    return wheel


def _installed_client(python: Path) -> dict[str, str] | None:
    """Where and what homemind-client is in that interpreter's environment (None: absent)."""
    probe = (
        "import importlib.metadata as m, importlib.util as u, json\n"
        "try:\n d = m.distribution('homemind-client')\n"
        "except m.PackageNotFoundError:\n print('null'); raise SystemExit\n"
        "print(json.dumps({'version': d.version, 'installer': (d.read_text('INSTALLER') or '')"
        ".strip(), 'client_py': u.find_spec('homemind_client.client').origin}))\n"
    )
    # Run from / : the checkout's homemind_client/ must not be what it finds.
    done = subprocess.run(
        [str(python), "-c", probe], check=True, capture_output=True, text=True, cwd="/"
    )
    found: dict[str, str] | None = json.loads(done.stdout)
    return found


def _server_settings(tmp_path: Path) -> Settings:
    data = tmp_path / "server"
    data.mkdir()
    return Settings(
        data_dir=data,
        database_url=f"sqlite:///{data / 'homemind.db'}",
        mode="self-hosted",
        redis_url=None,
        smtp_host=None,
        public_url="http://homemind.test",
    )


@pytest.mark.parametrize("version", sorted(HA_RELEASES))
def test_home_assistant_installs_the_client_itself_and_the_agent_answers(
    version: str, tmp_path: Path
) -> None:
    python = HA_RELEASES[version]
    if sys.version_info[:2] != python:
        pytest.skip(
            f"HA {version} runs on Python {python[0]}.{python[1]} (this is "
            f"{sys.version_info[0]}.{sys.version_info[1]}); `make test-install` runs it there"
        )
    cached = _ha_venv(version)
    assert _installed_client(cached / "bin" / "python") is None, f"{cached} has homemind-client"
    ha_python = _clone(cached, tmp_path / "ha-venv")
    wheel = _build_client_wheel(ha_python, tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        wheel_version = Parser().parsestr(archive.read(metadata).decode())["Version"]
        wheel_client_py = archive.read("homemind_client/client.py")
    assert f"homemind-client=={wheel_version}" == REQUIREMENT

    # The release stands in the find-links folder; its dependencies (aiohttp, pydantic) come
    # from the package index or are already there, pinned by HA's package_constraints.txt.
    env = {"UV_FIND_LINKS": str(wheel.parent)}
    with LiveStack(_server_settings(tmp_path), billing=False) as stack:
        account = stack.account("Cottage")
        stack.claude.script(claude.text(ANSWER))
        with HomeAssistant(ha_python, tmp_path / "config", env) as ha:
            ha.onboard()
            # "Add integration" → Home Mind: HA installs the requirement, then shows the form.
            flow = ha.call(
                "POST",
                "/api/config/config_entries/flow",
                json={"handler": "home_mind", "show_advanced_options": False},
            )
            assert (flow["type"], flow["step_id"]) == ("form", "user"), flow
            entry = ha.call(
                "POST",
                f"/api/config/config_entries/flow/{flow['flow_id']}",
                json={"url": stack.base_url, "token": account.installation_token},
            )
            assert (entry["type"], entry["title"]) == ("create_entry", "Cottage"), entry
            assert entry["result"]["state"] == "loaded", entry

            (agent,) = ha.conversation_agents()
            turn = ha.call(
                "POST",
                "/api/conversation/process",
                json={"text": "Is the kitchen light on?", "agent_id": agent, "language": "en"},
            )
            assert turn["response"]["speech"]["plain"]["speech"] == ANSWER, turn
        asked = stack.claude.last_request
        assert "Is the kitchen light on?" in json.dumps(asked.messages)

    # Installed by HA (uv), from the wheel built above, into the environment HA imports from.
    installed = _installed_client(ha_python)
    assert installed is not None
    assert (installed["version"], installed["installer"]) == (wheel_version, "uv")
    assert Path(installed["client_py"]).read_bytes() == wheel_client_py
    assert Path(installed["client_py"]).is_relative_to(tmp_path / "ha-venv")
