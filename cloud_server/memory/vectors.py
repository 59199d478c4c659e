"""Fact vectors in our own schema, and the in-memory matrices dense recall searches.

Rows: one per active fact and embedding model (`memory_vectors`, float32 bytes). The hot
path never reads them per query: each household's vectors are held as one float32
matrix in an LRU (bounded by `max_households`), built on first use.

Correct across several server instances: every write to a household's memory bumps
its row in `memory_generations` (one indexed read per query tells whether the cached
matrix is still current). We chose this over Redis pub/sub because it needs nothing
beyond the database every deployment already has, and a missed message cannot leave a
stale matrix behind: the check is against the source of truth.

A fact without a vector (embedding failed, model changed, not yet reindexed) is still
found lexically; `homemind-server memory reindex` fills the gaps.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Table, delete, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from threadpoolctl import threadpool_limits

from ..db.reads import plain_rows, reader
from .embedder import Embedder, Vectors
from .models import Memory, MemoryGeneration, MemoryVector

LOGGER = logging.getLogger(__name__)

_VECTORS: Table = MemoryVector.__table__  # type: ignore[assignment]
_GENERATIONS: Table = MemoryGeneration.__table__  # type: ignore[assignment]
# Read before every dense search (is the cached matrix current?).
_GENERATION_OF = text(f"SELECT generation FROM {_GENERATIONS.name} WHERE user_id = :user_id")  # noqa: S608
_MEMORIES: Table = Memory.__table__  # type: ignore[assignment]

# Households whose matrix stays cached. The vector bound below is the memory bound; this
# one only caps the per-household overhead (ids and speaker codes, a few KB each). At 64,
# bench/load.py's 200 households (25 facts each) re-read their vectors on every turn.
MAX_HOUSEHOLDS = 10_000
# And at most this many vectors in all (512 float32 each: 2 KB; 200k = 400 MB).
MAX_CACHED_VECTORS = 200_000
# Query embeddings started ahead of their search (recall starts one per turn).
_PENDING_QUERIES = 32


@dataclass(frozen=True, slots=True)
class HouseholdMatrix:
    generation: int
    ids: list[str]
    # Per row: 0 = a household fact, else the code of its speaker in `speaker_codes`
    # (a vectorised scope mask: a Python loop over the rows cost ~3 ms per 10k facts).
    speakers: npt.NDArray[np.int32]
    speaker_codes: dict[str, int]
    matrix: Vectors


def _speaker_codes(
    speakers: Sequence[str | None],
) -> tuple[npt.NDArray[np.int32], dict[str, int]]:
    codes: dict[str, int] = {}
    column = np.zeros(len(speakers), dtype=np.int32)
    for n, speaker in enumerate(speakers):
        if speaker is not None:
            column[n] = codes.setdefault(speaker, len(codes) + 1)
    return column, codes


def unawaited(future: asyncio.Future[Any]) -> None:
    """A future nobody may await: its failure is read when it ends, so asyncio does not
    log it as never retrieved (whoever does await it still sees the failure)."""
    future.add_done_callback(lambda f: f.cancelled() or f.exception())


def to_bytes(vector: Vectors) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def from_bytes(blob: bytes) -> Vectors:
    return np.frombuffer(blob, dtype="<f4")


def _insert(connection: AsyncConnection) -> Any:
    """The dialect's INSERT with ON CONFLICT (same API on SQLite and PostgreSQL)."""
    return pg_insert if connection.dialect.name == "postgresql" else sqlite_insert


@functools.cache
def one_blas_thread() -> None:
    """Numpy's BLAS runs a product on the calling thread only (process-wide, once).

    OpenBLAS starts a thread per core for a matrix-vector product as small as one
    household's 10k x 512 matrix: on 2 cores that doubled the CPU of a recall (15.8 against
    8.9 ms measured with bench/memory_latency.py's seed) and bought no wall time. A server
    runs many turns at once; their products share the cores without it.
    """
    threadpool_limits(limits=1, user_api="blas")


class VectorIndex:
    def __init__(
        self,
        engine: AsyncEngine,
        embedder: Embedder,
        *,
        max_households: int = MAX_HOUSEHOLDS,
        max_vectors: int = MAX_CACHED_VECTORS,
    ) -> None:
        one_blas_thread()
        self.engine = engine
        self._reader = reader(engine)  # the generation and matrix reads of each search
        self.embedder = embedder
        self.max_households = max_households
        self.max_vectors = max_vectors
        self._cache: OrderedDict[str, HouseholdMatrix] = OrderedDict()
        self._cached_vectors = 0
        self._queries: OrderedDict[str, asyncio.Future[Vectors]] = OrderedDict()

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    # --- writing ---------------------------------------------------------------

    @staticmethod
    async def bump(connection: AsyncConnection, user_id: str) -> None:
        """Mark the household's memory as changed (for every instance's cache)."""
        insert = _insert(connection)
        stmt = insert(_GENERATIONS).values(user_id=user_id, generation=1)
        stmt = stmt.on_conflict_do_update(
            index_elements=["user_id"], set_={"generation": _GENERATIONS.c.generation + 1}
        )
        await connection.execute(stmt)

    async def store(self, user_id: str, facts: Sequence[tuple[str, str]]) -> None:
        """Embed and upsert (fact id, content) pairs, then bump the generation."""
        if not facts:
            return
        vectors = await self.embedder.embed_documents([content for _, content in facts])
        async with self.engine.begin() as connection:
            await self.write(connection, user_id, [i for i, _ in facts], vectors)
            await self.bump(connection, user_id)

    async def write(
        self, connection: AsyncConnection, user_id: str, ids: Sequence[str], vectors: Vectors
    ) -> None:
        insert = _insert(connection)
        rows = [
            {"memory_id": i, "model_id": self.model_id, "user_id": user_id, "vector": to_bytes(v)}
            for i, v in zip(ids, vectors, strict=True)
        ]
        stmt = insert(_VECTORS).values(rows)
        stmt = stmt.on_conflict_do_update(
            index_elements=["memory_id", "model_id"], set_={"vector": stmt.excluded.vector}
        )
        await connection.execute(stmt)

    async def forget(self, user_id: str, memory_ids: Sequence[str]) -> None:
        """Drop the vectors of facts no longer active (superseded), then bump."""
        async with self.engine.begin() as connection:
            if memory_ids:
                await connection.execute(
                    delete(_VECTORS).where(
                        _VECTORS.c.user_id == user_id, _VECTORS.c.memory_id.in_(memory_ids)
                    )
                )
            await self.bump(connection, user_id)

    async def changed(self, user_id: str) -> None:
        async with self.engine.begin() as connection:
            await self.bump(connection, user_id)

    # --- searching -------------------------------------------------------------

    async def _generation(self, connection: AsyncConnection, user_id: str) -> int:
        rows = await plain_rows(connection, _GENERATION_OF, {"user_id": user_id})
        return int(rows[0][0]) if rows else 0

    async def matrix(self, user_id: str) -> HouseholdMatrix:
        async with self._reader.connect() as connection:
            generation = await self._generation(connection, user_id)
            cached = self._cache.get(user_id)
            if cached is not None and cached.generation == generation:
                self._cache.move_to_end(user_id)
                return cached
            rows = (
                await connection.execute(
                    select(_VECTORS.c.memory_id, _MEMORIES.c.speaker_id, _VECTORS.c.vector)
                    .join(_MEMORIES, _MEMORIES.c.id == _VECTORS.c.memory_id)
                    .where(
                        _VECTORS.c.user_id == user_id,
                        _VECTORS.c.model_id == self.model_id,
                        _MEMORIES.c.superseded_by.is_(None),
                    )
                )
            ).all()
        dimension = self.embedder.dimension
        matrix = np.zeros((len(rows), dimension), dtype=np.float32)
        for n, row in enumerate(rows):
            matrix[n] = from_bytes(row.vector)
        built = HouseholdMatrix(
            generation,
            [row.memory_id for row in rows],
            *_speaker_codes([row.speaker_id for row in rows]),
            matrix,
        )
        self._store_matrix(user_id, built)
        return built

    def _store_matrix(self, user_id: str, built: HouseholdMatrix) -> None:
        """LRU within both bounds; the household just used always stays (even if alone
        it is above `max_vectors`: the next miss evicts it)."""
        old = self._cache.pop(user_id, None)
        if old is not None:
            self._cached_vectors -= len(old.ids)
        self._cache[user_id] = built
        self._cached_vectors += len(built.ids)
        while len(self._cache) > 1 and (
            len(self._cache) > self.max_households or self._cached_vectors > self.max_vectors
        ):
            _, evicted = self._cache.popitem(last=False)
            self._cached_vectors -= len(evicted.ids)

    @property
    def cached_households(self) -> list[str]:
        return list(self._cache)

    # --- query embeddings --------------------------------------------------------

    def start_query(self, query: str) -> None:
        """Start embedding `query` on the embedder's thread; `query_vector` picks it up."""
        if query in self._queries:
            return
        future = asyncio.ensure_future(self.embedder.embed_query(query))
        unawaited(future)  # `query_vector` sees a failure, when it is asked
        self._queries[query] = future
        while len(self._queries) > _PENDING_QUERIES:
            _, dropped = self._queries.popitem(last=False)
            dropped.cancel()

    async def query_vector(self, query: str) -> Vectors:
        """The query's embedding: the one started by `start_query`, else a new one."""
        future = self._queries.pop(query, None)
        if future is None:
            return await self.embedder.embed_query(query)
        return await future

    async def search(
        self,
        user_id: str,
        query: Vectors,
        *,
        speaker_ids: Sequence[str] | None,
        limit: int,
        household: HouseholdMatrix | None = None,
    ) -> list[tuple[str, float]]:
        """(fact id, cosine) best first; `speaker_ids` None = every scope, else the household
        plus those speakers. `household`: `matrix(user_id)`, when the caller has it."""
        if household is None:
            household = await self.matrix(user_id)
        if not household.ids:
            return []
        scores = household.matrix @ query
        if speaker_ids is not None:
            codes = [
                household.speaker_codes[s] for s in speaker_ids if s in household.speaker_codes
            ]
            allowed = household.speakers == 0
            if codes:
                allowed |= np.isin(household.speakers, codes)
            scores = np.where(allowed, scores, -1.0)
        take = min(limit, len(scores))
        top = np.argpartition(-scores, take - 1)[:take]
        top = top[np.argsort(-scores[top])]
        # Below the model's floor a fact is not a dense candidate at all, nor far below
        # the best match (a near-exact hit makes loose ones irrelevant).
        floor = self.embedder.min_similarity
        if not take or scores[top[0]] < floor:
            return []
        cut = max(floor, float(scores[top[0]]) - self.embedder.margin)
        return [(household.ids[i], float(scores[i])) for i in top if scores[i] >= cut]

    # --- reindex ---------------------------------------------------------------

    async def missing(self, user_id: str | None, batch: int) -> list[tuple[str, str, str]]:
        """(user id, fact id, content) of active facts without a vector of this model."""
        have = select(_VECTORS.c.memory_id).where(
            _VECTORS.c.memory_id == _MEMORIES.c.id, _VECTORS.c.model_id == self.model_id
        )
        stmt = select(_MEMORIES.c.user_id, _MEMORIES.c.id, _MEMORIES.c.content).where(
            _MEMORIES.c.superseded_by.is_(None), ~have.exists()
        )
        if user_id is not None:
            stmt = stmt.where(_MEMORIES.c.user_id == user_id)
        async with self.engine.connect() as connection:
            rows = (await connection.execute(stmt.order_by(_MEMORIES.c.id).limit(batch))).all()
        return [(r.user_id, r.id, r.content) for r in rows]

    async def count_missing(self) -> int:
        have = select(_VECTORS.c.memory_id).where(
            _VECTORS.c.memory_id == _MEMORIES.c.id, _VECTORS.c.model_id == self.model_id
        )
        stmt = select(func.count()).where(_MEMORIES.c.superseded_by.is_(None), ~have.exists())
        async with self.engine.connect() as connection:
            return int(await connection.scalar(stmt) or 0)

    async def drop_other_models(self) -> int:
        async with self.engine.begin() as connection:
            result = await connection.execute(
                delete(_VECTORS).where(_VECTORS.c.model_id != self.model_id)
            )
        return int(getattr(result, "rowcount", 0) or 0)
