"""`recstream explain USER`: read the user's state, the catalog and the graph
of the user's partition from the changelog topics (so it works next to a
running worker, on any machine that reaches the broker), and show why each
item of their list is there."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from models.catalog import CandidateSearch, ItemCatalog, apply_stored_item
from models.explain import interests, weight_timeline
from models.graph import ItemGraph
from models.interest import UserState, decode_state, fold_pending
from models.ranking import rank_user
from streams.kafka import topics
from streams.kafka.clients import read_records_to_end, read_to_end
from streams.settings import Settings
from streams.state.tables import partition_graph_records

async def _user_state(settings: Settings, user_id: str) -> tuple[UserState, int] | None:
    """The user's latest state and the partition it lives in."""
    key = user_id.encode()
    found: tuple[UserState, int] | None = None
    async for record in read_records_to_end(settings, topics.changelog_topic(settings, topics.USER_STATE_TABLE)):
        if record.key == key:
            found = None if record.value is None else (decode_state(record.value), record.partition)
    return found


async def _catalog(settings: Settings, candidates: CandidateSearch) -> ItemCatalog:
    catalog = ItemCatalog(candidates=candidates)
    async for key, value in read_to_end(settings, topics.changelog_topic(settings, topics.ITEM_VECTORS_TABLE)):
        apply_stored_item(catalog, key.decode(), value)
    return catalog


async def _graph(settings: Settings, partition: int) -> ItemGraph:
    records = [kv async for kv in read_to_end(settings, topics.changelog_topic(settings, topics.ITEM_GRAPH_TABLE))]
    graph = ItemGraph()
    graph.last_offset, rows = partition_graph_records(records, partition)
    for item_id, row in rows:
        graph.load_row(item_id, row)
    return graph


def _when(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


async def explain_user(settings: Settings, user_id: str, png: Path | None, candidates: CandidateSearch) -> int:
    """Print why each item of the user's list is there, ranked as the worker
    ranks (``candidates``: the worker's, :func:`streams.app.candidate_search`)."""
    found = await _user_state(settings, user_id)
    if found is None:
        print(f"no state for user {user_id!r} (app id {settings.app_id})")
        return 1
    state, partition = found
    catalog = await _catalog(settings, candidates)
    graph = await _graph(settings, partition)
    # items that reached the catalog after the user's events are folded in at
    # the user's next event; show the state as that event will see it
    late = fold_pending(state, catalog.vector)

    def title(item_id: str | None) -> str:
        meta = catalog.meta(item_id) if item_id else None
        return f"{meta.title} [{item_id}]" if meta else str(item_id)

    print(f"user {user_id}: {state.event_count} events, last at {_when(state.last_event_ts)} (partition {partition})")
    print("interests:" + ("" if state.clusters else " none yet"))
    if late:
        print(f"  ({late} items of the history arrived in the catalog after their events; folded in here)")
    for view in interests(state, catalog):
        print(f"  {view.weight:5.0%}  {view.label:<30} last active {_when(view.last_active)}  e.g. {title(view.representative)}")
    print("recent:", ", ".join(title(h.item_id) for h in state.history[-5:]))
    print(f"top-{settings.top_k}:")
    for rank, item in enumerate(rank_user(state, catalog, settings.top_k, graph=graph), 1):
        because = f" {title(item.because)}" if item.because else ""
        print(f"  {rank:>2}. {title(item.item_id):<50} {item.score:6.3f}  {item.reason}{because}")
    if png is not None:
        _plot(state, catalog, png, user_id)
        print(f"wrote {png}")
    return 0


def _plot(state: UserState, catalog: ItemCatalog, path: Path, user_id: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times, series, labels = weight_timeline(state, catalog)
    when = [dt.datetime.fromtimestamp(t / 1000, dt.timezone.utc) for t in times]
    fig, ax = plt.subplots(figsize=(8, 4))
    for index, values in enumerate(series):
        ax.plot(when, values, label=labels[index] if index < len(labels) else f"interest {index}")
    ax.set_title(f"user {user_id}: interest weights over event time")
    ax.set_ylabel("decayed weight")
    ax.legend(fontsize="small")
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
