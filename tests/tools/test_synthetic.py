from datetime import UTC, date, datetime

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from reactivation.core.phones import try_normalize_phone
from reactivation.core.settings import get_settings
from reactivation.storage.models import AppointmentCache, Booking, Client, Company, OptOut, Service
from reactivation.tools import cli
from reactivation.tools.bulk import NotDemoData, load_salon
from reactivation.tools.synthetic import (
    ANYONE,
    FATHERS,
    FIRST_NAMES_F,
    FIRST_NAMES_M,
    MEN,
    PARENTS,
    WOMEN,
    generate_salon,
)
from tests.factories import make_client, make_company

TODAY = date(2026, 11, 23)


def test_same_seed_same_salon_other_seed_other_salon() -> None:
    first = generate_salon(company_id=1, clients=300, seed=5, today=TODAY)
    again = generate_salon(company_id=1, clients=300, seed=5, today=TODAY)
    other = generate_salon(company_id=1, clients=300, seed=6, today=TODAY)
    assert first.clients == again.clients and first.appointments == again.appointments
    assert first.services == again.services and first.bookings == again.bookings
    assert first.clients != other.clients


def test_salon_is_realistic() -> None:
    plan = generate_salon(company_id=962302, clients=2000, seed=1, today=TODAY)
    assert 15 <= len(plan.services) <= 30
    assert all(any("а" <= ch.lower() <= "я" for ch in s.title) for s in plan.services)
    archetypes = {c.archetype for c in plan.clients}
    assert {"regular", "irregular", "lapsed", "new", "no_show"} <= archetypes
    assert any(c.blacklisted for c in plan.clients)
    assert any(a.attendance == 0 for a in plan.appointments)
    assert any(b.status == "deleted" for b in plan.bookings)
    assert any(b.datetime.date() > TODAY and b.status != "deleted" for b in plan.bookings)
    new = [c for c in plan.clients if c.archetype == "new"]
    assert all(c.visit_count == 1 and len(c.last_services) == 1 for c in new)
    # a year of visits, nothing in the future
    days = [a.appointment_datetime.date() for a in plan.appointments]
    assert min(days) >= date(2025, 11, 23) and max(days) <= TODAY
    # phones mostly usable, a few not, written many ways
    usable = [c for c in plan.clients if try_normalize_phone(c.phone)]
    assert 0.95 < len(usable) / len(plan.clients) < 1
    assert len({try_normalize_phone(c.phone) for c in usable}) == len(usable)
    # last_services is most recent first and matches the last attended visit
    regular = next(c for c in plan.clients if c.archetype == "regular" and c.visit_count > 3)
    last = max(
        (a for a in plan.appointments if a.client_id == regular.id and a.attendance == 1),
        key=lambda a: a.appointment_datetime,
    )
    assert regular.last_visit_date == last.appointment_datetime.date()
    assert regular.last_services[0]["id"] in last.service_ids


def test_each_client_books_only_the_services_that_fit_them() -> None:
    # Given a large synthetic salon
    plan = generate_salon(company_id=962302, clients=3000, seed=1, today=TODAY)
    services = {s.yclients_id: s for s in plan.services}
    booked: dict[int, set[str]] = {}
    for visit in plan.appointments:
        booked.setdefault(visit.client_id, set()).update(services[sid].audience for sid in visit.service_ids)
    clients = {c.id: c for c in plan.clients}
    # Then no woman has a men's service (королевское бритьё, «Отец и сын») and no man a women's one
    for client_id, audiences in booked.items():
        client = clients[client_id]
        if client.female:
            assert not audiences & {MEN, FATHERS}, (client.name, audiences)
        else:
            assert WOMEN not in audiences, (client.name, audiences)
        # and only a client who brings a child books a children's service
        if not client.parent:
            assert not audiences & {PARENTS, FATHERS}, (client.name, audiences)
    # And the names follow the gender: a woman's first name for a female client
    women = [c for c in plan.clients if c.female and c.name in FIRST_NAMES_F]
    men = [c for c in plan.clients if not c.female and c.name in FIRST_NAMES_M]
    assert women and men
    assert not any(c.name in FIRST_NAMES_M for c in plan.clients if c.female)
    # and every kind of service still finds its clients
    assert {MEN, WOMEN, ANYONE} <= set().union(*booked.values())


def test_a_barbershop_offers_no_womens_services_and_has_few_women_clients() -> None:
    plan = generate_salon(company_id=5, clients=1000, seed=1, today=TODAY, name="Барбершоп «Борода»")
    assert plan.services and not any(s.audience == WOMEN for s in plan.services)
    assert 0.05 < sum(c.female for c in plan.clients) / len(plan.clients) < 0.15


def test_loads_on_postgres(db: Session) -> None:
    plan = generate_salon(company_id=4242, clients=150, seed=3, today=TODAY)
    counts = load_salon(db, plan)
    assert counts["clients"] == 150
    assert db.scalar(select(func.count()).select_from(Client).where(Client.company_id == 4242)) == 150
    assert db.scalar(
        select(func.count()).select_from(AppointmentCache).where(AppointmentCache.company_id == 4242)
    ) == len(plan.appointments)
    stored = db.scalar(select(Client.last_services).where(Client.company_id == 4242, Client.visit_count > 0))
    assert isinstance(stored, list) and {"id", "title"} <= set(stored[0])
    # and the tables it wrote were analyzed: the planner counts the rows they hold
    for table in ("clients", "appointments_cache", "bookings", "services"):
        reltuples = db.scalar(text("SELECT reltuples FROM pg_class WHERE oid = CAST(:t AS regclass)"), {"t": table})
        assert reltuples == db.scalar(text(f"SELECT count(*) FROM {table}")) > 0, table
    # replacing rebuilds the company without duplicating anything
    load_salon(db, plan, replace=True)
    assert db.scalar(select(func.count()).select_from(Service).where(Service.company_id == 4242)) == len(plan.services)
    assert db.scalar(select(func.count()).select_from(Booking).where(Booking.company_id == 4242)) == len(plan.bookings)


def test_seed_demo_command_on_sqlite(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        assert runner.invoke(cli.app, ["migrate"]).exit_code == 0
        result = runner.invoke(cli.app, ["seed-demo", "--company", "77", "--clients", "120", "--seed", "9"])
        assert result.exit_code == 0, result.output
        assert "clients" in result.output and "120" in result.output
        again = runner.invoke(cli.app, ["seed-demo", "--company", "77", "--clients", "120"])
        assert again.exit_code == 2 and "already exists" in again.output
        replaced = runner.invoke(cli.app, ["seed-demo", "--company", "77", "--clients", "50", "--replace"])
        assert replaced.exit_code == 0, replaced.output
        rt = cli.runtime()
        with rt.session() as session:
            assert session.scalar(select(func.count()).select_from(Client)) == 50
            company = session.get(Company, 77)
            assert company is not None and company.is_demo is True
        rt.dispose()
    finally:
        get_settings.cache_clear()


def test_a_company_that_is_not_demo_data_is_never_replaced(db: Session) -> None:
    # Given a real salon (the booking system's: not marked as demo data) with a client and an opt-out
    real = make_company(db, 4343)
    make_client(db, real.id, last_visit=TODAY, id=43_430_001)
    db.add(OptOut(company_id=real.id, phone="+79001112233", created_at=datetime(2026, 11, 1, tzinfo=UTC)))
    db.flush()
    plan = generate_salon(company_id=real.id, clients=20, seed=3, today=TODAY)
    # When a synthetic salon is loaded over it with replace
    with pytest.raises(NotDemoData, match=r"company 4343 exists and is not demo data.*refusing to replace it\. Try"):
        load_salon(db, plan, replace=True, remedy="Try another id.")
    # Then nothing of the salon's was touched
    assert db.scalar(select(func.count()).select_from(Client).where(Client.company_id == real.id)) == 1
    assert db.scalar(select(func.count()).select_from(OptOut).where(OptOut.company_id == real.id)) == 1


def test_seed_demo_replace_refuses_a_company_it_did_not_write(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        assert runner.invoke(cli.app, ["migrate"]).exit_code == 0
        rt = cli.runtime()
        with rt.session() as session:
            make_company(session, 78, name="Салон клиента")
            make_client(session, 78, last_visit=TODAY, id=780_000_001)
        # When seed-demo is asked to replace the salon that the booking system wrote
        refused = runner.invoke(cli.app, ["seed-demo", "--company", "78", "--clients", "20", "--replace"])
        # Then it refuses with one clear line that says what to do, exit code 2, and the salon is as it was
        assert refused.exit_code == 2, refused.output
        assert "company 78 exists and is not demo data" in refused.output and "another --company" in refused.output
        assert "Traceback" not in refused.output
        with rt.session() as session:
            assert session.scalar(select(Company.name).where(Company.id == 78)) == "Салон клиента"
            assert session.scalar(select(func.count()).select_from(Client).where(Client.company_id == 78)) == 1
        rt.dispose()
    finally:
        get_settings.cache_clear()
