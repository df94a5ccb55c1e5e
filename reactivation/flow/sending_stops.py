"""A company's sending stopped for a while, because every message would fail the same way: Meta refused the
approved template as configured, or the provider refused the salon's own sender.

The stop lives in Redis (shared by every worker) for STOP_SECONDS. The worker that sets it logs one ERROR line
naming what to fix; the others see the stop and hold (template) or skip (sender) their rows without calling the
provider. When it lapses, the next message tries again: fixed, sending resumes; not fixed, one more ERROR line.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import redis

from reactivation.handover.keys import sending_stop_key

log = logging.getLogger(__name__)

# Long enough not to hammer Meta with a broken template, short enough that a fix is picked up within the hour.
STOP_SECONDS = 3600

StopReason = Literal["template_rejected", "sender_refused"]


@dataclass(frozen=True)
class SendingStop:
    """Why a company's sending is stopped, what to fix, and until when."""

    reason: StopReason
    fix: str
    until: datetime

    @classmethod
    def starting(cls, reason: StopReason, fix: str, *, now: datetime) -> SendingStop:
        return cls(reason, fix, now + timedelta(seconds=STOP_SECONDS))


def stop_sending(client: redis.Redis, *, prefix: str, company_id: int, stop: SendingStop, error: str) -> SendingStop:
    """Stop the company's sending unless it already is; the first to stop it logs the one ERROR line. Returns the
    stop in force (this one, or the one found)."""
    value = json.dumps({**asdict(stop), "until": stop.until.isoformat()})
    key = sending_stop_key(prefix, company_id)
    if client.set(key, value, ex=STOP_SECONDS, nx=True):
        log.error(
            "company sending stopped until what `fix` names is fixed",
            extra={
                "company_id": company_id,
                "reason": stop.reason,
                "fix": stop.fix,
                "until": stop.until.isoformat(),
                "error": error,
            },
        )
        return stop
    return sending_stopped(client, prefix=prefix, company_id=company_id) or stop


def sending_stopped(client: redis.Redis, *, prefix: str, company_id: int) -> SendingStop | None:
    """The stop in force for the company, if any."""
    raw: Any = client.get(sending_stop_key(prefix, company_id))
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        return SendingStop(data["reason"], data["fix"], datetime.fromisoformat(data["until"]))
    except (ValueError, KeyError, TypeError):
        # Not ours to read: better to send (and stop again if it still fails) than to stop for good.
        return None
