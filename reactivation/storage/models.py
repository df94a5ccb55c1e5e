"""SQLAlchemy 2 typed models: the tables the booking-system sync writes, and the tables this product owns."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Interval,
    MetaData,
    Numeric,
    SmallInteger,
    Text,
    TypeDecorator,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from reactivation.core.vocabulary import RunStatus, Status
from reactivation.storage.computed_columns import LastServiceId, phone_key_expression


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp with time zone that always comes back aware: SQLite stores none, so its values are UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            # Naive values are taken as UTC, the convention of every query written for SQLite here.
            value = value.replace(tzinfo=dt.UTC)
        if dialect.name == "sqlite":
            return value.astimezone(dt.UTC).replace(tzinfo=None)
        return value

    def coerce_compared_value(self, op: Any, value: Any) -> Any:
        # `timestamp + timedelta` binds the timedelta as an interval, not as another timestamp.
        if isinstance(value, dt.timedelta):
            return Interval()
        return super().coerce_compared_value(op, value)

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


# JSONB on PostgreSQL (indexable, compact), plain JSON text on SQLite.
JSONType = JSON().with_variant(JSONB(), "postgresql")
# BIGINT identity on PostgreSQL; SQLite only auto-increments an INTEGER PRIMARY KEY.
BigIdentity = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# The statuses the database accepts on a history row (migration t0010 wrote the same list, frozen).
HISTORY_STATUS_CHECK = "status IN (" + ", ".join(f"'{status}'" for status in Status) + ")"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _now() -> Any:
    # The database's clock is only a safety net for rows the booking-system sync writes without the column: every
    # write of this product sets its instants from the run's `now`, which the rows are later compared with.
    return mapped_column(UTCDateTime(), server_default=func.current_timestamp(), nullable=False)


# --- Tables the booking-system sync writes; this product only reads them. ---------------------------------


class Company(Base):
    __tablename__ = "companies"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    timezone: Mapped[str] = mapped_column(Text, nullable=False, server_default="Europe/Moscow")
    country: Mapped[str] = mapped_column(Text, nullable=False, server_default="RU")
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    settings: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, server_default=text("'{}'"))
    # Written by `reactivation demo` or `seed-demo` (synthetic): only such a company may be replaced by them.
    is_demo: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    created_at: Mapped[dt.datetime] = _now()


class Client(Base):
    __tablename__ = "clients"
    __table_args__ = (
        Index("ix_clients_company_last_visit", "company_id", "last_visit_date"),
        Index("ix_clients_company_phone", "company_id", "phone"),
        # The due selection looks at the most valuable clients first.
        Index("ix_clients_company_spent", "company_id", "total_spent"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    company_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    name: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(Text)
    # E.164 computed by the database from `phone` (see storage/computed_columns.py); never written by anyone.
    phone_key: Mapped[str | None] = mapped_column(Text, Computed(phone_key_expression("phone"), persisted=True))
    last_visit_date: Mapped[dt.date | None] = mapped_column(Date)
    visit_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    # Most recent first: [{"id": <service yclients_id>, "title": "..."}].
    last_services: Mapped[Any] = mapped_column(JSONType, nullable=False, server_default=text("'[]'"))
    # The first item's id, computed by the database (see storage/computed_columns.py).
    last_service_id: Mapped[int | None] = mapped_column(
        BigInteger, Computed(LastServiceId("last_services"), persisted=True)
    )
    total_spent: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False, server_default="0")
    blacklisted: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    favorite_staff_ids: Mapped[Any] = mapped_column(JSONType, nullable=False, server_default=text("'[]'"))
    preferred_time_slots: Mapped[Any] = mapped_column(JSONType, nullable=False, server_default=text("'[]'"))


class Service(Base):
    __tablename__ = "services"
    __table_args__ = (UniqueConstraint("company_id", "yclients_id", name="uq_services_company_yclients"),)

    id: Mapped[int] = mapped_column(BigIdentity, Identity(), primary_key=True)
    company_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    yclients_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    title: Mapped[str] = mapped_column(Text, nullable=False)


class Booking(Base):
    __tablename__ = "bookings"
    __table_args__ = (
        Index("ix_bookings_company_client_datetime", "company_id", "client_id", "datetime"),
        Index("ix_bookings_company_phone_datetime", "company_id", "client_phone", "datetime"),
        Index("ix_bookings_company_created", "company_id", "created_at"),
        # The due selection's "booked since the lapse began" probe by phone, whatever format the sync wrote.
        Index("ix_bookings_company_phone_key_datetime", "company_id", "client_phone_key", "datetime"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    company_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    client_id: Mapped[int | None] = mapped_column(BigInteger)
    client_phone: Mapped[str | None] = mapped_column(Text)
    # E.164 computed by the database from `client_phone` (see storage/computed_columns.py).
    client_phone_key: Mapped[str | None] = mapped_column(
        Text, Computed(phone_key_expression("client_phone"), persisted=True)
    )
    datetime: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False)
    # 'deleted' means cancelled.
    status: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = _now()


class AppointmentCache(Base):
    __tablename__ = "appointments_cache"
    __table_args__ = (
        Index("ix_appointments_company_client_dt", "company_id", "client_id", "appointment_datetime"),
        Index("ix_appointments_company_dt", "company_id", "appointment_datetime"),
    )

    id: Mapped[int] = mapped_column(BigIdentity, Identity(), primary_key=True)
    company_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    client_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    service_ids: Mapped[Any] = mapped_column(JSONType, nullable=False, server_default=text("'[]'"))
    appointment_datetime: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False)
    # 1 = the client came.
    attendance: Mapped[int | None] = mapped_column(SmallInteger)


# --- Tables this product owns. -------------------------------------------------------------------------------


class IndustryStandardInterval(Base):
    __tablename__ = "industry_standard_intervals"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    category_key: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    category_name: Mapped[str] = mapped_column(Text, nullable=False)
    interval_days: Mapped[int] = mapped_column(Integer, nullable=False)
    min_days: Mapped[int | None] = mapped_column(Integer)
    max_days: Mapped[int | None] = mapped_column(Integer)
    keywords: Mapped[list[str]] = mapped_column(JSONType, nullable=False)
    service_type: Mapped[str | None] = mapped_column(Text)
    confidence_score: Mapped[Decimal] = mapped_column(Numeric(3, 2), nullable=False, server_default="0.75")
    created_at: Mapped[dt.datetime] = _now()


class ServiceReactivationInterval(Base):
    __tablename__ = "service_reactivation_intervals"
    __table_args__ = (
        UniqueConstraint("company_id", "service_id", name="uq_service_intervals_company_service"),
        Index("ix_service_intervals_lookup", "company_id", "service_id", "is_active"),
    )

    id: Mapped[int] = mapped_column(BigIdentity, Identity(), primary_key=True)
    company_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # The service's yclients_id, as in clients.last_services and appointments_cache.service_ids.
    service_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    service_name: Mapped[str | None] = mapped_column(Text)
    median_interval_days: Mapped[int] = mapped_column(Integer, nullable=False)
    avg_interval_days: Mapped[int | None] = mapped_column(Integer)
    min_interval_days: Mapped[int | None] = mapped_column(Integer)
    max_interval_days: Mapped[int | None] = mapped_column(Integer)
    stddev_days: Mapped[Decimal | None] = mapped_column(Numeric(7, 2))
    sample_size: Mapped[int] = mapped_column(Integer, nullable=False)
    last_calculated: Mapped[dt.datetime] = _now()
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))


class DueDate(Base):
    """A client's due date kept ahead of time: the interval the waterfall chose for the lapse and the day its next
    step's interval count is reached (see reactivation/storage/due_dates.py for who keeps it).

    `next_due_on` = last visit + (previous step + 1) × interval: the next step falls due the company's grace days
    later (a setting that may change, so the selection adds it). STALE marks a row to recompute (a trigger on
    `clients` sets it when the lapse, the last service or the value changes; a new client gets such a row); NEVER a
    lapse whose last step is taken.
    """

    __tablename__ = "reactivation_due_dates"
    __table_args__ = (
        Index("ix_due_dates_company_next_due", "company_id", "next_due_on"),
        # The daily top-N walks the most valuable first when many are due.
        Index("ix_due_dates_company_value", "company_id", "total_spent"),
    )

    company_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    client_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    # The lapse (the client's last visit) and the last service the row was computed for; NULL until computed.
    last_visit_date: Mapped[dt.date | None] = mapped_column(Date)
    last_service_id: Mapped[int | None] = mapped_column(BigInteger)
    total_spent: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    interval_days: Mapped[int | None] = mapped_column(Integer)
    interval_source: Mapped[str | None] = mapped_column(Text)
    confidence: Mapped[float | None] = mapped_column(Float)
    evidence: Mapped[Any] = mapped_column(JSONType, nullable=True)
    # The latest step taken in the lapse when the row was written (a lapse whose flow stopped counts as 3).
    previous_step: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default="0")
    next_due_on: Mapped[dt.date] = mapped_column(Date, nullable=False)
    computed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class ServiceIntervalCount(Base):
    """How many of a salon's intervals for a service were `interval_days` long and ended on `ended_on`.

    The salon medians' raw material, kept between runs of the averages job on PostgreSQL: an incremental run
    recounts only the intervals that end on or after the first day whose visits may have changed, and keeps the
    rest (see reactivation/timing/averages/postgres.py). Intervals that start before the salon window are dropped.
    """

    __tablename__ = "service_interval_counts"

    company_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    service_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    # The company's local date of the visit that closed the interval.
    ended_on: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    interval_days: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    intervals: Mapped[int] = mapped_column(Integer, nullable=False)


class ClientPersonalizedInterval(Base):
    __tablename__ = "client_personalized_intervals"
    __table_args__ = (
        UniqueConstraint("company_id", "client_id", "service_id", name="uq_personal_intervals_company_client_service"),
    )

    id: Mapped[int] = mapped_column(BigIdentity, Identity(), primary_key=True)
    company_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    client_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    service_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    personal_interval_days: Mapped[int] = mapped_column(Integer, nullable=False)
    # Attended visits the intervals come from (intervals = visit_count - 1).
    visit_count: Mapped[int] = mapped_column(Integer, nullable=False)
    consistency_score: Mapped[Decimal | None] = mapped_column(Numeric(3, 2))
    last_calculated: Mapped[dt.datetime] = _now()


class AveragesState(Base):
    """The averages job's last run per company: what the next, incremental run starts from."""

    __tablename__ = "reactivation_averages_state"

    company_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    # The reference time the run was given (not the wall clock).
    calculated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False)
    full_calculated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False)
    # The highest appointments_cache.id seen: rows above it are new to the next run.
    max_appointment_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    mode: Mapped[str] = mapped_column(Text, nullable=False)  # 'full' | 'incremental'
    clients_recomputed: Mapped[int] = mapped_column(Integer, nullable=False)


class AveragesDayDigest(Base):
    """A digest of one local day's appointment rows as the averages job last read them (timing/day_digests.py)."""

    __tablename__ = "reactivation_averages_day_digests"

    company_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    rows: Mapped[int] = mapped_column(Integer, nullable=False)
    digest: Mapped[int] = mapped_column(BigInteger, nullable=False)


class CampaignRun(Base):
    __tablename__ = "campaign_runs"
    __table_args__ = (
        # One real run per company and local date. A dry run has a record of its own (as many as are started) and
        # never takes the real run's place, so the key covers real runs only.
        Index(
            "uq_campaign_runs_company_date",
            "company_id",
            "run_date",
            unique=True,
            postgresql_where=text("NOT dry_run"),
            sqlite_where=text("NOT dry_run"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIdentity, Identity(), primary_key=True)
    company_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # The company's local date the run is for.
    run_date: Mapped[dt.date] = mapped_column(Date, nullable=False)
    # planned -> running -> done (vocabulary.RunStatus)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default=RunStatus.PLANNED.value)
    trigger: Mapped[str] = mapped_column(Text, nullable=False, server_default="beat")
    dry_run: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    due_count: Mapped[int | None] = mapped_column(Integer)
    claimed_count: Mapped[int | None] = mapped_column(Integer)
    holdout_count: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = _now()
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class ReactivationHistory(Base):
    """One row per planned contact: the audit log, the outbox and the funnel."""

    __tablename__ = "client_reactivation_history"
    __table_args__ = (
        CheckConstraint(HISTORY_STATUS_CHECK, name="status"),
        # Exactly once per client, lapse (identified by its last visit) and step, and once more after a snooze
        # (snooze_repeat). Dry runs write rows too, and must not take a real contact's place, so the key covers
        # real rows only.
        Index(
            "uq_history_client_lapse_step",
            "company_id",
            "client_id",
            "last_visit_date",
            "step",
            "snooze_repeat",
            unique=True,
            postgresql_where=text("NOT dry_run"),
            sqlite_where=text("NOT dry_run"),
        ),
        # The seed's "(client_id, message_sent_at DESC)": a B-tree is read backwards just as fast, and an
        # ascending index reflects the same on PostgreSQL and SQLite, so `alembic check` stays clean on both.
        Index("ix_history_client_sent", "client_id", "message_sent_at"),
        Index("ix_history_company_client_created", "company_id", "client_id", "created_at"),
        Index(
            "ix_history_company_response_booking",
            "company_id",
            "response_received",
            "booking_created",
            "message_sent_at",
        ),
        Index("ix_history_company_phone_sent", "company_id", "phone", "message_sent_at"),
        Index("ix_history_company_status_updated", "company_id", "status", "updated_at"),
        Index("ix_history_run", "campaign_run_id"),
        # The sweep's look-up of the few rows whose hand-over Redis has not taken yet.
        Index(
            "ix_history_handover_pending",
            "company_id",
            postgresql_where=text("handover_pending IS NOT NULL"),
            sqlite_where=text("handover_pending IS NOT NULL"),
        ),
        # The delivery webhooks find a row by the provider's message id (they know no company).
        Index("ix_history_provider_message_id", "provider_message_id"),
    )

    id: Mapped[int] = mapped_column(BigIdentity, Identity(), primary_key=True)
    company_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    client_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    campaign_run_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("campaign_runs.id", ondelete="SET NULL"))
    # E.164, as normalized when the row was claimed (None when the client's phone is unusable).
    phone: Mapped[str | None] = mapped_column(Text)

    # The win-back step: 1 gentle, 2 offer, 3 win_back; campaign dormant_30/60/90 for the AI admin.
    step: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    message_type: Mapped[str] = mapped_column(Text, nullable=False)
    campaign: Mapped[str | None] = mapped_column(Text)
    # vocabulary.Status: claimed, interval_selected, generated, sending, delivered (in flight);
    # sent, skipped, failed, unknown, holdout (final). The database checks it (HISTORY_STATUS_CHECK).
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default=Status.CLAIMED.value)
    skip_reason: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    # Not to be sent before this instant (the next send window); None = as soon as possible.
    send_after: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    dry_run: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))

    message_sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    message_text: Mapped[str | None] = mapped_column(Text)
    generator: Mapped[str | None] = mapped_column(Text)  # 'gemini' | 'template'
    variant: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(Text)
    generator_fallback_reason: Mapped[str | None] = mapped_column(Text)
    provider: Mapped[str | None] = mapped_column(Text)
    provider_message_id: Mapped[str | None] = mapped_column(Text)
    sending_started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # cloud_api: the approved template the client received (message_text is its body with the parameters filled).
    template_name: Mapped[str | None] = mapped_column(Text)
    template_language: Mapped[str | None] = mapped_column(Text)
    # What the provider reported later through its webhook (provider's instants): the truth behind "sent".
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    read_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    failed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # The provider's code for the latest failure (Meta's "131049"), reported by the webhook or the send's answer.
    delivery_error_code: Mapped[str | None] = mapped_column(Text)
    # How often the message was scheduled again after a delivery failure (131049); part of the idempotency key.
    resend_count: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default="0")
    # A task for this row waits on a countdown until then (a rate limit, a retry): the sweep leaves the row alone.
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    last_service_id: Mapped[int | None] = mapped_column(BigInteger)
    last_service_name: Mapped[str | None] = mapped_column(Text)
    inactive_days: Mapped[int] = mapped_column(Integer, nullable=False)
    last_visit_date: Mapped[dt.date] = mapped_column(Date, nullable=False)
    due_date: Mapped[dt.date | None] = mapped_column(Date)

    interval_days: Mapped[int] = mapped_column(Integer, nullable=False)
    interval_source: Mapped[str] = mapped_column(Text, nullable=False)
    confidence_score: Mapped[Decimal | None] = mapped_column(Numeric(3, 2))
    interval_evidence: Mapped[Any] = mapped_column(JSONType, nullable=False, server_default=text("'{}'"))

    context_saved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    context_error: Mapped[str | None] = mapped_column(Text)
    # What the AI admin's Redis keys still owe this row (vocabulary.PendingHandover), recorded with the fact that
    # caused it (a reply, a booking) and cleared once Redis has taken it; the sweep and the next reply repeat it.
    handover_pending: Mapped[str | None] = mapped_column(Text)

    response_received: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    response_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    response_type: Mapped[str | None] = mapped_column(Text)
    response_text: Mapped[str | None] = mapped_column(Text)
    # Why (replies.labels.ReplyReason) and, for not_now, the date the reply named (its local date's reading).
    response_reason: Mapped[str | None] = mapped_column(Text)
    response_until: Mapped[dt.date | None] = mapped_column(Date)
    # The same step sent again once its snooze ended (see ReplyHold); the claim's key allows it once.
    snooze_repeat: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))

    booking_created: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    booking_id: Mapped[int | None] = mapped_column(BigInteger)
    booking_created_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # Set when the lapse's flow stops early (a negative reply, an opt-out, a booking).
    flow_stopped_reason: Mapped[str | None] = mapped_column(Text)
    anonymized_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    created_at: Mapped[dt.datetime] = _now()
    # Set from the run's `now` by every write (see reactivation/storage/history.py); the defaults are a safety net.
    updated_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime(), server_default=func.current_timestamp(), onupdate=func.now(), nullable=False
    )


class ReplyHold(Base):
    """A lapse held by a reply: snoozed until a date (not_now), or left alone while the phone stays (moved_away).

    One per client and lapse. A snooze ends on `until`: the same step is due again, once (`ended_at` and
    `repeat_history_id` are set when that row is claimed; `ended_at` alone when the lapse stopped first). A move
    holds while the client's phone key equals `phone`; a new visit is a new lapse. Not an opt-out: consent and the
    opt-out list are untouched.
    """

    __tablename__ = "reactivation_reply_holds"
    __table_args__ = (
        CheckConstraint("kind IN ('snoozed', 'moved')", name="kind"),
        Index("ix_reply_holds_company_created", "company_id", "created_at"),
    )

    company_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    client_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    last_visit_date: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    # The step the reply answered: the one sent again after a snooze.
    step: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    until: Mapped[dt.date | None] = mapped_column(Date)
    # E.164 when the reply came: a move holds only while the client keeps this phone.
    phone: Mapped[str | None] = mapped_column(Text)
    history_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[dt.datetime] = _now()
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    repeat_history_id: Mapped[int | None] = mapped_column(BigInteger)


class OptOut(Base):
    """Permanent per company and phone; kept apart from `clients` so that a re-sync cannot undo it."""

    __tablename__ = "reactivation_opt_outs"
    # The due selection probes each candidate's opt-out by client id as well as by phone (the key).
    __table_args__ = (Index("ix_opt_outs_company_client", "company_id", "client_id"),)

    company_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # E.164
    phone: Mapped[str] = mapped_column(Text, primary_key=True)
    client_id: Mapped[int | None] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(Text, nullable=False, server_default="reply")
    reason_text: Mapped[str | None] = mapped_column(Text)
    history_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = _now()


class Consent(Base):
    """The consent ledger (38-FZ art. 18): who agreed to advertising messages, when, how, on which text."""

    __tablename__ = "reactivation_consents"
    __table_args__ = (Index("ix_consents_company_phone_channel", "company_id", "phone", "channel"),)

    id: Mapped[int] = mapped_column(BigIdentity, Identity(), primary_key=True)
    company_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    phone: Mapped[str] = mapped_column(Text, nullable=False)
    channel: Mapped[str] = mapped_column(Text, nullable=False, server_default="whatsapp")
    granted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False)
    source: Mapped[str] = mapped_column(Text, nullable=False)
    text_version: Mapped[str | None] = mapped_column(Text)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = _now()


class GeminiQueued(Base):
    """A history row waiting for a Gemini batch: the queue the batching task serves (reactivation.flow.batching).

    A row enters when its chain's generate step runs and leaves when its batch wrote its message. A batch leases its
    rows (`lease_until`, `lease_token`) before it asks Gemini, so that two batches never write one row and a batch
    whose worker died gives its rows back once the lease has passed.
    """

    __tablename__ = "gemini_queue"
    __table_args__ = (Index("ix_gemini_queue_company_queued", "company_id", "queued_at"),)

    history_id: Mapped[int] = mapped_column(
        BigInteger,
        ForeignKey("client_reactivation_history.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    )
    company_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    queued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False)
    # How often a batch gave this row back to wait (a per-minute quota); bounded by GEMINI_MAX_ATTEMPTS.
    attempts: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default="0")
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    lease_token: Mapped[str | None] = mapped_column(Text)


class GeminiRequest(Base):
    """One Gemini request's usage, per company (and run) it served: a batch of several salons' rows is one request
    and one row here per company, each with its share of the tokens (by its share of the items)."""

    __tablename__ = "gemini_requests"
    __table_args__ = (
        Index("ix_gemini_requests_company_requested", "company_id", "requested_at"),
        Index("ix_gemini_requests_run", "campaign_run_id"),
    )

    id: Mapped[int] = mapped_column(BigIdentity, Identity(), primary_key=True)
    # The same for every company's row of one HTTP request.
    request_key: Mapped[str] = mapped_column(Text, nullable=False)
    company_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    campaign_run_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("campaign_runs.id", ondelete="SET NULL"))
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False)
    model: Mapped[str] = mapped_column(Text, nullable=False)
    # "low", "default", "budget:512": what the request said about thinking.
    thinking: Mapped[str] = mapped_column(Text, nullable=False)
    # This company's items in the request, all the request's items, and how many of this company's became messages.
    items: Mapped[int] = mapped_column(Integer, nullable=False)
    batch_items: Mapped[int] = mapped_column(Integer, nullable=False)
    written: Mapped[int] = mapped_column(Integer, nullable=False)
    prompt_tokens: Mapped[int] = mapped_column(Integer, nullable=False)
    output_tokens: Mapped[int] = mapped_column(Integer, nullable=False)
    thinking_tokens: Mapped[int] = mapped_column(Integer, nullable=False)
    # "ok", "truncated", "rate_limited:minute", "server_error", ...: what came of the request.
    outcome: Mapped[str] = mapped_column(Text, nullable=False)
    finish_reason: Mapped[str | None] = mapped_column(Text)
