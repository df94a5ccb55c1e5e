"""One prompt for several clients' messages, the answer's schema, and each answered item judged on its own (pure).

Items are numbered by their position in the request and the answer is a JSON array of `{"n": position, "text": ...}`:
never a client id, which would be one more personal datum leaving the country and nothing the model needs. Each item
line carries only the step, the first name and the service title; the salon's name heads its group of items.

An item is usable when it passes validate_message for its own step and name, names no other client of the batch (a
name in someone else's message is a leak), and does not repeat another item's wording: with the names (the client's
and the salon's) taken out, two equal texts are one text sent twice.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby

from google.genai import types

from reactivation.core.vocabulary import Step
from reactivation.messaging.gemini import PromptFacts
from reactivation.messaging.russian import clean_title
from reactivation.messaging.validation import ValidationResult, validate_message

MISSING = "missing"
DUPLICATE = "rejected:duplicate_wording"
OTHER_CLIENT = "rejected:other_client_name"
_MAX_SALON_IN_PROMPT = 80

SYSTEM_INSTRUCTION = (
    "Ты администратор салона красоты и пишешь клиентам в WhatsApp. Пишешь по-русски, коротко, тепло и "
    "по-человечески, обращаешься на «вы». Отвечаешь только JSON-массивом сообщений, без пояснений и разметки."
)

_INSTRUCTIONS = {
    Step.GENTLE: "тон лёгкий, дружелюбный, не навязчивый; до 150 символов; без скидок и акций; "
    "избегай слов «скучаем» и «ждём» (слишком пафосно)",
    Step.OFFER: "тон дружелюбный, с акцентом на выгоду; до 200 символов; скидка 10% как специальное предложение",
    Step.WIN_BACK: "тон искренний, заботливый, персональный; до 250 символов; скидка 20% как знак признательности",
}


def _salon(name: str) -> str:
    return " ".join(name.split())[:_MAX_SALON_IN_PROMPT] or "салон красоты"


def item_line(position: int, facts: PromptFacts) -> str:
    """One item: its number, the first name, the service and the step; nothing else about the client."""
    name = facts.first_name or "неизвестно"
    service = clean_title(facts.service_title) or "не указана"
    return f"{position}. Имя: {name}. Последняя услуга: {service}. Тип: {facts.step.message_type}."


def build_batch_prompt(items: Sequence[PromptFacts]) -> str:
    """The user turn for `items` (numbered 1..n in this order), grouped under their salon's name."""
    count = len(items)
    lines = [
        f"Напиши {count} персональных сообщений в WhatsApp клиентам салонов, которым пора снова прийти: "
        "по одному на каждый пункт ниже, каждое своему клиенту.",
    ]
    numbered = list(enumerate(items, start=1))
    for salon, group in groupby(numbered, key=lambda pair: _salon(pair[1].company_name)):
        lines += ["", f"Салон: {salon}"]
        lines += [item_line(position, facts) for position, facts in group]
    steps = sorted({facts.step for facts in items})
    lines += ["", "Типы сообщений:"]
    lines += [f"- {step.message_type}: {_INSTRUCTIONS[step]}." for step in steps]
    lines += [
        "",
        "Важно:",
        "- Обращайся к клиенту по имени из его пункта, в именительном падеже; если имя неизвестно, поздоровайся "
        "без имени и не придумывай его. Не упоминай других клиентов.",
        "- Назови в сообщении салон из его группы, чтобы клиент знал, кто пишет.",
        "- Не пиши, что клиент «давно» не приходил: с его последнего визита могло пройти и две недели.",
        "- Название услуги склоняй по правилам русского языка и пиши со строчной буквы внутри предложения.",
        "- Сообщения не должны повторять друг друга: разные приветствия, слова и построение фраз.",
        "- Будь естественным, как живой человек. Не больше 1–2 эмодзи.",
        "- Не придумывай цены, сроки и даты акций, телефоны, адреса и ссылки; других скидок и подарков не обещай.",
        "- Каждое сообщение заканчивай вопросом о записи.",
        "",
        f'Ответ: JSON-массив из {count} объектов {{"n": номер пункта, "text": текст сообщения}}, '
        "по одному на каждый пункт, в порядке пунктов.",
    ]
    return "\n".join(lines)


def response_schema(count: int) -> types.Schema:
    """An array of exactly `count` objects {n: the item's position, text: its message}."""
    item = types.Schema(
        type=types.Type.OBJECT,
        properties={"n": types.Schema(type=types.Type.INTEGER), "text": types.Schema(type=types.Type.STRING)},
        required=["n", "text"],
        property_ordering=["n", "text"],
    )
    return types.Schema(type=types.Type.ARRAY, items=item, min_items=count, max_items=count)


def parse_items(text: str, count: int) -> dict[int, str] | None:
    """Position (1..count) → text from a JSON answer; None when the answer is not such an array at all.

    An item without a usable position or text is left out (it is missing); a position answered twice keeps its first.
    """
    try:
        payload = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(payload, list):
        return None
    found: dict[int, str] = {}
    for element in payload:
        if not isinstance(element, Mapping):
            continue
        position, message = element.get("n"), element.get("text")
        if isinstance(position, bool) or not isinstance(position, int) or not isinstance(message, str):
            continue
        if 1 <= position <= count and position not in found:
            found[position] = message
    return found


@dataclass(frozen=True)
class Verdict:
    """An item's validated text, or why it is unusable ("missing", "rejected:...")."""

    result: ValidationResult | None
    reason: str | None

    @property
    def ok(self) -> bool:
        return self.result is not None


def wording(text: str, facts: PromptFacts) -> str:
    """The text with the names taken out, lower-cased, letters and digits only: what two items must not share."""
    stripped = text
    for name in (facts.first_name, facts.company_name):
        if name and name.strip():
            stripped = re.sub(rf"(?<!\w){re.escape(name.strip())}(?!\w)", " ", stripped, flags=re.IGNORECASE)
    return " ".join(re.findall(r"\w+", stripped.lower()))


def _names_another(text: str, own: str | None, others: Sequence[str | None]) -> bool:
    # Case-sensitive, as validate_message looks for the own name: "Вера" is a name, "вера" a word.
    return any(name and name != own and re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) for name in others)


def judge_items(
    answers: Mapping[int, str],
    items: Sequence[PromptFacts],
    *,
    taken: Sequence[str] = (),
    others: Sequence[str | None] = (),
) -> list[Verdict]:
    """A verdict per item (in order): `answers` by position (1-based); `taken` is wording already written for other
    items of the batch, `others` the first names of the batch's other clients."""
    names = [facts.first_name for facts in items]
    seen = set(taken)
    verdicts = []
    for position, facts in enumerate(items, start=1):
        text = answers.get(position)
        if text is None:
            verdicts.append(Verdict(None, MISSING))
            continue
        result = validate_message(text, step=facts.step, first_name=facts.first_name, company_name=facts.company_name)
        if not result.ok:
            verdicts.append(Verdict(None, result.reason))
            continue
        if _names_another(result.text, facts.first_name, [*names[: position - 1], *names[position:], *others]):
            verdicts.append(Verdict(None, OTHER_CLIENT))
            continue
        key = wording(result.text, facts)
        if key in seen:
            verdicts.append(Verdict(None, DUPLICATE))
            continue
        seen.add(key)
        verdicts.append(Verdict(result, None))
    return verdicts
