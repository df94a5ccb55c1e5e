"""The reply vocabulary: the label a client's reply gets, the reason behind it, and the time it names.

One enum each, and the only place their strings live: the history row stores `ReplyLabel` in `response_type` and
`ReplyReason` in `response_reason`; the frozen blind set and the dev set in tests/data use the same strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ReplyLabel(StrEnum):
    """What a reply means for the flow: book, stop for now, answer, or never write again."""

    POSITIVE = "positive"
    NEGATIVE = "negative"
    NEUTRAL = "neutral"
    OPT_OUT = "opt_out"


class ReplyReason(StrEnum):
    """Why a client said no (a negative reply) or did not say yes or no (a neutral one)."""

    # negative
    NOT_NOW = "not_now"  # later: asked again when the named time comes (30 days when none is named)
    PRICE = "price"
    MOVED_AWAY = "moved_away"  # left the town: not contacted again until their phone or last visit changes
    WENT_ELSEWHERE = "went_elsewhere"  # another salon or master, or already done there
    SELF_SERVICE = "self_service"  # does it themselves, or a relative does it at home
    UNHAPPY = "unhappy"  # a complaint about the last visit: the owner should hear it
    NO_NEED = "no_need"  # a plain no
    # neutral
    QUESTION = "question"
    BUSY = "busy"  # cannot answer now ("за рулём, позже отвечу")
    OTHER = "other"

    @property
    def label(self) -> ReplyLabel:
        """The label this reason goes with."""
        return ReplyLabel.NEUTRAL if self in _NEUTRAL_REASONS else ReplyLabel.NEGATIVE


_NEUTRAL_REASONS = frozenset({ReplyReason.QUESTION, ReplyReason.BUSY, ReplyReason.OTHER})
# The reason a label gets when nothing more specific is said; positive and opt_out have none.
DEFAULT_REASON = {ReplyLabel.NEGATIVE: ReplyReason.NO_NEED, ReplyLabel.NEUTRAL: ReplyReason.OTHER}


class NamedTime(StrEnum):
    """A time a not_now reply names; times.py turns it into a date relative to the reply's local date."""

    JAN = "jan"
    FEB = "feb"
    MAR = "mar"
    APR = "apr"
    MAY = "may"
    JUN = "jun"
    JUL = "jul"
    AUG = "aug"
    SEP = "sep"
    OCT = "oct"
    NOV = "nov"
    DEC = "dec"
    SPRING = "spring"
    SUMMER = "summer"
    AUTUMN = "autumn"
    WINTER = "winter"
    NEXT_WEEK = "next_week"
    NEXT_MONTH = "next_month"
    AFTER_HOLIDAYS = "after_holidays"

    @classmethod
    def month(cls, number: int) -> NamedTime:
        """The month `number` (1 = January)."""
        return list(cls)[number - 1]


@dataclass(frozen=True)
class Classification:
    """A reply's label, its reason (None for positive and opt_out) and, for not_now, the time it names."""

    label: ReplyLabel
    reason: ReplyReason | None = None
    when: NamedTime | None = None

    def __post_init__(self) -> None:
        if self.reason is not None and self.reason.label is not self.label:
            raise ValueError(f"reason {self.reason} does not go with label {self.label}")
        if self.reason is None and self.label in DEFAULT_REASON:
            raise ValueError(f"a {self.label} reply needs a reason")
        if self.when is not None and self.reason is not ReplyReason.NOT_NOW:
            raise ValueError("only a not_now reply names a time")
