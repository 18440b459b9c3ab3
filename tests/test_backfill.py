"""Backfill without a broker: readers, column mapping, stable ids, validation."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from schemas import DEFAULT_LIMITS, TICK_KEY, InvalidRecord, RejectReason, decode_event
from streams.ops.backfill import (
    BackfillError,
    count_rows,
    detect_format,
    parse_mapping,
    read_csv,
    read_jsonl,
    read_parquet,
    row_to_event,
    stable_event_id,
    to_epoch_ms,
    validate,
    backfill,
)
from streams.settings import load_settings

ML = {"user_id": "userId", "item_id": "movieId", "value": "rating", "ts": "timestamp"}


def test_format_comes_from_the_extension_or_the_flag(tmp_path):
    assert detect_format(Path("a.jsonl")) == "jsonl"
    assert detect_format(Path("a.ndjson.gz")) == "jsonl"
    assert detect_format(Path("ratings.CSV")) == "csv"
    assert detect_format(Path("x.parquet")) == "parquet"
    assert detect_format(Path("x.txt"), "csv") == "csv"
    with pytest.raises(BackfillError, match="--format"):
        detect_format(Path("x.txt"))


def test_mapping_flags_are_checked():
    assert parse_mapping(["user_id=userId", " ts = timestamp "]) == {"user_id": "userId", "ts": "timestamp"}
    with pytest.raises(BackfillError, match="FIELD=COLUMN"):
        parse_mapping(["user_id"])
    with pytest.raises(BackfillError, match="not an event field"):
        parse_mapping(["rating=stars"])


def test_timestamps_in_seconds_milliseconds_iso_and_datetimes():
    assert to_epoch_ms("1260759144", "s") == 1_260_759_144_000
    assert to_epoch_ms(1260759144.5, "s") == 1_260_759_144_500
    assert to_epoch_ms("1700000000000", "ms") == 1_700_000_000_000
    assert to_epoch_ms(1700000000000.0, "ms") == 1_700_000_000_000
    assert to_epoch_ms("2023-11-14T22:13:20Z", "s") == 1_700_000_000_000  # ISO ignores the unit
    assert to_epoch_ms("2023-11-14T22:13:20", "ms") == 1_700_000_000_000  # naive = UTC
    from datetime import datetime, timezone

    assert to_epoch_ms(datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc), "ms") == 1_700_000_000_000
    with pytest.raises(InvalidRecord) as error:
        to_epoch_ms("yesterday", "ms")
    assert error.value.reason is RejectReason.BAD_TIMESTAMP


def test_a_movielens_row_becomes_a_valid_rate_event():
    row = {"userId": "1", "movieId": "31", "rating": "2.5", "timestamp": "1260759144"}
    event = row_to_event(row, ML, "rate", "s")
    assert event == {"event_id": event["event_id"], "user_id": "1", "item_id": "31", "type": "rate", "value": 2.5, "ts": 1_260_759_144_000}
    key, value, decoded = validate(event, DEFAULT_LIMITS)
    assert key == b"1" and decoded.value == 2.5 and decoded.ts == 1_260_759_144_000
    # what is published is exactly what the worker's decoder accepted
    assert decode_event(value, key=key) == decoded


def test_numeric_ids_become_strings_and_empty_cells_are_absent():
    event = row_to_event({"user_id": 7, "item_id": 12.0, "type": "click", "ts": 1_700_000_000_000, "text": ""}, {}, None, "ms")
    assert event["user_id"] == "7" and event["item_id"] == "12" and "text" not in event


def test_stable_ids_depend_on_content_only():
    row = {"userId": "1", "movieId": "31", "rating": "2.5", "timestamp": "1260759144"}
    first = row_to_event(row, ML, "rate", "s")["event_id"]
    assert first.startswith("bf-") and first == row_to_event(dict(row), ML, "rate", "s")["event_id"]
    assert first != row_to_event({**row, "rating": "3.0"}, ML, "rate", "s")["event_id"]
    assert stable_event_id({"b": 1, "a": 2}) == stable_event_id({"a": 2, "b": 1})  # key order does not matter
    # a given event_id is kept as it is
    assert row_to_event({**row, "event_id": "e-1"}, ML, "rate", "s")["event_id"] == "e-1"


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"user_id": "u", "type": "click", "ts": 1_700_000_000_000}, RejectReason.INVALID_FIELD),  # no item
        ({"user_id": "u", "item_id": "i", "type": "teleport", "ts": 1_700_000_000_000}, RejectReason.UNKNOWN_TYPE),
        # ticks are the workers' own, under any key, the reserved one included
        ({"user_id": "u", "type": "tick", "ts": 1_700_000_000_000}, RejectReason.UNKNOWN_TYPE),
        ({"user_id": TICK_KEY, "type": "tick", "ts": 1_700_000_000_000}, RejectReason.UNKNOWN_TYPE),
        ({"user_id": "u", "item_id": "i", "type": "click", "ts": 1_700_000_000}, RejectReason.BAD_TIMESTAMP),  # seconds
        ({"item_id": "i", "type": "click", "ts": 1_700_000_000_000}, RejectReason.INVALID_FIELD),  # no user
        ({"user_id": "u", "item_id": "i", "type": "rate", "value": "lots", "ts": 1_700_000_000_000}, RejectReason.INVALID_FIELD),
        ({"user_id": "u", "type": "search", "text": "x" * 3000, "ts": 1_700_000_000_000}, RejectReason.TOO_LARGE),
    ],
)
def test_rows_are_rejected_with_the_workers_reason_codes(row, reason):
    with pytest.raises(InvalidRecord) as error:
        validate(row_to_event(row, {}, None, "ms"), DEFAULT_LIMITS)
    assert error.value.reason is reason


def test_jsonl_reader_numbers_lines_and_flags_bad_ones(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_bytes(b'{"user_id": "u1"}\n\nnot json\n[1, 2]\n{"user_id": "u2"}\n')
    rows = list(read_jsonl(path))
    assert [(r.line, r.values) for r in rows if r.error is None] == [(1, {"user_id": "u1"}), (5, {"user_id": "u2"})]
    assert [(r.line, r.error.reason) for r in rows if r.error] == [(3, RejectReason.NOT_JSON), (4, RejectReason.NOT_JSON)]
    gz = tmp_path / "e.jsonl.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert [r.line for r in read_jsonl(gz)] == [r.line for r in rows]
    assert count_rows(path, "jsonl") == 5 and count_rows(gz, "jsonl") is None


def test_csv_reader_gives_file_lines_and_rejects_ragged_rows(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n2,10,4.0,835355493,extra\n3,5,1,1260759144\n")
    rows = list(read_csv(path))
    assert [(r.line, r.values["userId"]) for r in rows if r.error is None] == [(2, "1"), (4, "3")]
    assert [(r.line, r.error.reason) for r in rows if r.error] == [(3, RejectReason.INVALID_FIELD)]
    assert count_rows(path, "csv") == 3
    tsv = tmp_path / "r.csv"
    tsv.write_text("user_id;item_id\nu1;i1\n")
    assert [r.values for r in read_csv(tsv, ";")] == [{"user_id": "u1", "item_id": "i1"}]


def test_parquet_reader_streams_typed_rows(tmp_path):
    path = tmp_path / "e.parquet"
    table = pa.table({"userId": [1, 2, 3], "movieId": [31, 10, None], "rating": [2.5, 4.0, 3.0], "timestamp": [1260759144, 835355493, 1260759144]})
    pq.write_table(table, path, row_group_size=2)
    rows = list(read_parquet(path, batch_rows=2))
    assert [r.line for r in rows] == [1, 2, 3] and rows[2].values["movieId"] is None
    assert count_rows(path, "parquet") == 3
    events = [row_to_event(r.values, ML, "rate", "s") for r in rows]
    assert validate(events[0], DEFAULT_LIMITS)[2].user_id == "1"
    with pytest.raises(InvalidRecord):
        validate(events[2], DEFAULT_LIMITS)  # no item


def test_dry_run_reports_without_a_broker(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n2,,4.0,835355493\n3,5,1,nope\n")
    errors = tmp_path / "errors.jsonl"
    # an unreachable broker: a dry run must not connect
    settings = load_settings(broker="127.0.0.1:1")
    report = asyncio.run(
        backfill(settings, path, fmt="csv", mapping=ML, default_type="rate", ts_unit="s", dry_run=True, errors_path=errors, console=Console(file=open("/dev/null", "w")))
    )
    assert (report.rows, report.valid, report.published) == (3, 1, 0)
    assert dict(report.rejected) == {"invalid_field": 1, "bad_timestamp": 1}
    written = [orjson.loads(line) for line in errors.read_bytes().splitlines()]
    assert [(w["line"], w["reason"]) for w in written] == [(3, "invalid_field"), (4, "bad_timestamp")]
    assert written[0]["row"] == {"userId": "2", "movieId": "", "rating": "4.0", "timestamp": "835355493"}
