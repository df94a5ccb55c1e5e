"""Only tests marked `subprocess` may start one: a Celery worker, beat, the CLI, `python -c`, a fake server's process.

`make test-fast` runs `-m "not subprocess"`, so a test that starts a process without the marker would slow it down
unseen. While an unmarked test runs, every way this process starts another (subprocess.Popen, hence subprocess.run
and os.popen; multiprocessing; os.fork, os.system, os.posix_spawn) raises `UnmarkedSubprocess`, and the test fails
even if the code under test swallowed that error.
"""

from __future__ import annotations

import multiprocessing.process
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

MARKER = "subprocess"

# (owner, attribute) of every entry point that starts a process.
_ENTRY_POINTS: tuple[tuple[Any, str], ...] = (
    (subprocess.Popen, "__init__"),
    (multiprocessing.process.BaseProcess, "start"),
    (os, "fork"),
    (os, "system"),
    (os, "posix_spawn"),
    (os, "posix_spawnp"),
)


class UnmarkedSubprocess(AssertionError):
    """A test without the `subprocess` marker tried to start a process."""


@contextmanager
def refused(test: str) -> Iterator[None]:
    """Within the block, starting a process raises UnmarkedSubprocess; leaving it raises again if one was tried."""
    tried: list[str] = []

    def refuse(*args: Any, **_kwargs: Any) -> Any:
        # The command when there is one (a half-built Popen must not be printed: its repr needs what __init__ sets).
        tried.append(next((repr(a)[:200] for a in args if isinstance(a, str | list | tuple)), type(args[0]).__name__))
        raise UnmarkedSubprocess(f"{test} starts a subprocess: mark it @pytest.mark.{MARKER}")

    saved = [(owner, name, getattr(owner, name)) for owner, name in _ENTRY_POINTS if hasattr(owner, name)]
    for owner, name, _ in saved:
        setattr(owner, name, refuse)
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)
    if tried:
        raise UnmarkedSubprocess(f"{test} tried to start a subprocess {tried[0]}: mark it @pytest.mark.{MARKER}")
