"""The one pymorphy3 analyzer a process shares: loading the Russian dictionaries takes a moment and some memory."""

from __future__ import annotations

from functools import lru_cache

import pymorphy3


@lru_cache(maxsize=1)
def analyzer() -> pymorphy3.MorphAnalyzer:
    """The process's morphological analyzer for Russian, built on first use (never at import)."""
    return pymorphy3.MorphAnalyzer(lang="ru")


@lru_cache(maxsize=50_000)
def parse(word: str) -> tuple[pymorphy3.analyzer.Parse, ...]:
    """Every reading of one word, most likely first; cached because names and titles repeat a lot."""
    return tuple(analyzer().parse(word))
