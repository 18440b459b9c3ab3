"""``recstream rebuild`` settings, without a broker."""

from __future__ import annotations

import pytest

from streams.ops.rebuild import CatchUpGate, RebuildError, old_app_resources, rebuild_settings
from streams.settings import SettingsError, load_settings
from streams.kafka.topics import topic_specs


def test_rebuild_needs_a_new_app_id():
    with pytest.raises(RebuildError, match="new app id"):
        rebuild_settings(load_settings(app_id="recstream"), "recstream", None)


def test_rebuild_holds_lists_and_creates_the_output_topic():
    settings = rebuild_settings(load_settings(app_id="recstream-v2", topic_prefix="s."), "recstream", "s.held")
    assert settings.app_id == "recstream-v2" and settings.hold_lists_until_caught_up and settings.held_lists_topic == "s.held"
    held = [spec for spec in topic_specs(settings) if spec.name == "s.held"]
    assert held and held[0].partitions == settings.partitions and held[0].config == {"cleanup.policy": "compact"}
    assert "s.held" not in {spec.name for spec in topic_specs(load_settings())}


def test_held_lists_topic_is_checked():
    with pytest.raises(SettingsError, match="hold_lists_until_caught_up is off"):
        load_settings(held_lists_topic="held")
    with pytest.raises(SettingsError, match="must not be the recommendations topic"):
        load_settings(hold_lists_until_caught_up=True, held_lists_topic="recommendations")


def test_old_app_resources_name_its_changelogs():
    names = old_app_resources(load_settings(), "recstream")
    assert "recstream-user-state-changelog" in names and "recstream-item-graph-changelog" in names
    assert "recstream-item-vectors-changelog" in names and "recstream-__assignor-__leader" in names
    assert "recstream-graph-deltas" in names  # the ops are the app's state: a rebuild writes its own


def test_gate_sends_lists_live_unless_holding():
    live, held = object(), object()
    assert CatchUpGate(load_settings(), live, held).topic() is live
    gate = CatchUpGate(load_settings(hold_lists_until_caught_up=True), live, held)
    assert gate.topic() is held
    assert CatchUpGate(load_settings(hold_lists_until_caught_up=True), live).topic() is None
