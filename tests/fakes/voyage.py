"""A faithful fake of Voyage AI's embeddings API, served by aiohttp on 127.0.0.1.

`POST /v1/embeddings` with a Bearer key, `{"input": [...], "model": ..., "input_type":
"query" | "document" | null}`, answered as the real API does: `{"object": "list",
"data": [{"object": "embedding", "embedding": [...], "index": i}], "model": ...,
"usage": {"total_tokens": n}}`, errors as `{"detail": "..."}` with the real statuses
(400 bad request, 401 bad key, 429 rate limit, 5xx outage).

Vectors: a test can give texts a "meaning" (`fake.means(text, concept)`: texts of the same
concept get the same direction); any other text gets a stable pseudo-random direction
from its SHA-256, so unrelated texts are near-orthogonal, as with a real model.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import web

DIMENSIONS = {
    "voyage-3.5": 1024,
    "voyage-3.5-lite": 1024,
    "voyage-3-large": 1024,
    "voyage-multilingual-2": 1024,
    "voyage-3": 1024,
    "voyage-3-lite": 512,
}
MAX_INPUTS = 1000


@dataclass
class Recorded:
    model: str
    input_type: str | None
    inputs: list[str]
    authorization: str


@dataclass
class FakeVoyage:
    api_key: str = field(default_factory=lambda: "pa-fake-" + secrets.token_hex(8))
    requests: list[Recorded] = field(default_factory=list)
    # Scripted failures, one per request, used first-in first-out: (status, detail).
    failures: list[tuple[int, str]] = field(default_factory=list)
    down: bool = False  # every request answers 503
    _concepts: dict[str, str] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    base_url: str = ""

    def means(self, text: str, concept: str) -> None:
        self._concepts[text] = concept

    def vector(self, text: str, dimension: int) -> list[float]:
        seed_text = "concept:" + self._concepts[text] if text in self._concepts else text
        seed = int.from_bytes(hashlib.sha256(seed_text.encode()).digest()[:8], "big")
        vector = np.random.default_rng(seed).standard_normal(dimension)
        vector /= np.linalg.norm(vector)
        return [float(x) for x in vector]

    async def _embeddings(self, request: web.Request) -> web.Response:
        authorization = request.headers.get("Authorization", "")
        if authorization != f"Bearer {self.api_key}":
            return web.json_response(
                {"detail": "Provided API key is invalid. Please check your API key."}, status=401
            )
        if self.down:
            return web.json_response({"detail": "Service Unavailable"}, status=503)
        try:
            body: Any = await request.json()
        except ValueError:
            return web.json_response({"detail": "Request body is not valid JSON."}, status=400)
        model, inputs = body.get("model"), body.get("input")
        input_type = body.get("input_type")
        if isinstance(inputs, str):
            inputs = [inputs]
        if model not in DIMENSIONS:
            return web.json_response(
                {
                    "detail": f"Model {model} is not supported. Supported models: "
                    + ", ".join(DIMENSIONS)
                },
                status=400,
            )
        if (
            not isinstance(inputs, list)
            or not inputs
            or len(inputs) > MAX_INPUTS
            or not all(isinstance(t, str) and t for t in inputs)
        ):
            return web.json_response(
                {"detail": "Input must be a non-empty list of at most 1000 non-empty strings."},
                status=400,
            )
        if input_type not in (None, "query", "document"):
            return web.json_response(
                {"detail": "input_type must be None, 'query' or 'document'."}, status=400
            )
        self.requests.append(Recorded(model, input_type, list(inputs), authorization))
        if self.failures:
            status, detail = self.failures.pop(0)
            return web.json_response({"detail": detail}, status=status)
        dimension = DIMENSIONS[model]
        data = [
            {"object": "embedding", "embedding": self.vector(text, dimension), "index": i}
            for i, text in enumerate(inputs)
        ]
        tokens = sum(len(t.split()) + 2 for t in inputs)
        return web.json_response(
            {"object": "list", "data": data, "model": model, "usage": {"total_tokens": tokens}}
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/embeddings", self._embeddings)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
