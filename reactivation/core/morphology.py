"""The one pymorphy3 analyzer a process shares: loading the Russian dictionaries takes a moment and some memory."""

from __future__ import annotations

from functools import lru_cache

import pymorphy3
import pymorphy3_dicts_ru


@lru_cache(maxsize=1)
def analyzer() -> pymorphy3.MorphAnalyzer:
    """The process's morphological analyzer for Russian, built on first use (never at import)."""
    # Naming the dictionary's folder spares pymorphy3 a scan of every installed package's entry points (half of
    # the analyzer's start-up, noticeable in `reactivation classify`).
    return pymorphy3.MorphAnalyzer(path=pymorphy3_dicts_ru.get_path(), lang="ru")


@lru_cache(maxsize=50_000)
def parse(word: str) -> tuple[pymorphy3.analyzer.Parse, ...]:
    """Every reading of one word, most likely first; cached because names and titles repeat a lot."""
    return tuple(analyzer().parse(word))
