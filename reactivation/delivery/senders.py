"""Sending one WhatsApp message: the gateway, the WhatsApp Business Cloud API, or an outbox file.

Every sender takes a `SendRequest` and either returns a `SendResult` or raises one of four exceptions, each
of which tells the caller exactly what it may do next:

- `TransientSendError`: calling again cannot double the message (the request never reached the provider, the
  provider refused it for now, or the gateway de-duplicates by idempotency key). Retry later; `retry_after`
  (seconds) is the provider's hint when it gave one. `maybe_delivered` marks the one case where it may have
  gone out (the gateway gave no answer): when retries run out, such a row is `unknown`; otherwise `failed`.
- `PermanentSendError`: not delivered and never will be as asked (bad number format, bad token, missing
  template...). Final: the row is `failed`. `affects_all_messages` says the cause is the account or the
  configuration, not this client, so every other message will fail the same way.
- `SendSkipped`: not delivered for a reason about the recipient that retrying cannot fix (Meta's per-user
  marketing limit, a number not on WhatsApp, a recipient who stopped marketing messages). Final: the row is
  `skipped` with `reason`. Never retried, so a limit does not turn into a retry storm.
- `SendOutcomeUnknown`: the provider may or may not have delivered it (a Cloud API request that timed out after
  it was sent, a 2xx answer without a message id). Never retried automatically: for marketing messages a lost
  message beats a doubled one. Final: the row is `unknown`.

`InvalidSendRequest` (a ValueError) is raised when building a request from unusable data; nothing is sent.

Phones are masked in every log line and error message; tokens are never logged.
"""

from __future__ import annotations

import email.utils
import fcntl
import json
import logging
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import httpx

from reactivation.core.logs import scrub
from reactivation.core.phones import mask_phone
from reactivation.core.settings import Settings
from reactivation.core.vocabulary import SkipReason, Step

log = logging.getLogger(__name__)

# WhatsApp's own limit for a text body; this product's messages are far shorter (vocabulary.MAX_MESSAGE_LENGTH).
MAX_TEXT_LENGTH = 4096
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")
# How much of an unexpected response body goes into an error message (phones in it are masked).
_BODY_EXCERPT = 200
# A provider's Retry-After is honoured up to this many seconds; longer hints are clamped.
_MAX_RETRY_AFTER = 3600.0

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --- the request, the result and the outcomes ---------------------------------------------------------------------


class InvalidSendRequest(ValueError):
    """The data cannot make a message (phone not E.164, empty text...); nothing was sent."""


def idempotency_key(company_id: int, history_id: int) -> str:
    """The stable key of one history row's message, the same on every retry: "reactivation:962302:4567"."""
    return f"reactivation:{int(company_id)}:{int(history_id)}"


@dataclass(frozen=True)
class SendRequest:
    """One message to one client. `phone` is E.164 ("+79001234567")."""

    company_id: int
    history_id: int
    phone: str
    message: str
    idempotency_key: str
    step: Step
    first_name: str | None = None
    service_title: str | None = None
    # None: the step's own discount (0 / 10 / 20).
    discount_percent: int | None = None
    # Which WhatsApp number the salon sends from (CompanySettings.sender_id); passed to the gateway when set.
    sender_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.phone, str) or not _E164.match(self.phone):
            raise InvalidSendRequest(f"history {self.history_id}: phone {mask_phone(self.phone)} is not E.164")
        if not isinstance(self.message, str) or not self.message.strip():
            raise InvalidSendRequest(f"history {self.history_id}: empty message")
        if len(self.message) > MAX_TEXT_LENGTH:
            raise InvalidSendRequest(
                f"history {self.history_id}: message is {len(self.message)} characters (max {MAX_TEXT_LENGTH})"
            )
        if not isinstance(self.idempotency_key, str) or not _IDEMPOTENCY_KEY.match(self.idempotency_key):
            raise InvalidSendRequest(
                f"history {self.history_id}: idempotency key must be 1-200 printable ASCII characters"
            )
        try:
            object.__setattr__(self, "step", Step(self.step))
        except ValueError:
            raise InvalidSendRequest(f"history {self.history_id}: unknown step {self.step!r}") from None
        if self.discount_percent is not None and not 0 <= self.discount_percent <= 100:
            raise InvalidSendRequest(f"history {self.history_id}: discount {self.discount_percent} not in 0-100")

    @property
    def discount(self) -> int:
        return self.step.discount_percent if self.discount_percent is None else self.discount_percent

    @property
    def masked_phone(self) -> str:
        return mask_phone(self.phone)


@dataclass(frozen=True)
class SendResult:
    """The provider accepted the message."""

    provider: str
    provider_message_id: str
    sent_at: datetime
    # The gateway recognised the idempotency key: this call repeated an earlier accepted one.
    duplicate: bool = False
    # cloud_api: the template the client actually received (the generated text is not sent there).
    template_name: str | None = None


class SendError(Exception):
    """Base of the outcomes other than success. `code` is the provider's error code (Meta's, or the HTTP status),
    `status_code` the HTTP status when there was an answer; str(error) is safe to store and log."""

    def __init__(self, message: str, *, provider: str, code: str | None = None, status_code: int | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        self.code = code
        self.status_code = status_code


class TransientSendError(SendError):
    """Retrying cannot double the message; retry after `retry_after` seconds if given.

    `maybe_delivered` is True when no answer came back (a gateway read timeout): the gateway's idempotency key
    makes the retry safe, but if retries run out the row should end `unknown`, not `failed`.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        code: str | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
        maybe_delivered: bool = False,
    ) -> None:
        super().__init__(message, provider=provider, code=code, status_code=status_code)
        self.retry_after = retry_after
        self.maybe_delivered = maybe_delivered


class PermanentSendError(SendError):
    """Not delivered and never will be as asked; final (`failed`)."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        code: str | None = None,
        status_code: int | None = None,
        affects_all_messages: bool = False,
    ) -> None:
        super().__init__(message, provider=provider, code=code, status_code=status_code)
        self.affects_all_messages = affects_all_messages


class SendSkipped(SendError):
    """Not delivered for a reason about the recipient; final (`skipped` with `reason`), never retried."""

    def __init__(
        self,
        reason: SkipReason,
        message: str,
        *,
        provider: str,
        code: str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message, provider=provider, code=code, status_code=status_code)
        self.reason = reason


class SendOutcomeUnknown(SendError):
    """The message may have been delivered; final (`unknown`), never retried automatically."""


class Sender(Protocol):
    """What the pipeline needs from a sender. Safe to share between threads, not across a fork: build one per
    process (after the worker forks) and close it when done, or use it as a context manager."""

    provider: str

    def send(self, request: SendRequest) -> SendResult: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


# --- HTTP helpers -------------------------------------------------------------------------------------------------

# Raised before any byte of the request reached the server: a retry cannot double the message.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Configuration mistakes in the URL: retrying cannot help.
_BAD_URL = (httpx.UnsupportedProtocol, httpx.InvalidURL)


def _http_client(timeout_seconds: float) -> httpx.Client:
    # trust_env=False: settings come from the Settings object only, not from proxy variables in the environment.
    return httpx.Client(
        timeout=httpx.Timeout(timeout_seconds),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": "reactivation/0.1"},
    )


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), clamped to an hour; None if absent."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or _utcnow())).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)


def _excerpt(response: httpx.Response) -> str:
    try:
        text = response.text
    except (UnicodeDecodeError, httpx.ResponseNotRead):
        return "<unreadable body>"
    text = " ".join(text.split())
    return str(scrub(text[:_BODY_EXCERPT]))


def _json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        return None


def _message_id(value: Any) -> str | None:
    """A usable provider message id: a non-blank string or an integer."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip() and len(value) <= 512:
        return value.strip()
    return None


class _HttpSender(ABC):
    provider = "http"

    def __init__(self, *, timeout_seconds: float, http_client: httpx.Client | None, clock: Clock | None) -> None:
        self._owns_client = http_client is None
        self._client = http_client or _http_client(timeout_seconds)
        self._clock = clock or _utcnow

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _post(self, request: SendRequest, url: str, **kwargs: Any) -> httpx.Response:
        """POST, translating transport failures into the outcomes above."""
        try:
            return self._client.post(url, **kwargs)
        except _NOT_SENT as exc:
            raise TransientSendError(
                f"{self.provider}: could not connect ({type(exc).__name__})", provider=self.provider
            ) from exc
        except _BAD_URL as exc:
            raise PermanentSendError(
                f"{self.provider}: bad URL ({type(exc).__name__})", provider=self.provider, affects_all_messages=True
            ) from exc
        except httpx.TransportError as exc:
            # The request may have reached the provider (a read timeout, a dropped connection).
            raise self._maybe_sent(request, exc) from exc

    @abstractmethod
    def _maybe_sent(self, request: SendRequest, exc: httpx.TransportError) -> SendError:
        """The outcome when the request may have reached the provider but no answer came back."""

    def _log_sent(self, request: SendRequest, result: SendResult) -> None:
        log.info(
            "whatsapp message sent",
            extra={
                "provider": self.provider,
                "company_id": request.company_id,
                "history_id": request.history_id,
                "phone": request.masked_phone,
                "step": int(request.step),
                "provider_message_id": result.provider_message_id,
                "duplicate": result.duplicate,
            },
        )

    def _log_failure(self, request: SendRequest, error: SendError) -> None:
        log.warning(
            "whatsapp message not sent",
            extra={
                "provider": self.provider,
                "company_id": request.company_id,
                "history_id": request.history_id,
                "phone": request.masked_phone,
                "outcome": type(error).__name__,
                "status_code": error.status_code,
                "error_code": error.code,
                "error": str(error),
            },
        )


# --- gateway ------------------------------------------------------------------------------------------------------


class GatewaySender(_HttpSender):
    """A Baileys-style gateway: POST {url}/send {"phone", "message", "idempotency_key"} -> 2xx {"id": ...}.

    The gateway is expected to de-duplicate by `idempotency_key` (the same key also goes in an
    `Idempotency-Key` header); that is what makes a retry after a read timeout safe, so timeouts and dropped
    connections are transient here. A 2xx answer without a usable id (an HTML page from a misrouted proxy, an
    empty body) is `SendOutcomeUnknown`: 2xx claims acceptance, so retrying could double the message, but without
    an id nothing proves it was sent, so it is not recorded as sent either. 409 with an id is a duplicate the
    gateway recognised: success, `duplicate=True`.
    """

    provider = "gateway"

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout_seconds: float = 15.0,
        http_client: httpx.Client | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(timeout_seconds=timeout_seconds, http_client=http_client, clock=clock)
        if not url or not url.startswith(("http://", "https://")):
            raise ValueError("WHATSAPP_GATEWAY_URL must be an http(s) URL")
        self._url = url.rstrip("/") + "/send"
        self._token = token

    def send(self, request: SendRequest) -> SendResult:
        """Send one message; returns the result or raises one of the SendError outcomes."""
        payload: dict[str, Any] = {
            "phone": request.phone,
            "message": request.message,
            "idempotency_key": request.idempotency_key,
        }
        if request.sender_id:
            payload["sender_id"] = request.sender_id
        headers = {"Idempotency-Key": request.idempotency_key}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            response = self._post(request, self._url, json=payload, headers=headers)
            result = self._interpret(response)
        except SendError as error:
            self._log_failure(request, error)
            raise
        self._log_sent(request, result)
        return result

    def _maybe_sent(self, request: SendRequest, exc: httpx.TransportError) -> SendError:
        return TransientSendError(
            f"gateway: no answer ({type(exc).__name__}); safe to retry with the same idempotency key",
            provider=self.provider,
            maybe_delivered=True,
        )

    def _interpret(self, response: httpx.Response) -> SendResult:
        status = response.status_code
        body = _json_body(response)
        message_id = _message_id(body.get("id")) if isinstance(body, dict) else None
        if 200 <= status < 300 or status == 409:
            if message_id is None:
                raise SendOutcomeUnknown(
                    f"gateway: HTTP {status} without a usable message id: {_excerpt(response)}",
                    provider=self.provider,
                    code=str(status),
                    status_code=status,
                )
            duplicate = status == 409 or (isinstance(body, dict) and body.get("duplicate") is True)
            return SendResult(
                provider=self.provider, provider_message_id=message_id, sent_at=self._clock(), duplicate=duplicate
            )
        text = f"gateway: HTTP {status}: {_excerpt(response)}"
        if status in (408, 425, 429) or status >= 500:
            raise TransientSendError(
                text,
                provider=self.provider,
                code=str(status),
                status_code=status,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        raise PermanentSendError(
            text,
            provider=self.provider,
            code=str(status),
            status_code=status,
            affects_all_messages=status in (401, 403, 404),
        )


# --- WhatsApp Business Cloud API ----------------------------------------------------------------------------------

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
        title = str(scrub(" ".join(str(details or error.get("message") or "").split())[:_BODY_EXCERPT]))
    code_text = str(code) if code is not None else str(status)
    text = f"cloud_api: HTTP {status}, code {code_text}: {title}".rstrip(": ")
    common: dict[str, Any] = {"provider": provider, "code": code_text, "status_code": status}
    if code in _CLOUD_SKIPS:
        return SendSkipped(_CLOUD_SKIPS[code], text, **common)
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


class CloudApiSender(_HttpSender):
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

    def send(self, request: SendRequest) -> SendResult:
        """Send the step's template; returns the result or raises one of the SendError outcomes."""
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            response = self._post(request, self._url, json=self.payload(request), headers=headers)
            result = self._interpret(request, response)
        except SendError as error:
            self._log_failure(request, error)
            raise
        self._log_sent(request, result)
        return result

    def _maybe_sent(self, request: SendRequest, exc: httpx.TransportError) -> SendError:
        return SendOutcomeUnknown(
            f"cloud_api: no answer after sending ({type(exc).__name__}); Meta may have delivered it",
            provider=self.provider,
        )

    def _interpret(self, request: SendRequest, response: httpx.Response) -> SendResult:
        status = response.status_code
        body = _json_body(response)
        if 200 <= status < 300:
            messages = body.get("messages") if isinstance(body, dict) else None
            first = messages[0] if isinstance(messages, list) and messages and isinstance(messages[0], dict) else {}
            message_id = _message_id(first.get("id"))
            if message_id is None:
                raise SendOutcomeUnknown(
                    f"cloud_api: HTTP {status} without a message id: {_excerpt(response)}",
                    provider=self.provider,
                    code=str(status),
                    status_code=status,
                )
            return SendResult(
                provider=self.provider,
                provider_message_id=message_id,
                sent_at=self._clock(),
                template_name=self._templates.name_for(request.step),
            )
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise classify_cloud_api_error(status, body, retry_after=retry_after)


# --- outbox -------------------------------------------------------------------------------------------------------


class OutboxSender:
    """Appends each message as one JSON line to a file: for the demo and dry runs; nothing leaves the machine.

    One `write` per line under an exclusive `flock`, so lines from many processes never interleave.
    """

    provider = "outbox"

    def __init__(self, path: Path | str, *, clock: Clock | None = None) -> None:
        self.path = Path(path)
        self._clock = clock or _utcnow

    def send(self, request: SendRequest) -> SendResult:
        """Append the message to the outbox; PermanentSendError if the file cannot be written."""
        sent_at = self._clock()
        record = {
            "phone": request.phone,
            "message": request.message,
            "history_id": request.history_id,
            "company_id": request.company_id,
            "step": int(request.step),
            "message_type": request.step.message_type,
            "idempotency_key": request.idempotency_key,
            "sender_id": request.sender_id,
            "sent_at": sent_at.astimezone(UTC).isoformat(),
        }
        data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _append_locked(self.path, data)
        except OSError as exc:
            error = PermanentSendError(
                f"outbox: cannot write {self.path} ({exc.strerror or type(exc).__name__})",
                provider=self.provider,
                affects_all_messages=True,
            )
            log.error("outbox write failed", extra={"path": str(self.path), "history_id": request.history_id})
            raise error from exc
        result = SendResult(
            provider=self.provider, provider_message_id=f"outbox:{request.idempotency_key}", sent_at=sent_at
        )
        log.info(
            "message written to the outbox",
            extra={
                "company_id": request.company_id,
                "history_id": request.history_id,
                "phone": request.masked_phone,
                "path": str(self.path),
            },
        )
        return result

    def close(self) -> None:
        """Nothing to release; here for the Sender protocol."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _append_locked(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    finally:
        os.close(fd)  # closing releases the lock


@dataclass
class OutboxReading:
    """What `read_outbox` found: the records, and how many lines were not valid JSON objects."""

    records: list[dict[str, Any]] = field(default_factory=list)
    bad_lines: int = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)


def read_outbox(path: Path | str) -> OutboxReading:
    """Every record in an outbox file, oldest first; a missing file is an empty outbox."""
    reading = OutboxReading()
    try:
        with Path(path).open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    reading.bad_lines += 1
                    continue
                if isinstance(record, dict):
                    reading.records.append(record)
                else:
                    reading.bad_lines += 1
    except FileNotFoundError:
        pass
    return reading


# --- choosing a sender --------------------------------------------------------------------------------------------


def make_sender(settings: Settings, *, http_client: httpx.Client | None = None, clock: Clock | None = None) -> Sender:
    """The sender WHATSAPP_PROVIDER names, configured from settings. One per process; close it at shutdown."""
    provider = settings.whatsapp_provider
    if provider == "outbox":
        return OutboxSender(settings.whatsapp_outbox_path, clock=clock)
    if provider == "gateway":
        if not settings.whatsapp_gateway_url:
            raise ValueError("WHATSAPP_GATEWAY_URL is required when WHATSAPP_PROVIDER=gateway")
        token = settings.whatsapp_gateway_token.get_secret_value() if settings.whatsapp_gateway_token else None
        return GatewaySender(
            settings.whatsapp_gateway_url,
            token=token or None,
            timeout_seconds=settings.whatsapp_timeout_seconds,
            http_client=http_client,
            clock=clock,
        )
    if provider == "cloud_api":
        token = settings.whatsapp_cloud_api_token.get_secret_value() if settings.whatsapp_cloud_api_token else ""
        return CloudApiSender(
            base_url=settings.whatsapp_cloud_api_url,
            token=token,
            phone_number_id=settings.whatsapp_cloud_phone_number_id or "",
            templates=CloudTemplates(
                gentle=settings.whatsapp_cloud_template_gentle,
                offer=settings.whatsapp_cloud_template_offer,
                win_back=settings.whatsapp_cloud_template_win_back,
                language=settings.whatsapp_cloud_template_language,
            ),
            timeout_seconds=settings.whatsapp_timeout_seconds,
            http_client=http_client,
            clock=clock,
        )
    raise ValueError(f"unknown WHATSAPP_PROVIDER {provider!r}; expected gateway, cloud_api or outbox")
