"""Redis key names, in one place: the AI admin's hand-over keys and this product's own bookkeeping keys.

Every name starts with `settings.redis_key_prefix` (empty in production, because the AI admin reads
`dialog:{company_id}:{digits}` exactly so; each test run has its own). Phones appear as E.164 digits without
the '+', as in `dialog:962302:79001234567`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reactivation.core.phones import mask_phone, phone_digits

# E.164: a country code that does not start with 0, at most 15 digits in all.
_DIGITS = re.compile(r"^[1-9]\d{6,14}$")


def key_digits(phone: str) -> str:
    """The phone as the admin's keys spell it ("79001234567"); ValueError if it is not an E.164 number."""
    digits = phone_digits(phone.strip()) if isinstance(phone, str) else ""
    if not _DIGITS.match(digits):
        raise ValueError("phone must be an E.164 number such as +79001234567")
    return digits


def mask_key(key: str) -> str:
    """The key with its phone segment masked, for logs: "dialog:962302:7*********67"."""
    return ":".join(mask_phone(part) if _DIGITS.match(part) else part for part in key.split(":"))


def dialog_key(prefix: str, company_id: int, phone: str) -> str:
    """The AI admin's dialog state: a JSON string whose `pendingAction` this product sets."""
    return f"{prefix}dialog:{int(company_id)}:{key_digits(phone)}"


def messages_key(prefix: str, company_id: int, phone: str) -> str:
    """The dialog's message history: a list of JSON items, oldest first."""
    return f"{prefix}messages:{int(company_id)}:{key_digits(phone)}"


def client_key(prefix: str, company_id: int, phone: str) -> str:
    """The AI admin's cached client card: a JSON string or a hash."""
    return f"{prefix}client:{int(company_id)}:{key_digits(phone)}"


def corrupt_dialog_key(prefix: str, company_id: int, phone: str) -> str:
    """Where a dialog value that is not a JSON object is moved aside instead of being overwritten."""
    return dialog_key(prefix, company_id, phone) + ":corrupt"


def handover_marker_key(prefix: str, company_id: int, history_id: int, resend: int = 0) -> str:
    """This product's own marker that one history row's hand-over was written (makes it idempotent). A message
    sent again after a delivery failure (`resend` > 0) is handed over anew, under a marker of its own."""
    key = f"{prefix}reactivation:handover:{int(company_id)}:{int(history_id)}"
    return f"{key}:r{int(resend)}" if resend else key


def sending_stop_key(prefix: str, company_id: int) -> str:
    """This product's own mark that a company's sending is stopped for a while (a refused template or sender)."""
    return f"{prefix}reactivation:sending-stop:{int(company_id)}"


@dataclass(frozen=True)
class DialogKeys:
    """Every key one client's hand-over touches."""

    dialog: str
    messages: str
    client: str
    corrupt: str

    @classmethod
    def build(cls, prefix: str, company_id: int, phone: str) -> DialogKeys:
        return cls(
            dialog=dialog_key(prefix, company_id, phone),
            messages=messages_key(prefix, company_id, phone),
            client=client_key(prefix, company_id, phone),
            corrupt=corrupt_dialog_key(prefix, company_id, phone),
        )
