"""Foreground runs (the CLI's) go without flow-run heartbeats unless the user asked for them."""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.settings import get_current_settings

from flows.foreground import CSRF_ENV, HEARTBEAT_ENV, foreground


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


def test_a_server_without_csrf_protection_is_asked_once_and_its_clients_ask_no_more(monkeypatch):
    monkeypatch.delenv(CSRF_ENV, raising=False)
    with foreground():
        assert get_current_settings().client.csrf_support_enabled is False, "the test server has no CSRF protection"
        with get_client(sync_client=True) as client:
            assert client._client.enable_csrf_support is False


def test_an_explicit_csrf_setting_is_kept(monkeypatch):
    monkeypatch.setenv(CSRF_ENV, "true")
    with foreground():
        with get_client(sync_client=True) as client:
            assert client._client.enable_csrf_support is True
