"""What a delivery failure does to its row (pure), and how reports are matched to rows across companies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from reactivation.core.vocabulary import DeliveryStatus, Status
from reactivation.delivery.webhooks import StatusReport
from reactivation.flow.delivery_status import MAX_RESCHEDULES, apply_report, failure_plan
from tests.factories import make_client, make_company
from tests.history_rows import make_history

FAILED_AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def test_the_marketing_limit_reschedules_the_step_a_day_later_at_most_twice() -> None:
    plans = [failure_plan(code="131049", text="limit", resend_count=n, failed_at=FAILED_AT) for n in range(3)]
    assert [p.status for p in plans] == [Status.GENERATED, Status.GENERATED, Status.FAILED]
    assert MAX_RESCHEDULES == 2
    first = plans[0].values
    assert (first["send_after"], first["resend_count"], first["context_saved_at"]) == (
        FAILED_AT + timedelta(hours=24),
        1,
        None,
    )
    assert plans[2].values["delivery_error_code"] == "131049" and "send_after" not in plans[2].values


def test_other_failures_end_the_row_with_their_code() -> None:
    for code in ("131026", "131000", None):
        plan = failure_plan(code=code, text=None, resend_count=0, failed_at=FAILED_AT)
        assert (plan.status, plan.values["delivery_error_code"], plan.values["failed_at"]) == (
            Status.FAILED,
            code,
            FAILED_AT,
        )
        assert plan.values["error"].startswith(f"delivery failed ({code or 'no code'})")


def test_a_report_finds_its_row_by_provider_and_message_id_in_whatever_company(db: Session) -> None:
    # Given two companies whose messages have ids that look alike at two providers
    rows = []
    for company_id, provider in ((71001, "gateway"), (71002, "cloud_api")):
        make_company(db, company_id)
        client = make_client(db, company_id, last_visit=FAILED_AT.date(), phone="+79001110000")
        rows.append(make_history(db, client, sent_at=FAILED_AT, provider=provider, provider_message_id="id-1"))
    # When the Cloud API reports the message delivered
    applied = apply_report(
        db,
        StatusReport("cloud_api", "id-1", DeliveryStatus.DELIVERED, at=FAILED_AT + timedelta(minutes=1)),
        now=FAILED_AT + timedelta(minutes=2),
    )
    db.expire_all()
    # Then only the Cloud API row of its company changed
    assert (applied.outcome, applied.company_id, applied.history_id) == ("applied", 71002, rows[1].id)
    assert rows[1].delivered_at == FAILED_AT + timedelta(minutes=1) and rows[0].delivered_at is None
    # And "sent" reports are acknowledged without a change
    sent = apply_report(db, StatusReport("gateway", "id-1", DeliveryStatus.SENT), now=FAILED_AT)
    assert sent.outcome == "ignored"
