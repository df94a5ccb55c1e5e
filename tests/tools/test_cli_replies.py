"""The commands of the replies section: classify, attribute, stats and consent import, as an operator runs them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from time_machine import TimeMachineFixture
from typer.testing import CliRunner

from reactivation.core.settings import get_settings
from reactivation.storage import migrations
from reactivation.storage.db import make_engine
from reactivation.tools import cli
from tests.factories import make_booking, make_client, make_company
from tests.history_rows import make_history

runner = CliRunner()
# The commands take the wall clock; the tests that open the database set it here, whatever day the suite runs on.
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(cli.app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def cli_db(sqlite_url: str, monkeypatch: pytest.MonkeyPatch, time_machine: TimeMachineFixture) -> Iterator[Session]:
    """The embedded database the commands open (DATABASE_URL), and a session on it for arranging rows, at NOW."""
    time_machine.move_to(NOW, tick=True)
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.delenv("REDIS_URL", raising=False)
    get_settings.cache_clear()
    migrations.upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    session = Session(bind=engine, expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()
        engine.dispose()
        get_settings.cache_clear()


# --- classify ------------------------------------------------------------------------------------------------


def test_classify_arguments_as_json_in_input_order() -> None:
    code, out, _ = run("classify", "Да, запишите", "Не надо", "Сколько стоит?", "СТОП", "--format", "json")
    assert code == 0
    assert json.loads(out) == [
        {"text": "Да, запишите", "label": "positive", "reason": None, "until": None},
        {"text": "Не надо", "label": "negative", "reason": "no_need", "until": None},
        {"text": "Сколько стоит?", "label": "neutral", "reason": "question", "until": None},
        {"text": "СТОП", "label": "opt_out", "reason": None, "until": None},
    ]


def test_classify_gives_the_reason_and_the_date_a_not_now_names_relative_to_the_given_date() -> None:
    # given replies written on 20 December 2026 in Russia
    replies = ("Не сейчас, может в январе", "После праздников", "В этом месяце никак", "Не сейчас", "Дорого")
    # when they are classified as of that date
    code, out, _ = run("classify", *replies, "--date", "2026-12-20", "--format", "json")
    # then each not_now carries the date it names (the New Year holidays end on 10 January 2027, a Sunday)
    assert code == 0
    assert [(r["reason"], r["until"]) for r in json.loads(out)] == [
        ("not_now", "2027-01-01"),
        ("not_now", "2027-01-11"),
        ("not_now", "2027-01-01"),
        ("not_now", None),
        ("price", None),
    ]


def test_classify_refuses_a_country_without_a_holiday_calendar() -> None:
    code, _, err = run("classify", "После праздников", "--country", "XX")
    assert code == 2
    assert "unknown country code 'XX'" in err


def test_classify_plain_and_table() -> None:
    code, out, _ = run("classify", "--format", "plain", "хочу в субботу", "а что?")
    assert (code, out) == (0, "positive\tхочу в субботу\nneutral\tа что?\n")
    code, out, _ = run("classify", "Нет, спасибо")
    assert code == 0 and "negative" in out and "Нет, спасибо" in out


def test_classify_a_file_skips_empty_lines_with_a_note(tmp_path: Path) -> None:
    # given a file with a BOM, CRLF line ends and two empty lines
    replies = tmp_path / "replies.txt"
    replies.write_bytes("\ufeffДа\r\n\r\nОтпишите меня\r\n   \r\nКто это?\r\n".encode())
    # when it is classified
    code, out, err = run("classify", "--file", str(replies), "--format", "json")
    # then every non-empty line gets its label in order, and the skipped lines are named on stderr
    assert code == 0
    assert [(r["text"], r["label"]) for r in json.loads(out)] == [
        ("Да", "positive"),
        ("Отпишите меня", "opt_out"),
        ("Кто это?", "neutral"),
    ]
    assert "skipped 2 empty line(s): 2, 4" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["classify", ""], "reply 1 is empty"),
        (["classify", "Да", "   "], "reply 2 is empty"),
        (["classify"], "nothing to classify"),
        (["classify", "Да", "--file", "x.txt"], "not both"),
        (["classify", "--file", "/nonexistent/replies.txt"], "cannot read"),
    ],
)
def test_classify_refuses_bad_input_with_exit_2(args: list[str], message: str) -> None:
    code, out, err = run(*args)
    assert code == 2
    assert message in err
    assert out == ""


def test_classify_a_file_of_only_empty_lines(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n  \n", encoding="utf-8")
    code, _, err = run("classify", "--file", str(empty))
    assert code == 2 and "has no replies" in err


# --- attribute and stats -------------------------------------------------------------------------------------


def arrange_campaign(session: Session) -> int:
    """A company with one message sent yesterday and a booking made after it; committed for the command."""
    company = make_company(session, settings={"holdout_percent": 50})
    client = make_client(session, company.id, last_visit=date(2026, 1, 10), phone="+79005551234")
    held = make_client(session, company.id, last_visit=date(2026, 1, 10))
    sent_at = NOW - timedelta(days=1)
    make_history(session, client, sent_at=sent_at, response_received=True, response_type="positive")
    make_history(session, held, sent_at=None, status="holdout", created_at=sent_at)
    make_booking(
        session,
        None,
        company_id=company.id,
        phone="8 900 555-12-34",
        when=sent_at + timedelta(days=3),
        created_at=sent_at + timedelta(hours=2),
    )
    session.commit()
    return company.id


def test_attribute_then_stats(cli_db: Session) -> None:
    # given a campaign whose booking is not linked yet
    company_id = arrange_campaign(cli_db)
    # when the operator attributes bookings, twice
    code, out, _ = run("attribute", "--company", str(company_id), "--format", "json")
    assert code == 0
    assert json.loads(out) == {"company_id": company_id, "linked": 1, "attribution_days": 7}
    assert json.loads(run("attribute", "--company", str(company_id), "--format", "json")[1])["linked"] == 0
    # then the stats show the booking, as JSON ...
    code, out, _ = run("stats", "--company", str(company_id), "--format", "json")
    assert code == 0
    result = json.loads(out)
    assert (result["total"]["sent"], result["total"]["positive"], result["total"]["bookings"]) == (1, 1, 1)
    assert result["holdout"]["control"] == {"clients": 1, "bookings": 0, "conversion_rate": 0.0}
    assert set(result) >= {"total", "by_step", "by_source", "by_generator", "by_variant", "holdout"}
    # ... and as the table a salon owner reads
    code, out, _ = run("stats", "--company", str(company_id), "--since", (NOW.date() - timedelta(days=3)).isoformat())
    assert code == 0
    assert "All messages" in out and "step: gentle" in out and "100.0 %" in out
    assert "Control group (nothing sent): 1 clients, 0 booked" in out
    assert "Uplift: +100.0 points" in out


def test_stats_and_attribute_refuse_bad_input(cli_db: Session) -> None:
    code, _, err = run("stats", "--company", "987654321")
    assert code == 2 and "unknown company 987654321" in err
    code, _, err = run("attribute", "--company", "987654321")
    assert code == 2 and "unknown company" in err
    company_id = arrange_campaign(cli_db)
    code, _, err = run("stats", "--company", str(company_id), "--since", "yesterday")
    assert code == 2 and "YYYY-MM-DD" in err
    code, _, err = run("stats", "--company", str(company_id), "--since", "2026-03-02", "--until", "2026-03-01")
    assert code == 2 and "after" in err


def test_stats_without_holdout_says_so(cli_db: Session) -> None:
    company = make_company(cli_db)
    cli_db.commit()
    code, out, _ = run("stats", "--company", str(company.id))
    assert code == 0 and "No control group" in out


# --- consent import ------------------------------------------------------------------------------------------


def test_consent_import_reports_bad_lines_and_exits_1(cli_db: Session, tmp_path: Path) -> None:
    company = make_company(cli_db)
    cli_db.commit()
    csv_file = tmp_path / "consents.csv"
    csv_file.write_text(
        "phone,granted_at,source,text_version\n+79001112233,2025-06-01,salon,v1\nнет,2025-06-01,salon,v1\n",
        encoding="utf-8",
    )
    code, out, err = run("consent", "import", "--company", str(company.id), "--file", str(csv_file))
    assert code == 1
    assert "1 imported" in out
    assert "line 3: phone:" in err
    # a second import of a clean file is idempotent, as JSON
    csv_file.write_text("phone,granted_at,source\n+79001112233,2025-06-01,salon\n", encoding="utf-8")
    code, out, _ = run("consent", "import", "--company", str(company.id), "--file", str(csv_file), "--format", "json")
    assert code == 0
    report = json.loads(out)
    assert (report["imported"], report["unchanged"], report["problems"]) == (0, 1, [])


def test_consent_import_refuses_bad_input(cli_db: Session, tmp_path: Path) -> None:
    company = make_company(cli_db)
    cli_db.commit()
    code, _, err = run("consent", "import", "--company", str(company.id), "--file", str(tmp_path / "missing.csv"))
    assert code == 2 and "cannot read" in err
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("name,phone\nМария,+79001112233\n", encoding="utf-8")
    code, _, err = run("consent", "import", "--company", str(company.id), "--file", str(wrong))
    assert code == 2 and "lacks granted_at, source" in err
    code, _, err = run("consent", "import", "--company", "987654321", "--file", str(wrong))
    assert code == 2 and "unknown company" in err


def test_stats_say_why_and_list_the_unhappy_replies_for_the_owner(cli_db: Session) -> None:
    # given two replies on the embedded database: one unhappy, one "not now"
    company = make_company(cli_db)
    sent = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    unhappy = make_client(cli_db, company.id, last_visit=date(2026, 1, 20), phone="+79001234567")
    later = make_client(cli_db, company.id, last_visit=date(2026, 1, 20))
    make_history(
        cli_db,
        unhappy,
        sent_at=sent,
        response_received=True,
        response_at=sent + timedelta(hours=2),
        response_type="negative",
        response_reason="unhappy",
        response_text="Мне испортили стрижку",
    )
    make_history(
        cli_db, later, sent_at=sent, response_received=True, response_type="negative", response_reason="not_now"
    )
    cli_db.commit()
    # when the owner reads the stats
    code, out, _ = run("stats", "--company", str(company.id))
    # then they see why clients declined and whom to call back (the phone masked)
    assert code == 0
    assert "Why: negative: not_now 1, unhappy 1." in out
    assert "Unhappy clients" in out and "+7********67" in out and "2026-03-02" in out and "испортили" in out
    code, out, _ = run("stats", "--company", str(company.id), "--format", "json")
    report = json.loads(out)
    assert report["replies_by_reason"] == {"negative": {"not_now": 1, "unhappy": 1}}
    assert report["unhappy"]["replies"] == [
        {"phone": "+7********67", "date": "2026-03-02", "text": "Мне испортили стрижку"}
    ]
