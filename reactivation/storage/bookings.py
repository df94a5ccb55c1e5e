"""The bookings table as this product reads it (the booking-system sync writes it)."""

from __future__ import annotations

from sqlalchemy import ColumnElement, or_

from reactivation.storage.models import Booking

# The booking system's status for a cancelled booking.
CANCELLED = "deleted"


def not_cancelled() -> ColumnElement[bool]:
    """A booking that stands: any status but the booking system's cancelled one (no status at all stands too)."""
    return or_(Booking.status.is_(None), Booking.status != CANCELLED)
