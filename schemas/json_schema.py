"""JSON Schema documents for producers and consumers in other languages.

The documents are generated from the msgspec structures (so field names and
types cannot drift) and then given the cross-field rules that the decoder
enforces in code. ``python -m schemas.json_schema`` rewrites the files in
``schemas/jsonschema/``; a test fails when the committed files are stale.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from schemas.decode import MAX_ID_CHARS, MAX_RATING, MAX_TS_MS, MAX_WEIGHT, MIN_TS_MS, PRODUCER_TYPES
from schemas.records import DeadLetter, Event, Item, Recommendation

SCHEMA_DIR = Path(__file__).parent / "jsonschema"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _inline(struct: type) -> dict[str, Any]:
    """One self-contained schema for ``struct`` (msgspec emits $defs+$ref)."""
    schema = msgspec.json.schema(struct)
    defs = schema.get("$defs", {})
    name = schema["$ref"].rsplit("/", 1)[-1]
    root = dict(defs.pop(name))
    document: dict[str, Any] = {"$schema": DIALECT, "$id": f"https://recstream.dev/schemas/{name}.json", **root}
    if defs:
        document["$defs"] = defs
    return document


def _id_rule() -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS}


def event_schema() -> dict[str, Any]:
    doc = _inline(Event)
    # what producers may send: the workers' own `tick` records are not theirs
    # to send (the decoder dead-letters them as unknown_type)
    doc["$defs"]["EventType"]["enum"] = sorted(t.value for t in PRODUCER_TYPES)
    props = doc["properties"]
    for field in ("event_id", "user_id"):
        props[field] = _id_rule()
    props["item_id"] = {"anyOf": [_id_rule(), {"type": "null"}], "default": None}
    props["ts"] = {"type": "integer", "minimum": MIN_TS_MS, "maximum": MAX_TS_MS, "description": "event time, epoch ms"}
    props["weight"] = {"anyOf": [{"type": "number", "minimum": 0, "maximum": MAX_WEIGHT}, {"type": "null"}], "default": None}
    doc["allOf"] = [
        {
            "if": {"properties": {"type": {"const": "search"}}},
            "then": {"required": ["text"], "properties": {"text": {"type": "string", "pattern": "\\S"}}},
            "else": {
                "if": {"properties": {"type": {"const": "forget"}}},
                "else": {"required": ["item_id"], "properties": {"item_id": _id_rule()}},
            },
        },
        {
            "if": {"properties": {"type": {"const": "rate"}}},
            "then": {"required": ["value"], "properties": {"value": {"type": "number", "minimum": 0, "maximum": MAX_RATING}}},
        },
    ]
    return doc


def item_schema() -> dict[str, Any]:
    doc = _inline(Item)
    doc["properties"]["item_id"] = _id_rule()
    doc["properties"]["ts"] = {"anyOf": [{"type": "integer", "minimum": MIN_TS_MS, "maximum": MAX_TS_MS}, {"type": "null"}], "default": None}
    doc["allOf"] = [
        {
            "if": {"not": {"properties": {"deleted": {"const": True}}, "required": ["deleted"]}},
            "then": {"required": ["title"], "properties": {"title": {"type": "string", "pattern": "\\S"}}},
        }
    ]
    return doc


DOCUMENTS = {
    "event.schema.json": event_schema,
    "item.schema.json": item_schema,
    "recommendation.schema.json": lambda: _inline(Recommendation),
    "dead_letter.schema.json": lambda: _inline(DeadLetter),
}


def render(name: str) -> str:
    """The exact text of one committed schema file."""
    return json.dumps(DOCUMENTS[name](), indent=2, sort_keys=True) + "\n"


def write_all(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in DOCUMENTS:
        path = directory / name
        path.write_text(render(name))
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write_all():
        print(written)
