"""What went wrong, in words an operator can act on: an exception becomes one or two lines and an exit code.

The command line shows these instead of a traceback (which `--debug` or LOG_LEVEL=DEBUG bring back). Exit code 2:
the command or its configuration is wrong (a bad option or setting, a database that does not exist or was never
migrated, an unknown company); exit code 1: something failed while it ran (a server that does not answer).

Nothing here imports a driver: an exception can only be a driver's class when that driver's module is loaded
already, so each check looks the module up in `sys.modules` and a command that never touched the database pays
nothing for the database's checks.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

USAGE = 2
RUNTIME = 1

MIGRATE = "run `reactivation migrate`"
# PostgreSQL's own words for a connection refused at login (no SQLSTATE reaches the client at that point).
_NO_DATABASE = re.compile(r'database "([^"]+)" does not exist')
_BAD_LOGIN = re.compile(r'role "[^"]+" does not exist|password authentication failed|no password supplied')
# A relation or column the code expects is missing: the schema is older than the code.
_UNMIGRATED_SQLSTATES = {"42P01", "42703"}
_UNMIGRATED_SQLITE = re.compile(r"no such (?:table|column): (\S+)")


@dataclass(frozen=True)
class Endpoints:
    """The addresses the process was configured with, as the operator wrote them (passwords hidden)."""

    database_url: str | None = None
    redis_url: str | None = None
    broker_url: str | None = None


@dataclass(frozen=True)
class Problem:
    """What went wrong (naming the variable when one is to blame), what to do about it, and the exit code."""

    message: str
    remedy: str = ""
    exit_code: int = USAGE

    def lines(self) -> list[str]:
        return [self.message, self.remedy] if self.remedy else [self.message]


def hide_password(url: str | None) -> str:
    """The URL with its password replaced by ***, safe for a terminal or a log."""
    if not url:
        return "unset"
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def explain(exc: BaseException, endpoints: Endpoints) -> Problem | None:
    """The operator's reading of `exc`, or None for an error nobody foresaw (its traceback is the useful part)."""
    # A server that does not answer is often the cause of what was raised while handling it: the whole chain.
    for error in _chain(exc):
        for check in (_settings_problem, _database_problem, _broker_problem, _redis_problem):
            problem = check(error, endpoints)
            if problem is not None:
                return problem
    # A bad input only when it is the error itself, never when a bug was raised while handling one.
    return _usage_problem(exc, endpoints)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and the ones it was raised from, outermost first (a driver's error wraps the socket's)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _loaded(module: str, name: str) -> type[BaseException] | None:
    """The exception class `module.name` if that module is loaded, else None (then no error can be of it)."""
    found = getattr(sys.modules.get(module), name, None)
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def _is(error: BaseException, module: str, *names: str) -> bool:
    return any((cls := _loaded(module, name)) is not None and isinstance(error, cls) for name in names)


def _settings_problem(error: BaseException, _: Endpoints) -> Problem | None:
    if not _is(error, "reactivation.core.settings", "SettingsError"):
        return None
    return Problem(str(error), "fix it in the environment or in .env (.env.example describes every variable)")


def _database_problem(error: BaseException, endpoints: Endpoints) -> Problem | None:
    if not _is(error, "sqlalchemy.exc", "OperationalError", "ProgrammingError", "InterfaceError"):
        return None
    original = getattr(error, "orig", None) or error
    text = str(original).strip()
    where = f"DATABASE_URL ({hide_password(endpoints.database_url)})"
    sqlstate = getattr(original, "sqlstate", None)
    if sqlstate in _UNMIGRATED_SQLSTATES or _UNMIGRATED_SQLITE.search(text):
        return Problem(f"the database at {where} is not migrated: {_first_line(text)}", MIGRATE)
    if match := _NO_DATABASE.search(text):
        return Problem(
            f'the database "{match[1]}" named by {where} does not exist',
            f"create it (createdb {match[1]}) or point DATABASE_URL at an existing one, then {MIGRATE}",
        )
    if _BAD_LOGIN.search(text):
        return Problem(f"the database refused the login of {where}", "fix the user or password in DATABASE_URL")
    if _is(error, "sqlalchemy.exc", "ProgrammingError"):
        return None
    return Problem(
        f"cannot reach the database at {where}: {_first_line(text)}",
        "start PostgreSQL (or check the host and port in DATABASE_URL) and try again",
        RUNTIME,
    )


def _broker_problem(error: BaseException, endpoints: Endpoints) -> Problem | None:
    if not _is(error, "kombu.exceptions", "OperationalError"):
        return None
    return Problem(
        f"cannot reach the Celery broker at CELERY_BROKER_URL or REDIS_URL "
        f"({hide_password(endpoints.broker_url)}): {_first_line(str(error))}",
        "start Redis (or fix the URL) and try again, or run the campaign in this process with --inline",
        RUNTIME,
    )


def _redis_problem(error: BaseException, endpoints: Endpoints) -> Problem | None:
    if not _is(error, "redis.exceptions", "ConnectionError", "TimeoutError"):
        return None
    where = f"REDIS_URL ({hide_password(endpoints.redis_url)})"
    if _is(error, "redis.exceptions", "AuthenticationError"):
        return Problem(f"Redis refused the login of {where}", "fix the password in REDIS_URL")
    return Problem(
        f"cannot reach Redis at {where}: {_first_line(str(error))}",
        "start Redis (or check the host and port in REDIS_URL) and try again",
        RUNTIME,
    )


def _usage_problem(error: BaseException, _: Endpoints) -> Problem | None:
    """An input the operator can correct: an unknown company, a bad value, a file that cannot be read."""
    if isinstance(error, ValueError) or _is(error, "reactivation.storage.companies", "UnknownCompany"):
        return Problem(str(error))
    return None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "no answer"
