#!/usr/bin/env python3
"""Reproduce the seed paper's Figure 3: run configs/figure3.yaml and plot it to docs/figure3.png.

Usage (from the repository root):

    python3 scripts/figure3.py                 # the full 31 x 31 grid -> runs/figure3, docs/figure3.png
    python3 scripts/figure3.py --thin 3        # every 3rd eta and lambda0 value (11 x 11), same endpoints
                                               #   -> runs/figure3-thin3, runs/figure3-thin3/figure3.png

Only the full default run (no --thin, --trajectories or --config) writes the
committed docs/figure3.png; any other run writes its figure beside its sweep
(or to -o FILE) and its sweep to its own directory (or --out DIR), so a
quick look never replaces the committed figure or the full sweep.

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

from lin2net.analysis.plotting import plot_sweep  # noqa: E402
from lin2net.sweep.config import parse_config, parse_yaml  # noqa: E402
from lin2net.sweep.runner import run_sweep  # noqa: E402


def thin_axis(spec: Any, k: int) -> Any:
    """Every k-th value of a {geomspace|linspace: [start, stop, num]} axis; other forms unchanged."""
    if k <= 1 or not isinstance(spec, dict) or len(spec) != 1:
        return spec
    ((form, (start, stop, num)),) = spec.items()
    return {form: [start, stop, (int(num) - 1) // k + 1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_config = ROOT / "configs" / "figure3.yaml"
    parser.add_argument("--config", type=Path, default=default_config)
    parser.add_argument("--out", type=Path, default=None, help="sweep directory [default: runs/figure3[-variant]]")
    parser.add_argument(
        "-o",
        "--figure",
        type=Path,
        default=None,
        help="figure file [default: docs/figure3.png for the full default run, else OUT/figure3.png]",
    )
    parser.add_argument("--thin", type=int, default=1, help="keep every k-th value of the eta and lambda0 axes")
    parser.add_argument("--trajectories", type=int, default=None, help="override trajectories per cell")
    args = parser.parse_args()
    if args.thin < 1:
        parser.error("--thin must be >= 1")
    variant = [f"thin{args.thin}"] if args.thin > 1 else []
    variant += [f"n{args.trajectories}"] if args.trajectories is not None else []
    variant += [args.config.stem] if args.config.resolve() != default_config.resolve() else []
    out = args.out or ROOT / "runs" / "-".join(["figure3", *variant])
    figure = args.figure or (ROOT / "docs" / "figure3.png" if not variant else out / "figure3.png")

    raw = parse_yaml(args.config.read_text(encoding="utf-8"), source=str(args.config))
    for axis in ("eta", "eta_lambda0", "lambda0"):
        if axis in raw["grid"]:
            raw["grid"][axis] = thin_axis(raw["grid"][axis], args.thin)
    if args.trajectories is not None:
        raw["trajectories"] = args.trajectories
    config = parse_config(raw, default_name="figure3")

    started = time.perf_counter()
    report = run_sweep(config, out, overwrite=True)
    swept = time.perf_counter()
    figure.parent.mkdir(parents=True, exist_ok=True)
    plot_sweep(out, figure)
    done = time.perf_counter()
    print(
        f"{report.cells} cells x {config.trajectories} trajectories: sweep {swept - started:.1f} s, "
        f"plot {done - swept:.1f} s, total {done - started:.1f} s -> {figure}"
    )


if __name__ == "__main__":
    main()
