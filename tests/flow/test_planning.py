from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from reactivation.flow.planning import (
    STALE_RUNNING_RUN,
    create_run,
    get_or_create_run,
    plan_runs,
    run_is_due,
    stale_planned_runs,
)
from reactivation.storage.models import CampaignRun
from tests.factories import make_company


def _runs(db: Session, company_id: int) -> list[tuple[date, str]]:
    return list(
        db.execute(select(CampaignRun.run_date, CampaignRun.trigger).where(CampaignRun.company_id == company_id)).all()
    )


def test_run_is_due_once_local_send_time_has_come() -> None:
    assert not run_is_due(local_now=datetime(2026, 11, 23, 9, 59), send_time=time(10, 0))
    assert run_is_due(local_now=datetime(2026, 11, 23, 10, 0), send_time=time(10, 0))


def test_each_company_is_planned_at_its_own_local_ten(db: Session) -> None:
    moscow = make_company(db, timezone="Europe/Moscow")
    vladivostok = make_company(db, timezone="Asia/Vladivostok")  # UTC+10
    kaliningrad = make_company(db, timezone="Europe/Kaliningrad")  # UTC+2
    # 01:00 UTC: 11:00 in Vladivostok, 04:00 in Moscow, 03:00 in Kaliningrad
    planned = plan_runs(db, now=datetime(2026, 11, 23, 1, 0, tzinfo=UTC))
    assert {p.company_id for p in planned} == {vladivostok.id}
    # 07:05 UTC: 10:05 in Moscow; Kaliningrad still at 09:05
    planned = plan_runs(db, now=datetime(2026, 11, 23, 7, 5, tzinfo=UTC))
    assert {p.company_id for p in planned} == {moscow.id}
    assert _runs(db, kaliningrad.id) == []


def test_two_ticks_in_the_same_minute_make_one_run(db: Session) -> None:
    company = make_company(db, timezone="Asia/Yekaterinburg")
    now = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)  # 10:00 local
    first = plan_runs(db, now=now)
    second = plan_runs(db, now=now)
    assert [p.company_id for p in first if p.company_id == company.id] == [company.id]
    assert [p for p in second if p.company_id == company.id] == []
    assert _runs(db, company.id) == [(date(2026, 11, 23), "beat")]


def test_a_beat_down_at_ten_catches_up_at_its_next_tick(db: Session) -> None:
    company = make_company(db, timezone="Europe/Moscow")
    planned = plan_runs(db, now=datetime(2026, 11, 23, 12, 40, tzinfo=UTC))  # 15:40 local
    assert [(p.company_id, p.run_date) for p in planned if p.company_id == company.id] == [
        (company.id, date(2026, 11, 23))
    ]


def test_local_date_not_utc_date(db: Session) -> None:
    company = make_company(db, timezone="Pacific/Auckland", country="NZ")  # UTC+13 in November
    planned = plan_runs(db, now=datetime(2026, 11, 22, 21, 30, tzinfo=UTC))  # 10:30 on the 23rd there
    assert (company.id, date(2026, 11, 23)) in [(p.company_id, p.run_date) for p in planned]


def test_disabled_and_misconfigured_companies_do_not_stop_the_others(db: Session) -> None:
    good = make_company(db)
    make_company(db, enabled=False)
    bad_zone = make_company(db, timezone="Mars/Olympus")
    bad_window = make_company(db, settings={"send_window_start": "21:00", "send_window_end": "09:00"})
    planned = {p.company_id for p in plan_runs(db, now=datetime(2026, 11, 23, 9, 0, tzinfo=UTC))}
    assert good.id in planned
    assert not planned & {bad_zone.id, bad_window.id}


def test_company_send_time_setting(db: Session) -> None:
    company = make_company(db, settings={"send_time": "12:30"})
    assert company.id not in {p.company_id for p in plan_runs(db, now=datetime(2026, 11, 23, 9, 0, tzinfo=UTC))}
    assert company.id in {p.company_id for p in plan_runs(db, now=datetime(2026, 11, 23, 9, 30, tzinfo=UTC))}


def test_a_run_by_hand_reuses_the_planned_run(db: Session) -> None:
    company = make_company(db)
    now = datetime(2026, 11, 23, 7, 5, tzinfo=UTC)
    run_id = create_run(db, company_id=company.id, run_date=date(2026, 11, 23), trigger="beat", now=now)
    assert run_id is not None
    later = now + timedelta(hours=2)
    assert create_run(db, company_id=company.id, run_date=date(2026, 11, 23), trigger="cli", now=later) is None
    run = get_or_create_run(db, company_id=company.id, run_date=date(2026, 11, 23), trigger="cli", now=later)
    assert run.id == run_id and run.created_at == now
    assert db.scalar(select(func.count()).select_from(CampaignRun).where(CampaignRun.company_id == company.id)) == 1


def test_runs_whose_dispatch_was_lost_or_cut_off_are_dispatched_again(db: Session) -> None:
    # Given four runs: planned long ago, planned just now, running far past the task's time limit, running briefly
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    ids = {}
    planned_at = {"lost": now - timedelta(hours=1), "fresh": now, "cut": now - timedelta(hours=1), "busy": now}
    for name, day in (("lost", 20), ("fresh", 21), ("cut", 22), ("busy", 23)):
        company = make_company(db)
        ids[name] = create_run(
            db, company_id=company.id, run_date=date(2026, 11, day), trigger="beat", now=planned_at[name]
        )
    started_at = {"cut": now - STALE_RUNNING_RUN - timedelta(minutes=1), "busy": now - timedelta(minutes=5)}
    for name, started in started_at.items():
        db.execute(update(CampaignRun).where(CampaignRun.id == ids[name]).values(status="running", started_at=started))
    # Then the lost and the cut-off runs are dispatched again, the others left alone
    stale = {run.run_id for run in stale_planned_runs(db, now=now)}
    assert stale & set(ids.values()) == {ids["lost"], ids["cut"]}


def test_a_dry_runs_record_never_takes_the_days_run_nor_is_dispatched_again(db: Session) -> None:
    # Given two dry runs started by hand before the salon's send time, and left unfinished (cut off)
    company = make_company(db)
    early = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)  # 08:00 in Moscow
    dry = [
        create_run(db, company_id=company.id, run_date=date(2026, 11, 23), trigger="cli", now=early, dry_run=True)
        for _ in range(2)
    ]
    assert None not in dry and len(set(dry)) == 2
    # When beat's tick comes at 10:05 local time
    now = datetime(2026, 11, 23, 7, 5, tzinfo=UTC)
    planned = [p for p in plan_runs(db, now=now) if p.company_id == company.id]
    # Then the day's real run is planned as if no dry run had happened
    assert [(p.run_date, p.run_id in dry) for p in planned] == [(date(2026, 11, 23), False)]
    run = get_or_create_run(db, company_id=company.id, run_date=date(2026, 11, 23), trigger="cli", now=now)
    assert run.id == planned[0].run_id and run.dry_run is False
    # And a dry run planned long ago is never dispatched again (it would come back as a real run)
    stale = {p.run_id for p in stale_planned_runs(db, now=now + timedelta(hours=1))}
    assert not stale & set(dry)
