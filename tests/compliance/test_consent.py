"""The consent ledger: CSV import with bad rows reported, idempotent re-import, revocation, checks and the filter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reactivation.compliance.consent import (
    consent_filter,
    consented_phones,
    has_consent,
    import_consents,
    parse_consent_csv,
    revoke_consent,
)
from reactivation.core.phones import InvalidPhone
from reactivation.storage.companies import UnknownCompany, load_company
from reactivation.storage.models import Consent, OptOut, ReactivationHistory
from tests.factories import make_client, make_company
from tests.history_rows import make_history

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)

GOOD_CSV = """phone,granted_at,source,text_version
+7 900 111-22-33,2025-06-01,форма в салоне,v2
89001112244,2025-06-02T15:30,сайт,v2
9001112255,2025-06-03 10:00+03:00,сайт,
"""


def lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def consents(db: Session, company_id: int) -> list[Consent]:
    return list(db.scalars(select(Consent).where(Consent.company_id == company_id).order_by(Consent.phone)))


def test_import_normalizes_phones_and_reads_dates_in_the_salons_zone(db: Session) -> None:
    # given a Moscow salon and a CSV with phones and dates written three ways
    company = make_company(db, timezone="Europe/Moscow")
    # when it is imported
    report = import_consents(db, company_id=company.id, rows=lines(GOOD_CSV), now=NOW)
    # then every row is in the ledger, in E.164 and UTC
    assert (report.rows, report.imported, report.unchanged, report.problems) == (3, 3, 0, [])
    rows = consents(db, company.id)
    assert [r.phone for r in rows] == ["+79001112233", "+79001112244", "+79001112255"]
    assert rows[0].granted_at == datetime(2025, 5, 31, 21, 0, tzinfo=UTC)  # midnight in Moscow
    assert rows[1].granted_at == datetime(2025, 6, 2, 12, 30, tzinfo=UTC)
    assert rows[2].granted_at == datetime(2025, 6, 3, 7, 0, tzinfo=UTC)
    assert (rows[0].source, rows[0].text_version, rows[0].channel) == ("форма в салоне", "v2", "whatsapp")
    assert rows[2].text_version is None


def test_bad_rows_are_reported_with_line_and_reason_and_the_rest_imported(db: Session) -> None:
    company = make_company(db)
    csv_text = (
        "phone,granted_at,source,text_version\n"
        "+79001112233,2025-06-01,salon,v1\n"  # line 2: fine
        "не телефон,2025-06-01,salon,v1\n"  # line 3
        "+79001112234,вчера,salon,v1\n"  # line 4
        "+79001112235,2025-06-01,,v1\n"  # line 5
        "+79001112236,2027-01-01,salon,v1\n"  # line 6: in the future
        "+79001112237,2025-06-01\n"  # line 7: too few columns
        "\n"  # line 8: blank, ignored
        '"+79001112238","2025-06-01","салон, ресепшн","v1"\n'  # line 9: fine, quoted comma
    )
    report = import_consents(db, company_id=company.id, rows=lines(csv_text), now=NOW)
    assert report.imported == 2
    assert report.rows == 7
    reasons = {p.line: p.reason for p in report.problems}
    assert set(reasons) == {3, 4, 5, 6, 7}
    assert reasons[3].startswith("phone:")
    assert "not a date" in reasons[4]
    assert "source is empty" in reasons[5]
    assert "future" in reasons[6]
    assert "columns" in reasons[7]
    assert [r.source for r in consents(db, company.id)] == ["salon", "салон, ресепшн"]


def test_rows_may_leave_out_trailing_optional_columns(db: Session) -> None:
    # Given a header with all five columns and rows that stop after the required ones, or after text_version
    company = make_company(db)
    csv_text = (
        "phone,granted_at,source,text_version,channel\n"
        "+79001112233,2025-06-01,salon\n"
        "+79001112234,2025-06-01,salon,v2\n"
        "+79001112235,2025-06-01,salon,v3,sms\n"
        "+79001112236,2025-06-01\n"  # a required column left out
        "+79001112237,2025-06-01,salon,v3,sms,extra\n"  # more columns than the header
    )
    report = import_consents(db, company_id=company.id, rows=lines(csv_text), now=NOW)
    # Then the short rows are imported with the defaults, and only a row without a required column (or with too
    # many) is a problem
    assert report.imported == 3
    reasons = {p.line: p.reason for p in report.problems}
    assert set(reasons) == {5, 6}
    assert "expected 3 to 5 columns, got 2" in reasons[5] and "got 6" in reasons[6]
    rows = {(r.phone, r.text_version, r.channel) for r in consents(db, company.id)}
    assert rows == {
        ("+79001112233", None, "whatsapp"),
        ("+79001112234", "v2", "whatsapp"),
        ("+79001112235", "v3", "sms"),
    }


def test_a_file_without_the_required_columns_is_refused_whole(db: Session) -> None:
    company = make_company(db)
    with pytest.raises(ValueError, match="lacks granted_at, source"):
        import_consents(db, company_id=company.id, rows=["phone,date\n", "+79001112233,2025-01-01\n"], now=NOW)
    with pytest.raises(ValueError, match="empty"):
        import_consents(db, company_id=company.id, rows=[], now=NOW)


def test_reimport_is_idempotent_and_does_not_revive_a_revoked_consent(db: Session) -> None:
    # given an imported file, and one of its phones revoked since
    company = make_company(db)
    import_consents(db, company_id=company.id, rows=lines(GOOD_CSV), now=NOW)
    assert revoke_consent(db, company_id=company.id, phone="+79001112233", reason="opt_out: стоп", now=NOW) == 1
    # when the same file is imported again
    again = import_consents(db, company_id=company.id, rows=lines(GOOD_CSV), now=NOW + timedelta(days=1))
    # then nothing is added and the revoked grant stays revoked
    assert (again.imported, again.unchanged) == (0, 3)
    assert len(consents(db, company.id)) == 3
    assert not has_consent(db, company_id=company.id, phone="+79001112233", at=NOW + timedelta(days=1))


def test_an_older_grant_does_not_override_a_revocation_but_a_newer_one_does(db: Session) -> None:
    company = make_company(db)
    import_consents(db, company_id=company.id, rows=lines(GOOD_CSV), now=NOW)
    revoke_consent(db, company_id=company.id, phone="89001112233", reason="asked by phone", now=NOW)
    later = NOW + timedelta(days=10)
    old_and_new = "phone,granted_at,source\n+79001112233,2025-07-01,old paper form\n+79001112233,2026-03-25,new form\n"
    report = import_consents(db, company_id=company.id, rows=lines(old_and_new), now=later)
    assert report.imported == 1
    assert [(p.line, p.reason) for p in report.skipped] == [(2, "revoked on 2026-03-20, after this grant")]
    assert has_consent(db, company_id=company.id, phone="+79001112233", at=later)


def test_a_phone_that_opted_out_is_not_given_consent_by_an_import(db: Session) -> None:
    company = make_company(db)
    db.add(OptOut(company_id=company.id, phone="+79001112233", source="reply", created_at=NOW - timedelta(days=1)))
    db.flush()
    report = import_consents(db, company_id=company.id, rows=lines(GOOD_CSV), now=NOW)
    assert report.imported == 2
    assert [p.line for p in report.skipped] == [2]
    assert "opted out" in report.skipped[0].reason


def test_revocation_and_has_consent_over_time(db: Session) -> None:
    company = make_company(db)
    import_consents(db, company_id=company.id, rows=lines(GOOD_CSV), now=NOW)
    phone = "+79001112244"
    before_grant = datetime(2025, 6, 1, tzinfo=UTC)
    assert not has_consent(db, company_id=company.id, phone=phone, at=before_grant)
    assert has_consent(db, company_id=company.id, phone="8 900 111 22 44", at=NOW)
    assert revoke_consent(db, company_id=company.id, phone=phone, reason="x" * 10_000, now=NOW) == 1
    assert revoke_consent(db, company_id=company.id, phone=phone, reason="again", now=NOW) == 0
    # consent was in force until the revocation, and not after it
    assert has_consent(db, company_id=company.id, phone=phone, at=NOW - timedelta(seconds=1))
    assert not has_consent(db, company_id=company.id, phone=phone, at=NOW)
    revoked = next(r for r in consents(db, company.id) if r.phone == phone)
    assert len(revoked.revoked_reason or "") == 500
    # a different channel has no consent at all
    assert not has_consent(db, company_id=company.id, phone="+79001112233", at=NOW, channel="sms")


def test_consented_phones_and_the_selection_filter(db: Session) -> None:
    # given a salon that requires consent, with consent for one of two contacted clients
    company = make_company(db, settings={"consent_mode": "required"})
    import_consents(db, company_id=company.id, rows=lines(GOOD_CSV), now=NOW)
    with_consent = make_client(db, company.id, last_visit=NOW.date(), phone="+79001112233")
    without = make_client(db, company.id, last_visit=NOW.date(), phone="+79009998877")
    make_history(db, with_consent, sent_at=NOW)
    make_history(db, without, sent_at=NOW)
    # then the batch check and the set-based filter agree
    assert consented_phones(db, company_id=company.id, phones=["+79001112233", "+79009998877"], at=NOW) == {
        "+79001112233"
    }
    config = load_company(db, company_id=company.id)
    h = ReactivationHistory
    allowed = db.scalars(
        select(h.phone).where(h.company_id == company.id, consent_filter(config, phone=h.phone, at=NOW))
    ).all()
    assert allowed == ["+79001112233"]
    # and under 'assumed' the same filter lets every client through
    assumed = make_company(db)
    for phone in ("+79001112233", "+79009998877"):
        make_history(db, make_client(db, assumed.id, last_visit=NOW.date(), phone=phone), sent_at=NOW)
    assumed_config = load_company(db, company_id=assumed.id)
    everyone = db.scalar(
        select(func.count()).where(h.company_id == assumed.id, consent_filter(assumed_config, phone=h.phone, at=NOW))
    )
    assert everyone == 2


def test_two_companies_never_mix(db: Session) -> None:
    first, second = make_company(db), make_company(db)
    import_consents(db, company_id=first.id, rows=lines(GOOD_CSV), now=NOW)
    assert not has_consent(db, company_id=second.id, phone="+79001112233", at=NOW)
    assert revoke_consent(db, company_id=second.id, phone="+79001112233", reason="stop", now=NOW) == 0
    assert has_consent(db, company_id=first.id, phone="+79001112233", at=NOW)
    report = import_consents(db, company_id=second.id, rows=lines(GOOD_CSV), now=NOW)
    assert report.imported == 3


def test_bad_input(db: Session) -> None:
    company = make_company(db)
    with pytest.raises(UnknownCompany):
        import_consents(db, company_id=987654321, rows=lines(GOOD_CSV), now=NOW)
    with pytest.raises(InvalidPhone):
        revoke_consent(db, company_id=company.id, phone="12", reason="stop", now=NOW)
    with pytest.raises(InvalidPhone):
        has_consent(db, company_id=company.id, phone="not a phone", at=NOW)


def test_parse_is_pure_and_cuts_long_labels() -> None:
    grants, problems, count = parse_consent_csv(
        lines("\ufeffPhone, Granted_At ,SOURCE,text_version\n+79001112233,2025-06-01," + "я" * 1000 + ",v\x001\n"),
        now=NOW,
    )
    assert (count, problems) == (1, [])
    assert len(grants[0].source) == 200
    assert grants[0].text_version == "v 1"


def test_import_on_sqlite(sqlite_db: Session) -> None:
    company = make_company(sqlite_db)
    first = import_consents(sqlite_db, company_id=company.id, rows=lines(GOOD_CSV), now=NOW)
    again = import_consents(sqlite_db, company_id=company.id, rows=lines(GOOD_CSV), now=NOW)
    assert (first.imported, again.imported, again.unchanged) == (3, 0, 3)
    assert has_consent(sqlite_db, company_id=company.id, phone="+79001112233", at=NOW)
