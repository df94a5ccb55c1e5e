"""gemini requests: each request's token usage

One row per Gemini request and company it served (a batch writes several salons' messages in one request): the
company's items in it, how many became messages, and its share of the prompt, output and thinking tokens, so that
`reactivation stats` and `campaign status` can show requests, tokens and tokens per message.

Revision ID: t0013
Revises: t0014
Create Date: 2026-12-05 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "t0013"
down_revision: str | None = "t0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "gemini_requests"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(always=False), nullable=False),
        sa.Column("request_key", sa.Text(), nullable=False),
        sa.Column("company_id", sa.BigInteger(), nullable=False),
        sa.Column("campaign_run_id", sa.BigInteger(), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("thinking", sa.Text(), nullable=False),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("batch_items", sa.Integer(), nullable=False),
        sa.Column("written", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("thinking_tokens", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("finish_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_run_id"],
            ["campaign_runs.id"],
            name=op.f("fk_gemini_requests_campaign_run_id_campaign_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gemini_requests")),
    )
    op.create_index("ix_gemini_requests_company_requested", TABLE, ["company_id", "requested_at"], unique=False)
    op.create_index("ix_gemini_requests_run", TABLE, ["campaign_run_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_gemini_requests_run", table_name=TABLE)
    op.drop_index("ix_gemini_requests_company_requested", table_name=TABLE)
    op.drop_table(TABLE)
