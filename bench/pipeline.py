"""The campaign pipeline with real Celery workers: throughput, and the wall time over Gemini's rate-limit floor.

Each campaign runs on a scratch PostgreSQL database and a Redis key prefix of its own, with `celery -A celery_app
worker` subprocesses started the way the worker tests start them (tests/workers.py) and the fake WhatsApp
gateway as a subprocess (tests/fake_gateway.py). A campaign is timed from the dispatch of
`reactivation.run_campaign` to the moment the last of its history rows is `sent`.

* Throughput: template mode (no Gemini key), a worker with 1 process, then with 2: messages sent per second, and the
  worker's CPU time a message (its processes' user + system time over the campaign: what the wall time shows on an
  idle machine, less disturbed by other load). Beside each, the same campaign on workers running the code of
  BEFORE_COMMIT (the commit before the chain carried its facts, extracted with `git archive`; BENCH_PIPELINE_BEFORE
  names another, empty skips it), run right before it, so that both see the same machine.
* Round trips: the same template campaign run in this process (eager tasks, the workers' code path without a
  broker), every database round trip counted by SQLAlchemy's events: statements (`before_cursor_execute`), commits,
  rollbacks and the pool's pre-ping at each checkout. Messages per round trip, beside BEFORE_ROUND_TRIPS (the same
  count on the code of BEFORE_COMMIT).
* Rate-limit floor: Gemini on (the fake server, tests/fake_gemini.py) with GEMINI_RATE_LIMIT 15/6, Gemini's
  15 a minute scaled down tenfold. N messages cannot take less than N / rate, the floor; how far above it does
  the pipeline land? Beside it the seed's serial loop on the same N, scaled down by the same factor: per client,
  a Gemini call, its 4 s "rate limiting" sleep (0.4 s), the gateway call, its 2 s pause (0.2 s).
"""

from __future__ import annotations

import importlib
import math
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import redis
from google import genai
from google.genai import types
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session
from sqlalchemy.pool import Pool

from bench.common import REDIS_URL, Figure, bench_database
from reactivation.core.settings import DEFAULT_GEMINI_MODEL, RateLimit, load_settings
from reactivation.core.vocabulary import Status
from reactivation.messaging.gemini import API_VERSION
from reactivation.storage.db import make_engine
from reactivation.storage.models import ReactivationHistory
from tests import workers
from tests.fake_gateway import FakeGatewayProcess
from tests.fake_gemini import TEST_API_KEY, FakeGemini
from tests.salon import build_salon
from tests.workers import control_app, processes, wait_for_workers, wait_until, worker_env

# The chain before it carried its facts (5 tasks, the client re-checked at every step, 54 round trips a message).
BEFORE_COMMIT = os.environ.get("BENCH_PIPELINE_BEFORE", "4ac56b9")

THROUGHPUT_MESSAGES = 400
ROUND_TRIP_MESSAGES = 200
# Round trips a message at BEFORE_COMMIT, counted by eager_round_trips below on that code (200 messages: 8,022
# statements, 1,404 commits, 1,404 pre-pings).
BEFORE_ROUND_TRIPS = 54.15
FLOOR_MESSAGES = 60
GEMINI_RATE = RateLimit(15, 6)
# The seed's sleeps (4 s after each Gemini call, 2 s between clients), scaled down like the rate limit.
SCALE = GEMINI_RATE.seconds / 60
SEED_GEMINI_SLEEP = 4.0 * SCALE
SEED_CLIENT_SLEEP = 2.0 * SCALE
# Bounds on every wait: a campaign that does not finish in this time is a failure, not a figure.
CAMPAIGN_TIMEOUT = 300.0
MOSCOW = ZoneInfo("Europe/Moscow")


def _template_salon(engine: Engine, *, messages: int, company_id: int, today: date) -> None:
    """A salon of `messages` due clients, all of them within the daily limit, none held out."""
    build_salon(
        engine,
        due=messages,
        company_id=company_id,
        today=today,
        settings={"daily_limit": messages, "holdout_percent": 0},
        extras=False,
    )


def shortest_span(moments: list[float], count: int) -> float | None:
    """The shortest time holding `count` of the `moments` (None when there are fewer)."""
    ordered = sorted(moments)
    spans = [ordered[i + count - 1] - ordered[i] for i in range(len(ordered) - count + 1)]
    return min(spans) if spans else None


@dataclass(frozen=True)
class CampaignTiming:
    messages: int
    seconds: float
    by_gemini: int
    # CPU time of the worker's processes (main and pool) over the campaign: less sensitive than the wall time to
    # what else the machine runs
    cpu_seconds: float = 0.0

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds

    @property
    def cpu_ms_per_message(self) -> float:
        return 1000 * self.cpu_seconds / self.messages


def tree_cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process and its descendants so far (Linux /proc; 0 where it is not there)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            stat = Path(f"/proc/{current}/stat").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
        pending.extend(int(child) for child in children)
    return total


@dataclass
class RoundTrips:
    """Database round trips seen by every engine of this process."""

    statements: int = 0
    commits: int = 0
    rollbacks: int = 0
    pings: int = 0

    @property
    def total(self) -> int:
        return self.statements + self.commits + self.rollbacks + self.pings


@contextmanager
def counting_round_trips() -> Iterator[RoundTrips]:
    """Count the round trips made inside the block: statements, commits, rollbacks, and the pre-ping of each pool
    checkout (make_engine pings every connection it hands out)."""
    counts = RoundTrips()

    def statement(*_args: object) -> None:
        counts.statements += 1

    def commit(*_args: object) -> None:
        counts.commits += 1

    def rollback(*_args: object) -> None:
        counts.rollbacks += 1

    def checkout(*_args: object) -> None:
        counts.pings += 1

    listeners = [
        (Engine, "before_cursor_execute", statement),
        (Engine, "commit", commit),
        (Engine, "rollback", rollback),
        (Pool, "checkout", checkout),
    ]
    for target, name, listener in listeners:
        event.listen(target, name, listener)
    try:
        yield counts
    finally:
        for target, name, listener in listeners:
            event.remove(target, name, listener)


def eager_round_trips(url: str, *, company_id: int, messages: int, gateway_url: str) -> tuple[RoundTrips, float]:
    """Run a template campaign of `messages` through the Celery tasks in this process (eager: each chain runs
    to its end inside the campaign's task) and count its database round trips; and the wall time."""
    today = datetime.now(MOSCOW).date()
    engine = make_engine(url)
    _template_salon(engine, messages=messages, company_id=company_id, today=today)
    prefix = f"bench:pipeline:{uuid.uuid4().hex[:8]}:"
    settings = load_settings(
        database_url=url,
        redis_url=REDIS_URL,
        redis_key_prefix=prefix,
        whatsapp_provider="gateway",
        whatsapp_gateway_url=gateway_url,
        whatsapp_rate_limit="1000/1",
        gemini_api_key=None,
        _env_file=None,
    )
    # The module, not the Celery app the package exports under the same name.
    app_module = importlib.import_module("celery_app.app")
    from celery_app import tasks

    app_module.configure(settings)
    app_module.app.conf.task_always_eager = True
    try:
        started = time.perf_counter()
        with counting_round_trips() as counts:
            tasks.run_campaign.apply(args=(company_id, today.isoformat()))
        seconds = time.perf_counter() - started
        sent = _count(engine, company_id, status=Status.SENT)
        if sent != messages:
            raise RuntimeError(f"{sent} of {messages} rows sent in the eager run")
    finally:
        app_module.app.conf.task_always_eager = False
        app_module.runtime().dispose()
        engine.dispose()
        _drop_prefix(prefix)
    return counts, seconds


def _count(engine: Engine, company_id: int, *, status: Status | None = None, generator: str | None = None) -> int:
    h = ReactivationHistory
    query = select(func.count()).select_from(h).where(h.company_id == company_id)
    if status is not None:
        query = query.where(h.status == status.value)
    if generator is not None:
        query = query.where(h.generator == generator)
    with Session(engine) as session:
        return int(session.scalar(query) or 0)


def timed_campaign(
    url: str,
    *,
    company_id: int,
    messages: int,
    worker_processes: int,
    gateway_url: str,
    log_dir: Path,
    **env: str,
) -> CampaignTiming:
    """Build a salon with `messages` due clients, start a worker, dispatch its campaign, wait for every `sent`."""
    engine = make_engine(url)
    today = datetime.now(MOSCOW).date()
    _template_salon(engine, messages=messages, company_id=company_id, today=today)
    prefix = f"bench:pipeline:{uuid.uuid4().hex[:8]}:"
    control = control_app(REDIS_URL, prefix)
    environment = worker_env(url, redis_url=REDIS_URL, prefix=prefix, gateway_url=gateway_url, **env)
    try:
        with processes(environment, log_dir) as procs:
            worker = procs.worker(f"bench{company_id}", concurrency=worker_processes)
            wait_for_workers(control, [f"bench{company_id}"])
            cpu_before = tree_cpu_seconds(worker.popen.pid)
            started = time.perf_counter()
            control.send_task("reactivation.run_campaign", args=[company_id, today.isoformat()])
            try:
                wait_until(
                    lambda: _count(engine, company_id, status=Status.SENT) >= messages,
                    timeout=CAMPAIGN_TIMEOUT,
                    interval=0.05,
                    what=f"{messages} rows sent",
                )
            except TimeoutError as exc:
                raise TimeoutError(f"{exc}\n--- worker log\n{worker.log()[-3000:]}") from None
            seconds = time.perf_counter() - started
            cpu = tree_cpu_seconds(worker.popen.pid) - cpu_before
        return CampaignTiming(messages, seconds, _count(engine, company_id, generator="gemini"), cpu)
    finally:
        control.close()
        engine.dispose()
        _drop_prefix(prefix)


def _drop_prefix(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


@contextmanager
def code_of(commit: str) -> Iterator[Path | None]:
    """A checkout of `commit` (git archive into a temporary directory), or None without git or that commit."""
    if not commit or shutil.which("git") is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-before-") as tree:
        archive = subprocess.run(["git", "archive", commit], cwd=workers.ROOT, capture_output=True, check=False)
        if archive.returncode != 0:
            yield None
            return
        subprocess.run(["tar", "-x", "-C", tree], input=archive.stdout, check=True)
        yield Path(tree)


@contextmanager
def workers_from(tree: Path) -> Iterator[None]:
    """Workers started inside run the code in `tree` (their working directory and PYTHONPATH)."""
    previous = workers.ROOT
    workers.ROOT = tree
    try:
        yield
    finally:
        workers.ROOT = previous


def seed_serial_loop(*, messages: int, gemini_url: str, gateway_url: str) -> float:
    """The seed's runReactivationCampaign for `messages` clients, its sleeps scaled down; the wall time."""
    gemini = genai.Client(
        api_key=TEST_API_KEY, http_options=types.HttpOptions(base_url=gemini_url, api_version=API_VERSION)
    )
    started = time.perf_counter()
    with httpx.Client(timeout=10.0, trust_env=False) as http:
        for index in range(messages):
            name = f"Клиент {index}"
            prompt = f"Создай персональное WhatsApp сообщение для клиента салона красоты.\n\nКлиент: {name}\n"
            text = gemini.models.generate_content(model=DEFAULT_GEMINI_MODEL, contents=prompt).text or ""
            time.sleep(SEED_GEMINI_SLEEP)  # "Rate limiting": 4 s after every Gemini call
            phone = f"+7999{index:07d}"
            http.post(
                f"{gateway_url}/send", json={"phone": phone, "message": text, "idempotency_key": f"seed-{index}"}
            ).raise_for_status()
            time.sleep(SEED_CLIENT_SLEEP)  # "Small delay between clients"
    return time.perf_counter() - started


def _throughput(url: str, *, gateway_url: str, log_dir: Path) -> list[Figure]:
    """Templates with 1 and 2 worker processes: the code before (BEFORE_COMMIT) and this code, one after the other."""
    figures = []
    with code_of(BEFORE_COMMIT) as before_tree:
        for number, worker_processes in enumerate((1, 2), start=1):
            before = None
            if before_tree is not None:
                with workers_from(before_tree):
                    before = timed_campaign(
                        url,
                        company_id=880_100 + number,
                        messages=THROUGHPUT_MESSAGES,
                        worker_processes=worker_processes,
                        gateway_url=gateway_url,
                        log_dir=log_dir,
                    )
            load = os.getloadavg()[0]
            timing = timed_campaign(
                url,
                company_id=880_000 + number,
                messages=THROUGHPUT_MESSAGES,
                worker_processes=worker_processes,
                gateway_url=gateway_url,
                log_dir=log_dir,
            )
            was = (
                f"; before ({BEFORE_COMMIT}): {before.per_second:.1f} msg/s, worker CPU "
                f"{before.cpu_ms_per_message:.1f} ms a message"
                if before is not None
                else ""
            )
            figures.append(
                Figure(
                    f"pipeline throughput, templates, worker -c {worker_processes}",
                    timing.per_second,
                    "msg/s",
                    baseline=before.per_second if before is not None else None,
                    baseline_label=f"before ({BEFORE_COMMIT})" if before is not None else "",
                    note=f"{timing.messages} messages in {timing.seconds:.1f} s, dispatch to last row sent; worker CPU "
                    f"{timing.cpu_ms_per_message:.1f} ms a message{was}; load average {load:.1f} on "
                    f"{os.cpu_count()} cores",
                )
            )
    return figures


def run() -> list[Figure]:
    figures = []
    with (
        bench_database("reactivation_bench_pipeline") as url,
        FakeGatewayProcess(lifetime=1800) as gateway,
        tempfile.TemporaryDirectory(prefix="bench-pipeline-") as logs,
    ):
        figures.extend(_throughput(url, gateway_url=gateway.url, log_dir=Path(logs)))
        gateway.reset()
        counts, eager_seconds = eager_round_trips(
            url, company_id=880_020, messages=ROUND_TRIP_MESSAGES, gateway_url=gateway.url
        )
        figures.append(
            Figure(
                "pipeline, messages per database round trip",
                ROUND_TRIP_MESSAGES / counts.total,
                "msg/trip",
                baseline=1 / BEFORE_ROUND_TRIPS,
                baseline_label="before (4ac56b9)",
                note=f"{counts.total / ROUND_TRIP_MESSAGES:.1f} round trips per message "
                f"({counts.statements} statements, {counts.commits} commits, {counts.rollbacks} rollbacks, "
                f"{counts.pings} pre-pings for {ROUND_TRIP_MESSAGES} messages, claim included); "
                f"eager in one process {ROUND_TRIP_MESSAGES / eager_seconds:.1f} msg/s",
            )
        )
        gateway.reset()
        with FakeGemini(max_lifetime=1800) as fake:
            timing = timed_campaign(
                url,
                company_id=880_010,
                messages=FLOOR_MESSAGES,
                worker_processes=2,
                gateway_url=gateway.url,
                log_dir=Path(logs),
                GEMINI_API_KEY=TEST_API_KEY,
                GEMINI_BASE_URL=fake.base_url,
                GEMINI_RATE_LIMIT=str(GEMINI_RATE),
            )
            # Over the cap, one window's worth plus one: by arrival at the server, so the network's jitter shows.
            tightest = shortest_span([r.received_at for r in fake.requests], GEMINI_RATE.calls + 1)
            requests = len(fake.requests)
            seed = seed_serial_loop(messages=FLOOR_MESSAGES, gemini_url=fake.base_url, gateway_url=gateway.url)
    floor = FLOOR_MESSAGES / (GEMINI_RATE.calls / GEMINI_RATE.seconds)
    # A moving window lets the first `calls` go at once: N calls need only (⌈N / calls⌉ − 1) windows.
    hard_floor = (math.ceil(FLOOR_MESSAGES / GEMINI_RATE.calls) - 1) * GEMINI_RATE.seconds
    # With batches (GEMINI_BATCH_SIZE, 20 by default) fewer requests than a window holds: no span to show.
    span = (
        f"shortest span holding {GEMINI_RATE.calls + 1} Gemini requests {tightest:.2f} s "
        f"(limit {GEMINI_RATE.seconds:g} s)"
        if tightest is not None
        else f"fewer than {GEMINI_RATE.calls + 1} requests, no window filled"
    )
    figures.append(
        Figure(
            f"campaign of {FLOOR_MESSAGES} with Gemini at {GEMINI_RATE} (15/60 ÷ 10)",
            timing.seconds,
            "s",
            baseline=seed,
            baseline_label="serial loop, sleeps 0.4 + 0.2 s",
            note=f"one request per message: floor N/rate {floor:.0f} s (a moving window allows {hard_floor:.0f} s), "
            f"wall/floor {timing.seconds / floor:.2f}; {timing.by_gemini} of {timing.messages} written by Gemini in "
            f"{requests} requests; {span}; worker -c 2",
        )
    )
    return figures
