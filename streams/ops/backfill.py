"""``recstream backfill FILE``: publish historical events from a JSONL, CSV or
Parquet file to the ``events`` topic.

Every row becomes an event dict, is encoded to JSON and validated with
:func:`schemas.decode_event` — the worker's own decoder with the worker's
limits — so a row the backfill accepts is one the worker accepts, and a row it
rejects carries the same reason code the dead-letter topic would. Rejected
rows are reported (file line or row number, reason, detail) and never
published.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import hashlib
import io
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import IO, Any, Iterator, Literal

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from schemas import EventType, InvalidRecord, Limits, RejectReason, decode_event
from schemas.decode import TICK_IS_INTERNAL
from schemas.records import Event
from streams.kafka import topics
from streams.kafka.admin import ensure_topics
from streams.kafka.clients import publish
from streams.settings import Settings

Format = Literal["jsonl", "csv", "parquet"]
TsUnit = Literal["s", "ms"]

# The fields of an event a column can be mapped to.
EVENT_FIELDS = tuple(Event.__struct_fields__)
# Rows without an event_id get "bf-" + a hash of their event fields: the same
# row published twice gets the same id, two different rows never share one.
STABLE_ID_PREFIX = "bf-"

_SUFFIXES: dict[str, Format] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet"}


class BackfillError(ValueError):
    """The file or the options cannot be used at all (not a per-row problem)."""


# -- options -------------------------------------------------------------------


def detect_format(path: Path, given: str | None = None) -> Format:
    """``given``, or the format named by the file's extension (``.gz`` aside)."""
    if given:
        return given  # type: ignore[return-value]  # click limits the choices
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    if suffixes and suffixes[-1] in _SUFFIXES:
        return _SUFFIXES[suffixes[-1]]
    raise BackfillError(f"cannot tell the format of {path.name} from its extension; pass --format jsonl|csv|parquet")


def parse_mapping(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``["user_id=userId", ...]`` -> ``{"user_id": "userId"}`` (event field -> column)."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        target, sep, column = pair.partition("=")
        target, column = target.strip(), column.strip()
        if not sep or not target or not column:
            raise BackfillError(f"--map {pair!r} is not FIELD=COLUMN")
        if target not in EVENT_FIELDS:
            raise BackfillError(f"--map {pair!r}: {target} is not an event field (one of {', '.join(EVENT_FIELDS)})")
        mapping[target] = column
    return mapping


# -- row -> event --------------------------------------------------------------


def _reject(reason: RejectReason, detail: str) -> InvalidRecord:
    return InvalidRecord(reason, detail)


def _missing(value: Any) -> bool:
    # CSV has no null: an empty cell means "not given", like a missing key.
    return value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, float) and math.isnan(value))


def _as_id(value: Any) -> Any:
    """Ids are strings on the wire; files often store them as numbers
    (MovieLens' userId). Anything else is passed on for the decoder to reject."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return value.strip()
    return value


def _as_number(name: str, column: str, value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise _reject(RejectReason.INVALID_FIELD, f"column {column!r} ({name}) is not a number - at `$.{name}`") from None
    return value


def to_epoch_ms(value: Any, unit: TsUnit, column: str = "ts") -> Any:
    """An event time in epoch milliseconds from a number in ``unit``, a numeric
    string, an ISO-8601 string (naive = UTC) or a datetime; out-of-range
    values are left for the decoder to reject with its own reason."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return int(round(moment.timestamp() * 1000))
    if isinstance(value, date):
        return to_epoch_ms(datetime(value.year, value.month, value.day), unit, column)
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                try:
                    return to_epoch_ms(datetime.fromisoformat(text), unit, column)
                except ValueError:
                    raise _reject(
                        RejectReason.BAD_TIMESTAMP, f"column {column!r} is neither a number nor an ISO-8601 time - at `$.ts`"
                    ) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if unit == "s":
        return int(round(value * 1000)) if math.isfinite(value) else value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value  # fractional milliseconds: the decoder says bad_timestamp


def stable_event_id(event: dict[str, Any]) -> str:
    """``bf-`` + a hash of the event's fields (canonical JSON, keys sorted):
    re-running the same file gives every event the same id."""
    canonical = orjson.dumps({k: v for k, v in event.items() if k != "event_id"}, option=orjson.OPT_SORT_KEYS)
    return STABLE_ID_PREFIX + hashlib.blake2b(canonical, digest_size=16).hexdigest()


def row_to_event(row: dict[str, Any], mapping: dict[str, str], default_type: str | None, ts_unit: TsUnit) -> dict[str, Any]:
    """The event dict a row stands for (not validated yet).

    ``mapping`` names the column of each event field; unmapped fields are read
    from the column of the same name. Empty cells count as absent.
    """
    event: dict[str, Any] = {}
    for name in EVENT_FIELDS:
        column = mapping.get(name, name)
        value = row.get(column)
        if _missing(value):
            continue
        if name in ("event_id", "user_id", "item_id", "type"):
            value = _as_id(value)
        elif name == "ts":
            value = to_epoch_ms(value, ts_unit, column)
        elif name in ("value", "weight"):
            value = _as_number(name, column, value)
        elif name == "context" and isinstance(value, str):
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                raise _reject(RejectReason.INVALID_FIELD, f"column {column!r} (context) is not a JSON object - at `$.context`") from None
        event[name] = value
    if "type" not in event and default_type:
        event["type"] = default_type
    if "event_id" not in event:
        event["event_id"] = stable_event_id(event)
    return event


def validate(event: dict[str, Any], limits: Limits) -> tuple[bytes, bytes, Event]:
    """``(key, value, event)`` as they will be published; raises
    :class:`InvalidRecord` with the worker's reason code when the worker
    would reject it."""
    try:
        value = orjson.dumps(event)
    except TypeError as exc:  # a value JSON cannot carry (e.g. a binary column)
        raise _reject(RejectReason.INVALID_FIELD, f"row has a value JSON cannot encode ({exc})") from None
    user = event.get("user_id")
    key = user.encode() if isinstance(user, str) else None
    decoded = decode_event(value, key=key, limits=limits)
    if decoded.type is EventType.TICK:
        # the decoder admits a tick under the reserved key, as the workers send
        # it; from a file it would pass for theirs
        raise _reject(RejectReason.UNKNOWN_TYPE, TICK_IS_INTERNAL)
    return decoded.user_id.encode(), value, decoded


# -- readers -------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One row of the input with where it came from (``line`` is the file's
    line for JSONL and CSV, the 1-based row number for Parquet)."""

    line: int
    values: dict[str, Any] | None  # None when the row could not be parsed at all
    error: InvalidRecord | None = None


def _open_text(path: Path) -> IO[str]:
    if path.suffix.lower() == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="strict", newline="")
    return open(path, encoding="utf-8", errors="strict", newline="")


def read_jsonl(path: Path) -> Iterator[Row]:
    """One JSON object per line; blank lines are skipped."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                values = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                yield Row(number, None, _reject(RejectReason.NOT_JSON, f"line is not JSON ({exc})"))
                continue
            if not isinstance(values, dict):
                yield Row(number, None, _reject(RejectReason.NOT_JSON, "line is not a JSON object"))
                continue
            yield Row(number, values)


def read_csv(path: Path, delimiter: str = ",") -> Iterator[Row]:
    """A header row, then one event per row (cells are strings)."""
    with _open_text(path) as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        if reader.fieldnames is None:
            return
        try:
            for values in reader:
                # line_num is the reader's line after the row: the row's own line
                # for rows without embedded newlines, which is what people grep for
                extra = values.pop(None, None)  # type: ignore[call-overload]  # DictReader's overflow key
                if extra:
                    yield Row(reader.line_num, None, _reject(RejectReason.INVALID_FIELD, f"row has {len(extra)} more cells than the header"))
                    continue
                yield Row(reader.line_num, values)
        except UnicodeDecodeError as exc:
            raise BackfillError(f"{path.name} is not UTF-8 near line {reader.line_num + 1} ({exc.reason})") from exc
        except csv.Error as exc:
            raise BackfillError(f"{path.name} line {reader.line_num}: {exc}") from exc


def read_parquet(path: Path, batch_rows: int = 10_000) -> Iterator[Row]:
    """Rows of a Parquet file, read a batch at a time (never all in memory)."""
    import pyarrow.parquet as pq  # imported here: only this reader needs it

    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
        for values in batch.to_pylist():
            number += 1
            yield Row(number, values)


def read_rows(path: Path, fmt: Format, delimiter: str = ",") -> Iterator[Row]:
    if fmt == "jsonl":
        return read_jsonl(path)
    if fmt == "csv":
        return read_csv(path, "\t" if path.suffix.lower() == ".tsv" and delimiter == "," else delimiter)
    return read_parquet(path)


def count_rows(path: Path, fmt: Format) -> int | None:
    """How many rows the file holds (for the progress bar's ETA): Parquet
    says so in its footer; text files are counted by newlines, a cheap pass
    next to publishing. None when unknown (compressed input)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    if path.suffix.lower() == ".gz":
        return None
    lines = 0
    last = b"\n"
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    lines += last != b"\n"
    return max(0, lines - 1) if fmt == "csv" else lines


# -- the job -------------------------------------------------------------------


@dataclass(frozen=True)
class Rejection:
    """A row that was not published, and why."""

    line: int
    reason: str
    detail: str
    row: dict[str, Any] | None

    def to_json(self) -> bytes:
        # default=str: Parquet cells can be datetimes, decimals, bytes...
        return orjson.dumps({"line": self.line, "reason": self.reason, "detail": self.detail, "row": self.row}, default=str)


@dataclass
class BackfillReport:
    """What a backfill did."""

    path: str
    topic: str
    dry_run: bool
    rows: int = 0
    valid: int = 0
    published: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    rejections: list[Rejection] = field(default_factory=list)  # the first `keep` of them
    seconds: float = 0.0
    first_ts: int | None = None
    last_ts: int | None = None

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "topic": self.topic, "dry_run": self.dry_run, "rows": self.rows, "valid": self.valid,
            "published": self.published, "rejected": dict(self.rejected), "seconds": round(self.seconds, 3),
            "rows_per_s": round(self.rows_per_s, 1), "first_ts": self.first_ts, "last_ts": self.last_ts,
        }


class RateColumn(ProgressColumn):
    """Rows per second (rich's speed column is for bytes)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} rows/s" if speed else "– rows/s", style="progress.data.speed")


def progress_bar(console: Console | None = None) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
        RateColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
    )


async def backfill(
    settings: Settings,
    path: Path,
    *,
    fmt: Format,
    mapping: dict[str, str],
    default_type: str | None = None,
    ts_unit: TsUnit = "ms",
    delimiter: str = ",",
    dry_run: bool = False,
    errors_path: Path | None = None,
    keep_rejections: int = 20,
    console: Console | None = None,
) -> BackfillReport:
    """Read ``path``, validate every row, publish the valid ones keyed by
    ``user_id`` with the event time as the record timestamp."""
    limits = Limits(max_record_bytes=settings.max_record_bytes, max_text_chars=settings.max_text_chars)
    topic = settings.topic(topics.EVENTS)
    report = BackfillReport(path=str(path), topic=topic, dry_run=dry_run)
    total = count_rows(path, fmt)
    errors_file = open(errors_path, "wb") if errors_path is not None else None
    started = time.perf_counter()

    def reject(row: Row, error: InvalidRecord) -> None:
        rejection = Rejection(row.line, error.reason.value, error.detail, row.values)
        report.rejected[rejection.reason] += 1
        if len(report.rejections) < keep_rejections:
            report.rejections.append(rejection)
        if errors_file is not None:
            errors_file.write(rejection.to_json() + b"\n")

    try:
        if not dry_run:
            # before the first send: a producer writing first would get the
            # broker's auto-created layout (wrong partition count)
            await ensure_topics(settings)
        with progress_bar(console) as progress:
            task = progress.add_task("dry run" if dry_run else "backfill", total=total)

            def records() -> Iterator[tuple[bytes, bytes, int]]:
                # a generator, so publishing pipelines with reading: rows are
                # validated as the producer takes them, never all in memory
                for row in read_rows(path, fmt, delimiter):
                    report.rows += 1
                    if report.rows % 500 == 0:
                        progress.update(task, completed=report.rows)
                    if row.error is not None or row.values is None:
                        reject(row, row.error or _reject(RejectReason.EMPTY, "row is empty"))
                        continue
                    try:
                        key, value, event = validate(row_to_event(row.values, mapping, default_type, ts_unit), limits)
                    except InvalidRecord as error:
                        if error.reason is RejectReason.BAD_TIMESTAMP and ts_unit == "s" and "looks like seconds" in error.detail:
                            # the decoder's hint assumes milliseconds were meant; here
                            # the cell was already read as seconds, so say what it was
                            error = _reject(error.reason, "ts must be between 1973 and 2100 (read as epoch seconds, --ts-unit s)")
                        reject(row, error)
                        continue
                    report.valid += 1
                    report.first_ts = event.ts if report.first_ts is None else min(report.first_ts, event.ts)
                    report.last_ts = event.ts if report.last_ts is None else max(report.last_ts, event.ts)
                    yield key, value, event.ts

            if dry_run:
                for _ in records():
                    pass
            else:
                report.published = await publish(settings, topic, records())
            progress.update(task, completed=report.rows, total=total if total is not None and total >= report.rows else report.rows)
    finally:
        if errors_file is not None:
            errors_file.close()
        report.seconds = time.perf_counter() - started
    return report


def _iso(ts: int | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts / 1000, tz=timezone.utc).isoformat(timespec="seconds")


def print_report(report: BackfillReport, console: Console, errors_path: Path | None = None) -> None:
    """The summary table, the first rejected rows and where the rest went."""
    table = Table(title=f"backfill {report.path} -> {report.topic}" + (" (dry run)" if report.dry_run else ""), show_header=False)
    table.add_row("rows read", f"{report.rows:,}")
    table.add_row("valid", f"{report.valid:,}")
    table.add_row("published", "- (dry run)" if report.dry_run else f"{report.published:,}")
    table.add_row("rejected", f"{sum(report.rejected.values()):,}")
    for reason, count in report.rejected.most_common():
        table.add_row(f"  {reason}", f"{count:,}")
    table.add_row("event time", f"{_iso(report.first_ts)} .. {_iso(report.last_ts)}" if report.first_ts is not None else "")
    table.add_row("seconds", f"{report.seconds:.2f}")
    table.add_row("rows/s", f"{report.rows_per_s:,.0f}")
    console.print(table)
    if report.rejections:
        shown = Table("line", "reason", "detail", title="rejected rows" + (f" (first {len(report.rejections)})" if sum(report.rejected.values()) > len(report.rejections) else ""))
        for rejection in report.rejections:
            shown.add_row(str(rejection.line), rejection.reason, rejection.detail)
        console.print(shown)
    if errors_path is not None and report.rejected:
        console.print(f"every rejected row, as JSONL: {errors_path}")


def backfill_command(settings: Settings, path: Path, **options: Any) -> BackfillReport:
    """Run a backfill and print its report (the CLI's body)."""
    console = Console(stderr=False)
    report = asyncio.run(backfill(settings, path, console=console, **options))
    print_report(report, console, options.get("errors_path"))
    return report
