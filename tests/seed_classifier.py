"""The seed's `_classifyResponse` (strategic-plan.md), ported as-is: the baseline the rules are measured against.

Test-only: substring matching over the lower-cased text, positive only when no negative substring is present, and
no opt_out label at all (the seed counted "отписаться" as a plain negative).
"""

from __future__ import annotations

SEED_POSITIVE = [
    "да",
    "хочу",
    "конечно",
    "запиш",
    "можно",
    "давайте",
    "согласен",
    "ок",
    "окей",
    "записать",
    "записаться",
    "когда",
    "время",
    "завтра",
    "сегодня",
    "на этой неделе",
    "в понедельник",
    "во вторник",
    "в среду",
    "в четверг",
    "в пятницу",
]
SEED_NEGATIVE = [
    "нет",
    "не хочу",
    "не нужно",
    "не интересно",
    "не могу",
    "отстань",
    "не пиши",
    "удали",
    "отписаться",
    "не беспокойте",
]


def seed_classify(message: str) -> str:
    """'positive' | 'negative' | 'neutral', exactly as the seed decided."""
    text = message.lower()
    has_positive = any(keyword in text for keyword in SEED_POSITIVE)
    has_negative = any(keyword in text for keyword in SEED_NEGATIVE)
    if has_positive and not has_negative:
        return "positive"
    if has_negative:
        return "negative"
    return "neutral"
