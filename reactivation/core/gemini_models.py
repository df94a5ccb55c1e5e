"""What each known Gemini model accepts for thinking: a level (Gemini 3 and later) or a token budget (Gemini 2.5).

A thinking model thinks at its own default unless told otherwise (gemini-3.8-flash: MEDIUM), and thinking tokens
are billed as output. A message of 150-250 characters needs little thought, so GEMINI_THINKING_LEVEL (default
`low`) is sent with every request; a level the model does not accept is a 400 on every request, so the settings
check it against this table at start. `default` sends no thinking config: the model decides (the only choice for a
model this table does not know).

Sources: the models' pages (Gemini API and Vertex AI), as of this revision. Gemini 3.7/3.8 Flash refuse MINIMAL
with a 400; Gemini 3 Pro knows only LOW and HIGH. Gemini 2.5 takes `thinking_budget` instead of a level: the
budgets below are this project's translation of the levels (0 switches thinking off where the model allows it).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT = "default"
LEVELS = ("minimal", "low", "medium", "high")

_THREE = ("low", "medium", "high")
_ALL = LEVELS

# Gemini 3 and later: the thinking levels each model accepts.
THINKING_LEVELS: dict[str, tuple[str, ...]] = {
    "gemini-3.8-flash": _THREE,
    "gemini-3.7-flash": _THREE,
    "gemini-3.5-flash-lite": _ALL,
    "gemini-3.1-flash-lite": _ALL,
    "gemini-3.1-flash-lite-preview": _ALL,
    "gemini-3.1-pro-preview": _THREE,
    "gemini-3-flash-preview": _ALL,
    "gemini-3-pro-preview": ("low", "high"),
}

# Gemini 2.5: a thinking budget in tokens per level (2.5 Pro cannot switch thinking off; its minimum is 128).
THINKING_BUDGETS: dict[str, dict[str, int]] = {
    "gemini-2.5-flash": {"minimal": 0, "low": 512, "medium": 2048, "high": 8192},
    "gemini-2.5-flash-lite": {"minimal": 0, "low": 512, "medium": 2048, "high": 8192},
    "gemini-2.5-pro": {"minimal": 128, "low": 512, "medium": 2048, "high": 8192},
}


@dataclass(frozen=True)
class Thinking:
    """What a request says about thinking: a level, a budget, or nothing (the model's default)."""

    level: str | None = None  # "LOW" as the API spells it
    budget: int | None = None

    @property
    def label(self) -> str:
        """For logs and the usage table: "low", "budget:512" or "default"."""
        if self.level is not None:
            return self.level.lower()
        return f"budget:{self.budget}" if self.budget is not None else DEFAULT


def model_id(model: str) -> str:
    """The bare model id: "models/gemini-3.8-flash" and "gemini-3.8-flash" are the same model."""
    return model.strip().removeprefix("models/")


def accepted_levels(model: str) -> tuple[str, ...] | None:
    """The levels GEMINI_THINKING_LEVEL may take for this model (`default` always), or None for an unknown model."""
    name = model_id(model)
    if name in THINKING_LEVELS:
        return (*THINKING_LEVELS[name], DEFAULT)
    if name in THINKING_BUDGETS:
        return (*THINKING_BUDGETS[name], DEFAULT)
    return None


def check_thinking_level(model: str, level: str) -> str | None:
    """Why this model cannot take this level (a message naming both settings), or None when it can."""
    accepted = accepted_levels(model)
    if level == DEFAULT:
        return None
    if accepted is None:
        known = ", ".join(sorted([*THINKING_LEVELS, *THINKING_BUDGETS]))
        return (
            f"GEMINI_MODEL {model!r} is not one whose thinking levels are known ({known}); set "
            f"GEMINI_THINKING_LEVEL=default to let the model think at its own default, or choose a known model"
        )
    if level not in accepted:
        return (
            f"GEMINI_THINKING_LEVEL {level!r} is not accepted by GEMINI_MODEL {model!r}; "
            f"it accepts {', '.join(accepted)}"
        )
    return None


def thinking_for(model: str, level: str) -> Thinking:
    """The thinking part of a request for a level the settings checked already."""
    name = model_id(model)
    if level == DEFAULT:
        return Thinking()
    if name in THINKING_BUDGETS:
        return Thinking(budget=THINKING_BUDGETS[name][level])
    return Thinking(level=level.upper())
