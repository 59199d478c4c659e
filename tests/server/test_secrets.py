"""Server secrets: hosted mode refuses bad or missing keys; self-hosted generates them
(docs/security-checklist.md row 12)."""

from __future__ import annotations

import base64
import stat

import pytest
from pydantic import SecretStr

from cloud_server.cli import main
from cloud_server.server_secrets import SECRETS_FILE, ConfigError, load_server_secrets
from cloud_server.settings import Settings

GOOD_ENC = base64.b64encode(b"k" * 32).decode()
GOOD_JWT = "j" * 32


def hosted(tmp_path, **values) -> Settings:
    values.setdefault("public_url", "https://homemind.example")
    return Settings(data_dir=tmp_path, mode="hosted", **values)


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        ({"jwt_secret": SecretStr(GOOD_JWT)}, "ENCRYPTION_KEY"),
        ({"encryption_key": SecretStr(GOOD_ENC)}, "JWT_SECRET"),
        (
            {
                "encryption_key": SecretStr(base64.b64encode(b"k" * 31).decode()),
                "jwt_secret": SecretStr(GOOD_JWT),
            },
            "ENCRYPTION_KEY",
        ),
        (
            {"encryption_key": SecretStr("not base64 at all!"), "jwt_secret": SecretStr(GOOD_JWT)},
            "ENCRYPTION_KEY",
        ),
        (
            {"encryption_key": SecretStr(GOOD_ENC), "jwt_secret": SecretStr("j" * 31)},
            "JWT_SECRET",
        ),
    ],
)
def test_hosted_refuses_missing_or_malformed_keys(tmp_path, values, variable):
    with pytest.raises(ConfigError, match=variable) as caught:
        load_server_secrets(hosted(tmp_path, **values))
    for value in values.values():
        assert value.get_secret_value() not in str(caught.value)
    assert not (tmp_path / SECRETS_FILE).exists()  # hosted never generates keys


def test_hosted_accepts_good_keys(tmp_path):
    secrets = load_server_secrets(
        hosted(tmp_path, encryption_key=SecretStr(GOOD_ENC), jwt_secret=SecretStr(GOOD_JWT))
    )
    assert secrets.encryption.active == b"k" * 32
    assert "kkkk" not in repr(secrets)


def test_self_hosted_generates_keys_once_with_mode_0600(tmp_path):
    settings = Settings(data_dir=tmp_path, mode="self-hosted", encryption_key=None, jwt_secret=None)
    first = load_server_secrets(settings)
    path = tmp_path / SECRETS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = load_server_secrets(settings)
    assert first.encryption.active == second.encryption.active
    assert first.jwt.active == second.jwt.active
    assert len(first.encryption.active) == 32 and len(first.jwt.active) >= 32


def test_serve_refuses_to_start_naming_the_variable(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOMEMIND_MODE", "hosted")
    monkeypatch.setenv("HOMEMIND_PUBLIC_URL", "https://homemind.example")
    monkeypatch.setenv("HOMEMIND_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("JWT_SECRET", GOOD_JWT)
    monkeypatch.setenv("ENCRYPTION_KEY", base64.b64encode(b"x" * 31).decode())
    assert main(["serve", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "ENCRYPTION_KEY" in err
    assert base64.b64encode(b"x" * 31).decode() not in err


def test_billing_without_webhook_secret_refuses_to_start(tmp_path):
    settings = hosted(
        tmp_path,
        encryption_key=SecretStr(GOOD_ENC),
        jwt_secret=SecretStr(GOOD_JWT),
        stripe_secret_key=SecretStr("sk_test_fake"),
    )
    with pytest.raises(ConfigError, match="STRIPE_WEBHOOK_SECRET"):
        load_server_secrets(settings)


@pytest.mark.parametrize("public_url", [None, "", "homemind.example", "ftp://homemind.example"])
def test_hosted_refuses_to_start_without_a_public_url(tmp_path, public_url):
    # Reset links would otherwise point at the bind address (http://0.0.0.0:8080).
    settings = hosted(
        tmp_path,
        encryption_key=SecretStr(GOOD_ENC),
        jwt_secret=SecretStr(GOOD_JWT),
        public_url=public_url,
    )
    with pytest.raises(ConfigError, match="HOMEMIND_PUBLIC_URL"):
        load_server_secrets(settings)


def test_serve_refuses_hosted_mode_without_public_url(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOMEMIND_MODE", "hosted")
    monkeypatch.delenv("HOMEMIND_PUBLIC_URL", raising=False)
    monkeypatch.setenv("HOMEMIND_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("JWT_SECRET", GOOD_JWT)
    monkeypatch.setenv("ENCRYPTION_KEY", GOOD_ENC)
    assert main(["serve", "--port", "0"]) == 2
    assert "HOMEMIND_PUBLIC_URL" in capsys.readouterr().err


def test_self_hosted_needs_no_public_url(tmp_path):
    settings = Settings(
        data_dir=tmp_path, mode="self-hosted", encryption_key=None, jwt_secret=None, public_url=None
    )
    assert load_server_secrets(settings).jwt.active
