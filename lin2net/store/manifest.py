"""``OUT/manifest.json``: what a sweep's runs did, for people and for resuming.

The verified shard (or summary) files are the truth about which cells are
done; the manifest adds what they cannot say: which cells failed and why,
and a history of the runs (cells ran, skipped and failed, workers,
overrides, times). Only the process
that coordinates a sweep writes it, atomically, at the start and the end of
each run, so a killed run leaves the previous complete manifest or a
``running`` one.

Example::

    {"status": "incomplete",
     "cells": {"total": 8, "done": 7, "failed": 1, "missing": 1},
     "failed": [{"cell_id": "3fa2...", "parameters": {...}, "error": "RuntimeError: ..."}],
     "runs": [{"started": "...", "ran": 8, "skipped": 0, "failed": 1, ...}]}
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lin2net.store.outdir import MANIFEST_FILE, atomic_write
from lin2net.sweep.grid import Cell


@dataclass(frozen=True)
class CellFailure:
    """A cell whose computation or file write raised; ``error`` is one line."""

    cell: Cell
    error: str

    def describe(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in self.cell.parameters.items() if k != "init")
        return f"{self.cell.cell_id} ({params})"


MAX_MANIFEST_BYTES = 64_000_000  # a manifest lists at most every cell of a sweep once


def read_manifest(out: Path) -> dict[str, Any]:
    """The manifest as plain data; ``{}`` if there is none or it is unreadable.

    A manifest is a record for people, and anyone may edit it: entries of the
    wrong shape (``{"runs": 5}``, ``[1]``, a failure that is not an object
    with a string ``cell_id``) are dropped, so readers see only lists of
    objects under ``runs`` and ``failed``."""
    try:
        with open(Path(out) / MANIFEST_FILE, "rb") as handle:
            text = handle.read(MAX_MANIFEST_BYTES + 1)
        data = json.loads(text) if len(text) <= MAX_MANIFEST_BYTES else None
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    runs, failed = data.get("runs"), data.get("failed")
    data["runs"] = [r for r in runs if isinstance(r, dict)] if isinstance(runs, list) else []
    data["failed"] = (
        [f for f in failed if isinstance(f, dict) and isinstance(f.get("cell_id"), str)]
        if isinstance(failed, list)
        else []
    )
    if not isinstance(data.get("cells"), dict):
        data.pop("cells", None)
    return data


def write_manifest(
    out: Path,
    *,
    status: str,
    total: int,
    done: int,
    failures: Sequence[CellFailure],
    run: dict[str, Any],
    new_run: bool,
    guard: Callable[[], None] | None = None,
) -> None:
    """Record the state at the start (``new_run``: ``run`` is appended to the
    history) or the end of a run (``run`` replaces the last entry); ``guard()``
    may raise to cancel the write (see :func:`lin2net.store.outdir.atomic_write`)."""
    runs = list(read_manifest(out).get("runs", []))
    if runs and not new_run:
        runs[-1] = run
    else:
        runs.append(run)
    data = {
        "status": status,
        "cells": {"total": total, "done": done, "failed": len(failures), "missing": total - done},
        "failed": [{"cell_id": f.cell.cell_id, "parameters": f.cell.parameters, "error": f.error} for f in failures],
        "runs": runs,
    }
    text = json.dumps(data, indent=2) + "\n"
    atomic_write(Path(out) / MANIFEST_FILE, lambda temp: temp.write_text(text, encoding="utf-8"), guard)
