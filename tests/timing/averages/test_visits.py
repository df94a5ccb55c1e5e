"""The visits the averages job counts: an appointment's service list read defensively."""

from __future__ import annotations

from reactivation.timing.averages.visits import service_ids_of


def test_service_ids_are_read_defensively() -> None:
    assert service_ids_of([1, "2", 3.5, True, None, "x", -4, "٣", 10**19]) == [1, 2]
    assert service_ids_of({"id": 1}) == [] and service_ids_of(None) == [] and service_ids_of("[1]") == []
