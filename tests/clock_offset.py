"""`TEST_CLOCK_OFFSET_DAYS=N`: the whole suite with the clock N days ahead (or behind), to prove it passes on any date.

In this process time-machine moves the clock for the whole session (ticking, so durations stay real); a test's own
`time_machine.travel` nests inside it. Subprocesses (Celery workers, beat, the CLI, `python -c`) inherit libfaketime
through `LD_PRELOAD` and `FAKETIME`, so they share the moved clock. The library is the one the `libfaketime` dev
dependency vendors (or the file `TEST_LIBFAKETIME` names): Debian's libfaketime 0.9.10 makes Python 3.11's
`time.sleep` fail with EINVAL (wolfcw/libfaketime#426). Without a library the tests that start subprocesses are
skipped, since they would compare two clocks. Servers keep the real clock (`server_env`), as PostgreSQL and Redis
do: that is what the suite proves the product never depends on.
"""

from __future__ import annotations

import importlib.util
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine

from tests.subprocesses import MARKER

OFFSET_ENV = "TEST_CLOCK_OFFSET_DAYS"
LIBFAKETIME_ENV = "TEST_LIBFAKETIME"
# Where the `libfaketime` package keeps the shared library it builds.
_VENDORED = Path("vendor", "libfaketime", "src", "libfaketime.so.1")
# What the subprocesses' environment gets; restored when the session ends.
_SUBPROCESS_ENV = ("LD_PRELOAD", "FAKETIME", "FAKETIME_DONT_FAKE_MONOTONIC")

_TRAVEL = pytest.StashKey[time_machine.travel]()
_LIBRARY = pytest.StashKey[str | None]()
_SAVED_ENV = pytest.StashKey[dict[str, str | None]]()


def offset_days() -> int:
    """The offset asked for in TEST_CLOCK_OFFSET_DAYS (0: the real clock)."""
    raw = os.environ.get(OFFSET_ENV, "").strip()
    if not raw:
        return 0
    try:
        return int(raw)
    except ValueError:
        raise pytest.UsageError(f"{OFFSET_ENV} must be a whole number of days, got {raw!r}") from None


def find_libfaketime() -> str | None:
    """The libfaketime shared library: TEST_LIBFAKETIME, else the `libfaketime` package's (not imported: only found)."""
    explicit = os.environ.get(LIBFAKETIME_ENV)
    if explicit:
        if not os.path.isfile(explicit):
            raise pytest.UsageError(f"{LIBFAKETIME_ENV}={explicit!r} is not a file")
        return explicit
    spec = importlib.util.find_spec("libfaketime")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        library = Path(folder) / _VENDORED
        if library.is_file():
            return str(library)
    return None


def server_env() -> dict[str, str]:
    """This process's environment for a server a test starts (redis-server): on the real clock, like every server."""
    return {name: value for name, value in os.environ.items() if name not in _SUBPROCESS_ENV}


def start(config: pytest.Config) -> None:
    """Move this process's clock, and its subprocesses' through libfaketime, when TEST_CLOCK_OFFSET_DAYS is set."""
    days = offset_days()
    if not days:
        return
    traveller = time_machine.travel(datetime.now(UTC) + timedelta(days=days), tick=True)
    traveller.start()
    config.stash[_TRAVEL] = traveller
    library = config.stash[_LIBRARY] = find_libfaketime()
    if library is None:
        return
    config.stash[_SAVED_ENV] = {name: os.environ.get(name) for name in _SUBPROCESS_ENV}
    preload = os.environ.get("LD_PRELOAD")
    os.environ["LD_PRELOAD"] = f"{library} {preload}" if preload else library
    os.environ["FAKETIME"] = f"{days:+d}d"
    # Only the wall clock moves: timeouts and Celery's timers keep measuring real durations.
    os.environ["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"


def stop(config: pytest.Config) -> None:
    traveller = config.stash.get(_TRAVEL, None)
    if traveller is not None:
        traveller.stop()
    for name, value in config.stash.get(_SAVED_ENV, {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def header(config: pytest.Config) -> str | None:
    """The report header's line when the clock is moved."""
    if _TRAVEL not in config.stash:
        return None
    library = config.stash[_LIBRARY]
    elsewhere = f"libfaketime in subprocesses ({library})" if library else "subprocess tests skipped: no libfaketime"
    return f"clock: {offset_days():+d} days (time-machine in this process; {elsewhere})"


def skip_what_cannot_move(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without libfaketime a moved clock cannot reach subprocesses: their tests are skipped, with the reason."""
    if _TRAVEL not in config.stash or config.stash[_LIBRARY] is not None:
        return
    skip = pytest.mark.skip(reason=f"{OFFSET_ENV} is set but libfaketime is missing (pip install libfaketime)")
    for item in items:
        if item.get_closest_marker(MARKER) is not None:
            item.add_marker(skip)
