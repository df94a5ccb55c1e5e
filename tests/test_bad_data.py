"""Bad data from the booking system and bad company settings, through the same campaign and chain steps as
production (called in-process) on PostgreSQL: every bad row ends with a clear reason, every bad company with an
error naming it, and the rest of the campaign, and the other companies, go on."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from reactivation.core.settings import Settings
from reactivation.core.vocabulary import Status, Step
from reactivation.flow import planning
from reactivation.messaging.names import first_name
from reactivation.messaging.validation import validate_message
from reactivation.runtime import Runtime
from reactivation.storage.company_settings import CompanyConfigError
from reactivation.storage.models import CampaignRun, Client, Company
from tests.chains import claim, rows, run_chain
from tests.factories import make_client
from tests.fake_gateway import FakeGateway
from tests.salon import OPEN_ALL_DAY, Salon, build_salon

SQL = "'); DROP TABLE clients;--"
LONG = "Анна" + "ы" * 9_996
GONE_SERVICE_ID = 777_000_001


def hostile_salon(engine: Engine) -> tuple[Salon, dict[str, int]]:
    """A salon whose due clients hold every kind of junk the sync has been seen to write; name -> client id."""
    salon = build_salon(engine, due=4, extras=False)
    lapse = salon.today - timedelta(days=41)
    junk: dict[str, dict[str, Any]] = {
        "no_phone": {"phone": None},
        "phone_letters": {"phone": "+7 (916) abc-de-fg"},
        "phone_short": {"phone": "12345"},
        "services_empty": {"last_services": []},
        "services_string": {"last_services": "Стрижка"},
        "services_dict": {"last_services": {"id": 1, "title": "Стрижка"}},
        "services_null": {"last_services": None},
        "services_no_keys": {"last_services": [{"name": "Стрижка"}, 5, None]},
        "service_gone": {"last_services": [{"id": GONE_SERVICE_ID, "title": "Стрижка мужская"}]},
        "service_junk_title": {"last_services": [{"id": GONE_SERVICE_ID, "title": SQL * 400}]},
        "name_emoji": {"name": "💅✨ Маша 🌸🌸"},
        "name_sql": {"name": SQL},
        "name_long": {"name": LONG},
        "name_sql_after_name": {"name": f"Ольга {SQL}"},
    }
    ids: dict[str, int] = {}
    with Session(engine) as session:
        for offset, (label, fields) in enumerate(junk.items(), start=1):
            client = make_client(
                session,
                salon.company_id,
                id=salon.company_id * 100_000 + 50_000 + offset,
                last_visit=lapse,
                phone=fields.get("phone") or f"+7916555{offset:04d}",
                name=fields.get("name", "Мария"),
            )
            if "phone" in fields:
                client.phone = fields["phone"]
            if "last_services" in fields:
                # Written as the sync writes JSON: a JSON null, a bare string, an object where a list belongs.
                session.execute(
                    text("UPDATE clients SET last_services = CAST(:raw AS jsonb) WHERE company_id = :c AND id = :id"),
                    {"raw": _json(fields["last_services"]), "c": salon.company_id, "id": client.id},
                )
            ids[label] = client.id
        session.commit()
    return salon, ids


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def test_junk_in_client_rows_is_skipped_with_a_reason_or_sent_safely(
    rt: Runtime, committed_engine: Engine, gateway: FakeGateway
) -> None:
    # Given a salon with 4 ordinary due clients and 14 due clients with junk in their rows
    salon, ids = hostile_salon(committed_engine)
    # When the campaign claims and every chain runs
    for history_id in claim(rt, salon):
        run_chain(rt, salon, history_id)
    by_client = {r.client_id: r for r in rows(committed_engine, salon.company_id)}
    # Then the clients without a usable phone are skipped, saying so and naming the client, never sent
    for label in ("no_phone", "phone_letters", "phone_short"):
        row = by_client[ids[label]]
        assert (row.status, row.skip_reason) == (Status.SKIPPED, "invalid_phone"), label
        assert row.message_text is None
    assert str(ids["phone_short"]) in (by_client[ids["phone_short"]].error or "")
    # and everyone else got one valid message, whatever their services or name hold
    sent = [r for r in by_client.values() if r.status == Status.SENT]
    assert {r.client_id for r in sent} == set(by_client) - {ids["no_phone"], ids["phone_letters"], ids["phone_short"]}
    assert sorted(m["phone"] for m in gateway.messages()) == sorted(r.phone for r in sent)
    with Session(committed_engine) as session:
        names = {
            i: n
            for i, n in session.execute(select(Client.id, Client.name).where(Client.company_id == salon.company_id))
        }
    for row in sent:
        text_ = row.message_text or ""
        name = first_name(names[row.client_id])
        check = validate_message(text_, step=Step(row.step), first_name=name, company_name="Салон «Бархат»")
        assert check.ok and check.text == text_, (row.client_id, check.reasons)
        # and no junk is repeated: no SQL, nothing of the 10,000 characters beyond a first name
        assert "DROP" not in text_.upper() and "--" not in text_ and "ыыы" not in text_
        assert len(text_) < 1000
    # a sane first name survives the junk around it
    assert by_client[ids["name_emoji"]].message_text.startswith("Маша")  # type: ignore[union-attr]
    assert by_client[ids["name_sql_after_name"]].message_text.startswith("Ольга")  # type: ignore[union-attr]
    # and a service that no longer exists falls back to the universal interval, its title taken from the row
    gone = by_client[ids["service_gone"]]
    assert gone.interval_source == "universal" and gone.last_service_name == "Стрижка мужская"


def test_a_company_without_services_still_reaches_its_due_clients(
    rt: Runtime, committed_engine: Engine, gateway: FakeGateway
) -> None:
    # Given a company whose services table is empty, and whose clients' last services point nowhere
    salon = build_salon(committed_engine, due=3, extras=False)
    with Session(committed_engine) as session:
        session.execute(text("DELETE FROM services WHERE company_id = :c"), {"c": salon.company_id})
        session.commit()
    # When the campaign runs
    for history_id in claim(rt, salon):
        run_chain(rt, salon, history_id)
    # Then every due client got one message on the universal interval
    history = rows(committed_engine, salon.company_id)
    assert [r.status for r in history] == [Status.SENT] * 3
    assert {r.interval_source for r in history} == {"universal"}
    assert len(gateway.messages()) == 3


BAD_SETTINGS = [
    pytest.param({"timezone": "Mars/Olympus_Mons"}, "unknown time zone 'Mars/Olympus_Mons'", id="time-zone"),
    pytest.param(
        {"settings": {**OPEN_ALL_DAY, "send_window_start": "20:00", "send_window_end": "09:00"}},
        "send_window_end 09:00 must be after send_window_start 20:00",
        id="window-ends-before-it-starts",
    ),
    pytest.param({"settings": {"send_time": "25:99"}}, "send_time", id="send-time"),
    pytest.param({"settings": ["not", "an", "object"]}, "settings must be a JSON object", id="settings-list"),
]


def spoil(engine: Engine, company_id: int, fields: dict[str, Any]) -> None:
    with Session(engine) as session:
        session.execute(Company.__table__.update().where(Company.id == company_id).values(**fields))
        session.commit()


@pytest.mark.parametrize(("fields", "problem"), BAD_SETTINGS)
def test_a_company_with_bad_settings_is_refused_by_name_and_the_others_go_on(
    rt: Runtime, committed_engine: Engine, gateway: FakeGateway, fields: dict[str, Any], problem: str
) -> None:
    # Given two companies with due clients, one of them with settings the product cannot work with
    good = build_salon(committed_engine, due=2, company_id=111, extras=False)
    bad = build_salon(committed_engine, due=2, company_id=222, extras=False)
    spoil(committed_engine, bad.company_id, fields)
    # When its campaign is run by hand: a clear error naming the company, nothing claimed
    with pytest.raises(CompanyConfigError, match=f"company 222: .*{problem}"):
        claim(rt, bad)
    assert rows(committed_engine, bad.company_id) == []
    # And when the planner ticks: the bad company is skipped, the good one planned
    with Session(committed_engine) as session:
        planned = planning.plan_runs(session, now=good.now)
        session.commit()
    assert [p.company_id for p in planned] == [good.company_id]
    # And the good company's campaign runs to the end
    for history_id in claim(rt, good):
        run_chain(rt, good, history_id)
    assert [r.status for r in rows(committed_engine, good.company_id)] == [Status.SENT] * 2
    with Session(committed_engine) as session:
        runs = session.scalars(select(CampaignRun.company_id)).all()
    assert runs == [good.company_id]


@pytest.fixture
def tasks_on(committed_settings: Settings) -> Iterator[None]:
    """The Celery tasks, called in this process (eagerly) on the committed database."""
    # The module, not the Celery app the package exports under the same name.
    app_module = importlib.import_module("celery_app.app")
    previous = app_module.runtime().settings
    eager = app_module.app.conf.task_always_eager
    app_module.configure(committed_settings)
    app_module.app.conf.task_always_eager = True
    yield
    app_module.configure(previous)
    app_module.app.conf.task_always_eager = eager


def test_the_scheduled_jobs_skip_a_company_with_bad_settings_and_serve_the_others(
    tasks_on: None, committed_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    from celery_app import tasks

    # Given three companies, the middle one with a time zone that does not exist
    for company_id in (1, 2, 3):
        build_salon(committed_engine, due=1, company_id=company_id, extras=False)
    spoil(committed_engine, 2, {"timezone": "Nowhere/Land"})
    # When the weekly averages are planned at 03:30 on a Sunday in Moscow
    with time_machine.travel(datetime(2026, 11, 22, 0, 30, tzinfo=UTC), tick=False):
        started = tasks.plan_averages.run()
    # Then the two good companies' jobs start and the bad one is logged by id
    assert started == 2
    skipped = [r for r in caplog.records if r.getMessage() == "company skipped: invalid settings"]
    assert [(r.job, r.company_id) for r in skipped] == [("plan_averages", 2)]  # type: ignore[attr-defined]
    # And the hourly and nightly jobs send one task per company, each of which serves its company or logs it
    assert tasks.attribute_bookings.run() == 3
    assert tasks.retention_sweep.run() == 3
    assert [r.job for r in caplog.records if r.getMessage() == "company skipped: invalid settings"] == [  # type: ignore[attr-defined]
        "plan_averages",
        "attribute_bookings",
        "retention",
    ]
    # And a campaign dispatched for it answers with the error instead of failing the worker's task
    summary = tasks.run_campaign.run(2, "2026-11-23")
    assert summary == {"company_id": 2, "error": "company 2: unknown time zone 'Nowhere/Land'"}
    assert tasks.run_campaign.run(3, "2026-11-23")["claimed"] == 1


def test_rows_claimed_before_the_settings_broke_end_failed_with_the_error(
    tasks_on: None, committed_engine: Engine, committed_settings: Settings
) -> None:
    from celery_app import tasks

    # Given a company whose campaign claimed its due clients
    salon = build_salon(committed_engine, due=2, extras=False)
    rt = Runtime(committed_settings)
    try:
        first, second = claim(rt, salon)
    finally:
        rt.dispose()
    # When its settings are broken before the chains run
    spoil(committed_engine, salon.company_id, {"timezone": "Nowhere/Land"})
    # Then each chain's first step ends its row `failed` with the company's error, instead of leaving it in flight
    for history_id in (first, second):
        tasks.select_interval.apply(args=(salon.company_id, history_id))
    failed = rows(committed_engine, salon.company_id)
    assert [(r.status, r.error) for r in failed] == [
        (Status.FAILED, f"company {salon.company_id}: unknown time zone 'Nowhere/Land'")
    ] * 2
