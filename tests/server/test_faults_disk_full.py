"""Fault: the disk fills up while memory is being written (SQLite).

SQLite's `max_page_count` caps the database file at its current size on every connection
of the server's engine, so the next page it needs fails exactly as a full disk does
(SQLITE_FULL, "database or disk is full"). The fact being written gets a clear 503
`memory_unavailable`; nothing of it is stored (not the row, not its search index entry);
every earlier fact is intact and still found; and once there is room again, writing works
without a restart.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine.url import make_url

from cloud_server.db.engine import DB_ENGINE
from cloud_server.settings import Settings

FACT = "The {n}th shelf in the cellar holds {filler}"


def _fact(n: int) -> str:
    return FACT.format(n=n, filler=f"jar{n} " * 250)[:1900]


async def _cap_database(app: Any, pages: int | None) -> None:
    """Every connection of the server's engine from now on: at most `pages` pages."""
    engine = app[DB_ENGINE]

    def cap(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA max_page_count = {pages or 1073741823}")
        cursor.close()

    event.listen(engine.sync_engine, "connect", cap)
    await engine.dispose()  # the pooled connections reconnect, capped


async def test_disk_full_while_remembering_is_a_clear_error_and_loses_nothing(
    make_app: Any,
    server_settings: Settings,
    create_user: Any,
    caplog: Any,
) -> None:
    client = await make_app(server_settings.model_copy(update={"memory_embedder": "none"}))
    _, token = await create_user(client=client)
    headers = {"Authorization": f"Bearer {token}"}
    path = Path(make_url(server_settings.database_url).database or "")

    stored: list[str] = []
    for n in range(3):
        response = await client.post("/api/memory", json={"content": _fact(n)}, headers=headers)
        assert response.status == 201
        stored.append((await response.json())["id"])
    with sqlite3.connect(path) as db:
        (pages,) = db.execute("PRAGMA page_count").fetchone()
    await _cap_database(client.app, pages)

    # Fill what room is left; the first refusal is the disk being full.
    refusal = None
    for n in range(3, 200):
        response = await client.post("/api/memory", json={"content": _fact(n)}, headers=headers)
        if response.status != 201:
            refusal = (n, response)
            break
        stored.append((await response.json())["id"])
    assert refusal is not None, "the capped database never filled up"
    failed_n, response = refusal
    assert response.status == 503
    assert response.content_type == "application/problem+json"
    body = await response.json()
    assert body["code"] == "memory_unavailable"
    assert "disk" not in body["detail"] and "sqlite" not in body["detail"].lower()
    assert "database or disk is full" in caplog.text  # the log says why

    # Nothing half-written: the refused fact is neither listed nor found; all before it are.
    listed = await client.get("/api/memory", params={"limit": 200}, headers=headers)
    assert listed.status == 200
    assert sorted(item["id"] for item in await listed.json()) == sorted(stored)
    missing = await client.get("/api/memory", params={"q": f"jar{failed_n}"}, headers=headers)
    assert await missing.json() == []
    for n, memory_id in enumerate(stored):
        found = await client.get("/api/memory", params={"q": f"jar{n}"}, headers=headers)
        assert [item["id"] for item in await found.json()] == [memory_id]

    # Room again (the disk was cleaned up): the same fact is stored, no restart needed.
    await _cap_database(client.app, None)
    again = await client.post("/api/memory", json={"content": _fact(failed_n)}, headers=headers)
    assert again.status == 201
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
