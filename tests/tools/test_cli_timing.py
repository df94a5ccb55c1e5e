"""The timing commands as an operator runs them: averages, preview (with messages) and backtest, on PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from reactivation.audience.selection import due_clients
from reactivation.core.phones import mask_phone
from reactivation.core.settings import get_settings
from reactivation.core.vocabulary import Step
from reactivation.messaging.names import first_name
from reactivation.messaging.validation import validate_message
from reactivation.storage.models import ClientPersonalizedInterval, ReactivationHistory, ServiceReactivationInterval
from reactivation.tools import cli
from tests.conftest import REDIS_URL
from tests.factories import every, make_client, make_company, make_service, make_visits
from tests.fake_gemini import TEST_API_KEY, FakeGemini
from tests.salon import UNMATCHED_TITLE, Salon, build_salon

TODAY = date(2026, 11, 23)
GRACE = 3  # the default grace_days; the salon's clients are on the universal 30 days
runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(cli.app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def pg(
    committed_url: str, committed_engine: Engine, test_redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Engine]:
    """The commands open the committed PostgreSQL database and the real Redis under this test's prefix."""
    monkeypatch.setenv("DATABASE_URL", committed_url)
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    monkeypatch.setenv("REDIS_KEY_PREFIX", test_redis_prefix)
    for name in ("GEMINI_API_KEY", "GEMINI_BASE_URL", "GEMINI_RATE_LIMIT"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield committed_engine
    get_settings.cache_clear()


def history_rows(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(ReactivationHistory)) or 0


class Boundaries:
    """Clients placed by hand around their due dates on TODAY."""

    def __init__(self, engine: Engine, salon: Salon) -> None:
        with Session(engine) as session:
            service = make_service(session, salon.company_id, UNMATCHED_TITLE)

            def client(days_ago: int) -> int:
                return make_client(
                    session, salon.company_id, last_visit=TODAY - timedelta(days=days_ago), services=[service]
                ).id

            self.exactly_due = client(30 + GRACE)  # step 1 falls due today
            self.day_before = client(30 + GRACE - 1)  # step 1 falls due tomorrow
            self.second_step = client(2 * 30 + GRACE)  # step 2 falls due today
            # a client of their own 24-day rhythm (6 visits), exactly at 2 × 24 + grace
            self.personal = client(2 * 24 + GRACE)
            session.add(
                ClientPersonalizedInterval(
                    company_id=salon.company_id,
                    client_id=self.personal,
                    service_id=service.yclients_id,
                    personal_interval_days=24,
                    visit_count=6,
                    consistency_score=Decimal("0.90"),
                    last_calculated=salon.now,
                )
            )
            session.commit()


@pytest.fixture
def salon(pg: Engine) -> tuple[Salon, Boundaries]:
    salon = build_salon(pg, due=5, today=TODAY)
    return salon, Boundaries(pg, salon)


def preview_json(company_id: int, *args: str) -> list[dict[str, object]]:
    code, out, err = run(
        "preview", "--company", str(company_id), "--date", TODAY.isoformat(), "--format", "json", *args
    )
    assert code == 0, err
    rows = json.loads(out)
    assert isinstance(rows, list)
    return rows


# --- preview --------------------------------------------------------------------------------------------------


def test_preview_lists_exactly_the_due_clients_and_says_why(pg: Engine, salon: tuple[Salon, Boundaries]) -> None:
    shop, placed = salon
    # when the operator previews the salon's day
    rows = preview_json(shop.company_id)
    by_id = {row["client_id"]: row for row in rows}
    # then the clients listed are the due selection's, in its order
    with Session(pg) as session:
        expected = [d.client_id for d in due_clients(session, company_id=shop.company_id, today=TODAY)]
    assert [row["client_id"] for row in rows] == expected
    # and by hand: the build_salon due clients and those exactly at k × interval + grace are in, the day before not
    assert set(shop.due) <= set(by_id)
    assert {placed.exactly_due, placed.second_step, placed.personal} <= set(by_id)
    assert placed.day_before not in by_id
    assert not set(shop.not_due) & set(by_id)
    exactly = by_id[placed.exactly_due]
    assert (exactly["interval_days"], exactly["interval_source"], exactly["message_type"]) == (
        30,
        "universal",
        "gentle",
    )
    assert exactly["due_date"] == TODAY.isoformat()
    assert exactly["why"] == f"universal 30 d, 1st step due since {TODAY.isoformat()}"
    assert by_id[placed.second_step]["message_type"] == "offer"
    personal = by_id[placed.personal]
    assert (personal["interval_days"], personal["interval_source"], personal["confidence"]) == (24, "personal", 0.81)
    assert personal["why"] == f"personal 24 d (6 visits), 2nd step due since {TODAY.isoformat()}"
    # and every row carries the columns an operator or a script needs, with the phone masked
    for row in rows:
        assert {
            "client_id",
            "name",
            "phone",
            "last_service",
            "last_visit",
            "days_inactive",
            "interval_days",
            "interval_source",
            "confidence",
            "message_type",
            "due_date",
            "why",
        } <= set(row)
        assert "message" not in row
        assert re.fullmatch(r"\+7\*+\d\d", str(row["phone"]))
    for client_id, phone in shop.phones.items():
        assert by_id[client_id]["phone"] == mask_phone(phone)
    # and nothing was written
    assert history_rows(pg) == 0


def test_preview_limit_date_and_csv(pg: Engine, salon: tuple[Salon, Boundaries]) -> None:
    shop, placed = salon
    everyone = preview_json(shop.company_id)
    # --limit keeps the most valuable first
    limited = preview_json(shop.company_id, "--limit", "2")
    assert [r["client_id"] for r in limited] == [r["client_id"] for r in everyone[:2]]
    # --date moves the reference day: a day earlier the client exactly due today is not due yet...
    code, out, _ = run("preview", "--company", str(shop.company_id), "--date", "2026-11-22", "--format", "json")
    earlier = {r["client_id"] for r in json.loads(out)}
    assert code == 0 and placed.exactly_due not in earlier and set(shop.due) <= earlier
    # ...and a day later the one due tomorrow is
    code, out, _ = run("preview", "--company", str(shop.company_id), "--date", "2026-11-24", "--format", "json")
    assert code == 0 and placed.day_before in {r["client_id"] for r in json.loads(out)}
    # CSV: a header and one parsed row per client, the same values as the JSON
    code, out, _ = run("preview", "--company", str(shop.company_id), "--date", TODAY.isoformat(), "--format", "csv")
    assert code == 0
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert [int(r["client_id"]) for r in parsed] == [r["client_id"] for r in everyone]
    assert list(parsed[0]) == list(everyone[0])
    assert [r["why"] for r in parsed] == [r["why"] for r in everyone]


def test_preview_streams_every_due_client_from_the_kept_due_dates(pg: Engine, salon: tuple[Salon, Boundaries]) -> None:
    shop, placed = salon
    # Given the nightly pass has computed the salon's kept due dates
    code, out, err = run("due-dates", "--company", str(shop.company_id), "--format", "json")
    assert code == 0, err
    assert json.loads(out)["recomputed"] >= len(shop.due)
    # When the operator exports every due client as CSV and as JSON (into a pipe: no progress line)
    code, out, err = run("preview", "--company", str(shop.company_id), "--date", TODAY.isoformat(), "--format", "csv")
    assert code == 0 and "rows" not in err
    parsed = list(csv.DictReader(io.StringIO(out)))
    everyone = preview_json(shop.company_id)
    # Then both list the same clients as the selection, in its order, with the kept interval and step
    with Session(pg) as session:
        due = due_clients(session, company_id=shop.company_id, today=TODAY)
    assert [int(r["client_id"]) for r in parsed] == [d.client_id for d in due] == [r["client_id"] for r in everyone]
    assert placed.exactly_due in {d.client_id for d in due} and placed.day_before not in {d.client_id for d in due}
    by_id = {r["client_id"]: r for r in everyone}
    assert by_id[placed.personal]["interval_source"] == "personal" and by_id[placed.personal]["step"] == 2
    assert [r["why"] for r in parsed] == [r["why"] for r in everyone]
    assert all("*" in r["phone"] for r in parsed)


def test_preview_table_for_the_operator(pg: Engine, salon: tuple[Salon, Boundaries]) -> None:
    shop, placed = salon
    code, out, _ = run("preview", "--company", str(shop.company_id), "--date", TODAY.isoformat(), "--limit", "50")
    assert code == 0
    assert f"due on {TODAY.isoformat()}" in out
    # the why column wraps in a narrow terminal; its head shows the personal rhythm
    assert str(placed.personal) in out and "personal 24 d (6" in out
    # phones only masked: no raw number of a listed client appears
    digits = re.sub(r"\D", "", out)
    for phone in shop.phones.values():
        assert mask_phone(phone) in out
        assert phone[1:] not in digits


def test_preview_with_messages_from_templates_writes_nothing(pg: Engine, salon: tuple[Salon, Boundaries]) -> None:
    shop, _ = salon
    # given no Gemini key: when messages are asked for
    rows = preview_json(shop.company_id, "--with-messages")
    # then each client has the template message the pipeline would send, valid and in Russian
    assert len(rows) >= 8
    for row in rows:
        step = Step.from_message_type(str(row["message_type"]))
        assert row["generator"] == "template" and str(row["variant"]).startswith(f"{step.message_type}.")
        assert row["fallback_reason"] == "no_key"
        text = str(row["message"])
        name = first_name(row["name"] if isinstance(row["name"], str) else None)
        assert validate_message(text, step=step, first_name=name, company_name="Салон «Бархат»").ok
        assert re.search(r"[а-яё]{4,}", text)
    # and nothing was written or sent
    assert history_rows(pg) == 0


def test_preview_with_messages_uses_gemini_in_batches_within_the_global_limit(
    pg: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a key, the fake Gemini, batches of 2, a global limit of 1 request a minute, a budget of 5 s and three due
    # clients
    shop = build_salon(pg, due=3, today=TODAY, extras=False)
    with FakeGemini(max_lifetime=60) as fake:
        monkeypatch.setenv("GEMINI_API_KEY", TEST_API_KEY)
        monkeypatch.setenv("GEMINI_BASE_URL", fake.base_url)
        monkeypatch.setenv("GEMINI_RATE_LIMIT", "1/60")
        monkeypatch.setenv("GEMINI_BATCH_SIZE", "2")
        monkeypatch.setenv("GEMINI_BUDGET_SECONDS", "5")
        get_settings.cache_clear()
        # when the preview writes their messages
        rows = preview_json(shop.company_id, "--with-messages")
        requests = len(fake.requests)
    # then the first two come from one Gemini request and the third, with no slot left within its budget, from the
    # template
    assert [r["generator"] for r in rows] == ["gemini", "gemini", "template"]
    assert rows[2]["fallback_reason"] == "rate_limited_budget"
    assert requests == 1
    for row in rows:
        step = Step.from_message_type(str(row["message_type"]))
        name = first_name(row["name"] if isinstance(row["name"], str) else None)
        assert validate_message(str(row["message"]), step=step, first_name=name, company_name="Салон «Бархат»").ok
    assert history_rows(pg) == 0


def test_preview_keeps_companies_apart(pg: Engine) -> None:
    # given two salons with due clients on the same day
    first = build_salon(pg, due=3, company_id=111, today=TODAY)
    second = build_salon(pg, due=4, company_id=222, today=TODAY)
    # then each preview lists its own clients only
    assert {r["client_id"] for r in preview_json(111)} == set(first.due)
    assert {r["client_id"] for r in preview_json(222)} == set(second.due)


def test_preview_errors_are_one_line(pg: Engine) -> None:
    code, out, err = run("preview", "--company", "404")
    assert (code, out) == (2, "") and err.strip() == "error: unknown company 404"
    make_company_committed(pg, 5)
    code, _, err = run("preview", "--company", "5", "--date", "23.11.2026")
    assert code == 2 and "expected YYYY-MM-DD" in err


def make_company_committed(engine: Engine, company_id: int) -> None:
    with Session(engine) as session:
        make_company(session, company_id)
        session.commit()


# --- averages -------------------------------------------------------------------------------------------------


def regulars(engine: Engine, company_id: int) -> None:
    """Twelve clients who come for a men's haircut every 28 days, six times, up to TODAY."""
    with Session(engine) as session:
        make_company(session, company_id)
        service = make_service(session, company_id, "Стрижка мужская")
        for index in range(12):
            days = every(TODAY - timedelta(days=5 * 28 + index), 28, 6)
            client = make_client(session, company_id, last_visit=days[-1], services=[service])
            make_visits(session, client, service, days)
        session.commit()


def test_averages_full_then_incremental(pg: Engine) -> None:
    # given a salon with twelve regulars
    regulars(pg, 77)
    # when the averages are computed the first time
    code, out, err = run("averages", "--company", "77", "--date", TODAY.isoformat(), "--format", "json")
    # then it is a full run that found the service's median and twelve rhythms
    assert code == 0, err
    result = json.loads(out)
    assert result["mode"] == "full" and result["today"] == TODAY.isoformat()
    assert (result["services_active"], result["services_inactive"]) == (1, 0)
    assert (result["personal_rows"], result["personal_written"]) == (12, 12)
    assert isinstance(result["seconds"], float)
    with Session(pg) as session:
        median = session.scalar(
            select(ServiceReactivationInterval.median_interval_days).where(ServiceReactivationInterval.company_id == 77)
        )
    assert median == 28
    # and the next run is incremental and changes nothing, unless --full
    code, out, _ = run("averages", "--company", "77", "--date", TODAY.isoformat(), "--format", "json")
    again = json.loads(out)
    assert code == 0 and (again["mode"], again["personal_written"], again["personal_rows"]) == ("incremental", 0, 12)
    code, out, _ = run("averages", "--company", "77", "--date", TODAY.isoformat(), "--full")
    assert code == 0 and "full run" in out and "client rhythms of their own" in out


def test_averages_unknown_company(pg: Engine) -> None:
    code, out, err = run("averages", "--company", "404")
    assert (code, out) == (2, "") and err.strip() == "error: unknown company 404"


# --- backtest -------------------------------------------------------------------------------------------------


def test_backtest_json_and_table(pg: Engine) -> None:
    # given twelve regulars on a 28-day rhythm
    regulars(pg, 78)
    # when the backtest replays them
    code, out, err = run("backtest", "--company", "78", "--format", "json")
    # then every last return is predicted exactly by their own rhythm and by the salon's median
    assert code == 0, err
    result = json.loads(out)
    assert (result["company_id"], result["cases"], result["clients"]) == (78, 12, 12)
    scores = {m["name"]: m for m in result["methods"]}
    assert set(scores) == {
        "personal",
        "service_average",
        "industry_standard",
        "universal",
        "waterfall",
        "seed_3_level",
    }
    assert scores["waterfall"]["share_within_tolerance"] == 1.0
    assert scores["personal"]["median_abs_error_days"] == 0.0
    assert scores["industry_standard"]["coverage"] == 1.0  # "Стрижка мужская" is a men's haircut
    # and the table says the same for the operator
    code, out, _ = run("backtest", "--company", "78")
    assert code == 0 and "12 returns of 12 clients" in out and "seed (3 levels)" in out


def test_backtest_of_a_salon_without_returns(pg: Engine) -> None:
    make_company_committed(pg, 79)
    code, out, _ = run("backtest", "--company", "79")
    assert code == 0 and "no return to replay" in " ".join(out.split())
    code, out, _ = run("backtest", "--company", "79", "--format", "json")
    assert code == 0 and json.loads(out)["cases"] == 0
    code, _, err = run("backtest", "--company", "404")
    assert code == 2 and err.strip() == "error: unknown company 404"
