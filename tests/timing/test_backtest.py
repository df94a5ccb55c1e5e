"""The backtest: replaying a salon's visits with known right answers, without peeking, as the averages job sees."""

from __future__ import annotations

import random
from datetime import date, timedelta

import pytest
from sqlalchemy.orm import Session

from reactivation.storage.companies import UnknownCompany
from reactivation.timing.averages.stats import compute_averages, interval_series
from reactivation.timing.backtest import (
    TOLERANCE_DAYS,
    Case,
    History,
    Method,
    _SalonMedians,
    backtest,
    load_history,
    personal_as_of,
    replay,
)
from reactivation.timing.industry import IndustryStandard
from reactivation.timing.waterfall import UNIVERSAL_DAYS, Source
from tests.factories import every, make_client, make_company, make_service, make_visits

MANICURE = 101
SPA = 202
TITLES = {MANICURE: "Маникюр с покрытием гель-лак", SPA: "SPA-программа «Релакс»"}
STANDARDS = [
    IndustryStandard(
        category_key="manicure_gel",
        category_name="Маникюр с покрытием",
        interval_days=25,
        keywords=frozenset({"маникюр"}),
        confidence=0.8,
    )
]
START = date(2026, 1, 5)


def visits_of(client_id: int, service_id: int, days: list[date]) -> list[tuple[int, int, date]]:
    return [(client_id, service_id, day) for day in days]


def salon_with_a_perfect_client(*, others_rhythm: int = 35) -> list[tuple[int, int, date]]:
    """Client 1 comes for a manicure exactly every 21 days (7 visits); twelve others every `others_rhythm` days."""
    visits = visits_of(1, MANICURE, every(START + timedelta(days=60), 21, 7))
    for client_id in range(10, 22):
        visits += visits_of(client_id, MANICURE, every(START + timedelta(days=client_id), others_rhythm, 7))
    return visits


def case_of(cases: list[Case], client_id: int, service_id: int = MANICURE) -> Case:
    return next(c for c in cases if (c.client_id, c.service_id) == (client_id, service_id))


def test_a_perfect_rhythm_is_predicted_exactly_by_personal_and_missed_by_the_seeds_three_levels() -> None:
    # given a client with a perfect 21-day rhythm in a salon whose clients come every 35 days
    history = History(salon_with_a_perfect_client(), TITLES, STANDARDS)
    # when the history is replayed
    case = case_of(replay(history), 1)
    # then the last 21-day return is predicted exactly by the personal level and by the waterfall through it
    assert case.actual_days == 21
    personal = case.predictions[Method.PERSONAL]
    assert personal is not None and personal.interval_days == 21
    waterfall = case.predictions[Method.WATERFALL]
    assert waterfall is not None and waterfall.source is Source.PERSONAL and waterfall.interval_days == 21
    # and the seed's variant, with no personal level, takes the salon's 35 days: 14 days off
    seed = case.predictions[Method.SEED_3_LEVEL]
    assert seed is not None and seed.source is Source.SERVICE_AVERAGE and seed.interval_days == 35
    assert abs(seed.interval_days - case.actual_days) > TOLERANCE_DAYS
    # and the industry level alone says 25, the universal 30
    industry = case.predictions[Method.INDUSTRY_STANDARD]
    assert industry is not None and industry.interval_days == 25
    universal = case.predictions[Method.UNIVERSAL]
    assert universal is not None and universal.interval_days == UNIVERSAL_DAYS


def test_scores_count_hits_misses_and_coverage() -> None:
    # given the salon above, replayed and scored
    report = backtest(History(salon_with_a_perfect_client(), TITLES, STANDARDS), company_id=7)
    # then every client's last return is a case: thirteen clients, one service
    assert (report.cases, report.clients) == (13, 13)
    # the regulars have six intervals of 35 days: personal predicts all 13 exactly
    personal = report.score(Method.PERSONAL)
    assert (personal.answered, personal.median_abs_error_days, personal.share_within_tolerance) == (13, 0.0, 1.0)
    assert personal.coverage == 1.0
    # the seed's 3 levels get the twelve regulars right (35 days) and miss the perfect client
    seed = report.score(Method.SEED_3_LEVEL)
    assert seed.answered == 13
    assert seed.share_within_tolerance == pytest.approx(12 / 13)
    assert report.score(Method.WATERFALL).share_within_tolerance == 1.0
    # and the waterfall's answers are split by the level that gave them
    by_source = {s.name: s.answered for s in report.by_source[Method.WATERFALL]}
    assert by_source == {"personal": 13, "service_average": 0, "industry_standard": 0, "universal": 0}


def test_a_level_without_data_does_not_answer_and_lowers_its_coverage() -> None:
    # given two SPA clients with two visits each (no personal rhythm, too few for a salon median, no industry match)
    visits = visits_of(1, SPA, [START, START + timedelta(days=40)]) + visits_of(
        2, SPA, [START, START + timedelta(days=20)]
    )
    # when replayed
    report = backtest(History(visits, TITLES, STANDARDS), company_id=7)
    # then only the universal level answers, and the waterfall falls through to it
    assert report.cases == 2
    for level in (Method.PERSONAL, Method.SERVICE_AVERAGE, Method.INDUSTRY_STANDARD):
        score = report.score(level)
        assert (score.answered, score.coverage, score.median_abs_error_days) == (0, 0.0, None)
    universal = report.score(Method.UNIVERSAL)
    assert (universal.answered, universal.median_abs_error_days, universal.share_within_tolerance) == (2, 10.0, 0.0)
    assert {s.name: s.answered for s in report.by_source[Method.WATERFALL]}["universal"] == 2


def test_no_peeking_later_visits_do_not_change_an_earlier_prediction() -> None:
    # given the salon, and the perfect client's case
    visits = salon_with_a_perfect_client()
    before = case_of(replay(History(visits, TITLES, STANDARDS)), 1)
    # when every visit of the other clients after the day of that prediction moves (and new ones are added)
    changed = [
        (c, s, d + timedelta(days=9) if c != 1 and d > before.previous_visit else d) for c, s, d in visits
    ] + visits_of(30, MANICURE, every(before.previous_visit + timedelta(days=1), 5, 12))
    # and the perfect client's own last visit comes a week later
    changed = [(c, s, d + timedelta(days=7) if (c, d) == (1, before.last_visit) else d) for c, s, d in changed]
    after = case_of(replay(History(changed, TITLES, STANDARDS)), 1)
    # then every prediction for that return is the same; only the actual interval moved
    assert after.previous_visit == before.previous_visit
    assert after.predictions == before.predictions
    assert (before.actual_days, after.actual_days) == (21, 28)


def test_the_salon_median_uses_only_intervals_that_ended_by_the_day_of_the_prediction() -> None:
    # given a client whose previous visit is before any other client's interval ended
    visits = visits_of(1, MANICURE, [START, START + timedelta(days=30)])
    for client_id in range(10, 25):
        visits += visits_of(client_id, MANICURE, [START + timedelta(days=1), START + timedelta(days=15)])
    cases = replay(History(visits, TITLES, STANDARDS))
    # then the salon's median was not known yet for client 1 (the others' 14-day intervals came later)
    assert case_of(cases, 1).predictions[Method.SERVICE_AVERAGE] is None


def test_the_replay_sees_what_the_averages_job_would_have_computed_that_day() -> None:
    # given a random salon: 40 clients, two services, irregular gaps over two years
    rng = random.Random(5)
    visits: list[tuple[int, int, date]] = []
    for client_id in range(1, 41):
        for service_id in (MANICURE, SPA):
            day = START - timedelta(days=rng.randint(0, 400))
            for _ in range(rng.randint(1, 14)):
                visits.append((client_id, service_id, day))
                day += timedelta(days=rng.choice([rng.randint(5, 40), rng.randint(1, 400)]))
    series = interval_series(visits)
    medians = _SalonMedians(series)
    # when each case's inputs are compared with compute_averages run on the day of its prediction
    cases = replay(History(visits, TITLES, STANDARDS))
    assert len(cases) > 50
    for case in cases:
        services, personal = compute_averages(visits, today=case.previous_visit)
        gaps = series[(case.client_id, case.service_id)][:-1]
        expected_personal = personal.get((case.client_id, case.service_id))
        got_personal = personal_as_of(gaps, case.previous_visit)
        # then the client's rhythm and the salon's median are the job's numbers
        if expected_personal is None:
            assert got_personal is None
        else:
            assert got_personal is not None
            assert (got_personal.interval_days, got_personal.intervals, got_personal.consistency) == (
                expected_personal.interval_days,
                expected_personal.intervals,
                expected_personal.consistency,
            )
        expected_service = services.get(case.service_id)
        got_service = medians.as_of(case.service_id, case.previous_visit)
        if expected_service is None:
            assert got_service is None
        else:
            assert got_service is not None
            assert (got_service.median_days, got_service.sample_size, got_service.is_active) == (
                expected_service.median_days,
                expected_service.sample_size,
                expected_service.is_active,
            )


def test_an_empty_history_gives_an_empty_report() -> None:
    # given no visits, and a client with a single visit
    for visits in ([], visits_of(1, MANICURE, [START])):
        report = backtest(History(visits, TITLES, STANDARDS), company_id=7)
        # then there is nothing to replay and every score says so
        assert (report.cases, report.clients) == (0, 0)
        result = report.as_dict()
        assert [m["name"] for m in result["methods"]] == [str(m) for m in Method]
        assert all(m["answered"] == 0 and m["coverage"] is None for m in result["methods"])


def test_report_as_json() -> None:
    report = backtest(History(salon_with_a_perfect_client(), TITLES, STANDARDS), company_id=7)
    result = report.as_dict()
    assert set(result) == {"company_id", "cases", "clients", "tolerance_days", "methods", "by_source"}
    assert result["tolerance_days"] == TOLERANCE_DAYS
    assert set(result["methods"][0]) == {
        "name",
        "cases",
        "answered",
        "coverage",
        "median_abs_error_days",
        "share_within_tolerance",
    }
    assert set(result["by_source"]) == {"waterfall", "seed_3_level"}
    assert [s["name"] for s in result["by_source"]["seed_3_level"]] == [str(s) for s in Source]


# --- Loading ------------------------------------------------------------------------------------------------------


def test_load_history_reads_one_companys_attended_visits(db: Session) -> None:
    # given two companies with visits, one of them not attended
    first, second = make_company(db), make_company(db)
    service = make_service(db, first.id, "Маникюр с покрытием гель-лак")
    other = make_service(db, second.id, "Стрижка мужская")
    client = make_client(db, first.id, last_visit=START, services=[service])
    make_visits(db, client, service, [START - timedelta(days=21), START])
    make_visits(db, client, service, [START - timedelta(days=5)], attendance=0)
    stranger = make_client(db, second.id, last_visit=START, services=[other])
    make_visits(db, stranger, other, [START - timedelta(days=30), START])
    # when the first company's history is loaded
    history = load_history(db, company_id=first.id)
    # then it holds that company's attended visits as local days, its titles and the industry rows
    assert sorted(history.visits) == [
        (client.id, service.yclients_id, START - timedelta(days=21)),
        (client.id, service.yclients_id, START),
    ]
    assert history.titles == {service.yclients_id: "Маникюр с покрытием гель-лак"}
    assert len(history.standards) >= 16
    # and an unknown company is an error that names it
    with pytest.raises(UnknownCompany, match="unknown company 404"):
        load_history(db, company_id=404)
