"""The MovieLens evaluation reports live quality beside the offline metrics."""

from __future__ import annotations

from bench.evaluation import markdown_table


def test_the_table_shows_the_live_hit_rate_beside_the_offline_one():
    result = {
        "hr@10": 0.25, "ndcg@10": 0.12, "mrr@10": 0.09, "coverage": 0.3, "users": 943, "mode": "pipeline",
        "online": {"events": 99_057, "hr@1": 0.01, "hr@5": 0.04, "hr@10": 0.07, "mode": "online"},
    }
    table = markdown_table(result)
    assert "| recstream | 0.2500 |" in table
    assert "| recstream, live | 0.0700 |" in table and "99057 events" in table and "HR@5 0.0400" in table
    del result["online"]
    assert "live" not in markdown_table(result)
