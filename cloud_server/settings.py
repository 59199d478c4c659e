"""Server settings, read from the environment.

Every settings model of the server (this one, `billing/config.py`) is an `EnvSettings`:
each field reads one environment variable (`env("VARIABLE", "field")`) and can also be
given by its field name (tests, the CLI). The variables here are the documented ones
(README, "Configuration"); the billing knobs are kept apart in `billing/config.py`.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def env(variable: str, field: str) -> AliasChoices:
    """Read the field from `variable` (or its own name, when built with keywords)."""
    return AliasChoices(variable, field)


class EnvSettings(BaseSettings):
    """The base of the server's settings models: environment only, no `.env` file."""

    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore", env_file=None)


class Settings(EnvSettings):
    """Every setting has one environment variable; tests build it with keyword names."""

    host: str = Field(default="127.0.0.1", validation_alias=env("HOMEMIND_HOST", "host"))
    port: int = Field(default=8080, ge=0, le=65535, validation_alias=env("HOMEMIND_PORT", "port"))
    data_dir: Path = Field(
        default=Path("./data"), validation_alias=env("HOMEMIND_DATA_DIR", "data_dir")
    )
    mode: Literal["self-hosted", "hosted"] = Field(
        default="self-hosted", validation_alias=env("HOMEMIND_MODE", "mode")
    )
    public_url: str | None = Field(
        default=None, validation_alias=env("HOMEMIND_PUBLIC_URL", "public_url")
    )
    log_level: str = Field(default="INFO", validation_alias=env("HOMEMIND_LOG_LEVEL", "log_level"))

    database_url: str | None = Field(
        default=None, validation_alias=env("DATABASE_URL", "database_url")
    )
    # Connections each process keeps open to the database (SQLAlchemy's pool_size), and
    # how many more it may open at a busy moment (max_overflow). Every instance may hold
    # their sum: keep instances x (size + overflow) under PostgreSQL's max_connections.
    # A chat turn holds one only for each short query (none while Claude answers).
    db_pool_size: int = Field(
        default=20, ge=1, validation_alias=env("HOMEMIND_DB_POOL_SIZE", "db_pool_size")
    )
    db_max_overflow: int = Field(
        default=10, ge=0, validation_alias=env("HOMEMIND_DB_MAX_OVERFLOW", "db_max_overflow")
    )
    # Seconds a request waits for a free connection before failing (database_unavailable).
    db_pool_timeout: float = Field(
        default=30.0, gt=0, validation_alias=env("HOMEMIND_DB_POOL_TIMEOUT", "db_pool_timeout")
    )
    # Upgrade the schema on start; when off, `serve` refuses an outdated schema.
    auto_migrate: bool = Field(
        default=True, validation_alias=env("HOMEMIND_AUTO_MIGRATE", "auto_migrate")
    )

    encryption_key: SecretStr | None = Field(
        default=None, validation_alias=env("ENCRYPTION_KEY", "encryption_key")
    )
    jwt_secret: SecretStr | None = Field(
        default=None, validation_alias=env("JWT_SECRET", "jwt_secret")
    )

    anthropic_api_key: SecretStr | None = Field(
        default=None, validation_alias=env("ANTHROPIC_API_KEY", "anthropic_api_key")
    )
    anthropic_base_url: str | None = Field(
        default=None, validation_alias=env("ANTHROPIC_BASE_URL", "anthropic_base_url")
    )
    model: str = Field(default="claude-haiku-5-5", validation_alias=env("HOMEMIND_MODEL", "model"))
    extraction_model: str = Field(
        default="claude-haiku-5-5",
        validation_alias=env("HOMEMIND_EXTRACTION_MODEL", "extraction_model"),
    )
    # Facts are also extracted from each finished turn by a cheap model (a second call).
    # Dense recall's sentence embedder: multilingual (in-process, the default), minilm
    # (in-process, English), voyage (Voyage AI's API) or none (lexical only). See
    # cloud_server/memory/embedder.py.
    memory_embedder: str = Field(
        default="multilingual", validation_alias=env("HOMEMIND_EMBEDDER", "memory_embedder")
    )
    voyage_api_key: SecretStr | None = Field(
        default=None, validation_alias=env("VOYAGE_API_KEY", "voyage_api_key")
    )
    voyage_model: str = Field(
        default="voyage-3.5-lite", validation_alias=env("HOMEMIND_VOYAGE_MODEL", "voyage_model")
    )
    voyage_base_url: str = Field(
        default="https://api.voyageai.com",
        validation_alias=env("HOMEMIND_VOYAGE_BASE_URL", "voyage_base_url"),
    )
    memory_extraction: bool = Field(
        default=True, validation_alias=env("HOMEMIND_MEMORY_EXTRACTION", "memory_extraction")
    )
    max_tokens: int = Field(
        default=1024, ge=16, validation_alias=env("HOMEMIND_MAX_TOKENS", "max_tokens")
    )
    voice_max_tokens: int = Field(
        default=300, ge=16, validation_alias=env("HOMEMIND_VOICE_MAX_TOKENS", "voice_max_tokens")
    )
    # Voice satellites give up after ~15 s: the first token must come well before that.
    first_token_timeout: float = Field(
        default=10.0,
        gt=0,
        validation_alias=env("HOMEMIND_FIRST_TOKEN_TIMEOUT", "first_token_timeout"),
    )
    response_timeout: float = Field(
        default=60.0, gt=0, validation_alias=env("HOMEMIND_RESPONSE_TIMEOUT", "response_timeout")
    )
    # Text deltas closer together than this go out as one (the first at once); 0 writes
    # every delta. 50 ms is 20 updates a second; voice waits for whole sentences anyway.
    stream_flush_interval: float = Field(
        default=0.05,
        ge=0,
        le=1,
        validation_alias=env("HOMEMIND_STREAM_FLUSH_INTERVAL", "stream_flush_interval"),
    )
    max_model_calls: int = Field(
        default=5, ge=1, validation_alias=env("HOMEMIND_MAX_MODEL_CALLS", "max_model_calls")
    )
    max_body_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        validation_alias=env("HOMEMIND_MAX_BODY_BYTES", "max_body_bytes"),
    )

    stripe_secret_key: SecretStr | None = Field(
        default=None, validation_alias=env("STRIPE_SECRET_KEY", "stripe_secret_key")
    )
    stripe_webhook_secret: SecretStr | None = Field(
        default=None, validation_alias=env("STRIPE_WEBHOOK_SECRET", "stripe_webhook_secret")
    )
    stripe_price_byok: str | None = Field(
        default=None, validation_alias=env("STRIPE_PRICE_BYOK", "stripe_price_byok")
    )
    stripe_price_managed: str | None = Field(
        default=None, validation_alias=env("STRIPE_PRICE_MANAGED", "stripe_price_managed")
    )
    stripe_api_base: str | None = Field(
        default=None, validation_alias=env("STRIPE_API_BASE", "stripe_api_base")
    )

    redis_url: str | None = Field(default=None, validation_alias=env("REDIS_URL", "redis_url"))
    # Every key this server writes to Redis starts with it (several deployments, tests).
    redis_key_prefix: str = Field(
        default="homemind:", validation_alias=env("HOMEMIND_REDIS_PREFIX", "redis_key_prefix")
    )
    # Chat rate limits (GCRA): sustained rate per minute and burst, per installation and per
    # user; tool round trips count, so they are generous. None: the mode's default (hosted:
    # 30/10 and 60/20; self-hosted: off, it is the owner's own server); 0 switches one off.
    chat_rate_per_minute: float | None = Field(
        default=None,
        ge=0,
        validation_alias=env("HOMEMIND_CHAT_RATE_PER_MINUTE", "chat_rate_per_minute"),
    )
    chat_burst: int | None = Field(
        default=None, ge=1, validation_alias=env("HOMEMIND_CHAT_BURST", "chat_burst")
    )
    chat_user_rate_per_minute: float | None = Field(
        default=None,
        ge=0,
        validation_alias=env("HOMEMIND_CHAT_USER_RATE_PER_MINUTE", "chat_user_rate_per_minute"),
    )
    chat_user_burst: int | None = Field(
        default=None, ge=1, validation_alias=env("HOMEMIND_CHAT_USER_BURST", "chat_user_burst")
    )
    # Chat requests one installation may have in flight at once (None: hosted 4,
    # self-hosted no cap; 0: no cap).
    chat_concurrency: int | None = Field(
        default=None, ge=0, validation_alias=env("HOMEMIND_CHAT_CONCURRENCY", "chat_concurrency")
    )
    # Comma-separated CIDRs whose X-Forwarded-For is believed (the load balancer); none by default.
    trusted_proxies: str = Field(
        default="", validation_alias=env("HOMEMIND_TRUSTED_PROXIES", "trusted_proxies")
    )
    # Logs: plain text (self-hosted default) or one JSON object a line (hosted default).
    log_format: Literal["text", "json"] | None = Field(
        default=None, validation_alias=env("HOMEMIND_LOG_FORMAT", "log_format")
    )
    # /metrics on the main port: None = self-hosted yes, hosted no (never public by default).
    metrics_on_main_port: bool | None = Field(
        default=None, validation_alias=env("HOMEMIND_METRICS_ON_MAIN_PORT", "metrics_on_main_port")
    )
    # A separate port that serves only /metrics (for a private scrape network).
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, validation_alias=env("HOMEMIND_METRICS_PORT", "metrics_port")
    )
    metrics_host: str = Field(
        default="127.0.0.1", validation_alias=env("HOMEMIND_METRICS_HOST", "metrics_host")
    )
    # SIGTERM: readiness fails at once; new chats are refused after it; streams in flight get
    # `drain_timeout` seconds to finish. `drain_delay` (None: hosted 5, self-hosted 0) lets the
    # load balancer's health check see the failing readiness before the refusals start.
    drain_delay: float | None = Field(
        default=None, ge=0, validation_alias=env("HOMEMIND_DRAIN_DELAY", "drain_delay")
    )
    drain_timeout: float = Field(
        default=25.0, ge=0, validation_alias=env("HOMEMIND_DRAIN_TIMEOUT", "drain_timeout")
    )
    shodh_url: str | None = Field(default=None, validation_alias=env("SHODH_URL", "shodh_url"))
    shodh_api_key: SecretStr | None = Field(
        default=None, validation_alias=env("SHODH_API_KEY", "shodh_api_key")
    )

    smtp_host: str | None = Field(default=None, validation_alias=env("SMTP_HOST", "smtp_host"))
    smtp_port: int = Field(default=587, validation_alias=env("SMTP_PORT", "smtp_port"))
    smtp_username: str | None = Field(
        default=None, validation_alias=env("SMTP_USERNAME", "smtp_username")
    )
    smtp_password: SecretStr | None = Field(
        default=None, validation_alias=env("SMTP_PASSWORD", "smtp_password")
    )
    smtp_from: str = Field(
        default="Home Mind <no-reply@localhost>", validation_alias=env("SMTP_FROM", "smtp_from")
    )
    smtp_starttls: bool = Field(
        default=True, validation_alias=env("SMTP_STARTTLS", "smtp_starttls")
    )

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip():
                ipaddress.ip_network(part.strip(), strict=False)  # ValueError names the entry
        return value

    @property
    def hosted(self) -> bool:
        return self.mode == "hosted"

    @property
    def billing_enabled(self) -> bool:
        return self.stripe_secret_key is not None

    @property
    def effective_database_url(self) -> str:
        """`DATABASE_URL`, or SQLite in the data folder; always with an async driver."""
        url = self.database_url or f"sqlite:///{(self.data_dir / 'homemind.db').resolve()}"
        if url.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+asyncpg://" + url.removeprefix(prefix)
        return url

    @property
    def effective_log_format(self) -> Literal["text", "json"]:
        return self.log_format or ("json" if self.hosted else "text")

    @property
    def effective_metrics_on_main_port(self) -> bool:
        if self.metrics_on_main_port is None:
            return not self.hosted
        return self.metrics_on_main_port

    @property
    def effective_drain_delay(self) -> float:
        if self.drain_delay is None:
            return 5.0 if self.hosted else 0.0
        return self.drain_delay

    @property
    def effective_public_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"
