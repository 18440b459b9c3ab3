"""Unit tests of ``models.encoder`` with the real all-MiniLM-L6-v2 on CPU
(the session-scoped ``encoder`` fixture loads it once)."""

from __future__ import annotations

import hashlib
import uuid

import numpy as np
import pytest
import torch

from models.encoder import TEXT_HASH_BYTES, TextEncoder, resolve_device, text_hash
from models.errors import EncoderError, ModelError
from tests.topic_catalog import TOPICS

DIM = 384


def fresh_texts(n: int) -> list[str]:
    """Texts no other test has encoded (the encoder cache is shared)."""
    tag = uuid.uuid4().hex[:8]
    return [f"unique text {tag} number {i}" for i in range(n)]


# --------------------------------------------------------------------------
# text_hash / resolve_device (no model needed)
# --------------------------------------------------------------------------


def test_text_hash_is_stable_16_bytes():
    key = text_hash("hello world")
    assert isinstance(key, bytes)
    assert len(key) == TEXT_HASH_BYTES == 16
    assert key == text_hash("hello world")
    # pinned: the hash is stored beside item vectors, so it must never change
    assert key.hex() == "e9a804b2e527fd3601d2ffc0bb023cd6"
    assert text_hash("").hex() == "cae66941d9efbd404e4d88758ea67670"
    assert key == hashlib.blake2b(b"hello world", digest_size=16).digest()


def test_text_hash_distinguishes_texts():
    texts = ["hello world", "hello world ", "Hello world", "héllo wörld", "", "\n"]
    assert len({text_hash(t) for t in texts}) == len(texts)


def test_resolve_device_cpu():
    assert resolve_device("cpu") == "cpu"


def test_resolve_device_auto_follows_torch():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


def test_resolve_device_cuda():
    if torch.cuda.is_available():
        assert resolve_device("cuda") == "cuda"
    else:
        with pytest.raises(EncoderError, match="cuda"):
            resolve_device("cuda")


def test_resolve_device_cuda_without_gpu_raises(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(EncoderError):
        resolve_device("cuda")
    assert resolve_device("auto") == "cpu"


def test_resolve_device_auto_with_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda") == "cuda"
    assert resolve_device("cpu") == "cpu"


def test_resolve_device_unknown_raises():
    with pytest.raises(EncoderError, match="tpu"):
        resolve_device("tpu")  # type: ignore[arg-type]


def test_unknown_model_path_raises_encoder_error(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(EncoderError, match="no-such-model") as info:
        TextEncoder(model=str(missing), device="cpu")
    assert isinstance(info.value, ModelError)


def test_empty_model_directory_raises_encoder_error(tmp_path):
    with pytest.raises(EncoderError):
        TextEncoder(model=str(tmp_path), device="cpu")


# --------------------------------------------------------------------------
# encoding with the real model
# --------------------------------------------------------------------------


def test_encoder_identity(encoder):
    assert encoder.device == "cpu"
    assert encoder.dim == DIM
    assert encoder.batch_size == 64
    assert encoder.version


def test_output_shape_dtype_and_norm(encoder):
    texts = fresh_texts(3) + ["Telescope guide to observing the planets"]
    vectors = encoder.encode(texts)
    assert vectors.shape == (4, DIM)
    assert vectors.dtype == np.float32
    assert np.all(np.isfinite(vectors))
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)


def test_empty_input(encoder):
    vectors = encoder.encode([])
    assert vectors.shape == (0, DIM)
    assert vectors.dtype == np.float32


def test_repeated_texts_in_one_call_are_encoded_once(encoder):
    a, b = fresh_texts(2)
    before_encoded = encoder.stats.texts_encoded
    before_requested = encoder.stats.texts_requested
    vectors = encoder.encode([a, b, a, a, b])
    assert encoder.stats.texts_encoded - before_encoded == 2
    assert encoder.stats.texts_requested - before_requested == 5
    assert np.array_equal(vectors[0], vectors[2]) and np.array_equal(vectors[0], vectors[3])
    assert np.array_equal(vectors[1], vectors[4])
    assert not np.allclose(vectors[0], vectors[1])


def test_second_call_is_served_from_cache(encoder):
    texts = fresh_texts(4)
    first = encoder.encode(texts)
    hits, encoded, batches = encoder.stats.cache_hits, encoder.stats.texts_encoded, encoder.stats.batches
    second = encoder.encode(list(reversed(texts)))
    assert encoder.stats.cache_hits - hits == 4
    assert encoder.stats.texts_encoded == encoded
    assert encoder.stats.batches == batches
    assert np.array_equal(second, first[::-1])
    assert 0.0 < encoder.stats.hit_rate <= 1.0


def test_mixed_cached_and_new_texts_keep_order(encoder):
    old, new = fresh_texts(2)
    old_vector = encoder.encode([old])[0]
    encoded = encoder.stats.texts_encoded
    vectors = encoder.encode([new, old, new])
    assert encoder.stats.texts_encoded - encoded == 1
    assert np.array_equal(vectors[1], old_vector)
    assert np.array_equal(vectors[0], vectors[2])
    assert np.array_equal(vectors[0], encoder.encode([new])[0])


def test_cached_vector_matches_model(encoder):
    """A cache hit returns what the model computes for the text."""
    [text] = fresh_texts(1)
    cached = encoder.encode([text])[0]
    direct = encoder._run_model([text])[0]
    assert np.allclose(cached, direct, atol=1e-5)


def test_prime_seeds_the_cache(encoder):
    [text] = fresh_texts(1)
    vector = np.zeros(DIM, dtype=np.float32)
    vector[7] = 1.0
    encoder.prime(text_hash(text), vector)
    encoded = encoder.stats.texts_encoded
    out = encoder.encode([text])
    assert encoder.stats.texts_encoded == encoded
    assert np.array_equal(out[0], vector)


def test_similar_titles_are_closer_than_unrelated(encoder):
    space_a, space_b = TOPICS["space"][0], TOPICS["space"][1]
    baking = TOPICS["baking"][0]
    a, b, c = encoder.encode([space_a, space_b, baking])
    assert float(a @ b) > float(a @ c) + 0.1
    assert float(a @ b) > float(b @ c) + 0.1


def test_topics_cluster(encoder):
    names = list(TOPICS)
    vectors = {name: encoder.encode(TOPICS[name]) for name in names}
    for name in names:
        within = vectors[name] @ vectors[name].T
        n = len(within)
        mean_within = (within.sum() - np.trace(within)) / (n * n - n)
        for other in names:
            if other != name:
                mean_across = float((vectors[name] @ vectors[other].T).mean())
                assert mean_within > mean_across + 0.1, (name, other, mean_within, mean_across)
