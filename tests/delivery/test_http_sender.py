"""What the HTTP senders share: reading a provider's Retry-After."""

from __future__ import annotations

from datetime import timedelta

from reactivation.delivery.http_sender import parse_retry_after
from tests.delivery.sample_requests import NOW


def test_retry_after_takes_seconds_or_a_date_and_is_bounded() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("99999") == 3600.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    in_30s = (NOW + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after(in_30s, now=NOW) == 30.0
