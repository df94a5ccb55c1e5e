"""Real Celery worker and beat processes for the tests that need them (delivery, kills, beat, Flower).

Each process runs `celery -A celery_app …` exactly as an operator would, with the test's environment, logs
to a file under the test's tmp folder, and is stopped (TERM, then KILL) when the test ends. Every wait is
bounded in time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from celery import Celery
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from reactivation.flow import sweeps
from reactivation.storage.history import IN_FLIGHT
from reactivation.storage.models import ReactivationHistory

CELERY = [sys.executable, "-m", "celery", "-A", "celery_app"]
ROOT = Path(__file__).resolve().parents[1]


def worker_env(database_url: str, *, redis_url: str, prefix: str, gateway_url: str, **extra: str) -> dict[str, str]:
    """The environment a worker gets: this database, this Redis key prefix, the given gateway; no Gemini key.

    Nothing of the caller's own GEMINI_/WHATSAPP_/REDIS_/CELERY_ settings leaks in; `extra` adds or overrides.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_", "WHATSAPP_", "REDIS_", "CELERY_"))}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        REDIS_KEY_PREFIX=prefix,
        WHATSAPP_PROVIDER="gateway",
        WHATSAPP_GATEWAY_URL=gateway_url,
        WHATSAPP_RATE_LIMIT="1000/1",
        # Short, so that a killed worker's tasks come back within a test; every countdown stays below a sixth.
        CELERY_VISIBILITY_TIMEOUT_SECONDS="30",
        PYTHONPATH=str(ROOT),
        LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env


def control_app(broker_url: str, prefix: str) -> Celery:
    """A bare Celery client on the same broker and key prefix as the workers, for ping/inspect."""
    options = {"global_keyprefix": prefix} if prefix else {}
    from celery_app.config import ROUTES

    return Celery(
        broker=broker_url,
        broker_transport_options=options,
        broker_connection_retry_on_startup=True,
        task_default_queue="default",
        task_routes=ROUTES,
    )


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill_hard(self) -> None:
        """SIGKILL the whole process group: the worker and its pool children die without a word."""
        if self.alive():
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)

    def stop(self, timeout: float = 20) -> None:
        if not self.alive():
            return
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_hard()


@dataclass
class Processes:
    env: dict[str, str]
    log_dir: Path
    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, args: list[str]) -> Proc:
        log_path = self.log_dir / f"{name}.log"
        handle = log_path.open("wb")
        popen = subprocess.Popen(
            args, cwd=ROOT, env=self.env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def worker(
        self, name: str, *, queues: str = "default,gemini,whatsapp", concurrency: int = 2, extra: Sequence[str] = ()
    ) -> Proc:
        return self.start(
            name,
            [
                *CELERY,
                "worker",
                "-Q",
                queues,
                "-c",
                str(concurrency),
                "-n",
                f"{name}@%h",
                "--without-mingle",
                "--without-gossip",
                "-E",
                "-l",
                "INFO",
                *extra,
            ],
        )

    def beat(self, name: str, schedule_dir: Path) -> Proc:
        return self.start(
            name, [*CELERY, "beat", "-l", "INFO", "-s", str(schedule_dir / f"{name}-schedule"), "--max-interval", "1"]
        )

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.stop()


@contextmanager
def processes(env: dict[str, str], log_dir: Path) -> Iterator[Processes]:
    group = Processes(env=env, log_dir=log_dir)
    try:
        yield group
    finally:
        group.stop_all()


def wait_for_workers(app: Celery, names: list[str], timeout: float = 60) -> None:
    """Block until every named worker answers a ping (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=1.0) or []
        answered = {name.split("@")[0] for reply in replies for name in reply}
        if set(names) <= answered:
            return
    raise TimeoutError(f"workers {names} did not come up within {timeout} s")


def wait_until(condition: Callable[[], bool], *, timeout: float, interval: float = 0.25, what: str = "") -> None:
    """Poll `condition` until it holds, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what or condition}")


# --- the rows the workers move ---------------------------------------------------------------------------------------


def statuses(engine: Engine, company_id: int) -> Counter[str]:
    with Session(engine) as session:
        return Counter(
            dict(
                session.execute(
                    select(ReactivationHistory.status, func.count())
                    .where(ReactivationHistory.company_id == company_id)
                    .group_by(ReactivationHistory.status)
                ).all()
            )
        )


def settle(engine: Engine, company_id: int, *, quiet: float = 3.0, timeout: float = 90) -> Counter[str]:
    """Wait until the rows' statuses stop changing for `quiet` seconds (bounded); return them."""
    deadline = time.monotonic() + timeout
    last, since = statuses(engine, company_id), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = statuses(engine, company_id)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
    raise TimeoutError(f"statuses kept changing for {timeout} s: {last}")


def stale_time_passes(engine: Engine, company_id: int) -> None:
    """Age the rows still in flight past the sweep's staleness threshold, as if the clock had moved on.

    From this process's clock, which the workers share (also when the suite runs with the clock moved): the
    database's own now() is another clock."""
    with Session(engine) as session:
        session.execute(
            update(ReactivationHistory)
            .where(
                ReactivationHistory.company_id == company_id,
                ReactivationHistory.status.in_([s.value for s in IN_FLIGHT]),
            )
            .values(updated_at=datetime.now(UTC) - (sweeps.STALE_AFTER + timedelta(minutes=1)))
        )
        session.commit()
