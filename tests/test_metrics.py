"""Unit tests of the worker's metrics (streams.web.metrics) and its endpoints
(streams.web.health), without a broker."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from types import SimpleNamespace

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agents.deps import Counters
from streams.web.health import ObservabilityServer, bind_listener, readiness_problems
from streams.web.metrics import COUNTER_TOTALS, Readers, WorkerMetrics


def samples(metrics: WorkerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``(sample name, sorted labels) -> value`` from the text exposition."""
    text = metrics.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: WorkerMetrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, tuple(sorted(labels.items()))))


def test_totals_are_read_from_the_agents_counters_and_the_encoder_stats():
    counters = Counters(events=7, applied=4, lists=3, duplicates=1)
    counters.dead_letters_by_reason.update({"not_json": 2, "bad_timestamp": 1})
    stats = {"texts_requested": 10, "cache_hits": 6, "texts_encoded": 3}
    metrics = WorkerMetrics(Readers(counters=lambda: vars(counters), encoder=lambda: stats, catalog_items=lambda: 42))
    assert value(metrics, "recstream_events_total") == 7
    assert value(metrics, "recstream_states_written_total") == 4
    assert value(metrics, "recstream_duplicates_total") == 1
    assert value(metrics, "recstream_dead_letters_total", reason="not_json") == 2
    assert value(metrics, "recstream_dead_letters_total", reason="bad_timestamp") == 1
    assert value(metrics, "recstream_encoder_cache_hits_total") == 6
    assert value(metrics, "recstream_encoder_cache_misses_total") == 4
    assert value(metrics, "recstream_encoder_texts_total") == 3
    assert value(metrics, "recstream_catalog_items") == 42
    # read live, not copied: a later count shows in the next scrape
    counters.events += 5
    assert value(metrics, "recstream_events_total") == 12


def test_every_running_total_of_the_agents_is_exported():
    # a counter added to agents.deps.Counters must get a metric (or be listed here)
    not_totals = {"started", "batches", "dead_letters", "dead_letters_by_reason", "online_hits", "suspected_bots"}
    fields = {f.name for f in dataclasses.fields(Counters)} - not_totals
    assert fields == set(COUNTER_TOTALS)


def test_online_hits_are_exported_by_k():
    counters = Counters()
    counters.online_events, counters.online_hits[1], counters.online_hits[10] = 7, 1, 3
    metrics = WorkerMetrics(Readers(counters=lambda: vars(counters)))
    assert value(metrics, "recstream_online_events_total") == 7
    assert [value(metrics, "recstream_online_hits_total", k=k) for k in ("1", "5", "10")] == [1, 0, 3]


def test_before_the_encoder_loads_its_totals_read_zero():
    metrics = WorkerMetrics()
    assert value(metrics, "recstream_encoder_cache_hits_total") == 0
    assert value(metrics, "recstream_encoder_cache_misses_total") == 0
    assert value(metrics, "recstream_catalog_items") is None


def test_histograms_count_batches_encoder_runs_and_list_latency():
    metrics = WorkerMetrics()
    metrics.observe_batch("events", 3)
    metrics.observe_batch("events", 500)
    metrics.observe_batch("items", 1)
    metrics.observe_encode(64, 0.2)
    metrics.observe_list_latency(1_700_000_000.000, now_s=1_700_000_000.012)  # 12 ms
    metrics.observe_list_latency(1_700_000_000.000, now_s=1_700_000_004.0)  # 4 s
    metrics.observe_list_latency(None)  # a record without timestamp is no sample
    assert value(metrics, "recstream_batch_size_count", agent="events") == 2
    assert value(metrics, "recstream_batch_size_sum", agent="events") == 503
    assert value(metrics, "recstream_batch_size_bucket", agent="events", le="5.0") == 1
    assert value(metrics, "recstream_batch_size_count", agent="items") == 1
    assert value(metrics, "recstream_encode_seconds_count") == 1
    assert value(metrics, "recstream_list_latency_seconds_count") == 2
    # buckets fine enough to tell 10 ms from 15 ms, and to reach 10 s
    assert value(metrics, "recstream_list_latency_seconds_bucket", le="0.01") == 0
    assert value(metrics, "recstream_list_latency_seconds_bucket", le="0.015") == 1
    assert value(metrics, "recstream_list_latency_seconds_bucket", le="3.0") == 1
    assert value(metrics, "recstream_list_latency_seconds_bucket", le="5.0") == 2
    assert value(metrics, "recstream_list_latency_seconds_bucket", le="10.0") == 2


def test_gauges_are_replaced_so_revoked_partitions_disappear():
    metrics = WorkerMetrics()
    metrics.set_consumer_lag({("events", 0): 5, ("events", 1): 0})
    metrics.set_users_in_state({0: 10, 1: 3})
    assert value(metrics, "recstream_consumer_lag", topic="events", partition="0") == 5
    metrics.set_consumer_lag({("events", 1): 2})
    metrics.set_users_in_state({1: 4})
    assert value(metrics, "recstream_consumer_lag", topic="events", partition="0") is None
    assert value(metrics, "recstream_consumer_lag", topic="events", partition="1") == 2
    assert value(metrics, "recstream_users_in_state", partition="0") is None
    assert value(metrics, "recstream_users_in_state", partition="1") == 4


def test_each_app_has_its_own_registry():
    first, second = WorkerMetrics(), WorkerMetrics()  # the global registry would refuse the second
    first.observe_batch("events", 1)
    assert value(first, "recstream_batch_size_count", agent="events") == 1
    assert value(second, "recstream_batch_size_count", agent="events") is None


async def test_a_failing_refresher_neither_fails_the_scrape_nor_stops_the_others():
    metrics = WorkerMetrics()

    async def broken() -> None:
        raise RuntimeError("consumer gone")

    async def users() -> None:
        metrics.set_users_in_state({0: 1})

    metrics.refreshers += [broken, users]
    text = (await metrics.scrape()).decode()
    assert "recstream_users_in_state" in text
    assert value(metrics, "recstream_metrics_refresh_failed") == 1
    metrics.refreshers.remove(broken)
    await metrics.refresh()
    assert value(metrics, "recstream_metrics_refresh_failed") == 0


def fake_app(**state: object) -> SimpleNamespace:
    recovery = SimpleNamespace(completed=SimpleNamespace(is_set=lambda: state.get("recovered", True)))
    return SimpleNamespace(
        should_stop=state.get("stopping", False), started=state.get("started", True),
        tables=SimpleNamespace(recovery=recovery), in_recovery=state.get("in_recovery", False),
        rebalancing=state.get("rebalancing", False),
    )


@pytest.mark.parametrize(
    "state, loaded, reasons",
    [
        ({"started": False}, False, ["worker starting"]),
        ({"recovered": False}, False, ["table recovery not completed yet", "encoder model loading"]),
        ({"in_recovery": True, "rebalancing": True}, True, ["table recovery in progress (after a rebalance)", "consumer group rebalancing"]),
        ({}, False, ["encoder model loading"]),
        ({"stopping": True}, True, ["worker stopping"]),
        ({}, True, []),
    ],
)
def test_readiness_reasons(state, loaded, reasons):
    assert readiness_problems(fake_app(**state), lambda: loaded) == reasons


def test_a_port_in_use_is_a_clear_error():
    first = bind_listener("127.0.0.1", 0)
    try:
        from streams.web.health import EndpointError

        with pytest.raises(EndpointError, match="RECSTREAM_METRICS_PORT"):
            bind_listener("127.0.0.1", first.getsockname()[1])
    finally:
        first.close()


async def test_the_server_answers_metrics_healthz_and_ready():
    metrics = WorkerMetrics(Readers(counters=lambda: {"events": 3, "dead_letters_by_reason": Counter(not_json=1)}))
    reasons: list[str] = ["table recovery not completed yet"]
    server = ObservabilityServer(bind_listener("127.0.0.1", 0), metrics, lambda: list(reasons))
    await server.start()
    host, port = server.address
    base = f"http://{host}:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as response:
                assert response.status == 200
                assert (await response.json())["status"] == "alive"
            async with http.get(f"{base}/ready") as response:
                assert response.status == 503
                assert await response.json() == {"ready": False, "reasons": ["table recovery not completed yet"]}
            reasons.clear()
            async with http.get(f"{base}/ready") as response:
                assert response.status == 200
                assert json.loads(await response.text()) == {"ready": True}
            async with http.get(f"{base}/metrics") as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain")
                text = await response.text()
        assert "recstream_events_total 3.0" in text
        assert 'recstream_dead_letters_total{reason="not_json"} 1.0' in text
    finally:
        await server.stop()


def test_status_summarises_a_scrape_like_prometheus_would():
    from streams.ops.status import histogram_quantile, worker_summary

    counters = Counters(events=10, lists=4)
    counters.dead_letters_by_reason.update({"not_json": 1})
    metrics = WorkerMetrics(Readers(counters=lambda: vars(counters), encoder=lambda: {"texts_requested": 4, "cache_hits": 3}))
    for seconds in (0.012, 0.012, 0.012, 4.0):
        metrics.observe_list_latency(100.0, now_s=100.0 + seconds)
    metrics.observe_batch("events", 10)
    metrics.set_consumer_lag({("events", 0): 3})
    metrics.set_users_in_state({0: 2, 1: 5})
    parsed: dict = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for s in family.samples:
            parsed.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    summary = worker_summary(parsed)
    assert summary["events"] == 10 and summary["lists"] == 4 and summary["users_in_state"] == 7
    assert summary["dead_letters"] == {"not_json": 1} and summary["lag"] == {"events[0]": 3}
    assert summary["mean_batch"] == 10 and summary["encoder_hit_rate"] == 0.75
    # 3 of 4 samples in (10 ms, 15 ms]: the median interpolates inside that bucket
    assert 10 < summary["latency_p50_ms"] <= 15
    assert 3000 < summary["latency_p99_ms"] <= 5000
    assert histogram_quantile(0.5, {}) is None
