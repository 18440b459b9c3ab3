"""Unit tests of ``schemas``: decoding, validation, dead letters and the
committed JSON Schema documents (no broker, no faust)."""

from __future__ import annotations

import base64
import json

import jsonschema
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import (
    DeadLetter,
    Event,
    EventType,
    InvalidRecord,
    Item,
    Limits,
    RejectReason,
    SourcePosition,
    TICK_KEY,
    dead_letter_for,
    decode_event,
    decode_item,
    encode_record,
    tick_event,
)
from schemas.decode import MAX_ID_CHARS, MAX_TS_MS, MIN_TS_MS, PRODUCER_TYPES
from schemas.json_schema import DOCUMENTS, SCHEMA_DIR, render

TS = 1_700_000_000_000  # 2023-11-14, epoch ms
TS_2200 = 7_258_118_400_000  # 2200-01-01, epoch ms


def raw(obj) -> bytes:
    return json.dumps(obj).encode()


def ev(**fields) -> dict:
    """A valid ``view`` event dict, with ``fields`` overriding/adding."""
    base = {"event_id": "e-1", "user_id": "u-1", "type": "view", "ts": TS, "item_id": "i-1"}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not _DROP}


def it(**fields) -> dict:
    base = {"item_id": "i-1", "title": "Sourdough bread", "description": "crusty", "categories": ["baking"], "ts": TS}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()  # marker: leave the field out of the dict


def rejected(fn, value, key=None, limits=None) -> InvalidRecord:
    kwargs = {"key": key}
    if limits is not None:
        kwargs["limits"] = limits
    with pytest.raises(InvalidRecord) as info:
        fn(value, **kwargs)
    return info.value


# --------------------------------------------------------------------------
# decode_event: accepted
# --------------------------------------------------------------------------


@pytest.mark.parametrize("etype", ["view", "click", "add_to_cart", "purchase", "dislike"])
def test_decode_event_accepts_item_events(etype):
    event = decode_event(raw(ev(type=etype)), key=b"u-1")
    assert event.type is EventType(etype)
    assert event.item_id == "i-1"
    assert event.user_id == "u-1"
    assert event.ts == TS
    assert event.text is None and event.value is None


def test_decode_event_accepts_search_with_text_and_no_item_id():
    event = decode_event(raw(ev(type="search", item_id=_DROP, text="red planet telescopes")))
    assert event.type is EventType.SEARCH
    assert event.item_id is None
    assert event.text == "red planet telescopes"


@pytest.mark.parametrize("value", [0, 0.0, 3.5, 5])
def test_decode_event_accepts_rate_with_value(value):
    event = decode_event(raw(ev(type="rate", value=value)))
    assert event.type is EventType.RATE
    assert event.value == pytest.approx(float(value))


def test_decode_event_keeps_optional_fields():
    event = decode_event(raw(ev(type="purchase", weight=2.5, context={"page": "home", "pos": 3})))
    assert event.weight == 2.5
    assert event.context == {"page": "home", "pos": 3}


def test_decode_event_ignores_unknown_fields():
    event = decode_event(raw(ev(extra_field={"a": 1})))
    assert event.event_id == "e-1"


def test_decode_event_with_matching_key_and_without_key():
    assert decode_event(raw(ev()), key=b"u-1").user_id == "u-1"
    assert decode_event(raw(ev()), key=None).user_id == "u-1"
    # non-ASCII user ids are compared as UTF-8 bytes
    assert decode_event(raw(ev(user_id="zoë")), key="zoë".encode()).user_id == "zoë"


def test_decode_event_ts_bounds_are_inclusive():
    assert decode_event(raw(ev(ts=MIN_TS_MS))).ts == MIN_TS_MS
    assert decode_event(raw(ev(ts=MAX_TS_MS))).ts == MAX_TS_MS
    assert rejected(decode_event, raw(ev(ts=MIN_TS_MS - 1))).reason is RejectReason.BAD_TIMESTAMP
    assert rejected(decode_event, raw(ev(ts=MAX_TS_MS + 1))).reason is RejectReason.BAD_TIMESTAMP


# --------------------------------------------------------------------------
# decode_event: rejected, each with its reason
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [b"not json at all", b'{"event_id": "e-1", ', b"{'single': 'quotes'}", b"{,}", b"trailing"],
)
def test_decode_event_rejects_non_json(value):
    if value == b"trailing":
        value = raw(ev()) + b" trailing garbage"
    assert rejected(decode_event, value).reason is RejectReason.NOT_JSON


def test_decode_event_rejects_invalid_utf8():
    value = raw(ev(user_id="u-PLACEHOLDER")).replace(b"PLACEHOLDER", b"\xff\xfe")
    error = rejected(decode_event, value)
    assert error.reason is RejectReason.INVALID_UTF8
    # detail is safe to log: it never echoes the payload
    assert "\xff" not in error.detail and "u-" not in error.detail


@pytest.mark.parametrize(
    "fields",
    [
        {"ts": "1700000000000"},
        {"ts": True},
        {"user_id": 42},
        {"event_id": None},
        {"type": 3},
        {"item_id": ["i-1"]},
        {"weight": "heavy"},
        {"context": ["not", "an", "object"]},
        {"event_id": _DROP},
        {"ts": _DROP},
        {"user_id": ""},
        {"item_id": ""},
        {"event_id": "x" * (MAX_ID_CHARS + 1)},
        {"weight": 101},
        {"weight": -0.5},
    ],
    ids=lambda f: ",".join(f"{k}={'<missing>' if v is _DROP else v!r}"[:40] for k, v in f.items()),
)
def test_decode_event_rejects_wrong_fields(fields):
    assert rejected(decode_event, raw(ev(**fields))).reason is RejectReason.INVALID_FIELD


@pytest.mark.parametrize("value", [b"[]", b"42", b"null", b'"a string"'])
def test_decode_event_rejects_non_object_json(value):
    assert rejected(decode_event, value).reason is RejectReason.INVALID_FIELD


def test_decode_event_rejects_unknown_type():
    error = rejected(decode_event, raw(ev(type="teleport")))
    assert error.reason is RejectReason.UNKNOWN_TYPE
    for t in PRODUCER_TYPES:
        assert t.value in error.detail
    assert "tick" not in error.detail  # not a type producers may send


@pytest.mark.parametrize("fields", [{}, {"item_id": _DROP}], ids=["with-item", "without-item"])
def test_a_producer_sent_tick_is_an_unknown_type_that_says_tick_is_internal(fields):
    error = rejected(decode_event, raw(ev(type="tick", **fields)), key=b"u-1")
    assert error.reason is RejectReason.UNKNOWN_TYPE
    assert "internal" in error.detail and "`tick`" in error.detail and "$.type" in error.detail
    for t in PRODUCER_TYPES:
        assert t.value in error.detail


def test_the_tick_key_is_reserved_for_the_workers_ticks():
    error = rejected(decode_event, raw(ev(user_id=TICK_KEY)), key=TICK_KEY.encode())
    assert error.reason is RejectReason.INVALID_FIELD and "reserved" in error.detail and "$.user_id" in error.detail
    # the workers' own record still decodes: they are the only ones to send it
    assert decode_event(encode_record(tick_event(TS)), key=TICK_KEY.encode()).type is EventType.TICK


def test_the_public_event_schema_rejects_type_tick():
    validator = jsonschema.Draft202012Validator(json.loads(render("event.schema.json")))
    assert not validator.is_valid(ev(type="tick"))
    # not even the workers' own tick record: it is not for producers to send
    assert not validator.is_valid(json.loads(encode_record(tick_event(TS))))
    assert sorted(validator.schema["$defs"]["EventType"]["enum"]) == sorted(t.value for t in PRODUCER_TYPES)
    for t in PRODUCER_TYPES:
        fields = {"text": "mars rover"} if t is EventType.SEARCH else {"value": 4} if t is EventType.RATE else {}
        assert validator.is_valid(ev(type=t.value, **fields)), t


@pytest.mark.parametrize("etype", ["view", "click", "add_to_cart", "purchase", "rate", "dislike"])
def test_decode_event_rejects_missing_item_id_for_non_search(etype):
    fields = {"type": etype, "item_id": _DROP}
    if etype == "rate":
        fields["value"] = 4
    error = rejected(decode_event, raw(ev(**fields)))
    assert error.reason is RejectReason.INVALID_FIELD
    assert "item_id" in error.detail


@pytest.mark.parametrize("text", [_DROP, None, "", "   \t\n"])
def test_decode_event_rejects_search_without_text(text):
    error = rejected(decode_event, raw(ev(type="search", item_id=_DROP, text=text)))
    assert error.reason is RejectReason.INVALID_FIELD
    assert "text" in error.detail


@pytest.mark.parametrize("value", [_DROP, None, -0.1, 5.01, 10, 1e300])
def test_decode_event_rejects_rate_without_valid_value(value):
    error = rejected(decode_event, raw(ev(type="rate", value=value)))
    assert error.reason is RejectReason.INVALID_FIELD
    assert "value" in error.detail


def test_decode_event_rejects_ts_in_seconds_with_hint():
    error = rejected(decode_event, raw(ev(ts=TS // 1000)))
    assert error.reason is RejectReason.BAD_TIMESTAMP
    assert "seconds" in error.detail.replace("milliseconds", "")


@pytest.mark.parametrize("ts", [TS_2200, 0, -TS])
def test_decode_event_rejects_absurd_ts_without_seconds_hint(ts):
    error = rejected(decode_event, raw(ev(ts=ts)))
    assert error.reason is RejectReason.BAD_TIMESTAMP
    assert "seconds" not in error.detail.replace("milliseconds", "")


def test_decode_event_rejects_oversized_record():
    value = raw(ev(context={"pad": "x" * 200}))
    assert len(value) > 100
    error = rejected(decode_event, value, limits=Limits(max_record_bytes=100))
    assert error.reason is RejectReason.TOO_LARGE
    assert str(len(value)) in error.detail
    # the same record passes under the default limit
    assert decode_event(value).event_id == "e-1"


def test_decode_event_record_size_limit_is_inclusive():
    value = raw(ev())
    assert decode_event(value, limits=Limits(max_record_bytes=len(value))).event_id == "e-1"
    assert rejected(decode_event, value, limits=Limits(max_record_bytes=len(value) - 1)).reason is RejectReason.TOO_LARGE


def test_decode_event_rejects_oversized_text():
    limits = Limits(max_text_chars=10)
    ok = decode_event(raw(ev(type="search", item_id=_DROP, text="a" * 10)), limits=limits)
    assert ok.text == "a" * 10
    error = rejected(decode_event, raw(ev(type="search", item_id=_DROP, text="a" * 11)), limits=limits)
    assert error.reason is RejectReason.TOO_LARGE
    assert "text" in error.detail


def test_decode_event_rejects_key_mismatch():
    error = rejected(decode_event, raw(ev(user_id="u-1")), key=b"u-2")
    assert error.reason is RejectReason.KEY_MISMATCH
    # an absent key is checked as b"" by the agent: it must not match
    assert rejected(decode_event, raw(ev()), key=b"").reason is RejectReason.KEY_MISMATCH


@pytest.mark.parametrize("value", [None, b""])
def test_decode_event_rejects_empty(value):
    assert rejected(decode_event, value).reason is RejectReason.EMPTY
    assert rejected(decode_event, value, key=b"u-1").reason is RejectReason.EMPTY


def test_invalid_record_message_carries_reason_code():
    error = rejected(decode_event, raw(ev(type="teleport")))
    assert str(error).startswith("unknown_type: ")


# --------------------------------------------------------------------------
# decode_item
# --------------------------------------------------------------------------


def test_decode_item_accepts_valid_item():
    item = decode_item(raw(it()), key=b"i-1")
    assert item == Item(item_id="i-1", title="Sourdough bread", description="crusty", categories=["baking"], ts=TS)
    assert item.deleted is False


def test_decode_item_defaults():
    item = decode_item(raw({"item_id": "i-2", "title": "Just a title"}))
    assert item.description == "" and item.categories == [] and item.ts is None and not item.deleted


def test_decode_item_tombstone_is_a_deleted_item():
    item = decode_item(None, key=b"i-9")
    assert item.item_id == "i-9"
    assert item.deleted is True


def test_decode_item_tombstone_with_bad_key_is_rejected():
    assert rejected(decode_item, None, key=b"\xff\xfe").reason is RejectReason.INVALID_UTF8
    assert rejected(decode_item, None, key=b"x" * (MAX_ID_CHARS + 1)).reason is RejectReason.INVALID_FIELD
    # no key and no value: nothing to delete
    assert rejected(decode_item, None, key=None).reason is RejectReason.EMPTY
    assert rejected(decode_item, None, key=b"").reason is RejectReason.EMPTY


def test_decode_item_deleted_with_empty_title_is_accepted():
    item = decode_item(raw({"item_id": "i-3", "title": "", "deleted": True}), key=b"i-3")
    assert item.deleted is True and item.item_id == "i-3"


def test_decode_item_deleted_without_title_is_accepted():
    item = decode_item(raw({"item_id": "i-3", "deleted": True}), key=b"i-3")
    assert item.deleted is True and item.item_id == "i-3"


@pytest.mark.parametrize("title", [_DROP, "", "   ", None])
def test_decode_item_rejects_missing_title(title):
    error = rejected(decode_item, raw(it(title=title)))
    assert error.reason is RejectReason.INVALID_FIELD
    assert "title" in error.detail


@pytest.mark.parametrize(
    "fields, reason",
    [
        ({"item_id": ""}, RejectReason.INVALID_FIELD),
        ({"item_id": _DROP}, RejectReason.INVALID_FIELD),
        ({"categories": "baking"}, RejectReason.INVALID_FIELD),
        ({"deleted": "yes"}, RejectReason.INVALID_FIELD),
        ({"ts": TS // 1000}, RejectReason.BAD_TIMESTAMP),
        ({"ts": TS_2200}, RejectReason.BAD_TIMESTAMP),
    ],
)
def test_decode_item_rejects_bad_fields(fields, reason):
    assert rejected(decode_item, raw(it(**fields))).reason is reason


def test_decode_item_rejects_key_mismatch():
    assert rejected(decode_item, raw(it(item_id="i-1")), key=b"i-2").reason is RejectReason.KEY_MISMATCH


def test_decode_item_rejects_oversized_text():
    limits = Limits(max_text_chars=20)
    # title + description + categories count together
    ok = decode_item(raw(it(title="t" * 10, description="d" * 5, categories=["c" * 5])), limits=limits)
    assert ok.title == "t" * 10
    error = rejected(decode_item, raw(it(title="t" * 10, description="d" * 5, categories=["c" * 6])), limits=limits)
    assert error.reason is RejectReason.TOO_LARGE


def test_decode_item_rejects_oversized_record_and_empty():
    assert rejected(decode_item, raw(it()), limits=Limits(max_record_bytes=10)).reason is RejectReason.TOO_LARGE
    assert rejected(decode_item, b"").reason is RejectReason.EMPTY
    assert rejected(decode_item, b"<xml/>").reason is RejectReason.NOT_JSON


# --------------------------------------------------------------------------
# dead letters and encoding
# --------------------------------------------------------------------------


def test_dead_letter_keeps_original_bytes_and_position():
    value = b'{"event_id": "e-1", \xff broken'
    key = b"\x00user\xfe"
    error = rejected(decode_event, value, key=key)
    source = SourcePosition(topic="events", partition=3, offset=12345, timestamp=TS)
    letter = dead_letter_for(error, value=value, key=key, source=source, failed_at=TS + 5)
    assert base64.b64decode(letter.value_b64, validate=True) == value
    assert base64.b64decode(letter.key_b64, validate=True) == key
    assert letter.reason == error.reason.value
    assert letter.detail == error.detail
    assert letter.source == source
    assert letter.failed_at == TS + 5

    # the wire form round-trips and keeps the bytes too
    wire = encode_record(letter)
    back = msgspec.json.decode(wire, type=DeadLetter)
    assert back == letter
    assert base64.b64decode(back.value_b64) == value
    assert back.source.partition == 3 and back.source.offset == 12345 and back.source.topic == "events"
    jsonschema.Draft202012Validator(json.loads(render("dead_letter.schema.json"))).validate(json.loads(wire))


def test_dead_letter_of_tombstone_and_missing_key():
    error = rejected(decode_event, None)
    letter = dead_letter_for(
        error, value=None, key=None, source=SourcePosition(topic="events", partition=0, offset=0), failed_at=TS
    )
    assert letter.reason == "empty"
    assert letter.value_b64 == ""
    assert letter.key_b64 is None
    assert letter.source.timestamp is None


@pytest.mark.parametrize(
    "record",
    [
        ev(),
        ev(type="search", item_id=_DROP, text="Sourdough, s'il vous plaît ✓"),
        ev(type="rate", value=4.5, weight=0.5, context={"k": [1, 2, {"x": None}]}),
        ev(type="dislike", user_id="zoë", item_id="i/ü"),
    ],
)
def test_encode_record_round_trips_events(record):
    event = decode_event(raw(record))
    wire = encode_record(event)
    again = decode_event(wire, key=event.user_id.encode())
    assert again == event
    assert encode_record(again) == wire


@pytest.mark.parametrize("record", [it(), it(categories=[], description="", ts=_DROP), it(title="", deleted=True)])
def test_encode_record_round_trips_items(record):
    item = decode_item(raw(record))
    again = decode_item(encode_record(item), key=item.item_id.encode())
    assert again == item


def test_encode_record_round_trips_tombstone_item():
    item = decode_item(None, key=b"i-7")
    assert decode_item(encode_record(item), key=b"i-7") == item


def test_encode_record_is_compact_json():
    wire = encode_record(decode_event(raw(ev())))
    assert b" " not in wire and b"\n" not in wire
    assert json.loads(wire)["type"] == "view"


# --------------------------------------------------------------------------
# property: decoders never raise anything but InvalidRecord
# --------------------------------------------------------------------------

_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
_json_values = st.recursive(
    _json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)),
    max_leaves=8,
)
_field_names = st.sampled_from(
    ["event_id", "user_id", "type", "ts", "item_id", "text", "value", "weight", "context",
     "title", "description", "categories", "deleted", "zzz"]
)
_field_values = st.one_of(
    _json_values,
    st.sampled_from([t.value for t in EventType]),
    st.integers(min_value=MIN_TS_MS - 10, max_value=MAX_TS_MS + 10),
    st.sampled_from([TS, TS // 1000, "u-1", "i-1", 0, 5, 5.5]),
)
_records = st.dictionaries(_field_names, _field_values, max_size=10).map(lambda d: json.dumps(d).encode())
_values = st.one_of(st.none(), st.binary(max_size=300), _records)
_keys = st.one_of(st.none(), st.binary(max_size=12), st.sampled_from([b"u-1", b"i-1", b""]))


def _only_invalid_record(fn, value, key, limits):
    try:
        result = fn(value, key=key, limits=limits)
    except InvalidRecord as error:
        assert isinstance(error.reason, RejectReason)
        assert isinstance(error.detail, str) and error.detail
    else:
        assert isinstance(result, (Event, Item))
        # anything accepted can be re-encoded and decodes to the same record
        if not (isinstance(result, Item) and result.deleted and value is None):
            assert fn(encode_record(result), limits=Limits(max_record_bytes=10**7)) == result


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_values, key=_keys, small=st.booleans())
def test_decoders_raise_only_invalid_record(value, key, small):
    limits = Limits(max_record_bytes=64, max_text_chars=8) if small else Limits()
    _only_invalid_record(decode_event, value, key, limits)
    _only_invalid_record(decode_item, value, key, limits)


# --------------------------------------------------------------------------
# JSON Schema documents
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_committed_json_schema_is_current(name):
    path = SCHEMA_DIR / name
    assert path.exists(), f"{path} is missing: run `python -m schemas.json_schema`"
    assert path.read_text() == render(name), f"{path} is stale: run `python -m schemas.json_schema`"


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_json_schema_documents_are_valid_2020_12(name):
    document = json.loads(render(name))
    jsonschema.Draft202012Validator.check_schema(document)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"


# (record, accepted by both) - verdicts code and JSON Schema must agree on.
EVENT_CORPUS = [
    (ev(), True),
    (ev(type="purchase", weight=0), True),
    (ev(type="add_to_cart", weight=100), True),
    (ev(type="search", item_id=_DROP, text="mars rover"), True),
    (ev(type="search", item_id=None, text="mars rover"), True),
    (ev(type="search", item_id="i-1", text="mars rover"), True),
    (ev(type="rate", value=0), True),
    (ev(type="rate", value=5), True),
    (ev(type="rate", value=2.5, context={"src": "app"}), True),
    (ev(type="view", value=99), True),  # value only constrained for rate
    (ev(extra="ignored"), True),
    (ev(type="forget", item_id=_DROP), True),
    (ev(type="forget", item_id=None), True),
    (ev(type="search", item_id=_DROP), False),
    (ev(type="search", item_id=_DROP, text=None), False),
    (ev(type="search", item_id=_DROP, text="  "), False),
    (ev(type="click", item_id=_DROP), False),
    (ev(type="dislike", item_id=None), False),
    (ev(item_id=""), False),
    (ev(type="rate", value=_DROP), False),
    (ev(type="rate", value=None), False),
    (ev(type="rate", value=5.5), False),
    (ev(type="rate", value=-1), False),
    (ev(type="teleport"), False),
    (ev(ts=TS // 1000), False),
    (ev(ts=TS_2200), False),
    (ev(ts="1700000000000"), False),
    (ev(weight=100.5), False),
    (ev(weight=-1), False),
    (ev(user_id=""), False),
    (ev(event_id="x" * (MAX_ID_CHARS + 1)), False),
    (ev(event_id=_DROP), False),
    (ev(context=[1]), False),
    (ev(type=None), False),
    (ev(type="tick"), False),  # the workers' own type, not a producer's
]

ITEM_CORPUS = [
    (it(), True),
    ({"item_id": "i-1", "title": "Only a title"}, True),
    (it(title="", deleted=True), True),
    (it(title="  ", deleted=True), True),
    (it(ts=None), True),
    (it(title=""), False),
    (it(title=" \t"), False),
    (it(title="", deleted=False), False),
    (it(title=_DROP), False),
    (it(item_id=""), False),
    (it(item_id="x" * (MAX_ID_CHARS + 1)), False),
    (it(ts=TS // 1000), False),
    (it(categories=[1, 2]), False),
    (it(deleted=1), False),
]


def _decoder_accepts(fn, record) -> bool:
    try:
        fn(raw(record))
    except InvalidRecord:
        return False
    return True


@pytest.mark.parametrize("record, accepted", EVENT_CORPUS, ids=[str(i) for i in range(len(EVENT_CORPUS))])
def test_event_json_schema_agrees_with_decoder(record, accepted):
    validator = jsonschema.Draft202012Validator(json.loads(render("event.schema.json")))
    assert validator.is_valid(record) is accepted, f"JSON Schema verdict for {record}"
    assert _decoder_accepts(decode_event, record) is accepted, f"decode_event verdict for {record}"


@pytest.mark.parametrize("record, accepted", ITEM_CORPUS, ids=[str(i) for i in range(len(ITEM_CORPUS))])
def test_item_json_schema_agrees_with_decoder(record, accepted):
    validator = jsonschema.Draft202012Validator(json.loads(render("item.schema.json")))
    assert validator.is_valid(record) is accepted, f"JSON Schema verdict for {record}"
    assert _decoder_accepts(decode_item, record) is accepted, f"decode_item verdict for {record}"


def test_integral_float_ts_gets_same_verdict_from_schema_and_decoder():
    record = ev(ts=float(TS))
    validator = jsonschema.Draft202012Validator(json.loads(render("event.schema.json")))
    assert validator.is_valid(record) is _decoder_accepts(decode_event, record)


def test_integral_float_ts_decodes_to_int_and_fractional_ts_is_rejected():
    decoded = decode_event(json.dumps(ev(ts=float(TS))).encode())
    assert decoded.ts == TS and isinstance(decoded.ts, int)
    with pytest.raises(InvalidRecord) as info:
        decode_event(json.dumps(ev(ts=TS + 0.5)).encode())
    assert info.value.reason is RejectReason.BAD_TIMESTAMP
