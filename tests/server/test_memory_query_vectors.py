"""Query vectors are reused between a turn's recall and its extraction: the reused vector is
the one the model gives, and no caller can change it for the next one."""

from __future__ import annotations

import numpy as np
import pytest

from cloud_server.memory.embedder import QUERY_CACHE_SIZE, build_embedder


async def test_a_repeated_query_gets_the_models_vector_unchangeable() -> None:
    embedder = build_embedder("minilm")
    assert embedder is not None
    query = "what temperature does Ana like in the bedroom"
    first = await embedder.embed_query(query)
    again = await embedder.embed_query(query)
    fresh = (await embedder.embed_documents([query]))[0]
    assert np.allclose(first, fresh, atol=1e-6) and np.array_equal(first, again)
    with pytest.raises(ValueError, match="read-only"):
        again[0] = 0.0
    other = await embedder.embed_query("when do the bins go out")
    assert not np.allclose(other, first, atol=1e-3)
    # Old queries leave the cache; they are still answered correctly.
    for i in range(QUERY_CACHE_SIZE + 1):
        await embedder.embed_query(f"filler query number {i}")
    assert np.allclose(await embedder.embed_query(query), fresh, atol=1e-6)
