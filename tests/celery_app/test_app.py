"""The app reconfigured in one process publishes to the broker it has now, not to the one it first connected to."""

from __future__ import annotations

import importlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from kombu.exceptions import OperationalError

from celery_app.tasks import sweep
from reactivation.core.settings import load_settings

# The module, not the Celery app the package exports under the same name.
app_module = importlib.import_module("celery_app.app")


@pytest.fixture
def restored() -> Iterator[None]:
    previous = app_module.runtime().settings
    yield
    app_module.configure(previous)


def test_a_new_broker_url_drops_the_old_brokers_connections(tmp_path: Path, restored: None) -> None:
    database = f"sqlite:///{tmp_path / 'app.db'}"
    # Given the app published once to an in-memory broker (not eagerly)
    app = app_module.configure(load_settings(database_url=database, redis_url=None, _env_file=None))
    app.conf.task_always_eager = False
    sweep.apply_async()
    # When it is reconfigured for a Redis nobody listens on
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app_module.configure(load_settings(database_url=database, redis_url=f"redis://127.0.0.1:{port}/0", _env_file=None))
    # Then publishing fails for that broker, instead of succeeding on the old one's pooled connection
    with pytest.raises(OperationalError):
        sweep.apply_async()
