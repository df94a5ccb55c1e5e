"""seed industry standards

The seed's 16 categories, spelled correctly, and the common salon and barbershop services it lacked.
Keywords are lemmas (dictionary forms, lower case, ё written as е), matched against the lemmas of the
words of a service title; the matcher prefers the category whose matched keywords are the rarest across
categories, so "Стрижка бороды" is `beard`, not a haircut.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 10:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (key, name, interval, min, max, keywords, service type, confidence)
STANDARDS: list[tuple[str, str, int, int, int, list[str], str, float]] = [
    # The seed's sixteen.
    ("haircut_male", "Мужская стрижка", 28, 21, 35, ["стрижка", "мужской", "барбер"], "hair", 0.75),
    ("haircut_female", "Женская стрижка", 40, 35, 50, ["стрижка", "женский"], "hair", 0.75),
    ("coloring", "Окрашивание волос", 50, 40, 70,
     ["окрашивание", "окраска", "краска", "цвет", "тонирование", "колорирование"], "hair", 0.75),
    ("manicure_gel", "Маникюр гель-лак", 21, 14, 28, ["маникюр", "гель", "лак", "шеллак", "покрытие"], "nails", 0.75),
    ("manicure_regular", "Обычный маникюр", 14, 10, 21,
     ["маникюр", "обычный", "классический", "гигиенический"], "nails", 0.75),
    ("pedicure", "Педикюр", 30, 21, 40, ["педикюр"], "nails", 0.75),
    ("beard", "Стрижка бороды", 21, 14, 28, ["борода", "ус"], "hair", 0.75),
    ("facial", "Чистка лица", 28, 21, 35, ["чистка", "лицо"], "beauty", 0.75),
    ("massage_face", "Массаж лица", 14, 7, 21, ["массаж", "лицо"], "beauty", 0.75),
    ("peeling", "Пилинг", 21, 14, 28, ["пилинг"], "beauty", 0.75),
    ("epilation_legs", "Эпиляция ног", 35, 28, 45, ["эпиляция", "нога", "голень", "бедро"], "beauty", 0.75),
    ("epilation_bikini", "Эпиляция бикини", 28, 21, 35, ["эпиляция", "бикини"], "beauty", 0.75),
    ("epilation_underarms", "Эпиляция подмышек", 21, 14, 28, ["эпиляция", "подмышка"], "beauty", 0.75),
    ("balayage", "Балаяж", 90, 70, 120, ["балаяж", "шатуш", "airtouch"], "hair", 0.75),
    ("hair_extensions", "Наращивание волос", 60, 45, 90, ["наращивание", "волос"], "hair", 0.75),
    ("botox_hair", "Ботокс для волос", 45, 30, 60, ["ботокс", "волос"], "hair", 0.75),
    # Common services the seed did not cover.
    ("brow_shaping", "Коррекция и оформление бровей", 21, 14, 28, ["бровь", "коррекция", "оформление"], "brows", 0.70),
    ("brow_tint", "Окрашивание бровей", 28, 21, 35, ["бровь", "окрашивание", "хна"], "brows", 0.70),
    ("lash_extensions", "Наращивание ресниц", 21, 14, 28, ["ресница", "наращивание"], "lashes", 0.70),
    ("lash_lamination", "Ламинирование ресниц", 42, 35, 56, ["ресница", "ламинирование"], "lashes", 0.70),
    ("haircut_clipper", "Мужская стрижка машинкой", 21, 14, 28, ["машинка", "насадка"], "hair", 0.70),
    ("haircut_kids", "Детская стрижка", 35, 28, 45, ["детский", "ребенок", "мальчик", "девочка"], "hair", 0.70),
    ("styling", "Укладка", 7, 3, 14, ["укладка", "прическа", "локон"], "hair", 0.65),
    ("sugaring", "Шугаринг", 28, 21, 35, ["шугаринг", "сахарный"], "beauty", 0.70),
    ("laser_hair_removal", "Лазерная эпиляция", 42, 28, 56, ["лазерный", "лазер", "эпиляция"], "beauty", 0.70),
    ("keratin", "Кератиновое выпрямление", 120, 90, 150, ["кератин", "кератиновый", "выпрямление"], "hair", 0.70),
    ("highlights", "Мелирование", 60, 45, 90, ["мелирование"], "hair", 0.70),
    ("root_coloring", "Окрашивание корней", 35, 28, 45, ["корень", "окрашивание"], "hair", 0.70),
    ("nail_extensions", "Наращивание ногтей", 21, 14, 28, ["ноготь", "наращивание"], "nails", 0.70),
    ("massage_body", "Массаж тела", 14, 7, 28, ["массаж", "тело", "спина"], "beauty", 0.65),
    ("shave", "Королевское бритьё", 14, 7, 21, ["бритье", "бритва", "бриться"], "hair", 0.65),
    ("hair_care", "Уход за волосами", 30, 21, 45, ["уход", "восстановление", "маска"], "hair", 0.65),
]


def _table() -> sa.TableClause:
    return sa.table(
        "industry_standard_intervals",
        sa.column("category_key", sa.Text),
        sa.column("category_name", sa.Text),
        sa.column("interval_days", sa.Integer),
        sa.column("min_days", sa.Integer),
        sa.column("max_days", sa.Integer),
        sa.column("keywords", sa.JSON),
        sa.column("service_type", sa.Text),
        sa.column("confidence_score", sa.Numeric(3, 2)),
    )


def upgrade() -> None:
    table = _table()
    if op.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import JSONB

        table.c.keywords.type = JSONB()
    op.bulk_insert(
        table,
        [
            {
                "category_key": key,
                "category_name": name,
                "interval_days": interval,
                "min_days": low,
                "max_days": high,
                "keywords": keywords,
                "service_type": service_type,
                "confidence_score": confidence,
            }
            for key, name, interval, low, high, keywords, service_type, confidence in STANDARDS
        ],
    )


def downgrade() -> None:
    table = _table()
    op.execute(table.delete().where(table.c.category_key.in_([row[0] for row in STANDARDS])))
