from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reactivation.core.vocabulary import Step
from reactivation.messaging.validation import (
    DATE,
    DISCOUNT_MISSING,
    DISCOUNT_WRONG,
    EMPTY,
    INVENTED_NUMBER,
    INVENTED_OFFER,
    LINK,
    MARKUP,
    NO_NAME,
    NO_QUESTION,
    NOT_RUSSIAN,
    PLACEHOLDER,
    PRICE,
    REPAIRED_MARKUP,
    REPAIRED_NOTE,
    REPAIRED_PREAMBLE,
    REPAIRED_QUOTES,
    REPAIRED_WHITESPACE,
    TOO_LONG,
    TOO_MANY_EMOJI,
    TOO_SHORT,
    UNEXPECTED_DISCOUNT,
    validate_message,
)

NAME = "Мария"
SALON = "Салон «Бархат»"

# Messages that may be sent as they are, per step (the name is "Мария" where one is used).
GOOD: dict[Step, list[str]] = {
    Step.GENTLE: [
        "Мария, добрый день! Давно вас не видели. Записать вас на мужскую стрижку?",
        "Привет, Мария! Давно не виделись 😊 Хотите снова записаться на маникюр с покрытием гель-лак?",
        "Мария, здравствуйте! Кажется, самое время обновить стрижку. Подобрать вам удобное время?",
        "Мария, добрый день! Это салон «Бархат». Как вам последняя укладка? Хотите повторить?",
        "Мария, здравствуйте! Давно вас у нас не было. Записать вас на педикюр на этой неделе?",
        "Мария, добрый вечер! Пора освежить окрашивание волос 💇‍♀️ Когда вам удобно прийти?",
        "Мария, привет! Как дела? Может, пора на чистку лица? 😊",
        "Мария, добрый день!\nДавно вас не видели.\nЗаписать вас снова?",
    ],
    Step.OFFER: [
        "Мария, мы помним о вас! Специально для вас скидка 10% на мужскую стрижку 🎁 Записать вас?",
        "Мария, добрый день! Дарим скидку 10 % на следующий визит. Подобрать удобное время?",
        "Мария, здравствуйте! Для вас действует скидка 10 процентов на маникюр. Когда вам удобно прийти?",
        "Мария, добрый день! На коррекцию бровей для вас скидка десять процентов. Записать вас?",
        "Мария, добрый день! Давно вас не было, поэтому дарим −10% на окрашивание. Записать вас?",
    ],
    Step.WIN_BACK: [
        "Мария, мы очень ценим вас как клиента! Возвращайтесь, дарим скидку 20% на стрижку 💙 Запишем вас?",
        "Мария, добрый день! Мы будем рады снова вас видеть и дарим скидку 20 % на любую процедуру. Записать вас?",
        "Мария, здравствуйте! Вы давно у нас не были — дарим вам скидку двадцать процентов. Подобрать время?",
        "Мария, добрый день! Специально для вас 20% на маникюр с покрытием гель-лак. Когда вам удобно?",
    ],
}
ALL_GOOD = [(step, text) for step, texts in GOOD.items() for text in texts]


@pytest.mark.parametrize(("step", "text"), ALL_GOOD)
def test_good_messages_pass_untouched(step: Step, text: str) -> None:
    # given a message that follows every rule / when
    result = validate_message(text, step=step, first_name=NAME, company_name=SALON)
    # then it passes, unchanged apart from line breaks
    assert result.ok, result.reasons
    assert result.text == " ".join(text.split())


WRAPPERS = [
    ("«{}»", REPAIRED_QUOTES),
    ('"{}"', REPAIRED_QUOTES),
    ("“{}”", REPAIRED_QUOTES),
    ("„{}“", REPAIRED_QUOTES),
    ("'{}'", REPAIRED_QUOTES),
    ("Вот сообщение:\n{}", REPAIRED_PREAMBLE),
    ("Вот сообщение: {}", REPAIRED_PREAMBLE),
    ("Вот вариант сообщения для клиента:\n\n{}", REPAIRED_PREAMBLE),
    ("Конечно! Вот персональное сообщение:\n{}", REPAIRED_PREAMBLE),
    ("Сообщение:\n{}", REPAIRED_PREAMBLE),
    ("Текст сообщения: {}", REPAIRED_PREAMBLE),
    ("Here is the message:\n{}", REPAIRED_PREAMBLE),
    ("Sure! Here's your message: {}", REPAIRED_PREAMBLE),
    ("# Сообщение для клиента\n{}", REPAIRED_PREAMBLE),
    ("## WhatsApp\n\n{}", REPAIRED_PREAMBLE),
    ("Вот сообщение:\n«{}»", REPAIRED_QUOTES),
    ('Вот сообщение: "{}"', REPAIRED_QUOTES),
    ("```\n{}\n```", REPAIRED_MARKUP),
    ("```text\n{}\n```", REPAIRED_MARKUP),
    ("{} (98 символов)", REPAIRED_NOTE),
    ("{}\n\n(длина 120 символов)", REPAIRED_NOTE),
    ("   {}   ", None),
    ("\n\n{}\n\n", None),
    ("{}\u200b", None),
]


@pytest.mark.parametrize(("step", "text"), ALL_GOOD[::2])
@pytest.mark.parametrize(("wrapper", "repair"), WRAPPERS)
def test_small_defects_are_repaired(step: Step, text: str, wrapper: str, repair: str | None) -> None:
    # given a good message wrapped the way models wrap answers / when
    result = validate_message(wrapper.format(text), step=step, first_name=NAME, company_name=SALON)
    # then the wrapping is gone and the message passes
    assert result.ok, result.reasons
    assert result.text == " ".join(text.split())
    if repair:
        assert repair in result.repairs


CLEAN = "Мария, добрый день! Давно вас не видели. Записать вас?"


@pytest.mark.parametrize(
    "raw",
    [
        "**Мария**, добрый день! Давно вас не видели. Записать вас?",
        "Мария, добрый день! __Давно__ вас не видели. Записать вас?",
        "Мария, добрый день! *Давно* вас не видели. Записать вас?",
        "Мария, добрый день! _Давно_ вас не видели. Записать вас?",
        "Мария, добрый день! `Давно` вас не видели. Записать вас?",
        "Мария,  добрый   день !  Давно вас не видели .  Записать вас ?",
        "Мария, добрый день!\n\n\nДавно вас не видели.\tЗаписать вас?",
    ],
)
def test_markup_and_whitespace_are_repaired(raw: str) -> None:
    result = validate_message(raw, step=Step.GENTLE, first_name=NAME)
    assert result.ok, result.reasons
    assert result.text == CLEAN
    assert {REPAIRED_MARKUP, REPAIRED_WHITESPACE} & set(result.repairs)


BASE = "Мария, добрый день! Давно вас не видели. Записать вас на стрижку?"
BASE_OFFER = "Мария, добрый день! Дарим скидку 10% на стрижку. Записать вас?"
BASE_WIN_BACK = "Мария, добрый день! Дарим скидку 20% на стрижку. Записать вас?"
BASES = {Step.GENTLE: BASE, Step.OFFER: BASE_OFFER, Step.WIN_BACK: BASE_WIN_BACK}
MIDDLE = "Давно вас не видели."


def _insert(step: Step, fragment: str) -> str:
    """The step's base message with `fragment` put in the middle."""
    greeting, rest = BASES[step].split("! ", 1)
    return f"{greeting}! {fragment} {rest}"


PLACEHOLDERS = [
    "{name}",
    "{{name}}",
    "${name}",
    "[Имя]",
    "[имя клиента]",
    "<имя>",
    "<Name>",
    "undefined",
    "None",
    "null",
    "NaN",
    "%s",
    "Имя клиента,",
    "Название салона",
    "XXX",
    "____",
    "НАЗВАНИЕ",
]
ENGLISH = [
    "Hi Maria! We haven't seen you for a while. Would you like to book again?",
    "Maria, we miss you! Book your next haircut today?",
    "Hello! Long time no see 😊 Want to book a manicure?",
    "Мария, hello! We have a special offer for you, would you like to book a haircut?",
]
PRICES = ["Стрижка стоит 1500 ₽.", "Всего 1500 руб.", "Цена 1 500 рублей.", "Всего $20.", "От 2 тыс."]
DATES = [
    "Акция действует до 31 марта.",
    "Ждём вас 15.03.",
    "Свободно в пятницу.",
    "Только до конца месяца.",
    "Предложение 2026 года.",
    "Есть окно в 14:30.",
    "Ждём вас 5 апреля.",
    "Есть время в субботу.",
]
NUMBERS = ["Наш телефон +7 900 123-45-67.", "У нас 3 новых мастера.", "Звоните 8800.", "Уже 5 лет с вами."]
LINKS = ["Подробнее на https://barhat.ru.", "Сайт: barhat.ru.", "Пишите в @barhat_salon.", "www.barhat.com"]
MARKUP_LEFT = ["# Привет", "Строка | таблица", "Цитата ~зачёркнуто~", "Слэш \\ тут", "Звезда * одна"]
OFFER_INVENTIONS = ["Дарим бесплатный уход.", "Ваш промокод ждёт.", "Начислим бонусы.", "Маска в подарок."]


@pytest.mark.parametrize("step", list(Step))
@pytest.mark.parametrize("placeholder", PLACEHOLDERS)
def test_placeholders_are_rejected(step: Step, placeholder: str) -> None:
    result = validate_message(_insert(step, placeholder), step=step, first_name=NAME)
    assert PLACEHOLDER in result.reasons


@pytest.mark.parametrize("text", ENGLISH)
def test_english_is_rejected(text: str) -> None:
    result = validate_message(text, step=Step.GENTLE, first_name=None)
    assert NOT_RUSSIAN in result.reasons


@pytest.mark.parametrize("step", list(Step))
@pytest.mark.parametrize("fragment", PRICES)
def test_invented_prices_are_rejected(step: Step, fragment: str) -> None:
    result = validate_message(_insert(step, fragment), step=step, first_name=NAME)
    assert PRICE in result.reasons


@pytest.mark.parametrize("step", list(Step))
@pytest.mark.parametrize("fragment", DATES)
def test_invented_dates_are_rejected(step: Step, fragment: str) -> None:
    result = validate_message(_insert(step, fragment), step=step, first_name=NAME)
    assert DATE in result.reasons


@pytest.mark.parametrize("step", list(Step))
@pytest.mark.parametrize("fragment", NUMBERS)
def test_invented_numbers_are_rejected(step: Step, fragment: str) -> None:
    result = validate_message(_insert(step, fragment), step=step, first_name=NAME)
    assert INVENTED_NUMBER in result.reasons


@pytest.mark.parametrize("step", list(Step))
@pytest.mark.parametrize("fragment", LINKS)
def test_links_are_rejected(step: Step, fragment: str) -> None:
    result = validate_message(_insert(step, fragment), step=step, first_name=NAME)
    assert LINK in result.reasons


@pytest.mark.parametrize("fragment", MARKUP_LEFT)
def test_markup_that_is_not_a_wrapper_is_rejected(fragment: str) -> None:
    result = validate_message(_insert(Step.GENTLE, fragment), step=Step.GENTLE, first_name=NAME)
    assert MARKUP in result.reasons


@pytest.mark.parametrize("step", list(Step))
@pytest.mark.parametrize("fragment", OFFER_INVENTIONS)
def test_invented_gifts_are_rejected(step: Step, fragment: str) -> None:
    result = validate_message(_insert(step, fragment), step=step, first_name=NAME)
    assert INVENTED_OFFER in result.reasons


@pytest.mark.parametrize(
    "text",
    [
        "Мария, добрый день! Дарим скидку 10% на стрижку. Записать вас?",
        "Мария, добрый день! У нас скидки на стрижку. Записать вас?",
        "Мария, добрый день! Сейчас акция на стрижку. Записать вас?",
        "Мария, добрый день! Дарим 5% на стрижку. Записать вас?",
        "Мария, добрый день! Спецпредложение на стрижку. Записать вас?",
    ],
)
def test_a_gentle_message_offers_no_discount(text: str) -> None:
    result = validate_message(text, step=Step.GENTLE, first_name=NAME)
    assert UNEXPECTED_DISCOUNT in result.reasons


@pytest.mark.parametrize(
    ("step", "text", "reason"),
    [
        (Step.OFFER, "Мария, добрый день! Давно вас не видели. Записать вас на стрижку?", DISCOUNT_MISSING),
        (Step.OFFER, "Мария, добрый день! Дарим скидку на стрижку. Записать вас?", DISCOUNT_MISSING),
        (Step.OFFER, "Мария, добрый день! Дарим скидку 15% на стрижку. Записать вас?", DISCOUNT_WRONG),
        (Step.OFFER, "Мария, добрый день! Дарим скидку 20% на стрижку. Записать вас?", DISCOUNT_WRONG),
        (Step.OFFER, "Мария, добрый день! Скидка 10%, а на второй визит 20%. Записать вас?", DISCOUNT_WRONG),
        (Step.OFFER, "Мария, добрый день! Дарим скидку пять процентов. Записать вас?", DISCOUNT_WRONG),
        (Step.WIN_BACK, "Мария, добрый день! Давно вас не видели. Записать вас на стрижку?", DISCOUNT_MISSING),
        (Step.WIN_BACK, "Мария, добрый день! Дарим скидку 10% на стрижку. Записать вас?", DISCOUNT_WRONG),
        (Step.WIN_BACK, "Мария, добрый день! Дарим скидку 25% на стрижку. Записать вас?", DISCOUNT_WRONG),
        (Step.WIN_BACK, "Мария, добрый день! Дарим скидку 50 % на стрижку. Записать вас?", DISCOUNT_WRONG),
        (Step.WIN_BACK, "Мария, добрый день! Дарим скидку десять процентов. Записать вас?", DISCOUNT_WRONG),
    ],
)
def test_the_discount_is_the_steps_own(step: Step, text: str, reason: str) -> None:
    result = validate_message(text, step=step, first_name=NAME)
    assert reason in result.reasons


@pytest.mark.parametrize("step", list(Step))
def test_too_long_for_the_step_is_rejected(step: Step) -> None:
    # given the step's base message padded one character past the step's limit
    base = BASES[step]
    filler = " Очень" * ((step.max_length - len(base)) // 6 + 1)
    text = _insert(step, filler.strip())
    assert len(text) > step.max_length
    # when / then
    assert TOO_LONG in validate_message(text, step=step, first_name=NAME).reasons


@pytest.mark.parametrize("step", list(Step))
def test_exactly_at_the_limit_passes(step: Step) -> None:
    base = BASES[step]
    text = _insert(step, "Ну" + "у" * (step.max_length - len(base) - 4) + ".")
    assert len(text) == step.max_length
    assert validate_message(text, step=step, first_name=NAME).ok


def test_four_hundred_characters_are_rejected() -> None:
    text = "Мария, добрый день! " + "Давно вас не видели. " * 19 + "Записать вас?"
    assert len(text) > 400
    for step in Step:
        assert TOO_LONG in validate_message(text, step=step, first_name=NAME).reasons


def test_a_huge_answer_is_rejected_without_being_read() -> None:
    result = validate_message("Мария, " + "а" * 100_000 + "?", step=Step.GENTLE, first_name=NAME)
    assert result.reasons == (TOO_LONG,)
    assert len(result.text) <= 250


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("Мария, добрый день! Давно вас не видели 😊 Записать вас?", True),
        ("Мария, добрый день! Давно вас не видели 😊 Записать вас? 💅", True),
        ("Мария, добрый день! Давно вас не видели 😊😊 Записать вас?", True),
        ("Мария, добрый день! Давно вас не видели 😊😊😊 Записать вас?", False),
        ("Мария, добрый день! 💇‍♀️ Давно вас не видели 💅🏽 Записать вас? 🌸", False),
        ("Мария, добрый день! ❤️ Давно вас не видели ✨ Записать вас? ⭐", False),
    ],
)
def test_at_most_two_emoji(text: str, ok: bool) -> None:
    result = validate_message(text, step=Step.GENTLE, first_name=NAME)
    assert (TOO_MANY_EMOJI not in result.reasons) is ok


@pytest.mark.parametrize(
    "text",
    [
        "Мария, добрый день! Давно вас не видели. Записывайтесь.",
        "Мария, добрый день! Давно вас не видели!",
        "Мария, добрый день! Записать вас? Ждём вас.",
        "Мария, добрый день! Записать вас?)",
        "Мария, добрый день! Записать вас ? Будем рады",
    ],
)
def test_it_must_end_with_a_question(text: str) -> None:
    assert NO_QUESTION in validate_message(text, step=Step.GENTLE, first_name=NAME).reasons


@pytest.mark.parametrize(
    ("text", "name", "ok"),
    [
        ("Мария, добрый день! Давно вас не видели. Записать вас?", "Мария", True),
        ("Добрый день! Давно вас не видели. Записать вас?", "Мария", False),
        ("Марии добрый день! Давно вас не видели. Записать вас?", "Мария", False),
        ("Мариям, добрый день! Давно вас не видели. Записать вас?", "Мария", False),
        ("мария, добрый день! Давно вас не видели. Записать вас?", "Мария", False),
        ("Добрый день! Давно вас не видели. Записать вас?", None, True),
        ("Maria, добрый день! Давно вас не видели. Записать вас?", "Maria", True),
        ("Анна-Мария, добрый день! Давно вас не видели. Записать вас?", "Анна-Мария", True),
        ("Анна-Мария, добрый день! Давно вас не видели. Записать вас?", "Мария", False),
    ],
)
def test_the_first_name_is_there_when_there_is_one(text: str, name: str | None, ok: bool) -> None:
    assert (NO_NAME not in validate_message(text, step=Step.GENTLE, first_name=name).reasons) is ok


@pytest.mark.parametrize("text", ["", "   ", "\n\n", None, "«»", '""', "```\n```"])
def test_nothing_is_rejected_as_empty(text: str | None) -> None:
    result = validate_message(text, step=Step.GENTLE, first_name=None)
    assert not result.ok
    assert EMPTY in result.reasons


def test_too_short_is_rejected() -> None:
    assert TOO_SHORT in validate_message("Записать вас?", step=Step.GENTLE, first_name=None).reasons


@pytest.mark.parametrize(
    "company",
    ["Beauty Lab 24", "Студия 32 жемчужины", "Salon Elite", "Barbershop Borodach"],
)
def test_the_salons_own_name_may_hold_digits_and_latin(company: str) -> None:
    # given a message that names the salon, whose name has digits or Latin letters / when
    text = f"Мария, добрый день! Это {company}. Давно вас не видели. Записать вас на стрижку?"
    result = validate_message(text, step=Step.GENTLE, first_name=NAME, company_name=company)
    # then the salon's name is not an invented number or a foreign text
    assert result.ok, result.reasons
    # and without knowing the salon's name the same text would not pass
    assert not validate_message(text, step=Step.GENTLE, first_name=NAME).ok


def test_several_defects_give_every_reason() -> None:
    text = "Hello {name}! Скидка 50% до 31 марта, звоните +79001234567 😊😊😊"
    result = validate_message(text, step=Step.OFFER, first_name=NAME)
    assert {PLACEHOLDER, NO_QUESTION, NO_NAME, DISCOUNT_WRONG, DATE, TOO_MANY_EMOJI} <= set(result.reasons)
    assert result.reason.startswith("rejected:")


@given(text=st.text(max_size=400), step=st.sampled_from(list(Step)), name=st.sampled_from([None, "Мария", "Maria"]))
@settings(max_examples=300, deadline=None)
def test_whatever_passes_follows_the_rules(text: str, step: Step, name: str | None) -> None:
    # given any text at all / when
    result = validate_message(text, step=step, first_name=name)
    # then anything that passes is short enough, ends with a question and greets by name
    if result.ok:
        assert 0 < len(result.text) <= step.max_length
        assert re.sub(r"[^\w?!.,:;)(«»\"'-]+$", "", result.text).endswith("?")
        if name:
            assert name in result.text
