"""The due selection on PostgreSQL and SQLite: every level, step boundary and exclusion, order, isolation."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.orm import Session

from reactivation.audience.selection import DueClient, due_clients, recheck_client
from reactivation.core.vocabulary import SkipReason as Skip
from reactivation.core.vocabulary import Step
from reactivation.storage.models import (
    Client,
    ClientPersonalizedInterval,
    OptOut,
    ReactivationHistory,
    ReplyHold,
    Service,
    ServiceReactivationInterval,
)
from reactivation.timing.averages import calculate_averages
from reactivation.timing.waterfall import Source
from reactivation.tools.bulk import load_salon
from reactivation.tools.synthetic import generate_salon
from tests.factories import at_noon, make_booking, make_client, make_company, make_service, make_visits

TODAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)  # 10:00 in Moscow


@pytest.fixture(params=["postgres", "sqlite"])
def session(request: pytest.FixtureRequest) -> Iterator[Session]:
    yield request.getfixturevalue("db" if request.param == "postgres" else "sqlite_db")


@dataclass
class Salon:
    session: Session
    company_id: int
    manicure: Service  # industry: manicure_gel, 21 days
    spa: Service  # no industry match: universal 30 days
    haircut: Service  # industry: haircut_male, 28 days

    def client(self, days_ago: int | None, service: Service | None = None, **fields: Any) -> Client:
        last_visit = TODAY - timedelta(days=days_ago) if days_ago is not None else None
        return make_client(
            self.session, self.company_id, last_visit=last_visit, services=[service or self.manicure], **fields
        )

    def due(self, **kwargs: Any) -> dict[int, DueClient]:
        return {d.client_id: d for d in due_clients(self.session, company_id=self.company_id, today=TODAY, **kwargs)}

    def history(self, client: Client, *, step: int = 1, status: str = "sent", days_ago: int = 1, **fields: Any) -> None:
        moment = NOW - timedelta(days=days_ago)
        row = ReactivationHistory(
            company_id=self.company_id,
            client_id=client.id,
            phone=fields.pop("phone", None),
            step=step,
            message_type=Step(step).message_type,
            status=status,
            inactive_days=30,
            last_visit_date=fields.pop("last_visit_date", client.last_visit_date),
            interval_days=21,
            interval_source="industry_standard",
            created_at=moment,
            updated_at=moment,
            message_sent_at=moment if status in ("sent", "delivered", "unknown") else None,
            **fields,
        )
        self.session.add(row)
        self.session.flush()


def make_salon(session: Session, company_id: int | None = None, **settings: Any) -> Salon:
    company = make_company(session, company_id, settings=settings)
    return Salon(
        session,
        company.id,
        make_service(session, company.id, "Маникюр с покрытием гель-лак"),
        make_service(session, company.id, "SPA-программа «Релакс»"),
        make_service(session, company.id, "Стрижка мужская"),
    )


@pytest.fixture
def salon(session: Session) -> Salon:
    return make_salon(session)


# --- levels ---------------------------------------------------------------------------------------------------------


def test_each_level_of_the_waterfall(salon: Salon) -> None:
    personal = salon.client(100, salon.haircut)
    salon.session.add(
        ClientPersonalizedInterval(
            company_id=salon.company_id,
            client_id=personal.id,
            service_id=salon.haircut.yclients_id,
            personal_interval_days=24,
            visit_count=6,
            consistency_score=Decimal("0.90"),
            last_calculated=NOW,
        )
    )
    average = salon.client(100, salon.manicure)
    salon.session.add(
        ServiceReactivationInterval(
            company_id=salon.company_id,
            service_id=salon.manicure.yclients_id,
            service_name=salon.manicure.title,
            median_interval_days=26,
            sample_size=40,
            is_active=True,
            last_calculated=NOW,
        )
    )
    industry = salon.client(100, salon.haircut)
    universal = salon.client(100, salon.spa)
    salon.session.flush()

    due = salon.due()

    assert (due[personal.id].interval.source, due[personal.id].interval.interval_days) == (Source.PERSONAL, 24)
    assert due[personal.id].interval.confidence == 0.81
    assert (due[average.id].interval.source, due[average.id].interval.interval_days) == (Source.SERVICE_AVERAGE, 26)
    assert (due[industry.id].interval.source, due[industry.id].interval.interval_days) == (
        Source.INDUSTRY_STANDARD,
        28,
    )
    assert due[industry.id].interval.evidence["category"] == "haircut_male"
    assert (due[universal.id].interval.source, due[universal.id].interval.interval_days) == (Source.UNIVERSAL, 30)
    assert due[universal.id].last_service_name == "SPA-программа «Релакс»"


def test_inconsistent_personal_rows_and_small_samples_fall_through(salon: Salon) -> None:
    client = salon.client(100, salon.haircut)
    salon.session.add_all(
        [
            ClientPersonalizedInterval(
                company_id=salon.company_id,
                client_id=client.id,
                service_id=salon.haircut.yclients_id,
                personal_interval_days=60,
                visit_count=6,
                consistency_score=Decimal("0.40"),
                last_calculated=NOW,
            ),
            ServiceReactivationInterval(
                company_id=salon.company_id,
                service_id=salon.haircut.yclients_id,
                median_interval_days=35,
                sample_size=9,
                is_active=False,
                last_calculated=NOW,
            ),
        ]
    )
    salon.session.flush()
    found = salon.due()[client.id]
    assert found.interval.source == Source.INDUSTRY_STANDARD and found.interval.interval_days == 28
    assert set(found.interval.evidence["passed_over"]) == {"personal", "service_average"}


# --- steps -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days_ago", "expected"),
    [(23, None), (24, Step.GENTLE), (44, Step.GENTLE), (45, Step.OFFER), (65, Step.OFFER), (66, Step.WIN_BACK)],
)
def test_step_boundaries_on_a_21_day_service_with_3_grace_days(
    salon: Salon, days_ago: int, expected: Step | None
) -> None:
    client = salon.client(days_ago)
    found = salon.due().get(client.id)
    assert (found.step if found else None) == expected
    if found:
        assert found.due_date == TODAY - timedelta(days=days_ago) + timedelta(days=int(expected) * 21 + 3)  # type: ignore[arg-type]
        assert found.message_type == found.step.message_type


def test_company_grace_days_move_the_boundary(session: Session) -> None:
    salon = make_salon(session, grace_days=0)
    assert salon.client(21).id in salon.due()
    assert salon.client(20).id not in salon.due()


def test_one_message_per_step_per_lapse(salon: Salon) -> None:
    client = salon.client(30)
    salon.history(client, step=1, days_ago=8)
    assert client.id not in salon.due()  # gentle was sent in this lapse; offer is not due before day 45

    later = salon.client(50)
    salon.history(later, step=1, days_ago=20)
    found = salon.due()[later.id]
    assert found.step == Step.OFFER and found.previous_step == Step.GENTLE

    # A step of an earlier lapse (another last visit date) does not count.
    returning = salon.client(30)
    salon.history(returning, step=3, days_ago=60, last_visit_date=TODAY - timedelta(days=200))
    assert salon.due()[returning.id].step == Step.GENTLE


def test_after_win_back_nothing_more_in_the_lapse(salon: Salon) -> None:
    client = salon.client(200)
    salon.history(client, step=3, days_ago=30)
    assert client.id not in salon.due()


def test_a_skipped_or_failed_step_is_not_claimed_again(salon: Salon) -> None:
    client = salon.client(30)
    salon.history(client, step=1, status="failed", days_ago=2)
    assert client.id not in salon.due()


# --- exclusions ----------------------------------------------------------------------------------------------------


def test_blacklisted_no_visits_and_no_last_visit_are_left_out(salon: Salon) -> None:
    blacklisted = salon.client(40, blacklisted=True)
    never = salon.client(40, visit_count=0)
    unknown = salon.client(None, visit_count=3)
    kept = salon.client(40)
    due = salon.due()
    assert kept.id in due and not {blacklisted.id, never.id, unknown.id} & set(due)


def test_opted_out_by_phone_in_any_format_or_by_client(salon: Salon) -> None:
    formatted = salon.client(40, phone="8 (900) 555-12-34")
    by_client = salon.client(40, phone="+7 900 555 00 01")
    kept = salon.client(40, phone="+7 900 555 00 02")
    salon.session.add_all(
        [
            OptOut(company_id=salon.company_id, phone="+79005551234", created_at=NOW),
            OptOut(company_id=salon.company_id, phone="+79990000000", client_id=by_client.id, created_at=NOW),
        ]
    )
    salon.session.flush()
    due = salon.due()
    assert kept.id in due and formatted.id not in due and by_client.id not in due


def test_opt_out_holds_for_a_phone_the_sql_key_reads_differently(salon: Salon) -> None:
    # A foreign number with its trunk 0 after the country code: normalize_phone drops the 0, the SQL key keeps it.
    exotic = salon.client(40, phone="+44 0 20 7946 0958")
    salon.session.add(OptOut(company_id=salon.company_id, phone="+442079460958", created_at=NOW))
    salon.session.flush()
    assert exotic.id not in salon.due()
    assert exotic.id not in salon.due(limit=1)


def test_upcoming_booking_protects_but_a_cancelled_one_does_not(salon: Salon) -> None:
    booked = salon.client(40)
    make_booking(salon.session, booked, when=at_noon(TODAY + timedelta(days=3)))
    cancelled = salon.client(40)
    make_booking(salon.session, cancelled, when=at_noon(TODAY + timedelta(days=3)), status="deleted")
    later_today = salon.client(40)
    make_booking(salon.session, later_today, when=NOW + timedelta(hours=5), status="new")
    due = salon.due()
    assert cancelled.id in due and booked.id not in due and later_today.id not in due


def test_booking_matched_by_phone_when_it_has_no_client_id(salon: Salon) -> None:
    client = salon.client(40, phone="+79007770011")
    make_booking(
        salon.session,
        None,
        company_id=salon.company_id,
        phone="8 900 777-00-11",
        when=at_noon(TODAY + timedelta(days=2)),
    )
    assert client.id not in salon.due()


def test_a_booking_or_visit_since_the_lapse_began(salon: Salon) -> None:
    booked_since = salon.client(40)
    make_booking(salon.session, booked_since, when=at_noon(TODAY - timedelta(days=10)))
    booked_before = salon.client(40)
    make_booking(salon.session, booked_before, when=at_noon(TODAY - timedelta(days=40)))
    visited_since = salon.client(40)
    make_visits(salon.session, visited_since, salon.manicure, [TODAY - timedelta(days=5)])
    missed_since = salon.client(40)
    make_visits(salon.session, missed_since, salon.manicure, [TODAY - timedelta(days=5)], attendance=0)
    due = salon.due()
    assert booked_before.id in due and missed_since.id in due
    assert booked_since.id not in due and visited_since.id not in due


@pytest.mark.parametrize(
    ("status", "days_ago", "excluded"),
    [
        ("sent", 1, True),
        ("sent", 6, True),
        ("sent", 7, False),
        ("delivered", 3, True),
        ("unknown", 3, True),
        ("holdout", 3, True),
        ("claimed", 1, True),
        ("generated", 1, True),
        ("sending", 1, True),
        ("skipped", 1, False),
        ("failed", 1, False),
    ],
)
def test_no_two_messages_within_seven_days(salon: Salon, status: str, days_ago: int, excluded: bool) -> None:
    client = salon.client(60)
    # a message of an earlier lapse, so that this lapse's steps are untouched
    salon.history(client, status=status, days_ago=days_ago, last_visit_date=TODAY - timedelta(days=300))
    assert (client.id not in salon.due()) is excluded


def test_a_recent_message_to_the_same_phone_counts(salon: Salon) -> None:
    twin = salon.client(60, phone="8 900 321-00-99")
    other_record = salon.client(60)
    salon.history(other_record, phone="+79003210099", days_ago=2, last_visit_date=TODAY - timedelta(days=300))
    assert twin.id not in salon.due()


def test_min_days_between_messages_is_a_company_setting(session: Session) -> None:
    salon = make_salon(session, min_days_between_messages=14)
    client = salon.client(60)
    salon.history(client, days_ago=10, last_visit_date=TODAY - timedelta(days=300))
    assert client.id not in salon.due()


# --- a dry run is a sandbox: its rows are never a contact ----------------------------------------------------------


def test_a_dry_run_message_does_not_count_for_the_minimum_gap(salon: Salon) -> None:
    # Given a client and a phone that a dry run "messaged" yesterday (for an earlier lapse, so no step is involved)
    client = salon.client(60)
    salon.history(client, days_ago=1, last_visit_date=TODAY - timedelta(days=300), dry_run=True)
    twin = salon.client(60, phone="8 900 321-00-98")
    other_record = salon.client(60)
    salon.history(
        other_record, phone="+79003210098", days_ago=1, last_visit_date=TODAY - timedelta(days=300), dry_run=True
    )
    # Then the real selection still reaches both, whole or limited
    for due in (salon.due(), salon.due(limit=10)):
        assert {client.id, twin.id} <= set(due)


def test_a_dry_run_takes_no_step_of_the_lapse_and_stops_no_flow(salon: Salon) -> None:
    # Given a dry run that "sent" the gentle step of this lapse, and one whose "reply" stopped the flow
    client = salon.client(30)
    salon.history(client, step=1, days_ago=2, dry_run=True)
    stopped = salon.client(30)
    salon.history(stopped, step=1, days_ago=2, dry_run=True, flow_stopped_reason="negative")
    # Then the real selection still finds the gentle step due for both, as if nothing had been sent
    for due in (salon.due(), salon.due(limit=10)):
        assert (due[client.id].step, due[client.id].previous_step) == (Step.GENTLE, None)
        assert due[stopped.id].step == Step.GENTLE
    # And the re-check before each step does not take the dry run's stopped flow for the client's
    lapse = stopped.last_visit_date
    assert lapse is not None
    assert (
        recheck_client(salon.session, company_id=salon.company_id, client_id=stopped.id, lapse_date=lapse, now=NOW)
        is None
    )


def test_nothing_beyond_max_inactive_days(salon: Salon) -> None:
    edge = salon.client(365)
    beyond = salon.client(366)
    due = salon.due()
    assert edge.id in due and beyond.id not in due


def test_a_last_visit_in_the_future_is_not_due(salon: Salon) -> None:
    assert salon.client(-3).id not in salon.due()


def test_hostile_last_services_fall_back_to_universal(salon: Salon) -> None:
    clients = []
    for raw in ([{"id": "abc", "title": 5}], [{"title": "Маникюр"}], {"id": 1}, [], ["x"], [{"id": 10**30}]):
        client = salon.client(40)
        client.last_services = raw
        clients.append(client)
    salon.session.flush()
    due = salon.due()
    assert all(due[c.id].interval.source == Source.UNIVERSAL for c in clients)
    assert all(due[c.id].last_service_id is None for c in clients)


# --- order, limit, isolation ------------------------------------------------------------------------------------


def test_highest_value_first_then_longest_inactive_then_id(salon: Salon) -> None:
    rich = salon.client(30, total_spent=Decimal(90000))
    long_gone = salon.client(60, total_spent=Decimal(5000))
    recent = salon.client(30, total_spent=Decimal(5000))
    recent_twin = salon.client(30, total_spent=Decimal(5000))
    order = [d.client_id for d in due_clients(salon.session, company_id=salon.company_id, today=TODAY)]
    assert order == [rich.id, long_gone.id, *sorted([recent.id, recent_twin.id])]
    top = due_clients(salon.session, company_id=salon.company_id, today=TODAY, limit=2)
    assert [d.client_id for d in top] == [rich.id, long_gone.id]
    assert due_clients(salon.session, company_id=salon.company_id, today=TODAY, limit=0) == []


def test_two_companies_with_identical_data_never_mix(session: Session) -> None:
    first = make_salon(session)
    second = make_salon(session)
    a = first.client(40, phone="+79001112233")
    b = second.client(40, phone="+79001112233")
    # Second company: the same phone opted out there, and a booking there.
    session.add(OptOut(company_id=second.company_id, phone="+79001112233", created_at=NOW))
    make_booking(session, None, company_id=second.company_id, phone="+79001112233", when=at_noon(TODAY))
    first_due, second_due = first.due(), second.due()
    assert set(first_due) == {a.id} and b.id not in second_due


def test_the_result_carries_what_the_pipeline_claims_with(salon: Salon) -> None:
    client = salon.client(50, phone="8 (900) 100-20-30", name="Мария", total_spent=Decimal("1234.50"))
    found = salon.due()[client.id]
    assert found.phone == "8 (900) 100-20-30" and found.phone_e164 == "+79001002030"
    assert found.name == "Мария" and found.total_spent == Decimal("1234.50")
    assert found.last_visit_date == TODAY - timedelta(days=50) and found.days_inactive == 50
    assert found.last_service_id == salon.manicure.yclients_id
    assert found.last_service_name == "Маникюр с покрытием гель-лак"
    assert found.step == Step.OFFER and found.campaign == "dormant_60" and found.previous_step is None


def test_unusable_phone_is_still_listed_with_no_e164(salon: Salon) -> None:
    client = salon.client(40, phone="не указан")
    assert salon.due()[client.id].phone_e164 is None


# --- the whole thing on a synthetic salon ---------------------------------------------------------------------


def test_sql_and_waterfall_agree_and_postgres_equals_sqlite(
    db: Session, sqlite_db: Session, caplog: pytest.LogCaptureFixture
) -> None:
    results = []
    for session in (db, sqlite_db):
        # Small enough that a few services have too few intervals for a salon median: their clients' intervals come
        # from the industry standard, so that every level but the universal one answers for someone.
        plan = generate_salon(company_id=61, clients=400, seed=9, today=TODAY)
        load_salon(session, plan)
        session.flush()
        calculate_averages(session, company_id=61, now=NOW)
        with caplog.at_level(logging.ERROR, logger="reactivation.audience.selection"):
            results.append(due_clients(session, company_id=61, today=TODAY))
    assert not [r for r in caplog.records if "disagree" in r.getMessage()]
    pg, lite = results
    assert len(pg) > 50
    assert [(d.client_id, d.step, d.interval) for d in pg] == [(d.client_id, d.step, d.interval) for d in lite]
    assert {Source.PERSONAL, Source.SERVICE_AVERAGE, Source.INDUSTRY_STANDARD} <= {d.interval.source for d in pg}


# --- recheck ----------------------------------------------------------------------------------------------------------


def test_recheck_finds_nothing_new_for_an_untouched_client(salon: Salon) -> None:
    client = salon.client(40)
    assert (
        recheck_client(
            salon.session, company_id=salon.company_id, client_id=client.id, lapse_date=client.last_visit_date, now=NOW
        )
        is None
    )  # type: ignore[arg-type]


def test_recheck_reasons(salon: Salon) -> None:
    lapse = TODAY - timedelta(days=40)

    def check(client: Client) -> Skip | None:
        return recheck_client(
            salon.session, company_id=salon.company_id, client_id=client.id, lapse_date=lapse, now=NOW
        )

    assert recheck_client(salon.session, company_id=salon.company_id, client_id=1, lapse_date=lapse, now=NOW) == (
        Skip.CLIENT_GONE
    )
    assert check(salon.client(40, blacklisted=True)) == Skip.BLACKLISTED
    opted = salon.client(40, phone="8 900 444 55 66")
    salon.session.add(OptOut(company_id=salon.company_id, phone="+79004445566", created_at=NOW))
    salon.session.flush()
    assert check(opted) == Skip.OPTED_OUT
    assert check(salon.client(None, visit_count=0)) == Skip.NO_VISIT
    assert check(salon.client(10)) == Skip.VISITED_SINCE
    assert check(salon.client(50)) == Skip.LAPSE_CHANGED
    visited = salon.client(40)
    make_visits(salon.session, visited, salon.manicure, [TODAY - timedelta(days=1)])
    assert check(visited) == Skip.VISITED_SINCE
    upcoming = salon.client(40)
    make_booking(salon.session, upcoming, when=NOW + timedelta(days=2))
    assert check(upcoming) == Skip.UPCOMING_BOOKING
    booked = salon.client(40)
    make_booking(salon.session, booked, when=NOW - timedelta(days=2))
    assert check(booked) == Skip.BOOKED_SINCE
    cancelled = salon.client(40)
    make_booking(salon.session, cancelled, when=NOW + timedelta(days=2), status="deleted")
    assert check(cancelled) is None
    assert check(salon.client(40, phone="12345")) == Skip.INVALID_PHONE


def test_reply_holds_in_the_selection_and_the_recheck(salon: Salon) -> None:
    # given clients due for a manicure (21 days): one snoozed until after today, one whose snooze ends today (70
    # days out the waterfall would give win_back), one who said they moved, and one without a hold
    snoozed, woken = salon.client(40), salon.client(70)
    moved, plain = salon.client(40, phone="+79001110003"), salon.client(40)

    def hold(client: Client, **fields: Any) -> None:
        salon.session.add(
            ReplyHold(
                company_id=salon.company_id,
                client_id=client.id,
                last_visit_date=client.last_visit_date,
                step=1,
                history_id=client.id,
                created_at=NOW,
                **fields,
            )
        )

    hold(snoozed, kind="snoozed", until=TODAY + timedelta(days=5))
    hold(woken, kind="snoozed", until=TODAY)
    hold(moved, kind="moved", phone="+79001110003")
    salon.session.flush()
    # when the due clients are selected
    due = {d.client_id: d for d in due_clients(salon.session, company_id=salon.company_id, today=TODAY)}
    # then the snoozed one is not due, the woken one gets its snoozed step again, the moved one is marked
    assert snoozed.id not in due
    assert (due[woken.id].step, due[woken.id].repeat, due[woken.id].due_date) == (Step.GENTLE, True, TODAY)
    assert due[moved.id].moved and not due[moved.id].repeat
    assert not due[plain.id].moved and not due[plain.id].repeat and due[plain.id].step == Step.GENTLE

    # and the re-check before a step says why the held ones must wait
    def check(client: Client) -> Skip | None:
        return recheck_client(
            salon.session, company_id=salon.company_id, client_id=client.id, lapse_date=client.last_visit_date, now=NOW
        )  # type: ignore[arg-type]

    assert (check(snoozed), check(moved), check(woken), check(plain)) == (Skip.SNOOZED, Skip.MOVED_AWAY, None, None)
