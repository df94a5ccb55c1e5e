"""One client's message for one step: Gemini when it can, the template when it cannot, always valid.

What the pipeline's generate step calls. The first Gemini attempt needs a slot from the global limiter; when
there is none the caller learns how long to wait (`RateLimited`) and retries the task later instead of holding a
worker. After that, a Gemini outage never delays or stops sending: past the budget the template goes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from typing import Literal, Protocol

from reactivation.core.limiter import Limiter
from reactivation.core.vocabulary import Step
from reactivation.messaging.gemini import PROMPT_VERSION, GeminiWriter, NotWritten, PromptFacts
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
        """What the pipeline's generate step composes a contact's message from; `reactivation preview` the same."""
        return cls(
            company_name=company.name,
            client_name=client_name,
            # As the claim stores it on the row, so that a preview of a due client asks for the same message.
            service_title=history.cut(contact.last_service_name, history.MAX_SERVICE_NAME),
            step=Step(contact.step),
            client_id=contact.client_id,
            lapse_date=contact.last_visit_date,
            days_inactive=contact.inactive_days,
            interval_days=contact.interval_days,
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
    fallback_reason: str | None  # why Gemini was not used: no_key, rate_limited_budget, timeout, rejected:...
    first_name: str | None
    attempts: int = 0  # Gemini requests made for this message


@dataclass(frozen=True)
class RateLimited:
    """No Gemini slot for the first attempt: retry the task after `wait_seconds` (Celery countdown)."""

    wait_seconds: float


def compose_message(
    request: MessageRequest,
    *,
    writer: GeminiWriter | None,
    limiter: Limiter | None,
    defer_when_limited: bool = True,
) -> ComposedMessage | RateLimited:
    """The client's message: Gemini's if it writes a valid one within its budget, else the template.

    With `defer_when_limited` (the default) and no limiter slot for the first attempt, returns RateLimited; without
    it, the first attempt waits for a slot within the budget like every later one does.
    """
    name = parse_first_name(request.client_name)
    if writer is None:
        return _template(request, name, reason=NO_KEY)

    slot_taken = False
    if limiter is not None:
        slot = limiter.acquire()
        if slot.acquired:
            slot_taken = True
        elif defer_when_limited:
            return RateLimited(wait_seconds=slot.wait_seconds)

    facts = PromptFacts(
        step=request.step, first_name=name, service_title=request.service_title, company_name=request.company_name
    )
    outcome = writer.write(facts, limiter=limiter, slot_taken=slot_taken)
    if isinstance(outcome, NotWritten):
        log.info(
            "gemini not used, template instead",
            extra={"client_id": request.client_id, "reason": outcome.reason, "attempts": outcome.attempts},
        )
        return _template(request, name, reason=outcome.reason, attempts=outcome.attempts)
    # The writer validated it already; checked again here because nothing leaves this module unvalidated.
    check = validate_message(outcome.text, step=request.step, first_name=name, company_name=request.company_name)
    if not check.ok:
        return _template(request, name, reason=check.reason, attempts=outcome.attempts)
    return ComposedMessage(
        text=check.text,
        generator="gemini",
        variant=f"{request.step.message_type}.gemini.{PROMPT_VERSION}",
        model=outcome.model,
        fallback_reason=None,
        first_name=name,
        attempts=outcome.attempts,
    )


def template_message(request: MessageRequest, *, reason: str | None = None) -> ComposedMessage:
    """The client's template message (no Gemini at all), e.g. for previews and the Cloud API's own templates."""
    return _template(request, parse_first_name(request.client_name), reason=reason)


def _template(request: MessageRequest, name: str | None, *, reason: str | None, attempts: int = 0) -> ComposedMessage:
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
