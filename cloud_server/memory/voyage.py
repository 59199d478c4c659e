"""Voyage AI's embeddings API as an `Embedder` (HOMEMIND_EMBEDDER=voyage, for hosted).

Spoken to over plain HTTP with aiohttp, not through the `voyageai` SDK: the API is one
POST, and the SDK would bring langchain-text-splitters (and langchain-core), pillow and
requests into the server for it. The key (VOYAGE_API_KEY) only ever goes into the
Authorization header: it is in no log line, error message or exception chain here.

Any failure (refused key, rate limit, outage, timeout, a malformed answer) raises
`EmbedderError`; the SQL backend then recalls lexically, and a fact whose vector could
not be written is embedded by the next `homemind-server memory reindex`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import aiohttp
import numpy as np

from .embedding import EmbedderError, Vectors

# Output sizes of the models a household would pick (their default dimension).
DIMENSIONS = {
    "voyage-3.5": 1024,
    "voyage-3.5-lite": 1024,
    "voyage-3-large": 1024,
    "voyage-multilingual-2": 1024,
    "voyage-3": 1024,
    "voyage-3-lite": 512,
}
# Texts per request (the API accepts up to 1,000; smaller requests fail smaller).
BATCH = 128
# A chat turn waits for the query vector: it must give up quickly and recall lexically.
QUERY_TIMEOUT = 3.0
DOCUMENT_TIMEOUT = 15.0


class VoyageEmbedder:
    # Voyage's vectors are normalised; cosines of related household sentences sit higher
    # than the in-process models' (their own scale), so the thresholds are their own.
    min_similarity = 0.3
    margin = 0.25

    def __init__(self, api_key: str, *, model: str, base_url: str) -> None:
        if model not in DIMENSIONS:
            raise EmbedderError(
                f"HOMEMIND_VOYAGE_MODEL must be one of {', '.join(DIMENSIONS)}, not {model!r}"
            )
        self.model = model
        # The model is part of the id: changing it makes `memory reindex` re-embed.
        self.model_id = f"voyage:{model}"
        self.dimension = DIMENSIONS[model]
        self._url = base_url.rstrip("/") + "/v1/embeddings"
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # never the key
        return f"VoyageEmbedder(model={self.model!r})"

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No redirects: a redirect would resend the key to wherever it points.
            self._session = aiohttp.ClientSession(headers=self._headers, raise_for_status=False)
        return self._session

    async def _embed(self, texts: Sequence[str], input_type: str, seconds: float) -> Vectors:
        body = {"input": list(texts), "model": self.model, "input_type": input_type}
        try:
            async with self._http().post(
                self._url,
                json=body,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=seconds),
            ) as response:
                if response.status != 200:
                    raise EmbedderError(f"Voyage embeddings answered HTTP {response.status}")
                data = await response.json(content_type=None)
        except EmbedderError:
            raise
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            # `from None`: the client's exception carries the request (and its headers).
            raise EmbedderError(f"Voyage embeddings failed: {type(err).__name__}") from None
        return self._vectors(data, len(texts))

    def _vectors(self, data: Any, count: int) -> Vectors:
        rows = data.get("data") if isinstance(data, dict) else None
        if not isinstance(rows, list) or len(rows) != count:
            raise EmbedderError("Voyage embeddings answered without one vector per text")
        out = np.zeros((count, self.dimension), dtype=np.float32)
        for row in rows:
            index, vector = row.get("index"), row.get("embedding")
            if not isinstance(index, int) or not 0 <= index < count:
                raise EmbedderError("Voyage embeddings answered an index out of range")
            if not isinstance(vector, list) or len(vector) != self.dimension:
                raise EmbedderError("Voyage embeddings answered a vector of another size")
            out[index] = np.asarray(vector, dtype=np.float32)
        # Normalised again here: the dense search takes dot products as cosines.
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        normalised: Vectors = (out / np.maximum(norms, 1e-12)).astype(np.float32)
        return normalised

    async def embed_documents(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        parts = [
            await self._embed(texts[start : start + BATCH], "document", DOCUMENT_TIMEOUT)
            for start in range(0, len(texts), BATCH)
        ]
        return np.concatenate(parts)

    async def embed_query(self, text: str) -> Vectors:
        vectors = await self._embed([text], "query", QUERY_TIMEOUT)
        first: Vectors = vectors[0]
        return first

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
            await asyncio.sleep(0)  # let the connector release its sockets
