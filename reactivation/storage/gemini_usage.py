"""What Gemini cost, per request and company (table gemini_requests): recorded by the batches, read by `stats` and
`campaign status`.

A batch serves several salons in one request: each company's row gets the company's items and its share of the
tokens, split by items (largest remainder, so that the shares add up to the request's total).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Float, cast, func, insert, select
from sqlalchemy.orm import Session

from reactivation.storage.models import GeminiRequest


@dataclass(frozen=True)
class RequestShare:
    """One company's (and run's) part of one request."""

    request_key: str
    company_id: int
    campaign_run_id: int | None
    requested_at: datetime
    model: str
    thinking: str
    items: int
    batch_items: int
    written: int
    prompt_tokens: int
    output_tokens: int
    thinking_tokens: int
    outcome: str
    finish_reason: str | None = None


def apportion(total: int, weights: Sequence[int]) -> list[int]:
    """`total` split in proportion to `weights`, in whole numbers that add up to `total` (largest remainder)."""
    whole = sum(weights)
    if whole <= 0:
        return [0 for _ in weights]
    exact = [total * weight / whole for weight in weights]
    shares = [int(value) for value in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: exact[i] - shares[i], reverse=True)
    for index in by_remainder[: total - sum(shares)]:
        shares[index] += 1
    return shares


def record(session: Session, shares: Sequence[RequestShare]) -> None:
    """Write the requests' shares (one statement)."""
    if shares:
        session.execute(insert(GeminiRequest), [share.__dict__ for share in shares])


@dataclass
class UsageSummary:
    """A company's Gemini use over a period or a run."""

    requests: int = 0  # requests that served it (a shared batch counts for each salon in it)
    request_share: float = 0.0  # its share of them, by items
    items: int = 0
    written: int = 0  # messages Gemini wrote (the rest went to templates or waited again)
    prompt_tokens: int = 0
    output_tokens: int = 0
    thinking_tokens: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens + self.thinking_tokens

    def per_message(self, tokens: int) -> float | None:
        return round(tokens / self.written, 1) if self.written else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "request_share": round(self.request_share, 2),
            "items": self.items,
            "messages": self.written,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "thinking_tokens": self.thinking_tokens,
            "tokens": self.tokens,
            "tokens_per_message": self.per_message(self.tokens),
            "thinking_tokens_per_message": self.per_message(self.thinking_tokens),
            "outcomes": dict(sorted(self.outcomes.items())),
        }


def usage_summary(
    session: Session,
    *,
    company_id: int,
    start: datetime | None = None,
    end: datetime | None = None,
    run_id: int | None = None,
) -> UsageSummary:
    """A company's requests and tokens, in [start, end) or for one campaign run."""
    g = GeminiRequest
    where = [g.company_id == company_id]
    if start is not None:
        where.append(g.requested_at >= start)
    if end is not None:
        where.append(g.requested_at < end)
    if run_id is not None:
        where.append(g.campaign_run_id == run_id)
    totals = session.execute(
        select(
            func.count(func.distinct(g.request_key)),
            func.sum(cast(g.items, Float) / g.batch_items),
            func.sum(g.items),
            func.sum(g.written),
            func.sum(g.prompt_tokens),
            func.sum(g.output_tokens),
            func.sum(g.thinking_tokens),
        ).where(*where)
    ).one()
    outcomes = session.execute(select(g.outcome, func.count()).where(*where).group_by(g.outcome)).all()
    requests, share, items, written, prompt, output, thinking = totals
    return UsageSummary(
        requests=int(requests or 0),
        request_share=float(share or 0.0),
        items=int(items or 0),
        written=int(written or 0),
        prompt_tokens=int(prompt or 0),
        output_tokens=int(output or 0),
        thinking_tokens=int(thinking or 0),
        outcomes={outcome: int(count) for outcome, count in outcomes},
    )
