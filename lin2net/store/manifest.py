"""``OUT/manifest.json``: what a sweep's runs did, for people and for resuming.

The cell files are the truth about which cells are done; the manifest adds
what they cannot say: which cells failed and why, and a history of the runs
(cells ran, skipped and failed, workers, overrides, times). Only the process
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
from collections.abc import Sequence
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


def read_manifest(out: Path) -> dict[str, Any]:
    """The manifest as plain data; ``{}`` if there is none or it is unreadable."""
    try:
        data = json.loads((Path(out) / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_manifest(
    out: Path,
    *,
    status: str,
    total: int,
    done: int,
    failures: Sequence[CellFailure],
    run: dict[str, Any],
    new_run: bool,
) -> None:
    """Record the state at the start (``new_run``: ``run`` is appended to the
    history) or the end of a run (``run`` replaces the last entry)."""
    runs = [r for r in read_manifest(out).get("runs", []) if isinstance(r, dict)]
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
    atomic_write(Path(out) / MANIFEST_FILE, lambda temp: temp.write_text(text, encoding="utf-8"))
