"""Columns the database computes from what the sync writes, so that set-based queries join on plain values.

* `clients.phone_key`, `bookings.client_phone_key`: the E.164 form of a phone stored in any format.
* `clients.last_service_id`: the id of the first (most recent) item of `clients.last_services`, or NULL when it
  is not a whole number from 0 to 10^18 (JSON numbers only; a string "123" is not an id).

Stored generated columns: computed once when the sync writes a row, not for every row of every query (the JSON
path and the phone rules cost about a microsecond each, which on a million clients is a second per query).

Phone keys

`clients.phone` and `bookings.client_phone` come from the booking system in any format ("8 (900) 123-45-67",
"+7 900 1234567", "79001234567"), while opt-outs and history rows hold E.164 ("+79001234567"). Both synced tables
carry a stored generated column (`clients.phone_key`, `bookings.client_phone_key`) computed by the expression
below, indexed where a query looks phones up. For every number `phones.normalize_phone` accepts in the ways
numbers are written in Russia (with 8, 7, +7, 810, ten digits, any separators) it is the same E.164 (tests
compare the two on generated formats). It differs for a foreign number written with its trunk prefix after the
country code ("+44 0 20 …": the library drops the 0), which is why the opt-out rule is re-checked in Python
with `normalize_phone` on the rows a query returns.

A phone holding a NUL character has no key: PostgreSQL text cannot hold one, and SQLite's length() stops at the
first, so the rules below would read a different number than Python does.

The rules (applied after removing the SEPARATORS below: whitespace, "(", ")", "-", "." and "+"):
  a "+" in the input: international; "+7 8 …" with 12 digits drops the trunk 8; otherwise "+" and the digits;
  11 digits starting with 7 or 8: +7 and the last ten; 10 digits: +7 and them;
  "810…" (Russia's international prefix): "+" and what follows; anything else: "+" and the digits.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import BigInteger, Text

# The separators stripped before the digits are read: the whitespace phone fields actually contain (space, tab,
# line breaks, the no-break, figure, thin, narrow no-break and ideographic spaces that copy-paste and number
# formatters produce) and the punctuation numbers are written with. Other Unicode spaces pass Python's `\s` but
# phonenumbers rejects numbers containing them, so `normalize_phone` never returns a number for them; stripping
# them too would not fit anyway: SQLite's parser overflows beyond ~30 nested replace() calls.
SEPARATORS = " \t\n\r\u00a0\u2007\u2009\u202f\u3000" + "+().-"


def phone_key(raw: object) -> str | None:
    """The Python twin of the SQL expression (for tests and for code that holds a raw phone)."""
    if not isinstance(raw, str) or "\x00" in raw:
        return None
    digits = "".join(ch for ch in raw if ch not in SEPARATORS)
    if not digits:
        return None
    if "+" in raw:
        if len(digits) == 12 and digits.startswith("78"):
            return "+7" + digits[2:]
        return "+" + digits
    if len(digits) == 11 and digits[0] in "78":
        return "+7" + digits[1:]
    if len(digits) == 10:
        return "+7" + digits
    if len(digits) > 11 and digits.startswith("810"):
        return "+" + digits[3:]
    return "+" + digits


def _stripped_sqlite(column: str) -> str:
    # SQLite has no regexp_replace: nested replace() calls, one per character, each written as char(code point)
    # so that the table's DDL stays on one line per column (SQLAlchemy reflects generated columns line by line,
    # which Alembic's table copies on SQLite rely on).
    expression = column
    for ch in SEPARATORS:
        expression = f"replace({expression}, char({ord(ch)}), '')"
    return expression


def key_sql(column: str, digits: str, has_plus: str) -> str:
    """The CASE that turns the separator-free digits into a key."""
    d = digits
    return (
        "CASE"
        f" WHEN {column} IS NULL OR {d} = '' THEN NULL"
        f" WHEN {has_plus} THEN"
        f" (CASE WHEN length({d}) = 12 AND substr({d}, 1, 2) = '78' THEN '+7' || substr({d}, 3) ELSE '+' || {d} END)"
        f" WHEN length({d}) = 11 AND substr({d}, 1, 1) IN ('7', '8') THEN '+7' || substr({d}, 2)"
        f" WHEN length({d}) = 10 THEN '+7' || {d}"
        f" WHEN length({d}) > 11 AND substr({d}, 1, 3) = '810' THEN '+' || substr({d}, 4)"
        f" ELSE '+' || {d} END"
    )


# PostgreSQL: one immutable PL/pgSQL function (created by a migration) that the generated columns call. It strips
# the separators once with translate(); the same CASE written inline would strip them ten times, and a LANGUAGE sql
# body with a sub-select is not inlined and costs more per call (measured: 2.6 s, 6.4 s, 10.5 s per million rows).
POSTGRES_FUNCTION = "reactivation_phone_key"
_PG_REMOVED = "".join(f"\\{ord(ch):04X}" for ch in SEPARATORS)
POSTGRES_FUNCTION_SQL = f"""CREATE OR REPLACE FUNCTION {POSTGRES_FUNCTION}(raw text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  d text := translate(raw, U&'{_PG_REMOVED}', '');
BEGIN
  IF d IS NULL OR d = '' THEN
    RETURN NULL;
  END IF;
  IF strpos(raw, '+') > 0 THEN
    IF length(d) = 12 AND substr(d, 1, 2) = '78' THEN
      RETURN '+7' || substr(d, 3);
    END IF;
    RETURN '+' || d;
  END IF;
  IF length(d) = 11 AND substr(d, 1, 1) IN ('7', '8') THEN
    RETURN '+7' || substr(d, 2);
  END IF;
  IF length(d) = 10 THEN
    RETURN '+7' || d;
  END IF;
  IF length(d) > 11 AND substr(d, 1, 3) = '810' THEN
    RETURN '+' || substr(d, 4);
  END IF;
  RETURN '+' || d;
END
$$"""


def phone_key_sql(column: str, dialect: str) -> str:
    """The generated-column expression for `column` on `dialect` ("postgresql" or "sqlite")."""
    if dialect == "postgresql":
        return f"{POSTGRES_FUNCTION}({column})"
    key = key_sql(column, _stripped_sqlite(column), f"instr({column}, '+') > 0")
    return f"CASE WHEN instr({column}, char(0)) > 0 THEN NULL ELSE {key} END"


class PhoneKey(FunctionElement[str]):
    """`phone_key(column)` as a SQL expression, rendered for the dialect (used by the models' Computed columns)."""

    type = Text()
    inherit_cache = True
    name = "phone_key"
    _traverse_internals = [("column_name", InternalTraversal.dp_string)]  # noqa: RUF012

    def __init__(self, column_name: str) -> None:
        super().__init__()
        self.column_name = column_name


@compiles(PhoneKey)
def _compile_phone_key(element: PhoneKey, compiler: Any, **kw: Any) -> str:
    return phone_key_sql(element.column_name, compiler.dialect.name)


def phone_key_expression(column_name: str) -> ColumnElement[str]:
    return PhoneKey(column_name)


def last_service_id_sql(column: str, dialect: str) -> str:
    """The generated-column expression for the id of `column`'s first item."""
    if dialect == "postgresql":
        return (
            f"CASE WHEN jsonb_typeof({column} -> 0 -> 'id') = 'number'"
            f" AND ({column} -> 0 ->> 'id') ~ '^[0-9]{{1,18}}$'"
            f" THEN CAST({column} -> 0 ->> 'id' AS BIGINT) END"
        )
    path = "'$[0].id'"
    return (
        f"CASE WHEN json_valid({column}) THEN"
        f" CASE WHEN json_type({column}, {path}) = 'integer'"
        f" AND json_extract({column}, {path}) BETWEEN 0 AND 999999999999999999"
        f" THEN json_extract({column}, {path}) END END"
    )


def last_service_id(raw: Any) -> int | None:
    """The Python twin of `last_service_id_sql`, for JSON already loaded."""
    if isinstance(raw, list) and raw and isinstance(raw[0], dict):
        value = raw[0].get("id")
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**18:
            return value
    return None


class LastServiceId(FunctionElement[int]):
    """`last_service_id(column)` rendered for the dialect (the models' Computed column)."""

    type = BigInteger()
    inherit_cache = True
    name = "last_service_id"
    _traverse_internals = [("column_name", InternalTraversal.dp_string)]  # noqa: RUF012

    def __init__(self, column_name: str) -> None:
        super().__init__()
        self.column_name = column_name


@compiles(LastServiceId)
def _compile_last_service_id(element: LastServiceId, compiler: Any, **kw: Any) -> str:
    return last_service_id_sql(element.column_name, compiler.dialect.name)
