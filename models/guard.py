"""The bot guard: abnormal users must not move what everyone else sees.

Two rules, both in event time and on integer counters, so they are a pure
function of the events (the same on every worker, batch split and replay):

- **rate**: a user's events are counted per fixed event-time window of
  ``rate_window_ms`` (``ts // rate_window_ms``). Past ``max_events`` in one
  window an event is *seen only*: it enters the history for seen-filtering
  with signal 0, so it moves none of the user's interests and adds nothing
  to the item graph or trending (the graph replays history entries with a
  positive signal only, so a replay after a crash agrees; an item already
  in the history is not added again), and the user is
  flagged: ``bot_suspected`` on their list for ``flag_windows`` windows
  after the last excess event. A late event (of an earlier window) counts
  in the user's current window.
- **repeats**: one user's engagement with one item counts once per fixed
  window of ``repeat_window_ms`` for the graph and trending; it still moves
  the user's own interests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from models.interest import HistoryEntry, InterestParams, UserState, append_history
from schemas.records import Event

MINUTE_MS = 60_000


@dataclass(frozen=True)
class GuardParams:
    """Limits of the guard (README, "Abnormal behaviour")."""

    max_events: int = 60  # per rate window; 0 = no rate limit
    rate_window_ms: int = MINUTE_MS
    flag_windows: int = 60  # a flag lasts this many rate windows after the last excess
    repeat_window_ms: int = 60 * MINUTE_MS  # 0 = every engagement counts for the graph


DEFAULT_GUARD = GuardParams()
OFF = GuardParams(max_events=0, repeat_window_ms=0)


def admit(state: UserState, ts: int, params: GuardParams = DEFAULT_GUARD) -> bool:
    """Count one new event of the user at event time ``ts``; ``False`` when it
    is past the rate (seen only). Updates the state's guard counters."""
    if params.max_events <= 0:
        return True
    window = ts // params.rate_window_ms
    if window > state.guard_window:
        state.guard_window, state.guard_count = window, 0
    state.guard_count += 1
    if state.guard_count <= params.max_events:
        return True
    state.flagged_window = state.guard_window
    state.discounted += 1
    return False


def suspected(state: UserState, params: GuardParams = DEFAULT_GUARD) -> bool:
    """Whether the user went past the rate within the last ``flag_windows`` windows."""
    return state.flagged_window >= 0 and state.guard_window - state.flagged_window < params.flag_windows


def counts_for_graph(previous: Iterable[HistoryEntry], item_id: str, ts: int, params: GuardParams = DEFAULT_GUARD) -> bool:
    """Whether an engagement with ``item_id`` at ``ts`` after the user's
    ``previous`` history entries feeds the graph and trending: not when one
    of them engaged the same item (positive signal) in the same window."""
    if params.repeat_window_ms <= 0:
        return True
    window = ts // params.repeat_window_ms
    return not any(h.item_id == item_id and h.signal > 0 and h.ts // params.repeat_window_ms == window for h in previous)


def record_seen_only(state: UserState, event: Event, offset: int, interest: InterestParams) -> None:
    """Fold an event past the rate: history (seen-filtering) with signal 0,
    nothing else (no taste, interest, query or graph change). An item the
    history holds already is not added again: a bot hammering one item
    would otherwise push its counted engagement out of the history, and the
    repeat rule could no longer see it."""
    if event.item_id is not None and all(h.item_id != event.item_id for h in state.history):
        append_history(state, HistoryEntry(event.item_id, event.ts, 0.0, folded=True, offset=offset), interest)
    state.event_count += 1
    if event.ts >= state.last_event_ts:
        state.last_event_ts = event.ts
        state.last_event_id = event.event_id
