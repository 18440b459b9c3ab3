"""The Grafana dashboard queries only metrics the worker exports, and the
compose file provisions it (Prometheus + Grafana behind a profile)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from agents.deps import Counters
from streams.web.metrics import Readers, WorkerMetrics

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "docs" / "monitoring" / "grafana" / "dashboards" / "recstream.json"


def exported_samples() -> set[str]:
    """Every sample name a worker's registry can serve (labelled gauges and
    histograms observed once, so their series exist)."""
    counters = Counters()
    counters.dead_letters_by_reason["not_json"] = 1
    metrics = WorkerMetrics(Readers(counters=lambda: vars(counters), encoder=lambda: {"cache_hits": 0}, catalog_items=lambda: 1))
    metrics.observe_batch("events", 1)
    metrics.observe_encode(1, 0.1)
    metrics.observe_list_latency(1.0, now_s=1.01)
    metrics.set_users_in_state({0: 1})
    metrics.set_consumer_lag({("events", 0): 0})
    return {s.name for f in text_string_to_metric_families(metrics.exposition().decode()) for s in f.samples}


def test_every_metric_the_grafana_dashboard_queries_exists():
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    queried = {name for e in exprs for name in re.findall(r"\brecstream_[a-z0-9_]+", e)}
    assert len(dashboard["panels"]) >= 7 and queried
    missing = queried - exported_samples()
    assert not missing, f"the dashboard queries metrics the worker does not export: {sorted(missing)}"
    # the panels: events/s, lists/s, lag, latency, dead letters, live quality, bots
    for needed in ("recstream_events_total", "recstream_lists_total", "recstream_consumer_lag", "recstream_list_latency_seconds_bucket",
                   "recstream_dead_letters_total", "recstream_online_hits_total", "recstream_bots_flagged_total"):
        assert needed in queried


def test_compose_provisions_prometheus_and_grafana_behind_a_profile():
    services = yaml.safe_load((ROOT / "docker-compose.kafka.yml").read_text())["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
    mounts = [v.split(":")[0] for v in services["grafana"]["volumes"] + services["prometheus"]["volumes"]]
    for mount in mounts:
        assert (ROOT / mount).exists(), mount
    assert any((ROOT / m / DASHBOARD.name).is_file() for m in mounts)
