"""The thinking levels each Gemini model accepts, checked when the settings are read."""

from __future__ import annotations

import pytest

from reactivation.core.gemini_models import (
    THINKING_BUDGETS,
    THINKING_LEVELS,
    Thinking,
    accepted_levels,
    check_thinking_level,
    thinking_for,
)
from reactivation.core.settings import SettingsError, load_settings


def test_the_default_model_thinks_low_by_default() -> None:
    settings = load_settings(_env_file=None)
    assert (settings.gemini_model, settings.gemini_thinking_level) == ("gemini-3.8-flash", "low")
    assert thinking_for(settings.gemini_model, settings.gemini_thinking_level) == Thinking(level="LOW")


@pytest.mark.parametrize(
    ("model", "level", "expected"),
    [
        ("gemini-3.8-flash", "high", Thinking(level="HIGH")),
        ("models/gemini-3-flash-preview", "minimal", Thinking(level="MINIMAL")),
        ("gemini-2.5-flash", "minimal", Thinking(budget=0)),
        ("gemini-2.5-pro", "minimal", Thinking(budget=128)),
        ("gemini-9-ultra", "default", Thinking()),
    ],
)
def test_levels_become_what_each_model_takes(model: str, level: str, expected: Thinking) -> None:
    assert check_thinking_level(model, level) is None
    assert thinking_for(model, level) == expected


@pytest.mark.parametrize(
    ("model", "level", "words"),
    [
        # gemini-3.8-flash answers thinking_level=MINIMAL with a 400 on every request
        ("gemini-3.8-flash", "minimal", ["'minimal'", "gemini-3.8-flash", "low, medium, high"]),
        ("gemini-3-pro-preview", "medium", ["'medium'", "low, high"]),
        ("gemini-9-ultra", "low", ["gemini-9-ultra", "GEMINI_THINKING_LEVEL=default"]),
    ],
)
def test_a_level_the_model_refuses_stops_the_start_with_both_settings_named(
    monkeypatch: pytest.MonkeyPatch, model: str, level: str, words: list[str]
) -> None:
    monkeypatch.setenv("GEMINI_MODEL", model)
    monkeypatch.setenv("GEMINI_THINKING_LEVEL", level)
    with pytest.raises(SettingsError) as error:
        load_settings(_env_file=None)
    for word in [*words, "GEMINI_THINKING_LEVEL", "GEMINI_MODEL"]:
        assert word in str(error.value)


def test_an_unknown_level_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_THINKING_LEVEL", "turbo")
    with pytest.raises(SettingsError, match="GEMINI_THINKING_LEVEL"):
        load_settings(_env_file=None)


def test_the_output_cap_must_leave_room_for_every_item_of_a_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_BATCH_SIZE", "20")
    monkeypatch.setenv("GEMINI_MAX_OUTPUT_TOKENS", "1000")
    with pytest.raises(SettingsError) as error:
        load_settings(_env_file=None)
    assert "GEMINI_MAX_OUTPUT_TOKENS" in str(error.value) and "GEMINI_BATCH_SIZE" in str(error.value)
    monkeypatch.setenv("GEMINI_BATCH_SIZE", "5")
    assert load_settings(_env_file=None).gemini_max_output_tokens == 1000


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GEMINI_BATCH_SIZE", "0"),
        ("GEMINI_BATCH_SIZE", "51"),
        ("GEMINI_BATCH_WAIT_SECONDS", "-1"),
        ("GEMINI_DAILY_LIMIT", "0"),
        ("GEMINI_PAUSE_SECONDS", "0"),
    ],
)
def test_batch_and_pause_settings_are_bounded(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings(_env_file=None)


def test_every_known_model_accepts_default_and_only_known_levels() -> None:
    for model in [*THINKING_LEVELS, *THINKING_BUDGETS]:
        levels = accepted_levels(model)
        assert levels is not None and "default" in levels
        assert set(levels) <= {"minimal", "low", "medium", "high", "default"}
    assert accepted_levels("gemini-9-ultra") is None
