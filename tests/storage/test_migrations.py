"""The migrations build exactly what the models describe, on PostgreSQL and SQLite, and unwind cleanly."""

from __future__ import annotations

import re
from datetime import date

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from reactivation.core.vocabulary import Status
from reactivation.storage import migrations
from reactivation.storage.db import make_engine
from reactivation.storage.models import HISTORY_STATUS_CHECK, Base, ReactivationHistory
from tests.conftest import RUN_ID, create_database, drop_database
from tests.factories import make_client, make_company
from tests.history_rows import make_history

REQUIRED_COLUMNS = {
    "companies": {"id", "name", "timezone", "country", "enabled", "settings"},
    "clients": {
        "id",
        "company_id",
        "name",
        "phone",
        "last_visit_date",
        "visit_count",
        "last_services",
        "total_spent",
        "blacklisted",
        "favorite_staff_ids",
        "preferred_time_slots",
    },
    "services": {"id", "company_id", "yclients_id", "title"},
    "bookings": {"id", "company_id", "client_id", "client_phone", "datetime", "status", "created_at"},
    "appointments_cache": {"id", "company_id", "client_id", "service_ids", "appointment_datetime", "attendance"},
    "industry_standard_intervals": {
        "category_key",
        "category_name",
        "interval_days",
        "min_days",
        "max_days",
        "keywords",
        "service_type",
        "confidence_score",
    },
    "service_reactivation_intervals": {
        "company_id",
        "service_id",
        "service_name",
        "median_interval_days",
        "avg_interval_days",
        "min_interval_days",
        "max_interval_days",
        "stddev_days",
        "sample_size",
        "last_calculated",
        "is_active",
    },
    "client_personalized_intervals": {
        "company_id",
        "client_id",
        "service_id",
        "personal_interval_days",
        "visit_count",
        "consistency_score",
        "last_calculated",
    },
    "client_reactivation_history": {
        "company_id",
        "client_id",
        "phone",
        "message_sent_at",
        "message_text",
        "last_service_id",
        "last_service_name",
        "inactive_days",
        "last_visit_date",
        "interval_days",
        "interval_source",
        "confidence_score",
        "response_received",
        "response_at",
        "response_type",
        "response_text",
        "booking_created",
        "booking_id",
        "booking_created_at",
        "created_at",
        "updated_at",
        "status",
        "step",
        "message_type",
        "generator",
        "variant",
        "campaign_run_id",
        "error",
        "skip_reason",
    },
    "campaign_runs": {"company_id", "run_date", "status"},
    "reactivation_opt_outs": {"company_id", "phone"},
    "reactivation_consents": {"company_id", "phone", "channel", "granted_at", "source", "text_version", "revoked_at"},
}


def _drift(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def _assert_full_schema(engine: Engine) -> None:
    inspector = inspect(engine)
    for table, columns in REQUIRED_COLUMNS.items():
        present = {c["name"] for c in inspector.get_columns(table)}
        assert columns <= present, f"{table} lacks {columns - present}"
    with engine.connect() as connection:
        rows = dict(
            connection.execute(text("SELECT category_key, interval_days FROM industry_standard_intervals")).all()
        )
        names = dict(
            connection.execute(text("SELECT category_key, category_name FROM industry_standard_intervals")).all()
        )
    assert len(rows) >= 24
    assert rows["haircut_male"] == 28 and names["haircut_male"] == "Мужская стрижка"
    assert rows["manicure_gel"] == 21
    assert rows["balayage"] == 90 and names["balayage"] == "Балаяж"
    seed_sixteen = {
        "haircut_male",
        "haircut_female",
        "coloring",
        "manicure_gel",
        "manicure_regular",
        "pedicure",
        "beard",
        "facial",
        "massage_face",
        "peeling",
        "epilation_legs",
        "epilation_bikini",
        "epilation_underarms",
        "balayage",
        "hair_extensions",
        "botox_hair",
    }
    assert seed_sixteen <= set(rows)


def _round_trip(url: str) -> None:
    engine = make_engine(url)
    try:
        migrations.upgrade(url)
        _assert_full_schema(engine)
        assert _drift(engine) == []

        migrations.downgrade(url, "base")
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}

        migrations.upgrade(url)
        _assert_full_schema(engine)
    finally:
        engine.dispose()


def test_postgres_upgrade_check_downgrade_upgrade(pg_admin: Engine) -> None:
    # Given a new, empty PostgreSQL database
    name = f"reactivation_migrations_{RUN_ID}"
    url = create_database(pg_admin, name)
    try:
        # Then the history builds every table, matches the models, unwinds to nothing and builds again
        _round_trip(url)
    finally:
        drop_database(pg_admin, name)


def test_sqlite_upgrade_check_downgrade_upgrade(sqlite_url: str) -> None:
    _round_trip(sqlite_url)


def test_json_columns_are_jsonb_on_postgres(pg_engine: Engine) -> None:
    with pg_engine.connect() as connection:
        types = dict(
            connection.execute(
                text(
                    "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns "
                    "WHERE column_name IN ('settings', 'last_services', 'service_ids', 'keywords')"
                )
            ).all()
        )
    assert types["companies.settings"] == "jsonb"
    assert types["clients.last_services"] == "jsonb"
    assert types["appointments_cache.service_ids"] == "jsonb"


def _checked_statuses(engine: Engine) -> set[str]:
    """The statuses the database's CHECK on the history table accepts, as it reports the constraint."""
    checks = inspect(engine).get_check_constraints(ReactivationHistory.__tablename__)
    [status_check] = [c for c in checks if c["name"] == "ck_client_reactivation_history_status"]
    return set(re.findall(r"'([a-z_]+)'", status_check["sqltext"]))


def _refuses_an_unknown_status(session: Session) -> None:
    company = make_company(session)
    client = make_client(session, company.id, last_visit=date(2026, 1, 20))
    make_history(session, client, sent_at=None, status=Status.HOLDOUT)
    with pytest.raises(IntegrityError, match=r"ck_client_reactivation_history_status|CHECK constraint failed"):
        make_history(session, client, sent_at=None, status="senttt", step=2)
    session.rollback()


def test_the_latest_status_check_agrees_with_the_vocabulary_on_postgres(pg_engine: Engine, db: Session) -> None:
    # The migrations wrote their list of statuses out; the enum is the code's. They must say the same.
    assert _checked_statuses(pg_engine) == {status.value for status in Status}
    assert set(re.findall(r"'([a-z_]+)'", HISTORY_STATUS_CHECK)) == {status.value for status in Status}
    _refuses_an_unknown_status(db)


def test_the_latest_status_check_agrees_with_the_vocabulary_on_sqlite(sqlite_db: Session) -> None:
    engine = sqlite_db.get_bind()
    assert isinstance(engine, Engine)
    assert _checked_statuses(engine) == {status.value for status in Status}
    _refuses_an_unknown_status(sqlite_db)


def test_t0012b_downgrade_deletes_the_dry_runs_records_the_old_key_cannot_hold(sqlite_url: str) -> None:
    # Given a day with its real run and two dry runs, and a dry-run history row that names its run
    migrations.upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    try:
        with engine.begin() as connection:
            for dry_run in (False, True, True):
                connection.execute(
                    text(
                        "INSERT INTO campaign_runs (company_id, run_date, dry_run, created_at) "
                        "VALUES (7, '2026-11-23', :dry, '2026-11-23 07:00:00')"
                    ),
                    {"dry": dry_run},
                )
        with Session(engine) as session:
            company = make_company(session, 7)
            client = make_client(session, company.id, last_visit=date(2026, 10, 1))
            row = make_history(session, client, sent_at=None, status=Status.HOLDOUT, dry_run=True, campaign_run_id=3)
            session.commit()
            history_id = row.id
        # When the schema goes back to before t0012b
        migrations.downgrade(sqlite_url, "t0012")
        # Then the real run stays, the dry runs' records are gone and their history row keeps its row, without a run
        with engine.connect() as connection:
            assert connection.execute(text("SELECT id, dry_run FROM campaign_runs")).all() == [(1, 0)]
            assert (
                connection.execute(
                    text("SELECT campaign_run_id FROM client_reactivation_history WHERE id = :id"), {"id": history_id}
                ).scalar_one()
                is None
            )
        # And the old key holds again: a second run of that day is refused
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO campaign_runs (company_id, run_date, dry_run, created_at) "
                    "VALUES (7, '2026-11-23', 1, '2026-11-23 08:00:00')"
                )
            )
        migrations.upgrade(sqlite_url)
    finally:
        engine.dispose()
