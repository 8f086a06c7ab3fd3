#!/usr/bin/env python3
"""Regenerate the figures of docs/ that are not Figure 3 or the SGD study.

Usage (from the repository root; about half a minute on 2 cores):

    python3 scripts/figures.py             # writes the files below

* docs/figure1.png: the paper's Figure 1 (``lin2net plot --kind phase``);
* docs/figure2.png: the paper's Figure 2 (``lin2net plot --kind regions``);
* docs/line.png: ``lin2net plot runs/line --kind line --x eta_lambda0 --value sharpness_T --hue d --facet lambda0``
  (the sweep of configs/line.yaml);
* docs/stable.png: the same with ``--stat frac_stable`` (converged at a stable minimum, η·S(T) < 2);
* docs/trace.png: ``lin2net trace --eta 0.5 --lambda0 3 --d 10 --trajectory 0,1,2``;
* docs/trace_sgd.png: ``lin2net trace --eta 0.2 --lambda0 1 --d 10 --batch-size 4 --label-noise 0.1``.

Figure 3 is scripts/figure3.py; the SGD study's figures are scripts/sgd_study.py.
The sweep of configs/line.yaml runs into runs/line (resumed if it is there). Each figure is
written through the CLI, so the commands above reproduce it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from typer.testing import CliRunner  # noqa: E402

from lin2net.cli import app  # noqa: E402

DOCS = ROOT / "docs"


def lin2net(*args: str) -> None:
    """Run one lin2net command; stop on a failure with its output."""
    result = CliRunner().invoke(app, list(args))
    if result.exit_code != 0:
        sys.exit(f"lin2net {' '.join(args)} failed ({result.exit_code}):\n{result.output}")
    print(f"lin2net {' '.join(args)}")


def main() -> None:
    started = time.perf_counter()
    line = str(ROOT / "runs" / "line")
    lin2net("sweep", str(ROOT / "configs" / "line.yaml"), "-o", line, "-q")
    lin2net("plot", "--kind", "phase", "-o", str(DOCS / "figure1.png"))
    lin2net("plot", "--kind", "regions", "-o", str(DOCS / "figure2.png"))
    lines = ["plot", line, "--kind", "line", "--x", "eta_lambda0", "--hue", "d", "--facet", "lambda0"]
    lin2net(*lines, "--value", "sharpness_T", "-o", str(DOCS / "line.png"))
    lin2net(*lines, "--stat", "frac_stable", "-o", str(DOCS / "stable.png"))
    lin2net("trace", "--eta", "0.5", "--lambda0", "3", "--d", "10", "--trajectory", "0,1,2",
            "--plot", str(DOCS / "trace.png"))  # fmt: skip
    lin2net("trace", "--eta", "0.2", "--lambda0", "1", "--d", "10", "--batch-size", "4", "--label-noise", "0.1",
            "--max-steps", "3000", "--plot", str(DOCS / "trace_sgd.png"))  # fmt: skip
    print(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
