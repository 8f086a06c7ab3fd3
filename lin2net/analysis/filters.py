"""Row filters and derived values: DuckDB expressions over the trajectory table.

``lin2net summarize`` and ``lin2net plot`` take ``--where 'lambda0 = 4 and d > 1'``
(keep the trajectories for which the expression is true) and ``plot`` takes
``--value 'eta * sharpness_T'`` (a number per trajectory, reduced like a
column). Both are DuckDB SQL expressions over the columns of the trajectory
table (docs/columns.md). :func:`apply` checks them against the table before
anything is computed and raises one :class:`~lin2net.errors.ConfigError`
naming the option: a syntax error, an unknown column (with the closest column
names as a did-you-mean), an unknown function, or a ``--value`` that is not a
number.

A derived value becomes a column of the filtered table named by its own text,
so the statistics code reduces it like any other column.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from lin2net.errors import ConfigError

if TYPE_CHECKING:  # summarize without --where imports no pyarrow
    import pyarrow as pa

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMERIC = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "FLOAT",
    "DOUBLE",
    "DECIMAL",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "BOOLEAN",
)


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or ''."""
    close = difflib.get_close_matches(name, list(choices), n=2, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"


def is_column(value: str) -> bool:
    """True for a bare name (a column, or a misspelt one), False for an expression."""
    return IDENTIFIER.fullmatch(value.strip()) is not None


def unknown_column(option: str, name: str, columns: Sequence[str], kind: str = "column") -> ConfigError:
    return ConfigError(option, f"unknown {kind} {name!r}{did_you_mean(name, columns)}")


def referenced_columns(expression: str, columns: Iterable[str]) -> set[str]:
    """The columns an expression names (any identifier that is a column; string
    literals are not looked at closely: a false hit only reads one more column)."""
    names = set(columns)
    return {token for token in IDENTIFIER.findall(expression) if token in names}


def _error(option: str, error: Exception, columns: Sequence[str]) -> ConfigError:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    missing = re.search(r'Referenced column "([^"]+)" not found', text)
    if missing:
        return unknown_column(option, missing.group(1), columns)
    text = re.sub(r"^[A-Za-z ]+ Error: ", "", text)
    hint = next((line for line in lines[1:] if line.startswith("Did you mean")), "")
    return ConfigError(option, f"not a valid DuckDB expression: {text}{' ' + hint if hint else ''}")


def _check_text(option: str, expression: str) -> str:
    text = expression.strip()
    if not text:
        raise ConfigError(option, "empty expression")
    if ";" in text:
        raise ConfigError(option, "one expression, without ';'")
    return text


def apply(table: pa.Table, where: str | None = None, values: Sequence[str] = ()) -> pa.Table:
    """``table``'s rows for which ``where`` holds, with a column per derived
    value in ``values`` (those that are not already columns), named by its text.
    Bad expressions raise ConfigError (``--where`` or ``--value``)."""
    import duckdb

    columns = list(table.column_names)
    derived = [v for v in dict.fromkeys(values) if v not in columns]
    for value in derived:
        if is_column(value):
            raise unknown_column("--value", value.strip(), columns)
    if where is None and not derived:
        return table
    connection = duckdb.connect()
    try:
        connection.register("trajectories", table)
        condition = ""
        if where is not None:
            condition = f" WHERE ({_check_text('--where', where)})"
            try:
                connection.sql(f"SELECT count(*) FROM trajectories{condition}").fetchall()
            except duckdb.Error as error:
                raise _error("--where", error, columns) from None
        selected = ["*"]
        for value in derived:
            text = _check_text("--value", value)
            try:
                kind = str(connection.sql(f"SELECT ({text}) FROM trajectories LIMIT 0").types[0])
            except duckdb.Error as error:
                raise _error("--value", error, columns) from None
            if not kind.startswith(_NUMERIC):
                raise ConfigError("--value", f"{value!r} is of type {kind}; a value must be a number")
            selected.append(f"({text})::DOUBLE AS " + '"' + value.replace('"', '""') + '"')
        try:
            return connection.sql(f"SELECT {', '.join(selected)} FROM trajectories{condition}").to_arrow_table()
        except duckdb.Error as error:  # an error only the data shows (a cast, a division by zero)
            raise _error("--value" if derived else "--where", error, columns) from None
    finally:
        connection.close()
