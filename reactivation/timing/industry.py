"""Matching a service title to an industry-standard interval, by the lemmas of its words.

The `industry_standard_intervals` rows list keywords as lemmas (lower case, ё written as е). A title's words
are lemmatized with pymorphy3 and the categories whose keywords occur are scored; the most specific wins:

* each matched keyword weighs 1 / (number of categories having that keyword), so "борода" (only `beard`)
  outweighs "стрижка" (three haircut categories) and "Стрижка бороды" is `beard`;
* ties go to the category with the larger share of its own keywords matched, then the higher confidence,
  then the smaller category key: the same title always gives the same category, whatever the row order.

Unlike the seed's `ILIKE ANY … ORDER BY confidence LIMIT 1`, a title matches by whole words, never by
substrings ("лак" does not match "лакомство"), and never by whichever row happens to come first.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from reactivation.core import morphology
from reactivation.storage.models import IndustryStandardInterval

# Runs of letters: digits, hyphens, quotes and punctuation all separate words ("гель-лак" is two words).
_WORD = re.compile(r"[^\W\d_]+")
# Service titles are short; beyond this a "title" is hostile input and its tail is ignored.
MAX_TITLE_CHARS = 300
MAX_TITLE_WORDS = 24
_RUSSIAN = re.compile(r"[а-яё]+")
# A word longer than any Russian word is not looked up (pymorphy would guess a lemma for it).
_MAX_WORD_CHARS = 40


def normalize_word(word: str) -> str:
    """Lower case with ё as е: the form keywords are stored in."""
    return word.lower().replace("ё", "е")


@lru_cache(maxsize=65_536)
def word_lemmas(word: str) -> frozenset[str]:
    """Every dictionary form pymorphy3 considers for a word, plus the word itself, normalized.

    All parses count, not only the likeliest: "усов" is both a surname and the genitive of "ус", and a title
    has no context to tell them apart; a keyword then matches whichever reading it names.
    """
    lowered = word.lower()
    if len(lowered) > _MAX_WORD_CHARS or not _RUSSIAN.fullmatch(lowered):
        # Only Russian words have lemmas to find; others ("airtouch") are keywords as they are. pymorphy3 also
        # fails on letters without a Unicode name, which hostile titles contain.
        return frozenset({normalize_word(lowered)})
    forms = {normalize_word(lowered)}
    forms.update(normalize_word(parse.normal_form) for parse in morphology.parse(lowered))
    return frozenset(forms)


def title_words(title: str) -> list[str]:
    """The words of a title, in order, at most MAX_TITLE_WORDS of them from its first MAX_TITLE_CHARS."""
    return _WORD.findall(title[:MAX_TITLE_CHARS])[:MAX_TITLE_WORDS]


def title_lemmas(title: str) -> frozenset[str]:
    """The union of the lemmas of a title's words."""
    lemmas: set[str] = set()
    for word in title_words(title):
        lemmas |= word_lemmas(word)
    return frozenset(lemmas)


@dataclass(frozen=True)
class IndustryStandard:
    """One row of `industry_standard_intervals`."""

    category_key: str
    category_name: str
    interval_days: int
    keywords: frozenset[str]
    confidence: float
    min_days: int | None = None
    max_days: int | None = None
    service_type: str | None = None


@dataclass(frozen=True)
class IndustryMatch:
    """The winning category for a title, with what decided it (for the history row and the operator)."""

    standard: IndustryStandard
    matched_keywords: tuple[str, ...]
    score: float
    share: float

    @property
    def interval_days(self) -> int:
        return self.standard.interval_days

    @property
    def confidence(self) -> float:
        return self.standard.confidence


def standard_from_row(row: Any) -> IndustryStandard | None:
    """An IndustryStandard from a row or mapping; None when the row is unusable (no keywords, no interval)."""
    get = row.get if isinstance(row, dict) else lambda name: getattr(row, name, None)
    raw_keywords = get("keywords")
    if isinstance(raw_keywords, str):
        raw_keywords = [raw_keywords]
    if not isinstance(raw_keywords, Iterable):
        return None
    keywords = frozenset(normalize_word(k.strip()) for k in raw_keywords if isinstance(k, str) and k.strip())
    interval = get("interval_days")
    key = get("category_key")
    if not keywords or not isinstance(interval, int) or isinstance(interval, bool) or interval <= 0 or not key:
        return None
    confidence = get("confidence_score")
    if confidence is None:
        confidence = get("confidence")
    try:
        confidence_value = float(Decimal(str(confidence))) if confidence is not None else 0.75
    except (ArithmeticError, ValueError):
        confidence_value = 0.75
    return IndustryStandard(
        category_key=str(key),
        category_name=str(get("category_name") or key),
        interval_days=interval,
        keywords=keywords,
        confidence=min(max(confidence_value, 0.0), 1.0),
        min_days=get("min_days"),
        max_days=get("max_days"),
        service_type=get("service_type"),
    )


def load_standards(session: Session) -> list[IndustryStandard]:
    """Every usable industry-standard row (the table is global: the same for all companies)."""
    rows = session.execute(select(IndustryStandardInterval).order_by(IndustryStandardInterval.category_key))
    standards = [standard_from_row(row) for row in rows.scalars()]
    return [s for s in standards if s is not None]


def match_industry(title: object, standards: Sequence[IndustryStandard]) -> IndustryMatch | None:
    """The most specific category whose keywords occur among the title's lemmas; None when none does."""
    if not isinstance(title, str) or not title.strip() or not standards:
        return None
    lemmas = title_lemmas(title)
    if not lemmas:
        return None
    frequency = _keyword_frequency(tuple(standards))
    best: tuple[tuple[float, float, float, str], IndustryMatch] | None = None
    for standard in standards:
        matched = standard.keywords & lemmas
        if not matched:
            continue
        score = sum(1.0 / frequency[k] for k in matched)
        share = len(matched) / len(standard.keywords)
        # Smallest rank wins. Rounded so that float noise in a sum never decides between equally specific
        # categories; the key comes last so that the order of the rows never matters.
        rank = (-round(score, 9), -round(share, 9), -standard.confidence, standard.category_key)
        if best is None or rank < best[0]:
            best = (rank, IndustryMatch(standard, tuple(sorted(matched)), round(score, 4), round(share, 4)))
    return best[1] if best else None


@lru_cache(maxsize=16)
def _keyword_frequency(standards: tuple[IndustryStandard, ...]) -> Counter[str]:
    """In how many categories each keyword appears."""
    counts: Counter[str] = Counter()
    for standard in standards:
        counts.update(standard.keywords)
    return counts
