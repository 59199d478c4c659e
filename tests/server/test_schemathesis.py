"""Checklist row 28: schemathesis attacks the live server with cases generated from the document.

The real server runs on 127.0.0.1 (with a fake Claude and a fake Stripe on 127.0.0.1), once
on SQLite (self-hosted) and once on PostgreSQL + Redis (hosted). Every operation of
`/api/openapi.json` gets positive and negative cases, sent with real tokens (a user's JWT or
an installation token, as its security scheme says). Each response must:

- not be a 5xx;
- match the document (status, content type, headers, body schema);
- refuse invalid data (negative cases get a 4xx) and refuse a missing or wrong token;
- leak no secret (server keys, the password, the installation token outside its one
  create response, a user's stored Anthropic key).

Then a stateful run follows the document's links (register → login → create an
installation → chat; create → read → update → delete a memory).

`HOMEMIND_FUZZ_EXAMPLES` (default 20 per operation and mode: > 1000 cases per engine)
sets the depth; `make fuzz` runs the long one.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from pydantic import SecretStr
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cloud_server.openapi import INSTALLATION_SCHEME, OPENAPI_PATH, USER_SCHEME
from cloud_server.settings import Settings
from tests.live_server import (
    PASSWORD,
    SERVER_ANTHROPIC_KEY,
    STRIPE_WEBHOOK_SECRET,
    Account,
    LiveStack,
)
from tests.pg_database import UNREACHABLE, pg_url
from tests.server.conftest import create_pg_database, drop_pg_database

EXAMPLES = int(os.environ.get("HOMEMIND_FUZZ_EXAMPLES", "20"))
STATEFUL_EXAMPLES = int(os.environ.get("HOMEMIND_FUZZ_STATEFUL", str(max(3, EXAMPLES // 4))))
RANDOM = os.environ.get("HOMEMIND_FUZZ_RANDOM", "0") == "1"
REDIS_URL = os.environ.get("HOMEMIND_TEST_REDIS", "redis://127.0.0.1:6379/0")
USER_API_KEY = "sk-ant-api03-user-" + "u" * 40
ENCRYPTION_KEY = base64.b64encode(secrets.token_bytes(32)).decode()
JWT_SECRET = secrets.token_urlsafe(48)


def invalid_data_rejected(ctx: Any, response: Any, case: Any) -> bool | None:
    """`negative_data_rejection`, except for unknown query parameters.

    The server ignores query parameters it does not know (as browsers and proxies add
    cache-busters); everything else that violates the document must be a 4xx.
    """
    try:
        return negative_data_rejection(ctx, response, case)
    except AcceptedNegativeData:
        data = case.meta.phase.data
        if data.parameter_location == ParameterLocation.QUERY and "additionalProperties" in (
            data.description or ""
        ):
            return None
        raise


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    invalid_data_rejected,
    ignored_auth,
]


def _sqlite_settings(tmp: Path) -> Settings:
    return Settings(
        data_dir=tmp,
        database_url=f"sqlite:///{tmp / 'homemind.db'}",
        mode="self-hosted",
        redis_url=None,
        smtp_host=None,
        public_url="http://homemind.test",
    )


def _hosted_settings(tmp: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp,
        database_url=database_url,
        mode="hosted",
        encryption_key=SecretStr(ENCRYPTION_KEY),
        jwt_secret=SecretStr(JWT_SECRET),
        redis_url=REDIS_URL,
        redis_key_prefix=f"homemind-fuzz-{secrets.token_hex(4)}:",
        smtp_host=None,
        public_url="https://homemind.test",
        # Generous limits: the fuzzer is one client; the limiter has its own tests.
        chat_rate_per_minute=100_000,
        chat_burst=10_000,
        chat_user_rate_per_minute=100_000,
        chat_user_burst=10_000,
    )


def _redis_or_skip() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as err:
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {err}")


@pytest.fixture(scope="module", params=["sqlite", "postgresql+redis"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveStack]:
    tmp = tmp_path_factory.mktemp(request.param.replace("+", "-"))
    if request.param == "sqlite":
        with LiveStack(_sqlite_settings(tmp)) as live:
            yield live
        return
    _redis_or_skip()
    try:
        name = create_pg_database()
    except UNREACHABLE as err:
        pytest.skip(f"PostgreSQL is not reachable: {err}")
    try:
        with LiveStack(_hosted_settings(tmp, pg_url(name))) as live:
            yield live
    finally:
        drop_pg_database(name)


@dataclass
class Tally:
    cases: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    operations: set[str] = field(default_factory=set)
    per_operation: dict[str, dict[int, int]] = field(default_factory=dict)

    def add(self, label: str, status: int) -> None:
        self.cases += 1
        self.operations.add(label)
        op = self.per_operation.setdefault(label, {})
        op[status] = op.get(status, 0) + 1
        self.by_status[status] = self.by_status.get(status, 0) + 1


def _secrets_of(stack: LiveStack, account: Account) -> dict[str, str]:
    """What must never appear in a response body (outside the one allowed place)."""
    values = {
        "server Anthropic key": SERVER_ANTHROPIC_KEY,
        "user's Anthropic key": USER_API_KEY,
        "Stripe secret key": stack.stripe.secret_key,
        "Stripe webhook secret": STRIPE_WEBHOOK_SECRET,
        "password": PASSWORD,
        "installation token": account.installation_token,
    }
    settings = stack.settings
    for name, secret in (
        ("ENCRYPTION_KEY", settings.encryption_key),
        ("JWT_SECRET", settings.jwt_secret),
    ):
        if secret is not None:
            values[name] = secret.get_secret_value()
    secrets_file = settings.data_dir / "secrets.json"
    if secrets_file.exists():
        import json

        for key, value in json.loads(secrets_file.read_text()).items():
            values[f"secrets file {key}"] = str(value)
    return values


def assert_no_secret(
    label: str, body: bytes, secrets_: dict[str, str], *, allow: tuple[str, ...] = ()
) -> None:
    text = body.decode("utf-8", "replace")
    for name, value in secrets_.items():
        if name not in allow and len(value) >= 8:
            assert value not in text, f"{label} leaked the {name}"


def _headers_for(operation: Any, account: Account) -> dict[str, str]:
    security = operation.definition.raw.get("security") or []
    schemes = {name for requirement in security for name in requirement}
    if USER_SCHEME in schemes:
        return account.user_headers
    if INSTALLATION_SCHEME in schemes:
        return account.installation_headers
    return {}


@pytest.fixture(scope="module")
def account(stack: LiveStack) -> Account:
    acct = stack.account()
    # The installation has the user's own key, so a leak of it would be visible.
    r = requests.put(
        f"{stack.base_url}/api/installations/{acct.installation_id}/key",
        json={"api_key": USER_API_KEY},
        headers=acct.user_headers,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return acct


@pytest.fixture(scope="module")
def stateful_account(stack: LiveStack) -> Account:
    # Made before the fuzzer spends the register throttle's budget for 127.0.0.1.
    return stack.account("Stateful")


@pytest.fixture(scope="module")
def schema(stack: LiveStack) -> Any:
    document = requests.get(stack.base_url + OPENAPI_PATH, timeout=30).json()
    loaded = schemathesis.openapi.from_dict(document)
    loaded.config.update(base_url=stack.base_url)
    return loaded


def _settings(examples: int) -> hypothesis.settings:
    return hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        # make test: the same cases every run (a gate must not flake); make fuzz: new ones.
        derandomize=not RANDOM,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        verbosity=hypothesis.Verbosity.quiet,
    )


# Operations a generated case must not run: they end the fixture's own session/installation.
_SPARE = {"logout", "delete_installation", "delete_all_memories"}


def _run_operation(
    operation: Any,
    mode: GenerationMode,
    call: Callable[[Any], requests.Response],
    examples: int,
    path_parameters: dict[str, str] | None = None,
) -> bool:
    kwargs = {"path_parameters": path_parameters} if path_parameters else {}

    @_settings(examples)
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode, **kwargs))
    def run(case: Any) -> None:
        call(case)

    try:
        run()
    except hypothesis.errors.Unsatisfiable as err:
        err.add_note(f"{operation.label} ({mode.value})")
        # Schemathesis found nothing to make invalid (e.g. only string path ids, where any
        # string is valid and a wrong one is a 404 that the positive run sees).
        if mode is not GenerationMode.NEGATIVE:
            raise
        return False
    return True


def test_every_operation_against_the_live_server(  # noqa: C901 (one scenario, its checks inline)
    stack: LiveStack,
    schema: Any,
    account: Account,
    stateful_account: Account,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    tally = Tally()
    secrets_ = _secrets_of(stack, account)
    # An account of their own for each operation that ends a session or removes things.
    spares = {op_id: stack.account(f"Spare {op_id}") for op_id in _SPARE}

    def make_call(operation: Any) -> Callable[[Any], requests.Response]:
        op_id = operation.definition.raw["operationId"]
        owner = spares.get(op_id, account)

        def call(case: Any) -> requests.Response:
            headers = _headers_for(operation, owner)
            response = case.call(headers=headers, timeout=60)
            tally.add(operation.label, response.status_code)
            case.validate_response(response, checks=CHECKS, headers=headers)
            allow = ("installation token",) if op_id == "create_installation" else ()
            assert_no_secret(operation.label, response.content, secrets_, allow=allow)
            if op_id not in ("register", "login", "refresh"):
                assert owner.access_token not in response.text
            return response

        return call

    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    memory = requests.post(
        f"{stack.base_url}/api/memory",
        json={"content": "The cat is called Miso."},
        headers=account.user_headers,
        timeout=30,
    ).json()
    real_ids = {"installations": account.installation_id, "memory": memory["id"]}
    not_negated: list[str] = []
    for operation in operations:
        call = make_call(operation)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            negated = _run_operation(operation, mode, call, EXAMPLES)
            if "{id}" in operation.path:
                # Again with an object that exists (generated ids are only ever 404s).
                owner_ids = dict(real_ids)
                if operation.definition.raw["operationId"] == "delete_installation":
                    owner_ids["installations"] = spares["delete_installation"].installation_id
                kind = "memory" if "/memory/" in operation.path else "installations"
                ids = {"id": owner_ids[kind]}
                negated = _run_operation(operation, mode, call, EXAMPLES, ids) or negated
            if not negated:
                not_negated.append(operation.label)
    # Every JSON body must have been attacked with invalid data.
    with_bodies = {
        op.label
        for op in operations
        if "application/json" in str(op.definition.raw.get("requestBody"))
    }
    assert not with_bodies & set(not_negated), with_bodies & set(not_negated)

    assert tally.operations == {op.label for op in operations}
    with capsys.disabled():
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(tally.by_status.items()))
        print(
            f"\nschemathesis [{stack.settings.effective_database_url.split(':')[0]}]: "
            f"{tally.cases} cases over {len(tally.operations)} operations ({statuses}); "
            f"no invalid form for: {', '.join(not_negated) or '-'}"
        )
        if os.environ.get("HOMEMIND_FUZZ_VERBOSE"):
            for label, counts in sorted(tally.per_operation.items()):
                print(f"  {label}: {dict(sorted(counts.items()))}")
    if EXAMPLES >= 20:
        assert tally.cases >= 1000
    # Secrets at rest and in the logs, after everything the fuzzer sent (row 12, 25).
    assert caplog.records  # the server logs (refused webhooks at least) were captured
    for record in caplog.records:
        assert_no_secret(f"log line {record.name}", record.getMessage().encode(), secrets_)
        assert account.access_token not in record.getMessage()
    if stack.settings.effective_database_url.startswith("sqlite"):
        db_file = stack.settings.data_dir / "homemind.db"
        dump = b"".join(p.read_bytes() for p in db_file.parent.glob("homemind.db*"))
        assert_no_secret("the database file", dump, secrets_)
        assert account.refresh_token.encode() not in dump
    else:
        assert_no_secret("the database", stack.run(_pg_dump(stack)).encode(), secrets_)


async def _pg_dump(stack: LiveStack) -> str:
    """Every row of every table, as text (what a stolen backup would show)."""
    import asyncpg

    url = stack.settings.database_url or ""
    connection = await asyncpg.connect(url)
    try:
        tables = await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        )
        rows = [
            str(row)
            for table in tables
            for row in await connection.fetch(f'SELECT * FROM "{table["tablename"]}"')
        ]
    finally:
        await connection.close()
    return "\n".join(rows)


def test_stateful_register_login_install_chat(
    stack: LiveStack,
    schema: Any,
    stateful_account: Account,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Schemathesis follows the document's links; the tokens each answer hands out are used
    for the next calls, so a scenario is register → login → create installation → chat."""
    first = stateful_account
    secrets_ = _secrets_of(stack, first)
    tally = Tally()
    base = schema.as_state_machine()

    class Scenario(base):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            self.user_headers = first.user_headers
            self.installation_headers = first.installation_headers
            self.tokens: set[str] = set()

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            security = case.operation.definition.raw.get("security") or []
            schemes = {name for requirement in security for name in requirement}
            if USER_SCHEME in schemes:
                return {"headers": dict(self.user_headers), "timeout": 60}
            if INSTALLATION_SCHEME in schemes:
                return {"headers": dict(self.installation_headers), "timeout": 60}
            return {"timeout": 60}

        def after_call(self, response: Any, case: Any) -> None:
            op_id = case.operation.definition.raw["operationId"]
            tally.add(case.operation.label, response.status_code)
            if response.status_code in (200, 201) and op_id in ("register", "login", "refresh"):
                token = response.json()["access_token"]
                self.user_headers = {"Authorization": f"Bearer {token}"}
            if response.status_code == 201 and op_id == "create_installation":
                token = response.json()["token"]
                self.tokens.add(token)
                self.installation_headers = {"Authorization": f"Bearer {token}"}
            allow = ("installation token",) if op_id == "create_installation" else ()
            assert_no_secret(case.operation.label, response.content, secrets_, allow=allow)
            if op_id != "create_installation":
                for token in self.tokens:
                    assert token not in response.text, f"{case.operation.label} leaked a token"

        def validate_response(
            self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            case.validate_response(response, checks=CHECKS, headers=kwargs.get("headers"))

    Scenario.run(
        settings=hypothesis.settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=10,
            deadline=None,
            derandomize=not RANDOM,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.generate],
        )
    )
    # Link sources always run; how deep a scenario goes (chat on a new installation's
    # token) depends on the draw, and the long run (`make fuzz`) goes deeper.
    chained = {"POST /api/auth/register", "POST /api/installations"}
    with capsys.disabled():
        print(f"\nstateful: {tally.cases} calls, {dict(sorted(tally.by_status.items()))}")
        if os.environ.get("HOMEMIND_FUZZ_VERBOSE"):
            for label, counts in sorted(tally.per_operation.items()):
                print(f"  {label}: {dict(sorted(counts.items()))}")
    assert chained <= tally.operations
