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

PostgreSQL plan: the cheap filters and hash joins (intervals, opt-outs, recent messages, steps of the lapse)
run over the company's clients, the result is sorted by value, and only then the three per-client probes
(bookings by client and by phone, visits since) run, row by row, until `limit` rows are found. See
bench/plans/selection.txt (`python -m bench selection`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
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
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from reactivation.core.instants import as_aware, local_midnight, naive_utc
from reactivation.core.phones import try_normalize_phone
from reactivation.core.vocabulary import SkipReason, Status, Step
from reactivation.delivery.errors import NOT_ON_WHATSAPP_CODE
from reactivation.storage import history, holds
from reactivation.storage.bookings import not_cancelled
from reactivation.storage.companies import CompanyConfig, load_company
from reactivation.storage.db import is_postgres, pg_local_settings
from reactivation.storage.history import not_dry_run
from reactivation.storage.holds import HoldKind
from reactivation.storage.models import (
    AppointmentCache,
    Booking,
    Client,
    ClientPersonalizedInterval,
    OptOut,
    ReactivationHistory,
    ReplyHold,
    Service,
    ServiceReactivationInterval,
)
from reactivation.timing.industry import IndustryMatch, load_standards, match_industry
from reactivation.timing.steps import due_date, next_step
from reactivation.timing.waterfall import (
    MAX_INTERVAL_DAYS,
    MIN_CONSISTENCY,
    MIN_INTERVAL_DAYS,
    MIN_PERSONAL_INTERVALS,
    MIN_SERVICE_SAMPLE,
    UNIVERSAL_DAYS,
    Interval,
    PersonalRhythm,
    ServiceAverage,
    choose_interval,
)

log = logging.getLogger(__name__)

WORK_MEM = "64MB"
# Each round of a limited selection looks at this many times more of the most valuable clients than the last.
PREFIX_FACTOR = 8
# History statuses that do not count as a contact for the minimum gap between messages.
NOT_A_CONTACT = (Status.SKIPPED, Status.FAILED)


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
    industry: dict[int, IndustryMatch]
    titles: dict[int, str]
    contact_cutoff: datetime | None

    @property
    def grace(self) -> int:
        return self.company.settings.grace_days

    @property
    def max_inactive(self) -> int:
        return self.company.settings.max_inactive_days


def due_clients(session: Session, *, company_id: int, today: date, limit: int | None = None) -> list[DueClient]:
    """The company's due clients on `today` (its local reference date), highest value first."""
    if limit is not None and limit <= 0:
        return []
    reference = _reference(session, company_id=company_id, today=today)
    postgres = is_postgres(session)
    if limit is None:
        with _work_mem(session, postgres=postgres):
            rows = session.execute(_due_query(reference, postgres=postgres, cap=None, floor=None)).all()
        return _keep(session, reference, rows, None)
    # The answer is the `limit` most valuable due clients, so the query first looks only at the `prefix` most
    # valuable clients of the company (total_spent at or above the prefix-th highest: an index range), and
    # widens the prefix eightfold while that holds fewer than `limit` due clients; once the prefix covers the
    # company there is no bound. Within a round it ranks only the top `cap` candidates (a bounded sort) before
    # the per-row probes. Every round is one set-based query; a dense day needs one round, a sparse one a few.
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


def _keep(session: Session, reference: _Reference, rows: Sequence[Any], limit: int | None) -> list[DueClient]:
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
            due = _due_client(row, reference, phone_e164=try_normalize_phone(row.phone))
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
def _work_mem(session: Session, *, postgres: bool) -> Iterator[None]:
    """Sort the candidates in memory on PostgreSQL."""
    if not postgres:
        yield
        return
    with pg_local_settings(session, {"work_mem": WORK_MEM}):
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
    standards = load_standards(session)
    titles = dict(
        session.execute(select(Service.yclients_id, Service.title).where(Service.company_id == company_id)).all()
    )
    industry = {}
    for service_id, title in titles.items():
        found = match_industry(title, standards)
        if found is not None:
            industry[service_id] = found
    gap = company.settings.min_days_between_messages
    cutoff = local_midnight(today - timedelta(days=gap - 1), company.tz) if gap > 0 else None
    return _Reference(company=company, today=today, industry=industry, titles=titles, contact_cutoff=cutoff)


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


def _industry_table(reference: _Reference) -> Any:
    """(service_id, interval_days) for the company's services that match an industry category."""
    rows = [
        select(literal(service_id, Integer).label("service_id"), literal(m.interval_days, Integer).label("days"))
        for service_id, m in sorted(reference.industry.items())
    ]
    if not rows:
        empty = select(cast(null(), Integer).label("service_id"), cast(null(), Integer).label("days")).where(
            literal(False)
        )
        return empty.cte("industry")
    if len(rows) == 1:
        return rows[0].cte("industry")
    return union_all(*rows).cte("industry")


@dataclass(frozen=True)
class _Holds:
    """A lapse's reply hold as one outer join: what it excludes today, and what it adds to the row."""

    on: ColumnElement[bool]
    not_snoozed: ColumnElement[bool]
    columns: tuple[Any, ...]


def _holds(company_id: int, today: date) -> _Holds:
    r = ReplyHold
    open_snooze = and_(r.kind == HoldKind.SNOOZED.value, r.ended_at.is_(None))
    return _Holds(
        on=and_(r.company_id == company_id, r.client_id == Client.id, r.last_visit_date == Client.last_visit_date),
        not_snoozed=case((and_(open_snooze, r.until > today), 1), else_=0) == 0,
        columns=(
            case((and_(open_snooze, r.until <= today), 1), else_=0).label("repeat"),
            r.step.label("hold_step"),
            r.until.label("hold_until"),
            # A move holds while the phone stays the same: a new number may be someone who never said it.
            case((and_(r.kind == HoldKind.MOVED.value, r.phone == Client.phone_key), 1), else_=0).label("moved"),
        ),
    )


def _due_query(reference: _Reference, *, postgres: bool, cap: int | None, floor: Decimal | None) -> Any:
    """The due selection, one statement: the candidates (cheap filters, the waterfall's interval, the step taken
    so far), the step due for each, ranked by value (the top `cap`), and then the per-row probes of the ranked."""
    candidates = _candidates(reference, postgres=postgres, floor=floor)
    ranked = _ranked(candidates, grace=reference.grace, cap=cap)
    return _probed(ranked, reference, postgres=postgres)


def _candidates(reference: _Reference, *, postgres: bool, floor: Decimal | None) -> Any:
    """The clients that pass the cheap filters, each with its value, days inactive, the interval the waterfall
    gives in SQL, and the latest step already taken in its lapse."""
    c = Client
    p = ClientPersonalizedInterval
    s = ServiceReactivationInterval
    company_id = reference.company.id
    industry = _industry_table(reference)
    previous = _previous_step(reference, floor=floor)
    hold = _holds(company_id, reference.today)
    candidates: Any = (
        select(
            c.id,
            c.phone_key,
            c.last_visit_date,
            c.total_spent,
            # Ordering on a float: the same order as numeric(12,2) (53 bits hold 12 digits), far cheaper to sort.
            cast(c.total_spent, Float).label("value"),
            c.last_service_id.label("service_id"),
            _days_between(reference.today, c.last_visit_date, postgres=postgres).label("days_inactive"),
            _waterfall_days(industry).label("interval_days"),
            previous.column.label("previous_step"),
            *hold.columns,
        )
        .outerjoin(p, _usable_personal(company_id))
        .outerjoin(s, _usable_service(company_id))
        .outerjoin(industry, industry.c.service_id == c.last_service_id)
        .outerjoin(ReplyHold, hold.on)
    )
    if previous.lapses is not None:
        lapses = previous.lapses
        candidates = candidates.outerjoin(
            lapses, and_(lapses.c.client_id == c.id, lapses.c.last_visit_date == c.last_visit_date)
        )
    return candidates.where(*_eligible(reference, postgres=postgres, floor=floor), hold.not_snoozed).subquery("base")


@dataclass(frozen=True)
class _PreviousStep:
    """The latest step already taken in a client's current lapse: a column of `lapses` (joined to the clients),
    or a scalar probe per client when `lapses` is None."""

    column: Any
    lapses: Any | None


def _previous_step(reference: _Reference, *, floor: Decimal | None) -> _PreviousStep:
    """The step taken so far in each candidate's lapse: from the open lapses grouped once, or, within a value
    floor, probed per client."""
    h = ReactivationHistory
    company_id = reference.company.id
    # A lapse whose flow stopped (a negative reply, an opt-out, a booking) counts as if its last step were taken;
    # dry-run rows are no contact at all.
    step_taken = case((h.flow_stopped_reason.is_not(None), int(Step.WIN_BACK)), else_=h.step)
    real = not_dry_run()
    if floor is None:
        # Every client: one pass over the lapses still open, hashed.
        lapses = (
            select(h.client_id, h.last_visit_date, func.max(step_taken).label("previous_step"))
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
        select(func.max(step_taken))
        .where(h.company_id == company_id, real, h.client_id == Client.id, h.last_visit_date == Client.last_visit_date)
        .scalar_subquery()
    )
    return _PreviousStep(column=probe, lapses=None)


# Only usable personal and salon rows take part in the candidates' join (a smaller hash on a million clients); the
# raw rows are joined again for the ranked clients, so that the evidence can say why one was passed over.


def _usable_personal(company_id: int) -> ColumnElement[bool]:
    """A personal row the waterfall's level 1 accepts for the client's last service."""
    p = ClientPersonalizedInterval
    return and_(
        p.company_id == company_id,
        p.client_id == Client.id,
        p.service_id == Client.last_service_id,
        p.visit_count >= MIN_PERSONAL_INTERVALS + 1,
        p.consistency_score >= MIN_CONSISTENCY,
        p.consistency_score <= 1,
        p.personal_interval_days.between(MIN_INTERVAL_DAYS, MAX_INTERVAL_DAYS),
    )


def _usable_service(company_id: int) -> ColumnElement[bool]:
    """A salon row the waterfall's level 2 accepts for the client's last service."""
    s = ServiceReactivationInterval
    return and_(
        s.company_id == company_id,
        s.service_id == Client.last_service_id,
        s.is_active.is_(True),
        s.sample_size >= MIN_SERVICE_SAMPLE,
        s.median_interval_days.between(MIN_INTERVAL_DAYS, MAX_INTERVAL_DAYS),
    )


def _waterfall_days(industry: Any) -> ColumnElement[int]:
    """The waterfall in SQL: the personal median, else the salon's, else the industry's, else the universal days."""
    return func.coalesce(
        ClientPersonalizedInterval.personal_interval_days,
        ServiceReactivationInterval.median_interval_days,
        case((industry.c.days.between(MIN_INTERVAL_DAYS, MAX_INTERVAL_DAYS), industry.c.days)),
        UNIVERSAL_DAYS,
    )


def _eligible(reference: _Reference, *, postgres: bool, floor: Decimal | None) -> list[ColumnElement[bool]]:
    """The exclusions checked over the company's clients: blacklisted, never visited, inactive too long or not
    long enough for any step, opted out (by phone key or by id), below the value floor, or contacted lately."""
    c = Client
    company_id = reference.company.id
    today = reference.today
    conditions = [
        c.company_id == company_id,
        c.blacklisted.is_(False),
        c.visit_count > 0,
        c.last_visit_date >= today - timedelta(days=reference.max_inactive),
        c.last_visit_date <= today - timedelta(days=MIN_INTERVAL_DAYS + reference.grace),
        ~select(literal(1)).where(OptOut.company_id == company_id, OptOut.phone == c.phone_key).exists(),
        ~select(literal(1)).where(OptOut.company_id == company_id, OptOut.client_id == c.id).exists(),
    ]
    if floor is not None:
        conditions.append(c.total_spent >= floor)
    if reference.contact_cutoff is not None:
        cutoff = _instant(reference.contact_cutoff, postgres=postgres)
        conditions += _not_contacted_since(cutoff, company_id=company_id)
    return conditions


def _not_contacted_since(cutoff: datetime, *, company_id: int) -> list[ColumnElement[bool]]:
    """No real contact claimed or sent since `cutoff`, neither to the client nor to their phone."""
    h = ReactivationHistory
    contact = and_(h.status.not_in(NOT_A_CONTACT), not_dry_run())
    # "claimed or sent since the cutoff": a row is claimed before it is sent, so this is
    # coalesce(message_sent_at, created_at) >= cutoff written so that either timestamp can use an index.
    recent = or_(h.created_at >= cutoff, h.message_sent_at >= cutoff)
    return [
        ~select(literal(1)).where(h.company_id == company_id, h.client_id == Client.id, contact, recent).exists(),
        ~select(literal(1)).where(h.company_id == company_id, h.phone == Client.phone_key, contact, recent).exists(),
    ]


def _ranked(candidates: Any, *, grace: int, cap: int | None) -> Any:
    """The step due for each candidate, k = min(3, ⌊(days_inactive − grace) / interval⌋), kept when k ≥ 1 and
    above the step already taken (or the snoozed step again once its snooze ended); highest value first, then
    longest inactive, then id; the top `cap` if given."""
    k = (candidates.c.days_inactive - grace) // candidates.c.interval_days
    # A lapse whose snooze ended gets its snoozed step again, whatever the interval says.
    step = case((candidates.c.repeat == 1, candidates.c.hold_step), (k >= len(Step), len(Step)), else_=k)
    stepped = select(candidates, step.label("step")).subquery("stepped")
    due = and_(stepped.c.step >= 1, stepped.c.step > func.coalesce(stepped.c.previous_step, 0))
    ranked = (
        select(stepped)
        .where(or_(stepped.c.repeat == 1, due))
        .order_by(stepped.c.value.desc(), stepped.c.last_visit_date.asc(), stepped.c.id.asc())
    )
    # A LIMIT (or OFFSET 0) keeps PostgreSQL from flattening this subquery: the probes below then run only on
    # the ranked rows, and with a cap the sort keeps just the top `cap` (a bounded heap, not a full sort).
    ranked = ranked.limit(cap) if cap is not None else ranked.offset(0)
    return ranked.subquery("ranked")


def _probed(top: Any, reference: _Reference, *, postgres: bool) -> Any:
    """The ranked rows with what the pipeline needs (name, phone, the raw personal and salon rows) and the three
    per-row probes: a booking by client id, one by phone, an attended visit, each since the lapse began."""
    c = Client
    p = ClientPersonalizedInterval
    s = ServiceReactivationInterval
    b = Booking
    a = AppointmentCache
    company_id = reference.company.id
    booking_after, visit_after = _after_lapse(top, reference, postgres=postgres)
    active = not_cancelled()
    return (
        select(
            top,
            c.name,
            c.phone,
            c.last_services,
            p.personal_interval_days,
            p.visit_count.label("personal_visits"),
            p.consistency_score,
            s.median_interval_days,
            s.sample_size,
            s.is_active,
            _probe(b.company_id == company_id, b.client_id == top.c.id, booking_after, active).label(
                "booked_by_client"
            ),
            _probe(b.company_id == company_id, b.client_phone_key == top.c.phone_key, booking_after, active).label(
                "booked_by_phone"
            ),
            _probe(a.company_id == company_id, a.client_id == top.c.id, a.attendance == 1, visit_after).label(
                "visited_since"
            ),
        )
        .join(c, and_(c.company_id == company_id, c.id == top.c.id))
        .outerjoin(p, and_(p.company_id == company_id, p.client_id == top.c.id, p.service_id == top.c.service_id))
        .outerjoin(s, and_(s.company_id == company_id, s.service_id == top.c.service_id))
        .order_by(top.c.value.desc(), top.c.last_visit_date.asc(), top.c.id.asc())
    )


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


def _first_title(raw: Any) -> str | None:
    """The title of the first item of clients.last_services, if it has one."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    if isinstance(raw, list) and raw and isinstance(raw[0], dict):
        title = raw[0].get("title")
        if isinstance(title, str) and title.strip():
            return title.strip()[:200]
    return None


def _due_client(row: Any, reference: _Reference, *, phone_e164: str | None) -> DueClient | None:
    service_id = row.service_id if isinstance(row.service_id, int) else None
    title = reference.titles.get(service_id) if service_id is not None else None
    if title is None:
        title = _first_title(row.last_services)
    personal = None
    if row.personal_interval_days is not None:
        personal = PersonalRhythm(row.personal_interval_days, row.personal_visits - 1, row.consistency_score)
    service = None
    if row.median_interval_days is not None:
        service = ServiceAverage(row.median_interval_days, row.sample_size, row.is_active)
    interval = choose_interval(
        personal=personal,
        service=service,
        industry=reference.industry.get(service_id) if service_id is not None else None,
        service_id=service_id,
        service_name=title,
    )
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
    return DueClient(
        client_id=row.id,
        name=row.name,
        phone=row.phone,
        phone_e164=phone_e164,
        last_visit_date=last_visit,
        days_inactive=row.days_inactive,
        last_service_id=service_id,
        last_service_name=title,
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
