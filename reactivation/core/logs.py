"""Structured logging: fields as key=value, phone numbers masked wherever they slip in, secrets never printed."""

from __future__ import annotations

import logging
import re
from typing import Any

from reactivation.core.phones import mask_phone

# Anything that looks like a phone number (10 to 15 digits, with the usual separators) is masked on output. A run
# of digits glued to a letter, a hyphen or a dot is part of an id (a task's UUID, a version), not a phone.
_PHONE_LIKE = re.compile(r"(?<![\w:.\-])\+?\d[\d\s()\-]{8,20}\d(?![\w:.]|-\w)")
_DATE_LIKE = re.compile(r"\d{4}-\d{2}-\d{2}")
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_SECRET_KEYS = ("key", "token", "secret", "password", "authorization")


def _mask_match(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = sum(ch.isdigit() for ch in text)
    if not 10 <= digits <= 15 or _DATE_LIKE.search(text):
        return text
    return mask_phone(text)


def scrub(value: Any) -> Any:
    """Mask phone-like digit runs in a string; other values pass through."""
    if isinstance(value, str):
        return _PHONE_LIKE.sub(_mask_match, value)
    return value


class KeyValueFormatter(logging.Formatter):
    """`time level logger message key=value ...` with phones masked and secret-looking fields hidden."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = scrub(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        fields = []
        for key, value in record.__dict__.items():
            if key in _STANDARD_ATTRS or key.startswith("_"):
                continue
            if any(word in key.lower() for word in _SECRET_KEYS):
                value = "***"
            elif "phone" in key.lower():
                value = mask_phone(value)
            fields.append(f"{key}={scrub(value)!s}")
        return f"{base} {' '.join(fields)}" if fields else base


def configure_logging(level: str = "INFO") -> None:
    """Install the key=value formatter on the root logger (idempotent)."""
    root = logging.getLogger()
    root.setLevel(level)
    for handler in root.handlers:
        if isinstance(handler.formatter, KeyValueFormatter):
            return
    handler = logging.StreamHandler()
    handler.setFormatter(KeyValueFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)
    # httpx logs every request URL at INFO; Gemini URLs carry the API key in some SDK versions.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("pymorphy3").setLevel(logging.WARNING)
