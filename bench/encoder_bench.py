"""Encoder throughput by batch size, cache hit rate on replay, and an int8
dynamic-quantisation probe (reported only; the worker keeps fp32/fp16)."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from bench.workload import Workload

BATCH_SIZES = (1, 8, 32, 64, 128, 256)


def _texts(workload: Workload, n: int, tag: str) -> list[str]:
    from models.catalog import item_text

    base = [item_text(item) for item in workload.items]
    # a tag per run keeps the texts unique, so the cache never answers for the model
    return [f"{base[i % len(base)]} ({tag} {i})" for i in range(n)]


def texts_per_s(encode: Callable[[list[str]], Any], texts: list[str], batch: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(texts), batch):
        encode(texts[start : start + batch])
    return len(texts) / (time.perf_counter() - started)


def bench_device(workload: Workload, device: str, batch_sizes: tuple[int, ...], quick: bool, log: Callable[[str], None]) -> tuple[dict[str, float], float, Any]:
    from models.encoder import TextEncoder

    started = time.perf_counter()
    encoder = TextEncoder(device=device)
    load_s = time.perf_counter() - started
    encoder.encode(_texts(workload, 16, f"warm-{device}"))  # first call pays lazy init
    results: dict[str, float] = {}
    for batch in batch_sizes:
        n = max(batch, 24) if quick else max(4 * batch, 256)
        if device == "cuda":
            n *= 4
        encoder.batch_size = batch
        texts = _texts(workload, n, f"{device}-b{batch}")
        results[str(batch)] = round(texts_per_s(encoder.encode, texts, batch), 1)
        log(f"encoder {device} batch {batch}: {results[str(batch)]:,.0f} texts/s")
    return results, load_s, encoder


def cache_hit_rate(encoder: Any, workload: Workload) -> float:
    """Hit rate of a replay of texts the encoder has just seen (expect 1.0)."""
    texts = _texts(workload, 200, "replay")
    encoder.encode(texts)
    before_requested, before_hits = encoder.stats.texts_requested, encoder.stats.cache_hits
    encoder.encode(texts)
    requested = encoder.stats.texts_requested - before_requested
    return (encoder.stats.cache_hits - before_hits) / requested if requested else 0.0


def int8_probe(workload: Workload, quick: bool, log: Callable[[str], None]) -> dict[str, float]:
    """fp32 vs torch dynamic int8 (Linear layers) on CPU, batch 64."""
    import torch
    from sentence_transformers import SentenceTransformer

    from models.encoder import default_model_path

    fp32 = SentenceTransformer(default_model_path(), device="cpu", local_files_only=True)
    int8 = SentenceTransformer(default_model_path(), device="cpu", local_files_only=True)
    int8 = torch.ao.quantization.quantize_dynamic(int8, {torch.nn.Linear}, dtype=torch.qint8)
    texts = _texts(workload, 64 if quick else 512, "int8")

    def run(model) -> Callable[[list[str]], np.ndarray]:
        return lambda batch: model.encode(batch, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)

    run(fp32)(texts[:16])
    run(int8)(texts[:16])
    fp32_tps = texts_per_s(run(fp32), texts, 64)
    int8_tps = texts_per_s(run(int8), texts, 64)
    a, b = run(fp32)(texts), run(int8)(texts)
    cosine = np.einsum("ij,ij->i", a, b)
    result = {
        "fp32_texts_per_s": round(fp32_tps, 1),
        "int8_texts_per_s": round(int8_tps, 1),
        "speedup": round(int8_tps / fp32_tps, 3),
        "cosine_mean": round(float(cosine.mean()), 5),
        "cosine_min": round(float(cosine.min()), 5),
    }
    log(f"encoder int8 dynamic: {result['speedup']:.2f}x fp32, cosine mean {result['cosine_mean']:.4f}")
    return result


def run_encoder_bench(workload: Workload, quick: bool, log: Callable[[str], None] = print, int8: bool = True) -> dict[str, Any]:
    import torch

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    per_device: dict[str, dict[str, float]] = {}
    load_s: dict[str, float] = {}
    hit_rate = 0.0
    for device in devices:
        per_device[device], load_s[device], encoder = bench_device(workload, device, BATCH_SIZES, quick, log)
        if device == "cpu":
            hit_rate = cache_hit_rate(encoder, workload)
        del encoder
    result: dict[str, Any] = {
        "encoder_texts_per_s": per_device,
        "encoder_cache_hit_rate": round(hit_rate, 4),
        "encoder_load_s": {d: round(s, 2) for d, s in load_s.items()},
    }
    if int8:
        try:
            result["encoder_int8"] = int8_probe(workload, quick, log)
        except Exception as exc:  # quantisation support varies by torch build: report, never fail the run
            result["encoder_int8"] = {"error": f"{type(exc).__name__}: {exc}"}
    return result
