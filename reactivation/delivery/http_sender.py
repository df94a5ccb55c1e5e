"""What the two HTTP senders (gateway, Cloud API) share: one httpx client, transport failures translated into the
send outcomes, reading the provider's answer, and their log lines (phones masked, tokens never logged)."""

from __future__ import annotations

import email.utils
import logging
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

from reactivation.core.logs import scrub
from reactivation.delivery.contract import Clock, SenderBase, SendRequest, SendResult, utcnow
from reactivation.delivery.errors import PermanentSendError, SendError, TransientSendError

log = logging.getLogger(__name__)

_Outcome = TypeVar("_Outcome", bound=SendError)

# How much of an unexpected response body goes into an error message (phones in it are masked).
BODY_EXCERPT = 200
# A provider's Retry-After is honoured up to this many seconds; longer hints are clamped.
_MAX_RETRY_AFTER = 3600.0

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
        seconds = (when - (now or utcnow())).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)


def body_excerpt(response: httpx.Response) -> str:
    """The start of an answer's body on one line, phones masked, for an error message."""
    try:
        text = response.text
    except (UnicodeDecodeError, httpx.ResponseNotRead):
        return "<unreadable body>"
    text = " ".join(text.split())
    return str(scrub(text[:BODY_EXCERPT]))


def json_body(response: httpx.Response) -> Any:
    """The answer's JSON, or None when it has none."""
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        return None


def usable_message_id(value: Any) -> str | None:
    """A usable provider message id: a non-blank string or an integer."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip() and len(value) <= 512:
        return value.strip()
    return None


class HttpSender(SenderBase, ABC):
    """A sender that POSTs to a provider; subclasses build the request and read the answer."""

    provider = "http"
    # Where the messages are POSTed; set by each subclass from its settings (or chosen per request: `_url_for`).
    _url: str

    def __init__(self, *, timeout_seconds: float, http_client: httpx.Client | None, clock: Clock | None) -> None:
        self._owns_client = http_client is None
        self._client = http_client or _http_client(timeout_seconds)
        self._clock = clock or utcnow

    def close(self) -> None:
        """Close the HTTP client, unless it was passed in (then its owner closes it)."""
        if self._owns_client:
            self._client.close()

    def send(self, request: SendRequest) -> SendResult:
        """Send one message; returns the result or raises one of the SendError outcomes."""
        try:
            response = self._post(request, json=self.payload(request), headers=self._headers(request))
            result = self._interpret(request, response)
        except SendError as error:
            self._log_failure(request, error)
            raise
        self._log_sent(request, result)
        return result

    @abstractmethod
    def payload(self, request: SendRequest) -> dict[str, Any]:
        """The JSON body of the request."""

    @abstractmethod
    def _headers(self, request: SendRequest) -> dict[str, str]:
        """The request's headers (authorization, idempotency)."""

    @abstractmethod
    def _interpret(self, request: SendRequest, response: httpx.Response) -> SendResult:
        """The result of an answer, or the SendError outcome it means."""

    def _post(self, request: SendRequest, **kwargs: Any) -> httpx.Response:
        """POST to the provider, translating transport failures into the outcomes of `reactivation.delivery.errors`."""
        try:
            return self._client.post(self._url_for(request), **kwargs)
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

    def _url_for(self, request: SendRequest) -> str:
        """Where this request is POSTed."""
        return self._url

    @abstractmethod
    def _maybe_sent(self, request: SendRequest, exc: httpx.TransportError) -> SendError:
        """The outcome when the request may have reached the provider but no answer came back."""

    def _answer_error(self, outcome: type[_Outcome], text: str, status: int, **fields: Any) -> _Outcome:
        """The outcome of an HTTP answer: the provider's code is the HTTP status."""
        return outcome(text, provider=self.provider, code=str(status), status_code=status, **fields)

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
