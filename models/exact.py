"""Arithmetic whose bits do not depend on the machine.

Lists must be a pure function of the events and the settings on every CPU,
BLAS kernel, SIMD width and thread count (README, "Reproducible lists"). Two
things break that in plain numpy code:

* a float32 matrix product rounds by the BLAS kernel's blocking, which
  OpenBLAS picks per CPU (Haswell, Zen, SkylakeX... give different bits);
* transcendental functions (``exp2``, ``power``, ``log``) come from SIMD
  libraries (numpy's SVML/AVX-512 paths, glibc's FMA variants) whose last bit
  varies by CPU.

So every number that decides a list is made here from operations that are
exact or correctly rounded:

* vectors are quantised to integers in [-127, 127] stored as float32; their
  products are integers below 2**24 (127 * 127 * 1040), which float32 holds
  exactly, so a BLAS product gives the same bits under any kernel and any
  summation order (:func:`int_products`);
* norms are square roots of exact integer sums; dot products of float
  vectors are float64 sums in numpy's fixed pairwise order (the same C code
  on every CPU, no BLAS);
* decay ``0.5 ** (elapsed / half_life)`` is read from two tables made with
  software decimal arithmetic, times a power of two (``ldexp``), all
  correctly rounded IEEE operations (:func:`decay`, :func:`decay_array`);
* fixed powers (``recency ** age``, ``gap ** -0.5``) come from decimal
  arithmetic too (:func:`power_table`).
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext
from functools import lru_cache

import numpy as np

QMAX = 127
# The widest vectors whose int8 products stay below 2**24 (exact in float32).
EXACT_DIM = (1 << 24) // (QMAX * QMAX)

# Decay resolution: elapsed time is taken in steps of half_life / 2**24
# (0.15 s for a 30-day half-life), split into a coarse and a fine table.
_FRACTION_BITS = 24
_FINE_BITS = 12
_FINE_MASK = (1 << _FINE_BITS) - 1
# 2**-1075 is below the smallest float64: anything older decays to zero
_MAX_HALVINGS = 1100
# elapsed % half_life times 2**24 must fit in int64
MAX_HALF_LIFE_MS = 1 << 38


def _halving_table(count: int, step_log2: int) -> np.ndarray:
    """``2 ** (-i / 2**step_log2)`` for ``i`` in ``range(count)``, each the
    float64 nearest to a 40-digit decimal value (the same on every machine:
    decimal arithmetic is software)."""
    with localcontext() as ctx:
        ctx.prec = 40
        ratio = Decimal(2) ** (Decimal(-1) / Decimal(1 << step_log2))
        value = Decimal(1)
        out = np.empty(count, dtype=np.float64)
        for i in range(count):
            out[i] = float(value)
            value *= ratio
    return out


_COARSE = _halving_table(1 << (_FRACTION_BITS - _FINE_BITS), _FRACTION_BITS - _FINE_BITS)
_FINE = _halving_table(1 << _FINE_BITS, _FRACTION_BITS)


def _check_half_life(half_life_ms: int) -> None:
    if not 0 < half_life_ms <= MAX_HALF_LIFE_MS:
        raise ValueError(f"half-life {half_life_ms} ms is outside (0, {MAX_HALF_LIFE_MS}]")


def decay(elapsed_ms: int, half_life_ms: int) -> float:
    """``0.5 ** (elapsed_ms / half_life_ms)`` (1.0 for ``elapsed_ms <= 0``),
    with elapsed time floored to ``half_life / 2**24``; the same bits on
    every machine."""
    if elapsed_ms <= 0:
        return 1.0
    _check_half_life(half_life_ms)
    halvings, rest = divmod(int(elapsed_ms), int(half_life_ms))
    if halvings >= _MAX_HALVINGS:
        return 0.0
    step = (rest << _FRACTION_BITS) // half_life_ms
    return math.ldexp(float(_COARSE[step >> _FINE_BITS]) * float(_FINE[step & _FINE_MASK]), -halvings)


def decay_array(elapsed_ms: np.ndarray, half_life_ms: int) -> np.ndarray:
    """:func:`decay` of every element (int64 milliseconds), as float64."""
    _check_half_life(half_life_ms)
    elapsed = np.maximum(np.asarray(elapsed_ms, dtype=np.int64), 0)
    halvings, rest = np.divmod(elapsed, np.int64(half_life_ms))
    step = (rest << _FRACTION_BITS) // np.int64(half_life_ms)
    factor = _COARSE[step >> _FINE_BITS] * _FINE[step & _FINE_MASK]
    out = np.ldexp(factor, -np.minimum(halvings, _MAX_HALVINGS).astype(np.int32))
    out[halvings >= _MAX_HALVINGS] = 0.0
    return out


@lru_cache(maxsize=64)
def power_table(base: float, count: int) -> tuple[float, ...]:
    """``base ** i`` for ``i`` in ``range(count)``, from exact decimal
    arithmetic on the float's own value (no libm ``pow``)."""
    with localcontext() as ctx:
        ctx.prec = 40
        b = Decimal(base)
        return tuple(float(b**i) for i in range(count))


@lru_cache(maxsize=64)
def integer_powers(exponent: float, count: int) -> tuple[float, ...]:
    """``i ** exponent`` at index ``i`` for ``i`` in ``1..count`` (index 0
    holds 0.0, unused), from decimal arithmetic (no libm ``pow``)."""
    with localcontext() as ctx:
        ctx.prec = 40
        e = Decimal(exponent)
        return (0.0, *(float(Decimal(i) ** e) for i in range(1, count + 1)))


def power(base: float, exponent: float) -> float:
    """``base ** exponent`` for ``base >= 0`` from decimal arithmetic (slow:
    for a handful of values; no libm ``pow``)."""
    if base <= 0:
        return 0.0 if exponent > 0 else 1.0 if exponent == 0 else math.inf
    with localcontext() as ctx:
        ctx.prec = 40
        return float(Decimal(base) ** Decimal(exponent))


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """Dot product of two vectors in float64, summed in numpy's fixed
    pairwise order (not BLAS, whose order depends on the kernel)."""
    return float(np.add.reduce(np.asarray(a, dtype=np.float64) * np.asarray(b, dtype=np.float64)))


def norm(vector: np.ndarray) -> float:
    """Euclidean norm without BLAS (see :func:`dot`)."""
    v = np.asarray(vector, dtype=np.float64)
    return math.sqrt(float(np.add.reduce(v * v)))


def quantise(vector: np.ndarray) -> tuple[np.ndarray, float]:
    """A vector as integers in [-127, 127] (float32, largest component at
    +-127) and the exact norm of those integers; zeros for a zero vector."""
    v = np.asarray(vector, dtype=np.float64)
    top = float(np.max(np.abs(v))) if v.size else 0.0
    if not top > 0 or not math.isfinite(top):
        return np.zeros(v.shape, dtype=np.float32), 0.0
    q = np.rint(v * (QMAX / top))
    return q.astype(np.float32), math.sqrt(float(np.add.reduce(q * q)))


def quantise_rows(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`quantise` of every row: (int-valued float32 rows, float64 norms)."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.size == 0:
        return np.zeros(m.shape, dtype=np.float32), np.zeros(len(m), dtype=np.float64)
    top = np.max(np.abs(m), axis=1)
    scale = np.divide(QMAX, top, out=np.zeros_like(top), where=top > 0)
    q = np.rint(m * scale[:, None])
    return q.astype(np.float32), np.sqrt(np.add.reduce(q * q, axis=1))


def int_products(vectors: np.ndarray, matrix_t: np.ndarray) -> np.ndarray:
    """``vectors @ matrix_t`` for integer-valued float32 operands (at most
    127 in magnitude): exact, so the same bits under any BLAS kernel, thread
    count or batch composition. Vectors wider than :data:`EXACT_DIM` are
    multiplied in slices whose exact partial products are summed in float64
    (exact below 2**53) and returned as float64."""
    dim = matrix_t.shape[0]
    if dim <= EXACT_DIM:
        return np.matmul(vectors, matrix_t)
    out = np.zeros((vectors.shape[0], matrix_t.shape[1]), dtype=np.float64)
    for start in range(0, dim, EXACT_DIM):
        out += np.matmul(vectors[:, start : start + EXACT_DIM], matrix_t[start : start + EXACT_DIM])
    return out


def inverse(norms: np.ndarray) -> np.ndarray:
    """``1 / norms`` as float32 (0 where a norm is 0): what cosines are scaled by."""
    norms = np.asarray(norms, dtype=np.float64)
    return np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0).astype(np.float32)


def cosines(vectors: np.ndarray, inv_vectors: np.ndarray, matrix_t: np.ndarray, inv_matrix: np.ndarray) -> np.ndarray:
    """Cosines (float32, vectors x columns) of quantised ``vectors`` against
    the quantised columns of ``matrix_t``, given the inverse norms of both:
    the exact integer product, times each row's and each column's inverse
    norm, each step correctly rounded."""
    products = int_products(vectors, matrix_t).astype(np.float32, copy=False)
    products *= inv_vectors[:, None]
    products *= inv_matrix[None, :]
    return products


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best finite scores, best first; equal scores in
    index order (a stable key: ``np.argpartition`` picks among ties by its
    algorithm, which numpy chooses per CPU)."""
    finite = int(np.isfinite(scores).sum())
    k = min(k, finite)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    # the k-th best value is the same whatever the partition algorithm
    threshold = np.partition(scores, len(scores) - k)[len(scores) - k]
    above = np.flatnonzero(scores > threshold)
    ties = np.flatnonzero(scores == threshold)[: k - len(above)]
    chosen = np.concatenate([above, ties])
    return chosen[np.argsort(-scores[chosen], kind="stable")]
