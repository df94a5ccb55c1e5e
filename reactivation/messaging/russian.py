"""Service titles read as Russian inside a sentence: declined after a preposition and lower-cased mid-sentence.

Booking systems hold titles in the nominative and capitalized: "Стрижка мужская", "Маникюр с покрытием гель-лак".
After "записаться на" the title must be "мужскую стрижку", "маникюр с покрытием гель-лак". The head noun of the
title and the adjectives that agree with it are declined with pymorphy3; adjectives written after the noun, as
catalogs do, move before it; everything after the head group (a genitive, a prepositional phrase, a brand in
quotes) stays as written. When the title cannot be parsed, `decline_title` says so (None) and the caller uses a
phrasing that needs no declension.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from pymorphy3.analyzer import Parse

from reactivation.core.morphology import parse

CASES = frozenset({"nomn", "gent", "datv", "accs", "ablt", "loct"})
# Longer titles are descriptions, not names of a service; a message has no room for them.
MAX_TITLE_LENGTH = 60
# Proper nouns keep their capital letter mid-sentence.
_PROPER = {"Name", "Surn", "Patr", "Geox", "Orgn", "Trad"}
# An all-caps word this short, or one the dictionary does not know, is an abbreviation ("SPA", "LPG", "ТМ").
_ABBREVIATION_MAX = 4

_WORD_RE = r"[A-Za-zА-Яа-яЁё]+(?:-[A-Za-zА-Яа-яЁё]+)*"
_QUOTED_RE = r"«[^»]*»|\"[^\"]*\"|“[^”]*”|„[^“”]*[“”]"
_TOKEN = re.compile(rf"(?P<quoted>{_QUOTED_RE})|(?P<word>{_WORD_RE})|(?P<space>\s+)|(?P<other>.)")
_CYRILLIC = re.compile(r"[А-Яа-яЁё]")
# What joins two services in one title: "Коррекция и оформление бровей", "Стрижка + укладка", "Маникюр/педикюр".
_JOINERS = frozenset({"и", "+", "/", "&"})
_LATIN_ONLY = re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)*")
# Characters a clean title never has: markup, placeholders, code, digits (prices, "2 в 1" counts) and the like.
_UNUSABLE = re.compile(r"[{}\[\]<>$%`|\\@#*_=~^0-9]")


@dataclass(frozen=True)
class _Token:
    text: str
    kind: str  # word | quoted | space | other


def clean_title(title: str | None) -> str | None:
    """A service title fit to show a client (whitespace tidied, emoji dropped), or None when it is not."""
    if not title:
        return None
    text = unicodedata.normalize("NFC", title)
    if _UNUSABLE.search(text) or re.search(r"\b(?:undefined|null|none|nan)\b", text, re.IGNORECASE):
        return None
    text = "".join(ch for ch in text if _kept(ch))
    text = re.sub(r"\s+", " ", text).strip()
    # A title starts with a letter (or a quoted name) and ends with one: "!AA", "— Стрижка —" lose the dashes.
    text = re.sub(r"[^\w»\"”)]+$", "", re.sub(r"^[^\w«\"“„]+", "", text)).strip()
    if not text or len(text) > MAX_TITLE_LENGTH or not re.search(r"[^\W\d_]{2}", text):
        return None
    return text


def _kept(ch: str) -> bool:
    """Letters, digits, punctuation and spaces stay; emoji, other symbols, joiners and control characters go."""
    if ch in "+&/":
        return True
    category = unicodedata.category(ch)
    return category[0] in "LNPZ" and category not in {"Zl", "Zp"}


def decline_title(title: str, case: str = "accs") -> str | None:
    """The title as a noun phrase in `case`, lower-cased mid-sentence, or None when it cannot be parsed.

    "Стрижка мужская" -> "мужскую стрижку"; "Маникюр с покрытием гель-лак" -> "маникюр с покрытием гель-лак".
    """
    if case not in CASES:
        raise ValueError(f"unknown case {case!r}; expected one of {sorted(CASES)}")
    text = clean_title(title)
    if text is None:
        return None
    tokens = [_Token(m.group(0), m.lastgroup or "other") for m in _TOKEN.finditer(text)]
    words = [token.text for token in tokens if token.kind == "word"]
    if words and all(_LATIN_ONLY.fullmatch(word) for word in words) and not _CYRILLIC.search(text):
        # "Airtouch", "Shellac": foreign words do not decline in Russian.
        return text
    group = _head_group(tokens)
    if group is None:
        return None
    declined = group.decline(case)
    if declined is None:
        return None
    rest = "".join(_mid_sentence(token) for token in tokens[group.end :])
    return declined + rest


def mid_sentence(title: str) -> str:
    """The title lower-cased where a word is not a proper noun or an abbreviation; no declension."""
    return "".join(_mid_sentence(_Token(m.group(0), m.lastgroup or "other")) for m in _TOKEN.finditer(title))


@dataclass
class _NounPhrase:
    """Words that decline together: adjectives (or indeclinable foreign words) and the noun they agree with."""

    modifiers: list[tuple[str, Parse | None]]  # (word, adjective reading, or None for an indeclinable word)
    head: tuple[str, Parse]

    def decline(self, case: str) -> str | None:
        head_word, head = self.head
        parts: list[str] = []
        for word, reading in self.modifiers:
            form = _mid_sentence_word(word) if reading is None else _inflect_adjective(word, reading, head, case)
            if form is None:
                return None
            parts.append(form)
        head_form = _inflect(head_word, head, {case})
        if head_form is None:
            return None
        return " ".join([*parts, head_form])


@dataclass
class _HeadGroup:
    """The declining start of a title: a noun phrase, and another after "и" ("Коррекция и оформление бровей")."""

    phrase: _NounPhrase
    coordinated: _NounPhrase | None
    joiner: str  # what stands between the two phrases as written: " и ", " + ", "/"
    end: int  # index of the first token after the group

    def decline(self, case: str) -> str | None:
        first = self.phrase.decline(case)
        if first is None or self.coordinated is None:
            return first
        second = self.coordinated.decline(case)
        return None if second is None else f"{first}{self.joiner.lower()}{second}"


def _head_group(tokens: list[_Token]) -> _HeadGroup | None:
    # The leading run of words and "+", "/" separated by spaces only; other punctuation or a quote ends it.
    run: list[int] = []
    for index, token in enumerate(tokens):
        if token.kind == "word" or token.text in _JOINERS:
            run.append(index)
        elif token.kind != "space":
            break
    words = [tokens[i].text for i in run]
    found = _noun_phrase(words, 0, allow_foreign=True)
    if found is None:
        return None
    phrase, position = found
    # Catalog order "Стрижка мужская": agreeing adjectives after the head move before it.
    while position < len(words):
        adjective = _adjective_reading(words[position], agreeing_with=phrase.head[1])
        if adjective is None:
            break
        phrase.modifiers.append((words[position], adjective))
        position += 1
    coordinated, joiner = None, ""
    if position + 1 < len(words) and words[position].lower() in _JOINERS:
        found = _noun_phrase(words, position + 1, allow_foreign=False)
        if found is not None:
            joiner = "".join(token.text for token in tokens[run[position - 1] + 1 : run[position + 1]])
            coordinated, position = found
    return _HeadGroup(phrase=phrase, coordinated=coordinated, joiner=joiner, end=run[position - 1] + 1)


def _noun_phrase(words: list[str], start: int, *, allow_foreign: bool) -> tuple[_NounPhrase, int] | None:
    """[adjectives] noun from words[start:], and the index after it; None when no noun heads it."""
    modifiers: list[tuple[str, Parse | None]] = []
    for position in range(start, len(words)):
        word = words[position]
        following = _noun_reading(words[position + 1]) if position + 1 < len(words) else None
        if allow_foreign and _LATIN_ONLY.fullmatch(word):
            modifiers.append((word, None))
            continue
        adjective = _adjective_reading(word, agreeing_with=following) if following is not None else None
        if adjective is not None:
            modifiers.append((word, adjective))
            continue
        noun = _noun_reading(word)
        if noun is None:
            return None
        return _NounPhrase(modifiers=modifiers, head=(word, noun)), position + 1
    return None


def _noun_reading(word: str) -> Parse | None:
    """The most likely reading of the word as a common noun in the nominative."""
    if not _CYRILLIC.search(word):
        return None
    candidates = [
        reading
        for reading in parse(word)
        if "NOUN" in reading.tag and reading.tag.case == "nomn" and not _PROPER & reading.tag.grammemes
    ]
    return max(candidates, key=lambda r: (r.is_known, r.score), default=None)


def _adjective_reading(word: str, *, agreeing_with: Parse | None) -> Parse | None:
    """The word's reading as a full adjective or participle in the nominative agreeing with the noun, if any."""
    if not _CYRILLIC.search(word):
        return None
    for reading in parse(word):
        tag = reading.tag
        if tag.POS not in {"ADJF", "PRTF"} or tag.case != "nomn":
            continue
        if agreeing_with is None:
            return reading
        noun = agreeing_with.tag
        if tag.number != noun.number:
            continue
        if noun.number == "sing" and tag.gender != noun.gender and noun.gender != "ms-f":
            continue
        return reading
    return None


def _inflect(word: str, reading: Parse, grammemes: set[str]) -> str | None:
    form = reading.inflect(grammemes)
    if form is None:
        return None
    return _restore_spelling(word, form.word)


def _inflect_adjective(word: str, reading: Parse, noun: Parse, case: str) -> str | None:
    grammemes = {case, noun.tag.number or "sing"}
    if noun.tag.number == "sing" and noun.tag.gender in {"masc", "femn", "neut"}:
        grammemes.add(noun.tag.gender)
    # Animacy shows in the accusative of masculine singular and plural adjectives only.
    if case == "accs" and noun.tag.animacy and (noun.tag.number == "plur" or noun.tag.gender == "masc"):
        grammemes.add(noun.tag.animacy)
    return _inflect(word, reading, grammemes)


def _restore_spelling(original: str, inflected: str) -> str:
    """Keep the writer's own spelling where the form did not change ("бритье" stays without ё), and keep the
    case of an abbreviation before a hyphen ("SPA-программа" -> "SPA-программу")."""
    if _plain(inflected) == _plain(original):
        return _mid_sentence_word(original)
    original_parts = original.split("-")
    parts = inflected.split("-")
    if len(parts) == len(original_parts):
        parts = [
            _mid_sentence_word(before) if _plain(before) == _plain(after) else after
            for before, after in zip(original_parts, parts, strict=True)
        ]
    return "-".join(parts)


def _plain(word: str) -> str:
    return word.lower().replace("ё", "е")


def _mid_sentence(token: _Token) -> str:
    return _mid_sentence_word(token.text) if token.kind == "word" else token.text


def _mid_sentence_word(word: str) -> str:
    """Lower-case a common word ("Стрижка", "СТРИЖКА" -> "стрижка"); "SPA", "Airtouch", "Мария" stay."""
    if "-" in word:
        return "-".join(_mid_sentence_word(part) for part in word.split("-"))
    if not _CYRILLIC.search(word) or word.islower():
        return word
    readings = parse(word)
    if word.isupper() and (len(word) <= _ABBREVIATION_MAX or not any(r.is_known for r in readings)):
        return word
    if readings and _PROPER & readings[0].tag.grammemes:
        return word[0] + word[1:].lower()
    return word.lower()
