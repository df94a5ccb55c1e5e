"""Generated columns: phone keys equal normalize_phone's E.164 for Russian formats; the last service id."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from reactivation.core.phones import try_normalize_phone
from reactivation.storage.computed_columns import (
    POSTGRES_FUNCTION_SQL,
    SEPARATORS,
    last_service_id,
    last_service_id_sql,
    phone_key,
    phone_key_sql,
)
from reactivation.storage.models import Client
from tests.factories import make_booking, make_client, make_company


def _migration(slug: str) -> Any:
    path = next(Path(__file__).parents[2].glob(f"alembic/versions/*_{slug}.py"))
    spec = importlib.util.spec_from_file_location(slug, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_migrations_and_models_compute_the_same_expressions(sqlite_db: Session) -> None:
    migration = _migration("t0003_derived_columns")
    assert migration.POSTGRES_FUNCTION_SQL == POSTGRES_FUNCTION_SQL
    assert migration.expression("phone", "postgresql") == phone_key_sql("phone", "postgresql")
    for dialect in ("postgresql", "sqlite"):
        assert migration.last_service_id_expression("x", dialect) == last_service_id_sql("x", dialect)
    # SQLite's phone keys were rebuilt by t0009: the migrated tables hold what the models say.
    for table, key, phone in (("clients", "phone_key", "phone"), ("bookings", "client_phone_key", "client_phone")):
        ddl = sqlite_db.execute(text("SELECT sql FROM sqlite_master WHERE name = :t"), {"t": table}).scalar_one()
        assert f"{key} TEXT GENERATED ALWAYS AS ({phone_key_sql(phone, 'sqlite')}) STORED" in ddl


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ([{"id": 12, "title": "Маникюр"}, {"id": 13}], 12),
        ([{"id": 0}], 0),
        ([{"id": "12"}], None),
        ([{"id": 1.5}], None),
        ([{"id": -3}], None),
        ([{"id": True}], None),
        ([{"id": 10**18}], None),
        ([{"title": "Маникюр"}], None),
        ([], None),
        ({"id": 12}, None),
        ('[{"id": 12}]', None),
        (5, None),
    ],
)
def test_last_service_id_in_both_databases_and_python(db: Session, sqlite_db: Session, raw: Any, expected: Any) -> None:
    assert last_service_id(raw) == expected
    for session in (db, sqlite_db):
        company = make_company(session)
        client = Client(id=7, company_id=company.id, last_services=raw)
        session.add(client)
        session.flush()
        session.refresh(client)
        assert client.last_service_id == expected
        session.delete(client)
        session.flush()


separator = st.sampled_from([*SEPARATORS.replace("+", ""), "", "", ""])


@st.composite
def russian_phone(draw: st.DrawFn) -> str:
    """A number as people and booking systems write it: +7, 7, 8, 810 or nothing in front, any separators."""
    digits = draw(st.text(alphabet="0123456789", min_size=10, max_size=10))
    prefix = draw(st.sampled_from(["+7", "7", "8", "", "+7 8", "8 10 7", "+"]))
    body = "".join(ch + draw(separator) for ch in digits)
    return draw(separator) + prefix + draw(separator) + body + draw(separator)


@settings(max_examples=400)
@given(russian_phone())
def test_key_equals_normalize_phone_whenever_that_accepts_the_number(raw: str) -> None:
    normalized = try_normalize_phone(raw)
    if normalized is not None:
        assert phone_key(raw) == normalized


def _sql_keys(session: Session, raws: list[str], dialect: str) -> list[str | None]:
    if dialect == "postgresql":
        return [session.execute(text("SELECT reactivation_phone_key(:r)"), {"r": r}).scalar() for r in raws]
    expression = phone_key_sql("raw", "sqlite")
    return [session.execute(text(f"SELECT {expression} FROM (SELECT :r AS raw)"), {"r": r}).scalar() for r in raws]


_SAMPLES = st.lists(
    st.one_of(russian_phone(), st.text(max_size=30), st.text(alphabet="+0123456789 ()-.\u00a0\t", max_size=20)),
    min_size=1,
    max_size=20,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_SAMPLES)
def test_postgres_function_equals_the_python_twin(pg_engine: Engine, raws: list[str]) -> None:
    raws = [r.replace("\x00", "") for r in raws]  # PostgreSQL text cannot hold NUL
    with Session(pg_engine) as session:
        assert _sql_keys(session, raws, "postgresql") == [phone_key(r) for r in raws]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_SAMPLES)
@example(["000000000\x00"])  # SQLite's length() stops at the NUL
def test_sqlite_expression_equals_the_python_twin(sqlite_db: Session, raws: list[str]) -> None:
    assert _sql_keys(sqlite_db, raws, "sqlite") == [phone_key(r) for r in raws]


def test_generated_columns_fill_themselves(db: Session, sqlite_db: Session) -> None:
    for session in (db, sqlite_db):
        company = make_company(session)
        client = Client(id=5, company_id=company.id, phone="8 (900) 123-45-67")
        session.add(client)
        session.flush()
        session.refresh(client)
        assert client.phone_key == "+79001234567"
        client.phone = None
        session.flush()
        session.refresh(client)
        assert client.phone_key is None


def test_a_phone_holding_nul_has_no_key_on_sqlite(sqlite_db: Session) -> None:
    # PostgreSQL text cannot hold a NUL at all; SQLite stores one, and its length() would stop there.
    company = make_company(sqlite_db)
    client = make_client(sqlite_db, company.id, last_visit=None, phone="8 (900) 123-45-6\x007")
    booking = make_booking(sqlite_db, client, when=datetime(2026, 11, 30, 12, tzinfo=UTC), phone="000000000\x00")
    sqlite_db.refresh(client)
    sqlite_db.refresh(booking)
    assert (client.phone_key, booking.client_phone_key) == (None, None)


def test_examples() -> None:
    # No key rather than a different one in Python and in SQLite.
    assert phone_key("000000000\x00") is None
    assert phone_key("8 (900) 123-45-6\x007") is None
    assert phone_key("8 (900) 123-45-67") == "+79001234567"
    assert phone_key("+7 8 900 123 45 67") == "+79001234567"
    assert phone_key("900 123 45 67") == "+79001234567"
    assert phone_key("8 10 44 20 7946 0958") == "+442079460958"
    assert phone_key("+44 20 7946 0958") == "+442079460958"
    assert phone_key("не указан") == "+неуказан"
    assert phone_key("  ") is None and phone_key(None) is None and phone_key(79001234567) is None
