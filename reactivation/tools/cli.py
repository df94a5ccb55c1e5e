"""The `reactivation` command line: what a salon's operator and a developer run by hand."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from datetime import time as time_of_day
from enum import StrEnum
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from reactivation.audience.preview import PreviewRow, preview_row, to_csv, with_messages
from reactivation.audience.selection import due_clients
from reactivation.compliance.consent import import_consents
from reactivation.core.logs import configure_logging
from reactivation.core.phones import InvalidPhone
from reactivation.core.settings import SettingsError, get_settings
from reactivation.flow.campaign import run_status
from reactivation.flow.gemini_report import describe, gemini_report
from reactivation.messaging.composing import NO_KEY
from reactivation.outcomes.attribution import attribute_bookings, mark_booking_created
from reactivation.outcomes.stats import campaign_stats
from reactivation.replies.classify import classify_reply
from reactivation.replies.handler import handle_reply
from reactivation.runtime import Runtime
from reactivation.storage import migrations
from reactivation.storage.bookings import not_cancelled
from reactivation.storage.companies import CompanyConfig, UnknownCompany, load_company
from reactivation.storage.company_settings import CompanyConfigError
from reactivation.storage.models import AppointmentCache, Booking, Client, Company, Service
from reactivation.timing.averages import calculate_averages
from reactivation.timing.backtest import LEVELS, TOLERANCE_DAYS, BacktestReport, Method, Score, backtest, load_history
from reactivation.tools.bulk import load_salon
from reactivation.tools.synthetic import generate_salon

app = typer.Typer(
    help="Client reactivation for salons and barbershops: due clients, messages, replies, bookings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


F = TypeVar("F", bound=Callable[..., Any])

# Errors a user can cause; each becomes one clear line and exit code 2 instead of a traceback.
USER_ERRORS: tuple[type[Exception], ...] = (
    SettingsError,
    UnknownCompany,
    CompanyConfigError,
    InvalidPhone,
    ValueError,
)


def user_errors(func: F) -> F:
    """Turn the errors a user can cause into a message and exit code 2."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except USER_ERRORS as exc:
            err_console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def runtime() -> Runtime:
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


def parse_date(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"expected YYYY-MM-DD, got {value!r}") from None


@app.command()
@user_errors
def migrate() -> None:
    """Apply the database migrations (alembic upgrade head) to DATABASE_URL."""
    migrate_database(runtime())


@app.command("seed-demo")
@user_errors
def seed_demo(
    company: Annotated[int, typer.Option("--company", help="Company id to create (the booking system's id).")],
    clients: Annotated[int, typer.Option("--clients", min=0, max=5_000_000, help="How many clients.")] = 500,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same salon.")] = 1,
    today: Annotated[str | None, typer.Option("--today", help="Reference date YYYY-MM-DD (default: today).")] = None,
    timezone: Annotated[str, typer.Option("--timezone", help="IANA time zone of the salon.")] = "Europe/Moscow",
    replace: Annotated[bool, typer.Option("--replace", help="Delete the company's existing rows first.")] = False,
) -> None:
    """Write a realistic synthetic salon: services, clients with their own rhythms, a year of visits."""
    rt = runtime()
    day = parse_date(today) or date.today()
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
    with rt.session() as session:
        exists = session.execute(select(Company.id).where(Company.id == company_id)).first() is not None
        if exists and not replace:
            raise ValueError(f"company {company_id} already exists; pass --replace to rebuild it")
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
        return load_salon(session, plan, replace=replace)


def print_salon_summary(rt: Runtime, *, company_id: int, counts: dict[str, int], today: date) -> None:
    """The seeded salon in numbers, counted as of the day it was seeded for (`--today`), not the wall clock."""
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


@app.command()
@user_errors
def demo() -> None:
    """The embedded default end to end: a demo salon's campaign from due clients to replies and bookings."""
    from reactivation.tools import demo as demo_module

    base = runtime()
    if base.settings.log_level == "INFO":
        # The demo prints its own progress; per-task log lines would bury it.
        logging.getLogger().setLevel(logging.WARNING)
    settings = demo_module.demo_settings(base.settings)
    rt = Runtime(settings)
    if settings.embedded:
        console.print(
            "[bold]Embedded default[/bold]: SQLite under var/, an in-process Redis stand-in, tasks run in this "
            "process; nothing to install."
        )
    else:
        console.print("Using DATABASE_URL and REDIS_URL from the environment; tasks run in this process.")
    migrate_database(rt)
    result = demo_module.run_demo(rt, console)
    demo_module.print_summary(console, result, gemini=settings.gemini_enabled)
    rt.dispose()


def migrate_database(rt: Runtime) -> None:
    with progress("migrating the database"):
        migrations.upgrade(rt.settings.database_url)


# --- campaign: dispatch by hand ------------------------------------------------------------------------------

campaign_app = typer.Typer(help="Run a company's campaign by hand, and see how it went.", no_args_is_help=True)
app.add_typer(campaign_app, name="campaign")


@campaign_app.command("run")
@user_errors
def campaign_run(
    company: Annotated[int, typer.Option("--company", help="Company id.")],
    day: Annotated[str | None, typer.Option("--date", help="Run date YYYY-MM-DD (default: the salon's today).")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Do everything but send: messages go to the outbox.")
    ] = False,
    inline: Annotated[
        bool, typer.Option("--inline", help="Run the same chains in this process (eagerly) instead of the broker.")
    ] = False,
) -> None:
    """Dispatch run_campaign: to the broker (prints the task id), or --inline in this process (prints a summary)."""
    rt = runtime()
    run_date = parse_date(day)
    with rt.session() as session:
        load_company(session, company_id=company)
    from celery_app.app import configure
    from celery_app.tasks import run_campaign

    if not inline:
        if rt.settings.embedded:
            raise ValueError("no broker: REDIS_URL is unset; use --inline to run in this process")
        configure(rt.settings)
        result = run_campaign.apply_async(
            args=(company, run_date.isoformat() if run_date else None), kwargs={"dry_run": dry_run}
        )
        console.print(f"dispatched run_campaign for company {company}: task id [bold]{result.id}[/bold]")
        return
    app_ = configure(rt.settings)
    app_.conf.task_always_eager = True
    with progress(f"running company {company}'s campaign in this process"):
        summary = run_campaign.apply(
            args=(company, run_date.isoformat() if run_date else None), kwargs={"dry_run": dry_run}
        ).get()
    console.print(
        f"due {summary['due']}, claimed {summary['claimed']}, held out {summary['holdout']}, "
        f"over the daily limit {summary['over_limit']}"
        + (f", skipped {summary['skipped']}" if summary["skipped"] else "")
    )
    print_status(rt, company_id=company, run_date=date.fromisoformat(summary["run_date"]), dry_run=dry_run)


@campaign_app.command("status")
@user_errors
def campaign_status(
    company: Annotated[int, typer.Option("--company", help="Company id.")],
    day: Annotated[str | None, typer.Option("--date", help="Run date YYYY-MM-DD (default: the salon's today).")] = None,
) -> None:
    """Counts by status and reason for one run."""
    rt = runtime()
    with rt.session() as session:
        config = load_company(session, company_id=company)
    print_status(rt, company_id=company, run_date=parse_date(day) or config.local_today(datetime.now(UTC)))


def print_status(rt: Runtime, *, company_id: int, run_date: date, dry_run: bool = False) -> None:
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
    print_gemini_status(rt, company_id=company_id, run_date=run_date)


def print_gemini_status(rt: Runtime, *, company_id: int, run_date: date) -> None:
    """Gemini's part in the run: requests, tokens, tokens per message, rows waiting, pauses and the breaker."""
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


@app.command("classify")
@user_errors
def classify_command(
    texts: Annotated[list[str] | None, typer.Argument(metavar="TEXT...", help="Replies to classify.")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="A UTF-8 file with one reply a line ('-' for standard input).")
    ] = None,
    output: Annotated[ClassifyFormat, typer.Option("--format", help="table, plain (label TAB text) or json.")] = (
        ClassifyFormat.TABLE
    ),
) -> None:
    """Label client replies as positive, negative, neutral or opt_out, one label per reply, in input order."""
    if texts and file is not None:
        raise ValueError("give replies as arguments or with --file, not both")
    if not texts and file is None:
        raise ValueError("nothing to classify: give TEXT... or --file PATH")
    replies = read_replies(file) if file is not None else list(texts or [])
    for position, reply in enumerate(replies, start=1):
        if not reply.strip():
            raise ValueError(f"reply {position} is empty")
    results = [{"text": reply, "label": str(classify_reply(reply))} for reply in replies]
    if output is ClassifyFormat.JSON:
        print_json(results)
        return
    if output is ClassifyFormat.PLAIN:
        for result in results:
            sys.stdout.write(f"{result['label']}\t{' '.join(result['text'].split())}\n")
        return
    table = Table(title="Replies")
    table.add_column("#", justify="right")
    table.add_column("reply")
    table.add_column("label")
    for position, result in enumerate(results, start=1):
        table.add_row(str(position), " ".join(result["text"].split()), result["label"])
    console.print(table)


@app.command()
@user_errors
def attribute(
    company: Annotated[int, typer.Option("--company", help="Company id.")],
    output: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.TABLE,
) -> None:
    """Link bookings made within the attribution window after a message (or a hold-out row) to it."""
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


@app.command()
@user_errors
def stats(
    company: Annotated[int, typer.Option("--company", help="Company id.")],
    since: Annotated[str | None, typer.Option("--since", help="First day, YYYY-MM-DD (salon's local date).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Last day, YYYY-MM-DD, included.")] = None,
    output: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.TABLE,
) -> None:
    """What the campaign earned: messages, replies, bookings and, with a hold-out, the uplift over doing nothing."""
    rt = runtime()
    with rt.session() as session:
        result = campaign_stats(session, company_id=company, since=parse_date(since), until=parse_date(until))
    if output is OutputFormat.JSON:
        print_json(result)
        return
    console.print(stats_table(result))
    console.print(replies_summary(result["total"]))
    console.print(holdout_summary(result["holdout"]))
    console.print(gemini_usage_line(result["gemini"]), markup=False, highlight=False)


consent_app = typer.Typer(help="The consent ledger (38-FZ art. 18).", no_args_is_help=True)
app.add_typer(consent_app, name="consent")


@consent_app.command("import")
@user_errors
def consent_import(
    company: Annotated[int, typer.Option("--company", help="Company id.")],
    file: Annotated[
        Path, typer.Option("--file", help="CSV with a header: phone, granted_at, source[, text_version][, channel].")
    ],
    output: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.TABLE,
) -> None:
    """Import consents from a CSV file; rows that cannot be read are listed and the exit code is 1."""
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


@app.command("averages")
@user_errors
def averages_command(
    company: Annotated[int, typer.Option("--company", help="Company id.")],
    full: Annotated[bool, typer.Option("--full", help="Recompute every client's rhythm, not only the changed.")] = (
        False
    ),
    day: Annotated[
        str | None, typer.Option("--date", help="Reference date YYYY-MM-DD, the salon's local date (default: today).")
    ] = None,
    output: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.TABLE,
) -> None:
    """Recompute the salon's median interval per service and each client's own rhythm (what the waterfall reads)."""
    rt = runtime()
    started = time.perf_counter()
    with rt.session() as session:
        config = load_company(session, company_id=company)
        now = reference_moment(config, parse_date(day), datetime.now(UTC))
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


class PreviewFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


@app.command("preview")
@user_errors
def preview_command(
    company: Annotated[int, typer.Option("--company", help="Company id.")],
    day: Annotated[
        str | None, typer.Option("--date", help="Run date YYYY-MM-DD (default: the salon's local today).")
    ] = None,
    output: Annotated[PreviewFormat, typer.Option("--format", help="table, json or csv.")] = PreviewFormat.TABLE,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most this many, most valuable first.")] = None,
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
    rt = runtime()
    # Read only: the session's transaction is rolled back when it closes.
    with rt.session_factory() as session:
        config = load_company(session, company_id=company)
        run_date = parse_date(day) or config.local_today(datetime.now(UTC))
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
    for row in rows:
        written_by = row.variant or ""
        if row.fallback_reason and row.fallback_reason != NO_KEY:
            written_by += f", template because {row.fallback_reason}"
        console.print(f"[bold]{row.client_id}[/bold] [dim]({written_by})[/dim]")
        console.print(f"  {row.message}", markup=False, highlight=False)


@app.command("backtest")
@user_errors
def backtest_command(
    company: Annotated[int, typer.Option("--company", help="Company id.")],
    output: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.TABLE,
) -> None:
    """Replay the salon's visits: how well each level of the waterfall, the whole waterfall and the seed's 3 levels
    would have predicted each client's last return."""
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


@app.command("reply")
@user_errors
def reply_command(
    company: Annotated[int, typer.Option("--company", help="Company id.")],
    phone: Annotated[str, typer.Option("--phone", help="The client's phone, written any way.")],
    text: Annotated[str, typer.Option("--text", help="What the client wrote.")],
    output: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.TABLE,
) -> None:
    """Handle a client's reply as the AI admin would: classify, record, and print the enriched prompt."""
    rt = runtime()
    result = handle_reply(rt, company_id=company, phone=phone, text=text, now=datetime.now(UTC))
    if output is OutputFormat.JSON:
        print_json(result)
        return
    console.print(
        f"reactivation reply: [bold]{'yes' if result['is_reactivation'] else 'no'}[/bold], "
        f"class: [bold]{result['response_type']}[/bold], start booking: {result['should_start_booking']}"
    )
    if result["suggested_service"]:
        console.print(f"suggested service: {result['suggested_service'].get('name')}")
    if result["enriched_prompt"]:
        console.print(result["enriched_prompt"], markup=False, highlight=False)


@app.command("booking")
@user_errors
def booking_command(
    company: Annotated[int, typer.Option("--company", help="Company id.")],
    phone: Annotated[str, typer.Option("--phone", help="The client's phone, written any way.")],
    booking_id: Annotated[int, typer.Option("--booking-id", help="The booking system's booking id.")],
    output: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.TABLE,
) -> None:
    """Link a booking the AI admin made to the client's latest message, and clear the pending action."""
    rt = runtime()
    result = mark_booking_created(rt, company_id=company, phone=phone, booking_id=booking_id, now=datetime.now(UTC))
    if output is OutputFormat.JSON:
        print_json(result)
    elif result["linked"]:
        console.print(f"booking {booking_id} linked to message {result['history_id']}")
    else:
        console.print(f"booking {booking_id}: no message within the attribution window to link it to")


def main() -> None:
    """Console-script entry point."""
    try:
        get_settings()
    except SettingsError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        sys.exit(2)
    app()


if __name__ == "__main__":
    main()
