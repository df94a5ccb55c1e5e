from datetime import date

from reactivation.audience.holdout import holdout_bucket, in_holdout


def test_same_client_and_lapse_always_land_in_the_same_group() -> None:
    lapse = date(2026, 9, 1)
    first = [in_holdout(company_id=1, client_id=c, lapse=lapse, percent=50) for c in range(500)]
    again = [in_holdout(company_id=1, client_id=c, lapse=lapse, percent=50) for c in range(500)]
    assert first == again


def test_share_follows_the_percent() -> None:
    lapse = date(2026, 9, 1)
    for percent, low, high in ((0, 0, 0), (10, 700, 1300), (50, 4700, 5300), (100, 10_000, 10_000)):
        held = sum(in_holdout(company_id=7, client_id=c, lapse=lapse, percent=percent) for c in range(10_000))
        assert low <= held <= high, (percent, held)


def test_a_new_lapse_reshuffles_and_companies_differ() -> None:
    a = [holdout_bucket(company_id=1, client_id=c, lapse=date(2026, 1, 1)) for c in range(200)]
    b = [holdout_bucket(company_id=1, client_id=c, lapse=date(2026, 2, 1)) for c in range(200)]
    c = [holdout_bucket(company_id=2, client_id=c, lapse=date(2026, 1, 1)) for c in range(200)]
    assert a != b and a != c
