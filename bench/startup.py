"""Start-up of the command line: how long `reactivation --help` and `reactivation classify "да"` take to run.

Each command runs as its own process (the installed console script), as an operator starts it; the figure is the
median wall time of several runs after a warm-up (the files are in the page cache, as they are after the first
run of the day). `python -c pass` beside them is the floor no command can beat.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

from bench.common import Figure, median_seconds

RUNS = 9
# The console script installed beside this interpreter (the venv's), so the bench times what an operator runs.
CLI = str(Path(sys.executable).with_name("reactivation"))
COMMANDS = {
    "reactivation --help": [CLI, "--help"],
    'reactivation classify "да"': [CLI, "classify", "да"],
}
# Under the 0.5 s the operator notices (issue 17).
TARGET_SECONDS = 0.5


def _run(argv: list[str], cpu: list[float]) -> None:
    """Run the command once; append the CPU seconds it used to `cpu`."""
    # The embedded default: no DATABASE_URL or REDIS_URL, as on an operator's laptop; neither command connects.
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "REDIS_URL"}}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)


def run() -> list[Figure]:
    floor, _ = median_seconds(lambda: _run([sys.executable, "-c", "pass"], []), runs=RUNS)
    figures = []
    for name, argv in COMMANDS.items():
        cpu: list[float] = []
        median, timings = median_seconds(lambda argv=argv, cpu=cpu: _run(argv, cpu), runs=RUNS)
        figures.append(
            Figure(
                f"start-up: {name}",
                median,
                "s",
                note=f"median of {RUNS} runs ({min(timings):.2f}–{max(timings):.2f} s), CPU "
                f"{statistics.median(cpu[-RUNS:]):.2f} s; target under {TARGET_SECONDS} s; "
                f"`python -c pass` takes {floor:.2f} s",
            )
        )
    return figures
