"""The send contract: what makes a usable request, and the stable idempotency key."""

from __future__ import annotations

from typing import Any

import pytest

from reactivation.core.vocabulary import Step
from reactivation.delivery.contract import idempotency_key
from reactivation.delivery.errors import InvalidSendRequest
from tests.delivery.sample_requests import request


@pytest.mark.parametrize("phone", ["89001234567", "79001234567", "+7 900 123-45-67", "+0123456789", "", "+7900"])
def test_a_request_needs_an_e164_phone_and_says_so_without_printing_it(phone: str) -> None:
    with pytest.raises(InvalidSendRequest, match=r"history 1: phone .* is not E\.164") as caught:
        request(phone=phone)
    assert "9001234567" not in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"message": "   "}, "empty message"),
        ({"message": "я" * 4097}, "4097 characters"),
        ({"idempotency_key": ""}, "idempotency key"),
        ({"idempotency_key": "has spaces in it"}, "idempotency key"),
        ({"step": 7}, "unknown step 7"),
        ({"discount_percent": 150}, "not in 0-100"),
    ],
)
def test_a_request_with_unusable_data_is_refused(overrides: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidSendRequest, match=problem):
        request(**overrides)


def test_a_request_takes_the_steps_discount_unless_told_otherwise() -> None:
    assert request(step=2).step is Step.OFFER  # type: ignore[arg-type]
    assert request(step=Step.OFFER).discount == 10
    assert request(step=Step.WIN_BACK).discount == 20
    assert request(step=Step.WIN_BACK, discount_percent=15).discount == 15
    assert idempotency_key(962302, 4567) == "reactivation:962302:4567"
