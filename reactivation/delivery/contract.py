"""The send contract: one message to one client (`SendRequest`), the provider's acceptance (`SendResult`), and what
the pipeline needs from every sender (`Sender`).

A sender takes a `SendRequest` and either returns a `SendResult` or raises one of the outcomes in
`reactivation.delivery.errors`. The senders: `gateway`, `cloud_api` and `outbox`; `factory.make_sender` picks one
from the settings. Phones are masked in every log line and error message; tokens are never logged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Protocol, Self

from reactivation.core.phones import mask_phone
from reactivation.core.vocabulary import Step
from reactivation.delivery.errors import InvalidSendRequest

# WhatsApp's own limit for a text body; this product's messages are far shorter (steps.MAX_MESSAGE_LENGTH).
MAX_TEXT_LENGTH = 4096
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The senders' default clock: the current instant in UTC."""
    return datetime.now(UTC)


def idempotency_key(company_id: int, history_id: int, resend: int = 0) -> str:
    """The stable key of one history row's message, the same on every retry: "reactivation:962302:4567". A message
    scheduled again after a delivery failure is a new message: "reactivation:962302:4567:r1"."""
    key = f"reactivation:{int(company_id)}:{int(history_id)}"
    return f"{key}:r{int(resend)}" if resend else key


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
    # Which WhatsApp number the salon sends from (CompanySettings.sender_id); None: the provider's default sender.
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
    # cloud_api: the template the client actually received (the generated text is not sent there), and its body
    # filled with the parameters that were sent (None when the body is not configured).
    template_name: str | None = None
    sent_text: str | None = None


class Sender(Protocol):
    """What the pipeline needs from a sender. Safe to share between threads, not across a fork: build one per
    process (after the worker forks) and close it when done, or use it as a context manager."""

    provider: str
    # The provider de-duplicates by idempotency key: a message whose outcome is unknown may be sent again.
    idempotent: bool

    def send(self, request: SendRequest) -> SendResult: ...

    def sender_key(self, sender_id: str | None) -> str: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class SenderBase:
    """What the senders share besides `send`: used as a context manager, they close on leaving it."""

    provider = "base"
    idempotent = False

    def sender_key(self, sender_id: str | None) -> str:
        """The number a message of a salon with this sender_id leaves from, as the rate limit counts it:
        "gateway:salon-2", or the provider's default sender. SenderMissing when there is none."""
        return f"{self.provider}:{sender_id or 'default'}"

    def close(self) -> None:
        """Release what the sender holds; nothing by default."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
