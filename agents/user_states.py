"""The user-state table as the agents see it: states decoded, written and
deleted in the context of an event of the user's partition (Faust routes a
table write to the current event's partition, so the changelog record lands
where recovery reads it)."""

from __future__ import annotations

import logging

from faust.types import EventT

from agents.deps import AgentDeps
from models.errors import ModelError
from models.interest import UserState, decode_state, encode_state, state_header
from models.recommend import UserUpdate
from streams.state.tables import acting_for

log = logging.getLogger(__name__)


def load_state(deps: AgentDeps, user: str, event: EventT, partition: int) -> UserState:
    """The user's stored state (a fresh one when there is none)."""
    try:
        with acting_for(event):
            return decode_state(deps.user_state.get(user.encode()))
    except ModelError as exc:
        # A stored state that cannot be read (it should never happen) must
        # neither stop the partition nor poison the user forever: the user
        # starts afresh and their events are applied as usual.
        log.error("unreadable user state in partition %d (%s); starting it afresh", partition, type(exc).__name__)
        deps.counters.state_resets += 1
        return UserState()


def store_states(deps: AgentDeps, updates: list[UserUpdate], act_for: dict[str, EventT]) -> None:
    """Write changed states, delete forgotten ones, each acting for the
    user's event in ``act_for``."""
    for update in updates:
        key = update.user_id.encode()
        with acting_for(act_for[update.user_id]):
            if update.forgotten:
                if key in deps.user_state:
                    del deps.user_state[key]
            elif update.changed:
                deps.user_state[key] = encode_state(update.state)
                deps.counters.applied += 1


def last_event_ts(value: bytes) -> float:
    """Event time of a stored state's last event (infinite when unreadable:
    such a state is left for the events path to reset, never expired)."""
    try:
        return state_header(value).last_event_ts
    except ModelError:
        return float("inf")
