"""A real Home Assistant process (`python -m homeassistant`), driven over its REST API.

Not the pytest harness: HA's own startup, its own requirement installer (`uv pip install`,
reading UV_* settings from the environment) and its own HTTP server on 127.0.0.1, a fresh
configuration directory with nothing but `custom_components/home_mind/` in it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import requests

from tests.server.server_process import free_port

ROOT = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 180
# What a user types into HA's onboarding page.
OWNER = {"name": "Owner", "username": "owner", "password": "saffron kettle on the windowsill"}

# The smallest configuration: HTTP on 127.0.0.1 and the conversation integration; HA adds
# its default integrations (frontend, onboarding, config, ...) by itself.
CONFIGURATION_YAML = """\
homeassistant:
  name: Install path smoke test
  time_zone: UTC
http:
  server_host: 127.0.0.1
  server_port: {port}
conversation:
"""


class HomeAssistantError(AssertionError):
    """HA answered something else than expected; the message carries its log's tail."""


class HomeAssistant:
    """`with HomeAssistant(python, config_dir, env) as ha:` starts HA and stops it after."""

    def __init__(self, python: Path, config_dir: Path, env: dict[str, str]) -> None:
        self.python = python
        self.config_dir = config_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client_id = f"{self.url}/"
        # Nothing of this checkout on HA's path: it imports only what it installed itself.
        self.env = {k: v for k, v in {**os.environ, **env}.items() if k != "PYTHONPATH"}
        self.token = ""
        self._http = requests.Session()
        self._process: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ process

    def prepare(self) -> None:
        """Write configuration.yaml and copy in the integration, as a HACS user has it."""
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "configuration.yaml").write_text(
            CONFIGURATION_YAML.format(port=self.port)
        )
        shutil.copytree(
            ROOT / "custom_components" / "home_mind",
            self.config_dir / "custom_components" / "home_mind",
            ignore=shutil.ignore_patterns("__pycache__"),
        )

    def __enter__(self) -> HomeAssistant:
        self.prepare()
        with (self.config_dir / "stdout.log").open("wb") as out:
            # Its own session: stop() ends HA and whatever it started (uv), by group id.
            self._process = subprocess.Popen(
                [str(self.python), "-m", "homeassistant", "--config", str(self.config_dir)],
                env=self.env,
                cwd=self.config_dir,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_until_serving()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def log(self, tail: int = 6000) -> str:
        path = self.config_dir / "home-assistant.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        stdout = self.config_dir / "stdout.log"
        if not text and stdout.exists():
            text = stdout.read_text(errors="replace")
        return text[-tail:]

    def _fail(self, message: str) -> HomeAssistantError:
        return HomeAssistantError(f"{message}\n--- home-assistant.log (tail) ---\n{self.log()}")

    def _wait_until_serving(self) -> None:
        """Until the onboarding API answers (HA's HTTP server and onboarding are up)."""
        deadline = time.monotonic() + STARTUP_SECONDS
        assert self._process is not None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise self._fail(f"Home Assistant exited with {self._process.returncode}")
            try:
                if self._http.get(f"{self.url}/api/onboarding", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise self._fail(f"Home Assistant did not serve {self.url} in {STARTUP_SECONDS} s")

    # ------------------------------------------------------------------ REST

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        kwargs.setdefault("timeout", 120)
        return self._http.request(method, f"{self.url}{path}", headers=headers, **kwargs)

    def call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if response.status_code != expect:
            raise self._fail(
                f"{method} {path}: HTTP {response.status_code} (expected {expect}): "
                f"{response.text[:2000]}"
            )
        return response.json()

    def onboard(self) -> None:
        """Create the owner through the onboarding API and log in: the token a browser gets."""
        created = self.call(
            "POST",
            "/api/onboarding/users",
            json={**OWNER, "client_id": self.client_id, "language": "en"},
        )
        tokens = self.call(
            "POST",
            "/auth/token",
            data={
                "grant_type": "authorization_code",
                "code": created["auth_code"],
                "client_id": self.client_id,
            },
        )
        self.token = tokens["access_token"]
        # Startup goes on after HTTP is up; a user acts on a running HA.
        deadline = time.monotonic() + STARTUP_SECONDS
        while self.call("GET", "/api/config")["state"] != "RUNNING":
            if time.monotonic() > deadline:
                raise self._fail("Home Assistant did not reach RUNNING")
            time.sleep(0.5)

    def conversation_agents(self) -> list[str]:
        states = self.call("GET", "/api/states")
        return sorted(
            state["entity_id"]
            for state in states
            if state["entity_id"].startswith("conversation.")
            and state["entity_id"] != "conversation.home_assistant"
        )
