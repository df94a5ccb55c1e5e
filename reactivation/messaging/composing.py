"""Clients' messages: Gemini's when it writes a valid one, the template when it cannot; always valid.

What the pipeline's batches and `reactivation preview` call. Several clients' messages come from one request
(GEMINI_BATCH_SIZE of them; see gemini_batch.py). A Gemini outage never delays or stops sending: past the batch's
budget, with the gate closed (a daily pause, an open breaker) or without a key, the templates write.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal, Protocol

from reactivation.core.vocabulary import Step
from reactivation.messaging.gemini import PROMPT_VERSION, PromptFacts
from reactivation.messaging.gemini_batch import BatchWriter, Fallback, RequestRecord, Requeue, Wrote
from reactivation.messaging.names import first_name as parse_first_name
from reactivation.messaging.templates import render_template
from reactivation.messaging.validation import validate_message
from reactivation.storage import history
from reactivation.storage.companies import CompanyConfig

log = logging.getLogger(__name__)

# Why Gemini was not used, when it has no attempt to show for it.
NO_KEY = "no_key"

Generator = Literal["gemini", "template"]


class Contact(Protocol):
    """What a message is about: a claimed history row, or a due client not yet claimed (the preview)."""

    @property
    def client_id(self) -> int: ...
    @property
    def step(self) -> int: ...
    @property
    def last_service_name(self) -> str | None: ...
    @property
    def last_visit_date(self) -> date: ...
    @property
    def inactive_days(self) -> int: ...
    @property
    def interval_days(self) -> int: ...


@dataclass(frozen=True)
class MessageRequest:
    """What a message may be built from. The raw name is reduced to a first name before anything leaves."""

    company_name: str
    client_name: str | None
    service_title: str | None
    step: Step
    client_id: int
    lapse_date: date  # the last visit this contact is about
    # How long the client has been away, and their own interval: a template says "давно" only when it is long.
    days_inactive: int | None = None
    interval_days: int | None = None

    @classmethod
    def for_contact(cls, company: CompanyConfig, contact: Contact, *, client_name: str | None) -> MessageRequest:
        """What the pipeline composes a contact's message from; `reactivation preview` the same."""
        return cls.of(company.name, contact, client_name=client_name)

    @classmethod
    def of(cls, company_name: str, contact: Contact, *, client_name: str | None) -> MessageRequest:
        """The same from the salon's name alone (a batch reads it with the row)."""
        return cls(
            company_name=company_name,
            client_name=client_name,
            # As the claim stores it on the row, so that a preview of a due client asks for the same message.
            service_title=history.cut(contact.last_service_name, history.MAX_SERVICE_NAME),
            step=Step(contact.step),
            client_id=contact.client_id,
            lapse_date=contact.last_visit_date,
            days_inactive=contact.inactive_days,
            interval_days=contact.interval_days,
        )

    @property
    def first_name(self) -> str | None:
        return parse_first_name(self.client_name)

    def facts(self) -> PromptFacts:
        """All a prompt may say about this message (152-FZ: the first name, never the raw name)."""
        return PromptFacts(
            step=self.step, first_name=self.first_name, service_title=self.service_title, company_name=self.company_name
        )

    def __repr__(self) -> str:  # the raw name is personal data; keep it out of logs and tracebacks
        return (
            f"MessageRequest(client_id={self.client_id}, step={self.step.message_type}, "
            f"lapse_date={self.lapse_date.isoformat()})"
        )


@dataclass(frozen=True)
class ComposedMessage:
    """A message ready to send, and how it came to be (for the history row)."""

    text: str
    generator: Generator
    variant: str  # "gentle.2.due" for a template, "gentle.gemini.v2" for Gemini's prompt
    model: str | None  # the Gemini model that wrote it; None for a template
    fallback_reason: str | None  # why Gemini was not used: no_key, gemini_daily_quota, timeout, rejected:...
    first_name: str | None
    attempts: int = 0  # Gemini requests made for this message


@dataclass(frozen=True)
class Composition:
    """Per request, in order, its message or a Requeue (it waits for a later batch); and every Gemini request made."""

    messages: list[ComposedMessage | Requeue]
    requests: list[RequestRecord]


def compose_messages(
    requests: Sequence[MessageRequest],
    *,
    writer: BatchWriter | None,
    now: datetime,
    slot_taken: bool = False,
    can_requeue: bool = False,
) -> Composition:
    """The messages of these requests, written by Gemini in one batch where it can, each else from its template.

    `slot_taken` when the caller holds the first request's limiter slot; `can_requeue` when an item may go back to
    wait for a later batch (the pipeline's queue) instead of waiting for a blocked quota itself.
    """
    if writer is None or not requests:
        return Composition([template_message(request, reason=NO_KEY) for request in requests], [])
    result = writer.write(
        [request.facts() for request in requests], now=now, slot_taken=slot_taken, can_requeue=can_requeue
    )
    messages: list[ComposedMessage | Requeue] = []
    for index, (request, outcome) in enumerate(zip(requests, result.outcomes, strict=True)):
        attempts = sum(index in record.positions for record in result.requests)
        if isinstance(outcome, Requeue):
            messages.append(outcome)
        elif isinstance(outcome, Fallback):
            log.info(
                "gemini not used, template instead",
                extra={"client_id": request.client_id, "reason": outcome.reason, "attempts": attempts},
            )
            messages.append(template_message(request, reason=outcome.reason, attempts=attempts))
        else:
            messages.append(_gemini(request, outcome, model=result.model, attempts=attempts))
    return Composition(messages, result.requests)


def compose_message(request: MessageRequest, *, writer: BatchWriter | None, now: datetime) -> ComposedMessage:
    """One client's message (a batch of one; it never waits in a queue)."""
    [message] = compose_messages([request], writer=writer, now=now).messages
    assert isinstance(message, ComposedMessage)  # without can_requeue nothing is requeued
    return message


def _gemini(request: MessageRequest, outcome: Wrote, *, model: str, attempts: int) -> ComposedMessage:
    name = request.first_name
    # The batch validated it already; checked again here because nothing leaves this module unvalidated.
    check = validate_message(outcome.text, step=request.step, first_name=name, company_name=request.company_name)
    if not check.ok:
        return template_message(request, reason=check.reason, attempts=attempts)
    return ComposedMessage(
        text=check.text,
        generator="gemini",
        variant=f"{request.step.message_type}.gemini.{PROMPT_VERSION}",
        model=model,
        fallback_reason=None,
        first_name=name,
        attempts=attempts,
    )


def template_message(request: MessageRequest, *, reason: str | None = None, attempts: int = 0) -> ComposedMessage:
    """The client's template message (no Gemini at all), e.g. for previews and the Cloud API's own templates."""
    name = request.first_name
    message = render_template(
        request.step,
        client_id=request.client_id,
        first_name=name,
        service_title=request.service_title,
        company_name=request.company_name,
        days_inactive=request.days_inactive,
        interval_days=request.interval_days,
    )
    return ComposedMessage(
        text=message.text,
        generator="template",
        variant=message.variant,
        model=None,
        fallback_reason=reason,
        first_name=name,
        attempts=attempts,
    )
