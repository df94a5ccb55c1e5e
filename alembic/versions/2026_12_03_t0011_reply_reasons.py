"""reply reasons

A reply's reason and the date a not_now reply named go on the history row (response_reason, response_until).
A not_now reply snoozes its lapse and a moved_away reply holds it: reactivation_reply_holds, one row per client
and lapse. When a snooze ends the same step is claimed again, once: the claim's unique key gains snooze_repeat.

Revision ID: t0011
Revises: t0010
Create Date: 2026-12-03 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "t0011"
down_revision: str | None = "t0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HISTORY = "client_reactivation_history"
CLAIM_KEY = "uq_history_client_lapse_step"
KEY_COLUMNS = ["company_id", "client_id", "last_visit_date", "step"]


def _claim_key(columns: list[str]) -> None:
    op.create_index(
        CLAIM_KEY,
        HISTORY,
        columns,
        unique=True,
        postgresql_where=sa.text("NOT dry_run"),
        sqlite_where=sa.text("NOT dry_run"),
    )


def upgrade() -> None:
    op.add_column(HISTORY, sa.Column("response_reason", sa.Text(), nullable=True))
    op.add_column(HISTORY, sa.Column("response_until", sa.Date(), nullable=True))
    op.add_column(HISTORY, sa.Column("snooze_repeat", sa.Boolean(), server_default=sa.text("false"), nullable=False))
    op.drop_index(CLAIM_KEY, table_name=HISTORY)
    _claim_key([*KEY_COLUMNS, "snooze_repeat"])
    op.create_table(
        "reactivation_reply_holds",
        sa.Column("company_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("client_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("last_visit_date", sa.Date(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("step", sa.SmallInteger(), nullable=False),
        sa.Column("until", sa.Date(), nullable=True),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.Column("history_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("repeat_history_id", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("kind IN ('snoozed', 'moved')", name=op.f("ck_reactivation_reply_holds_kind")),
        sa.PrimaryKeyConstraint("company_id", "client_id", "last_visit_date", name=op.f("pk_reactivation_reply_holds")),
    )
    op.create_index("ix_reply_holds_company_created", "reactivation_reply_holds", ["company_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_reply_holds_company_created", table_name="reactivation_reply_holds")
    op.drop_table("reactivation_reply_holds")
    # A repeated step cannot stay once the key forbids it: those rows go (they were sends after a snooze).
    op.execute(sa.text(f"DELETE FROM {HISTORY} WHERE snooze_repeat"))
    op.drop_index(CLAIM_KEY, table_name=HISTORY)
    _claim_key(KEY_COLUMNS)
    # SQLite (3.35+) drops a column in place once no index names it.
    for column in ("snooze_repeat", "response_until", "response_reason"):
        op.drop_column(HISTORY, column)
