"""Bad input on the real broker: 1,000+ malformed records mixed into a valid
stream. Every malformed record reaches ``events-dlq`` with its reason, its
original bytes and its source position; the lists equal those made from the
valid records alone; and no payload reaches the worker's log.
"""

from __future__ import annotations

import base64
import random
from collections import Counter, defaultdict

import orjson
import pytest

from schemas import EventType, InvalidRecord, decode_event
from streams.kafka import topics
from streams.kafka.clients import group_lag, publish, read_records_to_end
from streams.ops.demo import latest_lists
from tests.integration.harness import dead_letters, event, publish_catalog, wait_for_catalog, wait_until
from tests.integration.test_recovery import offline_run
from tests.topic_catalog import catalog_items

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = 1_700_000_000_000
MARKER = "PAYLOAD-MARKER-7f3a"  # must never appear in logs
VALID = 1_500
BAD = 1_100


def bad_event(rng: random.Random, n: int) -> tuple[bytes | None, str]:
    """One malformed ``events`` value and the reason it must be rejected for."""
    good = {"event_id": f"bad-{n}", "user_id": f"u{n % 30}", "type": "click", "item_id": "space-1", "ts": T0 + n}

    def with_(**changes):
        record = {**good, **changes}
        return orjson.dumps({k: v for k, v in record.items() if v is not ...})

    kinds = [
        (lambda: f"{MARKER} this is not json {n}".encode(), "not_json"),
        (lambda: b'{"event_id": "x", "text": "' + MARKER.encode() + b'\xff\xfe"}', "invalid_utf8"),
        (lambda: orjson.dumps([MARKER, n]), "invalid_field"),
        (lambda: with_(user_id=...), "invalid_field"),
        (lambda: with_(ts=f"{MARKER} yesterday"), "invalid_field"),
        (lambda: with_(ts=...), "invalid_field"),
        (lambda: with_(type="teleport"), "unknown_type"),
        (lambda: with_(ts=(T0 + n) // 1000), "bad_timestamp"),
        (lambda: with_(ts=32_503_680_000_000), "bad_timestamp"),
        (lambda: with_(ts=T0 + 0.5), "bad_timestamp"),
        (lambda: with_(type="search", item_id=..., text=MARKER * 200), "too_large"),
        (lambda: with_(context={"blob": MARKER * 5000}), "too_large"),
        (lambda: with_(type="rate", value=11), "invalid_field"),
        (lambda: with_(weight=-1), "invalid_field"),
        (lambda: with_(type="search", item_id=..., text="   "), "invalid_field"),
        (lambda: with_(item_id="x" * 300), "invalid_field"),
        (lambda: b"", "empty"),
        (lambda: None, "empty"),
        (lambda: with_(), "key_mismatch"),  # valid record, keyed by another id
    ]
    make, reason = rng.choice(kinds)
    return make(), reason


def bad_item(n: int) -> tuple[bytes, bytes, str]:
    kinds = [
        (b"not json " + MARKER.encode(), "not_json"),
        (orjson.dumps({"item_id": f"bad-item-{n}", "title": "  "}), "invalid_field"),
        (orjson.dumps({"item_id": f"bad-item-{n}", "title": MARKER * 300}), "too_large"),
        (orjson.dumps({"item_id": "someone-else", "title": "A title"}), "key_mismatch"),
    ]
    value, reason = kinds[n % len(kinds)]
    return f"bad-item-{n}".encode(), value, reason


def valid_events(rng: random.Random) -> list[dict]:
    items = [i["item_id"] for i in catalog_items()]
    out = []
    for n in range(VALID):
        user = f"u{rng.randrange(30)}"
        kind = rng.choices(["view", "click", "purchase", "rate", "dislike"], [40, 30, 10, 15, 5])[0]
        extra = {"value": float(rng.randrange(1, 6))} if kind == "rate" else {}
        out.append(event(user, rng.choice(items), T0 + n * 1000, kind, **extra))
    return out


async def test_every_malformed_record_is_dead_lettered_and_lists_equal_valid_only(settings, worker):
    rng = random.Random(5)
    worker.start()
    items = catalog_items()
    await publish_catalog(settings, items)
    bad_items = [bad_item(n) for n in range(40)]
    await publish(settings, settings.topic(topics.ITEMS), [(k, v) for k, v, _ in bad_items])
    await wait_for_catalog(settings, len(items))

    valid = valid_events(rng)
    expected_reason: dict[bytes, str] = {k: r for k, _, r in bad_items}
    records: list[tuple[bytes, bytes | None]] = [(e["user_id"].encode(), orjson.dumps(e)) for e in valid]
    for n in range(BAD):
        value, reason = bad_event(rng, n)
        key = f"bad-{n}".encode()  # every malformed record has its own key
        expected_reason[key] = reason
        records.insert(rng.randrange(len(records) + 1), (key, value))
    await publish(settings, settings.topic(topics.EVENTS), records)

    async def done() -> bool:
        lag = await group_lag(settings, settings.app_id, settings.topic(topics.EVENTS))
        return lag.end >= len(records) and lag.lag == 0 and len(await dead_letters(settings)) >= BAD + len(bad_items)

    await wait_until(done, timeout_s=300, interval_s=1.0)

    letters = await dead_letters(settings)
    assert len(letters) == BAD + len(bad_items)
    sent = {key: value for key, value in records}
    sent.update({k: v for k, v, _ in bad_items})
    by_key = {}
    for letter in letters:
        key = base64.b64decode(letter.key_b64)
        assert key not in by_key, f"{key!r} dead-lettered twice"
        by_key[key] = letter
        assert letter.reason == expected_reason[key], (key, letter.reason, letter.detail)
        assert base64.b64decode(letter.value_b64) == (sent[key] or b"")
        assert letter.source.topic in (settings.topic(topics.EVENTS), settings.topic(topics.ITEMS)) and letter.source.offset >= 0
        assert MARKER not in letter.detail
    assert set(by_key) == set(expected_reason)
    assert Counter(letter.reason for letter in letters).keys() >= {"not_json", "invalid_utf8", "invalid_field", "unknown_type", "bad_timestamp", "too_large", "key_mismatch", "empty"}

    # the lists equal those made from the valid records alone
    valid_by_partition: dict[int, list] = defaultdict(list)
    async for record in read_records_to_end(settings, settings.topic(topics.EVENTS)):
        try:
            decoded = decode_event(record.value, key=record.key or b"")
        except InvalidRecord:
            continue
        valid_by_partition[record.partition].append(decoded)
    assert sum(1 for v in valid_by_partition.values() for e in v if e.type is not EventType.TICK) == VALID
    # as if the malformed ones never were
    run = await offline_run(settings, {p: list(enumerate(events)) for p, events in valid_by_partition.items()})
    offline = run.lists
    lists = await latest_lists(settings)
    assert {u: [(i.item_id, i.score) for i in r.items] for u, r in lists.items()} == offline

    assert MARKER not in worker.log_text()
