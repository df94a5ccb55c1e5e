"""Is this text fit to send to a client? One pure function applied to every message, whoever wrote it.

Models answer too long, in English, with placeholders, a preamble or markup, and invent prices and dates. Small
defects that cannot change the meaning are repaired (quotes around the whole, a preamble, markup, whitespace);
anything else rejects the text with reasons, and the caller tries again or uses a template.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from reactivation.core.vocabulary import MAX_MESSAGE_LENGTH, Step

# Reasons a message is rejected: stable codes, recorded on the history row as "rejected:<reason>,<reason>".
EMPTY = "empty"
TOO_SHORT = "too_short"
TOO_LONG = "too_long"
PLACEHOLDER = "placeholder"
MARKUP = "markup"
LINK = "link"
NOT_RUSSIAN = "not_russian"
TOO_MANY_EMOJI = "too_many_emoji"
NO_QUESTION = "no_question"
NO_NAME = "no_name"
DISCOUNT_MISSING = "discount_missing"
DISCOUNT_WRONG = "discount_wrong"
UNEXPECTED_DISCOUNT = "unexpected_discount"
INVENTED_OFFER = "invented_offer"
PRICE = "price"
DATE = "date"
INVENTED_NUMBER = "invented_number"

# Repairs made on the way.
REPAIRED_WHITESPACE = "whitespace"
REPAIRED_QUOTES = "quotes"
REPAIRED_PREAMBLE = "preamble"
REPAIRED_MARKUP = "markup"
REPAIRED_NOTE = "note"

MIN_LENGTH = 20
MAX_EMOJI = 2
# Share of letters that must be Cyrillic (the salon's and the client's own names aside).
MIN_CYRILLIC_SHARE = 0.85
# Anything longer cannot be repaired into a message; it is not even looked at closely.
_MAX_INPUT = 4000


@dataclass(frozen=True)
class ValidationResult:
    """The text after repairs, why it is rejected (empty when it may be sent) and what was repaired."""

    text: str
    reasons: tuple[str, ...] = ()
    repairs: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.reasons

    @property
    def reason(self) -> str:
        """For the history row: "rejected:too_long,no_question"; empty when the text is fine."""
        return "rejected:" + ",".join(self.reasons) if self.reasons else ""


def validate_message(
    text: str | None,
    *,
    step: Step,
    first_name: str | None,
    company_name: str | None = None,
) -> ValidationResult:
    """Repair small defects in a message and check it against every rule for its step.

    `company_name` is the salon's own name: its digits and Latin letters are not invented.
    """
    if text is None or not text.strip():
        return ValidationResult(text="", reasons=(EMPTY,))
    if len(text) > _MAX_INPUT:
        return ValidationResult(text=text[:MAX_MESSAGE_LENGTH], reasons=(TOO_LONG,))
    repaired, repairs = repair(text)
    reasons = _check(repaired, step=step, first_name=first_name, company_name=company_name)
    return ValidationResult(text=repaired, reasons=tuple(reasons), repairs=tuple(repairs))


# ---------------------------------------------------------------- repairs

_INVISIBLE = re.compile("[\u200b\u200c\u200e\u200f\u2060\ufeff\u00ad]")
_FENCE = re.compile(r"```[a-zA-Z]*")
_HEADING_LINE = re.compile(r"^\s{0,3}#{1,6}\s+.*$", re.MULTILINE)
_PREAMBLE = re.compile(
    r"""^\s*(?:
        (?:конечно|хорошо|отлично|давайте|готово)[!,.]?\s*
    )?(?:
        (?:вот|ниже)\s+[^:\n]{0,60}?(?:сообщени|текст|вариант|письм)[^:\n]{0,40}
        | (?:сообщение|текст\s+сообщения|вариант|ответ|whatsapp[- ]сообщение)[^:\n?]{0,40}
        | (?:sure[!,.]?\s*)?here(?:'s|\s+is)\s+[^:\n]{0,60}
        | message[^:\n?]{0,30}
    ):\s*""",
    re.IGNORECASE | re.VERBOSE,
)
# "(98 символов)", "(длина 120 символов)", "Длина: 120 символов" after the message.
_TRAILING_NOTE = re.compile(
    r"\s*(?:\([^()]{0,40}?(?:символ|знак|character|длина)[^()]{0,40}\)|(?:длина|символов)\s*:?\s*\d+\s*(?:символ\w*)?)\s*$",
    re.IGNORECASE,
)
_BOLD = re.compile(r"\*\*(.+?)\*\*|__(.+?)__", re.DOTALL)
_EMPHASIS = re.compile(r"(?<![\w*])\*(?!\s)([^*\n]+?)(?<!\s)\*(?![\w*])|(?<![\w_])_(?!\s)([^_\n]+?)(?<!\s)_(?![\w_])")
_CODE = re.compile(r"`([^`\n]*)`")
_PAIRS = {"«": "»", '"': '"', "“": "”", "„": "“", "'": "'", "”": "”"}


def repair(text: str) -> tuple[str, list[str]]:
    """Remove what cannot change the meaning: a preamble, quotes around the whole, markup, extra whitespace."""
    repairs: list[str] = []
    result = unicodedata.normalize("NFC", _INVISIBLE.sub("", text))
    result = "".join(ch for ch in result if ch in "\n\t" or unicodedata.category(ch) != "Cc")

    without_fence = _FENCE.sub("", result)
    if without_fence != result:
        repairs.append(REPAIRED_MARKUP)
        result = without_fence

    lines = [line for line in result.strip().splitlines() if line.strip()]
    # A heading or a "Вот сообщение:" line above the message.
    while len(lines) > 1 and (_HEADING_LINE.match(lines[0]) or _PREAMBLE.fullmatch(lines[0].strip() + " ")):
        lines.pop(0)
        _add(repairs, REPAIRED_PREAMBLE)
    result = "\n".join(lines)

    # "Вот сообщение: «...»" needs the preamble off before the quotes can go; "**«...»**" the bold first.
    for _ in range(4):
        before = result
        stripped = result.strip()
        match = _PREAMBLE.match(stripped)
        if match and match.end() < len(stripped):
            stripped = stripped[match.end() :]
            _add(repairs, REPAIRED_PREAMBLE)
        note = _TRAILING_NOTE.search(stripped)
        if note and note.start() > 0:
            stripped = stripped[: note.start()]
            _add(repairs, REPAIRED_NOTE)
        unquoted = _strip_outer_quotes(stripped.strip())
        if unquoted is not None:
            stripped = unquoted
            _add(repairs, REPAIRED_QUOTES)
        unmarked = _CODE.sub(r"\1", _BOLD.sub(lambda m: m.group(1) or m.group(2), stripped))
        unmarked = _EMPHASIS.sub(lambda m: m.group(1) or m.group(2), unmarked)
        unmarked = re.sub(r"^\s{0,3}#{1,6}\s+", "", unmarked, flags=re.MULTILINE)
        if unmarked != stripped:
            _add(repairs, REPAIRED_MARKUP)
        result = unmarked
        if result == before:
            break

    # One paragraph: line breaks, double spaces and spaces before punctuation go.
    tidy = re.sub(r"\s+([,.!?;:…])", r"\1", re.sub(r"\s+", " ", result)).strip()
    if tidy != result.strip():
        _add(repairs, REPAIRED_WHITESPACE)
    return tidy, repairs


def _strip_outer_quotes(text: str) -> str | None:
    if len(text) < 2 or text[0] not in _PAIRS or text[-1] != _PAIRS[text[0]]:
        return None
    inner = text[1:-1].strip()
    if text[0] == "«" and inner.count("«") != inner.count("»"):
        return None
    if text[0] in "\"'" and inner.count(text[0]) % 2:
        return None
    return inner


def _add(repairs: list[str], repair_name: str) -> None:
    if repair_name not in repairs:
        repairs.append(repair_name)


# ---------------------------------------------------------------- checks

_PLACEHOLDERS = [
    re.compile(r"[{}\[\]<>]"),
    re.compile(r"\$\w|%[sd]\b|%\(\w+\)"),
    re.compile(r"\b(?:undefined|null|none|nan|nil|todo|tbd)\b", re.IGNORECASE),
    re.compile(r"_{2,}|\bX{3,}\b|\.{4,}|\?{3,}"),
    re.compile(r"\b(?:имя\s+клиента|ваше\s+имя|название\s+(?:салона|услуги)|имя\s+мастера|client\s*name)\b", re.I),
    re.compile(r"\b(?:ИМЯ|НАЗВАНИЕ|УСЛУГА|САЛОН)\b"),
]
_MARKUP_LEFT = re.compile(r"[*#`|~\\]|(?<!\w)_|_(?!\w)")
_LINK = re.compile(
    r"https?://|www\.|@\w|\b[\w-]+\.(?:ru|com|net|org|рф|su|me|io|info|pro|site|online|shop)\b", re.IGNORECASE
)
_CYRILLIC = re.compile(r"[А-Яа-яЁё]")
_EMOJI = re.compile(
    "[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\u2300-\u23ff\u2190-\u21ff\u3030\u303d\u3297\u3299\u00a9\u00ae]"
)
_EMOJI_MODIFIERS = re.compile("[\U0001f3fb-\U0001f3ff\ufe0f\ufe0e\u200d\u20e3]")
_PERCENT = re.compile(
    r"(?P<value>\d+(?:[.,]\d+)?)\s*(?:%|процент\w*|проц\.)|(?P<words>[а-яё]+)(?:\s*-\s*|\s+)процент\w*",
    re.IGNORECASE,
)
_WORD_PERCENTS = {"десять": 10, "двадцать": 20}
_DISCOUNT_WORDS = re.compile(r"\b(?:скидк\w*|акци[яиюей]\w*|распродаж\w*|дешевл\w*|выгод\w*|спецпредложени\w*)", re.I)
_OFFER_WORDS = re.compile(r"\b(?:промокод\w*|бесплатн\w*|в\s+подарок|кэшбэк\w*|кешбек\w*|бонус\w*|баллы?)\b", re.I)
_PRICE = re.compile(r"₽|\$|€|\bруб(?:\.|л[а-яё]*)?(?![а-яё])|\bр\.(?=\s|$)|\bтыс(?:\.|яч[а-яё]*)", re.IGNORECASE)
_MONTHS = (
    r"январ[ьяюе]|феврал[ьяюе]|март[ауе]?|апрел[ьяюе]|ма[йяюе]|июн[ьяюе]|июл[ьяюе]|август[ауе]?|"
    r"сентябр[ьяюе]|октябр[ьяюе]|ноябр[ьяюе]|декабр[ьяюе]"
)
_DATE_WORDS = re.compile(
    rf"\b(?:\d{{1,2}}\s*(?:{_MONTHS})|(?:до|с|по)\s+(?:{_MONTHS})|до\s+конца\s+(?:месяца|недели|года)|"
    r"понедельник\w*|вторник\w*|сред[уы]|четверг\w*|пятниц\w*|суббот\w*|воскресень\w*|"
    r"только\s+(?:сегодня|до|в\s+эт\w+)|до\s+\d+)\b",
    re.IGNORECASE,
)
_NUMERIC_DATE = re.compile(r"\b\d{1,2}[./]\d{1,2}(?:[./]\d{2,4})?\b|\b(?:19|20)\d{2}\b|\b\d{1,2}:\d{2}\b")
_DIGITS = re.compile(r"\d")


def _check(text: str, *, step: Step, first_name: str | None, company_name: str | None) -> list[str]:
    if not text:
        return [EMPTY]
    reasons: list[str] = []
    own = _without(text, [company_name, first_name])
    if len(text) > min(MAX_MESSAGE_LENGTH, step.max_length):
        reasons.append(TOO_LONG)
    elif len(text) < MIN_LENGTH:
        reasons.append(TOO_SHORT)
    if any(pattern.search(own) for pattern in _PLACEHOLDERS):
        reasons.append(PLACEHOLDER)
    if _MARKUP_LEFT.search(own):
        reasons.append(MARKUP)
    if _LINK.search(own):
        reasons.append(LINK)
    if not _is_russian(own):
        reasons.append(NOT_RUSSIAN)
    if _count_emoji(text) > MAX_EMOJI:
        reasons.append(TOO_MANY_EMOJI)
    if not _EMOJI_MODIFIERS.sub("", _EMOJI.sub("", text)).rstrip().endswith("?"):
        reasons.append(NO_QUESTION)
    if first_name and not re.search(rf"(?<![\w-]){re.escape(first_name)}(?![\w-])", text):
        reasons.append(NO_NAME)
    reasons.extend(_check_offer(own, step))
    return reasons


def _without(text: str, known: list[str | None]) -> str:
    """The text with our own data (the salon's and the client's names) taken out, for checks on invention."""
    for fragment in known:
        if fragment and fragment.strip():
            # Whole words only: a salon called "0" must not turn "10%" into "1%".
            pattern = rf"(?<!\w){re.escape(fragment.strip())}(?!\w)"
            text = re.sub(pattern, " ", text, flags=re.IGNORECASE)
    return text


def _is_russian(text: str) -> bool:
    letters = [ch for ch in text if ch.isalpha()]
    cyrillic = sum(1 for ch in letters if _CYRILLIC.match(ch))
    return cyrillic >= 10 and cyrillic >= MIN_CYRILLIC_SHARE * len(letters)


def _count_emoji(text: str) -> int:
    return len(_EMOJI.findall(_EMOJI_MODIFIERS.sub("", text)))


def _check_offer(text: str, step: Step) -> list[str]:
    """The discount is the step's own (none, 10 %, 20 %); no other prices, dates, numbers or gifts are invented."""
    reasons: list[str] = []
    percents: list[float | None] = []
    for match in _PERCENT.finditer(text):
        if match.group("value"):
            percents.append(float(match.group("value").replace(",", ".")))
        else:  # "десять процентов"; any other word before "процентов" is not the step's discount
            percents.append(_WORD_PERCENTS.get(match.group("words").lower()))
    rest = _PERCENT.sub(" ", text)

    if step.discount_percent == 0:
        if percents or _DISCOUNT_WORDS.search(text):
            reasons.append(UNEXPECTED_DISCOUNT)
    elif not percents:
        reasons.append(DISCOUNT_MISSING)
    elif any(value != step.discount_percent for value in percents):
        reasons.append(DISCOUNT_WRONG)
    if _OFFER_WORDS.search(text):
        reasons.append(INVENTED_OFFER)
    if _PRICE.search(rest):
        reasons.append(PRICE)
    if _DATE_WORDS.search(rest) or _NUMERIC_DATE.search(rest):
        reasons.append(DATE)
    if _DIGITS.search(_NUMERIC_DATE.sub(" ", rest)) and PRICE not in reasons:
        reasons.append(INVENTED_NUMBER)
    return reasons
