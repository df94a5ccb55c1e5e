"""Who is due today: one set-based query per company, the waterfall and the step rules applied in SQL.

`due_clients` returns the clients to contact on a reference date (the company's local date of the run), highest
value first, each with the interval the waterfall chose and the step that is due. `recheck_client` re-applies the
exclusions to one client just before a step of the pipeline acts on it.

A client is due when all of this holds on the reference date `today`:

* not blacklisted, visit_count > 0, a last visit on or before today;
* the phone (E.164 via the `phone_key` column) and the client id are not in `reactivation_opt_outs`;
* no message within `min_days_between_messages` (company setting, default 7): no history row (a dry run's rows are
  none), by client or by phone, claimed or sent on one of the last N local days (today included) whose status is
  anything but `skipped` or `failed` (so sent, delivered, unknown, holdout and every in-flight state count; a
  holdout row counts as a contact so that the control group is treated like the contacted one);
* inactive (today − last visit) no longer than `max_inactive_days`;
* the waterfall's interval makes step k = min(3, ⌊(days_inactive − grace) / interval⌋) ≥ 1, and k is higher
  than every step already claimed for this lapse (real rows with this last_visit_date, whatever their status);
* no booking (matched by client id or by phone) that is not `deleted` and falls on a local day after the last
  visit: that covers an upcoming booking (after the reference time) and one made since the lapse began;
* no attended visit in appointments_cache on a local day after the last visit (the sync has not caught up);
* the lapse is not snoozed by a not_now reply (reactivation_reply_holds) until a date after today. When its
  snooze has ended, its step is due again whatever the interval says (once: the claim ends the snooze). A client
  whose moved_away reply holds the lapse while their phone stays the same is returned marked `moved`: the claim
  skips them with that reason.

The interval and step are computed in SQL from the constants timing/waterfall.py and timing/steps.py use, and each
row is then rebuilt in Python by `choose_interval` and `next_step` (the history row and the AI admin get
the Python evidence; a test checks that both agree). The industry level is resolved in Python once per
service (from the `services` title of the client's last service id) and handed to the query as a small table.

Two ways to the same answer. `due_clients` reads the kept due dates (reactivation_due_dates, see
storage/due_dates.py and timing/due_dates.py): the candidates are the kept rows due by the reference date (an index
range, or for the top N a bounded walk of the value index, see `_candidate_ids`) and the lapses whose snooze has
ended, and the rules above are applied to them only, the interval and evidence taken from the kept row: for the top
N as index probes per candidate, for every due client as one query of hash joins over the kept range (no plan that
the statistics of a table just filled could turn into a scan per candidate). A kept row marked stale, or one that
no longer fits its client (lapse, last service, value), is recomputed by the reference path restricted to those
clients; with more than STALE_AT_MOST stale rows, or none kept, the whole selection is the reference path.
`reference_due_clients` is that reference: the waterfall joined over the company's clients, described below; tests
check both agree on random salons.

PostgreSQL plan of the reference: the cheap filters and hash joins (intervals, opt-outs, recent messages, steps of
the lapse) run over the company's clients, the result is sorted by value, and only then the three per-client
probes (bookings by client and by phone, visits since) run, row by row, until `limit` rows are found. See
bench/plans/selection.txt (`python -m bench selection`).
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Date,
    DateTime,
    Float,
    Integer,
    Text,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from reactivation.core.instants import as_aware, local_midnight, naive_utc
from reactivation.core.phones import try_normalize_phone
from reactivation.core.vocabulary import SkipReason, Status, Step
from reactivation.delivery.errors import NOT_ON_WHATSAPP_CODE
from reactivation.storage import due_dates, history, holds
from reactivation.storage.bookings import not_cancelled
from reactivation.storage.companies import CompanyConfig, load_company
from reactivation.storage.db import is_postgres, pg_local_settings
from reactivation.storage.history import not_dry_run, step_taken
from reactivation.storage.holds import HoldKind
from reactivation.storage.models import (
    AppointmentCache,
    Booking,
    Client,
    ClientPersonalizedInterval,
    DueDate,
    OptOut,
    ReactivationHistory,
    ReplyHold,
    ServiceReactivationInterval,
)
from reactivation.timing.steps import due_date, next_step
from reactivation.timing.waterfall import (
    MIN_INTERVAL_DAYS,
    Interval,
    Source,
)
from reactivation.timing.waterfall_sql import (
    ServiceFacts,
    industry_table,
    service_facts,
    usable_personal,
    usable_service,
    waterfall_days,
)

log = logging.getLogger(__name__)

WORK_MEM = "64MB"
# Each round of a limited selection looks at this many times more of the most valuable clients than the last.
PREFIX_FACTOR = 8
# History statuses that do not count as a contact for the minimum gap between messages.
NOT_A_CONTACT = (Status.SKIPPED, Status.FAILED)
# Beyond this many kept rows marked stale (a new table, a bulk import not yet refreshed), the whole selection
# takes the reference path rather than recomputing them one by one.
STALE_AT_MOST = 20_000
# The top-N first walks this many times its cap of the most valuable kept rows (the value index); when fewer than
# the cap of them are due, the due are few (under 1 in WALK_FACTOR) and it sorts the due-date range instead.
WALK_FACTOR = 32


@dataclass(frozen=True)
class DueClient:
    """One client to contact today, with everything the pipeline needs to claim a history row."""

    client_id: int
    name: str | None
    phone: str | None  # raw, as the booking system wrote it
    phone_e164: str | None  # None when the phone is unusable
    last_visit_date: date  # identifies the lapse
    days_inactive: int
    last_service_id: int | None
    last_service_name: str | None
    interval: Interval
    step: Step
    due_date: date  # when this step fell due: last visit + step × interval + grace
    total_spent: Decimal
    previous_step: Step | None  # the latest step already claimed in this lapse
    repeat: bool = False  # the step sent again after its snooze ended
    moved: bool = False  # a moved_away reply holds the lapse: to be skipped with that reason

    @property
    def message_type(self) -> str:
        return self.step.message_type

    @property
    def inactive_days(self) -> int:
        """`days_inactive` under the history row's name, so that a message is composed alike from either."""
        return self.days_inactive

    @property
    def interval_days(self) -> int:
        return self.interval.interval_days

    @property
    def campaign(self) -> str:
        return self.step.campaign


@dataclass(frozen=True)
class _Reference:
    """Everything the query binds, derived once from the company and the reference date."""

    company: CompanyConfig
    today: date
    facts: ServiceFacts  # the company's service titles and their industry levels
    contact_cutoff: datetime | None

    @property
    def grace(self) -> int:
        return self.company.settings.grace_days

    @property
    def max_inactive(self) -> int:
        return self.company.settings.max_inactive_days


def due_clients(session: Session, *, company_id: int, today: date, limit: int | None = None) -> list[DueClient]:
    """The company's due clients on `today` (its local reference date), highest value first.

    Read from the kept due dates (reactivation_due_dates): the candidates are the kept rows due by `today` (an
    index range) and the lapses whose snooze has ended; every exclusion is applied to them only. A candidate whose
    kept row no longer fits the client, and every client whose row is marked stale, are recomputed by the reference
    path (`reference_due_clients`, restricted to them); with more than STALE_AT_MOST stale rows (a bulk import
    not yet refreshed) or no kept row at all, the whole selection takes the reference path."""
    if limit is not None and limit <= 0:
        return []
    reference = _reference(session, company_id=company_id, today=today)
    stale = due_dates.stale_count(session, company_id=company_id, at_most=STALE_AT_MOST + 1)
    if stale > STALE_AT_MOST or not due_dates.any_kept(session, company_id=company_id):
        log.info("due dates stale: reference selection", extra={"company_id": company_id, "stale": stale})
        return _reference_due(session, reference, limit=limit)
    found = _kept_due(session, reference, limit=limit)
    recompute = found.recompute | (set(due_dates.stale_ids(session, company_id=company_id)) if stale else set())
    if not recompute:
        return found.clients
    recomputed = _reference_due(session, reference, limit=limit, only=sorted(recompute))
    merged = sorted([*found.clients, *recomputed], key=_order)
    return merged if limit is None else merged[:limit]


def _order(due: DueClient) -> tuple[Decimal, date, int]:
    """The selection's order: highest value first, then longest inactive, then id."""
    return (-due.total_spent, due.last_visit_date, due.client_id)


def reference_due_clients(
    session: Session, *, company_id: int, today: date, limit: int | None = None
) -> list[DueClient]:
    """The due clients computed from the clients' data alone (the waterfall joined over the company's clients),
    ignoring the kept due dates: what `due_clients` must equal, and what it falls back to."""
    if limit is not None and limit <= 0:
        return []
    return _reference_due(session, _reference(session, company_id=company_id, today=today), limit=limit)


def _reference_due(
    session: Session, reference: _Reference, *, limit: int | None, only: Sequence[int] | None = None
) -> list[DueClient]:
    postgres = is_postgres(session)
    if limit is None or only is not None:
        with _work_mem(session, postgres=postgres):
            query = _due_query(reference, postgres=postgres, cap=None, floor=None, only=only)
            rows = session.execute(query).all()
        return _keep(session, reference, rows, limit)
    # The answer is the `limit` most valuable due clients, so the query first looks only at the `prefix` most
    # valuable clients of the company (total_spent at or above the prefix-th highest: an index range), and
    # widens the prefix eightfold while that holds fewer than `limit` due clients; once the prefix covers the
    # company there is no bound. Within a round it ranks only the top `cap` candidates (a bounded sort) before
    # the per-row probes. Every round is one set-based query; a dense day needs one round, a sparse one a few.
    company_id = reference.company.id
    prefix = limit * PREFIX_FACTOR
    floor = _value_floor(session, company_id=company_id, prefix=prefix)
    cap = limit * 2 + 50
    while True:
        with _work_mem(session, postgres=postgres):
            rows = session.execute(_due_query(reference, postgres=postgres, cap=cap, floor=floor)).all()
        kept = _keep(session, reference, rows, limit)
        if len(kept) >= limit:
            return kept
        if len(rows) == cap:
            cap *= 4  # the probes or opt-outs dropped many of a full cap: rank more of the same clients
        elif floor is None:
            return kept
        else:
            prefix *= PREFIX_FACTOR
            floor = _value_floor(session, company_id=company_id, prefix=prefix)


def _value_floor(session: Session, *, company_id: int, prefix: int) -> Decimal | None:
    """The `prefix`-th highest total_spent of the company (an index range), None when it has fewer clients."""
    return session.execute(
        select(Client.total_spent)
        .where(Client.company_id == company_id)
        .order_by(Client.total_spent.desc())
        .offset(prefix - 1)
        .limit(1)
    ).scalar()


def _keep(
    session: Session,
    reference: _Reference,
    rows: Sequence[Any],
    limit: int | None,
    build: Callable[..., DueClient | None] | None = None,
) -> list[DueClient]:
    """The first `limit` rows that no probe excluded and no opt-out covers, as DueClients, in order.

    Phones are normalized (the slow part: phonenumbers) only for rows that may be returned, and checked against
    the opt-outs exactly: the SQL phone key already excluded every opt-out it can read (see computed_columns.py).
    """
    candidates = [r for r in rows if not (r.booked_by_client or r.booked_by_phone or r.visited_since)]
    kept: list[DueClient] = []
    position = 0
    while position < len(candidates) and (limit is None or len(kept) < limit):
        wanted = len(candidates) if limit is None else limit - len(kept)
        batch: list[DueClient] = []
        while position < len(candidates) and len(batch) < wanted:
            row = candidates[position]
            position += 1
            due = (build or _due_client)(row, reference, phone_e164=try_normalize_phone(row.phone))
            if due is not None:
                batch.append(due)
        opted = _opted_out(session, company_id=reference.company.id, phones={d.phone_e164 for d in batch})
        if opted:
            extra = {"company_id": reference.company.id, "count": len(opted)}
            log.warning("opt-outs missed by the phone key", extra=extra)
        kept.extend(d for d in batch if d.phone_e164 not in opted)
    return kept


def _opted_out(session: Session, *, company_id: int, phones: set[str | None]) -> set[str]:
    """Which of these E.164 phones opted out of this company's messages."""
    wanted = sorted(p for p in phones if p)
    opted: set[str] = set()
    for start in range(0, len(wanted), 5_000):
        chunk = wanted[start : start + 5_000]
        opted.update(
            session.execute(
                select(OptOut.phone).where(OptOut.company_id == company_id, OptOut.phone.in_(chunk))
            ).scalars()
        )
    return opted


@contextmanager
def _work_mem(session: Session, *, postgres: bool, hash_joins: bool = False) -> Iterator[None]:
    """Sort the candidates in memory on PostgreSQL, without JIT: a row estimate off by orders of magnitude (a table
    just filled, never analyzed) lifts the plan's cost over jit_above_cost, and compiling the expressions then
    took longer than the query (16 s of JIT on a 200,000-client salon). `hash_joins`: every join a hash join (the
    kept path's every due client), whatever the statistics say about the kept range."""
    if not postgres:
        yield
        return
    settings = {"work_mem": WORK_MEM, "jit": "off"}
    if hash_joins:
        settings |= {"enable_nestloop": "off", "enable_mergejoin": "off"}
    with pg_local_settings(session, settings):
        yield


def reference_today(company: CompanyConfig, now: datetime) -> date:
    """The company's local date at `now`: the default reference date of a run."""
    return company.local_today(now)


def recheck_client(
    session: Session,
    *,
    company_id: int,
    client_id: int,
    lapse_date: date,
    now: datetime,
    company: CompanyConfig | None = None,
) -> SkipReason | None:
    """Why this client must not get the step now (None when nothing changed that stops it).

    For the pipeline, right before the send of a claimed row: the client may have opted out, booked, visited,
    been blacklisted or had their last visit moved since the row was claimed. The minimum gap between
    messages is not re-checked here (the row being processed is itself a contact in flight). `company`: the
    company's config when the caller carries it (the chain's facts), so that it is not read again.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if company is None or company.id != company_id:
        company = load_company(session, company_id=company_id)
    client = session.execute(select(Client).where(Client.company_id == company_id, Client.id == client_id)).scalar()
    if client is None:
        return SkipReason.CLIENT_GONE
    if client.blacklisted:
        return SkipReason.BLACKLISTED
    phone = try_normalize_phone(client.phone)
    if _client_opted_out(session, client, phone=phone):
        return SkipReason.OPTED_OUT
    if phone is not None and history.phone_reported_with_code(
        session, company_id=company_id, phone=phone, code=NOT_ON_WHATSAPP_CODE
    ):
        # WhatsApp reported this number undeliverable for this company; a new number is tried again.
        return SkipReason.NOT_ON_WHATSAPP
    moved = _lapse_moved(client, lapse_date=lapse_date)
    if moved is not None:
        return moved
    held = _held(session, company=company, client=client, lapse_date=lapse_date, now=now)
    if held is not None:
        return held
    after = _instant(local_midnight(lapse_date + timedelta(days=1), company.tz), postgres=is_postgres(session))
    if _visited_after(session, client, after=after):
        return SkipReason.VISITED_SINCE
    booked = _latest_booking_after(session, client, after=after)
    if booked is not None:
        return SkipReason.UPCOMING_BOOKING if as_aware(booked) > now else SkipReason.BOOKED_SINCE
    if phone is None:
        return SkipReason.INVALID_PHONE
    return None


def _client_opted_out(session: Session, client: Client, *, phone: str | None) -> bool:
    """Whether an opt-out of the company names this client, their E.164 phone or their phone key."""
    opt_out_phones = {p for p in (phone, client.phone_key) if p}
    opted_out = session.execute(
        select(OptOut.phone).where(
            OptOut.company_id == client.company_id,
            or_(OptOut.client_id == client.id, OptOut.phone.in_(sorted(opt_out_phones))),
        )
    ).first()
    return opted_out is not None


def _lapse_moved(client: Client, *, lapse_date: date) -> SkipReason | None:
    """Why the client's last visit no longer identifies the claimed lapse, if it does not."""
    if client.last_visit_date is None or client.visit_count <= 0:
        return SkipReason.NO_VISIT
    if client.last_visit_date > lapse_date:
        return SkipReason.VISITED_SINCE
    if client.last_visit_date != lapse_date:
        return SkipReason.LAPSE_CHANGED
    return None


def _flow_stopped(session: Session, client: Client, *, lapse_date: date) -> bool:
    """Whether a real (not dry-run) row of this lapse stopped its flow."""
    h = ReactivationHistory
    stopped = session.execute(
        select(h.id)
        .where(
            h.company_id == client.company_id,
            h.client_id == client.id,
            h.last_visit_date == lapse_date,
            not_dry_run(),
            h.flow_stopped_reason.is_not(None),
        )
        .limit(1)
    ).first()
    return stopped is not None


def _visited_after(session: Session, client: Client, *, after: datetime) -> bool:
    """Whether appointments_cache holds an attended visit of the client at or after `after`."""
    a = AppointmentCache
    visited = session.execute(
        select(a.id)
        .where(
            a.company_id == client.company_id,
            a.client_id == client.id,
            a.attendance == 1,
            a.appointment_datetime >= after,
        )
        .limit(1)
    ).first()
    return visited is not None


def _latest_booking_after(session: Session, client: Client, *, after: datetime) -> datetime | None:
    """The latest booking at or after `after` that is not deleted, matched by client id or by phone key."""
    by_whom = [Booking.client_id == client.id]
    if client.phone_key:
        by_whom.append(Booking.client_phone_key == client.phone_key)
    return session.execute(
        select(func.max(Booking.datetime)).where(
            Booking.company_id == client.company_id,
            or_(*by_whom),
            not_cancelled(),
            Booking.datetime >= after,
        )
    ).scalar()


def _held(
    session: Session, *, company: CompanyConfig, client: Client, lapse_date: date, now: datetime
) -> SkipReason | None:
    """Why a reply stops this step now: the lapse's flow is over, a move (same phone), a snooze not over yet."""
    if _flow_stopped(session, client, lapse_date=lapse_date):
        # The client said no (or booked) in this lapse: its flow is over.
        return SkipReason.FLOW_STOPPED
    hold = holds.get(session, holds.Lapse(company.id, client.id, lapse_date))
    if hold is None:
        return None
    if hold.kind == HoldKind.MOVED and hold.phone is not None and hold.phone == client.phone_key:
        return SkipReason.MOVED_AWAY
    snoozed = hold.kind == HoldKind.SNOOZED and hold.ended_at is None
    if snoozed and hold.until is not None and hold.until > company.local_today(now):
        return SkipReason.SNOOZED
    return None


# --- the query ----------------------------------------------------------------------------------------------------


def _reference(session: Session, *, company_id: int, today: date) -> _Reference:
    company = load_company(session, company_id=company_id)
    facts = service_facts(session, company_id=company_id)
    gap = company.settings.min_days_between_messages
    cutoff = local_midnight(today - timedelta(days=gap - 1), company.tz) if gap > 0 else None
    return _Reference(company=company, today=today, facts=facts, contact_cutoff=cutoff)


def _utc_offset_modifier(tz: ZoneInfo, today: date) -> str:
    """SQLite has no time zones: the company's UTC offset on the reference date, as a date() modifier."""
    offset = datetime.combine(today, time(12), tzinfo=tz).utcoffset() or timedelta(0)
    return f"{int(offset.total_seconds() // 60):+d} minutes"


def _instant(value: datetime, *, postgres: bool) -> datetime:
    # SQLite stores naive UTC text; comparing with an aware value would compare its wall time.
    return value if postgres else naive_utc(value)


def _days_between(today: date, column: Any, *, postgres: bool) -> ColumnElement[int]:
    if postgres:
        return type_coerce(literal(today, Date) - column, Integer)
    return cast(func.julianday(literal(today.isoformat())) - func.julianday(column), Integer)


@dataclass(frozen=True)
class _Holds:
    """A lapse's reply hold as one outer join: what it excludes today, and what it adds to the row."""

    on: ColumnElement[bool]
    not_snoozed: ColumnElement[bool]
    repeat: ColumnElement[int]  # 1 when the lapse's snooze has ended: its step is due again
    columns: tuple[Any, ...]


def _holds(company_id: int, today: date) -> _Holds:
    r = ReplyHold
    open_snooze = and_(r.kind == HoldKind.SNOOZED.value, r.ended_at.is_(None))
    repeat = case((and_(open_snooze, r.until <= today), 1), else_=0)
    return _Holds(
        on=and_(r.company_id == company_id, r.client_id == Client.id, r.last_visit_date == Client.last_visit_date),
        not_snoozed=case((and_(open_snooze, r.until > today), 1), else_=0) == 0,
        repeat=repeat,
        columns=(
            repeat.label("repeat"),
            r.step.label("hold_step"),
            r.until.label("hold_until"),
            # A move holds while the phone stays the same: a new number may be someone who never said it.
            case((and_(r.kind == HoldKind.MOVED.value, r.phone == Client.phone_key), 1), else_=0).label("moved"),
        ),
    )


def _due_query(
    reference: _Reference,
    *,
    postgres: bool,
    cap: int | None,
    floor: Decimal | None,
    only: Sequence[int] | None = None,
) -> Any:
    """The due selection, one statement: the candidates (cheap filters, the waterfall's interval, the step taken
    so far), the step due for each, ranked by value (the top `cap`), and then the per-row probes of the ranked.
    `only`: these clients alone."""
    candidates = _candidates(reference, postgres=postgres, floor=floor, only=only)
    ranked = _ranked(candidates, grace=reference.grace, cap=cap)
    return _probed(ranked, reference, postgres=postgres)


def _candidates(
    reference: _Reference, *, postgres: bool, floor: Decimal | None, only: Sequence[int] | None = None
) -> Any:
    """The clients that pass the cheap filters, each with its value, days inactive, the interval the waterfall
    gives in SQL, and the latest step already taken in its lapse."""
    c = Client
    p = ClientPersonalizedInterval
    s = ServiceReactivationInterval
    company_id = reference.company.id
    industry = industry_table(reference.facts.industry)
    previous = _previous_step(reference, per_client=floor is not None or only is not None)
    hold = _holds(company_id, reference.today)
    candidates: Any = (
        select(
            *_client_facts(reference, postgres=postgres),
            waterfall_days(industry).label("interval_days"),
            previous.column.label("previous_step"),
            *hold.columns,
        )
        .outerjoin(p, usable_personal(company_id))
        .outerjoin(s, usable_service(company_id))
        .outerjoin(industry, industry.c.service_id == c.last_service_id)
        .outerjoin(ReplyHold, hold.on)
    )
    candidates = _with_lapses(candidates, previous)
    conditions = _eligible(reference, postgres=postgres, floor=floor)
    if only is not None:
        conditions.append(due_dates.among(only, postgres=postgres)(c.id))
    return candidates.where(*conditions, hold.not_snoozed).subquery("base")


def _client_facts(reference: _Reference, *, postgres: bool) -> tuple[Any, ...]:
    """The columns of `clients` both selections read (the reference query and the kept path)."""
    c = Client
    return (
        c.id,
        c.phone_key,
        c.last_visit_date,
        c.total_spent,
        # Ordering on a float: the same order as numeric(12,2) (53 bits hold 12 digits), far cheaper to sort.
        cast(c.total_spent, Float).label("value"),
        c.last_service_id.label("service_id"),
        _days_between(reference.today, c.last_visit_date, postgres=postgres).label("days_inactive"),
    )


def _with_lapses(candidates: Any, previous: _PreviousStep) -> Any:
    """The candidates joined to the steps of their current lapse, when the previous step is read from a join."""
    if previous.lapses is None:
        return candidates
    lapses = previous.lapses
    return candidates.outerjoin(
        lapses, and_(lapses.c.client_id == Client.id, lapses.c.last_visit_date == Client.last_visit_date)
    )


@dataclass(frozen=True)
class _PreviousStep:
    """The latest step already taken in a client's current lapse: a column of `lapses` (joined to the clients),
    or a scalar probe per client when `lapses` is None."""

    column: Any
    lapses: Any | None


def _previous_step(reference: _Reference, *, per_client: bool) -> _PreviousStep:
    """The step taken so far in each candidate's lapse: from the open lapses grouped once, or, for a few thousand
    candidates (within a value floor, or named), probed per client."""
    h = ReactivationHistory
    company_id = reference.company.id
    # Dry-run rows are no contact at all.
    taken = step_taken()
    real = not_dry_run()
    if not per_client:
        # Every client: one pass over the lapses still open, hashed.
        lapses = (
            select(h.client_id, h.last_visit_date, func.max(taken).label("previous_step"))
            .where(
                h.company_id == company_id,
                real,
                h.last_visit_date >= reference.today - timedelta(days=reference.max_inactive),
            )
            .group_by(h.client_id, h.last_visit_date)
            .subquery("lapse")
        )
        return _PreviousStep(column=lapses.c.previous_step, lapses=lapses)
    # A few thousand clients: one probe each into the unique (company, client, lapse, step) index.
    probe = (
        select(func.max(taken))
        .where(h.company_id == company_id, real, h.client_id == Client.id, h.last_visit_date == Client.last_visit_date)
        .scalar_subquery()
    )
    return _PreviousStep(column=probe, lapses=None)


def _eligible(
    reference: _Reference, *, postgres: bool, floor: Decimal | None, probes: bool = False
) -> list[ColumnElement[bool]]:
    """The exclusions checked over the company's clients: blacklisted, never visited, inactive too long or not
    long enough for any step, opted out (by phone key or by id), below the value floor, or contacted lately.

    `probes` (the kept path, whose candidates are a range of kept rows): each look-up into another table is a
    scalar sub-select, one index probe per candidate that the planner cannot turn into a join, so that no
    statistics (a table just filled, never analyzed) make it scan or hash a whole table. Without, NOT EXISTS
    anti-joins the planner may hash over the company's clients (the reference path)."""
    c = Client
    company_id = reference.company.id
    today = reference.today
    absent = _absent if probes else _not_exists
    conditions = [
        c.company_id == company_id,
        c.blacklisted.is_(False),
        c.visit_count > 0,
        c.last_visit_date >= today - timedelta(days=reference.max_inactive),
        c.last_visit_date <= today - timedelta(days=MIN_INTERVAL_DAYS + reference.grace),
        absent(OptOut.company_id == company_id, OptOut.phone == c.phone_key),
        absent(OptOut.company_id == company_id, OptOut.client_id == c.id),
    ]
    if floor is not None:
        conditions.append(c.total_spent >= floor)
    if reference.contact_cutoff is not None:
        cutoff = _instant(reference.contact_cutoff, postgres=postgres)
        conditions += _not_contacted_since(cutoff, company_id=company_id, absent=absent)
    return conditions


def _not_exists(*where: Any) -> ColumnElement[bool]:
    return ~select(literal(1)).where(*where).exists()


def _absent(*where: Any) -> ColumnElement[bool]:
    # A scalar sub-select (unlike EXISTS) is never pulled up into a join: it runs per row, as an index probe.
    return select(literal_column("1")).where(*where).limit(1).scalar_subquery().is_(None)


def _not_contacted_since(
    cutoff: datetime, *, company_id: int, absent: Callable[..., ColumnElement[bool]] = _not_exists
) -> list[ColumnElement[bool]]:
    """No real contact claimed or sent since `cutoff`, neither to the client nor to their phone."""
    h = ReactivationHistory
    contact = and_(h.status.not_in(NOT_A_CONTACT), not_dry_run())
    # "claimed or sent since the cutoff": a row is claimed before it is sent, so this is
    # coalesce(message_sent_at, created_at) >= cutoff written so that either timestamp can use an index.
    recent = or_(h.created_at >= cutoff, h.message_sent_at >= cutoff)
    return [
        absent(h.company_id == company_id, h.client_id == Client.id, contact, recent),
        absent(h.company_id == company_id, h.phone == Client.phone_key, contact, recent),
    ]


def _ranked(candidates: Any, *, grace: int, cap: int | None, keep_unfit: bool = False, ordered: bool = True) -> Any:
    """The step due for each candidate, k = min(3, ⌊(days_inactive − grace) / interval⌋), kept when k ≥ 1 and
    above the step already taken (or the snoozed step again once its snooze ended); highest value first, then
    longest inactive, then id; the top `cap` if given. `keep_unfit`: also every row whose kept row no longer
    fits (`fits` = 0), to be recomputed. Not `ordered` (no cap, and hash joins follow that lose the order): the
    caller sorts."""
    k = (candidates.c.days_inactive - grace) // candidates.c.interval_days
    # A lapse whose snooze ended gets its snoozed step again, whatever the interval says.
    step = case((candidates.c.repeat == 1, candidates.c.hold_step), (k >= len(Step), len(Step)), else_=k)
    stepped = select(candidates, step.label("step")).subquery("stepped")
    due = and_(stepped.c.step >= 1, stepped.c.step > func.coalesce(stepped.c.previous_step, 0))
    wanted = [stepped.c.repeat == 1, due]
    if keep_unfit:
        wanted.append(stepped.c.fits == 0)
    ranked = select(stepped).where(or_(*wanted))
    if ordered or cap is not None:
        ranked = ranked.order_by(stepped.c.value.desc(), stepped.c.last_visit_date.asc(), stepped.c.id.asc())
    # A LIMIT (or OFFSET 0) keeps PostgreSQL from flattening this subquery: the probes below then run only on
    # the ranked rows, and with a cap the sort keeps just the top `cap` (a bounded heap, not a full sort).
    ranked = ranked.limit(cap) if cap is not None else ranked.offset(0)
    return ranked.subquery("ranked")


def _probed(top: Any, reference: _Reference, *, postgres: bool, raw_rows: bool = True) -> Any:
    """The ranked rows with what the pipeline needs (name, phone, with `raw_rows` the raw personal and salon rows)
    and the three per-row probes: a booking by client id, one by phone, an attended visit, each since the lapse
    began."""
    c = Client
    p = ClientPersonalizedInterval
    s = ServiceReactivationInterval
    b = Booking
    a = AppointmentCache
    company_id = reference.company.id
    booking_after, visit_after = _after_lapse(top, reference, postgres=postgres)
    active = not_cancelled()
    raw = (
        (
            p.personal_interval_days,
            p.visit_count.label("personal_visits"),
            p.consistency_score,
            s.median_interval_days,
            s.sample_size,
            s.is_active,
        )
        if raw_rows
        else ()
    )
    # The kept rows carry name, phone and last_services (as text) from their candidates: no second join.
    clients = (c.name, c.phone, c.last_services) if raw_rows else ()
    statement = select(
        top,
        *clients,
        *raw,
        _probe(b.company_id == company_id, b.client_id == top.c.id, booking_after, active).label("booked_by_client"),
        _probe(b.company_id == company_id, b.client_phone_key == top.c.phone_key, booking_after, active).label(
            "booked_by_phone"
        ),
        _probe(a.company_id == company_id, a.client_id == top.c.id, a.attendance == 1, visit_after).label(
            "visited_since"
        ),
    )
    if raw_rows:
        statement = (
            statement.join(c, and_(c.company_id == company_id, c.id == top.c.id))
            .outerjoin(p, and_(p.company_id == company_id, p.client_id == top.c.id, p.service_id == top.c.service_id))
            .outerjoin(s, and_(s.company_id == company_id, s.service_id == top.c.service_id))
        )
    return statement.order_by(top.c.value.desc(), top.c.last_visit_date.asc(), top.c.id.asc())


def _after_lapse(top: Any, reference: _Reference, *, postgres: bool) -> tuple[Any, Any]:
    """A booking, and a visit, on a local day after the ranked row's last visit."""
    b = Booking
    a = AppointmentCache
    if postgres:
        # The first instant of the local day after the last visit, as timestamptz: the probes stay index ranges.
        next_day = func.timezone(reference.company.tz.key, cast(top.c.last_visit_date + 1, DateTime()))
        return b.datetime >= next_day, a.appointment_datetime >= next_day
    modifier = _utc_offset_modifier(reference.company.tz, reference.today)
    return (
        func.date(b.datetime, modifier) > top.c.last_visit_date,
        func.date(a.appointment_datetime, modifier) > top.c.last_visit_date,
    )


def _probe(*where: Any) -> ColumnElement[bool]:
    # A scalar sub-select in the select list runs once per ranked row, as an index probe.
    return select(literal_column("1")).where(*where).limit(1).scalar_subquery().is_not(None)


def _due_client(row: Any, reference: _Reference, *, phone_e164: str | None) -> DueClient | None:
    service_id = row.service_id if isinstance(row.service_id, int) else None
    title = reference.facts.title(service_id, row.last_services)
    personal = None
    if row.personal_interval_days is not None:
        personal = (row.personal_interval_days, row.personal_visits, row.consistency_score)
    service = None
    if row.median_interval_days is not None:
        service = (row.median_interval_days, row.sample_size, row.is_active)
    interval = reference.facts.interval(service_id=service_id, title=title, personal=personal, service=service)
    previous = int(row.previous_step) if row.previous_step is not None else 0
    last_visit = row.last_visit_date
    if row.repeat:
        # The snoozed step again, due on the day its snooze ended; the waterfall's step does not apply.
        step, due = Step(row.hold_step), row.hold_until
    else:
        found = _waterfall_step(row, reference, interval, previous)
        if found is None:
            return None
        step = found
        due = due_date(last_visit, step, interval_days=interval.interval_days, grace_days=reference.grace)
    return _assembled(
        row,
        phone_e164=phone_e164,
        last_visit=last_visit,
        service=(service_id, title),
        choice=(interval, step, due),
        previous=previous,
    )


def _assembled(
    row: Any,
    *,
    phone_e164: str | None,
    last_visit: date,
    service: tuple[int | None, str | None],
    choice: tuple[Interval, Step, date],
    previous: int | None,
) -> DueClient:
    """A due client from its query row and what was worked out for it (the reference and the kept path alike)."""
    interval, step, due = choice
    return DueClient(
        client_id=row.id,
        name=row.name,
        phone=row.phone,
        phone_e164=phone_e164,
        last_visit_date=last_visit,
        days_inactive=row.days_inactive,
        last_service_id=service[0],
        last_service_name=service[1],
        interval=interval,
        step=step,
        due_date=due,
        total_spent=Decimal(row.total_spent),
        previous_step=Step(previous) if previous in (1, 2, 3) else None,
        repeat=bool(row.repeat),
        moved=bool(row.moved),
    )


def _waterfall_step(row: Any, reference: _Reference, interval: Interval, previous: int) -> Step | None:
    """The step the waterfall gives the row (logged when it disagrees with the SQL's), or None."""
    step = next_step(
        days_inactive=row.days_inactive,
        interval_days=interval.interval_days,
        grace_days=reference.grace,
        already_sent_steps=[previous] if previous else [],
        max_inactive_days=reference.max_inactive,
    )
    if step is None or interval.interval_days != row.interval_days or int(step) != row.step:
        log.error(
            "due selection and waterfall disagree",
            extra={
                "company_id": reference.company.id,
                "client_id": row.id,
                "sql_interval": row.interval_days,
                "waterfall_interval": interval.interval_days,
                "sql_step": row.step,
                "waterfall_step": int(step) if step is not None else None,
            },
        )
    return step


# --- the kept due dates -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _KeptFound:
    """The due clients the kept rows give, and the candidates whose kept row no longer fits (to recompute)."""

    clients: list[DueClient]
    recompute: set[int]


def _kept_due(session: Session, reference: _Reference, *, limit: int | None) -> _KeptFound:
    """The due clients among the kept rows due by the reference date and the lapses whose snooze has ended.

    With a limit: the `cap` most valuable kept rows due (an index walk, see `_candidate_ids`) are the candidates,
    and the cap grows fourfold while the exclusions leave fewer than `limit` of a full cap. Without: one
    set-based statement over the kept rows due."""
    postgres = is_postgres(session)
    held = _snoozes_ended(session, reference)
    if limit is None:
        with _work_mem(session, postgres=postgres, hash_joins=True):
            query = _kept_query(reference, postgres=postgres, among=None, snoozes_ended=held)
            rows = session.execute(query).all()
        return _split(session, reference, rows, None)
    cap = limit * 2 + 50
    while True:
        ids = _candidate_ids(session, reference, cap=cap, postgres=postgres)
        among = due_dates.among(sorted({*ids, *held}), postgres=postgres)
        with _work_mem(session, postgres=postgres):
            rows = session.execute(_kept_query(reference, postgres=postgres, among=among)).all()
        found = _split(session, reference, rows, limit)
        if len(found.clients) >= limit or len(ids) < cap:
            return found
        cap *= 4


def _split(session: Session, reference: _Reference, rows: Sequence[Any], limit: int | None) -> _KeptFound:
    fitting = [r for r in rows if r.fits]
    clients = _keep(session, reference, fitting, limit, build=_kept_due_client)
    return _KeptFound(clients=clients, recompute={r.id for r in rows if not r.fits})


def _candidate_ids(session: Session, reference: _Reference, *, cap: int, postgres: bool) -> list[int]:
    """The `cap` most valuable clients whose kept row is due by the reference date (grace days included).

    One table, one index at a time, each read bounded, whatever the statistics say: first the value index walked
    from the top for at most WALK_FACTOR × cap rows, the due among them kept (when `cap` are found, they are the
    top of the whole order: the walk is a prefix of it); else the due are few, and the due-date index range is
    read and sorted (the value made unusable for an index). No count: counting a range of a table not vacuumed
    yet fetches every row from the heap."""
    k = DueDate
    company_id = reference.company.id
    first = due_dates.STALE + timedelta(days=1)
    due_by = reference.today - timedelta(days=reference.grace)
    order = (k.total_spent.desc(), k.last_visit_date.asc(), k.client_id.asc())
    walked = (
        select(k.client_id, k.next_due_on, k.total_spent, k.last_visit_date)
        .where(k.company_id == company_id)
        .order_by(*order)
        .limit(cap * WALK_FACTOR)
        .subquery("walked")
    )
    statement = (
        select(walked.c.client_id)
        .where(walked.c.next_due_on.between(first, due_by))
        .order_by(walked.c.total_spent.desc(), walked.c.last_visit_date.asc(), walked.c.client_id.asc())
        .limit(cap)
    )
    ids = list(session.scalars(statement))
    if len(ids) >= cap:
        return ids
    value: Any = k.total_spent + 0 if postgres else k.total_spent
    in_range = (
        select(k.client_id)
        .where(k.company_id == company_id, k.next_due_on.between(first, due_by))
        .order_by(value.desc(), k.last_visit_date.asc(), k.client_id.asc())
        .limit(cap)
    )
    return list(session.scalars(in_range))


def _snoozes_ended(session: Session, reference: _Reference) -> list[int]:
    """Clients with a snooze that ended by the reference date: their snoozed step is due again (any interval)."""
    r = ReplyHold
    return list(
        session.scalars(
            select(r.client_id).where(
                r.company_id == reference.company.id,
                r.kind == HoldKind.SNOOZED.value,
                r.ended_at.is_(None),
                r.until <= reference.today,
            )
        )
    )


def _kept_query(
    reference: _Reference,
    *,
    postgres: bool,
    among: Callable[[Any], ColumnElement[bool]] | None,
    snoozes_ended: Sequence[int] = (),
) -> Any:
    """The due selection over kept rows: the candidates (named, or every kept row due and `snoozes_ended`),
    the cheap filters and the step taken so far, the step due from the kept interval, the per-row probes; each
    row says whether its kept row still fits the client (same lapse, last service and value)."""
    c = Client
    k = DueDate
    company_id = reference.company.id
    # Named candidates (the top N): every look-up is per candidate, an index probe, whatever the statistics say:
    # the step taken so far, the exclusions (see `_eligible`), the bookings and visits since (`_probed`). Every
    # kept row due (hundreds of thousands): each look-up is one hash join over the company's rows in range.
    every = among is None
    previous = _previous_step(reference, per_client=not (every and postgres))
    hold = _holds(company_id, reference.today)
    fits = and_(
        k.last_visit_date == c.last_visit_date,
        k.last_service_id.is_not_distinct_from(c.last_service_id),
        k.total_spent == c.total_spent,
    )
    candidates: Any = (
        select(
            *_client_facts(reference, postgres=postgres),
            k.interval_days,
            k.interval_source,
            k.confidence,
            k.evidence,
            previous.column.label("previous_step"),
            *hold.columns,
            case((fits, 1), else_=0).label("fits"),
            c.name,
            c.phone,
            # The JSON of last_services as text: parsed only for a title the services table does not have.
            cast(c.last_services, Text).label("last_services"),
        )
        .select_from(k)
        .join(c, and_(c.company_id == company_id, c.id == k.client_id))
        .outerjoin(ReplyHold, hold.on)
    )
    candidates = _with_lapses(candidates, previous)
    probes = not (every and postgres)
    conditions = [k.company_id == company_id, *_eligible(reference, postgres=postgres, floor=None, probes=probes)]
    if among is not None:
        conditions.append(among(k.client_id))
    else:
        # The kept range due by the reference date (an index range), and the lapses whose snooze has ended (their
        # kept rows by primary key): on PostgreSQL a BitmapOr of the two indexes, never every kept row.
        due_by = reference.today - timedelta(days=reference.grace)
        kept_due = k.next_due_on.between(due_dates.STALE + timedelta(days=1), due_by)
        conditions.append(or_(kept_due, due_dates.among(snoozes_ended, postgres=postgres)(k.client_id)))
    # OFFSET 0: not flattened, so that each probe in the select list runs once per candidate.
    base = candidates.where(*conditions, hold.not_snoozed).offset(0).subquery("base")
    ranked = _ranked(base, grace=reference.grace, cap=None, keep_unfit=True, ordered=not (every and postgres))
    if every and postgres:
        return _hashed_since(ranked, reference)
    return _probed(ranked, reference, postgres=postgres, raw_rows=False)


def _hashed_since(top: Any, reference: _Reference) -> Any:
    """The ranked kept rows with the bookings (by client id, by phone key) and attended visits since each lapse
    began, as hash joins: the latest of each per client among the company's rows since the earliest lapse a
    candidate can have (max_inactive_days ago), compared with the row's lapse."""
    b = Booking
    a = AppointmentCache
    company_id = reference.company.id
    earliest = local_midnight(reference.today - timedelta(days=reference.max_inactive - 1), reference.company.tz)
    next_day = func.timezone(reference.company.tz.key, cast(top.c.last_visit_date + 1, DateTime()))

    def latest(key: Any, moment: Any, *where: Any, name: str) -> Any:
        return (
            select(key.label("key"), func.max(moment).label("latest"))
            .where(*where, moment >= earliest)
            .group_by(key)
            .subquery(name)
        )

    by_client = latest(b.client_id, b.datetime, b.company_id == company_id, not_cancelled(), name="by_client")
    by_phone = latest(b.client_phone_key, b.datetime, b.company_id == company_id, not_cancelled(), name="by_phone")
    visits = latest(a.client_id, a.appointment_datetime, a.company_id == company_id, a.attendance == 1, name="seen")
    statement = (
        select(
            top,
            func.coalesce(by_client.c.latest >= next_day, False).label("booked_by_client"),
            func.coalesce(by_phone.c.latest >= next_day, False).label("booked_by_phone"),
            func.coalesce(visits.c.latest >= next_day, False).label("visited_since"),
        )
        .outerjoin(by_client, by_client.c.key == top.c.id)
        .outerjoin(by_phone, by_phone.c.key == top.c.phone_key)
        .outerjoin(visits, visits.c.key == top.c.id)
    )
    return statement.order_by(top.c.value.desc(), top.c.last_visit_date.asc(), top.c.id.asc())


def _kept_due_client(row: Any, reference: _Reference, *, phone_e164: str | None) -> DueClient | None:
    """A due client from a kept row: the kept interval, the step the SQL found."""
    service_id = row.service_id if isinstance(row.service_id, int) else None
    title = reference.facts.title(service_id, row.last_services)
    interval = Interval(
        interval_days=row.interval_days,
        source=Source(row.interval_source),
        confidence=float(row.confidence),
        evidence=row.evidence or {},
    )
    previous = int(row.previous_step) if row.previous_step is not None else 0
    if row.repeat:
        step, due = Step(row.hold_step), row.hold_until
    else:
        step = Step(row.step)
        due = due_date(row.last_visit_date, step, interval_days=interval.interval_days, grace_days=reference.grace)
    return _assembled(
        row,
        phone_e164=phone_e164,
        last_visit=row.last_visit_date,
        service=(service_id, title),
        choice=(interval, step, due),
        previous=previous,
    )


def stream_due(session: Session, *, company_id: int, today: date, batch: int = 5_000) -> Iterator[DueClient]:
    """Every due client, highest value first, streamed from the query (a server-side cursor on PostgreSQL) for
    exports of hundreds of thousands: the interval and step come from the kept rows, and `phone_e164` is the
    stored phone key (no phone parsing per row; opt-outs are those the key matches). Stale rows are recomputed
    first and merged in order; a kept row found not to fit while streaming is recomputed and comes last. With
    too many stale rows (or none kept) it is `due_clients` without a limit."""
    reference = _reference(session, company_id=company_id, today=today)
    stale = due_dates.stale_count(session, company_id=company_id, at_most=STALE_AT_MOST + 1)
    if stale > STALE_AT_MOST or not due_dates.any_kept(session, company_id=company_id):
        yield from _reference_due(session, reference, limit=None)
        return
    stale_ids = due_dates.stale_ids(session, company_id=company_id) if stale else []
    recomputed = _reference_due(session, reference, limit=None, only=stale_ids) if stale_ids else []
    unfit: list[int] = []
    postgres = is_postgres(session)
    with _work_mem(session, postgres=postgres, hash_joins=True):
        held = _snoozes_ended(session, reference)
        query = _kept_query(reference, postgres=postgres, among=None, snoozes_ended=held)
        result = session.execute(query.execution_options(yield_per=batch))
        streamed = _stream_kept(result, reference, unfit)
        yield from heapq.merge(streamed, recomputed, key=_order)
    if unfit:
        log.warning("kept due dates did not fit", extra={"company_id": company_id, "count": len(unfit)})
        yield from _reference_due(session, reference, limit=None, only=unfit)


def _stream_kept(rows: Iterable[Any], reference: _Reference, unfit: list[int]) -> Iterator[DueClient]:
    for row in rows:
        if not row.fits:
            unfit.append(row.id)
        elif not (row.booked_by_client or row.booked_by_phone or row.visited_since):
            due = _kept_due_client(row, reference, phone_e164=row.phone_key)
            if due is not None:
                yield due
