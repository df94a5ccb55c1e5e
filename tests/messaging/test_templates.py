from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reactivation.core.vocabulary import Step
from reactivation.messaging.names import first_name
from reactivation.messaging.templates import VARIANTS, render_template, render_variant, variant_number
from reactivation.messaging.validation import validate_message
from reactivation.tools.synthetic import FIRST_NAMES_F, FIRST_NAMES_M, SURNAMES
from tests.titles import ALL_TITLES, CATALOG_TITLES, INDUSTRY_NAMES, SALONS

RAW_NAMES = [
    None,
    "",
    "Мария",
    "Иванова Мария Петровна",
    "МАРИЯ",
    "Клиент 79001234567",
    "Анна-Мария",
    "Константинопольская Александра",
    "Maria",
    "JOHN SMITH",
    "{name}",
    "💅Анна💅",
    "'; DROP TABLE clients; --",
    "Я" * 10_000,
]

names = st.one_of(
    st.sampled_from(RAW_NAMES),
    st.sampled_from(FIRST_NAMES_F + FIRST_NAMES_M),
    st.builds(lambda s, n: f"{s} {n}", st.sampled_from(SURNAMES), st.sampled_from(FIRST_NAMES_M)),
    st.text(max_size=60),
)
titles = st.one_of(st.sampled_from(ALL_TITLES), st.none(), st.text(max_size=80))
salons = st.one_of(st.sampled_from(SALONS), st.text(max_size=50))


@given(
    raw_name=names,
    title=titles,
    salon=salons,
    step=st.sampled_from(list(Step)),
    client_id=st.integers(min_value=1, max_value=10**12),
)
@settings(max_examples=400, deadline=None)
def test_every_template_message_is_valid(
    raw_name: str | None, title: str | None, salon: str, step: Step, client_id: int
) -> None:
    # given any client name, service title, salon and step / when the client's template is rendered
    name = first_name(raw_name)
    message = render_template(step, client_id=client_id, first_name=name, service_title=title, company_name=salon)
    # then it passes validation as it is, greets by the first name when there is one, and names its variant
    result = validate_message(message.text, step=step, first_name=name, company_name=salon)
    assert result.ok, (message.text, result.reasons)
    assert result.text == message.text
    if name:
        assert name in message.text
    assert message.variant.startswith(step.message_type + ".")


@pytest.mark.parametrize("step", list(Step))
@pytest.mark.parametrize("title", CATALOG_TITLES + INDUSTRY_NAMES + [None])
@pytest.mark.parametrize("name", ["Мария", "Александра", "Maria", None])
def test_every_variant_is_valid_with_every_catalog_service(step: Step, title: str | None, name: str | None) -> None:
    for number in range(1, len(VARIANTS[step]) + 1):
        message = render_variant(step, number, first_name=name, service_title=title, company_name="Салон «Бархат»")
        result = validate_message(message.text, step=step, first_name=name, company_name="Салон «Бархат»")
        assert result.ok, (message.text, result.reasons)


@pytest.mark.parametrize("step", list(Step))
def test_each_step_has_at_least_three_variants(step: Step) -> None:
    assert len(VARIANTS[step]) >= 3


@pytest.mark.parametrize(
    ("step", "title", "expected"),
    [
        (
            Step.GENTLE,
            "Стрижка мужская",
            "Привет, Мария! Давно не виделись 😊 Хотите снова записаться на мужскую стрижку?",
        ),
        (
            Step.OFFER,
            "Маникюр с покрытием гель-лак",
            "Мария, мы помним о вас! Специально для вас скидка 10% на маникюр с покрытием гель-лак 🎁 Записать вас?",
        ),
        (
            Step.WIN_BACK,
            "Стрижка мужская",
            "Мария, мы очень ценим вас как клиента! Возвращайтесь, дарим скидку 20% на мужскую стрижку 💙 Запишем вас?",
        ),
        (Step.WIN_BACK, None, "Мария, мы очень ценим вас как клиента! Возвращайтесь, дарим 20% скидку 💙 Запишем вас?"),
    ],
)
def test_the_seeds_templates_come_first_with_the_service_declined(step: Step, title: str | None, expected: str) -> None:
    message = render_variant(step, 1, first_name="Мария", service_title=title, company_name="Салон «Бархат»")
    assert message.text == expected
    assert message.variant == f"{step.message_type}.1"


def test_no_name_greets_without_one() -> None:
    message = render_variant(Step.GENTLE, 2, first_name=None, service_title="Педикюр", company_name="Салон «Бархат»")
    assert message.text == "Добрый день! Это салон «Бархат». Давно вас не видели. Записать вас на педикюр?"


def test_a_title_that_cannot_be_declined_uses_the_phrasing_that_needs_none() -> None:
    message = render_variant(Step.GENTLE, 2, first_name="Мария", service_title="Подстричь кончики", company_name="")
    assert (
        message.text == "Мария, добрый день! Давно вас не видели. Ваша услуга: Подстричь кончики. Записать вас снова?"
    )


def test_a_hostile_title_is_left_out() -> None:
    message = render_variant(Step.OFFER, 3, first_name="Мария", service_title="Стрижка {VIP}", company_name="")
    assert "VIP" not in message.text and "{" not in message.text
    assert (
        message.text == "Мария, здравствуйте! Для вас действует скидка 10% на следующий визит. Когда вам удобно прийти?"
    )


def test_a_salon_name_without_quotes_gets_them() -> None:
    message = render_variant(Step.GENTLE, 2, first_name="Мария", service_title=None, company_name="Точка красоты")
    assert "Это «Точка красоты»." in message.text


def test_when_the_fullest_form_is_too_long_the_salon_goes_first_then_the_service() -> None:
    # given a long name, a long service and a long salon name that together pass the gentle limit of 150
    salon = "Студия красоты «Очарование»"
    title = "Коррекция и оформление бровей"
    message = render_variant(Step.GENTLE, 3, first_name="Константин", service_title=title, company_name=salon)
    # then the salon's introduction is dropped and the service kept
    assert "очарование" not in message.text.lower()
    assert "коррекцию и оформление бровей" in message.text
    assert len(message.text) <= Step.GENTLE.max_length


def test_the_variant_is_stable_per_client_and_step_and_spread_across_clients() -> None:
    # given the same client and step asked twice, and many clients / when / then
    assert variant_number(42, Step.OFFER) == variant_number(42, Step.OFFER)
    for step in Step:
        counts = Counter(variant_number(client_id, step) for client_id in range(1, 3001))
        assert set(counts) == set(range(1, len(VARIANTS[step]) + 1))
        assert min(counts.values()) > 3000 / len(VARIANTS[step]) * 0.8


def test_the_chosen_variant_is_recorded() -> None:
    message = render_template(Step.GENTLE, client_id=42, first_name="Мария", service_title=None, company_name="")
    assert message.variant == f"gentle.{variant_number(42, Step.GENTLE)}"


def test_an_unknown_variant_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"variants 1\.\.3"):
        render_variant(Step.GENTLE, 4, first_name=None, service_title=None, company_name=None)


@pytest.mark.parametrize("step", list(Step))
def test_templates_avoid_the_words_the_seed_forbids(step: Step) -> None:
    for variant in VARIANTS[step]:
        for text in (variant.greeting_named, variant.greeting, variant.body, variant.body_service, variant.body_title):
            assert "скучаем" not in text.lower() and "ждём" not in text.lower()
