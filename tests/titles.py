"""Service titles the message tests run over: the synthetic catalog's, the seeded industry names, odd ones."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from reactivation.tools.synthetic import CATALOG, SALON_NAMES


def _industry_names() -> list[str]:
    path = next((Path(__file__).parent.parent / "alembic" / "versions").glob("*_0002_*.py"))
    spec = importlib.util.spec_from_file_location("seed_industry_standards", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [row[1] for row in module.STANDARDS]


CATALOG_TITLES = [title for title, *_ in CATALOG]
INDUSTRY_NAMES = _industry_names()
# What booking systems also hold: capitals, emoji, prices, placeholders, markup, code, junk, nothing.
ODD_TITLES = [
    "СТРИЖКА МУЖСКАЯ",
    "стрижка мужская",
    "Стрижка мужская 💈",
    "Маникюр+педикюр",
    "Стрижка + укладка",
    "Подстричь кончики",
    "Ультразвуковая",
    "Для волос",
    "Airtouch",
    "LPG-массаж",
    "Стрижка 2 в 1",
    "Стрижка 1500 руб",
    "Окрашивание -20%",
    "Стрижка {VIP}",
    "${service}",
    "[Услуга]",
    "<b>Стрижка</b>",
    "**Стрижка**",
    "undefined",
    "None",
    "null",
    "'; DROP TABLE services; --",
    "Haircut for men",
    "Стрижка: модельная",
    "Уход за волосами Olaplex",
    "Комплекс «Отец и сын»",
    "SPA-программа «Релакс»",
    "Массаж всего тела с эфирными маслами и горячими камнями, 90 минут, с чаем после",
    "а" * 500,
    "",
    "   ",
    "😊",
]
ALL_TITLES = CATALOG_TITLES + INDUSTRY_NAMES + ODD_TITLES
SALONS = [*SALON_NAMES, "Beauty Lab 24", "Точка красоты", "ООО «Ромашка»", "", "Салон {name}", "x" * 200]
