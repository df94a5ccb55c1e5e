"""Reading the providers' status webhooks and checking that a post comes from them (pure, no I/O)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import pytest

from reactivation.core.vocabulary import DeliveryStatus
from reactivation.delivery.webhooks import (
    MalformedReport,
    bearer_ok,
    gateway_report,
    meta_reports,
    meta_signature_ok,
)

SECRET = "app-secret"


def meta_body(*statuses: dict[str, object]) -> dict[str, object]:
    """Meta's webhook envelope around these `statuses[]` items."""
    value = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": "555"}, "statuses": list(statuses)}
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }


def test_a_failed_status_carries_its_code_time_and_callback_data() -> None:
    body = meta_body(
        {
            "id": "wamid.A",
            "status": "failed",
            "timestamp": "1764000000",
            "recipient_id": "79001234567",
            "biz_opaque_callback_data": "reactivation:962302:7",
            "errors": [{"code": 131049, "title": "healthy ecosystem engagement for +79001234567"}],
        },
        {"id": "wamid.B", "status": "read", "timestamp": 1764000100},
    )
    failed, read = meta_reports(body)
    assert (failed.provider, failed.message_id, failed.status) == ("cloud_api", "wamid.A", DeliveryStatus.FAILED)
    assert failed.at == datetime.fromtimestamp(1764000000, UTC)
    assert (failed.error_code, failed.callback_data) == ("131049", "reactivation:962302:7")
    assert failed.error_text is not None and "79001234567" not in failed.error_text
    assert (read.status, read.error_code) == (DeliveryStatus.READ, None)


def test_statuses_this_product_does_not_track_and_incoming_messages_are_no_reports() -> None:
    body = meta_body({"id": "wamid.A", "status": "deleted"})
    body["entry"][0]["changes"].append({"value": {"messages": [{"from": "7900", "text": {"body": "Да"}}]}})  # type: ignore[index]
    assert meta_reports(body) == []


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"object": "x"},
        {"entry": [{"changes": "nope"}]},
        {"entry": [{"changes": [{"value": 5}]}]},
        meta_body({"status": "delivered"}),
        meta_body({"id": "wamid.A"}),
        meta_body({"id": "wamid.A", "status": "delivered", "timestamp": "yesterday"}),
        meta_body({"id": "x" * 600, "status": "read"}),
    ],
)
def test_a_body_that_is_not_meta_s_report_is_malformed(body: object) -> None:
    with pytest.raises(MalformedReport):
        meta_reports(body)


def test_the_gateway_report_takes_the_code_from_its_error_text() -> None:
    report = gateway_report({"id": "gw-1", "status": "failed", "error": "131026: not on WhatsApp"})
    assert (report.provider, report.message_id, report.status, report.error_code) == (
        "gateway",
        "gw-1",
        DeliveryStatus.FAILED,
        "131026",
    )
    assert gateway_report({"id": 17, "status": "DELIVERED"}).message_id == "17"
    assert gateway_report({"id": "gw-1", "status": "failed", "error": "phone offline"}).error_code is None
    for bad in ({"status": "read"}, {"id": "gw-1", "status": "lost"}, {"id": True, "status": "read"}, "read"):
        with pytest.raises(MalformedReport):
            gateway_report(bad)


def test_only_the_app_secret_s_signature_of_the_raw_body_is_accepted() -> None:
    raw = b'{"entry": []}'
    good = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert meta_signature_ok(SECRET, raw, good)
    assert meta_signature_ok(SECRET, raw, good.upper().replace("SHA256=", "sha256="))
    assert not meta_signature_ok(SECRET, raw + b" ", good)
    assert not meta_signature_ok("another", raw, good)
    assert not meta_signature_ok(SECRET, raw, None)
    assert not meta_signature_ok(SECRET, raw, good.removeprefix("sha256="))
    # no secret configured: nothing can be verified, so nothing is accepted
    assert not meta_signature_ok(None, raw, good)


def test_the_gateway_s_bearer_token() -> None:
    assert bearer_ok("gw-hook", "Bearer gw-hook")
    assert bearer_ok("gw-hook", "bearer gw-hook")
    assert not bearer_ok("gw-hook", "Bearer other")
    assert not bearer_ok("gw-hook", "gw-hook")
    assert not bearer_ok("gw-hook", None)
    assert not bearer_ok(None, "Bearer ")
