"""The memory API through the real app: CRUD, scoping, export, bad input, installation actions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from cloud_server.settings import Settings

MakeApp = Callable[..., Awaitable[TestClient[Any, Any]]]
Headers = Callable[[str], dict[str, str]]


@pytest.fixture(autouse=True)
def settings(engine_settings: Settings) -> Settings:
    # Autouse and synchronous: the PostgreSQL database is made before any event loop runs.
    return engine_settings


@pytest.fixture
async def client(make_app: MakeApp, engine_settings: Settings) -> TestClient[Any, Any]:
    return await make_app(engine_settings)


@pytest.fixture
async def alice(
    client: TestClient[Any, Any],
    create_user: Callable[..., Awaitable[tuple[str, str]]],
    auth_headers: Headers,
) -> dict[str, str]:
    _, token = await create_user(client=client)
    return auth_headers(token)


async def _add(client: TestClient[Any, Any], headers: dict[str, str], **body: Any) -> Any:
    response = await client.post("/api/memory", json=body, headers=headers)
    assert response.status in (200, 201), await response.text()
    return await response.json()


async def test_create_get_patch_delete(client: TestClient[Any, Any], alice: dict[str, str]) -> None:
    response = await client.post(
        "/api/memory", json={"content": "My daughter is called Ana"}, headers=alice
    )
    assert response.status == 201
    created = await response.json()
    assert set(created) >= {"id", "content", "category", "speaker_id", "created_at", "updated_at"}
    assert created["speaker_id"] is None and created["content"] == "My daughter is called Ana"

    again = await client.post(
        "/api/memory", json={"content": "my daughter is called Ana."}, headers=alice
    )
    assert again.status == 200 and (await again.json())["id"] == created["id"]

    got = await client.get(f"/api/memory/{created['id']}", headers=alice)
    assert got.status == 200 and (await got.json())["content"] == "My daughter is called Ana"

    patched = await client.patch(
        f"/api/memory/{created['id']}",
        json={"content": "My daughter is called Anna", "category": "family"},
        headers=alice,
    )
    body = await patched.json()
    assert patched.status == 200, body
    assert body["content"] == "My daughter is called Anna" and body["category"] == "family"

    deleted = await client.delete(f"/api/memory/{created['id']}", headers=alice)
    assert deleted.status == 204
    gone = await client.get(f"/api/memory/{created['id']}", headers=alice)
    assert gone.status == 404
    problem = await gone.json()
    assert gone.content_type == "application/problem+json" and problem["code"] == "memory_not_found"


async def test_list_search_and_speaker_scope(
    client: TestClient[Any, Any], alice: dict[str, str]
) -> None:
    await _add(client, alice, content="The family likes jazz music at dinner")
    await _add(client, alice, content="Ana likes pop music", speaker_id="ana")
    await _add(client, alice, content="Dad likes rock music", speaker_id="dad")
    await _add(client, alice, content="The bins go out on Tuesday")

    everything = await (await client.get("/api/memory", headers=alice)).json()
    assert len(everything) == 4

    ana = await (
        await client.get("/api/memory", params={"speaker_id": "ana"}, headers=alice)
    ).json()
    assert sorted(m["content"] for m in ana) == [
        "Ana likes pop music",
        "The bins go out on Tuesday",
        "The family likes jazz music at dinner",
    ]

    hits = await (
        await client.get("/api/memory", params={"q": "when do the bins go out"}, headers=alice)
    ).json()
    assert hits[0]["content"] == "The bins go out on Tuesday"

    page = await (
        await client.get("/api/memory", params={"limit": "2", "offset": "1"}, headers=alice)
    ).json()
    assert [m["content"] for m in page] == [m["content"] for m in everything[1:3]]


async def test_another_users_memory_is_a_404(
    client: TestClient[Any, Any],
    alice: dict[str, str],
    create_user: Callable[..., Awaitable[tuple[str, str]]],
    auth_headers: Headers,
) -> None:
    fact = await _add(client, alice, content="The garage code is 4321")
    _, bob_token = await create_user(client=client)
    bob = auth_headers(bob_token)
    for method in ("GET", "PATCH", "DELETE"):
        kwargs: dict[str, Any] = {"json": {"content": "hacked"}} if method == "PATCH" else {}
        response = await client.request(method, f"/api/memory/{fact['id']}", headers=bob, **kwargs)
        assert response.status == 404, method
    assert await (await client.get("/api/memory", params={"q": "garage"}, headers=bob)).json() == []
    export = await (await client.get("/api/memory/export", headers=bob)).json()
    assert export["memories"] == []
    await client.delete("/api/memory", headers=bob)
    still = await client.get(f"/api/memory/{fact['id']}", headers=alice)
    assert (await still.json())["content"] == "The garage code is 4321"


async def test_delete_everything_and_export_with_history(
    client: TestClient[Any, Any], alice: dict[str, str]
) -> None:
    from cloud_server.memory.setup import MEMORY_BACKEND

    fact = await _add(client, alice, content="I like the bedroom at 19 degrees", speaker_id="ana")
    await _add(client, alice, content="The dog is called Rex")
    user_id = (await (await client.get("/api/auth/me", headers=alice)).json())["id"]
    await client.app[MEMORY_BACKEND].supersede(
        user_id, fact["id"], "I like the bedroom at 20 degrees"
    )

    export = await client.get("/api/memory/export", headers=alice)
    assert export.status == 200
    body = await export.json()
    assert body["count"] == 3
    old = next(m for m in body["memories"] if m["id"] == fact["id"])
    assert old["superseded_by"] and old["content"] == "I like the bedroom at 19 degrees"
    active = await (await client.get("/api/memory", headers=alice)).json()
    assert sorted(m["content"] for m in active) == [
        "I like the bedroom at 20 degrees",
        "The dog is called Rex",
    ]
    # History is in the export only.
    assert (await client.get(f"/api/memory/{fact['id']}", headers=alice)).status == 404

    assert (await client.delete("/api/memory", headers=alice)).status == 204
    assert await (await client.get("/api/memory", headers=alice)).json() == []
    assert (await (await client.get("/api/memory/export", headers=alice)).json())["count"] == 0


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 422),
        ({"content": ""}, 422),
        ({"content": "   "}, 422),
        ({"content": "x" * 2001}, 422),
        ({"content": "ok fact", "unknown": 1}, 422),
        ({"content": "ok fact", "category": "c" * 51}, 422),
    ],
)
async def test_bad_bodies_are_422(
    client: TestClient[Any, Any], alice: dict[str, str], body: dict[str, Any], status: int
) -> None:
    response = await client.post("/api/memory", json=body, headers=alice)
    assert response.status == status
    assert (await response.json())["code"] == "validation_error"


@pytest.mark.parametrize(
    "params", [{"limit": "0"}, {"limit": "abc"}, {"offset": "-1"}, {"limit": "201"}]
)
async def test_bad_query_parameters_are_422(
    client: TestClient[Any, Any], alice: dict[str, str], params: dict[str, str]
) -> None:
    response = await client.get("/api/memory", params=params, headers=alice)
    assert response.status == 422


async def test_memory_api_needs_a_user_token(
    client: TestClient[Any, Any],
    create_installation: Callable[..., Awaitable[tuple[str, str]]],
    auth_headers: Headers,
) -> None:
    assert (await client.get("/api/memory")).status == 401
    _, installation_token = await create_installation(client=client)
    response = await client.get("/api/memory", headers=auth_headers(installation_token))
    assert response.status == 401


async def test_installation_remember_and_forget(
    client: TestClient[Any, Any],
    create_user: Callable[..., Awaitable[tuple[str, str]]],
    create_installation: Callable[..., Awaitable[tuple[str, str]]],
    auth_headers: Headers,
) -> None:
    user_id, user_token = await create_user(client=client)
    _, kitchen = await create_installation(user_id=user_id, client=client)
    _, cabin = await create_installation(user_id=user_id, name="Cabin", client=client)
    headers = auth_headers(kitchen)

    added = await client.post(
        "/api/installation/memory",
        json={"content": "The garage door code is 4321", "category": "home"},
        headers=headers,
    )
    assert added.status == 201
    await client.post(
        "/api/installation/memory", json={"content": "Ana likes pop music"}, headers=headers
    )
    # Installations of one user share the household memory.
    listed = await (await client.get("/api/memory", headers=auth_headers(user_token))).json()
    assert len(listed) == 2

    nothing = await client.post(
        "/api/installation/memory/forget",
        json={"query": "the boat trailer"},
        headers=auth_headers(cabin),
    )
    assert nothing.status == 404 and (await nothing.json())["code"] == "memory_not_found"

    forgot = await client.post(
        "/api/installation/memory/forget",
        json={"query": "forget what I told you about the garage"},
        headers=auth_headers(cabin),
    )
    assert forgot.status == 200
    body = await forgot.json()
    assert [m["content"] for m in body["forgotten"]] == ["The garage door code is 4321"]
    left = await (await client.get("/api/memory", headers=auth_headers(user_token))).json()
    assert [m["content"] for m in left] == ["Ana likes pop music"]

    bad = await client.post("/api/installation/memory/forget", json={}, headers=headers)
    assert bad.status == 422
    assert (await client.post("/api/installation/memory", json={"content": "x y"})).status == 401
