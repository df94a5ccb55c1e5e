"""The reply vocabulary: the labels a client's reply gets."""

from __future__ import annotations

from enum import StrEnum


class ReplyLabel(StrEnum):
    """What a reply means for the flow: book, stop for now, answer, or never write again."""

    POSITIVE = "positive"
    NEGATIVE = "negative"
    NEUTRAL = "neutral"
    OPT_OUT = "opt_out"
