"""Attribution: bookings in the bookings table linked to the message (or hold-out row) that preceded them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from reactivation.core.phones import InvalidPhone
from reactivation.outcomes.attribution import attribute_bookings, link_booking
from reactivation.storage.companies import UnknownCompany
from reactivation.storage.models import ReactivationHistory
from tests.factories import make_booking, make_client, make_company
from tests.history_rows import make_history

SENT_AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
LAST_VISIT = date(2026, 1, 20)


def fresh(session: Session, row: ReactivationHistory) -> ReactivationHistory:
    session.expire(row)
    return session.execute(select(ReactivationHistory).where(ReactivationHistory.id == row.id)).scalar_one()


def test_a_booking_after_a_message_is_linked_to_it(db: Session) -> None:
    # given a message sent to a client and a booking the client made two days later
    company = make_company(db)
    client = make_client(db, company.id, last_visit=LAST_VISIT)
    message = make_history(db, client, sent_at=SENT_AT)
    booking = make_booking(db, client, when=SENT_AT + timedelta(days=5), created_at=SENT_AT + timedelta(days=2))
    # when bookings are attributed
    linked = attribute_bookings(db, company_id=company.id, now=NOW)
    # then the message carries the booking, its time, and the flow stops
    row = fresh(db, message)
    assert linked == 1
    assert (row.booking_created, row.booking_id) == (True, booking.id)
    assert row.booking_created_at == SENT_AT + timedelta(days=2)
    assert row.flow_stopped_reason == "booking"


@pytest.mark.parametrize(
    "written", ["8 (900) 555-12-34", "+7 900 555 12 34", "79005551234", "9005551234", "007-900-555-1234"]
)
def test_a_booking_is_matched_by_phone_written_any_way(db: Session, written: str) -> None:
    # given a message to +79005551234 and a booking with no client id and the phone written another way
    company = make_company(db)
    client = make_client(db, company.id, last_visit=LAST_VISIT, phone="+79005551234")
    message = make_history(db, client, sent_at=SENT_AT)
    booking = make_booking(
        db, None, company_id=company.id, phone=written, when=NOW, created_at=SENT_AT + timedelta(days=1)
    )
    # when bookings are attributed
    attribute_bookings(db, company_id=company.id, now=NOW)
    # then the phone matched
    assert fresh(db, message).booking_id == booking.id


@pytest.mark.parametrize(
    ("created_after_message", "status", "why"),
    [
        (timedelta(hours=-1), "confirmed", "made before the message"),
        (timedelta(days=7, minutes=1), "confirmed", "made after the 7-day window"),
        (timedelta(days=1), "deleted", "cancelled"),
        (timedelta(days=30), "confirmed", "made after `now`"),
    ],
)
def test_bookings_outside_the_rules_are_not_linked(
    db: Session, created_after_message: timedelta, status: str, why: str
) -> None:
    company = make_company(db)
    client = make_client(db, company.id, last_visit=LAST_VISIT)
    message = make_history(db, client, sent_at=SENT_AT)
    make_booking(db, client, when=NOW, status=status, created_at=SENT_AT + created_after_message)
    assert attribute_bookings(db, company_id=company.id, now=NOW) == 0, why
    assert fresh(db, message).booking_created is False


def test_the_window_edge_counts_and_the_company_setting_moves_it(db: Session) -> None:
    # given a company with a 3-day window, and bookings exactly at and just past its end for two clients
    company = make_company(db, settings={"attribution_days": 3})
    at_edge, past_edge = (make_client(db, company.id, last_visit=LAST_VISIT) for _ in range(2))
    edge_message = make_history(db, at_edge, sent_at=SENT_AT)
    late_message = make_history(db, past_edge, sent_at=SENT_AT)
    make_booking(db, at_edge, when=NOW, created_at=SENT_AT + timedelta(days=3))
    make_booking(db, past_edge, when=NOW, created_at=SENT_AT + timedelta(days=3, seconds=1))
    # when bookings are attributed
    attribute_bookings(db, company_id=company.id, now=NOW)
    # then the edge is inside the window and a second later is not
    assert fresh(db, edge_message).booking_created is True
    assert fresh(db, late_message).booking_created is False


def test_the_latest_message_before_the_booking_wins(db: Session) -> None:
    # given the gentle message and, three days later, the offer; then a booking a day after the offer
    company = make_company(db)
    client = make_client(db, company.id, last_visit=LAST_VISIT)
    gentle = make_history(db, client, sent_at=SENT_AT, step=1)
    offer = make_history(db, client, sent_at=SENT_AT + timedelta(days=3), step=2)
    booking = make_booking(db, client, when=NOW, created_at=SENT_AT + timedelta(days=4))
    # when bookings are attributed
    attribute_bookings(db, company_id=company.id, now=NOW)
    # then the offer gets the booking and the gentle message does not
    assert fresh(db, offer).booking_id == booking.id
    assert fresh(db, gentle).booking_created is False


def test_a_booking_before_the_next_step_stays_with_the_earlier_message(db: Session) -> None:
    company = make_company(db)
    client = make_client(db, company.id, last_visit=LAST_VISIT)
    gentle = make_history(db, client, sent_at=SENT_AT, step=1)
    offer = make_history(db, client, sent_at=SENT_AT + timedelta(days=5), step=2)
    booking = make_booking(db, client, when=NOW, created_at=SENT_AT + timedelta(days=2))
    attribute_bookings(db, company_id=company.id, now=NOW)
    assert fresh(db, gentle).booking_id == booking.id
    assert fresh(db, offer).booking_created is False


def test_a_message_keeps_its_first_booking_and_a_second_one_is_not_pushed_onto_older_messages(db: Session) -> None:
    # given two messages, and two bookings after the second one
    company = make_company(db)
    client = make_client(db, company.id, last_visit=LAST_VISIT)
    gentle = make_history(db, client, sent_at=SENT_AT, step=1)
    offer = make_history(db, client, sent_at=SENT_AT + timedelta(days=1), step=2)
    first = make_booking(db, client, when=NOW, created_at=SENT_AT + timedelta(days=2))
    make_booking(db, client, when=NOW + timedelta(days=7), created_at=SENT_AT + timedelta(days=3))
    # when bookings are attributed
    assert attribute_bookings(db, company_id=company.id, now=NOW) == 1
    # then the offer has the first booking, and the gentle message did not inherit the second
    assert fresh(db, offer).booking_id == first.id
    assert fresh(db, gentle).booking_created is False


def test_attribution_is_idempotent(db: Session) -> None:
    # given an attributed booking
    company = make_company(db)
    client = make_client(db, company.id, last_visit=LAST_VISIT)
    message = make_history(db, client, sent_at=SENT_AT)
    booking = make_booking(db, client, when=NOW, created_at=SENT_AT + timedelta(days=1))
    assert attribute_bookings(db, company_id=company.id, now=NOW) == 1
    # when attribution runs again, later
    again = attribute_bookings(db, company_id=company.id, now=NOW + timedelta(hours=1))
    # then nothing changes
    assert again == 0
    assert fresh(db, message).booking_id == booking.id


def test_a_holdout_row_is_attributed_from_when_it_would_have_been_sent(db: Session) -> None:
    # given a client of the control group (nothing sent) who booked on their own two days later
    company = make_company(db)
    client = make_client(db, company.id, last_visit=LAST_VISIT)
    control = make_history(db, client, sent_at=None, status="holdout", created_at=SENT_AT)
    booking = make_booking(db, client, when=NOW, created_at=SENT_AT + timedelta(days=2))
    # when bookings are attributed
    attribute_bookings(db, company_id=company.id, now=NOW)
    # then the hold-out row counts the booking, exactly as a sent message would
    row = fresh(db, control)
    assert (row.booking_created, row.booking_id, row.message_sent_at) == (True, booking.id, None)


def test_a_holdout_row_claimed_before_the_send_window_counts_from_the_window(db: Session) -> None:
    # given two control clients claimed at 06:00 for a window opening at 09:00, one booking at 07:00, one at 10:00
    company = make_company(db)
    early, later = (make_client(db, company.id, last_visit=LAST_VISIT) for _ in range(2))
    claimed, opens = SENT_AT - timedelta(hours=3), SENT_AT
    early_row = make_history(db, early, sent_at=None, status="holdout", created_at=claimed, send_after=opens)
    later_row = make_history(db, later, sent_at=None, status="holdout", created_at=claimed, send_after=opens)
    make_booking(db, early, when=NOW, created_at=claimed + timedelta(hours=1))
    make_booking(db, later, when=NOW, created_at=opens + timedelta(hours=1))
    # when bookings are attributed
    attribute_bookings(db, company_id=company.id, now=NOW)
    # then only the booking after the would-be send counts, as it would for a message
    assert fresh(db, early_row).booking_created is False
    assert fresh(db, later_row).booking_created is True


def test_rows_that_were_not_sent_are_not_attributed(db: Session) -> None:
    company = make_company(db)
    client = make_client(db, company.id, last_visit=LAST_VISIT)
    failed = make_history(db, client, sent_at=None, status="failed", created_at=SENT_AT)
    make_booking(db, client, when=NOW, created_at=SENT_AT + timedelta(days=1))
    assert attribute_bookings(db, company_id=company.id, now=NOW) == 0
    assert fresh(db, failed).booking_created is False


def test_a_dry_runs_rows_are_never_attributed(db: Session) -> None:
    # Given a client with a real message, then a later dry-run "message"; and a client only a dry run "messaged"
    company = make_company(db)
    client = make_client(db, company.id, last_visit=LAST_VISIT)
    real = make_history(db, client, sent_at=SENT_AT)
    dry = make_history(db, client, sent_at=SENT_AT + timedelta(days=1), step=2, dry_run=True)
    only_dry = make_client(db, company.id, last_visit=LAST_VISIT)
    dry_only = make_history(db, only_dry, sent_at=SENT_AT, dry_run=True)
    held = make_history(db, only_dry, sent_at=None, status="holdout", created_at=SENT_AT, step=2, dry_run=True)
    # When both book, after every one of those rows
    booking = make_booking(db, client, when=NOW, created_at=SENT_AT + timedelta(days=2))
    make_booking(db, only_dry, when=NOW, created_at=SENT_AT + timedelta(days=2))
    # Then the booking goes to the real message and nothing to the dry run's rows
    assert attribute_bookings(db, company_id=company.id, now=NOW) == 1
    assert fresh(db, real).booking_id == booking.id
    assert not any(fresh(db, row).booking_created for row in (dry, dry_only, held))


def test_two_companies_never_mix(db: Session) -> None:
    # given two salons with a client of the same phone, a message in the first and a booking only in the second
    first, second = make_company(db), make_company(db)
    mine = make_client(db, first.id, last_visit=LAST_VISIT, phone="+79005550000")
    theirs = make_client(db, second.id, last_visit=LAST_VISIT, phone="+79005550000")
    message = make_history(db, mine, sent_at=SENT_AT)
    make_booking(db, theirs, when=NOW, created_at=SENT_AT + timedelta(days=1))
    make_booking(db, None, company_id=second.id, phone="89005550000", when=NOW, created_at=SENT_AT + timedelta(days=1))
    # when both are attributed
    linked = attribute_bookings(db, company_id=first.id, now=NOW) + attribute_bookings(
        db, company_id=second.id, now=NOW
    )
    # then the other salon's bookings were not counted for the first one
    assert linked == 0
    assert fresh(db, message).booking_created is False


def test_unknown_company_is_a_clear_error(db: Session) -> None:
    with pytest.raises(UnknownCompany, match="unknown company 987654321"):
        attribute_bookings(db, company_id=987654321, now=NOW)


def test_naive_now_is_refused(db: Session) -> None:
    company = make_company(db)
    with pytest.raises(ValueError, match="timezone-aware"):
        attribute_bookings(db, company_id=company.id, now=datetime(2026, 3, 20, 12, 0))


def test_attribution_on_sqlite(sqlite_db: Session) -> None:
    # given the embedded database: a message, a booking by phone in the national form, and one too late
    company = make_company(sqlite_db)
    client = make_client(sqlite_db, company.id, last_visit=LAST_VISIT, phone="+79005551234")
    late = make_client(sqlite_db, company.id, last_visit=LAST_VISIT)
    message = make_history(sqlite_db, client, sent_at=SENT_AT)
    too_late = make_history(sqlite_db, late, sent_at=SENT_AT)
    booking = make_booking(
        sqlite_db,
        None,
        company_id=company.id,
        phone="8 900 555-12-34",
        when=NOW,
        created_at=SENT_AT + timedelta(days=6),
    )
    make_booking(sqlite_db, late, when=NOW, created_at=SENT_AT + timedelta(days=8))
    # when bookings are attributed, twice
    assert attribute_bookings(sqlite_db, company_id=company.id, now=NOW) == 1
    assert attribute_bookings(sqlite_db, company_id=company.id, now=NOW) == 0
    # then the same rules hold
    assert fresh(sqlite_db, message).booking_id == booking.id
    assert fresh(sqlite_db, too_late).booking_created is False


# --- link_booking: the explicit call after the AI admin booked -----------------------------------------------


def test_link_booking_links_the_latest_sent_message_and_is_idempotent(db: Session) -> None:
    # given two messages to a client
    company = make_company(db)
    client = make_client(db, company.id, last_visit=LAST_VISIT, phone="+79005551234")
    make_history(db, client, sent_at=SENT_AT, step=1)
    offer = make_history(db, client, sent_at=SENT_AT + timedelta(days=3), step=2)
    now = SENT_AT + timedelta(days=4)
    # when the admin reports a booking, with the phone written another way, twice
    first = link_booking(db, company_id=company.id, phone_e164="8 900 555 12 34", booking_id=555, now=now)
    second = link_booking(db, company_id=company.id, phone_e164="+79005551234", booking_id=555, now=now)
    # then the latest message has it, once
    assert first == second == offer.id
    row = fresh(db, offer)
    assert (row.booking_id, row.booking_created_at, row.flow_stopped_reason) == (555, now, "booking")


def test_link_booking_then_attribution_does_not_link_the_booking_twice(db: Session) -> None:
    # given a booking linked by the admin's call, and the same booking arriving in the bookings table
    company = make_company(db)
    client = make_client(db, company.id, last_visit=LAST_VISIT)
    message = make_history(db, client, sent_at=SENT_AT, step=1)
    other = make_history(
        db, client, sent_at=SENT_AT - timedelta(days=2), step=1, last_visit=LAST_VISIT - timedelta(days=30)
    )
    booking = make_booking(db, client, when=NOW, created_at=SENT_AT + timedelta(days=1))
    assert (
        link_booking(
            db, company_id=company.id, phone_e164=client.phone, booking_id=booking.id, now=NOW - timedelta(days=16)
        )
        == message.id
    )
    # when attribution runs
    assert attribute_bookings(db, company_id=company.id, now=NOW) == 0
    # then the booking stays on one row
    assert fresh(db, other).booking_created is False


def test_link_booking_finds_nothing_outside_the_window_or_in_another_company(db: Session) -> None:
    first, second = make_company(db), make_company(db)
    client = make_client(db, first.id, last_visit=LAST_VISIT, phone="+79005551234")
    make_history(db, client, sent_at=SENT_AT)
    # eight days later the message is out of the 7-day window; and the other company never messaged the phone
    late = SENT_AT + timedelta(days=8)
    assert link_booking(db, company_id=first.id, phone_e164="+79005551234", booking_id=1, now=late) is None
    soon = SENT_AT + timedelta(days=1)
    assert link_booking(db, company_id=second.id, phone_e164="+79005551234", booking_id=1, now=soon) is None


def test_link_booking_does_not_replace_a_booking_already_on_the_message(db: Session) -> None:
    company = make_company(db)
    client = make_client(db, company.id, last_visit=LAST_VISIT)
    message = make_history(db, client, sent_at=SENT_AT)
    now = SENT_AT + timedelta(days=1)
    assert link_booking(db, company_id=company.id, phone_e164=client.phone, booking_id=1, now=now) == message.id
    assert link_booking(db, company_id=company.id, phone_e164=client.phone, booking_id=2, now=now) is None
    assert fresh(db, message).booking_id == 1


def test_link_booking_passes_over_a_dry_runs_rows(db: Session) -> None:
    # Given a real message and a later dry-run "message" to one phone, and a phone only a dry run "messaged"
    company = make_company(db)
    client = make_client(db, company.id, last_visit=LAST_VISIT, phone="+79005551234")
    real = make_history(db, client, sent_at=SENT_AT)
    dry = make_history(db, client, sent_at=SENT_AT + timedelta(days=1), step=2, dry_run=True)
    only_dry = make_client(db, company.id, last_visit=LAST_VISIT, phone="+79005554321")
    make_history(db, only_dry, sent_at=SENT_AT, dry_run=True)
    now = SENT_AT + timedelta(days=2)
    # When the admin reports a booking for each
    # Then the first goes to the real message, the second finds nothing to link to
    assert link_booking(db, company_id=company.id, phone_e164="+79005551234", booking_id=7, now=now) == real.id
    assert link_booking(db, company_id=company.id, phone_e164="+79005554321", booking_id=8, now=now) is None
    assert fresh(db, dry).booking_created is False


def test_link_booking_refuses_bad_input(db: Session) -> None:
    company = make_company(db)
    with pytest.raises(InvalidPhone):
        link_booking(db, company_id=company.id, phone_e164="не телефон", booking_id=1, now=NOW)
    with pytest.raises(UnknownCompany):
        link_booking(db, company_id=987654321, phone_e164="+79005551234", booking_id=1, now=NOW)


def test_link_booking_on_sqlite(sqlite_db: Session) -> None:
    company = make_company(sqlite_db)
    client = make_client(sqlite_db, company.id, last_visit=LAST_VISIT, phone="+79005551234")
    message = make_history(sqlite_db, client, sent_at=SENT_AT)
    now = SENT_AT + timedelta(days=1)
    assert link_booking(sqlite_db, company_id=company.id, phone_e164="89005551234", booking_id=5, now=now) == message.id
    assert link_booking(sqlite_db, company_id=company.id, phone_e164="89005551234", booking_id=6, now=now) is None
