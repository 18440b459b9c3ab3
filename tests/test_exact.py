"""Lists do not depend on the machine (README, "Reproducible lists").

These tests prove the exactness structurally, on whatever CPU and BLAS kernel
runs them (they never set OPENBLAS_CORETYPE): the scoring product equals an
int64 reference, rows do not depend on the batch around them or on the BLAS
thread count, decay and powers come from tables, ties are broken by index,
and the list path calls no BLAS or SIMD transcendental function.
"""

from __future__ import annotations

import ast
import math
from decimal import Decimal, localcontext
from pathlib import Path

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from models import exact
from models.graph import ItemGraph
from models.interest import UserState
from models.recommend import build_recommendation, process_partition_events
from models.ranking import prepare_rank, rank_requests
from tests.test_exactly_once import QUERIES, make_catalog, make_stream

ROOT = Path(__file__).resolve().parents[1]


def _quantised(rng: np.random.Generator, rows: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    q, norms = exact.quantise_rows(rng.normal(size=(rows, dim)).astype(np.float32))
    return q, exact.inverse(norms)


@pytest.mark.parametrize("dim", [16, 384, 768, exact.EXACT_DIM, exact.EXACT_DIM + 200])
def test_the_scoring_product_equals_int64_arithmetic(dim):
    rng = np.random.default_rng(dim)
    vectors, _ = _quantised(rng, 37, dim)
    matrix, _ = _quantised(rng, 301, dim)
    # the worst case too: every component at +-127
    vectors[0] = 127.0
    matrix[0] = 127.0
    matrix[1] = -127.0
    reference = vectors.astype(np.int64) @ matrix.astype(np.int64).T
    got = exact.int_products(vectors, np.ascontiguousarray(matrix.T))
    assert np.array_equal(got.astype(np.int64), reference)
    assert np.array_equal(got, reference.astype(got.dtype))


def test_cosines_equal_the_int64_reference_rounded_step_by_step():
    rng = np.random.default_rng(5)
    vectors, inv_v = _quantised(rng, 20, 384)
    matrix, inv_m = _quantised(rng, 500, 384)
    reference = (vectors.astype(np.int64) @ matrix.astype(np.int64).T).astype(np.float32)
    reference = reference * inv_v[:, None]
    reference = reference * inv_m[None, :]
    got = exact.cosines(vectors, inv_v, np.ascontiguousarray(matrix.T), inv_m)
    assert got.dtype == np.float32 and np.array_equal(got, reference)
    # and they are cosines of the original vectors, to int8 precision
    assert np.all(np.abs(got) <= 1.0 + 1e-6)


@settings(max_examples=25, deadline=None)
@given(count=st.integers(1, 80), position=st.integers(0, 79), seed=st.integers(0, 2**16))
def test_a_row_does_not_depend_on_the_batch_composition_or_position(count, position, seed):
    position = position % count
    rng = np.random.default_rng(seed)
    matrix, inv_m = _quantised(rng, 257, 384)
    matrix_t = np.ascontiguousarray(matrix.T)
    batch, inv_b = _quantised(rng, count, 384)
    alone = exact.cosines(batch[position : position + 1], inv_b[position : position + 1], matrix_t, inv_m)[0]
    assert np.array_equal(exact.cosines(batch, inv_b, matrix_t, inv_m)[position], alone)


def test_the_product_is_the_same_under_one_and_two_blas_threads():
    rng = np.random.default_rng(11)
    vectors, inv_v = _quantised(rng, 512, 384)
    matrix, inv_m = _quantised(rng, 4000, 384)
    matrix_t = np.ascontiguousarray(matrix.T)
    with threadpool_limits(limits=1, user_api="blas"):
        one = exact.cosines(vectors, inv_v, matrix_t, inv_m)
    with threadpool_limits(limits=2, user_api="blas"):
        two = exact.cosines(vectors, inv_v, matrix_t, inv_m)
    assert np.array_equal(one, two)


def _decimal_decay(elapsed: int, half_life: int) -> float:
    with localcontext() as ctx:
        ctx.prec = 40
        return float(Decimal(2) ** (Decimal(-elapsed) / Decimal(half_life)))


@settings(max_examples=300, deadline=None)
@given(elapsed=st.integers(0, 400 * 24 * 3600 * 1000), half_life=st.integers(1000, 90 * 24 * 3600 * 1000))
def test_decay_is_close_to_the_true_power_and_the_array_form_is_the_same_bits(elapsed, half_life):
    got = exact.decay(elapsed, half_life)
    # elapsed time is floored to half_life / 2**24: relative error below ln 2 / 2**24
    assert got == pytest.approx(_decimal_decay(elapsed, half_life), rel=5e-8, abs=1e-300)
    assert exact.decay_array(np.array([elapsed]), half_life)[0] == got


def test_decay_is_exact_at_whole_half_lives_and_never_increases():
    hl = 30 * 24 * 3600 * 1000
    for k in range(0, 60):
        assert exact.decay(k * hl, hl) == 2.0**-k
    assert exact.decay(-5, hl) == 1.0
    assert exact.decay(2000 * hl, hl) == 0.0
    steps = np.sort(np.random.default_rng(2).integers(0, 5 * hl, size=20_000))
    values = exact.decay_array(steps, hl)
    assert np.all(np.diff(values) <= 0)
    with pytest.raises(ValueError):
        exact.decay(10, 0)


def test_powers_come_from_decimal_arithmetic():
    assert exact.power_table(0.85, 4) == (1.0, 0.85, float(Decimal(0.85) ** 2), float(Decimal(0.85) ** 3))
    table = exact.integer_powers(-0.5, 20)
    for gap in range(1, 21):
        assert table[gap] == pytest.approx(1 / math.sqrt(gap), rel=1e-15)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0, -np.inf]), min_size=0, max_size=40), st.integers(0, 12))
def test_top_k_breaks_ties_by_index(values, k):
    scores = np.array(values, dtype=np.float32)
    expected = sorted((i for i in range(len(scores)) if np.isfinite(scores[i])), key=lambda i: (-scores[i], i))[:k]
    assert exact.top_k(scores, k).tolist() == expected


def test_norms_and_dots_are_exact_sums_on_integer_vectors():
    rng = np.random.default_rng(8)
    q = rng.integers(-127, 128, size=384).astype(np.float32)
    assert exact.norm(q) == math.sqrt(int((q.astype(np.int64) ** 2).sum()))
    r = rng.integers(-127, 128, size=384).astype(np.float32)
    assert exact.dot(q, r) == float(int(q.astype(np.int64) @ r.astype(np.int64)))


def _replay(events, *, together: bool) -> list[bytes]:
    """Fold a stream and rank every user after each batch, either every
    user of the batch in one product or one user per product."""
    catalog = make_catalog()
    graph = ItemGraph()
    states: dict[str, UserState] = {}
    records: list[bytes] = []
    for start in range(0, len(events), 25):
        batch = [(start + i, e) for i, e in enumerate(events[start : start + 25])]
        for _, event in batch:
            states.setdefault(event.user_id, UserState())
        updates = process_partition_events(batch, states, graph, catalog, QUERIES, 0)
        live = [u for u in updates if not u.forgotten]
        requests = [prepare_rank(u.state, catalog, graph, u.trigger.ts) for u in live]
        if together:
            lists = rank_requests(requests, catalog, 8)
        else:
            lists = [rank_requests([r], catalog, 8)[0] for r in requests]
        for update, ranked in zip(live, lists):
            record = build_recommendation(update.user_id, update.state, ranked, catalog, trigger=update.trigger, model_version="m", generated_at=0)
            records.append(msgspec.json.encode(record))
    return records


def test_a_replay_gives_byte_identical_list_records_alone_or_together():
    events = make_stream(seed=4, n=300, users=12, forgets=False)
    together = _replay(events, together=True)
    alone = _replay(events, together=False)
    assert len(together) > 50 and together == alone


LIST_PATH = ["models/ranking.py", "models/graph.py", "models/interest.py", "models/explain.py", "models/recommend.py", "models/catalog.py"]
# numpy functions whose bits depend on the BLAS kernel or on SIMD libm
FORBIDDEN = {"exp", "exp2", "expm1", "log", "log2", "log1p", "power", "float_power", "dot", "matmul", "inner", "vdot", "einsum", "tensordot", "norm"}


@pytest.mark.parametrize("path", LIST_PATH)
def test_the_list_path_calls_no_blas_product_or_transcendental_function(path):
    tree = ast.parse((ROOT / path).read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
            found.append(f"line {node.lineno}: @")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) and not (isinstance(node.right, ast.Constant) and isinstance(node.right.value, int)):
            found.append(f"line {node.lineno}: ** with a non-integer exponent")
        if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN:
            base = node.value
            names = []
            while isinstance(base, ast.Attribute):
                names.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id in {"np", "numpy", "math"}:
                found.append(f"line {node.lineno}: {base.id}.{'.'.join(reversed(names + [node.attr]))}")
    assert not found, f"{path} must use models.exact instead: {found}"

