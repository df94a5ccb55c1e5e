"""A company's sending stopped for a while: set once (one ERROR line), read by every worker, lapsing by itself."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
import redis

from reactivation.flow.sending_stops import STOP_SECONDS, SendingStop, sending_stopped, stop_sending
from reactivation.handover.keys import sending_stop_key

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def test_the_first_stop_logs_one_error_and_the_others_find_it(
    redis_client: redis.Redis, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    first = SendingStop.starting("template_rejected", "WHATSAPP_CLOUD_TEMPLATE_OFFER", now=NOW)
    second = SendingStop.starting("template_rejected", "WHATSAPP_CLOUD_TEMPLATE_GENTLE", now=NOW + timedelta(minutes=1))
    with caplog.at_level(logging.ERROR):
        assert stop_sending(redis_client, prefix=redis_prefix, company_id=5, stop=first, error="132000") == first
        # another worker hitting the same refusal meanwhile finds the stop in force and says nothing
        assert stop_sending(redis_client, prefix=redis_prefix, company_id=5, stop=second, error="132000") == first
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
    assert sending_stopped(redis_client, prefix=redis_prefix, company_id=5) == first
    assert first.until == NOW + timedelta(seconds=STOP_SECONDS)
    # it lapses by itself, and concerns that company only
    assert 0 < redis_client.ttl(sending_stop_key(redis_prefix, 5)) <= STOP_SECONDS
    assert sending_stopped(redis_client, prefix=redis_prefix, company_id=6) is None


def test_a_value_that_is_not_a_stop_stops_nothing(redis_client: redis.Redis, redis_prefix: str) -> None:
    redis_client.set(sending_stop_key(redis_prefix, 7), "{broken")
    assert sending_stopped(redis_client, prefix=redis_prefix, company_id=7) is None
