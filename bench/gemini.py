"""A network day with Gemini: 20 salons × 100 due clients, real Celery workers, the fake Gemini server at
GEMINI_RATE_LIMIT 15/6 (Gemini's 15 a minute, ten times faster), batched and, beside it, one request per client.

Each run has a scratch Redis key prefix and its own companies in one scratch PostgreSQL database, two worker
processes for the default and whatsapp queues and two for the gemini queue (started as tests/workers.py starts them),
and the fake gateway as a subprocess. Beat's tick is played by sending the 20 `reactivation.run_campaign` tasks at once.
A run is timed from that dispatch to the moment the last of its 2,000 rows has its message (written) and to the
moment the last is `sent`.

Figures per run: the share of messages Gemini wrote, its requests, the wall times against the floor (messages ÷ batch
size ÷ rate: what the limiter alone allows), the limiter checks per request (the gate's counters in Redis), and how
much later than the average salon's the last salon's last message left. Beside them, the same day from templates
(no key): the pipeline's own pace on this machine, which no Gemini setting can beat; a run's effective floor is the
slower of the two. Tokens per message are what the fake reports (tests/fake_gemini.py: its thinking model, not
Google's).

On two shared cores the pipeline itself is far slower than the limiter's floor for batches of 20, so one more run
times the Gemini stage alone: the 2,000 rows are claimed and queued for Gemini first (in this process, untimed), then
the workers start and one `reactivation.write_messages` is sent; the figure is the time until every row has its
message, and each salon's moment its last row had one.

    BENCH_GEMINI_RUNS=3 BENCH_GEMINI_SIZES=20,1 .venv/bin/python -m bench gemini
    BENCH_GEMINI_STAGE_ONLY=1 .venv/bin/python -m bench gemini      # the Gemini stage alone
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import redis
from celery import Celery
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from bench.common import REDIS_URL, Figure, bench_database
from bench.pipeline import _drop_prefix as drop_prefix
from bench.pipeline import shortest_span
from reactivation.core.settings import RateLimit, load_settings
from reactivation.core.vocabulary import Status
from reactivation.flow import campaign, pipeline
from reactivation.runtime import Runtime
from reactivation.storage import gemini_queue
from reactivation.storage.db import make_engine
from reactivation.storage.models import GeminiRequest, ReactivationHistory
from tests.fake_gateway import FakeGatewayProcess
from tests.fake_gemini import TEST_API_KEY, FakeGemini
from tests.salon import build_salon
from tests.workers import Processes, control_app, processes, wait_for_workers, wait_until, worker_env

COMPANIES = int(os.environ.get("BENCH_GEMINI_COMPANIES", "20"))
CLIENTS = int(os.environ.get("BENCH_GEMINI_CLIENTS", "100"))
RUNS = int(os.environ.get("BENCH_GEMINI_RUNS", "1"))
SIZES = [int(size) for size in os.environ.get("BENCH_GEMINI_SIZES", "20,1").split(",")]
# Only the Gemini stage alone (the last figure), for a quick look.
STAGE_ONLY = os.environ.get("BENCH_GEMINI_STAGE_ONLY") == "1"
RATE = RateLimit(15, 6)
MOSCOW = ZoneInfo("Europe/Moscow")
# A day that does not finish within this is a failure, not a figure (one request per client needs 800 s).
TIMEOUT = 2400.0


@dataclass(frozen=True)
class Day:
    """One network day's figures."""

    batch_size: int | None  # None: templates, no key
    messages: int
    seconds: float  # dispatch to the last row sent
    written_seconds: float  # dispatch to the last row with its message
    by_gemini: int
    requests: int
    checks: int
    gate_requests: int
    last_by_company: list[float]  # seconds from the dispatch to each salon's last message
    tokens: int
    thinking_tokens: int
    tightest: float | None  # the shortest span holding RATE.calls + 1 requests

    @property
    def floor(self) -> float:
        """messages ÷ batch size ÷ rate: the limiter's own bound."""
        return self.messages / (self.batch_size or 1) / (RATE.calls / RATE.seconds)

    @property
    def fairness(self) -> float:
        """The last salon's last message over the average salon's last message."""
        return max(self.last_by_company) / statistics.mean(self.last_by_company)


def _counts(engine: Engine, companies: list[int]) -> tuple[int, int, int]:
    """(rows with their message, rows sent, rows written by Gemini) of these companies."""
    h = ReactivationHistory
    with Session(engine) as session:
        written, sent, gemini = session.execute(
            select(
                func.count(h.message_text),
                func.count().filter(h.status == Status.SENT),
                func.count().filter(h.generator == "gemini"),
            ).where(h.company_id.in_(companies))
        ).one()
    return int(written or 0), int(sent or 0), int(gemini or 0)


@dataclass
class _Watch:
    """Polls the rows; remembers when they were all written and when all sent."""

    engine: Engine
    companies: list[int]
    expected: int
    started: float
    written_at: float | None = None

    def all_sent(self) -> bool:
        written, sent, _ = _counts(self.engine, self.companies)
        if self.written_at is None and written >= self.expected:
            self.written_at = time.perf_counter() - self.started
        return sent >= self.expected


def _last_messages(engine: Engine, companies: list[int], dispatched: datetime) -> list[float]:
    h = ReactivationHistory
    with Session(engine) as session:
        last = session.execute(
            select(h.company_id, func.max(h.message_sent_at)).where(h.company_id.in_(companies)).group_by(h.company_id)
        ).all()
    return [(moment - dispatched).total_seconds() for _, moment in last if moment is not None]


def _tokens(engine: Engine, companies: list[int]) -> tuple[int, int]:
    g = GeminiRequest
    with Session(engine) as session:
        total, thinking = session.execute(
            select(func.sum(g.prompt_tokens + g.output_tokens + g.thinking_tokens), func.sum(g.thinking_tokens)).where(
                g.company_id.in_(companies)
            )
        ).one()
    return int(total or 0), int(thinking or 0)


def _gate_counters(prefix: str) -> tuple[int, int]:
    """The gate's limiter checks and requests let through, summed over the Pacific days the run touched."""
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        totals = []
        for name in ("checks", "requests"):
            keys = [str(key) for key in client.scan_iter(match=f"{prefix}gemini:{name}:*", count=1000)]
            values = [client.get(key) for key in keys]
            totals.append(sum(int(str(value)) for value in values if value is not None))
        return totals[0], totals[1]
    finally:
        client.close()


def _salons(url: str, first_company: int) -> tuple[Engine, date, list[int]]:
    """COMPANIES salons of CLIENTS clients each due today (Moscow), from `first_company` on."""
    engine = make_engine(url)
    today = datetime.now(MOSCOW).date()
    companies = [first_company + index for index in range(COMPANIES)]
    for company_id in companies:
        settings: dict[str, object] = {"daily_limit": CLIENTS, "holdout_percent": 0}
        build_salon(engine, due=CLIENTS, company_id=company_id, today=today, settings=settings, extras=False)
    return engine, today, companies


def _environment(
    url: str, prefix: str, gateway_url: str, gemini: FakeGemini | None, batch_size: int | None
) -> dict[str, str]:
    """The workers' environment: the rate under test, and Gemini (the fake) when a batch size is given."""
    extra = {"GEMINI_RATE_LIMIT": str(RATE), "WHATSAPP_RATE_LIMIT": "1000/1"}
    if gemini is not None and batch_size is not None:
        gemini.requests.clear()
        extra |= {"GEMINI_API_KEY": TEST_API_KEY, "GEMINI_BASE_URL": gemini.base_url}
        extra |= {"GEMINI_BATCH_SIZE": str(batch_size), "GEMINI_MAX_OUTPUT_TOKENS": str(max(8192, batch_size * 200))}
    return worker_env(url, redis_url=REDIS_URL, prefix=prefix, gateway_url=gateway_url, **extra)


def _start_workers(procs: Processes, control: Celery, name: str) -> None:
    """Two processes for the default and whatsapp queues, two for the gemini queue, as production splits them."""
    procs.worker(f"{name}a", queues="default,whatsapp", concurrency=2)
    procs.worker(f"{name}g", queues="gemini", concurrency=2)
    wait_for_workers(control, [f"{name}a", f"{name}g"])


def network_day(
    url: str, *, first_company: int, batch_size: int | None, gateway_url: str, gemini: FakeGemini | None, logs: Path
) -> Day:
    """Build COMPANIES salons of CLIENTS due clients, start the workers, dispatch every campaign, wait for all sent."""
    engine, today, companies = _salons(url, first_company)
    prefix = f"bench:gemini:{uuid.uuid4().hex[:8]}:"
    environment = _environment(url, prefix, gateway_url, gemini, batch_size)
    control = control_app(REDIS_URL, prefix)
    expected = COMPANIES * CLIENTS
    try:
        with processes(environment, logs) as procs:
            _start_workers(procs, control, f"day{first_company}")
            dispatched = datetime.now(UTC)
            watch = _Watch(engine, companies, expected, time.perf_counter())
            for company_id in companies:
                control.send_task("reactivation.run_campaign", args=[company_id, today.isoformat()])
            wait_until(watch.all_sent, timeout=TIMEOUT, interval=0.2, what="all sent")
            seconds = time.perf_counter() - watch.started
        checks, gate_requests = _gate_counters(prefix)
        tokens, thinking = _tokens(engine, companies)
        arrivals = [request.received_at for request in gemini.requests] if gemini is not None else []
        return Day(
            batch_size=batch_size,
            messages=expected,
            seconds=seconds,
            written_seconds=watch.written_at or seconds,
            by_gemini=_counts(engine, companies)[2],
            requests=len(arrivals),
            checks=checks,
            gate_requests=gate_requests,
            last_by_company=_last_messages(engine, companies, dispatched),
            tokens=tokens,
            thinking_tokens=thinking,
            tightest=shortest_span(arrivals, RATE.calls + 1),
        )
    finally:
        control.close()
        engine.dispose()
        drop_prefix(prefix)


@dataclass(frozen=True)
class Stage:
    """The Gemini stage alone: rows all waiting, batches writing them."""

    messages: int
    seconds: float
    by_gemini: int
    requests: int
    checks: int
    gate_requests: int
    last_by_company: list[float]

    @property
    def fairness(self) -> float:
        return max(self.last_by_company) / statistics.mean(self.last_by_company)


def _queue_everything(url: str, prefix: str, companies: list[int], today: date) -> None:
    """Claim every salon's day and run each row's chain up to its generate step, here, with nothing to wake."""
    settings = load_settings(
        database_url=url, redis_url=REDIS_URL, redis_key_prefix=prefix, gemini_api_key=None, _env_file=None
    )
    rt = Runtime(settings)
    now = datetime.now(UTC)
    try:
        for company_id in companies:
            claimed: list[int] = []
            campaign.run_campaign(rt, company_id=company_id, run_date=today, now=now, on_claimed=claimed.extend)
            for history_id in claimed:
                pipeline.select_interval(rt, company_id=company_id, history_id=history_id, now=now)
            with rt.session() as session:
                for history_id in claimed:
                    gemini_queue.enqueue(session, company_id=company_id, history_id=history_id, now=now)
    finally:
        rt.dispose()


def _written_by_company(engine: Engine, companies: list[int]) -> dict[int, int]:
    h = ReactivationHistory
    with Session(engine) as session:
        rows = session.execute(
            select(h.company_id, func.count(h.message_text)).where(h.company_id.in_(companies)).group_by(h.company_id)
        ).all()
    return {company_id: int(count) for company_id, count in rows}


def gemini_stage(url: str, *, first_company: int, gateway_url: str, gemini: FakeGemini, logs: Path) -> Stage:
    """Every row queued for Gemini before the workers start; the time until batches of 20 have written them all."""
    engine, today, companies = _salons(url, first_company)
    prefix = f"bench:gemini:{uuid.uuid4().hex[:8]}:"
    _queue_everything(url, prefix, companies, today)
    environment = _environment(url, prefix, gateway_url, gemini, 20)
    control = control_app(REDIS_URL, prefix)
    expected = COMPANIES * CLIENTS
    finished: dict[int, float] = {}

    def all_written() -> bool:
        elapsed = time.perf_counter() - started
        for company_id, written in _written_by_company(engine, companies).items():
            if written >= CLIENTS:
                finished.setdefault(company_id, elapsed)
        return len(finished) == len(companies)

    try:
        with processes(environment, logs) as procs:
            _start_workers(procs, control, f"stage{first_company}")
            started = time.perf_counter()
            control.send_task("reactivation.write_messages")
            wait_until(all_written, timeout=TIMEOUT, interval=0.1, what="all written")
            seconds = time.perf_counter() - started
        checks, gate_requests = _gate_counters(prefix)
        return Stage(
            messages=expected,
            seconds=seconds,
            by_gemini=_counts(engine, companies)[2],
            requests=len(gemini.requests),
            checks=checks,
            gate_requests=gate_requests,
            last_by_company=list(finished.values()),
        )
    finally:
        control.close()
        engine.dispose()
        drop_prefix(prefix)


def _stage_figure(stage: Stage) -> Figure:
    floor = stage.messages / 20 / (RATE.calls / RATE.seconds)
    return Figure(
        f"Gemini stage alone: {stage.messages} rows waiting, batches of 20 at {RATE}",
        stage.seconds,
        "s",
        note=(
            f"all written in {stage.seconds:.1f} s = {stage.seconds / floor:.2f} × the floor {floor:.0f} s; "
            f"{100 * stage.by_gemini / stage.messages:.1f} % by Gemini, {stage.requests} requests, "
            f"{stage.checks / max(stage.gate_requests, 1):.2f} limiter checks per request; the last salon written "
            f"{stage.fairness:.2f} × the average salon's"
        ),
    )


def _spread(values: list[float]) -> str:
    return f"{min(values):.1f}–{max(values):.1f}" if len(values) > 1 else f"{values[0]:.1f}"


def _figure(days: list[Day], templates: Day) -> Figure:
    day = sorted(days, key=lambda d: d.seconds)[len(days) // 2]  # the median run
    size = day.batch_size
    per_message = day.tokens / day.by_gemini if day.by_gemini else 0.0
    thinking = day.thinking_tokens / day.by_gemini if day.by_gemini else 0.0
    effective = max(day.floor, templates.seconds)
    return Figure(
        f"network day {COMPANIES}×{CLIENTS} with Gemini at {RATE}, GEMINI_BATCH_SIZE={size}",
        day.seconds,
        "s",
        note=(
            f"{100 * day.by_gemini / day.messages:.1f} % by Gemini; {day.requests} requests "
            f"(target ≤ {day.messages / 15:.0f}); floor {day.floor:.0f} s: all written in {day.written_seconds:.0f} s "
            f"({day.written_seconds / day.floor:.2f} × floor), all sent in {day.seconds:.0f} s "
            f"({day.seconds / day.floor:.2f} × floor; {day.seconds / effective:.2f} × the slower of floor and the "
            f"templates-only day); {day.checks / max(day.gate_requests, 1):.2f} limiter checks per request; last "
            f"salon's last message {day.fairness:.2f} × the average salon's; {per_message:.0f} tokens per message, "
            f"{thinking:.1f} of them thinking (the fake's); shortest span holding {RATE.calls + 1} requests "
            f"{day.tightest or 0:.2f} s (limit {RATE.seconds} s); {len(days)} run(s), sent in "
            f"{_spread([d.seconds for d in days])} s"
        ),
    )


def _templates_figure(templates: Day) -> Figure:
    return Figure(
        f"network day {COMPANIES}×{CLIENTS}, templates (no key)",
        templates.seconds,
        "s",
        note=f"the pipeline's own pace on this machine: all written in {templates.written_seconds:.0f} s, all "
        f"sent in {templates.seconds:.0f} s ({templates.messages / templates.seconds:.1f} msg/s); last "
        f"salon's last message {templates.fairness:.2f} × the average salon's",
    )


def run() -> list[Figure]:
    figures: list[Figure] = []
    with (
        bench_database("reactivation_bench_gemini") as url,
        FakeGatewayProcess(lifetime=TIMEOUT * 4) as gateway,
        FakeGemini(max_lifetime=TIMEOUT * 4) as gemini,
        tempfile.TemporaryDirectory(prefix="bench-gemini-") as folder,
    ):
        logs = Path(folder)
        first = 881_000
        if not STAGE_ONLY:
            day = partial(network_day, url, gateway_url=gateway.url, logs=logs)
            templates = day(first_company=first, batch_size=None, gemini=None)
            figures.append(_templates_figure(templates))
            for size in SIZES:
                days = []
                for _ in range(RUNS if size > 1 else 1):
                    first += COMPANIES
                    gateway.reset()
                    days.append(day(first_company=first, batch_size=size, gemini=gemini))
                figures.append(_figure(days, templates))
        first += COMPANIES
        gateway.reset()
        stage = gemini_stage(url, first_company=first, gateway_url=gateway.url, gemini=gemini, logs=logs)
        figures.append(_stage_figure(stage))
    return figures
