"""Running a campaign's chains step by step in the test process: the claim, one row's chain, the rows it left."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from reactivation.compliance.optouts import record_opt_out
from reactivation.flow import pipeline
from reactivation.flow.campaign import run_campaign
from reactivation.flow.pipeline import Continue
from reactivation.runtime import Runtime
from reactivation.storage.models import ReactivationHistory
from tests.salon import Salon

STEPS = (
    pipeline.select_interval,
    pipeline.generate_message,
    pipeline.send_message,
    pipeline.persist_history,
    pipeline.save_handover,
)


def claim(rt: Runtime, salon: Salon, **kwargs: object) -> list[int]:
    """Run the salon's campaign for its day and return the ids of the rows it claimed."""
    claimed: list[int] = []
    run_campaign(
        rt, company_id=salon.company_id, run_date=salon.today, now=salon.now, on_claimed=claimed.extend, **kwargs
    )
    return claimed


def run_chain(rt: Runtime, salon: Salon, history_id: int) -> list[object]:
    """Each step's outcome for one row, up to the first that does not continue."""
    outcomes = []
    for step in STEPS:
        outcome = step(rt, company_id=salon.company_id, history_id=history_id, now=salon.now)
        outcomes.append(outcome)
        if not isinstance(outcome, Continue):
            break
    return outcomes


def send_campaign(rt: Runtime, salon: Salon, *, now: datetime | None = None, dry_run: bool = False) -> list[int]:
    """Claim the salon's campaign for the date of `now` (default: the salon's) and run every claimed row's chain."""
    now = now or salon.now
    claimed: list[int] = []
    run_campaign(
        rt, company_id=salon.company_id, run_date=now.date(), now=now, on_claimed=claimed.extend, dry_run=dry_run
    )
    for history_id in claimed:
        for step in STEPS:
            if not isinstance(step(rt, company_id=salon.company_id, history_id=history_id, now=now), Continue):
                break
    return claimed


def opt_out_by_reply(engine: Engine, salon: Salon, claimed: ReactivationHistory) -> None:
    """The claimed row's client answers «стоп» to an earlier message, at the salon's `now`."""
    with Session(engine) as session:
        record_opt_out(
            session,
            company_id=salon.company_id,
            phone=claimed.phone or "",
            client_id=claimed.client_id,
            history_id=None,
            text="стоп",
            source="reply",
            now=salon.now,
        )
        session.commit()


def row(engine: Engine, history_id: int) -> ReactivationHistory:
    """One history row as committed."""
    with Session(engine) as session:
        found = session.get(ReactivationHistory, history_id)
        assert found is not None
        return found


def rows(engine: Engine, company_id: int) -> list[ReactivationHistory]:
    """The company's history rows, oldest first."""
    with Session(engine) as session:
        return list(
            session.scalars(
                select(ReactivationHistory)
                .where(ReactivationHistory.company_id == company_id)
                .order_by(ReactivationHistory.id)
            )
        )
