"""Template messages: three variants per step in natural Russian, one chosen per client and step.

Used when Gemini is not configured, fails, or answers something validation rejects. Each variant speaks in one
register (always «вы»), names the salon, and reads well with and without the client's name, with and without the
service, and with a service title that cannot be declined ("Ваша услуга: …"). What it says about the absence
follows how long it really has been, against the client's own interval: "давно" only after a long absence, "пора
снова" while the client is about due (a weekly styling a week and a half after the last visit). A variant is
rendered in its fullest form that passes validation: with the salon's name and the service, then without the
service, and only then without the salon (the client should know who writes); the plainest form always passes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum

from reactivation.core.vocabulary import Step
from reactivation.messaging.russian import clean_title, decline_title, mid_sentence
from reactivation.messaging.validation import validate_message

# A salon name longer than this does not fit in a greeting.
_MAX_SALON = 40
_SALON_JUNK = re.compile(r"\s{2,}|\b(?:undefined|null|none|nan)\b", re.IGNORECASE)
_SALON_PUNCTUATION = frozenset(" «»\"'’.,&+-–—!")
# "Давно" is said after a month at least, and only once the client has stayed away half as long again as their
# own interval: before that they are simply due ("пора"), whatever the step.
LONG_ABSENCE_DAYS = 30
LONG_ABSENCE_INTERVALS = 1.5


class Absence(StrEnum):
    """How the absence reads to the client: about due for the next visit, or away for long."""

    DUE = "due"
    LONG = "long"


def absence(days_inactive: int | None, interval_days: int | None) -> Absence:
    """Long only after LONG_ABSENCE_DAYS and 1.5 × the client's interval; unknown days read as due (the safe word)."""
    if days_inactive is None:
        return Absence.DUE
    interval = interval_days if interval_days and interval_days > 0 else days_inactive
    if days_inactive >= LONG_ABSENCE_DAYS and days_inactive >= LONG_ABSENCE_INTERVALS * interval:
        return Absence.LONG
    return Absence.DUE


@dataclass(frozen=True)
class Wording:
    """The body of a message. `{service}` is the declined title (accusative, after "на")."""

    service: str  # "... записаться на {service}?"
    title: str  # the phrasing that needs no declension: "Ваша услуга: {title}. ..."
    plain: str  # no service at all


@dataclass(frozen=True)
class Variant:
    """One way to word a step's message, in one register, with its body for each kind of absence."""

    greeting_named: str  # "{name}, добрый день!"
    greeting: str  # "Добрый день!"
    introduce: str  # "Это {salon}." after the greeting
    due: Wording
    long: Wording

    def wording(self, kind: Absence) -> Wording:
        return self.long if kind is Absence.LONG else self.due


@dataclass(frozen=True)
class TemplateMessage:
    text: str
    variant: str  # "gentle.2.due"


_OFFER_10 = Wording(
    service="Специально для вас скидка 10% на {service} 🎁 Записать вас?",
    title="Ваша услуга: {title}. Специально для вас скидка на неё 10% 🎁 Записать вас?",
    plain="Специально для вас скидка 10% на следующий визит 🎁 Записать вас?",
)
_OFFER_10_DIRECT = Wording(
    service="Для вас действует скидка 10% на {service}. Когда вам удобно прийти?",
    title="Ваша услуга: {title}. Для вас на неё действует скидка 10%. Когда вам удобно прийти?",
    plain="Для вас действует скидка 10% на следующий визит. Когда вам удобно прийти?",
)

VARIANTS: dict[Step, tuple[Variant, ...]] = {
    Step.GENTLE: (
        # The seed's own ("Давно не виделись 😊 Хотите снова записаться…"), in the «вы» its question uses.
        Variant(
            greeting_named="{name}, здравствуйте!",
            greeting="Здравствуйте!",
            introduce="Это {salon}.",
            due=Wording(
                service="Кажется, пора снова на {service} 😊 Записать вас?",
                title="Ваша услуга: {title}. Кажется, пора повторить 😊 Записать вас?",
                plain="Кажется, пора снова к нам 😊 Записать вас на удобное время?",
            ),
            long=Wording(
                service="Давно не виделись 😊 Хотите снова записаться на {service}?",
                title="Давно не виделись 😊 Ваша услуга: {title}. Хотите снова записаться?",
                plain="Давно не виделись 😊 Хотите снова к нам записаться?",
            ),
        ),
        Variant(
            greeting_named="{name}, добрый день!",
            greeting="Добрый день!",
            introduce="Это {salon}.",
            due=Wording(
                service="Подошло время следующего визита. Записать вас на {service}?",
                title="Подошло время следующего визита. Ваша услуга: {title}. Записать вас снова?",
                plain="Подошло время следующего визита. Записать вас на удобное время?",
            ),
            long=Wording(
                service="Давно вас не видели. Записать вас на {service}?",
                title="Давно вас не видели. Ваша услуга: {title}. Записать вас снова?",
                plain="Давно вас не видели. Записать вас на удобное время?",
            ),
        ),
        Variant(
            greeting_named="{name}, здравствуйте!",
            greeting="Здравствуйте!",
            introduce="На связи {salon}.",
            due=Wording(
                service="Кажется, самое время снова прийти на {service}. Подобрать вам удобное время?",
                title="Ваша услуга: {title}. Кажется, самое время повторить. Подобрать вам удобное время?",
                plain="Кажется, самое время снова заглянуть к нам. Подобрать вам удобное время?",
            ),
            long=Wording(
                service="Вы у нас давно не были: самое время прийти на {service}. Подобрать вам удобное время?",
                title="Ваша услуга: {title}. Вы у нас давно не были: самое время повторить. Подобрать время?",
                plain="Вы у нас давно не были: самое время заглянуть. Подобрать вам удобное время?",
            ),
        ),
    ),
    Step.OFFER: (
        Variant(
            greeting_named="{name}, мы помним о вас!",
            greeting="Мы помним о вас!",
            introduce="Это {salon}.",
            due=_OFFER_10,
            long=_OFFER_10,
        ),
        Variant(
            greeting_named="{name}, добрый день!",
            greeting="Добрый день!",
            introduce="Это {salon}.",
            due=Wording(
                service="Пора снова на {service}, и для вас скидка 10%. Подобрать удобное время?",
                title="Ваша услуга: {title}. Пора повторить, и для вас на неё скидка 10%. Подобрать удобное время?",
                plain="Пора снова к нам, и для вас скидка 10% на следующий визит. Подобрать удобное время?",
            ),
            long=Wording(
                service="Давно вас не было, поэтому дарим скидку 10% на {service}. Подобрать удобное время?",
                title="Ваша услуга: {title}. Давно вас не было, поэтому дарим на неё скидку 10%. "
                "Подобрать удобное время?",
                plain="Давно вас не было, поэтому дарим скидку 10% на следующий визит. Подобрать удобное время?",
            ),
        ),
        Variant(
            greeting_named="{name}, здравствуйте!",
            greeting="Здравствуйте!",
            introduce="На связи {salon}.",
            due=_OFFER_10_DIRECT,
            long=_OFFER_10_DIRECT,
        ),
    ),
    Step.WIN_BACK: (
        Variant(
            greeting_named="{name}, мы очень ценим вас как клиента!",
            greeting="Мы очень ценим вас как клиента!",
            introduce="Это {salon}.",
            due=Wording(
                service="Дарим вам скидку 20% на {service} 💙 Запишем вас?",
                title="Ваша услуга: {title}. Дарим вам на неё скидку 20% 💙 Запишем вас?",
                plain="Дарим вам скидку 20% на следующий визит 💙 Запишем вас?",
            ),
            long=Wording(
                service="Возвращайтесь, дарим скидку 20% на {service} 💙 Запишем вас?",
                title="Ваша услуга: {title}. Возвращайтесь, дарим на неё скидку 20% 💙 Запишем вас?",
                plain="Возвращайтесь, дарим 20% скидку 💙 Запишем вас?",
            ),
        ),
        Variant(
            greeting_named="{name}, добрый день!",
            greeting="Добрый день!",
            introduce="Это {salon}.",
            due=Wording(
                service="Будем рады снова видеть вас: специально для вас скидка 20% на {service}. "
                "Записать вас на удобное время?",
                title="Будем рады снова видеть вас. Ваша услуга: {title}, и на неё для вас скидка 20%. "
                "Записать вас на удобное время?",
                plain="Будем рады снова видеть вас: специально для вас скидка 20% на следующий визит. "
                "Записать вас на удобное время?",
            ),
            long=Wording(
                service="Мы давно не виделись и будем рады снова видеть вас. Специально для вас скидка 20% "
                "на {service}. Записать вас на удобное время?",
                title="Мы давно не виделись и будем рады снова видеть вас. Ваша услуга: {title}, и на неё "
                "для вас скидка 20%. Записать вас на удобное время?",
                plain="Мы давно не виделись и будем рады снова видеть вас. Специально для вас скидка 20% "
                "на следующий визит. Записать вас на удобное время?",
            ),
        ),
        Variant(
            greeting_named="{name}, здравствуйте!",
            greeting="Здравствуйте!",
            introduce="На связи {salon}.",
            due=Wording(
                service="Пора снова на {service}, и мы дарим вам скидку 20%. Подобрать время для записи?",
                title="Ваша услуга: {title}. Пора повторить, и мы дарим вам на неё скидку 20%. "
                "Подобрать время для записи?",
                plain="Пора снова к нам, и мы дарим вам скидку 20% на следующий визит. Подобрать время для записи?",
            ),
            long=Wording(
                service="Вы давно у нас не были, и нам хочется это исправить: дарим вам скидку 20% "
                "на {service}. Подобрать время для записи?",
                title="Ваша услуга: {title}. Вы давно у нас не были, поэтому дарим вам на неё скидку 20%. "
                "Подобрать время для записи?",
                plain="Вы давно у нас не были, и нам хочется это исправить: дарим вам скидку 20% на следующий "
                "визит. Подобрать время для записи?",
            ),
        ),
    ),
}


def variant_number(client_id: int, step: Step) -> int:
    """The 1-based variant a client gets for a step: stable across processes and runs (not Python's hash())."""
    digest = hashlib.sha256(f"{client_id}:{int(step)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % len(VARIANTS[step]) + 1


def render_template(
    step: Step,
    *,
    client_id: int,
    first_name: str | None,
    service_title: str | None,
    company_name: str | None,
    days_inactive: int | None = None,
    interval_days: int | None = None,
) -> TemplateMessage:
    """The client's template message for the step, in the fullest form that passes validation, worded for how long
    it has been against the client's own interval."""
    return render_variant(
        step,
        variant_number(client_id, step),
        first_name=first_name,
        service_title=service_title,
        company_name=company_name,
        kind=absence(days_inactive, interval_days),
    )


def render_variant(
    step: Step,
    number: int,
    *,
    first_name: str | None,
    service_title: str | None,
    company_name: str | None,
    kind: Absence = Absence.DUE,
) -> TemplateMessage:
    """Variant `number` (1-based) of the step's message; raises ValueError for a variant that does not exist."""
    variants = VARIANTS[step]
    if not 1 <= number <= len(variants):
        raise ValueError(f"{step.message_type} has variants 1..{len(variants)}, not {number}")
    variant = variants[number - 1]
    wording = variant.wording(kind)
    variant_id = f"{step.message_type}.{number}.{kind}"
    salon = _salon_phrase(company_name)
    title = clean_title(service_title)
    declined = decline_title(title) if title else None

    bodies: list[str] = []
    if declined:
        bodies.append(wording.service.format(service=declined))
    elif title:
        bodies.append(wording.title.format(title=title))
    bodies.append(wording.plain)
    intros = [variant.introduce.format(salon=salon)] if salon else []
    intros.append("")
    names = [first_name, None] if first_name else [None]

    for name in names:
        greeting = variant.greeting_named.format(name=name) if name else variant.greeting
        # The salon is given up last: a message must say who writes before it says which service.
        for intro in intros:
            for body in bodies:
                text = " ".join(part for part in (greeting, intro, body) if part)
                result = validate_message(text, step=step, first_name=name, company_name=company_name)
                if result.ok:
                    return TemplateMessage(text=result.text, variant=variant_id)
    # Unreachable for the names `first_name()` returns; the property tests hold every variant to it.
    raise RuntimeError(f"template {variant_id} fails validation even in its plainest form")


def _salon_phrase(company_name: str | None) -> str | None:
    """The salon as shown mid-sentence: "Салон «Бархат»" -> "салон «Бархат»", "Точка красоты" -> "«Точка красоты»".

    Only a name that needs no cleaning is shown: the message must contain it exactly as the salon spells it, so
    that validation knows its digits and Latin letters are the salon's own and not invented.
    """
    if not company_name:
        return None
    name = company_name.strip()
    if (
        not name
        or len(name) > _MAX_SALON
        or _SALON_JUNK.search(name)
        or not re.search(r"[^\W\d_]{2}", name)
        or any(not (ch.isalnum() or ch in _SALON_PUNCTUATION) for ch in name)
    ):
        return None
    if "«" in name or '"' in name:
        return mid_sentence(name)
    return f"«{name}»"
