"""`make demo` is `reactivation demo`: the embedded default end to end, with nothing configured, twice in a row."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REACTIVATION = Path(sys.executable).parent / "reactivation"
# What a newcomer's shell may hold that would take the demo off the embedded default.
CONFIGURATION = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "GEMINI_API_KEY", "REDIS_KEY_PREFIX")


def run_demo(cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in CONFIGURATION and not k.startswith("WHATSAPP_")}
    env.update(COLUMNS="120", NO_COLOR="1")
    done = subprocess.run(
        [str(REACTIVATION), "demo"], cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.subprocess
def test_the_demo_runs_twice_from_an_empty_folder_and_keeps_its_files_under_var(tmp_path: Path) -> None:
    # Given an empty folder and no configuration
    # When the demo runs twice in a row
    first = run_demo(tmp_path)
    second = run_demo(tmp_path)
    for output in (first, second):
        # Then each run ends with the whole summary: templates said, coverage, steps with examples, replies, funnel
        assert "templates" in output and "no GEMINI_API_KEY" in output
        assert "waterfall coverage" in output and "personal" in output and "service_average" in output
        assert "Messages sent, by step" in output
        assert re.search(r"gentle: .+\?", output) and re.search(r"win_back: .+20%", output, re.S)
        assert "opt_out" in output and "positive" in output
        assert "bookings" in output and "conversion" in output
        # and no phone number is printed unmasked
        assert not re.search(r"\+7\d{10}", output)
    # And the second run rebuilt the salon rather than finding nothing due
    sent = int(re.search(r"messages sent\s*│\s*(\d+)", second).group(1))  # type: ignore[union-attr]
    assert sent > 50
    outbox = [json.loads(line) for line in (tmp_path / "var" / "demo-outbox.jsonl").read_text().splitlines()]
    assert len(outbox) == sent
    # And everything it wrote is under var/, which git ignores
    assert {p.name for p in tmp_path.iterdir()} == {"var"}
