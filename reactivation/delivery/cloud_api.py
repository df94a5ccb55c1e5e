"""Sending through the WhatsApp Business Cloud API (Meta): the step's approved marketing template, and what
Meta's error codes mean for the message."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from reactivation.core.logs import scrub
from reactivation.core.vocabulary import SkipReason, Step
from reactivation.delivery.contract import Clock, SendRequest, SendResult
from reactivation.delivery.errors import (
    PermanentSendError,
    SendError,
    SendOutcomeUnknown,
    SendSkipped,
    TransientSendError,
)
from reactivation.delivery.http_sender import (
    BODY_EXCERPT,
    HttpSender,
    body_excerpt,
    json_body,
    parse_retry_after,
    usable_message_id,
)

# Meta's error codes (https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes).
# Throttling and temporary service errors: the request was refused, retry later.
_CLOUD_TRANSIENT = {
    1: "API unknown error",
    2: "API service temporarily unavailable",
    4: "application rate limit",
    80007: "WhatsApp Business Account rate limit",
    130429: "Cloud API throughput limit",
    131000: "something went wrong",
    131016: "service unavailable",
    131056: "business/consumer pair rate limit",
    131057: "business account in maintenance mode",
    133004: "server temporarily unavailable",
}
# Meta allows about one message every 6 seconds to the same user (pair rate limit).
_PAIR_RATE_RETRY_AFTER = 6.0
# About this recipient: skip with a reason, never retry.
_CLOUD_SKIPS = {
    131049: SkipReason.MARKETING_LIMIT,  # per-user marketing template limit ("healthy ecosystem engagement")
    131026: SkipReason.UNDELIVERABLE,  # not on WhatsApp, old app, terms not accepted
    131050: SkipReason.MARKETING_OPT_OUT,  # the user stopped marketing messages from this business
    131047: SkipReason.REENGAGEMENT_REQUIRED,  # outside the 24-hour window and not accepted as a template
    130472: SkipReason.EXPERIMENT,  # the number is part of a Meta experiment
}
# Account or configuration problems: every other message will fail the same way.
_CLOUD_ACCOUNT_WIDE = {
    0,  # AuthException
    3,  # capability or permissions
    10,  # permission denied
    190,  # access token expired
    368,  # temporarily blocked for policy violations
    131031,  # business account locked
    131042,  # business eligibility / payment issue
    131045,  # incorrect certificate (phone number not registered)
    132001,  # template does not exist in this language
    132015,  # template paused for low quality
    132016,  # template disabled
    133010,  # phone number not registered
}

# Template body parameters cannot hold new lines, tabs or runs of more than four spaces, nor be empty.
_PARAM_MAX = 100
NAME_FALLBACK = "Уважаемый клиент"
SERVICE_FALLBACK = "наши услуги"


def classify_cloud_api_error(
    status: int, body: Any, *, retry_after: float | None = None, provider: str = "cloud_api"
) -> SendError:
    """Turn a Cloud API error answer (HTTP status and JSON body) into one of the SendError outcomes."""
    error = body.get("error") if isinstance(body, dict) else None
    code: int | None = None
    title = ""
    if isinstance(error, dict):
        try:
            code = int(error.get("code"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            code = None
        details = error.get("error_data", {}).get("details") if isinstance(error.get("error_data"), dict) else None
        title = str(scrub(" ".join(str(details or error.get("message") or "").split())[:BODY_EXCERPT]))
    code_text = str(code) if code is not None else str(status)
    text = f"cloud_api: HTTP {status}, code {code_text}: {title}".rstrip(": ")
    common: dict[str, Any] = {"provider": provider, "code": code_text, "status_code": status}
    if code in _CLOUD_SKIPS:
        return SendSkipped(text, reason=_CLOUD_SKIPS[code], **common)
    if code in _CLOUD_TRANSIENT:
        hint = retry_after if retry_after is not None else (_PAIR_RATE_RETRY_AFTER if code == 131056 else None)
        return TransientSendError(text, retry_after=hint, **common)
    if code is not None and (code in _CLOUD_ACCOUNT_WIDE or 200 <= code <= 299):
        return PermanentSendError(text, affects_all_messages=True, **common)
    if status in (408, 429) or status >= 500:
        # No code we know, and Meta's side refused or failed to take the request.
        return TransientSendError(text, retry_after=retry_after, **common)
    return PermanentSendError(text, affects_all_messages=status in (401, 403), **common)


def _template_param(value: str | None, fallback: str) -> str:
    text = " ".join((value or "").split())[:_PARAM_MAX].strip()
    return text or fallback


@dataclass(frozen=True)
class CloudTemplates:
    """Approved marketing templates per step, and their language ("ru")."""

    gentle: str
    offer: str
    win_back: str
    language: str = "ru"

    def name_for(self, step: Step) -> str:
        return {Step.GENTLE: self.gentle, Step.OFFER: self.offer, Step.WIN_BACK: self.win_back}[step]


def template_parameters(
    request: SendRequest, *, name_fallback: str = NAME_FALLBACK, service_fallback: str = SERVICE_FALLBACK
) -> list[str]:
    """The body variables: {{1}} first name, {{2}} service title, and {{3}} discount percent ("10") for steps
    with a discount (offer, win_back). Gentle templates take two variables, the others three."""
    values = [
        _template_param(request.first_name, name_fallback),
        _template_param(request.service_title, service_fallback),
    ]
    if request.step is not Step.GENTLE or request.discount:
        values.append(str(request.discount))
    return values


class CloudApiSender(HttpSender):
    """WhatsApp Business Cloud API: a business-initiated message outside the 24-hour customer window must be an
    approved marketing template, so this sends the step's template with the client's name, service and discount
    (the generated free text is not sent). Meta has no idempotency key, so a request that may have reached it (a
    read timeout, a dropped connection) is `SendOutcomeUnknown`; the idempotency key travels as
    `biz_opaque_callback_data` so that webhooks can be matched to the row.
    """

    provider = "cloud_api"

    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        phone_number_id: str,
        templates: CloudTemplates,
        timeout_seconds: float = 15.0,
        http_client: httpx.Client | None = None,
        clock: Clock | None = None,
        name_fallback: str = NAME_FALLBACK,
        service_fallback: str = SERVICE_FALLBACK,
    ) -> None:
        super().__init__(timeout_seconds=timeout_seconds, http_client=http_client, clock=clock)
        if not token:
            raise ValueError("WHATSAPP_CLOUD_API_TOKEN is required for the cloud_api provider")
        if not phone_number_id or not phone_number_id.strip().isdigit():
            raise ValueError("WHATSAPP_CLOUD_PHONE_NUMBER_ID must be the numeric phone number id")
        self._url = f"{base_url.rstrip('/')}/{phone_number_id.strip()}/messages"
        self._token = token
        self._templates = templates
        self._name_fallback = name_fallback
        self._service_fallback = service_fallback

    def payload(self, request: SendRequest) -> dict[str, Any]:
        """The JSON body of the messages request for this request's step template."""
        parameters = [
            {"type": "text", "text": value}
            for value in template_parameters(
                request, name_fallback=self._name_fallback, service_fallback=self._service_fallback
            )
        ]
        return {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": request.phone,
            "type": "template",
            "template": {
                "name": self._templates.name_for(request.step),
                "language": {"code": self._templates.language},
                "components": [{"type": "body", "parameters": parameters}],
            },
            "biz_opaque_callback_data": request.idempotency_key,
        }

    def _headers(self, request: SendRequest) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def _maybe_sent(self, request: SendRequest, exc: httpx.TransportError) -> SendError:
        return SendOutcomeUnknown(
            f"cloud_api: no answer after sending ({type(exc).__name__}); Meta may have delivered it",
            provider=self.provider,
        )

    def _interpret(self, request: SendRequest, response: httpx.Response) -> SendResult:
        status = response.status_code
        body = json_body(response)
        if 200 <= status < 300:
            messages = body.get("messages") if isinstance(body, dict) else None
            first = messages[0] if isinstance(messages, list) and messages and isinstance(messages[0], dict) else {}
            message_id = usable_message_id(first.get("id"))
            if message_id is None:
                raise self._answer_error(
                    SendOutcomeUnknown,
                    f"cloud_api: HTTP {status} without a message id: {body_excerpt(response)}",
                    status,
                )
            return SendResult(
                provider=self.provider,
                provider_message_id=message_id,
                sent_at=self._clock(),
                template_name=self._templates.name_for(request.step),
            )
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise classify_cloud_api_error(status, body, retry_after=retry_after)
