"""The benchmark harness's pure-python pieces: the workload generator, a tiny
retrieval run, and the result/summary shape (no wall-clock assertions)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from bench.run_bench import SECTIONS, parse_sections, plot, summary_rows
from bench.workload import EVENT_MIX, WorkloadSpec, generate, live_events
from schemas import EventType, decode_event, decode_item

SPEC = WorkloadSpec(users=50, items=40, events=1_500, seed=3)


def test_workload_records_validate():
    workload = generate(SPEC)
    assert len(workload.items) == 40 and len(workload.events) == 1_500
    for key, value in workload.item_records():
        item = decode_item(value, key)
        assert item.title and item.description and item.categories
    for key, value in workload.event_records():
        decode_event(value, key)  # raises on anything the worker would dead-letter
    assert len({e.event_id for e in workload.events}) == 1_500


def test_workload_is_deterministic_by_seed():
    a, b = generate(SPEC), generate(SPEC)
    assert a.item_records() == b.item_records() and a.event_records() == b.event_records()
    other = generate(WorkloadSpec(**{**SPEC.__dict__, "seed": 4}))
    assert other.event_records() != a.event_records()


def test_workload_has_the_mix_popularity_and_per_user_time_order():
    workload = generate(SPEC)
    kinds = Counter(e.type for e in workload.events)
    assert set(kinds) == set(EVENT_MIX)
    assert kinds[EventType.VIEW] > kinds[EventType.PURCHASE]
    assert all(e.text for e in workload.events if e.type is EventType.SEARCH)
    assert all(e.value is not None for e in workload.events if e.type is EventType.RATE)
    # Zipf: the most popular item is engaged far more than the median one
    counts = sorted(Counter(e.item_id for e in workload.events if e.item_id).values(), reverse=True)
    assert counts[0] >= 4 * counts[len(counts) // 2]
    last: dict[str, int] = {}
    for event in workload.events:
        assert event.ts > last.get(event.user_id, 0)
        last[event.user_id] = event.ts


def test_live_events_continue_after_the_workload():
    workload = generate(SPEC)
    stream = live_events(workload, "fresh")
    events = [next(stream) for _ in range(6_000)]  # crosses a chunk boundary
    assert len({e.event_id for e in events}) == 6_000
    assert min(e.ts for e in events) > max(e.ts for e in workload.events)
    known = {i.item_id for i in workload.items}
    assert all(e.item_id in known for e in events if e.item_id)


def test_tiny_retrieval_run_has_the_keys():
    pytest.importorskip("faiss")
    from bench.retrieval import run_retrieval_bench

    result = run_retrieval_bench([500, 2_000], seed=1, log=lambda _: None)
    for n in ("500", "2000"):
        row = result["retrieval"][n]
        assert {"exact_ms", "ann_ms", "recall_at_10", "build_s"} <= set(row)
        assert row["recall_at_10"] >= 0.95


def test_sections_parse():
    assert parse_sections(None, None, False) == set(SECTIONS)
    assert "scale" not in parse_sections(None, None, True)
    assert parse_sections("encoder, retrieval", None, True) == {"encoder", "retrieval"}
    assert parse_sections(None, "scale,freshness", False) == set(SECTIONS) - {"scale", "freshness"}
    with pytest.raises(ValueError):
        parse_sections("encoders", None, False)


def test_summary_and_charts_from_a_result(tmp_path):
    result = {
        "quick": True,
        "device": {"type": "cpu", "name": "test"},
        "wall_s": 1.0,
        "raw_eps": 1e5, "noop_eps": 5e3, "pipeline_eps": 1e3, "ratio": 0.2,
        "bytes_per_user": 1700.0, "rss_mb_start": 500.0, "rss_mb_end": 510.0,
        "latency_ms": {"500": {"p50": 30.0, "p95": 60.0, "p99": 90.0}},
        "freshness": {"500": {"p50": 30.0, "p95": 60.0, "p99": 90.0, "lists": 100}},
        "encoder_texts_per_s": {"cpu": {"1": 50.0, "64": 300.0}},
        "encoder_cache_hit_rate": 1.0,
        "retrieval": {"1000": {"exact_ms": 1.0, "ann_ms": 0.5, "recall_at_10": 1.0, "build_s": 0.1, "batch": 500}},
        "scale": {"1": 900.0, "2": 1500.0},
    }
    sections = {row[0] for row in summary_rows(result)}
    assert {"pipeline", "state", "freshness", "encoder", "retrieval", "scale", "run"} <= sections
    out = tmp_path / "bench.json"
    out.write_text(json.dumps(result))
    written = plot(result, out)
    assert {p.name for p in written} == {f"bench-{c}.png" for c in ("throughput", "freshness", "encoder", "retrieval")}
    assert all(p.stat().st_size > 0 for p in written)
