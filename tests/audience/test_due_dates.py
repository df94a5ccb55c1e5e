"""The kept due dates against the reference selection: on random salons, days and campaigns both choose the same
clients, intervals and steps; a stale kept row is recomputed, never trusted; claims and the averages keep them."""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from reactivation.audience import selection
from reactivation.audience.preview import PreviewRow, preview_row, stream_preview, to_csv, write_csv, write_json
from reactivation.audience.selection import DueClient, due_clients, reference_due_clients
from reactivation.flow.campaign import claim_row
from reactivation.storage import due_dates, history, holds
from reactivation.storage.companies import load_company
from reactivation.storage.models import Client, DueDate, OptOut
from reactivation.timing.averages import calculate_averages
from reactivation.timing.due_dates import refresh
from reactivation.tools.bulk import load_salon
from reactivation.tools.synthetic import generate_salon
from tests.factories import make_company, make_service, next_id

TODAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)


@pytest.fixture(params=["postgres", "sqlite"])
def session(request: pytest.FixtureRequest) -> Iterator[Session]:
    yield request.getfixturevalue("db" if request.param == "postgres" else "sqlite_db")


def _facts(found: list[DueClient]) -> list[tuple[Any, ...]]:
    """What both selections must agree on, in order."""
    return [
        (
            d.client_id,
            d.step,
            d.interval.interval_days,
            str(d.interval.source),
            d.interval.confidence,
            dict(d.interval.evidence),
            d.due_date,
            d.previous_step,
            d.repeat,
            d.moved,
            d.last_visit_date,
            d.days_inactive,
            d.last_service_name,
            d.phone_e164,
            d.total_spent,
        )
        for d in found
    ]


def _same(session: Session, company_id: int, day: date, limit: int | None) -> list[DueClient]:
    kept = due_clients(session, company_id=company_id, today=day, limit=limit)
    reference = reference_due_clients(session, company_id=company_id, today=day, limit=limit)
    assert _facts(kept) == _facts(reference)
    return kept


def _campaign(session: Session, company_id: int, day: date, rng: random.Random) -> None:
    """Claim a step for some of the clients due on `day` (as a campaign does, through history.claim)."""
    company = load_company(session, company_id=company_id)
    now = datetime.combine(day, time(9), tzinfo=UTC)
    chosen = [d for d in reference_due_clients(session, company_id=company_id, today=day) if rng.random() < 0.5]
    rows = [claim_row(company, d, run_id=None, now=now, dry_run=rng.random() < 0.1) for d in chosen]
    for row in rows:
        row["status"] = rng.choice(["sent", "sent", "skipped", "holdout"])
    history.claim(session, rows)
    for d in chosen[:3]:
        # A not_now reply snoozes the lapse for a while; a few reach their date within the test's days.
        holds.snooze(
            session,
            holds.Lapse(company_id, d.client_id, d.last_visit_date),
            step=int(d.step),
            until=day + timedelta(days=rng.randint(1, 40)),
            history_id=next_id(),
            now=now,
        )


def _salon(session: Session, rng: random.Random) -> int:
    company_id = next_id()
    plan = generate_salon(company_id=company_id, clients=rng.randint(60, 160), seed=rng.randint(0, 10_000), today=TODAY)
    load_salon(session, plan)
    session.flush()
    calculate_averages(session, company_id=company_id, now=NOW)
    return company_id


def _disturb(session: Session, company_id: int, rng: random.Random) -> None:
    """What the sync and the replies do between passes: new visits, a moved value, a new client, an opt-out."""
    clients = list(session.scalars(select(Client).where(Client.company_id == company_id).order_by(Client.id)))
    for client in rng.sample(clients, k=min(6, len(clients))):
        if client.last_visit_date is not None:
            client.last_visit_date = client.last_visit_date + timedelta(days=rng.randint(-20, 30))
        client.total_spent = Decimal(rng.randint(0, 90_000))
    victim = rng.choice(clients)
    if victim.phone:
        session.add(OptOut(company_id=company_id, phone=victim.phone_key or "+70000000000", created_at=NOW))
    service = make_service(session, company_id, "Маникюр с покрытием гель-лак")
    session.add(
        Client(
            id=next_id(),
            company_id=company_id,
            name="Новая",
            phone="+79005550101",
            last_visit_date=TODAY - timedelta(days=rng.randint(20, 90)),
            visit_count=1,
            last_services=[{"id": service.yclients_id, "title": service.title}],
            total_spent=Decimal(rng.randint(0, 90_000)),
        )
    )
    session.flush()


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**31),
    days=st.lists(st.integers(-30, 150), min_size=2, max_size=3),
    limit=st.sampled_from([None, 1, 7, 40]),
)
def test_kept_due_dates_choose_what_the_reference_chooses(
    session: Session, seed: int, days: list[int], limit: int | None
) -> None:
    rng = random.Random(seed)
    company_id = _salon(session, rng)
    assert due_dates.stale_count(session, company_id=company_id, at_most=10) == 0
    for offset in sorted(days):
        day = TODAY + timedelta(days=offset)
        _same(session, company_id, day, limit)
        _campaign(session, company_id, day, rng)
        _same(session, company_id, day, limit)
        if rng.random() < 0.5:
            _disturb(session, company_id, rng)  # stale rows: recomputed at selection
            _same(session, company_id, day + timedelta(days=1), limit)
        if rng.random() < 0.5:
            refresh(session, company_id=company_id, now=NOW)  # the nightly pass
    assert due_dates.stale_count(session, company_id=company_id, at_most=10) <= 10


def test_the_kept_rows_carry_the_interval_and_the_next_step(session: Session) -> None:
    rng = random.Random(5)
    company_id = _salon(session, rng)
    due = _same(session, company_id, TODAY, None)
    assert len(due) > 5
    first = due[0]
    kept = session.get(DueDate, (company_id, first.client_id))
    assert kept is not None and kept.last_visit_date == first.last_visit_date
    assert kept.interval_days == first.interval.interval_days and kept.interval_source == str(first.interval.source)
    assert kept.next_due_on <= TODAY - timedelta(days=load_company(session, company_id=company_id).settings.grace_days)
    # A claim of the step moves the kept row to the next step's day (dry runs move nothing).
    company = load_company(session, company_id=company_id)
    row = claim_row(company, first, run_id=None, now=NOW, dry_run=False)
    history.claim(session, [row])
    session.expire_all()
    kept = session.get(DueDate, (company_id, first.client_id))
    assert kept is not None and kept.previous_step == int(first.step)
    assert kept.next_due_on == due_dates.next_due_on(
        first.last_visit_date, previous_step=int(first.step), interval_days=first.interval.interval_days
    )
    assert first.client_id not in {d.client_id for d in _same(session, company_id, TODAY, None)}


def test_a_stale_kept_row_is_recomputed_not_trusted(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    company = make_company(session, settings={})
    service = make_service(session, company.id, "Маникюр с покрытием гель-лак")  # industry: 21 days
    client = Client(
        id=next_id(),
        company_id=company.id,
        name="Мария",
        phone="+79001234567",
        last_visit_date=TODAY - timedelta(days=40),
        visit_count=3,
        last_services=[{"id": service.yclients_id, "title": service.title}],
        total_spent=Decimal(5000),
    )
    session.add(client)
    session.flush()
    # A new client's kept row is stale until computed: the selection recomputes it.
    assert session.get(DueDate, (company.id, client.id)).next_due_on == due_dates.STALE  # type: ignore[union-attr]
    assert [d.client_id for d in _same(session, company.id, TODAY, None)] == [client.id]
    refresh(session, company_id=company.id, now=NOW)
    session.expire_all()
    assert session.get(DueDate, (company.id, client.id)).last_visit_date == client.last_visit_date  # type: ignore[union-attr]

    # The client came back yesterday: the trigger marks the kept row stale, and the selection does not contact
    # them on the old lapse.
    session.execute(update(Client).where(Client.id == client.id).values(last_visit_date=TODAY - timedelta(days=1)))
    session.expire_all()
    assert session.get(DueDate, (company.id, client.id)).next_due_on == due_dates.STALE  # type: ignore[union-attr]
    assert _same(session, company.id, TODAY, None) == []

    # A kept row that no longer fits although nobody marked it (a write that bypassed the trigger): the kept row
    # says due on an old lapse, the client's lapse (10 days, a 21-day service) is not due yet. The candidate is
    # recomputed, never trusted.
    session.execute(update(Client).where(Client.id == client.id).values(last_visit_date=TODAY - timedelta(days=10)))
    refresh(session, company_id=company.id, now=NOW)
    session.execute(
        update(DueDate)
        .where(DueDate.company_id == company.id, DueDate.client_id == client.id)
        .values(last_visit_date=TODAY - timedelta(days=60), next_due_on=TODAY - timedelta(days=39))
    )
    recomputed: list[Any] = []
    original = selection._reference_due

    def spy(*args: Any, **kwargs: Any) -> Any:
        recomputed.append(kwargs.get("only"))
        return original(*args, **kwargs)

    monkeypatch.setattr(selection, "_reference_due", spy)
    assert due_clients(session, company_id=company.id, today=TODAY) == []
    assert recomputed == [[client.id]]
    # The nightly pass finds the row that does not fit by the join on the kept lapse, and writes it again.
    assert refresh(session, company_id=company.id, now=NOW).recomputed == 1
    session.expire_all()
    assert session.get(DueDate, (company.id, client.id)).last_visit_date == TODAY - timedelta(days=10)  # type: ignore[union-attr]


def test_an_empty_table_falls_back_to_the_reference(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(11)
    company_id = _salon(session, rng)
    expected = _facts(reference_due_clients(session, company_id=company_id, today=TODAY, limit=20))
    session.execute(update(DueDate).where(DueDate.company_id == company_id).values(next_due_on=due_dates.STALE))
    monkeypatch.setattr(selection, "STALE_AT_MOST", 5)
    assert _facts(due_clients(session, company_id=company_id, today=TODAY, limit=20)) == expected
    # No kept row at all (a table emptied by hand, triggers bypassed): the reference path, not an empty answer.
    session.execute(DueDate.__table__.delete().where(DueDate.company_id == company_id))
    assert _facts(due_clients(session, company_id=company_id, today=TODAY, limit=20)) == expected
    assert refresh(session, company_id=company_id, now=NOW).recomputed > 0
    assert _facts(due_clients(session, company_id=company_id, today=TODAY, limit=20)) == expected


def test_two_companies_keep_their_own_rows(session: Session) -> None:
    rng = random.Random(3)
    first, second = _salon(session, rng), _salon(session, rng)
    refresh(session, company_id=first, now=NOW)
    ids = {d.client_id for d in due_clients(session, company_id=first, today=TODAY)}
    others = set(session.scalars(select(Client.id).where(Client.company_id == second)))
    assert ids and not ids & others


def test_the_streamed_preview_lists_what_the_selection_lists(session: Session) -> None:
    rng = random.Random(8)
    company_id = _salon(session, rng)
    _disturb(session, company_id, rng)  # a few stale rows, recomputed and merged in order
    reference = reference_due_clients(session, company_id=company_id, today=TODAY)
    expected = [preview_row(d) for d in reference]
    streamed = list(stream_preview(session, company_id=company_id, today=TODAY))
    assert len(expected) > 5
    assert [replace(r, phone="") for r in streamed] == [replace(r, phone="") for r in expected]
    # The phone is masked from the stored key: the same mask for every number phonenumbers accepts; an invalid
    # one ("8000…") shows its key's digits masked where the reference masked it as written.
    valid = [d.phone_e164 is not None for d in reference]
    assert [r.phone for r, ok in zip(streamed, valid, strict=True) if ok] == [
        r.phone for r, ok in zip(expected, valid, strict=True) if ok
    ]
    assert all(r.phone[-2:] == e.phone[-2:] for r, e in zip(streamed, expected, strict=True))


@pytest.mark.parametrize("count", [0, 1, 3])
def test_streamed_json_and_csv_read_as_the_whole_list_would(count: int) -> None:
    row = PreviewRow(
        client_id=1,
        name="Мария",
        phone="+7********67",
        last_service="Маникюр",
        last_visit=TODAY,
        days_inactive=30,
        interval_days=21,
        interval_source="industry_standard",
        confidence=0.8,
        step=1,
        message_type="gentle",
        due_date=TODAY,
        why="industry 21 d, 1st step due since 2026-11-23",
    )
    rows = [replace(row, client_id=n) for n in range(count)]
    out = io.StringIO()
    write_json(iter(rows), out, with_messages=False)
    assert (
        out.getvalue()
        == json.dumps([r.as_dict(with_messages=False) for r in rows], ensure_ascii=False, indent=2) + "\n"
    )
    out = io.StringIO()
    assert write_csv(iter(rows), out, with_messages=False) == count
    assert out.getvalue() == to_csv(rows, with_messages=False)
