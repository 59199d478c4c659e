"""Who may see a personal fact: the speaker, and any turn that names that person.

On every backend (SQLite, PostgreSQL, Shodh through its fake, and hybrid recall), through
the chat's recall (`MemoryService.recall`), both when everything fits the prompt and when
only the ranked facts do.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from cloud_server.accounts.principal import InstallationPrincipal
from cloud_server.chat.hooks import RecalledFact
from cloud_server.chat.persona import dynamic_system_text
from cloud_server.db.engine import make_sessionmaker
from cloud_server.memory.provider import MemoryService
from cloud_server.memory.speakers import NAMES_TTL, SpeakerNames, named_in
from cloud_server.memory.sql_backend import sql_backend_for
from cloud_server.settings import Settings
from homemind_client.models import ChatRequest
from tests.server.test_memory_backends import Env, env, kind_url

__all__ = ["env", "kind_url"]  # the parametrised fixtures: every backend

PETRA = {"id": "ha-user-petra", "name": "Petra Novak"}
TOM = {"id": "ha-user-tom", "name": "Tom"}
LATE_SHIFTS = "I work late shifts on Fridays"
PETRA_STATION = "My favourite radio station is Radio Swiss Classic"
TOM_STATION = "My favourite radio station is Jazz FM"


def service(env: Env, tmp_path: Path) -> MemoryService:
    return MemoryService(env.backend, Settings(data_dir=tmp_path, memory_extraction=False))


async def recall(
    svc: MemoryService, user: str, message: str, speaker: dict[str, str] | None = None
) -> list[RecalledFact]:
    chat = ChatRequest(message=message, speaker=speaker)
    return await svc.recall(InstallationPrincipal("inst", user, "Home", True), chat, message)


async def household(env: Env, tmp_path: Path) -> tuple[MemoryService, str]:
    user = await env.new_user()
    svc = service(env, tmp_path)
    # Earlier requests of Petra and Tom carried their names.
    await recall(svc, user, "Good morning", PETRA)
    await recall(svc, user, "Good morning", TOM)
    for _ in range(100):
        if len(await env.backend.speakers(user)) == 2:
            break
        await asyncio.sleep(0.02)
    assert await env.backend.speakers(user) == {PETRA["id"]: PETRA["name"], TOM["id"]: "Tom"}
    await env.backend.add(user, LATE_SHIFTS, speaker_id=PETRA["id"])
    await env.backend.add(user, PETRA_STATION, speaker_id=PETRA["id"])
    await env.backend.add(user, TOM_STATION, speaker_id=TOM["id"])
    await env.backend.add(user, "The bins go out on Monday evening")
    return svc, user


async def fill(env: Env, user: str) -> None:
    """Enough household facts that not everything fits the prompt: only ranked ones do."""
    for n in range(70):
        await env.backend.add(user, f"Shelf {n} in the basement holds the box of winter things {n}")


def contents(facts: list[RecalledFact]) -> list[str]:
    return [f.content for f in facts]


@pytest.mark.parametrize("crowded", [False, True], ids=["all-fit", "ranked"])
async def test_a_turn_naming_a_person_sees_their_facts(
    env: Env, tmp_path: Path, crowded: bool
) -> None:
    svc, user = await household(env, tmp_path)
    if crowded:
        await fill(env, user)
    # At a kitchen satellite, no speaker known: Petra is named, so her facts may be seen.
    facts = await recall(svc, user, "Will Petra be home for dinner on Friday? Her late shifts")
    assert LATE_SHIFTS in contents(facts)
    shown = next(f for f in facts if f.content == LATE_SHIFTS)
    assert shown.speaker_id == PETRA["id"] and shown.speaker_name == "Petra Novak"
    assert TOM_STATION not in contents(facts)
    # Tom asking about Petra by name: hers, and his own.
    facts = await recall(svc, user, "What is Petra's favourite radio station?", TOM)
    assert PETRA_STATION in contents(facts)
    await svc.drain()


@pytest.mark.parametrize("crowded", [False, True], ids=["all-fit", "ranked"])
async def test_nobody_else_sees_a_persons_facts_unless_named(
    env: Env, tmp_path: Path, crowded: bool
) -> None:
    svc, user = await household(env, tmp_path)
    if crowded:
        await fill(env, user)
    # The same question without her name, from the kitchen: not hers to give.
    assert LATE_SHIFTS not in contents(await recall(svc, user, "Who works late shifts on Fridays?"))
    # "my favourite station" from Tom never brings up Petra's, and the other way round.
    toms = contents(await recall(svc, user, "Play my favourite radio station", TOM))
    assert TOM_STATION in toms and PETRA_STATION not in toms
    petras = contents(await recall(svc, user, "Play my favourite radio station", PETRA))
    assert PETRA_STATION in petras and TOM_STATION not in petras
    # An unknown name names nobody.
    assert LATE_SHIFTS not in contents(await recall(svc, user, "Will Paula work late on Friday?"))
    await svc.drain()


async def test_forgetting_everything_forgets_the_speakers(env: Env, tmp_path: Path) -> None:
    svc, user = await household(env, tmp_path)
    await env.backend.delete_all(user)
    assert await env.backend.speakers(user) == {}
    await svc.drain()


async def test_a_name_is_written_again_when_it_changes_or_was_forgotten(
    env: Env, tmp_path: Path
) -> None:
    """This instance writes a name once per change: a renamed person is known by the new
    name, and after "forget everything" a person who speaks again is known again."""
    svc, user = await household(env, tmp_path)
    renamed = {"id": PETRA["id"], "name": "Petra Svoboda"}
    await env.backend.note_speaker(user, renamed["id"], renamed["name"])
    assert (await env.backend.speakers(user))[PETRA["id"]] == "Petra Svoboda"
    await env.backend.delete_all(user)
    await env.backend.note_speaker(user, TOM["id"], TOM["name"])
    assert await env.backend.speakers(user) == {TOM["id"]: "Tom"}
    await svc.drain()


async def test_a_name_another_instance_learned_is_known_within_the_ttl(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two server instances on one database: names are read once per NAMES_TTL seconds,
    so a name the other instance noted is known here when that time has passed, and a
    name this instance noted is known at once."""
    if env.shodh is not None:
        pytest.skip("the Shodh backend keeps the names in the SQL store tested here")
    now = [1000.0]
    here = sql_backend_for(env.engine, make_sessionmaker(env.engine))
    monkeypatch.setattr(here, "_names", SpeakerNames(clock=lambda: now[0]))
    there = sql_backend_for(env.engine, make_sessionmaker(env.engine))
    user = await env.new_user()
    await here.add(user, LATE_SHIFTS, speaker_id=PETRA["id"])
    svc_here = MemoryService(here, Settings(data_dir=tmp_path, memory_extraction=False))
    question = "Will Petra be home for dinner on Friday?"
    assert LATE_SHIFTS not in contents(await recall(svc_here, user, question))  # names read

    await there.note_speaker(user, PETRA["id"], PETRA["name"])  # Petra spoke to the other
    now[0] += NAMES_TTL
    assert LATE_SHIFTS in contents(await recall(svc_here, user, question))

    # A name this instance notes is known to its next recall, before the TTL runs out.
    await here.add(user, TOM_STATION, speaker_id=TOM["id"])
    await here.note_speaker(user, TOM["id"], TOM["name"])
    assert TOM_STATION in contents(await recall(svc_here, user, "What station does Tom like?"))
    await svc_here.drain()
    await here.close()
    await there.close()


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("Will Petra be home on Friday?", ["petra"]),
        ("Is it petra's turn to cook?", ["petra"]),
        ("Does Petra Novak work late?", ["petra"]),
        ("Is Renée coming?", ["renee"]),
        ("Is Renee coming?", ["renee"]),
        ("Petrol prices went up", []),  # whole words only
        ("Will the bins go out?", []),  # "Will" the stop word is no first name on its own
        ("Does Will Smith like jazz?", ["will"]),  # ...the full name is
    ],
)
def test_names_are_whole_words_without_case_or_accents(text: str, named: list[str]) -> None:
    speakers = {"petra": "Petra Novak", "renee": "Renée", "will": "Will Smith"}
    assert named_in(text, speakers) == named


def test_the_prompt_says_whose_fact_it_is() -> None:
    chat = ChatRequest(message="Will Petra be home?")
    facts = [RecalledFact("f1", LATE_SHIFTS, None, PETRA["id"], "Petra Novak")]
    text = dynamic_system_text(chat, datetime(2026, 1, 1, tzinfo=UTC), facts)
    assert f"{LATE_SHIFTS} (said by Petra Novak, about themselves)" in text


def test_names_read_while_this_instance_noted_one_are_not_kept() -> None:
    """A read that began before this process wrote a name would hide that name for the
    whole TTL; it is not kept, and the next recall reads again."""
    names = SpeakerNames(clock=lambda: 0.0)
    mark = names.mark()
    assert names.hear("household", PETRA["id"], PETRA["name"])
    names.noted("household", PETRA["id"], PETRA["name"])
    # What the read found is from before the write: not kept, but the name is not lost.
    assert names.put("household", {}, mark) == {PETRA["id"]: PETRA["name"]}
    assert names.get("household") is None
    names.put("household", {PETRA["id"]: PETRA["name"]}, names.mark())
    assert names.get("household") == {PETRA["id"]: PETRA["name"]}
    assert not names.hear("household", PETRA["id"], PETRA["name"])  # written once


def test_a_heard_name_is_known_until_its_write_lands() -> None:
    """Between hearing a name and its write committing (or after the write failed), every
    read of the household's names carries it; once written, the database's copy does."""
    names = SpeakerNames(clock=lambda: 0.0)
    names.put("household", {TOM["id"]: "Tom"}, names.mark())
    assert names.hear("household", PETRA["id"], PETRA["name"])
    assert names.get("household") == {TOM["id"]: "Tom", PETRA["id"]: PETRA["name"]}
    assert names.put("household", {}, names.mark()) == {PETRA["id"]: PETRA["name"]}
    # The write failed: the next request that carries the name writes it again.
    assert names.hear("household", PETRA["id"], PETRA["name"])
    names.noted("household", PETRA["id"], PETRA["name"])
    assert names.put("household", {}, names.mark()) == {}  # forgotten elsewhere: read wins
    names.forget_user("household")
    assert names.hear("household", PETRA["id"], PETRA["name"])
    names.forget_user("household")
    assert names.put("household", {}, names.mark()) == {}


@asynccontextmanager
async def speakers_table_held(env: Env) -> AsyncIterator[None]:
    """Another connection holds the write lock that a write of a speaker's name needs, as a
    busy database does: reads go on, the write waits until the lock is let go."""
    url = env.engine.url
    if url.get_backend_name() == "sqlite":
        holder = sqlite3.connect(str(url.database), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    async with env.engine.connect() as connection:
        await connection.execute(text("LOCK TABLE memory_speakers IN EXCLUSIVE MODE"))
        try:
            yield
        finally:
            await connection.rollback()


async def test_a_name_is_known_to_the_next_turn_while_its_write_waits(
    env: Env, tmp_path: Path
) -> None:
    """Petra says good morning, then the kitchen satellite asks about her before the
    database has taken her name: the satellite's turn sees her fact, with her name."""
    user = await env.new_user()
    svc = service(env, tmp_path)
    await env.backend.add(user, LATE_SHIFTS, speaker_id=PETRA["id"])
    async with speakers_table_held(env):
        await recall(svc, user, "Good morning", PETRA)
        await asyncio.sleep(0.2)  # the name's write has started and waits for the lock
        facts = await recall(svc, user, "Will Petra be home for dinner on Friday?")
        shown = [f for f in facts if f.content == LATE_SHIFTS]
        assert [f.speaker_name for f in shown] == ["Petra Novak"]
    await svc.drain()
    # The write landed once the lock was let go: another instance reads the name.
    there = sql_backend_for(env.engine, make_sessionmaker(env.engine))
    assert await there.speakers(user) == {PETRA["id"]: PETRA["name"]}
    await there.close()
