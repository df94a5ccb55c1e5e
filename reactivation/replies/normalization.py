"""A reply as the rules read it: cleaned text, normalized words with their lemmas, cut into clauses.

The reply is normalized (NFKC, invisible characters dropped, ё as е, letters repeated for emphasis collapsed, Latin
transliteration and look-alike letters turned into Cyrillic, a few common misspellings mapped to their word), cut
into clauses at punctuation and at "но"/"однако"/"зато"/"а", and each word is looked up by its lemma (pymorphy3).
Times, dates, percentages and sums become placeholder tokens; voice and media placeholders become separators.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

from reactivation.core import morphology
from reactivation.replies.lexicon import (
    CONTRAST,
    ENGLISH,
    FIXED_LEMMAS,
    GLUED_NE,
    HOMOGLYPHS,
    RESPELL_LEMMAS,
    SIGNAL_EMOJI,
    TRANSLIT,
    TYPO_LEMMAS,
    VARIANTS,
)

# A WhatsApp message is at most 65,536 characters; nobody answers a salon with more than a few hundred. Beyond this
# only the start and the end are read (an opt-out usually closes a long rant), which keeps the work bounded.
MAX_ANALYSED_CHARS = 20_000
_TAIL_CHARS = 2_000

# --- Text ----------------------------------------------------------------------------------------------------

INVISIBLE = dict.fromkeys(
    [0x00AD, 0x034F, 0x061C, 0x180E, 0xFE0E, 0xFE0F, 0xFEFF, *range(0x200B, 0x2010), *range(0x2028, 0x2030)]
)
INVISIBLE.update(dict.fromkeys(range(0x2060, 0x2070)))
# Skin tones and the like modify an emoji without changing what it means.
_EMOJI_MODIFIERS = dict.fromkeys(range(0x1F3FB, 0x1F400))

_PLACEHOLDERS = re.compile(
    r"(?:🎤|🎙️?|🔊)?\s*(?:голосовое|аудио)\s*(?:сообщение)?\s*(?:\(\s*\d{1,2}:\d{2}\s*\))?"
    r"|(?:📷|🎥|📹|🖼️?)\s*(?:фото|видео|изображение)\s*(?:\(\s*\d{1,2}:\d{2}\s*\))?"
    r"|\[[^\]\n]{0,40}(?:голос|аудио|фото|видео|стикер|изображ|медиа|документ|voice|audio|photo|video|sticker"
    r"|image|media|gif)[^\]\n]{0,40}\]"
    r"|<\s*(?:media omitted|медиа ?файл[^>\n]{0,30}|без медиафайлов|файл пропущен)\s*>",
    re.IGNORECASE,
)
_TIME = re.compile(r"(?<![\d.:])(?:[01]?\d|2[0-3])[:.][0-5]\d(?![\d.:])")
_PERCENT = re.compile(r"\d+\s*(?:%|процент\w*)", re.IGNORECASE)
_MONEY = re.compile(r"\d+\s*(?:₽|руб\w*|р\.?(?!\w))|\d+(?:к|k)(?!\w)", re.IGNORECASE)
_DATE = re.compile(
    r"\d{1,2}\s*(?:-?(?:го|е|ого)(?!\w)|числ\w*"
    r"|(?:январ|феврал|март|апрел|ма[яй]|июн|июл|август|сентябр|октябр|ноябр|декабр)\w*)",
    re.IGNORECASE,
)
_DASH_WORDS = re.compile(r"(?<!\w)не-а(?!\w)", re.IGNORECASE)
# "don't", "can't": the English negation as one word the lexicon knows.
_ENGLISH_NOT = re.compile(r"(?<![^\W\d_])(?:do|does|did|can|won|is|are)n['’]?t(?![^\W\d_])", re.IGNORECASE)

_TOKEN = re.compile(
    r"(?P<special>__(?:time|date|percent|money)__)"
    r"|(?P<word>[^\W_]+)"
    r"|(?P<emoji>[" + "".join(SIGNAL_EMOJI) + r"]|\+(?![\s(]*\d))"
    r"|(?P<sep>[,.;!?\n…:—–]+)"
)


def strip_control(text: str) -> str:
    """NFKC, without invisible characters, every control character but a line break turned into a space."""
    text = unicodedata.normalize("NFKC", text).translate(INVISIBLE)
    return "".join(ch if ch == "\n" or unicodedata.category(ch) != "Cc" else " " for ch in text)


def prepare(text: str) -> str:
    """The reply's text cut to the analysed length, cleaned, with times, dates, sums and media as placeholders."""
    if len(text) > MAX_ANALYSED_CHARS:
        text = text[: MAX_ANALYSED_CHARS - _TAIL_CHARS] + "\n" + text[-_TAIL_CHARS:]
    text = strip_control(text).translate(_EMOJI_MODIFIERS)
    text = _PLACEHOLDERS.sub(" . ", text)
    text = _DASH_WORDS.sub("неа", text)
    text = _ENGLISH_NOT.sub(" not ", text)
    text = _PERCENT.sub(" __percent__ ", text)
    text = _MONEY.sub(" __money__ ", text)
    text = _TIME.sub(" __time__ ", text)
    return _DATE.sub(" __date__ ", text)


# --- Words ----------------------------------------------------------------------------------------------------

# pymorphy3 knows Russian; a word in another script (and some it cannot even name) is taken as it is.
_MORPH_WORD = re.compile(r"[а-яё0-9-]+")


@lru_cache(maxsize=100_000)
def known(word: str) -> bool:
    """Whether pymorphy3's dictionary holds the word (a Cyrillic word only)."""
    return bool(_MORPH_WORD.fullmatch(word)) and bool(morphology.analyzer().word_is_known(word))


@dataclass(frozen=True)
class Word:
    """What the morphology says about one normalized word."""

    lemma: str
    lemmas: frozenset[str]
    past: bool
    first_person: bool
    future: bool
    infinitive: bool
    imperative: bool
    name: bool  # one of its readings is a first name ("Вере" is also "вера")
    name_first: bool  # its likeliest reading is a first name ("Оле")
    place: bool = False  # one of its readings is a place name ("Казани", "Сочи")
    third_person: bool = False  # "пойдут", "придёт": someone else does it


@lru_cache(maxsize=100_000)
def analyse(word: str) -> Word:
    """The lemmas and grammar of one normalized word (a word in another script is its own lemma)."""
    if not _MORPH_WORD.fullmatch(word):
        return Word(word, frozenset({word}), False, False, False, False, False, False, False)
    parses = morphology.parse(word)[:4]
    lemma = FIXED_LEMMAS.get(word, parses[0].normal_form)
    # For a word whose lemma is fixed ("бегу" is "бежать", not "бег"), its grammar comes from that reading.
    first = next((p for p in parses if p.normal_form == lemma), parses[0])
    lemmas = frozenset({lemma, *(p.normal_form for p in parses if p.score >= 0.05)})
    if word in FIXED_LEMMAS:
        lemmas = frozenset({lemma})
    tag = first.tag
    return Word(
        lemma=lemma,
        lemmas=lemmas,
        past=tag.tense == "past" or tag.POS == "PRTS",
        first_person=tag.person == "1per",
        future=tag.tense == "futr",
        infinitive=tag.POS == "INFN",
        imperative=any(p.tag.mood == "impr" for p in parses),
        name=any("Name" in p.tag for p in parses),
        name_first="Name" in parses[0].tag,
        place=any("Geox" in p.tag for p in parses),
        third_person=tag.person == "3per",
    )


def translit(word: str) -> str:
    """A word typed in Latin letters, in Cyrillic: "zapishite" -> "запишите"."""
    out: list[str] = []
    i = 0
    while i < len(word):
        for latin, cyrillic in TRANSLIT:
            if word.startswith(latin, i):
                # "i" after a vowel is the short "й": "davai" -> "давай".
                if latin == "i" and out and out[-1] in "аеоуыяю":
                    cyrillic = "й"
                out.append(cyrillic)
                i += len(latin)
                break
        else:
            out.append(word[i])
            i += 1
    return "".join(out)


# A word's skeleton: its vowels as two classes (а/о and е/и/я/э/ы, the ones people confuse), without the soft and
# hard signs and "й", runs collapsed. Misspellings of a word share its skeleton: "сичас", "сейчас".
_SKELETON = str.maketrans({**dict.fromkeys("ао", "a"), **dict.fromkeys("еиэяыё", "e"), **dict.fromkeys("ьъй", None)})
_RUNS = re.compile(r"(.)\1+")
_CYRILLIC = re.compile(r"[а-я]+")


def _skeleton(word: str) -> str:
    return _RUNS.sub(r"\1", word.translate(_SKELETON))


@lru_cache(maxsize=1)
def _respellings() -> dict[str, str]:
    """Skeleton → the one form of a key word with it (skeletons shared by two words are left out)."""
    found: dict[str, dict[str, str]] = {}
    for lemma in sorted(RESPELL_LEMMAS):
        if not _CYRILLIC.fullmatch(lemma.replace("ё", "е")):  # "самолёт" too
            continue
        for form in morphology.parse(lemma)[0].lexeme:
            word = form.word.replace("ё", "е")
            found.setdefault(_skeleton(word), {}).setdefault(form.normal_form, word)
    return {skeleton: next(iter(by_lemma.values())) for skeleton, by_lemma in found.items() if len(by_lemma) == 1}


# A typo (a letter dropped, added, swapped or mistyped: "давйте", "дапвайте", "запишиет", "дввайте") is undone
# only for words this long, unknown to the dictionary, and only when one key word is that one letter away.
_TYPO_MIN_LENGTH = 5


def _deletes(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


@lru_cache(maxsize=1)
def _typos() -> tuple[dict[str, frozenset[str]], dict[str, frozenset[str]]]:
    """Each form of a key word by itself and by each of its one-letter deletions (a symmetric-delete index)."""
    forms: dict[str, set[str]] = {}
    deleted: dict[str, set[str]] = {}
    for lemma in sorted(TYPO_LEMMAS):
        for form in morphology.parse(lemma)[0].lexeme:
            word = form.word.replace("ё", "е")
            if len(word) < _TYPO_MIN_LENGTH - 1:
                continue
            forms.setdefault(word, set()).add(word)
            for variant in _deletes(word):
                deleted.setdefault(variant, set()).add(word)
    return {k: frozenset(v) for k, v in forms.items()}, {k: frozenset(v) for k, v in deleted.items()}


def _typo(word: str) -> str | None:
    """The one key word a letter away from `word` ("давйте" → "давайте"), or None when none or several are."""
    forms, deleted = _typos()
    variants = _deletes(word)
    swapped = {word[:i] + word[i + 1] + word[i] + word[i + 2 :] for i in range(len(word) - 1)}
    # The likeliest typo first: a letter dropped, two letters swapped, one letter for another, a letter added.
    for found in (
        set(deleted.get(word, ())),
        {f for v in swapped for f in forms.get(v, ())},
        {f for v in variants for f in deleted.get(v, ())},
        {f for v in variants for f in forms.get(v, ())},
    ):
        if found:
            return min(found) if len({analyse(f).lemma for f in found}) == 1 else None
    return None


_REPEATS = re.compile(r"([^\W\d_])\1{2,}")
_DOUBLES = re.compile(r"([^\W\d_])\1")


def normalize_word(raw: str) -> list[str]:
    """The word(s) the rules look up for one token as typed."""
    word = raw.lower().replace("ё", "е")
    has_latin = any("a" <= ch <= "z" for ch in word)
    has_cyrillic = any("а" <= ch <= "я" for ch in word)
    if has_latin and has_cyrillic:
        word = word.translate(HOMOGLYPHS)
    elif has_latin:
        if word in ENGLISH:
            return list(ENGLISH[word])
        collapsed = _REPEATS.sub(r"\1", word)
        if collapsed in ENGLISH:
            return list(ENGLISH[collapsed])
        word = translit(word)
        if not known(word) and known(word + "ь"):
            word += "ь"  # "podstriglas": the soft sign nobody types in Latin
        if not known(word) and "ц" in word and _skeleton(word.replace("ц", "тс")) in _respellings():
            word = word.replace("ц", "тс")  # "otstante": "ts" is "тс" as often as "ц"
    word = _REPEATS.sub(r"\1", word)
    for pattern, canonical in VARIANTS:
        if pattern.match(word):
            return [canonical]
    if len(word) >= 4 and not known(word) and _CYRILLIC.fullmatch(word):
        word = _respellings().get(_skeleton(word), word)
    if len(word) >= _TYPO_MIN_LENGTH and not known(word) and _CYRILLIC.fullmatch(word):
        word = _typo(word) or word
    if not known(word) and _DOUBLES.search(word):
        single = _DOUBLES.sub(r"\1", word)
        if known(single) or any(p.match(single) for p, _ in VARIANTS):
            return normalize_word(single)
    if word[:2] in {"не", "ни"} and len(word) > 4 and not known(word):
        rest = normalize_word(word[2:])
        if len(rest) == 1 and rest[0] in GLUED_NE:
            return ["не", rest[0]]  # "ненадо", "нинада": "не надо"
    return [word]


# --- Tokens and clauses ---------------------------------------------------------------------------------------


@dataclass
class Token:
    """One word, emoji or placeholder of a clause; `negated` is set by the rules' negation pass."""

    text: str
    word: Word | None = None
    title: bool = False
    emoji: str | None = None
    special: str | None = None
    negated: bool = False

    @property
    def lemma(self) -> str:
        return self.word.lemma if self.word else self.text

    def has(self, lemmas: frozenset[str] | set[str] | str) -> bool:
        """Whether the word is one of `lemmas`, as typed or by any of its lemmas."""
        wanted = {lemmas} if isinstance(lemmas, str) else lemmas
        return self.text in wanted or (self.word is not None and not self.word.lemmas.isdisjoint(wanted))


@dataclass
class Clause:
    """A run of tokens between punctuation or contrasting conjunctions."""

    tokens: list[Token] = field(default_factory=list)
    contrast: bool = False  # starts with "но", "однако", "зато" or a non-initial "а"
    question: bool = False


# Nobody writes 100 words without a comma; a hostile run-on text is cut into pieces so that the work stays linear.
_MAX_CLAUSE_TOKENS = 100


def split_clauses(text: str) -> list[Clause]:
    """The reply as clauses of tokens, cut at punctuation and at contrasting conjunctions."""
    clauses = [Clause()]
    words_seen = 0
    for match in _TOKEN.finditer(prepare(text)):
        kind = match.lastgroup
        value = match.group()
        current = clauses[-1]
        if len(current.tokens) >= _MAX_CLAUSE_TOKENS:
            clauses.append(Clause())
            current = clauses[-1]
        if kind == "sep":
            if "?" in value:
                current.question = True
            if current.tokens:
                clauses.append(Clause())
            continue
        if kind == "emoji":
            current.tokens.append(Token(text=value, emoji=SIGNAL_EMOJI.get(value, "yes")))  # a "+" agrees
            continue
        if kind == "special":
            current.tokens.append(Token(text=value, special=value.strip("_")))
            words_seen += 1
            continue
        for word in normalize_word(value):
            if word in CONTRAST or (word == "а" and words_seen > 0):
                if current.tokens:
                    clauses.append(Clause(contrast=True))
                else:
                    current.contrast = True
                words_seen += 1
                continue
            title = value[:1].isupper() and not value.isupper()
            clauses[-1].tokens.append(Token(text=word, word=analyse(word), title=title))
            words_seen += 1
    return [c for c in clauses if c.tokens]
