"""What a Gemini error means, from real-looking error bodies: the quota class of a 429, its delay, and the refusals
that open the breaker."""

from __future__ import annotations

from typing import Any

import pytest

from reactivation.core.errors import PermanentError, TransientError
from reactivation.messaging.gemini_errors import (
    DAY,
    KEY,
    MINUTE,
    MODEL,
    REGION,
    UNKNOWN,
    GeminiRefused,
    QuotaExceeded,
    classify_quota,
    quota_ids,
    refusal_cause,
    retry_delay,
    translate,
)


def body(*violations: dict[str, Any], delay: str | None = None) -> dict[str, Any]:
    details: list[dict[str, Any]] = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": list(violations)},
        {"@type": "type.googleapis.com/google.rpc.Help", "links": [{"url": "https://ai.google.dev/"}]},
    ]
    if delay is not None:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay})
    return {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": details}}


PER_DAY = {"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier", "quotaValue": "250"}
PER_MINUTE = {"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "quotaValue": "10"}
TOKENS_PER_MINUTE = {"quotaId": "GenerateContentInputTokensPerModelPerMinute-FreeTier", "quotaValue": "250000"}


@pytest.mark.parametrize(
    ("details", "expected"),
    [
        (body(PER_MINUTE, delay="15s"), (MINUTE, PER_MINUTE["quotaId"])),
        (body(TOKENS_PER_MINUTE, delay="26s"), (MINUTE, TOKENS_PER_MINUTE["quotaId"])),
        (body(PER_DAY, delay="47s"), (DAY, PER_DAY["quotaId"])),
        # Google lists every quota it hit: a per-day one among them decides, waiting a minute would not help
        (body(PER_MINUTE, TOKENS_PER_MINUTE, PER_DAY), (DAY, PER_DAY["quotaId"])),
        (body({"quotaMetric": "generate_content_free_tier_requests"}), (UNKNOWN, None)),
        (body({"quotaId": "ProjectSpendCap"}), (UNKNOWN, "ProjectSpendCap")),
        ({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}}, (UNKNOWN, None)),
        ("not a dict", (UNKNOWN, None)),
        ({"error": {"details": "nonsense"}}, (UNKNOWN, None)),
    ],
)
def test_a_429_is_per_minute_per_day_or_unknown(details: Any, expected: tuple[str, str | None]) -> None:
    assert classify_quota(details) == expected


def test_quota_ids_keep_googles_order_and_skip_malformed_violations() -> None:
    details = body(PER_MINUTE, {"quotaId": ""}, "junk", PER_DAY)  # type: ignore[arg-type]
    assert quota_ids(details) == [PER_MINUTE["quotaId"], PER_DAY["quotaId"]]


@pytest.mark.parametrize(
    ("details", "headers", "expected"),
    [
        (body(PER_MINUTE, delay="1.5s"), None, 1.5),
        (body(PER_MINUTE, delay="26s"), {"retry-after": "3"}, 26.0),
        (body(PER_MINUTE), {"retry-after": "3"}, 3.0),
        (body(PER_MINUTE, delay="soon"), {"retry-after": "later"}, None),
        (body(PER_MINUTE), None, None),
    ],
)
def test_the_retry_delay_comes_from_retry_info_else_the_header(
    details: Any, headers: dict[str, str] | None, expected: float | None
) -> None:
    assert retry_delay(details, headers) == expected


@pytest.mark.parametrize(
    ("code", "status", "cause"),
    [
        (400, "FAILED_PRECONDITION", REGION),
        (400, "INVALID_ARGUMENT", None),
        (401, "UNAUTHENTICATED", KEY),
        (403, "PERMISSION_DENIED", KEY),
        (404, "NOT_FOUND", MODEL),
        (429, "RESOURCE_EXHAUSTED", None),
        (500, "INTERNAL", None),
    ],
)
def test_refusals_that_hold_for_every_request_have_a_cause(code: int, status: str, cause: object) -> None:
    assert refusal_cause(code, status) is cause


def test_each_cause_names_the_setting_that_fixes_it() -> None:
    assert (REGION.setting, KEY.setting, MODEL.setting) == ("GEMINI_BASE_URL", "GEMINI_API_KEY", "GEMINI_MODEL")
    assert {REGION.reason, KEY.reason, MODEL.reason} == {"gemini_region", "gemini_key", "gemini_model"}


@pytest.mark.parametrize(
    ("code", "status", "details", "error_type", "kind"),
    [
        (429, "RESOURCE_EXHAUSTED", body(PER_DAY), QuotaExceeded, "rate_limited:day"),
        (403, "PERMISSION_DENIED", {}, GeminiRefused, "gemini_key"),
        (408, "DEADLINE_EXCEEDED", {}, TransientError, "timeout"),
        (400, "INVALID_ARGUMENT", {}, PermanentError, "client_error:400"),
        (503, "UNAVAILABLE", {}, TransientError, "server_error"),
    ],
)
def test_translate_gives_the_projects_error(
    code: int, status: str, details: Any, error_type: type[Exception], kind: str
) -> None:
    error = translate(code, status, details)
    assert type(error) is error_type
    assert error.kind == kind
