"""The embedder interface every sentence embedder implements (embedder.py, voyage.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


class EmbedderError(RuntimeError):
    """The model could not be loaded or run."""


class Embedder(Protocol):
    model_id: str
    dimension: int
    # Dense candidates: at least this cosine, and within `margin` of the query's best.
    # Per model (cosine scales differ); chosen on the tuning part of the bench's set.
    min_similarity: float
    margin: float

    async def embed_query(self, text: str) -> Vectors:
        """One L2-normalised vector (shape `(dimension,)`)."""
        ...

    async def embed_documents(self, texts: Sequence[str]) -> Vectors:
        """One L2-normalised row per text (shape `(len(texts), dimension)`)."""
        ...

    async def close(self) -> None: ...
