"""The industry-standard matcher: whole words by lemma, the most specific category, deterministic, hostile-proof."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from reactivation.timing.industry import (
    IndustryStandard,
    load_standards,
    match_industry,
    standard_from_row,
    title_lemmas,
    word_lemmas,
)
from reactivation.tools.synthetic import CATALOG


@pytest.fixture(scope="module")
def standards(pg_engine: Engine) -> list[IndustryStandard]:
    with Session(pg_engine) as session:
        return load_standards(session)


def key(title: object, standards: list[IndustryStandard]) -> str | None:
    found = match_industry(title, standards)
    return found.standard.category_key if found else None


# The cases, then the titles salons write most often.
EXPECTED = {
    "Стрижка мужская": "haircut_male",
    "Мужская стрижка": "haircut_male",
    "Маникюр с покрытием гель-лак": "manicure_gel",
    "Стрижка бороды": "beard",
    "Наращивание ресниц": "lash_extensions",
    "Окрашивание бровей": "brow_tint",
    "Стрижка женская": "haircut_female",
    "Стрижка волос": "haircut_female",
    "Мужская стрижка машинкой": "haircut_clipper",
    "Стрижка машинкой (одна насадка)": "haircut_clipper",
    "Детская стрижка": "haircut_kids",
    "Стрижка для мальчика": "haircut_kids",
    "Окрашивание волос": "coloring",
    "Тонирование волос": "coloring",
    "Окрашивание корней": "root_coloring",
    "Окрашивание корней волос": "root_coloring",
    "Балаяж": "balayage",
    "Шатуш": "balayage",
    "AirTouch": "balayage",
    "Мелирование": "highlights",
    "Маникюр классический": "manicure_regular",
    "Маникюр": "manicure_regular",
    "Покрытие гель-лаком": "manicure_gel",
    "ШЕЛЛАК": "manicure_gel",
    "Педикюр": "pedicure",
    "Педикюр с покрытием": "pedicure",
    "Наращивание ногтей": "nail_extensions",
    "Коррекция наращенных ногтей": "nail_extensions",
    "Наращивание волос": "hair_extensions",
    "Ботокс для волос": "botox_hair",
    "Ламинирование ресниц": "lash_lamination",
    "Ламинирование бровей": "brow_lamination",
    "Коррекция наращенных ресниц": "lash_extensions",
    "Коррекция бровей": "brow_shaping",
    "Оформление бровей": "brow_shaping",
    "Брови: коррекция и окрашивание хной": "brow_tint",
    "Чистка лица": "facial",
    "Массаж лица": "massage_face",
    "Массаж спины": "massage_body",
    "Пилинг": "peeling",
    "Эпиляция ног": "epilation_legs",
    "Эпиляция голеней": "epilation_legs",
    "Эпиляция бикини": "epilation_bikini",
    "Эпиляция подмышек": "epilation_underarms",
    "Лазерная эпиляция подмышек": "laser_hair_removal",
    "Лазерная эпиляция ног": "laser_hair_removal",
    "Шугаринг бикини": "sugaring",
    "Кератиновое выпрямление": "keratin",
    "Укладка": "styling",
    "Вечерняя причёска": "styling",
    "Королевское бритьё": "shave",
    "Бритьё головы": "shave",
    "Стрижка бороды и усов": "beard",
    "Маска для волос": "hair_care",
}


@pytest.mark.parametrize(("title", "expected"), EXPECTED.items())
def test_common_titles_find_their_category(title: str, expected: str, standards: list[IndustryStandard]) -> None:
    assert key(title, standards) == expected


def test_mens_haircut_is_never_the_womens(standards: list[IndustryStandard]) -> None:
    for title in ("Стрижка мужская", "МУЖСКАЯ СТРИЖКА", "стрижка  мужская", "Стрижка (мужская)", "Стрижка-мужская"):
        assert key(title, standards) == "haircut_male"


@pytest.mark.parametrize(
    "title",
    ["SPA-программа «Релакс»", "Камуфляж седины", "Комплекс «Отец и сын»", "Консультация", "Подарочный сертификат"],
)
def test_titles_without_a_keyword_match_nothing(title: str, standards: list[IndustryStandard]) -> None:
    assert match_industry(title, standards) is None


def test_case_and_yo_do_not_matter(standards: list[IndustryStandard]) -> None:
    # Given the same title written with and without ё, in any case
    variants = ["Королевское бритьё", "королевское бритье", "КОРОЛЕВСКОЕ БРИТЬЁ", "Королевское Бритье"]
    # Then all match the same category, and the lemmas carry е, never ё
    assert {key(v, standards) for v in variants} == {"shave"}
    assert all("ё" not in lemma for v in variants for lemma in title_lemmas(v))


def test_words_match_whole_not_as_substrings(standards: list[IndustryStandard]) -> None:
    # The seed's ILIKE '%лак%' matched "Лакомство"; a word-by-word match does not.
    assert match_industry("Лакомство для гостей", standards) is None
    assert match_industry("Гельминтолог", standards) is None


def test_hyphens_digits_and_punctuation_separate_words() -> None:
    assert {"гель", "лак"} <= title_lemmas("Маникюр+гель-лак/2шт.")
    assert "покрытие" in title_lemmas("Покрытие_гель")


def test_explanation_names_the_matched_keywords(standards: list[IndustryStandard]) -> None:
    found = match_industry("Маникюр с покрытием гель-лак", standards)
    assert found is not None
    assert set(found.matched_keywords) == {"маникюр", "покрытие", "гель", "лак"}
    assert found.interval_days == 21 and 0 < found.confidence <= 1 and found.share == 0.8


def test_result_does_not_depend_on_row_order(standards: list[IndustryStandard]) -> None:
    # Given the same rows shuffled many ways
    rng = random.Random(7)
    titles = [*EXPECTED, "Маникюр", "Брови", "Стрижка"]
    expected = {t: key(t, standards) for t in titles}
    for _ in range(20):
        shuffled = standards[:]
        rng.shuffle(shuffled)
        # Then every title gets the same category
        assert {t: key(t, shuffled) for t in titles} == expected


def test_exact_ties_fall_to_confidence_then_key() -> None:
    # Given two categories equally specific for a title
    a = IndustryStandard("b_second", "B", 10, frozenset({"пилинг"}), 0.7)
    b = IndustryStandard("a_first", "A", 20, frozenset({"пилинг"}), 0.7)
    c = IndustryStandard("c_confident", "C", 30, frozenset({"пилинг"}), 0.8)
    # Then the higher confidence wins, and between equal confidences the smaller key
    assert key("Пилинг", [a, b, c]) == "c_confident"
    assert key("Пилинг", [a, b]) == "a_first"
    assert key("Пилинг", [b, a]) == "a_first"


def test_hostile_titles_never_fail(standards: list[IndustryStandard]) -> None:
    for title in [None, 42, b"bytes", "", "   ", "\x00\x01", "😀" * 1000, "а" * 100_000, "'; DROP TABLE x; --"]:
        assert match_industry(title, standards) is None
    # A huge title is read only up to its first words: what follows is ignored, quickly.
    assert key("Стрижка бороды " + "ля " * 200_000, standards) == "beard"
    assert key("ля " * 200_000 + "Педикюр", standards) is None


def test_catalog_titles_that_name_a_service_all_match(standards: list[IndustryStandard]) -> None:
    unmatched = {title for title, *_ in CATALOG if match_industry(title, standards) is None}
    assert unmatched == {"SPA-программа «Релакс»", "Камуфляж седины", "Комплекс «Отец и сын»"}


def test_unusable_rows_are_dropped() -> None:
    good = {"category_key": "x", "category_name": "X", "interval_days": 10, "keywords": ["Ёлка"]}
    standard = standard_from_row(good)
    assert standard is not None and standard.keywords == frozenset({"елка"}) and standard.confidence == 0.75
    assert standard_from_row({**good, "keywords": []}) is None
    assert standard_from_row({**good, "keywords": None}) is None
    assert standard_from_row({**good, "interval_days": 0}) is None
    assert standard_from_row({**good, "interval_days": "10"}) is None
    assert standard_from_row({**good, "confidence_score": "much"}).confidence == 0.75  # type: ignore[union-attr]


def test_lemmas_are_cached_and_include_every_reading() -> None:
    assert {"ус"} <= word_lemmas("усов")
    assert word_lemmas("Бровей") is word_lemmas("Бровей")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_any_text_gives_a_match_or_none(standards_for_hypothesis: list[IndustryStandard], text: str) -> None:
    found = match_industry(text, standards_for_hypothesis)
    assert found is None or found.standard in standards_for_hypothesis


@pytest.fixture(scope="module")
def standards_for_hypothesis(standards: list[IndustryStandard]) -> list[IndustryStandard]:
    return standards
