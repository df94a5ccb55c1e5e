from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reactivation.messaging.russian import clean_title, decline_title, mid_sentence
from reactivation.tools.synthetic import CATALOG
from tests.titles import INDUSTRY_NAMES


@pytest.mark.parametrize(
    ("title", "accusative"),
    [
        ("Стрижка мужская", "мужскую стрижку"),
        ("Мужская стрижка", "мужскую стрижку"),
        ("СТРИЖКА МУЖСКАЯ", "мужскую стрижку"),
        ("Стрижка женская", "женскую стрижку"),
        ("Детская стрижка", "детскую стрижку"),
        ("Мужская стрижка машинкой", "мужскую стрижку машинкой"),
        ("Стрижка бороды", "стрижку бороды"),
        ("Маникюр с покрытием гель-лак", "маникюр с покрытием гель-лак"),
        ("Маникюр классический", "классический маникюр"),
        ("Маникюр Классический", "классический маникюр"),
        ("Коррекция бровей", "коррекцию бровей"),
        ("Коррекция и оформление бровей", "коррекцию и оформление бровей"),
        ("Чистка лица", "чистку лица"),
        ("Лазерная эпиляция подмышек", "лазерную эпиляцию подмышек"),
        ("Кератиновое выпрямление", "кератиновое выпрямление"),
        ("Королевское бритьё", "королевское бритьё"),
        ("Укладка", "укладку"),
        ("Окрашивание волос", "окрашивание волос"),
        ("Педикюр", "педикюр"),
        ("Брови", "брови"),
        ("Свадебная прическа", "свадебную причёску"),
        ("SPA-программа «Релакс»", "SPA-программу «Релакс»"),
        ("SPA программа", "SPA программу"),
        ("LPG-массаж", "LPG-массаж"),
        ("Экспресс-укладка", "экспресс-укладку"),
        ("Комплекс «Отец и сын»", "комплекс «Отец и сын»"),
        ("Стрижка + укладка", "стрижку + укладку"),
        ("Мужская стрижка и укладка", "мужскую стрижку и укладку"),
        ("Массаж спины от Марии", "массаж спины от Марии"),
        ("Airtouch", "Airtouch"),
        ("  стрижка   мужская  ", "мужскую стрижку"),
        ("Стрижка мужская 💈", "мужскую стрижку"),
    ],
)
def test_titles_decline_after_a_preposition(title: str, accusative: str) -> None:
    # given a title as the booking system writes it / when declined for "записаться на …" / then
    assert decline_title(title, "accs") == accusative


@pytest.mark.parametrize(
    ("title", "case", "expected"),
    [
        ("Стрижка мужская", "gent", "мужской стрижки"),
        ("Чистка лица", "datv", "чистке лица"),
        ("Укладка", "ablt", "укладкой"),
        ("Маникюр с покрытием гель-лак", "loct", "маникюре с покрытием гель-лак"),
        ("Стрижка мужская", "nomn", "мужская стрижка"),
    ],
)
def test_other_cases_decline_too(title: str, case: str, expected: str) -> None:
    assert decline_title(title, case) == expected


@pytest.mark.parametrize(
    "title",
    ["Ультразвуковая", "Подстричь кончики", "Для волос", "Стрижка {VIP}", "Стрижка 2 в 1", "", "   ", "😊", "—", None],
)
def test_a_title_that_cannot_be_parsed_says_so(title: str | None) -> None:
    # given a title with no noun to decline, or with something no message may show / when / then
    assert decline_title(title or "", "accs") is None


def test_an_unknown_case_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown case"):
        decline_title("Стрижка", "vocative")


@pytest.mark.parametrize("title", [title for title, *_ in CATALOG] + INDUSTRY_NAMES)
def test_every_catalog_and_industry_title_declines_in_lower_case(title: str) -> None:
    # given the synthetic catalog's titles and the seeded industry names / when
    declined = decline_title(title, "accs")
    # then each one parses, and its first word is lower-case unless it is an abbreviation
    assert declined is not None
    first = declined.split()[0]
    assert first.islower() or first.split("-")[0].isupper()


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Стрижка мужская", "стрижка мужская"),
        ("SPA-программа «Релакс»", "SPA-программа «Релакс»"),
        ("Массаж от Марии", "массаж от Марии"),
        ("СТРИЖКА LPG", "стрижка LPG"),
    ],
)
def test_mid_sentence_lower_cases_common_words_only(title: str, expected: str) -> None:
    assert mid_sentence(title) == expected


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("  Стрижка   мужская ", "Стрижка мужская"),
        ("Стрижка мужская 💈✂️", "Стрижка мужская"),
        ("Стрижка.", "Стрижка"),
        ("Стрижка {VIP}", None),
        ("Стрижка <b>", None),
        ("Стрижка 1500 руб", None),
        ("undefined", None),
        ("null", None),
        ("а" * 61, None),
        ("", None),
        (None, None),
        ("🙂", None),
    ],
)
def test_clean_title(title: str | None, expected: str | None) -> None:
    assert clean_title(title) == expected


@given(st.text(max_size=200))
@settings(max_examples=300, deadline=None)
def test_any_text_declines_to_a_short_clean_phrase_or_none(title: str) -> None:
    # given any text / when
    declined = decline_title(title, "accs")
    # then it never raises, and whatever comes out is short and free of what validation would reject
    if declined is not None:
        assert 0 < len(declined) <= 80
        assert not any(ch in declined for ch in "{}[]<>$%0123456789")
