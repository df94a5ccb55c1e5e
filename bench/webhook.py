"""The delivery-status webhook receiver under load: signed Meta posts for a salon's messages, answered over HTTP by
uvicorn on 127.0.0.1, each post one status of one message (Meta batches several; one is the worst case)."""

from __future__ import annotations

import random
import statistics
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import insert

from bench.common import REDIS_URL, Figure, analyze, bench_database, timer
from reactivation.core.settings import load_settings
from reactivation.runtime import Runtime
from reactivation.storage.db import make_engine
from reactivation.storage.models import Company, ReactivationHistory
from reactivation.tools.webhook import create_app
from tests.webhook_server import meta_status, serving, signed

MESSAGES = 20_000
POSTS = 1_000
COMPANY_ID = 962302
SECRET = "bench-secret"
SENT = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)


def _rows() -> list[dict[str, Any]]:
    return [
        {
            "company_id": COMPANY_ID,
            "client_id": i,
            "phone": f"+7900{i:07d}",
            "step": 1,
            "message_type": "gentle",
            "status": "sent",
            "provider": "cloud_api",
            "provider_message_id": f"wamid.BENCH{i:08d}",
            "message_sent_at": SENT,
            "created_at": SENT,
            "updated_at": SENT,
            "inactive_days": 40,
            "last_visit_date": date(2026, 10, 1),
            "interval_days": 30,
            "interval_source": "universal",
        }
        for i in range(MESSAGES)
    ]


def run() -> list[Figure]:
    with bench_database("reactivation_bench_webhook") as url:
        engine = make_engine(url)
        with engine.begin() as connection:
            connection.execute(insert(Company).values(id=COMPANY_ID, name="bench", settings={}, created_at=SENT))
            connection.execute(insert(ReactivationHistory), _rows())
        analyze(engine)
        engine.dispose()
        settings = load_settings(
            database_url=url, redis_url=REDIS_URL, redis_key_prefix="bench:webhook:", whatsapp_app_secret=SECRET
        )
        rt = Runtime(settings)
        app = create_app(rt, follow_up=lambda _applied: None, clock=lambda: SENT + timedelta(hours=1))
        rng = random.Random(1)
        latencies: list[float] = []
        try:
            with serving(app) as base, httpx.Client(base_url=base, timeout=10, trust_env=False) as client:
                for n in range(POSTS):
                    status = "delivered" if n % 3 else "read"
                    message = f"wamid.BENCH{rng.randrange(MESSAGES):08d}"
                    raw, headers = signed(meta_status(message, status, at=int(SENT.timestamp()) + n), SECRET)
                    with timer() as took:
                        answer = client.post("/webhooks/whatsapp", content=raw, headers=headers)
                    answer.raise_for_status()
                    latencies.append(took[0] * 1000)
        finally:
            rt.dispose()
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    note = f"{POSTS} signed posts over {MESSAGES:,} rows, one at a time; max {latencies[-1]:.1f} ms; budget 100 ms"
    return [
        Figure("webhook: answer, median", statistics.median(latencies), "ms", note=note),
        Figure("webhook: answer, 99th percentile", p99, "ms", note="the same posts"),
    ]
