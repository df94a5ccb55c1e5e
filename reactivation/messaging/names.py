"""A client's first name from whatever the booking system holds in the name field, or None.

The field holds "Мария", "Иванова Мария Петровна" (surname first), "Мария Иванова", "МАРИЯ", "Клиент 79001234567",
notes, emoji, and sometimes garbage. A message greets by the first name only when we are sure it is one:
greeting "Клиент," or "Иванова," is worse than greeting without a name.
"""

from __future__ import annotations

import re

from reactivation.core.morphology import parse

# A name field longer than this is notes or garbage; only its beginning is looked at.
_LOOK_AT_CHARS = 120
# The first name is among the first few words ("Иванова Мария Петровна (VIP)"), never deep inside a note.
_LOOK_AT_WORDS = 4
_MIN_NAME, _MAX_NAME = 2, 30

_WORD = re.compile(r"[A-Za-zА-Яа-яЁё]+(?:['’-][A-Za-zА-Яа-яЁё]+)*")
_CYRILLIC = re.compile(r"[А-Яа-яЁё]")
_LATIN_WORD = re.compile(r"[A-Za-z]+(?:['’-][A-Za-z]+)*")
# What may surround Latin names: space, dots, commas, emoji and other symbols, but no digits and no code.
# Russian surnames and patronymics in Latin letters ("Ivanova Maria"): their order cannot be told, so no name.
_LATIN_SURNAME_ENDINGS = ("ov", "ova", "ev", "eva", "sky", "skiy", "skii", "skaya", "enko", "vich", "vna")
_LATIN_FIELD_JUNK = re.compile(r"[0-9_=;:<>{}\[\]()|\\/@#$%^&*+\"`~!?]")
# Tags of readings that are not a person's given name even when pymorphy marks them Name.
_NOT_A_GIVEN_NAME = {"Abbr", "Init"}
# Latin words CRMs put into the name field that are not names. Latin names cannot be checked against a
# dictionary the way Russian ones are, so a Latin field is accepted only when it looks like nothing else.
_LATIN_NOT_NAMES = frozenset(
    {
        "admin",
        "administrator",
        "anonymous",
        "anon",
        "client",
        "customer",
        "klient",
        "guest",
        "test",
        "tester",
        "user",
        "username",
        "name",
        "noname",
        "none",
        "null",
        "nil",
        "nan",
        "undefined",
        "unknown",
        "empty",
        "new",
        "old",
        "vip",
        "bot",
        "dr",
        "mr",
        "mrs",
        "ms",
        "miss",
        "mister",
        "sir",
        "madam",
        "lady",
        "master",
        "manager",
        "salon",
        "beauty",
        "studio",
        "whatsapp",
        "instagram",
        "insta",
        "inst",
        "telegram",
        "tg",
        "viber",
        "phone",
        "tel",
        "mobile",
        "mob",
        "drop",
        "select",
        "insert",
        "delete",
        "update",
        "table",
        "from",
        "where",
        "union",
        "script",
        "alert",
    }
)


def first_name(raw: str | None) -> str | None:
    """The client's first name, capitalized ("Иванова Мария Петровна" -> "Мария"), or None when there is none."""
    if not raw:
        return None
    head = raw[:_LOOK_AT_CHARS]
    words = [match.group(0) for match in _WORD.finditer(head)][:_LOOK_AT_WORDS]
    if not words:
        return None
    if _CYRILLIC.search(head):
        return _russian_first_name(words)
    return _latin_first_name(head, words)


def _russian_first_name(words: list[str]) -> str | None:
    readings = [_given_name_reading(word) for word in words]
    # "Иванова Мария Петровна": the given name is the word right before the patronymic.
    for index, word in enumerate(words):
        if index > 0 and readings[index - 1] and _is_patronymic(word):
            return _capitalize(words[index - 1])
    for word, is_name in zip(words, readings, strict=True):
        if is_name:
            return _capitalize(word)
    return None


def _given_name_reading(word: str) -> bool:
    """True when the dictionary knows the word as a given name in the nominative singular."""
    if not _MIN_NAME <= len(word) <= _MAX_NAME or not _CYRILLIC.search(word) or _LATIN_WORD.search(word):
        return False
    if "-" in word:
        # "Анна-Мария": a double name is a name when each part is one.
        return all(_given_name_reading(part) for part in word.split("-"))
    for reading in parse(word):
        tag = reading.tag
        if (
            reading.is_known
            and "Name" in tag
            and tag.case == "nomn"
            and tag.number == "sing"
            and not _NOT_A_GIVEN_NAME & tag.grammemes
        ):
            return True
    return False


def _is_patronymic(word: str) -> bool:
    return any(reading.is_known and "Patr" in reading.tag for reading in parse(word))


def _latin_first_name(head: str, words: list[str]) -> str | None:
    # "John Smith", "ANNA", "maria": at most three Latin words and nothing that looks like data or code.
    if _LATIN_FIELD_JUNK.search(head) or len(_WORD.findall(head)) > 3:
        return None
    candidate = words[0]
    if not _MIN_NAME <= len(candidate) <= _MAX_NAME or not _LATIN_WORD.fullmatch(candidate):
        return None
    if any(word.lower() in _LATIN_NOT_NAMES for word in words):
        return None
    if candidate.lower().endswith(_LATIN_SURNAME_ENDINGS) or not re.search(r"[aeiouyAEIOUY]", candidate):
        return None
    return _capitalize(candidate)


def _capitalize(word: str) -> str:
    """Each letter run capitalized: "МАРИЯ" -> "Мария", "анна-мария" -> "Анна-Мария", "o'neil" -> "O'Neil"."""
    return re.sub(r"[^\W\d_]+", lambda m: m.group(0)[0].upper() + m.group(0)[1:].lower(), word)
