"""Synthetic clickstream for benchmarks: a catalog with plausible text and a
stream of events with Zipf popularity, a realistic event-type mix and users
whose interests drift.

Deterministic by seed (one ``random.Random``; no global state), so two runs
publish byte-identical topics. Item text is composed from per-category
vocabularies, so the encoder sees sentences of realistic length and items of
one category land near each other in its space, as real catalogs do.
"""

from __future__ import annotations

import bisect
import itertools
import random
from dataclasses import dataclass, field
from typing import Any, Iterator

import orjson

from schemas.records import Event, EventType, Item

BASE_TS_MS = 1_700_000_000_000

# category -> (nouns, adjectives, uses): enough words that titles rarely repeat
VOCABULARY: dict[str, tuple[list[str], list[str], list[str]]] = {
    "running": (["running shoes", "trail runners", "race singlet", "hydration vest", "running socks", "split shorts"],
                ["lightweight", "cushioned", "breathable", "grippy", "reflective", "carbon-plated"],
                ["marathon training", "muddy trails", "tempo runs", "recovery jogs", "track intervals"]),
    "cooking": (["chef's knife", "cast iron skillet", "dutch oven", "spice grinder", "cutting board", "saucepan"],
                ["forged", "pre-seasoned", "enamelled", "non-stick", "stainless", "walnut"],
                ["weeknight dinners", "slow braises", "searing steaks", "baking bread", "meal prep"]),
    "camping": (["two-person tent", "sleeping bag", "camp stove", "headlamp", "trekking poles", "dry bag"],
                ["ultralight", "waterproof", "four-season", "packable", "rugged", "insulated"],
                ["alpine hikes", "car camping", "backpacking trips", "rainy weekends", "desert nights"]),
    "gaming": (["mechanical keyboard", "gaming mouse", "headset", "controller", "capture card", "monitor arm"],
               ["wireless", "low-latency", "RGB", "tournament-grade", "ergonomic", "hot-swappable"],
               ["competitive shooters", "long RPG sessions", "streaming", "couch co-op", "speedruns"]),
    "books": (["mystery novel", "space opera", "cookbook", "biography", "poetry collection", "history of Rome"],
              ["award-winning", "illustrated", "gripping", "annotated", "bestselling", "hardcover"],
              ["rainy afternoons", "book clubs", "long flights", "bedtime reading", "study groups"]),
    "audio": (["noise-cancelling headphones", "bookshelf speakers", "turntable", "DAC", "earbuds", "soundbar"],
              ["hi-fi", "wireless", "studio", "compact", "warm-sounding", "audiophile"],
              ["vinyl listening", "home cinema", "commutes", "podcasts", "mixing tracks"]),
    "garden": (["pruning shears", "raised bed", "watering can", "compost bin", "seed kit", "garden hose"],
               ["heavy-duty", "organic", "self-watering", "galvanised", "expandable", "heirloom"],
               ["tomato season", "balcony gardens", "herb beds", "lawn care", "spring planting"]),
    "fitness": (["adjustable dumbbells", "yoga mat", "kettlebell", "resistance bands", "pull-up bar", "foam roller"],
                ["non-slip", "space-saving", "competition", "eco-friendly", "dense", "home-gym"],
                ["strength training", "morning yoga", "mobility work", "HIIT circuits", "rehab"]),
    "coffee": (["espresso machine", "burr grinder", "pour-over kettle", "french press", "single-origin beans", "milk frother"],
               ["dual-boiler", "gooseneck", "light-roast", "manual", "barista-grade", "insulated"],
               ["morning rituals", "latte art", "cold brew", "office breaks", "slow weekends"]),
    "photography": (["mirrorless camera", "prime lens", "tripod", "camera bag", "ND filter", "flash"],
                    ["full-frame", "weather-sealed", "fast", "carbon", "compact", "vintage"],
                    ["street photography", "portraits", "landscapes", "night skies", "travel vlogs"]),
}
CATEGORIES = list(VOCABULARY)
BRANDS = ["Northpeak", "Kestrel", "Ardent", "Lumen", "Fable", "Oakline", "Vireo", "Halcyon", "Brio", "Tundra"]
QUERY_TEMPLATES = ["{adj} {noun}", "best {noun} for {use}", "{noun} for {use}", "cheap {adj} {noun}"]

# Event-type mix of a typical retail clickstream: mostly views, a tail of
# stronger signals, a few searches, ratings and explicit dislikes.
EVENT_MIX: dict[EventType, float] = {
    EventType.VIEW: 0.55,
    EventType.CLICK: 0.20,
    EventType.ADD_TO_CART: 0.06,
    EventType.PURCHASE: 0.03,
    EventType.SEARCH: 0.08,
    EventType.RATE: 0.05,
    EventType.DISLIKE: 0.03,
}


@dataclass(frozen=True)
class WorkloadSpec:
    """Sizes of a synthetic workload."""

    users: int = 2_000
    items: int = 1_000
    events: int = 20_000
    seed: int = 42
    zipf_s: float = 1.1  # popularity exponent: item of rank r drawn ~ 1 / r^s
    interests_per_user: int = 2  # categories a user starts with
    drift_every: int = 25  # a user swaps one interest every ~N of their events
    in_interest: float = 0.85  # share of a user's item events inside their interests
    mean_gap_ms: int = 90_000  # mean gap between one user's events (event time)


@dataclass
class Workload:
    """A catalog and a time-ordered event stream."""

    spec: WorkloadSpec
    items: list[Item]
    events: list[Event]
    item_category: dict[str, str] = field(default_factory=dict)
    # the event time the paced live runs have reached (bench.pipeline_bench.paced_run)
    live_ts: int = -1

    def item_records(self) -> list[tuple[bytes, bytes]]:
        """``(key, value)`` pairs for the ``items`` topic."""
        return [(item.item_id.encode(), encode(item)) for item in self.items]

    def event_records(self) -> list[tuple[bytes, bytes]]:
        """``(key, value)`` pairs for the ``events`` topic (key = user id)."""
        return [(event.user_id.encode(), encode(event)) for event in self.events]

    @property
    def users(self) -> set[str]:
        return {event.user_id for event in self.events}


def encode(record: Item | Event) -> bytes:
    """JSON without the ``None`` fields, as a producer in another language
    would write it (the schema makes them optional)."""
    import msgspec

    data = {k: v for k, v in msgspec.structs.asdict(record).items() if v is not None}
    if isinstance(record, Event):
        data["type"] = record.type.value
    return orjson.dumps(data)


def make_items(spec: WorkloadSpec, rng: random.Random) -> tuple[list[Item], dict[str, str]]:
    items: list[Item] = []
    category_of: dict[str, str] = {}
    for i in range(spec.items):
        category = CATEGORIES[i % len(CATEGORIES)]
        nouns, adjectives, uses = VOCABULARY[category]
        noun, adj, use = rng.choice(nouns), rng.choice(adjectives), rng.choice(uses)
        brand = rng.choice(BRANDS)
        extra = rng.sample([c for c in CATEGORIES if c != category], 1) if rng.random() < 0.15 else []
        title = f"{brand} {adj} {noun}"
        description = (
            f"A {adj} {noun} from {brand}, made for {use}. "
            f"{rng.choice(['Loved by reviewers', 'New this season', 'A long-time favourite', 'Limited edition'])}; "
            f"pairs well with a {rng.choice(VOCABULARY[category][0])}."
        )
        item_id = f"sku-{i}"
        items.append(Item(item_id=item_id, title=title, description=description, categories=[category, *extra], ts=BASE_TS_MS))
        category_of[item_id] = category
    return items, category_of


class _Zipf:
    """Zipf draws over a list (rank 0 most popular) by inverse CDF."""

    def __init__(self, values: list[str], s: float) -> None:
        self.values = values
        weights = [1.0 / (rank + 1) ** s for rank in range(len(values))]
        self.cdf = list(itertools.accumulate(weights))

    def draw(self, rng: random.Random) -> str:
        return self.values[min(bisect.bisect_left(self.cdf, rng.random() * self.cdf[-1]), len(self.values) - 1)]


def make_events(spec: WorkloadSpec, items: list[Item], category_of: dict[str, str], rng: random.Random, first_ts: int = BASE_TS_MS) -> list[Event]:
    # popularity rank is a shuffle of the catalog, so popular items spread over categories
    ranked = [item.item_id for item in items]
    rng.shuffle(ranked)
    overall = _Zipf(ranked, spec.zipf_s)
    by_category = {c: _Zipf([i for i in ranked if category_of[i] == c], spec.zipf_s) for c in CATEGORIES if any(category_of[i] == c for i in ranked)}
    categories = list(by_category)
    users = [f"u{n}" for n in range(spec.users)]
    # heavy users exist too: user activity is Zipf-like as well
    activity = _Zipf(users, 0.8)
    interests = {u: rng.sample(categories, min(spec.interests_per_user, len(categories))) for u in users}
    clock = {u: first_ts + rng.randrange(0, 3_600_000) for u in users}
    counts: dict[str, int] = {}
    types, weights = list(EVENT_MIX), list(EVENT_MIX.values())
    events: list[Event] = []
    for n in range(spec.events):
        user = activity.draw(rng)
        counts[user] = counts.get(user, 0) + 1
        if counts[user] % spec.drift_every == 0:
            # interest drift: one interest is replaced by a category the user lacked
            fresh = [c for c in categories if c not in interests[user]]
            if fresh:
                interests[user][rng.randrange(len(interests[user]))] = rng.choice(fresh)
        clock[user] += 1 + int(rng.expovariate(1.0 / spec.mean_gap_ms))
        kind = rng.choices(types, weights)[0]
        category = rng.choice(interests[user]) if rng.random() < spec.in_interest else rng.choice(categories)
        fields: dict[str, Any] = {}
        if kind is EventType.SEARCH:
            nouns, adjectives, uses = VOCABULARY[category]
            fields["text"] = rng.choice(QUERY_TEMPLATES).format(adj=rng.choice(adjectives), noun=rng.choice(nouns), use=rng.choice(uses))
        else:
            # dislikes hit items outside the user's interests, mostly
            pool = overall if kind is EventType.DISLIKE else by_category[category]
            fields["item_id"] = pool.draw(rng)
            if kind is EventType.RATE:
                fields["value"] = float(rng.choice([3, 4, 4, 5, 5]) if category in interests[user] else rng.choice([1, 2, 3]))
        events.append(Event(event_id=f"bench-{spec.seed}-{n}", user_id=user, type=kind, ts=clock[user], **fields))
    return events


def generate(spec: WorkloadSpec) -> Workload:
    """The catalog and events of ``spec`` (same seed, same output)."""
    rng = random.Random(spec.seed)
    items, category_of = make_items(spec, rng)
    events = make_events(spec, items, category_of, rng)
    return Workload(spec=spec, items=items, events=events, item_category=category_of)


def live_events(workload: Workload, prefix: str, seed: int = 0) -> Iterator[Event]:
    """An endless stream of more events for the same users and catalog, with
    event times after the workload's (freshness runs)."""
    rng = random.Random(workload.spec.seed * 1000 + seed)
    last_ts = max((e.ts for e in workload.events), default=BASE_TS_MS)
    chunk = WorkloadSpec(**{**workload.spec.__dict__, "events": 5_000, "seed": workload.spec.seed + seed + 1})
    n = 0
    while True:
        for event in make_events(chunk, workload.items, workload.item_category, rng, first_ts=last_ts + 1):
            yield Event(**{**{f: getattr(event, f) for f in Event.__struct_fields__}, "event_id": f"{prefix}-{n}"})
            n += 1
            last_ts = max(last_ts, event.ts)
