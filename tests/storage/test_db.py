"""Sessions: one transaction each, and work handed to `after_commit` runs only once that transaction committed."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from reactivation.storage import migrations
from reactivation.storage.db import after_commit, make_engine, make_session_factory, session_scope
from reactivation.storage.models import Company
from tests.factories import make_company


@pytest.fixture
def engine(sqlite_url: str) -> Engine:
    migrations.upgrade(sqlite_url)
    return make_engine(sqlite_url)


def _companies(engine: Engine) -> list[int]:
    """What another connection sees committed."""
    with Session(engine) as other:
        return list(other.scalars(select(Company.id)))


def test_work_after_commit_sees_what_the_transaction_wrote(engine: Engine) -> None:
    seen: list[list[int]] = []
    with session_scope(make_session_factory(engine)) as session:
        make_company(session, 7)
        after_commit(session, lambda: seen.append(_companies(engine)))
        # Registered, not run: the row is not committed yet.
        assert seen == []
    assert seen == [[7]]


def test_work_after_commit_never_runs_when_the_transaction_rolls_back(engine: Engine) -> None:
    ran: list[str] = []
    with pytest.raises(RuntimeError, match="a bug"), session_scope(make_session_factory(engine)) as session:
        make_company(session, 8)
        after_commit(session, lambda: ran.append("sent"))
        raise RuntimeError("a bug after the write")
    assert ran == [] and _companies(engine) == []


def test_after_commit_refuses_a_session_that_would_never_run_it(engine: Engine) -> None:
    with Session(engine) as session, pytest.raises(RuntimeError, match="session_scope"):
        after_commit(session, lambda: None)
