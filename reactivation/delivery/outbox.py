"""The outbox: each message appended as one JSON line to a file, for the demo and dry runs; nothing leaves the
machine."""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

from reactivation.delivery.contract import Clock, SenderBase, SendRequest, SendResult, utcnow
from reactivation.delivery.errors import PermanentSendError

log = logging.getLogger(__name__)


class OutboxSender(SenderBase):
    """Appends each message as one JSON line to a file: for the demo and dry runs; nothing leaves the machine.

    One `write` per line under an exclusive `flock`, so lines from many processes never interleave. Every line says
    whether a dry run wrote it (`"dry_run": true`): with WHATSAPP_PROVIDER=outbox real and dry-run messages share
    the file, and a reader must tell them apart.
    """

    provider = "outbox"

    def __init__(self, path: Path | str, *, clock: Clock | None = None, dry_run: bool = False) -> None:
        self.path = Path(path)
        self._clock = clock or utcnow
        self.dry_run = dry_run

    def send(self, request: SendRequest) -> SendResult:
        """Append the message to the outbox; PermanentSendError if the file cannot be written."""
        sent_at = self._clock()
        record = {
            "phone": request.phone,
            "message": request.message,
            "history_id": request.history_id,
            "company_id": request.company_id,
            "step": int(request.step),
            "message_type": request.step.message_type,
            "idempotency_key": request.idempotency_key,
            "sender_id": request.sender_id,
            "sent_at": sent_at.astimezone(UTC).isoformat(),
            "dry_run": self.dry_run,
        }
        data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _append_locked(self.path, data)
        except OSError as exc:
            error = PermanentSendError(
                f"outbox: cannot write {self.path} ({exc.strerror or type(exc).__name__})",
                provider=self.provider,
                affects_all_messages=True,
            )
            log.error("outbox write failed", extra={"path": str(self.path), "history_id": request.history_id})
            raise error from exc
        result = SendResult(
            provider=self.provider, provider_message_id=f"outbox:{request.idempotency_key}", sent_at=sent_at
        )
        log.info(
            "message written to the outbox",
            extra={
                "company_id": request.company_id,
                "history_id": request.history_id,
                "phone": request.masked_phone,
                "path": str(self.path),
                "dry_run": self.dry_run,
            },
        )
        return result


def _append_locked(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    finally:
        os.close(fd)  # closing releases the lock


@dataclass
class OutboxReading:
    """What `read_outbox` found: the records, and how many lines were not valid JSON objects."""

    records: list[dict[str, Any]] = field(default_factory=list)
    bad_lines: int = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)


def read_outbox(path: Path | str) -> OutboxReading:
    """Every record in an outbox file, oldest first; a missing file is an empty outbox."""
    reading = OutboxReading()
    try:
        with Path(path).open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    reading.bad_lines += 1
                    continue
                if isinstance(record, dict):
                    reading.records.append(record)
                else:
                    reading.bad_lines += 1
    except FileNotFoundError:
        pass
    return reading
