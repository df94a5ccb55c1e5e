"""The embedded default end to end, for a newcomer's first minute: a demo salon's campaign from due clients to
bookings, through the same tasks and chains the workers run (eagerly, in this process).

Nothing here is special to the demo but its data and its printout: the salon is synthetic, the send window is
open all day, messages go to an outbox file, and a handful of replies and bookings are simulated through the
reply handler exactly as the AI admin would call it.

The demo salon has a company id of its own (DEMO_COMPANY_ID, not the 962302 of the README's examples) and is marked
as demo data (`companies.is_demo`). Each run rebuilds it; a company with that id that is not marked (the booking
system's, or one made by hand) is never replaced: the demo stops with an error instead.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import func, select

from reactivation.core.phones import mask_phone
from reactivation.core.settings import DATA_DIR, Settings, load_settings
from reactivation.core.vocabulary import Status, Step
from reactivation.outcomes.attribution import mark_booking_created
from reactivation.outcomes.stats import campaign_stats
from reactivation.replies.handler import handle_reply
from reactivation.runtime import Runtime
from reactivation.storage.history import FINAL, not_dry_run
from reactivation.storage.models import Booking, ReactivationHistory
from reactivation.timing.averages import calculate_averages
from reactivation.timing.waterfall import Source
from reactivation.tools.bulk import load_salon
from reactivation.tools.synthetic import generate_salon

# The demo salon's own company id: no real salon's, and not the 962302 the README's by-hand examples use.
DEMO_COMPANY_ID = 990001
CLIENTS = 400
SEED = 7
OUTBOX = DATA_DIR / "demo-outbox.jsonl"
NOT_DEMO_REMEDY = (
    "The demo writes only its own salon: point DATABASE_URL at another database, or remove that company yourself."
)
# Open all day so the demo sends at any hour; holidays off for the same reason.
SALON_SETTINGS: dict[str, object] = {"send_window_start": "00:00", "send_window_end": "23:59", "skip_holidays": False}
# What the demo's clients write back, in order; one reply per sent message until they run out.
REPLIES = [
    "Да, хочу записаться! Можно в субботу?",
    "А сколько сейчас стоит?",
    "Нет, спасибо, пока не нужно",
    "Отпишите меня, пожалуйста",
    "👍",
    "Запишите на вторник после 18, к Ане",
]


@dataclass
class DemoResult:
    run_date: date
    claimed: int
    sources: Counter[str]
    steps: Counter[str]
    examples: list[tuple[str, str]]
    replies: list[tuple[str, str, str]]
    stats: dict[str, Any]
    outbox: Path
    # Where the rows went, as the operator is told it (DATABASE_URL's password masked).
    database: str
    generator: str
    # Claimed rows that were not sent, by status and reason ("skipped: invalid_phone").
    not_sent: Counter[str]


def demo_settings(base: Settings) -> Settings:
    """The demo's own settings: the outbox, a pace that never holds the demo up, everything else as configured."""
    values = base.model_dump()
    values.update(whatsapp_provider="outbox", whatsapp_outbox_path=OUTBOX, whatsapp_rate_limit="100000/1")
    return load_settings(**values, _env_file=None)


def where_it_writes(settings: Settings) -> str:
    """The demo's first line: the database and Redis it really uses (DATABASE_URL's password masked)."""
    if settings.embedded and settings.database_url.startswith("sqlite"):
        return (
            f"[bold]Embedded default[/bold]: {escape(settings.database_description)}, an in-process Redis stand-in, "
            "tasks run in this process; nothing to install."
        )
    return (
        f"Database: {escape(settings.database_description)} · Redis: {escape(settings.redis_description)} · "
        "tasks run in this process."
    )


def run_demo(rt: Runtime, console: Console, *, now: datetime | None = None) -> DemoResult:
    """Seed, compute averages, run today's campaign through the tasks, simulate replies; return the summary."""
    now = now or datetime.now(UTC)
    OUTBOX.parent.mkdir(parents=True, exist_ok=True)
    OUTBOX.unlink(missing_ok=True)
    with console.status("seeding the demo salon"):
        from zoneinfo import ZoneInfo

        today = now.astimezone(ZoneInfo("Europe/Moscow")).date()
        plan = generate_salon(
            company_id=DEMO_COMPANY_ID, clients=CLIENTS, seed=SEED, today=today, settings=SALON_SETTINGS
        )
        with rt.session() as session:
            load_salon(session, plan, replace=True, remedy=NOT_DEMO_REMEDY)
    console.print(f"[green]✓[/green] seeded {plan.name}: {CLIENTS} clients, {len(plan.appointments)} visits in a year")
    with console.status("computing the salon's service medians and its clients' own rhythms"), rt.session() as session:
        averages = calculate_averages(session, company_id=DEMO_COMPANY_ID, now=now)
    figures = averages.as_dict()
    console.print(
        f"[green]✓[/green] averages: {figures['services_active']} services with a salon median, "
        f"{figures['personal_rows']} client rhythms of their own"
    )

    summary = _run_campaign_with_progress(rt, console, run_date=today)
    with rt.session() as session:
        rows = list(
            session.scalars(
                select(ReactivationHistory)
                .where(ReactivationHistory.company_id == DEMO_COMPANY_ID, not_dry_run())
                .order_by(ReactivationHistory.id)
            )
        )
    sent = [r for r in rows if r.status == Status.SENT]
    replies = _simulate_replies(rt, sent, now=now)
    with rt.session() as session:
        stats = campaign_stats(session, company_id=DEMO_COMPANY_ID, since=None, until=None)
    examples = []
    for message_type in (step.message_type for step in Step):
        example = next((r for r in sent if r.message_type == message_type), None)
        if example is not None and example.message_text:
            examples.append((message_type, example.message_text))
    generators = Counter(r.generator for r in sent)
    return DemoResult(
        run_date=today,
        claimed=summary["claimed"],
        sources=Counter(r.interval_source for r in rows),
        steps=Counter(r.message_type for r in sent),
        examples=examples,
        replies=replies,
        stats=stats,
        outbox=OUTBOX,
        database=rt.settings.database_description,
        generator=", ".join(f"{name} {count}" for name, count in generators.items()) or "-",
        not_sent=Counter(
            f"{r.status}: {r.skip_reason or (r.error or '-')[:60]}" for r in rows if r.status != Status.SENT
        ),
    )


def _run_campaign_with_progress(rt: Runtime, console: Console, *, run_date: date) -> dict[str, Any]:
    from celery_app.app import configure
    from celery_app.tasks import run_campaign

    app = configure(rt.settings)
    # The same tasks and chains the workers run, here in this one process.
    app.conf.task_always_eager = True
    outcome: dict[str, Any] = {}
    failure: list[BaseException] = []

    def work() -> None:
        try:
            outcome.update(run_campaign.apply(args=(DEMO_COMPANY_ID, run_date.isoformat())).get())
        except BaseException as exc:  # re-raised in the main thread below
            failure.append(exc)

    worker = threading.Thread(target=work, name="demo-campaign", daemon=True)
    with Progress(
        TextColumn("running today's campaign"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("campaign", total=None)
        worker.start()
        while worker.is_alive():
            worker.join(timeout=0.3)
            with rt.session() as session:
                total, done = session.execute(
                    select(
                        func.count(), func.count().filter(ReactivationHistory.status.in_([s.value for s in FINAL]))
                    ).where(ReactivationHistory.company_id == DEMO_COMPANY_ID)
                ).one()
            progress.update(task, total=total or None, completed=done)
    if failure:
        raise failure[0]
    return outcome


def _simulate_replies(rt: Runtime, sent: list[ReactivationHistory], *, now: datetime) -> list[tuple[str, str, str]]:
    """A few clients write back; those who want to book get booked, as the AI admin would do it."""
    results = []
    for index, (row, text) in enumerate(zip(sent, REPLIES, strict=False)):
        moment = now + timedelta(minutes=5 + index)
        answer = handle_reply(rt, company_id=DEMO_COMPANY_ID, phone=row.phone or "", text=text, now=moment)
        if answer["should_start_booking"]:
            booking_id = DEMO_COMPANY_ID * 10_000_000 + 9_000_000 + row.id
            with rt.session() as session:
                session.add(
                    Booking(
                        id=booking_id,
                        company_id=DEMO_COMPANY_ID,
                        client_id=row.client_id,
                        client_phone=row.phone,
                        datetime=moment + timedelta(days=3),
                        status="confirmed",
                        created_at=moment,
                    )
                )
            mark_booking_created(
                rt, company_id=DEMO_COMPANY_ID, phone=row.phone or "", booking_id=booking_id, now=moment
            )
        results.append((mask_phone(row.phone), text, answer["response_type"]))
    return results


def print_summary(console: Console, result: DemoResult, *, gemini: bool) -> None:
    """What the newcomer reads: coverage, messages, replies, the funnel."""
    console.rule(f"Demo salon, campaign of {result.run_date:%Y-%m-%d}")
    console.print(
        "Messages written by [bold]Gemini[/bold]"
        if gemini
        else "Messages written from [bold]templates[/bold] (no GEMINI_API_KEY set): " + result.generator
    )
    total = sum(result.sources.values()) or 1
    coverage = Table(title="Who is due, and which interval said so (waterfall coverage)")
    for column in ("interval source", "clients", "share"):
        coverage.add_column(column, justify="left" if column == "interval source" else "right")
    for source in Source:
        count = result.sources.get(source, 0)
        coverage.add_row(source, str(count), f"{count / total:.0%}")
    console.print(coverage)

    steps = Table(title="Messages sent, by step")
    for column in ("step", "messages"):
        steps.add_column(column)
    for message_type in (step.message_type for step in Step):
        steps.add_row(message_type, str(result.steps.get(message_type, 0)))
    console.print(steps)
    if result.not_sent:
        reasons = ", ".join(f"{reason} × {count}" for reason, count in result.not_sent.most_common())
        console.print(f"Not sent ({sum(result.not_sent.values())}): {reasons}", highlight=False)
    for message_type, text in result.examples:
        console.print(f"  [dim]{message_type}:[/dim] {text}", highlight=False)

    replies = Table(title="Replies, as the AI admin would hand them over")
    for column in ("client", "reply", "class"):
        replies.add_column(column)
    for phone, text, label in result.replies:
        replies.add_row(phone, text, label)
    console.print(replies)

    funnel = result.stats["total"]
    table = Table(title="Funnel (reactivation stats)")
    table.add_column("")
    table.add_column("clients", justify="right")
    for label, key in (
        ("messages sent", "sent"),
        ("replies", "responses"),
        ("  positive", "positive"),
        ("  negative", "negative"),
        ("  neutral", "neutral"),
        ("  opt-outs", "opt_outs"),
        ("bookings", "bookings"),
    ):
        table.add_row(label, str(funnel[key]))
    table.add_row("conversion", f"{funnel['conversion_rate']:.1%}")
    console.print(table)
    console.print(
        f"Outbox: {result.outbox} · Database: {result.database} (company {DEMO_COMPANY_ID}) · "
        "Run it again any time: make demo",
        highlight=False,
        markup=False,
    )
