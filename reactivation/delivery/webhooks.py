"""The providers' delivery-status webhooks as plain data: reading Meta's and the gateway's payloads into
`StatusReport`s, and checking that a post really comes from the provider. Pure: no I/O.

Meta (Cloud API) posts `{"object": "whatsapp_business_account", "entry": [{"changes": [{"value": {"statuses":
[{"id", "status", "timestamp", "recipient_id", "biz_opaque_callback_data", "errors": [{"code", "title"}]}]}}]}]}`,
signed with the app secret: `X-Hub-Signature-256: sha256=<HMAC-SHA256 of the raw body>`. The same endpoint also
receives incoming messages and other fields; only `statuses` are read here, everything else is acknowledged.

The gateway posts `{"id": <its message id>, "status": "delivered" | "read" | "failed", "error": "...",
"timestamp": <unix seconds, optional>}` with `Authorization: Bearer <WHATSAPP_GATEWAY_WEBHOOK_TOKEN>`; a failure's
code is the first number in `error` (a gateway in front of Meta passes Meta's, e.g. "131026 undeliverable").
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reactivation.core.logs import scrub
from reactivation.core.vocabulary import DeliveryStatus

_SIGNATURE_PREFIX = "sha256="
_CODE = re.compile(r"\b(\d{1,7})\b")
# Longest error text kept from a report (it is stored on the row and logged, phones masked).
MAX_ERROR_TEXT = 300
# A provider's message id longer than this is not one.
MAX_MESSAGE_ID = 512
# Statuses in one post: Meta batches up to 1000; more is not a real report.
MAX_STATUSES = 5000


class MalformedReport(ValueError):
    """The body is not a status report the provider would send; nothing is applied (answer 400)."""


@dataclass(frozen=True)
class StatusReport:
    """One provider report about one message: which (`provider`, `message_id`), what happened, when (the
    provider's instant; None when it gave none), and for a failure its code and text."""

    provider: str
    message_id: str
    status: DeliveryStatus
    at: datetime | None = None
    error_code: str | None = None
    error_text: str | None = None
    # Meta echoes the message's biz_opaque_callback_data: this product's idempotency key.
    callback_data: str | None = None


def meta_signature_ok(secret: str | None, raw_body: bytes, header: str | None) -> bool:
    """Whether `X-Hub-Signature-256` is the HMAC-SHA256 of the raw body with the app secret (constant time). No
    secret configured: nothing can be verified, so nothing is accepted."""
    if not secret or not header or not header.startswith(_SIGNATURE_PREFIX):
        return False
    expected = hmac.new(secret.encode("utf-8"), raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header.removeprefix(_SIGNATURE_PREFIX).strip().lower())


def bearer_ok(token: str | None, header: str | None) -> bool:
    """Whether `Authorization` is `Bearer <token>` (constant time); no token configured accepts nothing."""
    if not token or not header:
        return False
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def meta_reports(body: Any) -> list[StatusReport]:
    """The status reports in a Meta webhook body (possibly none); MalformedReport when it is not one."""
    if not isinstance(body, dict) or not isinstance(body.get("entry"), list):
        raise MalformedReport("expected an object with an `entry` list")
    reports: list[StatusReport] = []
    for entry in body["entry"]:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        if not isinstance(changes, list):
            raise MalformedReport("each entry needs a `changes` list")
        for change in changes:
            value = change.get("value") if isinstance(change, dict) else None
            if not isinstance(value, dict):
                raise MalformedReport("each change needs a `value` object")
            statuses = value.get("statuses", [])
            if not isinstance(statuses, list):
                raise MalformedReport("`statuses` must be a list")
            reports.extend(report for item in statuses if (report := _meta_status(item)) is not None)
            if len(reports) > MAX_STATUSES:
                raise MalformedReport(f"more than {MAX_STATUSES} statuses in one post")
    return reports


def _meta_status(item: Any) -> StatusReport | None:
    """One `statuses[]` item; None for a status this product does not track (e.g. "deleted", "played")."""
    if not isinstance(item, dict):
        raise MalformedReport("each status must be an object")
    message_id = _message_id(item.get("id"))
    status = _status(item.get("status"))
    if status is None:
        return None
    errors = item.get("errors")
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    code = first.get("code")
    callback = item.get("biz_opaque_callback_data")
    return StatusReport(
        provider="cloud_api",
        message_id=message_id,
        status=status,
        at=_timestamp(item.get("timestamp")),
        error_code=str(code) if isinstance(code, int | str) and str(code).strip() else None,
        error_text=_text(first.get("title") or first.get("message")),
        callback_data=callback if isinstance(callback, str) and callback else None,
    )


def gateway_report(body: Any) -> StatusReport:
    """The gateway's report; MalformedReport when the body is not one."""
    if not isinstance(body, dict):
        raise MalformedReport("expected a JSON object")
    status = _status(body.get("status"))
    if status is None:
        raise MalformedReport("`status` must be sent, delivered, read or failed")
    error = _text(body.get("error"))
    code = _CODE.search(error) if error else None
    return StatusReport(
        provider="gateway",
        message_id=_message_id(body.get("id")),
        status=status,
        at=_timestamp(body.get("timestamp")),
        error_code=code.group(1) if code else None,
        error_text=error,
    )


def _message_id(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        raise MalformedReport("a status needs the message `id`")
    text = str(value).strip()
    if len(text) > MAX_MESSAGE_ID:
        raise MalformedReport("message `id` too long")
    return text


def _status(value: Any) -> DeliveryStatus | None:
    if not isinstance(value, str):
        raise MalformedReport("a status needs its `status`")
    try:
        return DeliveryStatus(value.strip().lower())
    except ValueError:
        return None


def _timestamp(value: Any) -> datetime | None:
    """Unix seconds (a number or a string of digits) as an aware UTC instant; None when absent."""
    if value is None or value == "":
        return None
    try:
        seconds = int(str(value).strip())
        return datetime.fromtimestamp(seconds, UTC)
    except (ValueError, OverflowError, OSError):
        raise MalformedReport("`timestamp` must be unix seconds") from None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())[:MAX_ERROR_TEXT]
    return str(scrub(text)) or None
