"""Deleting an account erases every byte of it, on SQLite and PostgreSQL: Stripe's
subscription is cancelled first, then installations, keys, sessions, reset links, memory,
usage, billing rows and the audit trail go; no table keeps the user's id, address or data."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select, text

from cloud_server.db.engine import DB_ENGINE, DB_SESSIONMAKER
from cloud_server.db.models import Installation
from cloud_server.memory.setup import MEMORY_BACKEND
from cloud_server.settings import Settings
from tests.fakes.stripe_api import WEBHOOK_SECRET, FakeStripe, event, signed, subscription_object
from tests.server.conftest import DEFAULT_PASSWORD
from tests.server.test_account_lifecycle import MakeApp, bearer, register


async def _all_rows(client: TestClient[Any, Any]) -> dict[str, list[tuple[Any, ...]]]:
    async with client.app[DB_ENGINE].connect() as connection:
        names = await connection.run_sync(lambda sync: sa_inspect(sync).get_table_names())
        rows = {}
        for name in names:
            if name == "alembic_version" or name.startswith("memories_fts_"):
                continue
            rows[name] = list((await connection.execute(text(f'SELECT * FROM "{name}"'))).all())
        return rows


async def test_deleting_an_account_leaves_nothing_of_it_in_the_database(
    engine_settings: Settings, make_app: MakeApp, create_installation: Any
) -> None:
    async with FakeStripe() as stripe:
        settings = engine_settings.model_copy(
            update={
                "stripe_secret_key": SecretStr(stripe.secret_key),
                "stripe_webhook_secret": SecretStr(WEBHOOK_SECRET),
                "stripe_price_managed": "price_m",
                "stripe_price_byok": "price_b",
                "stripe_api_base": stripe.base_url,
                "anthropic_api_key": None,
            }
        )
        client = await make_app(settings)
        keep = await register(client, "keep@example.test")
        email = "gone.person@example.test"
        me = await register(client, email)
        user_id = me["user"]["id"]
        auth = bearer(me["access_token"])
        installation_id, token = await create_installation(user_id=user_id, client=client)
        put = await client.put(
            f"/api/installations/{installation_id}/key",
            json={"api_key": "sk-ant-secret-key-1234"},
            headers=auth,
        )
        assert put.status == 200
        fact = "My cat is called Miso and loves the sofa."
        assert (
            await client.post("/api/memory", json={"content": fact}, headers=auth)
        ).status == 201
        await client.post("/api/auth/password-reset", json={"email": email})
        assert (
            await client.post("/api/billing/checkout", json={"plan": "managed"}, headers=auth)
        ).status == 200
        customer = next(iter(stripe.customers))
        obj = subscription_object(
            "sub_gone", status="active", price="price_m", user_id=user_id, customer=customer
        )
        stripe.subscriptions["sub_gone"] = obj
        body, headers = signed(event("customer.subscription.created", obj, created=1_900_000_000))
        assert (await client.post("/api/billing/webhook", data=body, headers=headers)).status == 200
        exported = await (await client.get("/api/account/export", headers=auth)).json()
        assert exported["user"]["email"] == email
        assert exported["memory"][0]["content"] == fact
        assert exported["billing"]["subscriptions"][0]["status"] == "active"
        assert "sk-ant-secret" not in str(exported)

        wrong = await client.delete(
            "/api/account", json={"password": "not the password"}, headers=auth
        )
        assert wrong.status == 403
        deleted = await client.delete(
            "/api/account", json={"password": DEFAULT_PASSWORD}, headers=auth
        )
        assert deleted.status == 204
        # Stripe first: the subscription is cancelled there.
        assert stripe.subscriptions["sub_gone"]["status"] == "canceled"
        assert (await client.get("/api/installation", headers=bearer(token))).status == 401
        assert (await client.get("/api/auth/me", headers=auth)).status == 401

        rows = await _all_rows(client)
        needles = [user_id, email, email.lower(), installation_id, fact, customer, "sub_gone"]
        for table, table_rows in rows.items():
            for row in table_rows:
                flat = " ".join(str(v) for v in row)
                for needle in needles:
                    assert needle not in flat, f"{table} still holds {needle!r}: {row}"
        # The other account is untouched.
        assert (
            await client.get("/api/auth/me", headers=bearer(keep["access_token"]))
        ).status == 200
        async with client.app[DB_SESSIONMAKER]() as db:
            assert (
                await db.execute(select(Installation).where(Installation.user_id == user_id))
            ).first() is None
        assert await client.app[MEMORY_BACKEND].count(user_id) == 0
