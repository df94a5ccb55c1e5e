"""Campaign stats: the funnel by step, source, generator and variant; the hold-out uplift and its interval."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from reactivation.outcomes.stats import campaign_stats, difference_interval, holdout_comparison, wilson_interval
from reactivation.storage.companies import UnknownCompany
from tests.factories import make_client, make_company
from tests.history_rows import make_history

SENT_AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

# --- The intervals, against published values ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        # Newcombe (1998), Statistics in Medicine 17:873-890, table II, method 10 (hybrid score).
        ((56, 70, 48, 80), (0.0524, 0.3339)),
        ((9, 10, 3, 10), (0.1705, 0.8090)),
        ((6, 7, 2, 7), (0.0582, 0.8062)),
        ((5, 56, 0, 29), (-0.0381, 0.1926)),
        ((0, 10, 0, 20), (-0.1611, 0.2775)),
        ((0, 10, 0, 10), (-0.2775, 0.2775)),
        ((10, 10, 0, 20), (0.6791, 1.0)),
    ],
)
def test_difference_interval_matches_newcombe(counts: tuple[int, int, int, int], expected: tuple[float, float]) -> None:
    low, high = difference_interval(*counts)
    assert (round(low, 4), round(high, 4)) == expected


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        # Newcombe (1998), Statistics in Medicine 17:857-872, method 3 (score, no continuity correction).
        ((81, 263), (0.2553, 0.3662)),
        ((15, 148), (0.0624, 0.1605)),
        ((0, 20), (0.0, 0.1611)),
        ((1, 29), (0.0061, 0.1718)),
    ],
)
def test_wilson_interval_matches_newcombe(counts: tuple[int, int], expected: tuple[float, float]) -> None:
    low, high = wilson_interval(*counts)
    assert (round(low, 4), round(high, 4)) == expected


def test_intervals_refuse_impossible_counts() -> None:
    for bad in [(1, 0), (5, 3), (-1, 3)]:
        with pytest.raises(ValueError, match="successes"):
            wilson_interval(*bad)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 2, confidence=1.0)


def test_holdout_comparison() -> None:
    # given 100 contacted clients of whom 20 booked, and 100 held out of whom 10 booked
    result = holdout_comparison(treated=100, treated_bookings=20, control=100, control_bookings=10)
    # then the uplift is 10 points, its interval comes from Newcombe's method, and it adds about 10 bookings
    assert result is not None
    assert result["uplift"] == 0.1
    low, high = difference_interval(20, 100, 10, 100)
    assert (result["uplift_ci_low"], result["uplift_ci_high"]) == (round(low, 4), round(high, 4))
    assert result["uplift_ci_low"] < 0.1 < result["uplift_ci_high"]
    assert result["extra_bookings"] == 10.0
    assert result["significant"] is (low > 0)
    # and without a control group there is nothing to compare
    assert holdout_comparison(treated=100, treated_bookings=20, control=0, control_bookings=0) is None


# --- The funnel from history rows ------------------------------------------------------------------------------


def build_campaign(db: Session, company_id: int) -> None:
    """Eight messages and two hold-out lapses, with replies and bookings chosen so every figure is known."""
    c = [make_client(db, company_id, last_visit=date(2026, 1, 10)) for _ in range(8)]
    # step 1 (gentle), template, universal interval
    make_history(
        db,
        c[0],
        sent_at=SENT_AT,
        response_received=True,
        response_type="positive",
        booking_created=True,
        booking_id=1,
        booking_created_at=SENT_AT + timedelta(days=1),
    )
    make_history(db, c[1], sent_at=SENT_AT, response_received=True, response_type="negative")
    make_history(db, c[2], sent_at=SENT_AT, response_received=True, response_type="opt_out")
    make_history(
        db, c[3], sent_at=SENT_AT, booking_created=True, booking_id=2, booking_created_at=SENT_AT + timedelta(days=4)
    )
    # step 2 (offer), gemini, service interval, variant B
    make_history(
        db,
        c[4],
        sent_at=SENT_AT,
        step=2,
        generator="gemini",
        interval_source="service",
        variant="B",
        response_received=True,
        response_type="neutral",
    )
    make_history(
        db,
        c[5],
        sent_at=SENT_AT,
        step=2,
        generator="gemini",
        interval_source="service",
        variant="B",
        response_received=True,
        response_type="positive",
        booking_created=True,
        booking_id=3,
        booking_created_at=SENT_AT + timedelta(days=2),
    )
    make_history(db, c[6], sent_at=SENT_AT, step=2, generator="gemini", interval_source="service", variant="A")
    # a message sent outside the period, and a row that was never sent
    make_history(db, c[7], sent_at=SENT_AT - timedelta(days=40), last_visit=date(2025, 12, 1))
    make_history(db, c[7], sent_at=None, status="failed", step=2)
    # two clients held out, one booked anyway
    held = [make_client(db, company_id, last_visit=date(2026, 1, 10)) for _ in range(2)]
    make_history(
        db,
        held[0],
        sent_at=None,
        status="holdout",
        created_at=SENT_AT,
        booking_created=True,
        booking_id=4,
        booking_created_at=SENT_AT + timedelta(days=3),
    )
    make_history(db, held[1], sent_at=None, status="holdout", created_at=SENT_AT)


def test_funnel_totals_and_breakdowns(db: Session) -> None:
    # given a campaign with known replies and bookings
    company = make_company(db)
    build_campaign(db, company.id)
    # when stats are computed for March
    stats = campaign_stats(db, company_id=company.id, since=date(2026, 3, 1), until=date(2026, 3, 31))
    # then the totals count the seven messages sent in March
    total = stats["total"]
    assert {k: total[k] for k in ("sent", "responses", "positive", "negative", "neutral", "opt_outs", "bookings")} == {
        "sent": 7,
        "responses": 5,
        "positive": 2,
        "negative": 1,
        "neutral": 1,
        "opt_outs": 1,
        "bookings": 3,
    }
    assert total["response_rate"] == round(5 / 7, 4)
    assert total["conversion_rate"] == round(3 / 7, 4)
    assert total["median_days_to_booking"] == 2.0
    # and each breakdown splits them
    assert stats["by_step"]["gentle"]["sent"] == 4
    assert stats["by_step"]["gentle"]["bookings"] == 2
    assert stats["by_step"]["gentle"]["median_days_to_booking"] == 2.5
    assert stats["by_step"]["offer"]["sent"] == 3
    assert stats["by_source"]["service"]["bookings"] == 1
    assert stats["by_source"]["universal"]["opt_outs"] == 1
    assert stats["by_generator"]["gemini"]["response_rate"] == round(2 / 3, 4)
    assert stats["by_generator"]["template"]["conversion_rate"] == 0.5
    assert stats["by_variant"]["B"]["sent"] == 2
    assert stats["by_variant"]["none"]["sent"] == 4
    # and every breakdown adds up to the total
    for name in ("by_step", "by_source", "by_generator", "by_variant"):
        assert sum(group["sent"] for group in stats[name].values()) == 7
        assert sum(group["bookings"] for group in stats[name].values()) == 3


def test_holdout_section(db: Session) -> None:
    company = make_company(db)
    build_campaign(db, company.id)
    stats = campaign_stats(db, company_id=company.id, since=date(2026, 3, 1), until=None)
    holdout = stats["holdout"]
    assert holdout["treated"] == {"clients": 7, "bookings": 3, "conversion_rate": round(3 / 7, 4)}
    assert holdout["control"] == {"clients": 2, "bookings": 1, "conversion_rate": 0.5}
    assert holdout["uplift"] == round(3 / 7 - 0.5, 4)
    assert holdout["uplift_ci_low"] < holdout["uplift"] < holdout["uplift_ci_high"]
    assert holdout["significant"] is False


def test_steps_of_one_lapse_count_once_in_the_holdout(db: Session) -> None:
    # given one contacted client who got three steps and booked after the third
    company = make_company(db)
    client = make_client(db, company.id, last_visit=date(2026, 1, 10))
    make_history(db, client, sent_at=SENT_AT, step=1)
    make_history(db, client, sent_at=SENT_AT + timedelta(days=7), step=2)
    make_history(
        db,
        client,
        sent_at=SENT_AT + timedelta(days=14),
        step=3,
        booking_created=True,
        booking_id=9,
        booking_created_at=SENT_AT + timedelta(days=15),
    )
    held = make_client(db, company.id, last_visit=date(2026, 1, 10))
    make_history(db, held, sent_at=None, status="holdout", created_at=SENT_AT, step=1)
    make_history(db, held, sent_at=None, status="holdout", created_at=SENT_AT + timedelta(days=7), step=2)
    # when stats are computed
    stats = campaign_stats(db, company_id=company.id, since=None, until=None)
    # then the funnel counts three messages, the hold-out one client in each group
    assert stats["total"]["sent"] == 3
    assert stats["holdout"]["treated"] == {"clients": 1, "bookings": 1, "conversion_rate": 1.0}
    assert stats["holdout"]["control"]["clients"] == 1


def test_a_dry_runs_rows_are_never_counted(db: Session) -> None:
    # Given a campaign with known figures
    company = make_company(db)
    build_campaign(db, company.id)
    before = campaign_stats(db, company_id=company.id, since=None, until=None)
    # When a dry run "sends" to more clients, one of whom replies and books, and holds out others
    for index in range(4):
        client = make_client(db, company.id, last_visit=date(2026, 1, 10))
        make_history(
            db,
            client,
            sent_at=SENT_AT,
            dry_run=True,
            response_received=True,
            response_type="positive",
            booking_created=True,
            booking_id=100 + index,
            booking_created_at=SENT_AT + timedelta(days=1),
        )
        held = make_client(db, company.id, last_visit=date(2026, 1, 10))
        make_history(db, held, sent_at=None, status="holdout", created_at=SENT_AT, dry_run=True)
    # Then the funnel, its breakdowns and the hold-out are exactly what they were
    assert campaign_stats(db, company_id=company.id, since=None, until=None) == before


def test_no_holdout_and_no_messages(db: Session) -> None:
    company = make_company(db)
    stats = campaign_stats(db, company_id=company.id, since=None, until=None)
    assert stats["holdout"] is None
    assert stats["total"]["sent"] == 0
    assert stats["total"]["conversion_rate"] is None
    assert stats["total"]["median_days_to_booking"] is None
    assert stats["by_step"] == {}


def test_the_period_is_in_the_salons_local_dates(db: Session) -> None:
    # given a salon five hours ahead of UTC and a message sent at 20:00 UTC on March 1st (01:00 on the 2nd there)
    company = make_company(db, timezone="Asia/Yekaterinburg")
    client = make_client(db, company.id, last_visit=date(2026, 1, 10))
    make_history(db, client, sent_at=datetime(2026, 3, 1, 20, 0, tzinfo=UTC))
    # then it belongs to the salon's March 2nd
    on_first = campaign_stats(db, company_id=company.id, since=date(2026, 3, 1), until=date(2026, 3, 1))
    on_second = campaign_stats(db, company_id=company.id, since=date(2026, 3, 2), until=date(2026, 3, 2))
    assert (on_first["total"]["sent"], on_second["total"]["sent"]) == (0, 1)


def test_two_companies_never_mix(db: Session) -> None:
    first, second = make_company(db), make_company(db)
    build_campaign(db, first.id)
    stats = campaign_stats(db, company_id=second.id, since=None, until=None)
    assert stats["total"]["sent"] == 0
    assert stats["holdout"] is None


def test_bad_input(db: Session) -> None:
    company = make_company(db)
    with pytest.raises(UnknownCompany):
        campaign_stats(db, company_id=987654321, since=None, until=None)
    with pytest.raises(ValueError, match="after"):
        campaign_stats(db, company_id=company.id, since=date(2026, 3, 2), until=date(2026, 3, 1))


def test_stats_on_sqlite(sqlite_db: Session) -> None:
    company = make_company(sqlite_db)
    build_campaign(sqlite_db, company.id)
    stats = campaign_stats(sqlite_db, company_id=company.id, since=date(2026, 3, 1), until=date(2026, 3, 31))
    assert (stats["total"]["sent"], stats["total"]["bookings"]) == (7, 3)
    assert stats["total"]["median_days_to_booking"] == 2.0
    assert stats["holdout"]["control"]["clients"] == 2


def test_a_half_holdout_on_200_clients_gives_an_uplift_section(db: Session) -> None:
    # given 200 lapsed clients split in half by a stable hash, the contacted half booking 3 times as often
    company = make_company(db, settings={"holdout_percent": 50})
    for number in range(200):
        client = make_client(db, company.id, last_visit=date(2026, 1, 10))
        held = hashlib.sha256(f"split:{number}".encode()).digest()[0] % 2 == 0
        booked = number % 10 < (1 if held else 3)
        booking = {"booking_created": True, "booking_id": number, "booking_created_at": SENT_AT + timedelta(days=2)}
        if held:
            make_history(db, client, sent_at=None, status="holdout", created_at=SENT_AT, **(booking if booked else {}))
        else:
            make_history(db, client, sent_at=SENT_AT, **(booking if booked else {}))
    # when stats are computed
    holdout = campaign_stats(db, company_id=company.id, since=None, until=None)["holdout"]
    # then about 100 are in each group and the uplift of about 20 points is told with its interval
    treated, control = holdout["treated"], holdout["control"]
    assert treated["clients"] + control["clients"] == 200
    assert 80 <= control["clients"] <= 120
    assert holdout["uplift"] == round(treated["conversion_rate"] - control["conversion_rate"], 4)
    assert 0.1 <= holdout["uplift"] <= 0.3
    assert holdout["uplift_ci_low"] < holdout["uplift"] < holdout["uplift_ci_high"]
    assert holdout["significant"] is (holdout["uplift_ci_low"] > 0)


def test_delivery_rates_and_failures_by_code(db: Session) -> None:
    # given five messages the provider accepted: two delivered and read, one delivered, two failed, and a dry run
    company_id = 88001
    make_company(db, company_id)
    clients = [make_client(db, company_id, last_visit=date(2026, 1, 10)) for _ in range(6)]
    later = SENT_AT + timedelta(minutes=5)
    accepted = {"provider": "cloud_api"}
    for n in range(2):
        make_history(
            db, clients[n], sent_at=SENT_AT, provider_message_id=f"w{n}", delivered_at=later, read_at=later, **accepted
        )
    make_history(db, clients[2], sent_at=SENT_AT, provider_message_id="w2", delivered_at=later, **accepted)
    for n, code in ((3, "131049"), (4, "131026")):
        make_history(
            db,
            clients[n],
            sent_at=None,
            status="failed",
            message_sent_at=SENT_AT,
            provider_message_id=f"w{n}",
            failed_at=later,
            delivery_error_code=code,
            **accepted,
        )
    make_history(db, clients[5], sent_at=SENT_AT, provider_message_id="dry", dry_run=True, **accepted)
    # when the stats are read
    delivery = campaign_stats(db, company_id=company_id, since=None, until=None)["delivery"]
    # then the rates are over the accepted real messages, and the failures are counted by code
    assert delivery == {
        "accepted": 5,
        "delivered": 3,
        "read": 2,
        "failed": 2,
        "delivered_rate": 0.6,
        "read_rate": 0.4,
        "failures_by_code": {"131026": 1, "131049": 1},
    }
