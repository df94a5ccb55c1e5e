"""The hold-out (control) group: a deterministic hash of company, client and lapse, so the same client is held
out for every step of one lapse and the split can be recomputed by anyone."""

from __future__ import annotations

import hashlib
from datetime import date

_BUCKETS = 10_000


def holdout_bucket(*, company_id: int, client_id: int, lapse: date) -> int:
    """A stable number in [0, 10000) for this client's lapse."""
    digest = hashlib.sha256(f"{company_id}:{client_id}:{lapse.isoformat()}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % _BUCKETS


def in_holdout(*, company_id: int, client_id: int, lapse: date, percent: float) -> bool:
    """True when this client's lapse falls in the control group of `percent` (0–100) per cent."""
    if percent <= 0:
        return False
    return holdout_bucket(company_id=company_id, client_id=client_id, lapse=lapse) < percent * _BUCKETS / 100
