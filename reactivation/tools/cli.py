"""The `reactivation` command line: what a salon's operator and a developer run by hand.

Start-up stays quick: `reactivation --help` and `reactivation classify` import neither the database layer nor Celery
nor Gemini's SDK; each command imports what it uses when it runs. An error the operator can act on is one or two
lines and an exit code (2: the command or its configuration; 1: a failure while it ran), never a traceback unless
`--debug` or LOG_LEVEL=DEBUG asks for one.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from datetime import time as time_of_day
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from reactivation.audience.preview import PreviewRow
    from reactivation.flow.progress import RunProgress, RunRecord
    from reactivation.runtime import Runtime
    from reactivation.storage.companies import CompanyConfig
    from reactivation.timing.backtest import BacktestReport, Score
    from reactivation.tools.problems import Endpoints

console = Console()
err_console = Console(stderr=True)

WORKER = "celery -A celery_app worker -Q default,gemini,whatsapp"
ENVIRONMENT = (
    "Environment: DATABASE_URL (default: SQLite under var/), REDIS_URL (unset: an in-process stand-in, tasks run "
    "in this process), LOG_LEVEL, GEMINI_API_KEY, WHATSAPP_*; .env.example lists them all. `campaign run` without "
    f"--inline needs REDIS_URL and a running worker: {WORKER}.\n\n"
    "Exit codes: 0 done, 1 a failure while running (a server down), 2 a wrong command, option or setting."
)


def needs(example: str, environment: str = "DATABASE_URL") -> str:
    """A command's help epilog: one example and the environment it reads."""
    return f"Example: {example}\n\nNeeds: {environment}."


class _FlagsWithoutValue:
    """Flags take no value, so their help shows none (typer would print `<bool>` beside each, --help included)."""

    def get_params(self, ctx: Any) -> Any:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class Command(_FlagsWithoutValue, TyperCommand):
    """Every command of this CLI."""


class Group(_FlagsWithoutValue, TyperGroup):
    """The CLI and its command groups; the root turns the errors an operator can act on into a message."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            # The command line's own: --help, a usage error, an exit code a command chose.
            raise
        except Exception as exc:
            from reactivation.tools.problems import explain

            if ctx.parent is not None or _debugging(ctx):
                raise
            problem = explain(exc, _endpoints())
            if problem is None:
                raise
            lines = problem.lines()
            # One line each, however narrow the terminal: the operator may copy the remedy.
            err_console.print(Text.assemble(("error:", "red"), " ", lines[0]), highlight=False, soft_wrap=True)
            for line in lines[1:]:
                err_console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(problem.exit_code) from None


class CliTyper(typer.Typer):
    """typer.Typer whose commands show flags without a value."""

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", Command)
        return super().command(*args, **kwargs)


def _debugging(ctx: Any) -> bool:
    """--debug, or LOG_LEVEL=DEBUG in the settings (when they can be read at all)."""
    if ctx.find_root().params.get("debug"):
        return True
    from reactivation.core.settings import SettingsError, get_settings

    try:
        return get_settings().log_level == "DEBUG"
    except SettingsError:
        return False


def _endpoints() -> Endpoints:
    """The servers this process was told to use, for naming them in an error."""
    from reactivation.core.settings import SettingsError, get_settings
    from reactivation.tools.problems import Endpoints

    try:
        settings = get_settings()
    except SettingsError:
        return Endpoints()
    return Endpoints(settings.database_url, settings.redis_url, settings.broker_url)


app = CliTyper(
    cls=Group,
    help="Client reactivation for salons and barbershops: due clients, messages, replies, bookings.",
    epilog=ENVIRONMENT,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="On an error, show the full traceback (as LOG_LEVEL=DEBUG does).")
    ] = False,
) -> None:
    """Client reactivation for salons and barbershops: due clients, messages, replies, bookings."""


def _parse_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"expected YYYY-MM-DD, got {value!r}") from None


def date_option(name: str, help: str) -> Any:
    """A date option: shown as YYYY-MM-DD, parsed on the command line so that an error names the option."""
    return typer.Option(name, metavar="YYYY-MM-DD", parser=_parse_date, help=help)


Company = Annotated[int, typer.Option("--company", metavar="ID", help="Company id (the booking system's).")]
RunDate = Annotated[date | None, date_option("--date", "Run date (default: the salon's local today).")]


def runtime() -> Runtime:
    from reactivation.core.logs import configure_logging
    from reactivation.core.settings import get_settings
    from reactivation.runtime import Runtime

    settings = get_settings()
    configure_logging(settings.log_level)
    return Runtime(settings)


@contextmanager
def progress(label: str) -> Iterator[None]:
    """Say what is happening and how long it took, for steps that take more than a moment."""
    started = time.perf_counter()
    with console.status(label):
        yield
    console.print(f"[green]✓[/green] {label} [dim]({time.perf_counter() - started:.1f} s)[/dim]")


@app.command(epilog=needs("reactivation migrate"))
def migrate() -> None:
    """Apply the database migrations (alembic upgrade head) to DATABASE_URL."""
    migrate_database(runtime())


@app.command("seed-demo", epilog=needs("reactivation seed-demo --company 962302 --clients 5000"))
def seed_demo(
    company: Annotated[
        int, typer.Option("--company", metavar="ID", help="Company id to create (the booking system's id).")
    ],
    clients: Annotated[int, typer.Option("--clients", metavar="N", min=0, max=5_000_000, help="How many clients.")] = (
        500
    ),
    seed: Annotated[
        int, typer.Option("--seed", metavar="N", help="Random seed: the same seed gives the same salon.")
    ] = 1,
    today: Annotated[date | None, date_option("--today", "Reference date (default: today).")] = None,
    timezone: Annotated[
        str, typer.Option("--timezone", metavar="TZ", help="IANA time zone of the salon, e.g. Europe/Moscow.")
    ] = "Europe/Moscow",
    replace: Annotated[
        bool,
        typer.Option(
            "--replace", help="Delete the company's existing rows first (only a company seed-demo or demo wrote)."
        ),
    ] = False,
) -> None:
    """Write a realistic synthetic salon, marked as demo data: services, clients with their own rhythms, a year of
    visits."""
    rt = runtime()
    day = today or date.today()
    summary = seed_company(
        rt,
        company_id=company,
        clients=clients,
        seed=seed,
        today=day,
        timezone=timezone,
        replace=replace,
    )
    print_salon_summary(rt, company_id=company, counts=summary, today=day)


def seed_company(
    rt: Runtime,
    *,
    company_id: int,
    clients: int,
    seed: int,
    today: date,
    timezone: str = "Europe/Moscow",
    replace: bool = False,
    settings: dict[str, object] | None = None,
) -> dict[str, int]:
    from sqlalchemy import select

    from reactivation.storage.models import Company
    from reactivation.tools.bulk import load_salon, refuse_unless_demo
    from reactivation.tools.synthetic import generate_salon

    remedy = (
        "Pick another --company id (a salon seed-demo wrote before companies were marked can be marked by hand: "
        f"UPDATE companies SET is_demo = true WHERE id = {company_id})."
    )
    with rt.session() as session:
        exists = session.execute(select(Company.id).where(Company.id == company_id)).first() is not None
        if exists and not replace:
            raise ValueError(f"company {company_id} already exists; pass --replace to rebuild it")
        if replace:
            # Said before minutes of generating, not after.
            refuse_unless_demo(session, company_id=company_id, remedy=remedy)
    with progress(f"generating {clients} clients"):
        plan = generate_salon(
            company_id=company_id,
            clients=clients,
            seed=seed,
            today=today,
            timezone=timezone,
            settings=settings,
        )
    with progress("writing the salon"), rt.session() as session:
        return load_salon(session, plan, replace=replace, remedy=remedy)


def print_salon_summary(rt: Runtime, *, company_id: int, counts: dict[str, int], today: date) -> None:
    """The seeded salon in numbers, counted as of the day it was seeded for (`--today`), not the wall clock."""
    from sqlalchemy import func, select

    from reactivation.storage.bookings import not_cancelled
    from reactivation.storage.models import AppointmentCache, Booking, Client, Company, Service

    with rt.session() as session:
        company = session.get(Company, company_id)
        lapsed = session.scalar(
            select(func.count())
            .select_from(Client)
            .where(
                Client.company_id == company_id,
                Client.last_visit_date < today - timedelta(days=30),
            )
        )
        services = session.scalars(
            select(Service.title).where(Service.company_id == company_id).order_by(Service.title).limit(6)
        ).all()
        future = session.scalar(
            select(func.count())
            .select_from(Booking)
            .where(
                Booking.company_id == company_id,
                Booking.datetime >= datetime.combine(today + timedelta(days=1), time_of_day(0), tzinfo=UTC),
                not_cancelled(),
            )
        )
        first_visit = session.scalar(
            select(func.min(AppointmentCache.appointment_datetime)).where(AppointmentCache.company_id == company_id)
        )
    table = Table(title=f"{company.name if company else company_id} (company {company_id})")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("services", str(counts["services"]))
    table.add_row("clients", str(counts["clients"]))
    table.add_row("  last visit over 30 days ago", str(lapsed))
    table.add_row("  with an upcoming booking", str(future))
    table.add_row("visits in appointments_cache", str(counts["appointments"]))
    table.add_row("  since", f"{first_visit:%Y-%m-%d}" if first_visit else "-")
    console.print(table)
    console.print("services, for example: " + ", ".join(services))


@app.command(epilog=needs("reactivation demo", "nothing (DATABASE_URL and REDIS_URL when set)"))
def demo() -> None:
    """The embedded default end to end: a demo salon's campaign from due clients to replies and bookings."""
    from reactivation.runtime import Runtime
    from reactivation.tools import demo as demo_module

    base = runtime()
    if base.settings.log_level == "INFO":
        # The demo prints its own progress; per-task log lines would bury it.
        logging.getLogger().setLevel(logging.WARNING)
    settings = demo_module.demo_settings(base.settings)
    rt = Runtime(settings)
    console.print(demo_module.where_it_writes(settings), highlight=False)
    migrate_database(rt)
    result = demo_module.run_demo(rt, console)
    demo_module.print_summary(console, result, gemini=settings.gemini_enabled)
    rt.dispose()


def migrate_database(rt: Runtime) -> None:
    from reactivation.storage import migrations

    with progress("migrating the database"):
        migrations.upgrade(rt.settings.database_url)


# --- campaign: dispatch by hand ------------------------------------------------------------------------------

campaign_app = CliTyper(cls=Group, help="Run a company's campaign by hand, and watch it.", no_args_is_help=True)
app.add_typer(campaign_app, name="campaign")

# How long `campaign run` waits for a worker to claim the run before it says that none seems to be running.
CLAIM_WAIT_SECONDS = 30.0
_CLAIM_POLL_SECONDS = 0.5
# `campaign status --follow` stops after this long at most; run it again to keep watching.
FOLLOW_TIMEOUT_SECONDS = 3600.0
# The exit code of a command stopped by Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130


@campaign_app.command(
    "run",
    epilog=needs(
        "reactivation campaign run --company 962302 && reactivation campaign status --company 962302 --follow",
        f"DATABASE_URL; without --inline also REDIS_URL (the broker) and a running worker: {WORKER}",
    ),
)
def campaign_run(
    company: Company,
    day: RunDate = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Do everything but send: messages go to the outbox.")
    ] = False,
    inline: Annotated[
        bool, typer.Option("--inline", help="Run the same chains in this process (eagerly) instead of the broker.")
    ] = False,
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            metavar="SECONDS",
            min=0,
            help="How long to wait for a worker to claim the run and say what it claimed (0: print the task id).",
        ),
    ] = CLAIM_WAIT_SECONDS,
) -> None:
    """Run a company's campaign: dispatch it to the workers (or --inline, in this process) and say what it claimed."""
    from reactivation.flow.progress import read_run
    from reactivation.storage.companies import load_company

    rt = runtime()
    with rt.session() as session:
        config = load_company(session, company_id=company)
        run_date = day or config.local_today(datetime.now(UTC))
        before = read_run(session, company_id=company, run_date=run_date)
    if rt.settings.embedded and not inline:
        raise ValueError(
            f"no broker: REDIS_URL is unset; set it and start a worker ({WORKER}), or use --inline to run in this "
            "process"
        )
    from celery_app.app import configure
    from celery_app.tasks import run_campaign

    celery = configure(rt.settings)
    args = (company, run_date.isoformat())
    if not inline:
        result = run_campaign.apply_async(args=args, kwargs={"dry_run": dry_run})
        console.print(f"dispatched run_campaign for company {company}, {run_date:%Y-%m-%d}: task id {result.id}")
        if dry_run or wait == 0:
            return
        report_claim(rt, config, run_date=run_date, before=before, wait=wait)
        return
    celery.conf.task_always_eager = True
    with progress(f"running company {company}'s campaign in this process"):
        summary = run_campaign.apply(args=args, kwargs={"dry_run": dry_run}).get()
    console.print(
        f"due read {summary['due']} (the most valuable first), claimed {summary['claimed']}, "
        f"held out {summary['holdout']}, "
        f"over the daily limit {summary['over_limit']}"
        + (f", skipped {summary['skipped']}" if summary["skipped"] else "")
    )
    if not dry_run:
        report_claim(rt, config, run_date=run_date, before=before, wait=0)
    print_status(rt, company_id=company, run_date=run_date, dry_run=dry_run)


def report_claim(rt: Runtime, config: CompanyConfig, *, run_date: date, before: RunRecord | None, wait: float) -> None:
    """Say what the dispatch claimed, once the run's record shows it finished (waiting up to `wait` seconds)."""
    from reactivation.core.vocabulary import RunStatus
    from reactivation.flow.progress import read_run
    from reactivation.tools.watch import ClaimReport

    deadline = time.monotonic() + wait
    while True:
        with rt.session() as session:
            after = read_run(session, company_id=config.id, run_date=run_date)
        # Finished, and by this dispatch: a run that was done before has a new finish once it ran again.
        fresh = before is None or wait == 0 or (after is not None and after.finished_at != before.finished_at)
        if after is not None and after.status == RunStatus.DONE and fresh:
            break
        if time.monotonic() >= deadline:
            err_console.print(
                f"no worker has claimed it within {wait:g} s: is one running? ({WORKER}); the task waits in the "
                "queue until one starts"
            )
            return
        time.sleep(_CLAIM_POLL_SECONDS)
    report = ClaimReport(config.id, run_date, before, after, config.settings.daily_limit)
    console.print(report.text(), highlight=False)
    if wait and report.claimed_now:
        console.print(f"watch it: reactivation campaign status --company {config.id} --follow", highlight=False)


@campaign_app.command(
    "status",
    epilog=needs(
        "reactivation campaign status --company 962302 --follow", "DATABASE_URL (the same database the workers use)"
    ),
)
def campaign_status(
    company: Company,
    day: RunDate = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="The latest dry run of that date instead of the real run.")
    ] = False,
    follow: Annotated[
        bool,
        typer.Option("--follow", help="Refresh a progress bar until nothing is in flight (Ctrl-C stops watching)."),
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", metavar="SECONDS", min=0, help="Stop following after this long.")
    ] = FOLLOW_TIMEOUT_SECONDS,
) -> None:
    """A run's rows by status and reason, what waits for the send window, the limits in force and an ETA."""
    from reactivation.storage.companies import load_company
    from reactivation.tools import watch

    rt = runtime()
    with rt.session() as session:
        config = load_company(session, company_id=company)
    run_date = day or config.local_today(datetime.now(UTC))
    if dry_run and follow:
        raise ValueError("--follow watches the real run; a dry run is shown at once without --follow")
    if not follow:
        print_status(rt, company_id=company, run_date=run_date, dry_run=dry_run)
        return
    end, last = watch.follow(
        lambda: read_progress(rt, config, run_date), console=console, tz=config.tz, timeout=timeout, sleep=watch.pause
    )
    show_progress(last, config)
    print_gemini_status(rt, company_id=company, run_date=run_date)
    if end is watch.FollowEnd.INTERRUPTED:
        err_console.print("stopped watching; the campaign goes on in the workers")
        raise typer.Exit(INTERRUPTED)
    if end is watch.FollowEnd.TIMEOUT:
        err_console.print(f"still {last.moving} in flight after {timeout:g} s; run it again to keep watching")
        raise typer.Exit(1)


def read_progress(rt: Runtime, config: CompanyConfig, run_date: date) -> RunProgress:
    """The run's progress now, under the limits that pace this company."""
    from reactivation.flow import progress as run_progress
    from reactivation.tools.watch import run_limits

    with rt.session_factory() as session:
        return run_progress.read_progress(
            session,
            company_id=config.id,
            run_date=run_date,
            now=datetime.now(UTC),
            limits=run_limits(rt.settings, config),
        )


def show_progress(progress: RunProgress, config: CompanyConfig) -> None:
    from reactivation.tools.watch import status_table, summary_lines

    console.print(status_table(progress))
    for line in summary_lines(progress, config.tz):
        console.print(line, highlight=False)


def print_status(rt: Runtime, *, company_id: int, run_date: date, dry_run: bool = False) -> None:
    from reactivation.flow.campaign import run_status
    from reactivation.storage.companies import load_company

    if not dry_run:
        with rt.session() as session:
            config = load_company(session, company_id=company_id)
        show_progress(read_progress(rt, config, run_date), config)
        print_gemini_status(rt, company_id=company_id, run_date=run_date)
        return
    with rt.session() as session:
        rows = run_status(session, company_id=company_id, run_date=run_date, dry_run=dry_run)
    title = f"company {company_id}, {run_date:%Y-%m-%d}" + (" (dry run)" if dry_run else "")
    table = Table(title=title)
    for column in ("status", "reason", "rows"):
        table.add_column(column, justify="right" if column == "rows" else "left")
    for status, reason, count in rows:
        table.add_row(status, reason or "", str(count))
    if not rows:
        table.add_row("no rows", "", "0")
    console.print(table)


def print_gemini_status(rt: Runtime, *, company_id: int, run_date: date) -> None:
    """Gemini's part in the run: requests, tokens, tokens per message, rows waiting, pauses and the breaker."""
    from reactivation.flow.gemini_report import describe, gemini_report

    report = gemini_report(rt, company_id=company_id, run_date=run_date, now=datetime.now(UTC))
    for line in describe(report):
        console.print(line, markup=False, highlight=False)


# --- Replies, attribution, stats and consent ------------------------------------------------------------------


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


class ClassifyFormat(StrEnum):
    TABLE = "table"
    PLAIN = "plain"
    JSON = "json"


def print_json(value: Any) -> None:
    """Machine output: only JSON on stdout, Cyrillic kept readable."""
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")


def read_replies(path: Path) -> list[str]:
    """One reply a line from a UTF-8 file ('-' is standard input); empty lines are skipped with a note."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    replies: list[str] = []
    empty: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            replies.append(line)
        else:
            empty.append(str(number))
    if empty:
        shown = ", ".join(empty[:10]) + (" …" if len(empty) > 10 else "")
        err_console.print(f"note: skipped {len(empty)} empty line(s): {shown}")
    if not replies:
        raise ValueError(f"{path} has no replies (every line is empty)")
    return replies


@app.command("classify", epilog=needs('reactivation classify "Да, запишите" "Не надо" --format json', "nothing"))
def classify_command(
    texts: Annotated[list[str] | None, typer.Argument(metavar="TEXT...", help="Replies to classify.")] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", metavar="PATH", help="A UTF-8 file with one reply a line ('-' for standard input)."),
    ] = None,
    output: Annotated[ClassifyFormat, typer.Option("--format", help="table, plain (label TAB text) or json.")] = (
        ClassifyFormat.TABLE
    ),
    on: Annotated[date | None, date_option("--date", "The replies' local date, for `until` (default: today).")] = None,
    country: Annotated[
        str, typer.Option("--country", metavar="CC", help="Country whose holidays end 'после праздников'.")
    ] = "RU",
) -> None:
    """Label client replies (positive, negative, neutral, opt_out) with a reason and, for not_now, the date named."""
    from reactivation.timing.holidays import holiday_name

    if texts and file is not None:
        raise ValueError("give replies as arguments or with --file, not both")
    if not texts and file is None:
        raise ValueError("nothing to classify: give TEXT... or --file PATH")
    replies = read_replies(file) if file is not None else list(texts or [])
    for position, reply in enumerate(replies, start=1):
        if not reply.strip():
            raise ValueError(f"reply {position} is empty")
    day = on or date.today()
    holiday_name(day, country.upper())  # an unknown country is refused here, not guessed around later
    results = [classified(reply, on=day, country=country.upper()) for reply in replies]
    if output is ClassifyFormat.JSON:
        print_json(results)
        return
    if output is ClassifyFormat.PLAIN:
        for result in results:
            sys.stdout.write(f"{result['label']}\t{' '.join(result['text'].split())}\n")
        return
    table = Table(title="Replies")
    for column in ("#", "reply", "label", "reason", "until"):
        table.add_column(column, justify="right" if column == "#" else "left")
    for position, result in enumerate(results, start=1):
        cells = (" ".join(result["text"].split()), result["label"], result["reason"] or "", result["until"] or "")
        table.add_row(str(position), *cells)
    console.print(table)


def classified(reply: str, *, on: date, country: str) -> dict[str, Any]:
    """A reply's label, reason and named date (relative to its local date `on`), JSON-ready."""
    from reactivation.replies.classify import explain_reply
    from reactivation.replies.times import named_until

    classification = explain_reply(reply)
    named = named_until(classification, on=on, country=country)
    return {
        "text": reply,
        "label": classification.label.value,
        "reason": classification.reason.value if classification.reason else None,
        "until": named.isoformat() if named else None,
    }


@app.command(epilog=needs("reactivation attribute --company 962302"))
def attribute(
    company: Company,
    output: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.TABLE,
) -> None:
    """Link bookings made within the attribution window after a message (or a hold-out row) to it."""
    from reactivation.outcomes.attribution import attribute_bookings
    from reactivation.storage.companies import load_company

    rt = runtime()
    with rt.session() as session:
        days = load_company(session, company_id=company).settings.attribution_days
        linked = attribute_bookings(session, company_id=company, now=datetime.now(UTC))
    if output is OutputFormat.JSON:
        print_json({"company_id": company, "linked": linked, "attribution_days": days})
        return
    console.print(f"company {company}: linked {linked} booking(s) to messages (window {days} days)")


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.1f} %"


def stats_table(result: dict[str, Any]) -> Table:
    """The funnel as a salon owner reads it: one line per group, all messages first."""
    period = f"{result['since'] or 'start'} … {result['until'] or 'today'}"
    table = Table(title=f"Reactivation results, company {result['company_id']}, {period}", box=box.SIMPLE_HEAD)
    table.add_column("", no_wrap=True)
    for column in ("sent", "replies", "bookings", "days to booking"):
        table.add_column(column, justify="right", no_wrap=True)
    table.caption = "in brackets: share of the messages sent; days to booking: median from the message"
    titles = {"by_step": "step", "by_source": "interval", "by_generator": "written by", "by_variant": "variant"}

    def add(name: str, funnel: dict[str, Any], *, last: bool = False) -> None:
        median = funnel["median_days_to_booking"]
        table.add_row(
            name,
            str(funnel["sent"]),
            f"{funnel['responses']} ({_percent(funnel['response_rate'])})",
            f"{funnel['bookings']} ({_percent(funnel['conversion_rate'])})",
            "-" if median is None else f"{median:g}",
            end_section=last,
        )

    add("All messages", result["total"], last=True)
    for key, title in titles.items():
        groups = list(result[key].items())
        for index, (group, funnel) in enumerate(groups):
            add(f"{title}: {group}", funnel, last=index == len(groups) - 1)
    return table


def replies_summary(total: dict[str, Any]) -> str:
    """What the replies said, in one line."""
    return (
        f"Replies: {total['responses']}: {total['positive']} want to book, {total['negative']} declined, "
        f"{total['neutral']} asked or unclear, {total['opt_outs']} asked to stop messages."
    )


def reasons_summary(by_reason: dict[str, dict[str, int]], snoozes: dict[str, int]) -> str:
    """Why clients declined or did not answer yes or no, and what became of the snoozed ones."""
    parts = [
        f"{label}: " + ", ".join(f"{reason} {count}" for reason, count in reasons.items())
        for label, reasons in by_reason.items()
        if label in ("negative", "neutral")
    ]
    why = "Why: " + "; ".join(parts) + "." if parts else "No refusals or unclear replies."
    return (
        f"{why}\nSnoozed (asked to write later): {snoozes['snoozed']}, written to again: {snoozes['due_again']}, "
        f"came back: {snoozes['came_back']}."
    )


def unhappy_table(unhappy: dict[str, Any]) -> Table:
    """The unhappy replies for the owner to call back: masked phone, date, text."""
    shown = len(unhappy["replies"])
    more = f" (latest {shown} of {unhappy['count']})" if unhappy["count"] > shown else ""
    table = Table(title=f"Unhappy clients: call them back{more}", box=box.SIMPLE_HEAD)
    for column in ("phone", "date", "reply"):
        table.add_column(column, no_wrap=column != "reply")
    for reply in unhappy["replies"]:
        table.add_row(reply["phone"], reply["date"] or "-", " ".join(reply["text"].split()))
    return table


def delivery_summary(delivery: dict[str, Any]) -> str:
    """What the provider reported about the messages it accepted, in one line."""
    if not delivery["accepted"]:
        return "Delivery: no message accepted by the provider in this period."
    failures = ", ".join(f"{code} × {count}" for code, count in delivery["failures_by_code"].items())
    return (
        f"Delivery: {delivery['delivered']} of {delivery['accepted']} delivered "
        f"({_percent(delivery['delivered_rate'])}), {delivery['read']} read ({_percent(delivery['read_rate'])})"
        + (f"; failed {delivery['failed']}: {failures}." if failures else "; none failed.")
    )


def holdout_summary(holdout: dict[str, Any] | None) -> str:
    """The hold-out comparison in one paragraph."""
    if holdout is None:
        return "No control group in this period (holdout_percent is 0), so the uplift cannot be measured."
    treated, control = holdout["treated"], holdout["control"]
    low, high = 100 * holdout["uplift_ci_low"], 100 * holdout["uplift_ci_high"]
    verdict = (
        "The messages made a difference."
        if holdout["significant"]
        else "With this many clients the difference could still be chance."
    )
    return (
        f"Contacted: {treated['clients']} clients, {treated['bookings']} booked "
        f"({_percent(treated['conversion_rate'])}).\n"
        f"Control group (nothing sent): {control['clients']} clients, {control['bookings']} booked "
        f"({_percent(control['conversion_rate'])}).\n"
        f"Uplift: {100 * holdout['uplift']:+.1f} points (95 % interval {low:+.1f} … {high:+.1f}), "
        f"about {holdout['extra_bookings']:g} extra bookings. {verdict}"
    )


def gemini_usage_line(usage: dict[str, Any]) -> str:
    """Gemini's requests and tokens in the period, in one line."""
    if not usage["requests"]:
        return "Gemini: no requests in this period."
    per_message = usage["tokens_per_message"]
    thinking = usage["thinking_tokens_per_message"]
    return (
        f"Gemini: {usage['requests']} request(s) ({usage['request_share']:g} by this salon's share of the batches), "
        f"{usage['messages']} message(s) written, {usage['tokens']:,} tokens: {usage['prompt_tokens']:,} prompt, "
        f"{usage['output_tokens']:,} output, {usage['thinking_tokens']:,} thinking"
        + (f"; {per_message:g} per message ({thinking:g} thinking)" if per_message is not None else "")
        + "."
    )


@app.command(epilog=needs("reactivation stats --company 962302 --since 2026-11-01"))
def stats(
    company: Company,
    since: Annotated[date | None, date_option("--since", "First day (the salon's local date).")] = None,
    until: Annotated[date | None, date_option("--until", "Last day, included.")] = None,
    output: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.TABLE,
) -> None:
    """What the campaign earned: messages, replies, bookings and, with a hold-out, the uplift over doing nothing."""
    from reactivation.outcomes.stats import campaign_stats

    rt = runtime()
    with rt.session() as session:
        result = campaign_stats(session, company_id=company, since=since, until=until)
    if output is OutputFormat.JSON:
        print_json(result)
        return
    console.print(stats_table(result))
    console.print(replies_summary(result["total"]))
    console.print(reasons_summary(result["replies_by_reason"], result["snoozes"]))
    console.print(delivery_summary(result["delivery"]))
    console.print(holdout_summary(result["holdout"]))
    console.print(gemini_usage_line(result["gemini"]), markup=False, highlight=False)
    if result["unhappy"]["count"]:
        console.print(unhappy_table(result["unhappy"]))


consent_app = CliTyper(cls=Group, help="The consent ledger (38-FZ art. 18).", no_args_is_help=True)
app.add_typer(consent_app, name="consent")


@consent_app.command("import", epilog=needs("reactivation consent import --company 962302 --file consents.csv"))
def consent_import(
    company: Company,
    file: Annotated[
        Path,
        typer.Option(
            "--file",
            metavar="CSV",
            help="CSV with a header: phone, granted_at, source[, text_version][, channel]; a row may leave out "
            "trailing optional columns.",
        ),
    ],
    output: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.TABLE,
) -> None:
    """Import consents from a CSV file; rows that cannot be read are listed and the exit code is 1."""
    from reactivation.compliance.consent import import_consents

    rt = runtime()
    try:
        with file.open(encoding="utf-8-sig", newline="") as stream, rt.session() as session:
            report = import_consents(session, company_id=company, rows=stream, now=datetime.now(UTC))
    except OSError as exc:
        raise ValueError(f"cannot read {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{file} is not UTF-8 text") from None
    if output is OutputFormat.JSON:
        print_json({"company_id": company, **report.as_dict()})
    else:
        console.print(
            f"company {company}: {report.rows} row(s), {report.imported} imported, {report.unchanged} already known, "
            f"{len(report.skipped)} skipped, {len(report.problems)} with problems"
        )
        for skipped in report.skipped:
            err_console.print(f"line {skipped.line}: skipped: {skipped.reason}")
        for problem in report.problems:
            err_console.print(f"line {problem.line}: {problem.reason}")
    if report.problems:
        raise typer.Exit(1)


# --- Timing: the averages job, who is due, and how well the intervals predict --------------------------------


def reference_moment(company: CompanyConfig, day: date | None, now: datetime) -> datetime:
    """`now`, or for another local date its local noon: the instant a job "as of that date" runs at."""
    if day is None or day == company.local_today(now):
        return now
    return datetime.combine(day, time_of_day(12), tzinfo=company.tz)


@app.command("averages", epilog=needs("reactivation averages --company 962302 --full"))
def averages_command(
    company: Company,
    full: Annotated[bool, typer.Option("--full", help="Recompute every client's rhythm, not only the changed.")] = (
        False
    ),
    day: Annotated[
        date | None, date_option("--date", "Reference date, the salon's local date (default: today).")
    ] = None,
    output: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.TABLE,
) -> None:
    """Recompute the salon's median interval per service and each client's own rhythm (what the waterfall reads)."""
    from reactivation.storage.companies import load_company
    from reactivation.timing.averages import calculate_averages

    rt = runtime()
    started = time.perf_counter()
    with rt.session() as session:
        config = load_company(session, company_id=company)
        now = reference_moment(config, day, datetime.now(UTC))
        result = calculate_averages(
            session, company_id=company, now=now, full=True if full else None, workers=rt.settings.averages_workers
        )
    seconds = round(time.perf_counter() - started, 2)
    if output is OutputFormat.JSON:
        print_json({**result.as_dict(), "seconds": seconds})
        return
    table = Table(title=f"Averages of company {company} as of {result.today:%Y-%m-%d}: {result.mode} run, {seconds} s")
    table.add_column("")
    table.add_column("count", justify="right")
    table.add_row("services with a salon median", str(result.services_active))
    table.add_row("services with too few intervals", str(result.services_inactive))
    table.add_row("client rhythms of their own", str(result.personal_rows))
    table.add_row("  written (new or changed)", str(result.personal_written))
    table.add_row("  removed (no longer backed)", str(result.personal_deleted))
    recomputed = "all" if result.clients_recomputed is None else str(result.clients_recomputed)
    table.add_row("clients recomputed", recomputed)
    console.print(table)


@app.command("due-dates", epilog=needs("reactivation due-dates --company 962302"))
def due_dates_command(
    company: Company,
    output: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.TABLE,
) -> None:
    """Recompute the salon's kept due dates that no longer fit its clients (what the nightly pass does)."""
    from reactivation.timing.due_dates import refresh

    rt = runtime()
    with rt.session() as session:
        result = refresh(session, company_id=company, now=datetime.now(UTC))
    if output is OutputFormat.JSON:
        print_json(result.as_dict())
        return
    console.print(
        f"company {company}: {result.recomputed} kept due date(s) recomputed, "
        f"{result.orphans_removed} of deleted clients removed, {result.seconds:.2f} s"
    )


class PreviewFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


@app.command(
    "preview",
    epilog=needs(
        "reactivation preview --company 962302 --limit 20 --with-messages",
        "DATABASE_URL; with --with-messages and GEMINI_API_KEY also REDIS_URL (Gemini's shared rate limit)",
    ),
)
def preview_command(
    company: Company,
    day: RunDate = None,
    output: Annotated[PreviewFormat, typer.Option("--format", help="table, json or csv.")] = PreviewFormat.TABLE,
    limit: Annotated[
        int | None, typer.Option("--limit", metavar="N", min=1, help="At most this many, most valuable first.")
    ] = None,
    messages: Annotated[
        bool,
        typer.Option(
            "--with-messages",
            help="Also write each client's message as the pipeline would (Gemini within its global rate limit "
            "when GEMINI_API_KEY is set, else the templates). Nothing is sent.",
        ),
    ] = False,
) -> None:
    """Who the campaign would contact on a date, and why; writes nothing and sends nothing."""
    from reactivation.audience.preview import preview_row, to_csv, with_messages
    from reactivation.audience.selection import due_clients
    from reactivation.storage.companies import load_company

    rt = runtime()
    # Read only: the session's transaction is rolled back when it closes.
    with rt.session_factory() as session:
        config = load_company(session, company_id=company)
        run_date = day or config.local_today(datetime.now(UTC))
        if limit is None and not messages and output is not PreviewFormat.TABLE:
            # Every due client as a file: rows go out as the query yields them.
            stream_preview_rows(session, company_id=company, run_date=run_date, output=output)
            return
        due = due_clients(session, company_id=company, today=run_date, limit=limit)
    if messages:
        if rt.gemini_writer is not None and due:
            err_console.print(f"writing {len(due)} message(s) with Gemini, within GEMINI_RATE_LIMIT …")
        rows = with_messages(
            config, due, writer=rt.batch_writer, batch_size=rt.settings.gemini_batch_size, now=datetime.now(UTC)
        )
    else:
        rows = [preview_row(d) for d in due]
    if output is PreviewFormat.JSON:
        print_json([row.as_dict(with_messages=messages) for row in rows])
    elif output is PreviewFormat.CSV:
        sys.stdout.write(to_csv(rows, with_messages=messages))
    else:
        console.print(preview_table(config, run_date, rows, limit=limit))
        if messages:
            print_preview_messages(rows)


def stream_preview_rows(session: Session, *, company_id: int, run_date: date, output: PreviewFormat) -> None:
    """Every due client to stdout as CSV or JSON, streamed from the query; a progress line on a terminal's stderr
    (never in a pipe or a file)."""
    from reactivation.audience.preview import stream_preview, write_csv, write_json

    rows = stream_preview(session, company_id=company_id, today=run_date)
    write = write_csv if output is PreviewFormat.CSV else write_json
    if not err_console.is_terminal:
        write(rows, sys.stdout, with_messages=False)
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description} {task.completed:,} rows"), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task(f"due on {run_date:%Y-%m-%d}:", total=None)

        def counted(source: Iterator[PreviewRow]) -> Iterator[PreviewRow]:
            for number, row in enumerate(source, start=1):
                if number % 2_000 == 0:
                    progress.update(task, completed=number)
                yield row

        written = write(counted(rows), sys.stdout, with_messages=False)
        progress.update(task, completed=written)


def preview_table(company: CompanyConfig, run_date: date, rows: list[PreviewRow], *, limit: int | None) -> Table:
    """Due clients as an operator reads them: who, when they last came, which step and why now."""
    shown = f"the first {len(rows)} (--limit {limit})" if limit is not None and len(rows) == limit else len(rows)
    table = Table(title=f"{company.name or company.id}: due on {run_date:%Y-%m-%d}: {shown} client(s)")
    table.caption = "nothing was written or sent; phones masked"
    # Four columns, several lines each: the table stays readable in an 80-column terminal.
    table.add_column("client")
    table.add_column("last visit")
    table.add_column("step", no_wrap=True)
    table.add_column("why")
    for row in rows:
        table.add_row(
            "\n".join(part for part in (str(row.client_id), row.name, row.phone) if part),
            f"{row.last_visit:%Y-%m-%d}, {row.days_inactive} d ago\n{row.last_service or '-'}",
            row.message_type,
            row.why,
        )
    return table


def print_preview_messages(rows: list[PreviewRow]) -> None:
    """Each client's message under the table, with how it was written (too long for a column)."""
    from reactivation.messaging.composing import NO_KEY

    for row in rows:
        written_by = row.variant or ""
        if row.fallback_reason and row.fallback_reason != NO_KEY:
            written_by += f", template because {row.fallback_reason}"
        console.print(f"[bold]{row.client_id}[/bold] [dim]({written_by})[/dim]")
        console.print(f"  {row.message}", markup=False, highlight=False)


@app.command("backtest", epilog=needs("reactivation backtest --company 962302"))
def backtest_command(
    company: Company,
    output: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.TABLE,
) -> None:
    """Replay the salon's visits: how well each level of the waterfall, the whole waterfall and the seed's 3 levels
    would have predicted each client's last return."""
    from reactivation.timing.backtest import backtest, load_history

    rt = runtime()
    with rt.session_factory() as session:
        history = load_history(session, company_id=company)
    result = backtest(history, company_id=company)
    if output is OutputFormat.JSON:
        print_json(result.as_dict())
        return
    if result.cases == 0:
        console.print(
            f"company {company}: no client has two attended visits of the same service yet, so there is no return "
            "to replay"
        )
        return
    console.print(backtest_table(result))


def backtest_table(result: BacktestReport) -> Table:
    """One row per method; the waterfall and the seed's variant also split by the level that answered."""
    from reactivation.timing.backtest import LEVELS, TOLERANCE_DAYS, Method

    table = Table(
        title=f"Backtest of company {result.company_id}: {result.cases} returns of {result.clients} clients",
        box=box.SIMPLE_HEAD,
    )
    table.caption = (
        "each client's last return for a service, predicted from what was known on the visit before it; "
        "coverage: share of the returns a method could predict; error: median, in days"
    )
    for column in ("method", "coverage", "predicted", "error", f"±{TOLERANCE_DAYS} days"):
        table.add_column(column, justify="left" if column == "method" else "right", no_wrap=True)

    def add(name: str, score: Score, *, last: bool = False) -> None:
        error = score.median_abs_error_days
        table.add_row(
            name,
            _percent(score.coverage),
            str(score.answered),
            "-" if error is None else f"{error:g}",
            _percent(score.share_within_tolerance),
            end_section=last,
        )

    for index, level in enumerate(LEVELS):
        add(f"{level} alone", result.score(level), last=index == len(LEVELS) - 1)
    for method, name in ((Method.WATERFALL, "waterfall (4 levels)"), (Method.SEED_3_LEVEL, "seed (3 levels)")):
        add(name, result.score(method))
        answered = [score for score in result.by_source[method] if score.answered]
        for index, score in enumerate(answered):
            add(f"  via {score.name}", score, last=index == len(answered) - 1)
    return table


# --- The AI admin's calls, by hand --------------------------------------------------------------------------


def warn_if_handover_pending(result: dict[str, Any], *, done: str) -> None:
    """Say on stderr (stdout may be JSON) that Redis did not take the hand-over: the fact stands, the admin is late."""
    if result.get("handover_pending"):
        err_console.print(
            f"[yellow]warning:[/yellow] Redis is unreachable: {done} in the database, but the hand-over to the AI "
            "admin is pending (its pendingAction stays until then); the sweep or the client's next reply repeats it."
        )


Phone = Annotated[str, typer.Option("--phone", metavar="PHONE", help="The client's phone, written any way.")]


@contextmanager
def phone_given(phone: str) -> Iterator[None]:
    """An unusable --phone is the operator's own input: the error shows it as typed and names the option."""
    from reactivation.core.phones import InvalidPhone

    try:
        yield
    except InvalidPhone as exc:
        raise typer.BadParameter(
            f"{phone!r} is not a usable phone number: {exc.reason}", param_hint="'--phone'"
        ) from None


@app.command(
    "reply",
    epilog=needs(
        'reactivation reply --company 962302 --phone "8 (900) 123-45-67" --text "Да, запишите"',
        "DATABASE_URL and REDIS_URL (the AI admin's dialogs)",
    ),
)
def reply_command(
    company: Company,
    phone: Phone,
    text: Annotated[str, typer.Option("--text", metavar="TEXT", help="What the client wrote.")],
    output: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.TABLE,
) -> None:
    """Handle a client's reply as the AI admin would: classify, record, and print the enriched prompt."""
    from reactivation.replies.handler import handle_reply

    rt = runtime()
    with phone_given(phone):
        result = handle_reply(rt, company_id=company, phone=phone, text=text, now=datetime.now(UTC))
    warn_if_handover_pending(result, done="the reply is recorded")
    if output is OutputFormat.JSON:
        print_json(result)
        return
    reason = f" ({result['reason']})" if result["reason"] else ""
    until = f", asked again on {result['until']}" if result["until"] else ""
    console.print(
        f"reactivation reply: [bold]{'yes' if result['is_reactivation'] else 'no'}[/bold], "
        f"class: [bold]{result['response_type']}[/bold]{reason}{until}, start booking: {result['should_start_booking']}"
    )
    if result["suggested_service"]:
        console.print(f"suggested service: {result['suggested_service'].get('name')}")
    if result["enriched_prompt"]:
        console.print(result["enriched_prompt"], markup=False, highlight=False)


@app.command(
    "booking",
    epilog=needs(
        'reactivation booking --company 962302 --phone "+79001234567" --booking-id 5501',
        "DATABASE_URL and REDIS_URL (the AI admin's dialogs)",
    ),
)
def booking_command(
    company: Company,
    phone: Phone,
    booking_id: Annotated[int, typer.Option("--booking-id", metavar="ID", help="The booking system's booking id.")],
    output: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.TABLE,
) -> None:
    """Link a booking the AI admin made to the client's latest message, and clear the pending action."""
    from reactivation.outcomes.attribution import mark_booking_created

    rt = runtime()
    with phone_given(phone):
        result = mark_booking_created(rt, company_id=company, phone=phone, booking_id=booking_id, now=datetime.now(UTC))
    warn_if_handover_pending(result, done="the booking is recorded")
    if output is OutputFormat.JSON:
        print_json(result)
    elif result["linked"]:
        console.print(f"booking {booking_id} linked to message {result['history_id']}")
    else:
        console.print(f"booking {booking_id}: no message within the attribution window to link it to")


# --- Delivery: the status webhook receiver, the sweep ---------------------------------------------------------

webhook_app = CliTyper(cls=Group, help="The WhatsApp delivery-status webhook receiver.", no_args_is_help=True)
app.add_typer(webhook_app, name="webhook")


@webhook_app.command(
    "serve",
    epilog=needs(
        "reactivation webhook serve --host 0.0.0.0 --port 8080",
        "DATABASE_URL, REDIS_URL, WHATSAPP_APP_SECRET, WHATSAPP_WEBHOOK_VERIFY_TOKEN, WHATSAPP_GATEWAY_WEBHOOK_TOKEN",
    ),
)
def webhook_serve(
    host: Annotated[
        str, typer.Option("--host", metavar="HOST", help="Address to listen on (0.0.0.0 in a container).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", metavar="PORT", min=1, max=65535, help="Port to listen on.")] = 8080,
) -> None:
    """Receive Meta's and the gateway's delivery statuses (delivered, read, failed) and apply them to the rows."""
    from reactivation.tools.webhook import serve

    serve(runtime(), host=host, port=port)


@app.command(
    "sweep",
    epilog=needs(
        "reactivation sweep --company 962302", "DATABASE_URL and REDIS_URL (the broker the resumed chains go to)"
    ),
)
def sweep_command(
    company: Annotated[
        int | None, typer.Option("--company", metavar="ID", help="One company (default: every company).")
    ] = None,
    at: Annotated[
        str | None,
        typer.Option("--now", metavar="INSTANT", help="Sweep as of this instant, ISO 8601 with a zone (default: now)."),
    ] = None,
) -> None:
    """Resolve rows stuck in flight now: resend, resume, expire, hand over; prints what it did per company."""
    from reactivation.storage.companies import company_ids, load_company

    rt = runtime()
    now = parse_instant(at) if at else datetime.now(UTC)
    with rt.session() as session:
        companies = [load_company(session, company_id=company).id] if company is not None else company_ids(session)
    from celery_app.app import configure
    from celery_app.tasks import sweep_and_resume

    configure(rt.settings)
    table = Table(title=f"sweep as of {now.isoformat(timespec='seconds')}")
    columns = ("resent", "unknown", "expired", "resumed", "handover", "handover_repeated")
    for column in ("company", *columns):
        table.add_column(column, justify="right")
    for company_id in companies:
        done = sweep_and_resume(company_id, now=now)
        table.add_row(str(company_id), *(str(done[column]) for column in columns))
    console.print(table)


def parse_instant(value: str) -> datetime:
    """An aware instant from ISO 8601 ("2026-11-23T12:06:00+00:00"); a value without a zone is refused."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"expected an ISO 8601 instant, got {value!r}") from None
    if moment.tzinfo is None:
        raise typer.BadParameter(f"give the time zone too, e.g. {value}+00:00")
    return moment


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
