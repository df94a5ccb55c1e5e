"""What a Gemini error means, from its HTTP status and google.rpc details: pure functions over plain data.

Every 429 is not the same 429. Its QuotaFailure violations name the quota (`quotaId`):
- per minute (`GenerateRequestsPerMinutePerProjectPerModel`, `GenerateContentInputTokensPerModelPerMinute`): the
  window frees within a minute; every worker waits the RetryInfo delay, then goes on;
- per day (`GenerateRequestsPerDayPerProjectPerModel`): nothing frees until midnight in America/Los_Angeles, when
  Google's quota day turns; until then the templates write;
- anything else (a spend cap, no QuotaFailure at all): unknown; backed off exponentially.

Some refusals hold for every request until someone changes a setting, so they open a circuit breaker instead of
being retried message by message: 400 FAILED_PRECONDITION (the Gemini API is not served in the caller's region, as in
Russia: hence GEMINI_BASE_URL), 401 and 403 (the key), 404 (the model). An outage opens it too: OUTAGE_FAILURES
requests in a row, across every worker, without an answer (timeouts, dropped connections, 5xx).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reactivation.core.errors import ExternalError, PermanentError, TransientError

MINUTE = "minute"
DAY = "day"
UNKNOWN = "unknown"

_QUOTA_FAILURE = "google.rpc.QuotaFailure"
_RETRY_INFO = "google.rpc.RetryInfo"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


# Requests in a row, across every worker, that got no answer before Gemini counts as down: about three batches'
# worth of retries (GEMINI_MAX_ATTEMPTS 4), so that a passing 503 never stops Gemini for everybody.
OUTAGE_FAILURES = 10


@dataclass(frozen=True)
class Cause:
    """Why every request fails, and the setting that fixes it: the breaker's fallback reason and its log line."""

    reason: str  # the history rows' fallback_reason while the breaker is open
    description: str
    setting: str | None  # None when no setting fixes it (an outage)

    @property
    def advice(self) -> str:
        """What the operator reads in the ERROR line and in `campaign status`."""
        return f"fix {self.setting}: {self.description}" if self.setting else self.description


REGION = Cause(
    "gemini_region",
    "the Gemini API refuses requests from this region (400 FAILED_PRECONDITION); route them through a proxy outside it",
    "GEMINI_BASE_URL",
)
KEY = Cause("gemini_key", "the API key is refused (401/403): wrong, revoked or without access", "GEMINI_API_KEY")
MODEL = Cause("gemini_model", "the model does not exist or is not served to this key (404)", "GEMINI_MODEL")
UNAVAILABLE = Cause(
    "gemini_unavailable",
    f"{OUTAGE_FAILURES} requests in a row got no answer (timeouts, dropped connections, 5xx): an outage at Google, "
    "or the network or the proxy (GEMINI_BASE_URL) in between",
    None,
)
CAUSES = {cause.reason: cause for cause in (REGION, KEY, MODEL, UNAVAILABLE)}


class QuotaExceeded(TransientError):
    """A 429, classified: `quota` is MINUTE, DAY or UNKNOWN; `quota_id` as Google named it."""

    def __init__(self, quota: str, *, quota_id: str | None, retry_after: float | None) -> None:
        super().__init__(f"rate_limited:{quota}", quota_id or "RESOURCE_EXHAUSTED", retry_after=retry_after)
        self.quota = quota
        self.quota_id = quota_id


class GeminiRefused(PermanentError):
    """A refusal that holds for every request until a setting changes (region, key, model)."""

    def __init__(self, cause: Cause, *, code: int, status: str | None) -> None:
        super().__init__(cause.reason, f"{code} {status or ''}".strip())
        self.cause = cause
        self.code = code


def _error_body(details: Any) -> Mapping[str, Any]:
    """The `error` object of an API error's JSON (the SDK keeps the whole body as `details`)."""
    if not isinstance(details, Mapping):
        return {}
    error = details.get("error", details)
    return error if isinstance(error, Mapping) else {}


def _rpc_details(details: Any, type_suffix: str) -> list[Mapping[str, Any]]:
    items = _error_body(details).get("details", [])
    if not isinstance(items, list):
        return []
    return [item for item in items if isinstance(item, Mapping) and str(item.get("@type", "")).endswith(type_suffix)]


def quota_ids(details: Any) -> list[str]:
    """Every QuotaFailure violation's quotaId, in the order Google listed them."""
    ids = []
    for failure in _rpc_details(details, _QUOTA_FAILURE):
        violations = failure.get("violations", [])
        for violation in violations if isinstance(violations, list) else []:
            if isinstance(violation, Mapping) and violation.get("quotaId"):
                ids.append(str(violation["quotaId"]))
    return ids


def classify_quota(details: Any) -> tuple[str, str | None]:
    """(MINUTE, DAY or UNKNOWN, the quotaId that decided). A per-day violation wins: waiting a minute cannot help."""
    ids = quota_ids(details)
    for quota_id in ids:
        if "PerDay" in quota_id:
            return DAY, quota_id
    for quota_id in ids:
        if "PerMinute" in quota_id:
            return MINUTE, quota_id
    return UNKNOWN, ids[0] if ids else None


def retry_delay(details: Any, headers: Mapping[str, str] | None = None) -> float | None:
    """The server's RetryInfo.retryDelay ("1.5s"), else a Retry-After header, in seconds."""
    for item in _rpc_details(details, _RETRY_INFO):
        match = _DURATION.match(str(item.get("retryDelay", "")))
        if match:
            return float(match[1])
    retry_after = headers.get("retry-after") if headers is not None else None
    if retry_after and retry_after.strip().isdigit():
        return float(retry_after)
    return None


def refusal_cause(code: int, status: str | None) -> Cause | None:
    """The breaker's cause for this error, or None when it is about this request only."""
    if code == 400 and status == "FAILED_PRECONDITION":
        return REGION
    if code in (401, 403):
        return KEY
    if code == 404:
        return MODEL
    return None


def translate(code: int, status: str | None, details: Any, headers: Mapping[str, str] | None = None) -> ExternalError:
    """The project's error for an HTTP error answer of the Gemini API."""
    if code == 429:
        quota, quota_id = classify_quota(details)
        return QuotaExceeded(quota, quota_id=quota_id, retry_after=retry_delay(details, headers))
    cause = refusal_cause(code, status)
    if cause is not None:
        return GeminiRefused(cause, code=code, status=status)
    if code == 408:
        return TransientError("timeout", str(status))
    if 400 <= code < 500:
        return PermanentError(f"client_error:{code}", str(status))
    return TransientError("server_error", f"{code} {status}")
