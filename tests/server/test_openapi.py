"""Checklist row 28: the OpenAPI document is valid and describes every route the server serves."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from openapi_spec_validator import validate

from cloud_server.app import create_app
from cloud_server.openapi import (
    INSTALLATION_SCHEME,
    OPENAPI_PATH,
    USER_SCHEME,
    UndocumentedRouteError,
    build_document,
    registered_operations,
)
from cloud_server.settings import Settings
from homemind_client.models import ErrorCode

REPO = Path(__file__).resolve().parents[2]


def _billing_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "stripe_secret_key": "sk_test_openapi",
            "stripe_webhook_secret": "whsec_openapi",
            "stripe_price_byok": "price_byok",
            "stripe_price_managed": "price_managed",
        }
    )


async def test_document_is_served_and_valid(make_app: Any) -> None:
    client = await make_app()
    response = await client.get(OPENAPI_PATH)
    assert response.status == 200
    assert response.content_type == "application/json"
    document = await response.json()
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema
    assert document["openapi"] == "3.1.0"


@pytest.mark.parametrize("billing", [False, True], ids=["self-hosted", "billing"])
def test_every_served_route_is_documented(server_settings: Settings, billing: bool) -> None:
    settings = _billing_settings(server_settings) if billing else server_settings
    app = create_app(settings)
    document = build_document(app, strict=True)
    validate(document)
    documented = {(m, p) for p, item in document["paths"].items() for m in item}
    # The dashboard's HTML pages are served too; they are not API.
    served = {
        (m, p)
        for m, p in registered_operations(app)
        if p.startswith("/api/") or p in ("/healthz", "/readyz", "/metrics", "/mcp")
    }
    assert served == documented
    if billing:
        assert ("post", "/api/billing/webhook") in documented
    else:
        assert not any(p.startswith("/api/billing/") for _, p in documented)


def test_an_undocumented_api_route_is_an_error(server_settings: Settings) -> None:
    app = create_app(server_settings)

    async def handler(request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get("/api/secret-admin", handler)
    with pytest.raises(UndocumentedRouteError, match="GET /api/secret-admin"):
        build_document(app, strict=True)


def test_both_security_schemes_and_their_use(server_settings: Settings) -> None:
    document = build_document(create_app(_billing_settings(server_settings)))
    schemes = document["components"]["securitySchemes"]
    assert schemes[USER_SCHEME] == {**schemes[USER_SCHEME], "type": "http", "scheme": "bearer"}
    assert schemes[INSTALLATION_SCHEME]["scheme"] == "bearer"
    ops = {(m, p): op for p, item in document["paths"].items() for m, op in item.items()}
    assert ops[("get", "/api/auth/me")]["security"] == [{USER_SCHEME: []}]
    # An installation operation names the scope it needs (OpenAPI 3.1 roles) and its 403.
    assert ops[("post", "/api/chat")]["security"] == [{INSTALLATION_SCHEME: ["chat"]}]
    assert ops[("post", "/api/installation/memory")]["security"] == [
        {INSTALLATION_SCHEME: ["memory:write"]}
    ]
    assert ops[("get", "/api/installation")]["security"] == [{INSTALLATION_SCHEME: []}]
    for op in ops.values():
        needed = [
            scope
            for requirement in op["security"]
            for scope in requirement.get(INSTALLATION_SCHEME, [])
        ]
        refusals = op["responses"].get("403", {}).get("x-error-codes", [])
        assert bool(needed) == ("forbidden" in refusals), op["operationId"]
    assert ops[("post", "/api/auth/login")]["security"] == []
    # Every operation that needs a token says so, with the 401 codes it can answer.
    for (_method, _path), op in ops.items():
        if op["security"]:
            assert "invalid_token" in op["responses"]["401"]["x-error-codes"]


def _codes_used_by_the_server() -> set[str]:
    """Every `ErrorCode.X` the server's source refers to (this document's module aside)."""
    used: set[str] = set()
    for path in (REPO / "cloud_server").rglob("*.py"):
        if path.name == "openapi.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "ErrorCode"
            ):
                used.add(ErrorCode[node.attr].value)
    return used


# Answered by the router or the problem middleware for any path, not per operation.
_NOT_PER_OPERATION = {"method_not_allowed", "http_error", "not_found", "unauthorized", "forbidden"}


def test_every_code_the_server_uses_is_documented_on_an_operation(
    server_settings: Settings,
) -> None:
    document = build_document(create_app(_billing_settings(server_settings)))
    documented = {
        code
        for item in document["paths"].values()
        for op in item.values()
        for response in op["responses"].values()
        for code in response.get("x-error-codes", [])
    }
    used = _codes_used_by_the_server()
    assert {"invalid_token", "rate_limited", "memory_not_found"} <= used
    assert used - _NOT_PER_OPERATION <= documented, used - _NOT_PER_OPERATION - documented
    assert documented <= {c.value for c in ErrorCode}


def test_errors_are_problem_json_narrowed_to_their_codes(server_settings: Settings) -> None:
    document = build_document(create_app(server_settings))
    chat = document["paths"]["/api/chat"]["post"]["responses"]
    assert set(chat["401"]["x-error-codes"]) == {"invalid_token", "installation_revoked"}
    assert "rate_limited" in chat["429"]["x-error-codes"]
    assert "Retry-After" in chat["429"]["headers"]
    assert set(chat["503"]["x-error-codes"]) == {
        "upstream_unavailable",
        "database_unavailable",
        "temporarily_unavailable",  # a draining instance
    }
    assert "Retry-After" in chat["503"]["headers"]
    schema = chat["422"]["content"]["application/problem+json"]["schema"]
    assert schema["allOf"][1]["properties"]["code"]["enum"] == ["validation_error"]
    for item in document["paths"].values():
        for op in item.values():
            for status, response in op["responses"].items():
                if int(status) >= 400:
                    if op["operationId"] == "readyz" and status == "503":
                        continue  # not ready: the checks as JSON, not a problem
                    if op["operationId"] == "mcp" and status in ("400", "406"):
                        continue  # the MCP SDK's JSON-RPC errors, not problems
                    codes = response["x-error-codes"]
                    assert all(ErrorCode[c.upper()].status == int(status) for c in codes)
