"""Gemini's part in `reactivation stats` and `reactivation campaign status`: requests, tokens, tokens per message, rows
waiting for a batch, and a pause or an open breaker with the setting to fix (the embedded database and Redis)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session
from time_machine import TimeMachineFixture
from typer.testing import CliRunner

from reactivation.core.settings import get_settings, load_settings
from reactivation.messaging.gemini_errors import KEY, OUTAGE_FAILURES
from reactivation.messaging.gemini_gate import DAILY_QUOTA
from reactivation.runtime import Runtime, make_redis
from reactivation.storage import gemini_queue, migrations
from reactivation.storage.db import make_engine
from reactivation.storage.models import CampaignRun, GeminiRequest
from reactivation.tools import cli
from tests.factories import make_client, make_company
from tests.fake_gemini import TEST_API_KEY
from tests.history_rows import make_history

runner = CliRunner()
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(cli.app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def cli_db(sqlite_url: str, monkeypatch: pytest.MonkeyPatch, time_machine: TimeMachineFixture) -> Iterator[Session]:
    """The embedded database and Redis stand-in the commands open, a Gemini key set, at NOW."""
    time_machine.move_to(NOW, tick=True)
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", TEST_API_KEY)
    monkeypatch.setenv("GEMINI_DAILY_LIMIT", "1500")
    get_settings.cache_clear()
    migrations.upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    session = Session(bind=engine, expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()
        engine.dispose()
        # The in-process Redis stand-in lives as long as this process: leave no pause to the next test.
        stand_in = make_redis(load_settings(redis_url=None, _env_file=None))
        for key in stand_in.scan_iter(match="gemini:*"):
            stand_in.delete(key)
        get_settings.cache_clear()


def usage(session: Session, company_id: int, run_id: int | None, **fields: object) -> None:
    values: dict[str, object] = {
        "request_key": "r1",
        "requested_at": NOW - timedelta(hours=1),
        "model": "gemini-3.8-flash",
        "thinking": "low",
        "items": 4,
        "batch_items": 20,
        "written": 4,
        "prompt_tokens": 300,
        "output_tokens": 360,
        "thinking_tokens": 40,
        "outcome": "ok",
    }
    session.add(GeminiRequest(company_id=company_id, campaign_run_id=run_id, **{**values, **fields}))


def arrange(session: Session) -> tuple[int, int]:
    """A company with today's run: two requests' shares (one of them a retry of one item) and a row waiting."""
    company = make_company(session, name="Салон «Бархат»")
    campaign = CampaignRun(company_id=company.id, run_date=NOW.date(), status="running", created_at=NOW)
    session.add(campaign)
    session.flush()
    usage(session, company.id, campaign.id)
    usage(
        session,
        company.id,
        campaign.id,
        request_key="r2",
        items=1,
        batch_items=1,
        written=1,
        prompt_tokens=90,
        output_tokens=60,
        thinking_tokens=30,
    )
    client = make_client(session, company.id, last_visit=NOW.date() - timedelta(days=40))
    row = make_history(session, client, sent_at=None, status="interval_selected")
    session.flush()
    gemini_queue.enqueue(session, company_id=company.id, history_id=row.id, now=NOW)
    session.commit()
    return company.id, campaign.id


def test_stats_show_geminis_requests_and_tokens_per_message(cli_db: Session) -> None:
    company_id, _ = arrange(cli_db)
    code, out, _ = run("stats", "--company", str(company_id), "--format", "json")
    assert code == 0
    gemini = json.loads(out)["gemini"]
    assert (gemini["requests"], gemini["messages"], gemini["tokens"]) == (2, 5, 880)
    assert gemini["request_share"] == 1.2 and gemini["tokens_per_message"] == 176.0
    assert gemini["thinking_tokens_per_message"] == 14.0
    code, out, _ = run("stats", "--company", str(company_id))
    assert code == 0
    out = " ".join(out.split())
    assert "Gemini: 2 request(s) (1.2 by this salon's share of the batches), 5 message(s) written, 880 tokens" in out
    assert "176 per message (14 thinking)" in out


def test_campaign_status_shows_the_runs_gemini_use_and_what_waits(cli_db: Session) -> None:
    company_id, _ = arrange(cli_db)
    code, out, _ = run("campaign", "status", "--company", str(company_id))
    assert code == 0, out
    text = " ".join(out.split())
    assert "Gemini: 2 request(s) for this run (1.2 by its share of the batches), 5 message(s) written" in text
    assert "880 tokens (176 per message, 14 of them thinking)" in text
    assert "1 row(s) of this company waiting for a batch" in text
    assert "0 request(s) of 1,500 (GEMINI_DAILY_LIMIT)" in text
    assert "PAUSED" not in text and "breaker" not in text


def test_campaign_status_shows_a_pause_and_an_open_breaker_with_the_setting_to_fix(cli_db: Session) -> None:
    company_id, _ = arrange(cli_db)
    # given the day's quota used up and a key refused, as the workers recorded them in the shared Redis
    gate = Runtime(load_settings()).gemini_gate
    gate.pause_for_the_day(NOW, DAILY_QUOTA)
    gate.open_breaker(NOW, KEY, detail="403 PERMISSION_DENIED")
    code, out, _ = run("campaign", "status", "--company", str(company_id))
    assert code == 0
    text = " ".join(out.split())
    assert "Gemini PAUSED for every worker until 2026-11-25 08:00 UTC (00:00 Pacific): gemini_daily_quota" in text
    assert "Gemini breaker open until 2026-11-24 12:10 UTC (04:10 Pacific) (gemini_key); fix GEMINI_API_KEY" in text


def test_without_a_key_and_without_requests_status_says_nothing_of_gemini(
    cli_db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GEMINI_API_KEY")
    get_settings.cache_clear()
    company = make_company(cli_db)
    cli_db.commit()
    code, out, _ = run("campaign", "status", "--company", str(company.id))
    assert code == 0 and "Gemini" not in out


def test_campaign_status_says_why_gemini_wrote_nothing_and_how_many_templates_went_instead(cli_db: Session) -> None:
    # given a run in which Gemini could not be reached: its requests failed and the rows took their templates
    company_id, run_id = arrange(cli_db)
    usage(cli_db, company_id, run_id, request_key="r3", written=0, outcome="connection_error", prompt_tokens=0)
    usage(cli_db, company_id, run_id, request_key="r4", written=0, outcome="connection_error", prompt_tokens=0)
    clients = [make_client(cli_db, company_id, last_visit=NOW.date() - timedelta(days=50)) for _ in range(4)]
    for client, reason in zip(clients, ["connection_error", "connection_error", "connection_error", None], strict=True):
        make_history(cli_db, client, sent_at=NOW, campaign_run_id=run_id, generator_fallback_reason=reason)
    # and another salon's run the same day, whose templates had another cause
    other = make_company(cli_db, name="Барбершоп «Борода»")
    other_run = CampaignRun(company_id=other.id, run_date=NOW.date(), status="done", created_at=NOW)
    cli_db.add(other_run)
    cli_db.flush()
    other_client = make_client(cli_db, other.id, last_visit=NOW.date() - timedelta(days=50))
    make_history(cli_db, other_client, sent_at=NOW, campaign_run_id=other_run.id, generator_fallback_reason="timeout")
    cli_db.commit()
    # when the operator asks for the run's status
    code, out, _ = run("campaign", "status", "--company", str(company_id))
    # then it shows the requests by outcome and the templates by cause, this salon's only
    assert code == 0, out
    text = " ".join(out.split())
    assert "Gemini requests by outcome: connection_error 2, ok 2" in text
    assert "Templates instead of Gemini: 4 message(s) (connection_error 3, unknown 1)" in text
    assert "timeout" not in text


def test_campaign_status_shows_an_outage_breaker_without_a_setting_to_blame(cli_db: Session) -> None:
    company_id, _ = arrange(cli_db)
    # given the workers found Gemini down (OUTAGE_FAILURES requests in a row unanswered)
    gate = Runtime(load_settings()).gemini_gate
    for _ in range(OUTAGE_FAILURES):
        gate.went_unanswered(NOW, detail="server_error: 503 UNAVAILABLE")
    code, out, _ = run("campaign", "status", "--company", str(company_id))
    assert code == 0
    text = " ".join(out.split())
    assert "Gemini breaker open until 2026-11-24 12:10 UTC (04:10 Pacific) (gemini_unavailable); " in text
    assert f"{OUTAGE_FAILURES} requests in a row got no answer (timeouts, dropped connections, 5xx)" in text
    assert "fix " not in text


def test_campaign_status_reports_the_real_run_not_a_dry_run_of_the_same_day(cli_db: Session) -> None:
    # given a dry run of today, made before the real run, and the real run, each with a templated message
    company = make_company(cli_db, name="Салон «Бархат»")
    runs = {}
    for dry_run in (True, False):
        runs[dry_run] = CampaignRun(
            company_id=company.id, run_date=NOW.date(), status="done", created_at=NOW, dry_run=dry_run
        )
        cli_db.add(runs[dry_run])
        cli_db.flush()
    for dry_run, reason in ((True, "timeout"), (False, "connection_error")):
        client = make_client(cli_db, company.id, last_visit=NOW.date() - timedelta(days=50))
        make_history(
            cli_db,
            client,
            sent_at=NOW,
            campaign_run_id=runs[dry_run].id,
            generator_fallback_reason=reason,
            dry_run=dry_run,
        )
    cli_db.commit()
    # when the operator asks for today's status
    code, out, _ = run("campaign", "status", "--company", str(company.id))
    # then Gemini's lines are the real run's
    assert code == 0, out
    text = " ".join(out.split())
    assert "Templates instead of Gemini: 1 message(s) (connection_error 1)" in text
    assert "timeout" not in text
