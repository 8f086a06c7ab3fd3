#!/usr/bin/env python3
"""Reproduce the seed paper's Figure 3: run configs/figure3.yaml and plot it to docs/figure3.png.

Usage (from the repository root):

    python3 scripts/figure3.py                 # the full 31 x 31 grid
    python3 scripts/figure3.py --thin 3        # every 3rd eta and lambda0 value (11 x 11), same endpoints

``--thin k`` keeps every k-th point of each geomspace/linspace axis of the
grid (endpoints included when (num − 1) is divisible by k), so a thinned
figure shows a subset of exactly the cells the full one has. Prints the wall
time of the sweep and of the plot.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lin2net.config import parse_config, parse_yaml  # noqa: E402
from lin2net.plotting import plot_sweep  # noqa: E402
from lin2net.sweep import run_sweep  # noqa: E402


def thin_axis(spec: Any, k: int) -> Any:
    """Every k-th value of a {geomspace|linspace: [start, stop, num]} axis; other forms unchanged."""
    if k <= 1 or not isinstance(spec, dict) or len(spec) != 1:
        return spec
    ((form, (start, stop, num)),) = spec.items()
    return {form: [start, stop, (int(num) - 1) // k + 1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "figure3.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "figure3")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "figure3.png")
    parser.add_argument("--thin", type=int, default=1, help="keep every k-th value of the eta and lambda0 axes")
    parser.add_argument("--trajectories", type=int, default=None, help="override trajectories per cell")
    args = parser.parse_args()

    raw = parse_yaml(args.config.read_text(encoding="utf-8"), source=str(args.config))
    for axis in ("eta", "eta_lambda0", "lambda0"):
        if axis in raw["grid"]:
            raw["grid"][axis] = thin_axis(raw["grid"][axis], args.thin)
    if args.trajectories is not None:
        raw["trajectories"] = args.trajectories
    config = parse_config(raw, default_name="figure3")

    started = time.perf_counter()
    report = run_sweep(config, args.out, overwrite=True)
    swept = time.perf_counter()
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    plot_sweep(args.out, args.figure)
    done = time.perf_counter()
    print(
        f"{report.cells} cells x {config.trajectories} trajectories: sweep {swept - started:.1f} s, "
        f"plot {done - swept:.1f} s, total {done - started:.1f} s -> {args.figure}"
    )


if __name__ == "__main__":
    main()
