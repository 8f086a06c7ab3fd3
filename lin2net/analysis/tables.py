"""Tables for people and files: terminal rendering and exports shared by commands.

:func:`terminal_table` turns a DataFrame into a rich table that fits a given
width by *choosing columns*: columns are listed in priority order, the ones
that must show (grouping columns, ids) always do, and the least important
others are dropped — and named in the caption — until the table fits. Cells
never wrap, so a number is never split across lines. Axes that take a single
value are not columns but a line of the caption ("Φ = 1, d = 10").

:func:`choose_format` picks an export format from ``--format`` and the
``-o`` suffix (an unknown suffix is an error, never a silent CSV) and
:func:`export` writes csv, markdown or parquet. Integer columns stay integers
in every format: give a column with missing entries pandas' nullable ``Int64``
type (missing is then empty, not a NaN that turns the column into floats).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lin2net.dynamics import registry
from lin2net.errors import ConfigError

if TYPE_CHECKING:  # imported where used: the CLI imports this module, and a csv export needs neither
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

FORMATS = ("table", "csv", "markdown", "parquet")
SUFFIX_FORMATS = {".csv": "csv", ".md": "markdown", ".markdown": "markdown", ".parquet": "parquet"}
AXIS_LABELS = registry.axis_labels()  # axis → label, from the registry of dynamics (as registered at import)


def format_value(value: Any, digits: int = 4, nan: str = "nan") -> str:
    """A number to ``digits`` significant digits; integers in full; NaN as ``nan``;
    missing (None, pandas' NA) as ''."""
    if value is None or type(value).__name__ == "NAType":  # pandas' NA, without importing pandas
        return ""
    if isinstance(value, float):
        return nan if value != value else f"{value + 0.0:.{digits}g}"  # + 0.0: -0.0 prints as 0, not -0
    return str(value)


@dataclass(frozen=True)
class Fitted:
    """The columns a terminal table shows, the ones it dropped to fit, its width."""

    shown: list[str]
    dropped: list[str]
    width: int


def fit_columns(
    headers: Mapping[str, str], cells: Mapping[str, list[str]], required: Sequence[str], width: int | None
) -> Fitted:
    """Keep ``required`` columns and then the others in the order of ``headers``
    (priority order) while the boxed table is at most ``width`` characters wide.
    Columns keep their order of ``headers`` in the table."""
    natural = {c: max([len(headers[c]), *(len(text) for text in cells[c])]) + 3 for c in headers}
    total = 1 + sum(natural[c] for c in headers if c in required)
    chosen = set(required)
    dropped = []
    for column in headers:
        if column in chosen:
            continue
        if width is None or total + natural[column] <= width:
            chosen.add(column)
            total += natural[column]
        else:
            dropped.append(column)
    return Fitted([c for c in headers if c in chosen], dropped, total)


def terminal_table(
    frame: pd.DataFrame,
    *,
    title: str,
    width: int | None,
    labels: Mapping[str, str] | None = None,
    required: Sequence[str] = (),
    axes: Sequence[str] = (),
    caption: str | None = None,
) -> Table:
    """A rich table of ``frame`` that fits ``width`` (None: no limit).

    ``labels`` maps the columns to show, in priority order, to headers (default:
    every column under its own name). ``required`` columns always show. Of the
    ``axes`` columns, those with one value become "label = value" in the
    caption unless required; the others are required too.
    """
    from rich.table import Table

    labels = dict(labels) if labels is not None else {str(c): str(c) for c in frame.columns}
    labels = {c: h for c, h in labels.items() if c in frame.columns}
    constant = [c for c in axes if c in labels and c not in required and frame[c].nunique(dropna=False) <= 1]
    required = [*required, *(c for c in axes if c in labels and c not in constant)]
    headers = {c: h for c, h in labels.items() if c not in constant}
    cells = {c: [format_value(v, nan="–") for v in frame[c].tolist()] for c in headers}
    fitted = fit_columns(headers, cells, [c for c in required if c in headers], width)
    notes = []
    if constant and len(frame):
        notes.append(", ".join(f"{labels[c]} = {format_value(frame[c].iloc[0])}" for c in constant))
    if caption:
        notes.append(caption)
    if fitted.dropped:
        names = ", ".join(headers[c] for c in fitted.dropped)
        notes.append(f"not shown for lack of width: {names} (wider terminal, or --format csv)")
    table = Table(title=title, caption="\n".join(notes) or None, header_style="bold")
    for column in fitted.shown:
        numeric = frame[column].dtype.kind in "biuf" or str(frame[column].dtype) == "Int64"
        table.add_column(headers[column], justify="right" if numeric else "left", no_wrap=True, overflow="ellipsis")
    for i in range(len(frame)):
        table.add_row(*(cells[c][i] for c in fitted.shown))
    return table


def print_table(console: Console, table: Table, width: int | None = None) -> None:
    """Print ``table`` at no less than its natural width, so rich never wraps a cell;
    the title and caption wrap at ``width`` (default: the console's)."""
    from rich.console import Console
    from rich.measure import Measurement

    natural = Measurement.get(console, console.options.update(max_width=100_000), table).maximum
    target = max(natural, width or console.width)
    Console(file=console.file, width=target, force_terminal=console.is_terminal).print(table)


def choose_format(fmt: str | None, output: Path | None, formats: Sequence[str] = FORMATS) -> str:
    """The export format: ``fmt`` if given, else from ``output``'s suffix, else
    ``table``. A suffix that names no format, table output to a file, and
    parquet to the terminal are errors (``--format`` or ``--output``)."""
    if fmt is None:
        if output is None:
            return "table"
        suffix = output.suffix.lower()
        fmt = SUFFIX_FORMATS.get(suffix)
        if fmt is None or fmt not in formats:
            known = ", ".join(s for s, f in SUFFIX_FORMATS.items() if f in formats)
            problem = f"unknown file type {suffix or '(no suffix)'!r} of {output.name!r}; use {known}, or --format"
            raise ConfigError("--output", problem)
    if fmt not in formats:
        raise ConfigError("--format", f"unknown format {fmt!r}; choose from {', '.join(formats)}")
    if fmt == "table" and output is not None:
        others = ", ".join(f for f in formats if f != "table")
        raise ConfigError("--format", f"table prints to the terminal; use {others} with -o")
    if fmt == "parquet" and output is None:
        raise ConfigError("--format", "parquet output needs a file: add -o FILE.parquet")
    return fmt


def to_csv(frame: pd.DataFrame) -> str:
    return str(frame.to_csv(index=False))


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (numbers to 6 significant digits)."""
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(format_value(v, 6) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def export(frame: Any, fmt: str, output: Path | None) -> None:
    """``frame`` (a DataFrame, or anything with ``to_csv()`` and ``df()`` such as
    :class:`lin2net.analysis.summary.Rows`) as csv or markdown on stdout, or csv,
    markdown or parquet written atomically to ``output`` (an unwritable path is
    an OutputError)."""
    from lin2net.store.outdir import atomic_write

    if hasattr(frame, "df"):
        if fmt == "csv":
            text = frame.to_csv()
            if output is None:
                sys.stdout.write(text)
            else:
                atomic_write(output, lambda temp: temp.write_text(text, encoding="utf-8"))
            return
        frame = frame.df()

    if fmt == "parquet":
        if output is None:
            raise ConfigError("--format", "parquet output needs a file: add -o FILE.parquet")
        atomic_write(output, lambda temp: frame.to_parquet(temp, index=False))
        return
    text = to_csv(frame) if fmt == "csv" else to_markdown(frame)
    if output is None:
        sys.stdout.write(text)
        return
    atomic_write(output, lambda temp: temp.write_text(text, encoding="utf-8"))
