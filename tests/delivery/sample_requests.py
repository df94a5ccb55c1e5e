"""What the sender tests share: one fixed instant, one client's phone, and a valid request to vary."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from reactivation.core.vocabulary import Step
from reactivation.delivery.contract import SendRequest, idempotency_key

NOW = datetime(2025, 4, 15, 7, 0, tzinfo=UTC)
PHONE = "+79001234567"


def clock() -> datetime:
    """The senders' clock in these tests: always NOW."""
    return NOW


def request(history_id: int = 1, *, phone: str = PHONE, step: Step = Step.GENTLE, **overrides: Any) -> SendRequest:
    """A valid request for history row `history_id` of company 962302, with `overrides` applied."""
    values: dict[str, Any] = {
        "company_id": 962302,
        "history_id": history_id,
        "phone": phone,
        "message": "Мария, добрый день! Давно не виделись, ждём вас на маникюр.",
        "idempotency_key": idempotency_key(962302, history_id),
        "step": step,
        "first_name": "Мария",
        "service_title": "Маникюр с покрытием гель-лак",
    }
    values.update(overrides)
    return SendRequest(**values)
