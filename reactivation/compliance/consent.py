"""The consent ledger (38-FZ art. 18): who agreed to advertising messages, when, how, and on which text.

The ledger is append-only facts: a grant is a row (phone, channel, granted_at, source, text_version); a revocation
stamps revoked_at and the reason on the phone's open grants. With the company setting consent_mode='required' only
phones with a grant in force are contacted (`consent_filter` is the clause the selection adds); with 'assumed' (the
default) the salon declares it collected consent elsewhere and the ledger is informative.

Importing a CSV is idempotent: a grant already in the ledger (same phone, channel and granted_at) is left as it
is, revoked or not, so re-importing an old file never revives a revoked consent. A grant for a phone that opted out
is not imported either: an opt-out is permanent. Bad rows are reported with their line and reason and the rest are
imported.
"""

from __future__ import annotations

import csv
import logging
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, exists, insert, or_, select, true, update
from sqlalchemy.orm import QueryableAttribute, Session

from reactivation.core.instants import as_aware
from reactivation.core.phones import InvalidPhone, mask_phone, normalize_phone
from reactivation.storage.companies import CompanyConfig, load_company
from reactivation.storage.models import Consent, OptOut

log = logging.getLogger(__name__)

WHATSAPP = "whatsapp"
REQUIRED_COLUMNS = ("phone", "granted_at", "source")
OPTIONAL_COLUMNS = ("text_version", "channel")
# Source and text-version labels are short identifiers ("salon form 2025", "v3"); longer input is cut.
MAX_LABEL = 200
MAX_REASON = 500
_IN_CHUNK = 5_000


@dataclass(frozen=True)
class ConsentGrant:
    line: int
    phone: str
    channel: str
    granted_at: datetime
    source: str
    text_version: str | None


@dataclass(frozen=True)
class RowProblem:
    line: int
    reason: str


@dataclass
class ImportReport:
    """What an import did: rows read, grants added, grants already known, and the rows it did not import."""

    rows: int = 0
    imported: int = 0
    unchanged: int = 0
    skipped: list[RowProblem] = field(default_factory=list)  # valid, but revoked or opted out since
    problems: list[RowProblem] = field(default_factory=list)  # could not be read

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "imported": self.imported,
            "unchanged": self.unchanged,
            "skipped": [{"line": p.line, "reason": p.reason} for p in self.skipped],
            "problems": [{"line": p.line, "reason": p.reason} for p in self.problems],
        }


def _label(value: str | None, limit: int = MAX_LABEL) -> str | None:
    if value is None:
        return None
    clean = "".join(" " if unicodedata.category(ch) in {"Cc", "Cf"} else ch for ch in value).strip()
    return clean[:limit] or None


def _parse_granted_at(raw: str, tz: ZoneInfo) -> datetime:
    text = raw.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), tz)
        moment = datetime.fromisoformat(text.replace(" ", "T", 1))
    except ValueError:
        raise ValueError(f"granted_at {text[:40]!r} is not a date (YYYY-MM-DD or YYYY-MM-DDTHH:MM[+03:00])") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=tz)


def parse_consent_csv(
    lines: Iterable[str], *, now: datetime, region: str = "RU", tz: ZoneInfo | None = None
) -> tuple[list[ConsentGrant], list[RowProblem], int]:
    """Grants and problems from CSV text with a header (phone, granted_at, source[, text_version][, channel]).

    A date without a time is midnight and a time without an offset is local, both in `tz`. Returns the grants,
    the problem rows, and how many data rows there were. A file without the required columns raises ValueError.
    """
    zone = tz or ZoneInfo("UTC")
    reader = csv.reader(line.lstrip("\ufeff") if i == 0 else line for i, line in enumerate(lines))
    header = next(reader, None)
    if header is None:
        raise ValueError("the CSV file is empty: expected a header line with " + ", ".join(REQUIRED_COLUMNS))
    columns = [name.strip().lower() for name in header]
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise ValueError(f"the CSV header lacks {', '.join(missing)} (it has: {', '.join(columns) or 'nothing'})")
    # A row may stop early when every column it leaves out is optional (a spreadsheet drops empty trailing cells).
    needed = max(columns.index(name) + 1 for name in REQUIRED_COLUMNS)
    grants: list[ConsentGrant] = []
    problems: list[RowProblem] = []
    count = 0
    for values in reader:
        line = reader.line_num
        if not any(v.strip() for v in values):
            continue
        count += 1
        if not needed <= len(values) <= len(columns):
            expected = f"{len(columns)}" if needed == len(columns) else f"{needed} to {len(columns)}"
            problems.append(RowProblem(line, f"expected {expected} columns, got {len(values)}"))
            continue
        row = dict(zip(columns, values, strict=False))
        try:
            phone = normalize_phone(row["phone"], region=region)
            granted_at = _parse_granted_at(row["granted_at"], zone)
            if granted_at > now:
                raise ValueError(f"granted_at {granted_at:%Y-%m-%d %H:%M} is in the future")
            source = _label(row["source"])
            if not source:
                raise ValueError("source is empty: say where the consent was collected")
        except InvalidPhone as exc:
            problems.append(RowProblem(line, f"phone: {exc.reason}"))
            continue
        except ValueError as exc:
            problems.append(RowProblem(line, str(exc)))
            continue
        channel = _label(row.get("channel")) or WHATSAPP
        grants.append(
            ConsentGrant(
                line=line,
                phone=phone,
                channel=channel.lower(),
                granted_at=granted_at.astimezone(UTC),
                source=source,
                text_version=_label(row.get("text_version")),
            )
        )
    return grants, problems, count


def _chunks(values: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def _utc(moment: datetime) -> datetime:
    return as_aware(moment).astimezone(UTC)


def import_consents(
    session: Session, *, company_id: int, rows: Iterable[str], now: datetime, channel: str | None = None
) -> ImportReport:
    """Import grants from CSV text lines (see the module docstring); returns what was imported and what was not."""
    company = load_company(session, company_id=company_id)
    grants, problems, count = parse_consent_csv(rows, now=now, region=company.country, tz=company.tz)
    if channel is not None:
        grants = [ConsentGrant(g.line, g.phone, channel, g.granted_at, g.source, g.text_version) for g in grants]
    report = ImportReport(rows=count, problems=problems)
    phones = sorted({g.phone for g in grants})
    known: set[tuple[str, str, datetime]] = set()
    revoked: dict[tuple[str, str], datetime] = {}
    opted_out: dict[str, datetime] = {}
    for chunk in _chunks(phones):
        for phone, ch, granted_at, revoked_at in session.execute(
            select(Consent.phone, Consent.channel, Consent.granted_at, Consent.revoked_at).where(
                Consent.company_id == company_id, Consent.phone.in_(chunk)
            )
        ):
            known.add((phone, ch, _utc(granted_at)))
            if revoked_at is not None:
                ended, previous = _utc(revoked_at), revoked.get((phone, ch))
                revoked[(phone, ch)] = ended if previous is None else max(previous, ended)
        for phone, created_at in session.execute(
            select(OptOut.phone, OptOut.created_at).where(OptOut.company_id == company_id, OptOut.phone.in_(chunk))
        ):
            opted_out[phone] = _utc(created_at)

    new_rows: list[dict[str, Any]] = []
    for grant in grants:
        key = (grant.phone, grant.channel, grant.granted_at)
        if key in known:
            report.unchanged += 1
            continue
        if grant.phone in opted_out:
            report.skipped.append(RowProblem(grant.line, f"opted out on {opted_out[grant.phone]:%Y-%m-%d}"))
            continue
        last_revocation = revoked.get((grant.phone, grant.channel))
        if last_revocation is not None and grant.granted_at <= last_revocation:
            report.skipped.append(RowProblem(grant.line, f"revoked on {last_revocation:%Y-%m-%d}, after this grant"))
            continue
        known.add(key)
        new_rows.append(
            {
                "company_id": company_id,
                "phone": grant.phone,
                "channel": grant.channel,
                "granted_at": grant.granted_at,
                "source": grant.source,
                "text_version": grant.text_version,
                "created_at": now,
            }
        )
    if new_rows:
        session.execute(insert(Consent), new_rows)
    report.imported = len(new_rows)
    log.info(
        "consents imported",
        extra={
            "company_id": company_id,
            "rows": report.rows,
            "imported": report.imported,
            "unchanged": report.unchanged,
            "skipped": len(report.skipped),
            "problems": len(report.problems),
        },
    )
    return report


def revoke_consent(
    session: Session, *, company_id: int, phone: str, reason: str, now: datetime, channel: str | None = None
) -> int:
    """Stamp revoked_at on the phone's open grants (every channel unless one is given); returns how many.

    The reply handler calls this for an opt-out, so that the ledger shows when and why consent ended.
    """
    company = load_company(session, company_id=company_id)
    e164 = normalize_phone(phone, region=company.country)
    conditions = [Consent.company_id == company_id, Consent.phone == e164, Consent.revoked_at.is_(None)]
    if channel is not None:
        conditions.append(Consent.channel == channel)
    revoked = session.execute(
        update(Consent)
        .where(*conditions)
        .values(revoked_at=now, revoked_reason=_label(reason, MAX_REASON) or "revoked")
        .returning(Consent.id)
        .execution_options(synchronize_session=False)
    ).all()
    log.info("consent revoked", extra={"company_id": company_id, "phone": mask_phone(e164), "grants": len(revoked)})
    return len(revoked)


def _in_force(company_id: int, phone: Any, at: datetime, channel: str) -> ColumnElement[bool]:
    return exists().where(
        Consent.company_id == company_id,
        Consent.channel == channel,
        Consent.phone == phone,
        Consent.granted_at <= at,
        or_(Consent.revoked_at.is_(None), Consent.revoked_at > at),
    )


def has_consent(session: Session, *, company_id: int, phone: str, at: datetime, channel: str = WHATSAPP) -> bool:
    """Whether the phone had a grant in force at `at` (granted before, not revoked by then)."""
    company = load_company(session, company_id=company_id)
    e164 = normalize_phone(phone, region=company.country)
    return bool(session.scalar(select(_in_force(company_id, e164, at, channel))))


def consented_phones(
    session: Session, *, company_id: int, phones: Iterable[str], at: datetime, channel: str = WHATSAPP
) -> set[str]:
    """Which of these E.164 phones have a grant in force at `at`: one query per 5,000 phones."""
    wanted = sorted(set(phones))
    found: set[str] = set()
    for chunk in _chunks(wanted):
        found.update(
            session.scalars(
                select(Consent.phone)
                .where(
                    Consent.company_id == company_id,
                    Consent.channel == channel,
                    Consent.phone.in_(chunk),
                    Consent.granted_at <= at,
                    or_(Consent.revoked_at.is_(None), Consent.revoked_at > at),
                )
                .distinct()
            )
        )
    return found


def consent_filter(
    company: CompanyConfig,
    *,
    phone: QueryableAttribute[str | None] | ColumnElement[str | None],
    at: datetime,
    channel: str = WHATSAPP,
) -> ColumnElement[bool]:
    """A WHERE clause for the selection: TRUE under consent_mode 'assumed', else a grant in force for `phone`.

    `phone` must be an E.164 expression (for example the history row's phone, or clients.phone once normalized).
    """
    if company.settings.consent_mode != "required":
        return true()
    return _in_force(company.id, phone, at, channel)
