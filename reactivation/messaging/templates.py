"""Template messages: three or more variants per step in natural Russian, one chosen per client and step.

Used when Gemini is not configured, fails, or answers something validation rejects. Every variant reads well with
and without the client's name, with and without the service, and with a service title that cannot be declined
("Ваша услуга: …"). A variant is rendered in its fullest form that passes validation: with the salon's name and the
service, then without the salon, then without the service; the plainest form always passes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from reactivation.core.vocabulary import Step
from reactivation.messaging.russian import clean_title, decline_title, mid_sentence
from reactivation.messaging.validation import validate_message

# A salon name longer than this does not fit in a greeting.
_MAX_SALON = 40
_SALON_JUNK = re.compile(r"\s{2,}|\b(?:undefined|null|none|nan)\b", re.IGNORECASE)
_SALON_PUNCTUATION = frozenset(" «»\"'’.,&+-–—!")


@dataclass(frozen=True)
class Variant:
    """One way to word a step's message. `{service}` is the declined title (accusative, after "на")."""

    greeting_named: str  # "{name}, добрый день!"
    greeting: str  # "Добрый день!"
    body_service: str  # "... записаться на {service}?"
    body_title: str  # the phrasing that needs no declension: "Ваша услуга: {title}. ..."
    body: str  # no service at all
    introduce: str = ""  # "Это {salon}." after the greeting, when the salon's name fits


@dataclass(frozen=True)
class TemplateMessage:
    text: str
    variant: str  # "gentle.2"


VARIANTS: dict[Step, tuple[Variant, ...]] = {
    Step.GENTLE: (
        # The seed's own, with the service declined.
        Variant(
            greeting_named="Привет, {name}!",
            greeting="Привет!",
            body_service="Давно не виделись 😊 Хотите снова записаться на {service}?",
            body_title="Давно не виделись 😊 Ваша услуга: {title}. Хотите снова записаться?",
            body="Давно не виделись 😊 Хотите снова к нам записаться?",
        ),
        Variant(
            greeting_named="{name}, добрый день!",
            greeting="Добрый день!",
            introduce="Это {salon}.",
            body_service="Давно вас не видели. Записать вас на {service}?",
            body_title="Давно вас не видели. Ваша услуга: {title}. Записать вас снова?",
            body="Давно вас не видели. Записать вас на удобное время?",
        ),
        Variant(
            greeting_named="{name}, здравствуйте!",
            greeting="Здравствуйте!",
            introduce="На связи {salon}.",
            body_service="Кажется, самое время снова прийти на {service}. Подобрать вам удобное время?",
            body_title="Ваша услуга: {title}. Кажется, самое время повторить. Подобрать вам удобное время?",
            body="Кажется, самое время снова заглянуть к нам. Подобрать вам удобное время?",
        ),
    ),
    Step.OFFER: (
        Variant(
            greeting_named="{name}, мы помним о вас!",
            greeting="Мы помним о вас!",
            body_service="Специально для вас скидка 10% на {service} 🎁 Записать вас?",
            body_title="Ваша услуга: {title}. Специально для вас скидка на неё 10% 🎁 Записать вас?",
            body="Специально для вас скидка 10% на следующий визит 🎁 Записать вас?",
        ),
        Variant(
            greeting_named="{name}, добрый день!",
            greeting="Добрый день!",
            introduce="Это {salon}.",
            body_service="Давно вас не было, поэтому дарим скидку 10% на {service}. Подобрать удобное время?",
            body_title="Ваша услуга: {title}. Давно вас не было, поэтому дарим на неё скидку 10%. "
            "Подобрать удобное время?",
            body="Давно вас не было, поэтому дарим скидку 10% на следующий визит. Подобрать удобное время?",
        ),
        Variant(
            greeting_named="{name}, здравствуйте!",
            greeting="Здравствуйте!",
            introduce="На связи {salon}.",
            body_service="Для вас действует скидка 10% на {service}. Когда вам удобно прийти?",
            body_title="Ваша услуга: {title}. Для вас на неё действует скидка 10%. Когда вам удобно прийти?",
            body="Для вас действует скидка 10% на следующий визит. Когда вам удобно прийти?",
        ),
    ),
    Step.WIN_BACK: (
        Variant(
            greeting_named="{name}, мы очень ценим вас как клиента!",
            greeting="Мы очень ценим вас как клиента!",
            body_service="Возвращайтесь, дарим скидку 20% на {service} 💙 Запишем вас?",
            body_title="Ваша услуга: {title}. Возвращайтесь, дарим на неё скидку 20% 💙 Запишем вас?",
            body="Возвращайтесь, дарим 20% скидку 💙 Запишем вас?",
        ),
        Variant(
            greeting_named="{name}, добрый день!",
            greeting="Добрый день!",
            introduce="Это {salon}.",
            body_service="Мы давно не виделись и будем рады снова видеть вас. Специально для вас скидка 20% "
            "на {service}. Записать вас на удобное время?",
            body_title="Мы давно не виделись и будем рады снова видеть вас. Ваша услуга: {title}, и на неё "
            "для вас скидка 20%. Записать вас на удобное время?",
            body="Мы давно не виделись и будем рады снова видеть вас. Специально для вас скидка 20% "
            "на следующий визит. Записать вас на удобное время?",
        ),
        Variant(
            greeting_named="{name}, здравствуйте!",
            greeting="Здравствуйте!",
            introduce="На связи {salon}.",
            body_service="Вы давно у нас не были, и нам хочется это исправить: дарим вам скидку 20% "
            "на {service}. Подобрать время для записи?",
            body_title="Ваша услуга: {title}. Вы давно у нас не были, поэтому дарим вам на неё скидку 20%. "
            "Подобрать время для записи?",
            body="Вы давно у нас не были, и нам хочется это исправить: дарим вам скидку 20% на следующий визит. "
            "Подобрать время для записи?",
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
) -> TemplateMessage:
    """The client's template message for the step, in the fullest form that passes validation."""
    return render_variant(
        step,
        variant_number(client_id, step),
        first_name=first_name,
        service_title=service_title,
        company_name=company_name,
    )


def render_variant(
    step: Step,
    number: int,
    *,
    first_name: str | None,
    service_title: str | None,
    company_name: str | None,
) -> TemplateMessage:
    """Variant `number` (1-based) of the step's message; raises ValueError for a variant that does not exist."""
    variants = VARIANTS[step]
    if not 1 <= number <= len(variants):
        raise ValueError(f"{step.message_type} has variants 1..{len(variants)}, not {number}")
    variant = variants[number - 1]
    variant_id = f"{step.message_type}.{number}"
    salon = _salon_phrase(company_name)
    title = clean_title(service_title)
    declined = decline_title(title) if title else None

    bodies: list[str] = []
    if declined:
        bodies.append(variant.body_service.format(service=declined))
    elif title:
        bodies.append(variant.body_title.format(title=title))
    bodies.append(variant.body)
    intros = [variant.introduce.format(salon=salon)] if salon and variant.introduce else []
    intros.append("")
    names = [first_name, None] if first_name else [None]

    for name in names:
        greeting = variant.greeting_named.format(name=name) if name else variant.greeting
        for body in bodies:
            for intro in intros:
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
