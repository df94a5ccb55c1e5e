"""Beat and Flower as real processes: two beats tick in the same minute and plan one run per company and local
date; Flower's HTTP API shows the worker online and the chain's tasks by name."""

from __future__ import annotations

import json
import socket
import sys
import urllib.request
from base64 import b64encode
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from reactivation.core.settings import Settings
from reactivation.storage.models import CampaignRun
from tests.conftest import REDIS_URL
from tests.factories import make_company
from tests.fake_gateway import FakeGateway
from tests.salon import build_salon
from tests.workers import control_app, processes, wait_for_workers, wait_until, worker_env

pytestmark = [pytest.mark.workers, pytest.mark.subprocess]

ZONES = ["Asia/Vladivostok", "Europe/Kaliningrad", "America/New_York", "Asia/Kolkata"]


@pytest.fixture
def prefix(redis_prefix: str, request: pytest.FixtureRequest) -> str:
    return f"{redis_prefix}{request.node.name[:40]}:"


def runs(engine: Engine) -> list[tuple[int, object]]:
    with Session(engine) as session:
        return list(session.execute(select(CampaignRun.company_id, CampaignRun.run_date)).all())


def test_two_beats_ticking_make_one_run_per_company_and_local_date(
    committed_settings: Settings, committed_engine: Engine, prefix: str, tmp_path: Path
) -> None:
    # Given companies in four time zones whose local send time has passed (midnight)
    started = datetime.now(UTC)
    with Session(committed_engine) as session:
        ids = [
            make_company(session, 5000 + i, timezone=zone, settings={"send_time": "00:00"}).id
            for i, zone in enumerate(ZONES)
        ]
        session.commit()
    env = worker_env(
        committed_settings.database_url,
        redis_url=REDIS_URL,
        prefix=prefix,
        gateway_url="http://127.0.0.1:9",
        BEAT_TICK_SECONDS="1",
    )
    control = control_app(REDIS_URL, prefix)
    with processes(env, tmp_path) as procs:
        procs.worker("planner", queues="default", concurrency=2)
        wait_for_workers(control, ["planner"])
        # When two beat processes tick every second, several times
        procs.beat("beat-one", tmp_path)
        procs.beat("beat-two", tmp_path)
        wait_until(lambda: len(runs(committed_engine)) >= len(ids), timeout=60, what="runs planned")
        wait_until(lambda: procs.procs[1].log().count("plan_campaigns") >= 4, timeout=30, what="several ticks")
        wait_until(lambda: procs.procs[2].log().count("plan_campaigns") >= 4, timeout=30, what="second beat ticks")
    # Then each company has exactly one run, for its own local date
    planned = runs(committed_engine)
    assert Counter(company for company, _ in planned) == {company: 1 for company in ids}
    finished = datetime.now(UTC)
    for company, zone in zip(ids, ZONES, strict=True):
        [day] = [d for c, d in planned if c == company]
        # the local date (the test could straddle a local midnight)
        assert day in {started.astimezone(ZoneInfo(zone)).date(), finished.astimezone(ZoneInfo(zone)).date()}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _api(port: int, path: str) -> object:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    request.add_header("Authorization", "Basic " + b64encode(b"ops:secret").decode())
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def test_flower_shows_the_worker_and_the_chain_tasks_by_name(
    committed_settings: Settings, committed_engine: Engine, prefix: str, tmp_path: Path
) -> None:
    today = datetime.now(ZoneInfo("Europe/Moscow")).date()
    salon = build_salon(committed_engine, due=3, today=today, extras=False)
    port = _free_port()
    with FakeGateway(lifetime=120) as gateway:
        env = worker_env(committed_settings.database_url, redis_url=REDIS_URL, prefix=prefix, gateway_url=gateway.url)
        control = control_app(REDIS_URL, prefix)
        with processes(env, tmp_path) as procs:
            procs.start(
                "flower",
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "celery_app",
                    "flower",
                    f"--port={port}",
                    "--address=127.0.0.1",
                    "--basic-auth=ops:secret",
                ],
            )
            procs.worker("watched", concurrency=2)
            wait_for_workers(control, ["watched"])

            def flower_up() -> bool:
                try:
                    return any(name.startswith("watched@") for name in _api(port, "/api/workers?refresh=1"))  # type: ignore[union-attr]
                except OSError:
                    return False

            wait_until(flower_up, timeout=60, what="flower sees the worker")
            control.send_task("reactivation.run_campaign", args=[salon.company_id, today.isoformat()])
            wanted = {
                f"reactivation.{n}"
                for n in (
                    "run_campaign",
                    "select_interval",
                    "generate_message",
                    "send_message",
                    "persist_history",
                    "save_context",
                )
            }

            def seen() -> set[str]:
                tasks = _api(port, "/api/tasks")
                return {task["name"] for task in tasks.values() if task.get("name")}  # type: ignore[union-attr]

            wait_until(lambda: wanted <= seen(), timeout=60, what="the chain's tasks in flower")
            workers = _api(port, "/api/workers")
            assert any(name.startswith("watched@") for name in workers)  # type: ignore[union-attr]
            wait_until(lambda: len(gateway.messages()) == 3, timeout=30, what="three messages")
