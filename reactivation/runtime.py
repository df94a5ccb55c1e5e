"""What a process needs to do work: settings, a database engine and sessions, a Redis client.

Built at the edge (the CLI's start, a worker's `worker_process_init`), never at import.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from reactivation.core.limiter import Limiter, gemini_limiter, make_storage, whatsapp_limiter
from reactivation.core.settings import Settings
from reactivation.delivery.contract import Sender
from reactivation.delivery.factory import make_sender
from reactivation.delivery.outbox import OutboxSender
from reactivation.messaging.gemini import GeminiWriter, gemini_writer
from reactivation.messaging.gemini_batch import BatchWriter
from reactivation.messaging.gemini_gate import GeminiGate
from reactivation.storage.db import make_engine, make_session_factory, session_scope

# One in-process Redis stand-in per process, so that every client the embedded default makes sees the same data.
_FAKE_SERVER: Any = None


def make_redis(settings: Settings) -> redis.Redis:
    """A Redis client for REDIS_URL, or an in-process stand-in (fakeredis) when it is unset."""
    if settings.redis_url:
        return redis.Redis.from_url(
            settings.redis_url,
            decode_responses=True,
            socket_timeout=10,
            socket_connect_timeout=5,
            health_check_interval=30,
        )
    import fakeredis

    global _FAKE_SERVER
    if _FAKE_SERVER is None:
        _FAKE_SERVER = fakeredis.FakeServer()
    return fakeredis.FakeRedis(server=_FAKE_SERVER, decode_responses=True)


@dataclass
class Runtime:
    settings: Settings

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings.database_url)

    @cached_property
    def session_factory(self) -> sessionmaker[Session]:
        return make_session_factory(self.engine)

    @cached_property
    def redis(self) -> redis.Redis:
        return make_redis(self.settings)

    @cached_property
    def limits_storage(self) -> Any:
        return make_storage(self.settings)

    @cached_property
    def gemini_limiter(self) -> Limiter:
        return gemini_limiter(self.settings, self.limits_storage)

    @cached_property
    def whatsapp_limiter(self) -> Limiter:
        return whatsapp_limiter(self.settings, self.limits_storage)

    @cached_property
    def gemini_writer(self) -> GeminiWriter | None:
        """None without GEMINI_API_KEY: messages come from the templates."""
        return gemini_writer(self.settings)

    @cached_property
    def gemini_gate(self) -> GeminiGate:
        """Every Gemini request's way through the shared pause, breaker, block and limiter (Redis)."""
        settings = self.settings
        return GeminiGate(
            self.redis,
            prefix=settings.redis_key_prefix,
            limiter=self.gemini_limiter,
            daily_limit=settings.gemini_daily_limit,
            pause_seconds=settings.gemini_pause_seconds,
            # The probe holds the half-open breaker for one request's time at most.
            probe_seconds=settings.gemini_timeout_seconds + 5,
        )

    @cached_property
    def batch_writer(self) -> BatchWriter | None:
        """Several messages per Gemini request; None without GEMINI_API_KEY (templates)."""
        writer = self.gemini_writer
        return BatchWriter(writer, self.gemini_gate, self.settings) if writer is not None else None

    @cached_property
    def sender(self) -> Sender:
        return make_sender(self.settings)

    @cached_property
    def outbox(self) -> Sender:
        """Where a dry run's messages go: the outbox file, each line marked `"dry_run": true`."""
        return OutboxSender(self.settings.whatsapp_outbox_path, dry_run=True)

    def sender_for(self, dry_run: bool) -> Sender:
        """The configured sender, or the (marked) outbox for a dry run."""
        return self.outbox if dry_run else self.sender

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction (commit on success, roll back on error)."""
        with session_scope(self.session_factory) as session:
            yield session

    def dispose(self) -> None:
        """Close what this process opened (connections, HTTP clients)."""
        if "engine" in self.__dict__:
            self.engine.dispose()
            del self.__dict__["engine"]
            self.__dict__.pop("session_factory", None)
        for name in ("sender", "outbox"):
            sender = self.__dict__.pop(name, None)
            if sender is not None:
                sender.close()
