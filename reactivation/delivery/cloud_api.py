"""Sending through the WhatsApp Business Cloud API (Meta): the step's approved marketing template, and what
Meta's error codes mean for the message."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx

from reactivation.core.logs import scrub
from reactivation.core.vocabulary import SkipReason, Step
from reactivation.delivery.contract import Clock, SendRequest, SendResult
from reactivation.delivery.errors import (
    PermanentSendError,
    SenderMissing,
    SenderRefused,
    SendError,
    SendOutcomeUnknown,
    SendSkipped,
    TemplateRejected,
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
    130472: SkipReason.EXPERIMENT,  # the number is part of a Meta experiment
}
# The approved template as configured does not fit (they break every message of the step, not one recipient's):
# 132000 parameter count, 132012 parameter format, 132005 text too long once filled, 131047 not accepted as a
# template outside the 24-hour window (with templates only, that is a configuration bug).
TEMPLATE_CODES = frozenset({132000, 132012, 132005, 131047})
# The sender (the phone number id in the URL) is not usable with this token: not registered, or not its own.
_CLOUD_SENDER_REFUSED = {
    10,  # permission denied for this phone number
    131045,  # incorrect certificate (phone number not registered)
    133010,  # phone number not registered
}
# Code 100 with this subcode: "Object with ID ... does not exist" (an unknown phone number id).
_UNKNOWN_OBJECT_SUBCODE = 33
# Account or configuration problems: every other message will fail the same way.
_CLOUD_ACCOUNT_WIDE = {
    0,  # AuthException
    3,  # capability or permissions
    190,  # access token expired
    368,  # temporarily blocked for policy violations
    131031,  # business account locked
    131042,  # business eligibility / payment issue
    132001,  # template does not exist in this language
    132015,  # template paused for low quality
    132016,  # template disabled
}
_PLACEHOLDER = re.compile(r"\{\{(\d+)\}\}")

# Template body parameters cannot hold new lines, tabs or runs of more than four spaces, nor be empty.
_PARAM_MAX = 100
NAME_FALLBACK = "Уважаемый клиент"
SERVICE_FALLBACK = "наши услуги"


def template_setting(step: Step | None) -> str:
    """The environment variable that names a step's approved template (its body text is the same name + _TEXT)."""
    return f"WHATSAPP_CLOUD_TEMPLATE_{step.message_type.upper()}" if step is not None else "WHATSAPP_CLOUD_TEMPLATE_*"


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def classify_cloud_api_error(
    status: int,
    body: Any,
    *,
    retry_after: float | None = None,
    provider: str = "cloud_api",
    step: Step | None = None,
    sender_id: str | None = None,
) -> SendError:
    """Turn a Cloud API error answer (HTTP status and JSON body) into one of the SendError outcomes; `step` and
    `sender_id` (the phone number id posted to) name what to fix when the template or the sender is refused."""
    error = body.get("error") if isinstance(body, dict) else None
    code: int | None = None
    subcode: int | None = None
    title = ""
    if isinstance(error, dict):
        code, subcode = _int(error.get("code")), _int(error.get("error_subcode"))
        details = error.get("error_data", {}).get("details") if isinstance(error.get("error_data"), dict) else None
        title = str(scrub(" ".join(str(details or error.get("message") or "").split())[:BODY_EXCERPT]))
    code_text = str(code) if code is not None else str(status)
    text = f"cloud_api: HTTP {status}, code {code_text}: {title}".rstrip(": ")
    common: dict[str, Any] = {"provider": provider, "code": code_text, "status_code": status}
    if code in TEMPLATE_CODES:
        return TemplateRejected(text, setting=template_setting(step), **common)
    if code in _CLOUD_SENDER_REFUSED or (code == 100 and subcode == _UNKNOWN_OBJECT_SUBCODE):
        return SenderRefused(text, sender_id=sender_id, **common)
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
class ApprovedMessage:
    """What a client receives through the Cloud API: the approved template's body with its parameters filled."""

    text: str
    template_name: str
    language: str


@dataclass(frozen=True)
class CloudTemplates:
    """Approved marketing templates per step, their language ("ru"), and each one's body as Meta approved it
    ({{1}}, {{2}}, {{3}}), so that what the client received can be written down; None: the body is not known."""

    gentle: str
    offer: str
    win_back: str
    language: str = "ru"
    texts: dict[Step, str] | None = None

    def name_for(self, step: Step) -> str:
        return {Step.GENTLE: self.gentle, Step.OFFER: self.offer, Step.WIN_BACK: self.win_back}[step]

    def render(self, step: Step, parameters: list[str]) -> str:
        """The step's approved body with {{n}} replaced by parameter n; ValueError when the body is unknown or
        names a parameter it is not given."""
        body = (self.texts or {}).get(step)
        if body is None:
            raise ValueError(f"{template_setting(step)}_TEXT: the approved template's body is not configured")

        def fill(match: re.Match[str]) -> str:
            index = int(match.group(1))
            if not 1 <= index <= len(parameters):
                raise ValueError(f"{template_setting(step)}_TEXT uses {{{{{index}}}}}, not a parameter of the step")
            return parameters[index - 1]

        return _PLACEHOLDER.sub(fill, body)


def template_parameters(
    step: Step,
    *,
    first_name: str | None,
    service_title: str | None,
    discount: int | None = None,
    name_fallback: str = NAME_FALLBACK,
    service_fallback: str = SERVICE_FALLBACK,
) -> list[str]:
    """The body variables: {{1}} first name, {{2}} service title, and {{3}} discount percent ("10") for steps
    with a discount (offer, win_back; `discount` None: the step's own). Gentle templates take two, the others three."""
    percent = step.discount_percent if discount is None else discount
    values = [_template_param(first_name, name_fallback), _template_param(service_title, service_fallback)]
    if step is not Step.GENTLE or percent:
        values.append(str(percent))
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
        api_version: str,
        token: str,
        templates: CloudTemplates,
        phone_number_id: str | None = None,
        timeout_seconds: float = 15.0,
        http_client: httpx.Client | None = None,
        clock: Clock | None = None,
        name_fallback: str = NAME_FALLBACK,
        service_fallback: str = SERVICE_FALLBACK,
    ) -> None:
        super().__init__(timeout_seconds=timeout_seconds, http_client=http_client, clock=clock)
        if not token:
            raise ValueError("WHATSAPP_CLOUD_API_TOKEN is required for the cloud_api provider")
        default = (phone_number_id or "").strip() or None
        if default is not None and not default.isdigit():
            raise ValueError("WHATSAPP_CLOUD_PHONE_NUMBER_ID must be the numeric phone number id")
        self._default_sender = default
        self._base = f"{base_url.rstrip('/')}/{api_version.strip('/')}"
        self._token = token
        self._templates = templates
        self._name_fallback = name_fallback
        self._service_fallback = service_fallback

    def sender_key(self, sender_id: str | None) -> str:
        """The phone number id a salon's messages leave from: its own, else WHATSAPP_CLOUD_PHONE_NUMBER_ID."""
        return f"{self.provider}:{self._phone_number_id(sender_id)}"

    def _phone_number_id(self, sender_id: str | None) -> str:
        chosen = (sender_id or "").strip() or self._default_sender
        if chosen is None:
            raise SenderMissing(
                "cloud_api: no sender_id in the company's settings and no WHATSAPP_CLOUD_PHONE_NUMBER_ID default"
            )
        if not chosen.isdigit():
            raise SenderMissing(f"cloud_api: sender_id {chosen!r} is not a phone number id (digits only)")
        return chosen

    def _url_for(self, request: SendRequest) -> str:
        return f"{self._base}/{self._phone_number_id(request.sender_id)}/messages"

    def approved_message(self, step: Step, *, first_name: str | None, service_title: str | None) -> ApprovedMessage:
        """What the client receives for this step: the approved body filled exactly as `payload` fills it."""
        parameters = self._parameters(step, first_name=first_name, service_title=service_title)
        return ApprovedMessage(
            text=self._templates.render(step, parameters),
            template_name=self._templates.name_for(step),
            language=self._templates.language,
        )

    def _parameters(
        self, step: Step, *, first_name: str | None, service_title: str | None, discount: int | None = None
    ) -> list[str]:
        return template_parameters(
            step,
            first_name=first_name,
            service_title=service_title,
            discount=discount,
            name_fallback=self._name_fallback,
            service_fallback=self._service_fallback,
        )

    def _request_parameters(self, request: SendRequest) -> list[str]:
        return self._parameters(
            request.step,
            first_name=request.first_name,
            service_title=request.service_title,
            discount=request.discount_percent,
        )

    def _sent_text(self, request: SendRequest) -> str | None:
        """The approved body filled with this request's parameters; None when the body is not configured."""
        if not self._templates.texts:
            return None
        return self._templates.render(request.step, self._request_parameters(request))

    def payload(self, request: SendRequest) -> dict[str, Any]:
        """The JSON body of the messages request for this request's step template."""
        parameters = [{"type": "text", "text": value} for value in self._request_parameters(request)]
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
                sent_text=self._sent_text(request),
            )
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise classify_cloud_api_error(
            status,
            body,
            retry_after=retry_after,
            step=request.step,
            sender_id=self._phone_number_id(request.sender_id),
        )
