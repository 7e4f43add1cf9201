"""Foreground runs (the CLI's) go without flow-run heartbeats unless the user asked for them."""

from __future__ import annotations

from prefect.settings import get_current_settings

from flows.foreground import HEARTBEAT_ENV, foreground


def test_foreground_turns_heartbeats_off_only_inside_the_block(monkeypatch):
    monkeypatch.delenv(HEARTBEAT_ENV, raising=False)
    before = get_current_settings().flows.heartbeat_frequency
    assert before is not None, "Prefect's default sends heartbeats"
    with foreground():
        assert get_current_settings().flows.heartbeat_frequency is None
    assert get_current_settings().flows.heartbeat_frequency == before


def test_an_explicit_heartbeat_setting_is_kept(monkeypatch):
    monkeypatch.setenv(HEARTBEAT_ENV, "60")
    before = get_current_settings().flows.heartbeat_frequency
    with foreground():
        assert get_current_settings().flows.heartbeat_frequency == before
