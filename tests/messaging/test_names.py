from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reactivation.messaging.names import first_name
from reactivation.tools.synthetic import FIRST_NAMES_F, FIRST_NAMES_M, PATRONYMICS_F, PATRONYMICS_M, SURNAMES


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Мария", "Мария"),
        ("Иванова Мария Петровна", "Мария"),
        ("ИВАНОВА МАРИЯ ПЕТРОВНА", "Мария"),
        ("иванова мария петровна", "Мария"),
        ("Мария Иванова", "Мария"),
        ("Петрова Анна", "Анна"),
        ("МАРИЯ", "Мария"),
        ("мария", "Мария"),
        ("  Мария  ", "Мария"),
        ("Мария 🌸", "Мария"),
        ("💅Анна💅", "Анна"),
        ("Алёна", "Алёна"),
        ("алена", "Алена"),
        ("Анна-Мария", "Анна-Мария"),
        ("Вера Павлова", "Вера"),
        ("Роман Иванов", "Роман"),
        ("Иван Иванович Иванов", "Иван"),
        ("Саша (сын)", "Саша"),
        ("Гульнара", "Гульнара"),
        ("Maria", "Maria"),
        ("JOHN SMITH", "John"),
        ("anna", "Anna"),
        ("Мария'; DROP TABLE clients; --", "Мария"),
        ("Мария\x00", "Мария"),
    ],
)
def test_a_real_first_name_is_found_and_capitalized(raw: str, expected: str) -> None:
    # given a name field as booking systems fill it / when / then
    assert first_name(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "   ",
        "Клиент 79001234567",
        "79001234567",
        "+7 (900) 123-45-67",
        "Клиент",
        "Клиентка",
        "Новый клиент",
        "Мама Пети",
        "Иванов",
        "Иванова",
        "Иванова М.П.",
        "М. Иванова",
        "Я",
        "x",
        "Абырвалг",
        "{name}",
        "[Имя]",
        "undefined",
        "None",
        "null",
        "NaN",
        "Test",
        "Client 1",
        "Ivanova Maria",
        "Mr Smith",
        "'; DROP TABLE clients; --",
        "Robert'); DROP TABLE Students;--",
        "<script>alert(1)</script>",
        "😊😊😊",
        "Мария" * 2000,
        "а" * 10_000,
        "Без имени",
        "Неизвестно",
    ],
)
def test_no_name_rather_than_something_that_is_not_one(raw: str | None) -> None:
    # given a field that holds no first name / when / then the message will greet without one
    assert first_name(raw) is None


def test_a_name_beyond_the_first_words_of_a_long_note_is_not_taken() -> None:
    # given a note with a name deep inside it
    raw = "постоянный клиент приходит по пятницам любит кофе " * 3 + "Мария"
    # when / then
    assert first_name(raw) is None


@given(
    surname=st.sampled_from(SURNAMES),
    name=st.sampled_from(FIRST_NAMES_M),
    patronymic=st.sampled_from(PATRONYMICS_M),
    order=st.sampled_from(["sfp", "fs", "f", "fp"]),
    case=st.sampled_from([str, str.upper, str.lower]),
)
@settings(max_examples=150, deadline=None)
def test_the_given_name_is_found_in_any_order_men(surname: str, name: str, patronymic: str, order: str, case) -> None:  # type: ignore[no-untyped-def]
    # given a man's full name written surname-first or name-first, in any case
    parts = {"s": surname, "f": name, "p": patronymic}
    raw = case(" ".join(parts[key] for key in order))
    # when / then
    assert first_name(raw) == name


@given(
    surname=st.sampled_from(SURNAMES),
    name=st.sampled_from(FIRST_NAMES_F),
    patronymic=st.sampled_from(PATRONYMICS_F),
    order=st.sampled_from(["sfp", "fs", "f", "fp"]),
)
@settings(max_examples=150, deadline=None)
def test_the_given_name_is_found_in_any_order_women(surname: str, name: str, patronymic: str, order: str) -> None:
    # given a woman's full name (surnames take the feminine form)
    parts = {"s": surname + "а", "f": name, "p": patronymic}
    raw = " ".join(parts[key] for key in order)
    # when / then
    assert first_name(raw) == name


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_whatever_the_field_holds_the_answer_is_a_single_capitalized_word_or_none(raw: str) -> None:
    # given any text at all / when
    name = first_name(raw)
    # then it is None or one capitalized word of letters (hyphen or apostrophe inside), short, taken from the text
    if name is not None:
        assert name[0].isupper() and 2 <= len(name) <= 30
        assert all(ch.isalpha() or ch in "-'’" for ch in name)
        assert name.lower() in raw.lower()
