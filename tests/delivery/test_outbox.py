"""The outbox file: one JSON line per message, whole lines under concurrent writers, and reading it back."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from reactivation.core.vocabulary import Step
from reactivation.delivery.errors import PermanentSendError
from reactivation.delivery.outbox import OutboxSender, read_outbox
from tests.delivery.sample_requests import PHONE, clock, request


def test_the_outbox_appends_one_json_line_per_message(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "outbox.jsonl"
    sender = OutboxSender(path, clock=clock)
    result = sender.send(request(5, step=Step.OFFER))
    sender.send(request(6))
    records = list(read_outbox(path))
    assert [r["history_id"] for r in records] == [5, 6]
    assert records[0] == {
        "phone": PHONE,
        "message": "Мария, добрый день! Давно не виделись, ждём вас на маникюр.",
        "history_id": 5,
        "company_id": 962302,
        "step": 2,
        "message_type": "offer",
        "idempotency_key": "reactivation:962302:5",
        "sender_id": None,
        "sent_at": "2025-04-15T07:00:00+00:00",
        "dry_run": False,
    }
    assert (result.provider, result.provider_message_id) == ("outbox", "outbox:reactivation:962302:5")


def test_a_dry_runs_outbox_marks_each_line(tmp_path: Path) -> None:
    # Given one file that real messages (WHATSAPP_PROVIDER=outbox) and a dry run's both write to
    path = tmp_path / "outbox.jsonl"
    OutboxSender(path, clock=clock).send(request(5))
    OutboxSender(path, clock=clock, dry_run=True).send(request(6))
    # Then a reader tells them apart by the line alone
    assert [(r["history_id"], r["dry_run"]) for r in read_outbox(path)] == [(5, False), (6, True)]


_WRITER = """
import sys
from reactivation.delivery.contract import SendRequest
from reactivation.delivery.outbox import OutboxSender
sender = OutboxSender(sys.argv[1])
for n in range(int(sys.argv[2]), int(sys.argv[2]) + 200):
    sender.send(SendRequest(company_id=1, history_id=n, phone="+79001234567", message="ж" * 250 + str(n),
                            idempotency_key=f"k{n}", step=1))
"""


@pytest.mark.subprocess
def test_concurrent_writers_never_interleave_lines(tmp_path: Path) -> None:
    # given two processes and four threads appending to the same outbox at once
    path = tmp_path / "outbox.jsonl"
    processes = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(start)], cwd=Path(__file__).parents[2])
        for start in (10_000, 20_000)
    ]
    sender = OutboxSender(path)

    def write(start: int) -> None:
        for n in range(start, start + 200):
            sender.send(request(n, message="ж" * 250 + str(n)))

    threads = [threading.Thread(target=write, args=(start,)) for start in (0, 1000, 2000, 3000)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for process in processes:
        assert process.wait(timeout=60) == 0
    # then every line is one whole record
    reading = read_outbox(path)
    assert reading.bad_lines == 0
    assert len(reading) == 1200
    assert all(r["message"] == "ж" * 250 + str(r["history_id"]) for r in reading)


def test_an_unwritable_outbox_is_permanent(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(PermanentSendError, match="outbox: cannot write") as caught:
        OutboxSender(blocker / "outbox.jsonl").send(request(1))
    assert caught.value.affects_all_messages


def test_reading_an_outbox_counts_broken_lines(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    assert len(read_outbox(path)) == 0
    path.write_text(json.dumps({"history_id": 1}) + "\n{broken\n[1, 2]\n\n" + json.dumps({"history_id": 2}) + "\n")
    reading = read_outbox(path)
    assert [r["history_id"] for r in reading] == [1, 2]
    assert reading.bad_lines == 2
