"""refine industry keywords

The matcher (reactivation/industry.py) prefers the category whose matched keywords are rarest across categories.
A few keyword lists did not say enough for it to pick the right one on common titles; this completes them:

* "Окрашивание волос" went to botox_hair ("волос" was only in hair_extensions and botox_hair): coloring and
  haircut_female ("Стрижка волос") list "волос" too;
* "Мужская стрижка машинкой" went to haircut_male: haircut_clipper lists "стрижка" and "мужской" too, so that
  the clipper cut wins when "машинка" is there and the plain men's cut wins by share when it is not;
* "Лазерная эпиляция подмышек" went to the wax epilation of that area: laser_hair_removal lists the areas;
* "Коррекция наращенных ресниц" went to brow_shaping: extensions list their "коррекция";
* "Ламинирование бровей" went to lash_lamination: a brow_lamination category of its own.

Revision ID: t0004
Revises: t0003
Create Date: 2026-11-24 09:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "t0004"
down_revision: str | None = "t0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# key: (keywords before, keywords after)
CHANGES: dict[str, tuple[list[str], list[str]]] = {
    "coloring": (
        ["окрашивание", "окраска", "краска", "цвет", "тонирование", "колорирование"],
        ["окрашивание", "окраска", "краска", "цвет", "тонирование", "колорирование", "волос"],
    ),
    "haircut_female": (["стрижка", "женский"], ["стрижка", "женский", "волос"]),
    "haircut_clipper": (["машинка", "насадка"], ["машинка", "насадка", "стрижка", "мужской"]),
    "laser_hair_removal": (
        ["лазерный", "лазер", "эпиляция"],
        ["лазерный", "лазер", "эпиляция", "подмышка", "нога", "бикини"],
    ),
    "lash_extensions": (["ресница", "наращивание"], ["ресница", "наращивание", "коррекция"]),
    "nail_extensions": (["ноготь", "наращивание"], ["ноготь", "наращивание", "коррекция"]),
}
NEW = ("brow_lamination", "Ламинирование бровей", 42, 35, 56, ["бровь", "ламинирование"], "brows", 0.70)


def _table() -> sa.TableClause:
    table = sa.table(
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
    if op.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import JSONB

        table.c.keywords.type = JSONB()
    return table


def _set_keywords(after: bool) -> None:
    table = _table()
    for key, (before, later) in CHANGES.items():
        op.execute(
            table.update().where(table.c.category_key == key).values(keywords=later if after else before)
        )


def upgrade() -> None:
    _set_keywords(after=True)
    key, name, interval, low, high, keywords, service_type, confidence = NEW
    op.bulk_insert(
        _table(),
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
        ],
    )


def downgrade() -> None:
    table = _table()
    op.execute(table.delete().where(table.c.category_key == NEW[0]))
    _set_keywords(after=False)
