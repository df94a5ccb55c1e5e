"""Who the campaign would contact on a date, and why: the due selection as a salon operator reads it.

Writes nothing: no history row is claimed and nothing is sent. With messages, each client's text is composed
exactly as the pipeline's generate step composes it (Gemini within the global limit when a key is set, else the
template), so the operator sees what would go out.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime
from typing import Any, TextIO

from sqlalchemy.orm import Session

from reactivation.audience.selection import DueClient, stream_due
from reactivation.core.phones import mask_phone
from reactivation.core.vocabulary import Step
from reactivation.messaging.composing import ComposedMessage, MessageRequest, compose_messages
from reactivation.messaging.gemini_batch import BatchWriter
from reactivation.storage.companies import CompanyConfig
from reactivation.timing.waterfall import Source


@dataclass(frozen=True)
class PreviewRow:
    """One due client as the operator sees it; the phone only masked."""

    client_id: int
    name: str | None
    phone: str  # masked
    last_service: str | None
    last_visit: date
    days_inactive: int
    interval_days: int
    interval_source: str
    confidence: float
    step: int
    message_type: str
    due_date: date  # the date this step became due: last visit + step × interval + grace
    why: str
    message: str | None = None
    generator: str | None = None  # "gemini" or "template"
    variant: str | None = None
    fallback_reason: str | None = None  # why not Gemini, when a template was used

    def as_dict(self, *, with_messages: bool) -> dict[str, Any]:
        """Plain JSON values; the message columns only when messages were asked for."""
        values = asdict(self)
        values["last_visit"] = self.last_visit.isoformat()
        values["due_date"] = self.due_date.isoformat()
        if not with_messages:
            for key in MESSAGE_COLUMNS:
                del values[key]
        return values


MESSAGE_COLUMNS = ("message", "generator", "variant", "fallback_reason")


def preview_row(due: DueClient) -> PreviewRow:
    """A due client as a preview row, with the reason in words."""
    interval = due.interval
    return PreviewRow(
        client_id=due.client_id,
        name=due.name,
        phone=mask_phone(due.phone_e164 or due.phone),
        last_service=due.last_service_name,
        last_visit=due.last_visit_date,
        days_inactive=due.days_inactive,
        interval_days=interval.interval_days,
        interval_source=str(interval.source),
        confidence=round(float(interval.confidence), 2),
        step=int(due.step),
        message_type=due.step.message_type,
        due_date=due.due_date,
        why=why(due),
    )


_ORDINALS = {Step.GENTLE: "1st", Step.OFFER: "2nd", Step.WIN_BACK: "3rd"}


def interval_reason(source: Source, days: int, evidence: Mapping[str, Any]) -> str:
    """What the interval rests on, in a few words: "personal 24 d (5 visits)", "salon median 26 d (40 intervals)"."""
    if source is Source.PERSONAL:
        intervals = evidence.get("intervals")
        visits = f" ({intervals + 1} visits)" if isinstance(intervals, int) else ""
        return f"personal {days} d{visits}"
    if source is Source.SERVICE_AVERAGE:
        sample = evidence.get("sample_size")
        return f"salon median {days} d" + (f" ({sample} intervals)" if isinstance(sample, int) else "")
    if source is Source.INDUSTRY_STANDARD:
        category = evidence.get("category_name") or evidence.get("category")
        return f"industry {days} d" + (f" ({category})" if category else "")
    return f"universal {days} d"


def why(due: DueClient) -> str:
    """Why this client and why now: "personal 24 d (5 visits), 2nd step due since 2026-11-20"."""
    interval = due.interval
    reason = interval_reason(interval.source, interval.interval_days, interval.evidence)
    return f"{reason}, {_ORDINALS[due.step]} step due since {due.due_date.isoformat()}"


def with_messages(
    company: CompanyConfig,
    clients: Sequence[DueClient],
    *,
    writer: BatchWriter | None,
    batch_size: int,
    now: datetime,
) -> list[PreviewRow]:
    """Preview rows with the message each client would get, composed as the pipeline composes it.

    `batch_size` clients' messages come from one Gemini request, each request waiting for a slot of the global
    limiter within its budget (there is no task to retry), so a preview never exceeds the limit the workers share;
    past the budget the templates are shown, as the pipeline would send them.
    """
    rows: list[PreviewRow] = []
    for start in range(0, len(clients), batch_size):
        chunk = clients[start : start + batch_size]
        requests = [MessageRequest.for_contact(company, due, client_name=due.name) for due in chunk]
        composition = compose_messages(requests, writer=writer, now=now)
        for due, composed in zip(chunk, composition.messages, strict=True):
            # Without can_requeue every item comes back as a message.
            assert isinstance(composed, ComposedMessage)
            rows.append(_with_message(preview_row(due), composed))
    return rows


def _with_message(row: PreviewRow, composed: ComposedMessage) -> PreviewRow:
    return replace(
        row,
        message=composed.text,
        generator=composed.generator,
        variant=composed.variant,
        fallback_reason=composed.fallback_reason,
    )


def to_csv(rows: Sequence[PreviewRow], *, with_messages: bool) -> str:
    """The rows as CSV with a header (the JSON keys, in the same order)."""
    buffer = io.StringIO()
    write_csv(rows, buffer, with_messages=with_messages)
    return buffer.getvalue()


def write_csv(rows: Iterable[PreviewRow], out: TextIO, *, with_messages: bool) -> int:
    """Write the rows as CSV with a header as they come (a stream of any length); how many."""
    columns = [name for name in PreviewRow.__dataclass_fields__ if with_messages or name not in MESSAGE_COLUMNS]
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow(row.as_dict(with_messages=with_messages))
        count += 1
    return count


def write_json(rows: Iterable[PreviewRow], out: TextIO, *, with_messages: bool) -> int:
    """Write the rows as one JSON array as they come, laid out as `json.dumps(rows, indent=2)` would; how many."""
    count = 0
    for row in rows:
        item = json.dumps(row.as_dict(with_messages=with_messages), ensure_ascii=False, indent=2)
        out.write(("[\n  " if count == 0 else ",\n  ") + item.replace("\n", "\n  "))
        count += 1
    out.write("[]\n" if count == 0 else "\n]\n")
    return count


def stream_preview(session: Session, *, company_id: int, today: date) -> Iterator[PreviewRow]:
    """Every due client as a preview row, straight from the query (see `selection.stream_due`): the kept interval
    and step, the phone masked from its stored key."""
    for due in stream_due(session, company_id=company_id, today=today):
        yield preview_row(due)
