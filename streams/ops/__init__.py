"""Operators' tools: backfill, replay, rebuild, status, forget, tail, explain, datasets and the demo."""
