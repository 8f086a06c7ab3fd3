"""SGD kernel against the GD kernel, measured in the same run; prints one Markdown table.

Workload W1-like: trajectories of the W1 cell of scripts/bench.py (d = 10,
η = 0.1, λ0 = 1, Φ = 1, sphere init), stopped at |ε| <= 1e-6 (loss_tol =
5e-13). GD runs ``lin2net.dynamics.gd.kernel.integrate_compiled``; SGD runs
``lin2net.dynamics.sgd.kernel.integrate_sgd_compiled`` on the same starts (ε0, S0, P0) for
several data sets and batch sizes, random numbers included. A trajectory with
label noise or on noisy data never converges, so those rows (``max_steps``
2000, final window 100, a twentieth of the trajectories) run to max_steps; the
label-noise rows are paired with the same data without label noise, so their
difference is what the noise costs.

Each figure is CPU time per executed trajectory-step (``time.process_time``:
the CPU the process used, whatever else the machine runs), relative to the GD
kernel's in the same round; every round runs GD and every SGD case once,
interleaved, and the table shows medians over ``--repeats`` rounds. Below the
table: the cost of one more batch element and of the label noise, in GD steps.

``--against REV`` also times the SGD kernel of git revision REV (its
``lin2net/dynamics/sgd/kernel.py``, loaded beside today's, compiled on first
use) on every case, alternating with today's in each round, and prints the
medians of today's CPU time per step over REV's.

Usage: ``python3 scripts/bench_sgd.py`` (about 20 s of CPU), ``--trajectories``,
``--threads`` (default 1), ``--repeats``, ``--against REV``.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lin2net.dynamics.gd.kernel import integrate_compiled  # noqa: E402
from lin2net.dynamics.gd.reference import StopRule  # noqa: E402
from lin2net.dynamics.initialization import initial_conditions  # noqa: E402
from lin2net.dynamics.sgd.data import DataSpec, build_data  # noqa: E402
from lin2net.dynamics.sgd.kernel import integrate_sgd_compiled  # noqa: E402
from lin2net.dynamics.sgd.reference import SGDParameters  # noqa: E402
from lin2net.kernels.counter_rng import trajectory_keys  # noqa: E402
from lin2net.sweep.config import parse_config  # noqa: E402
from lin2net.sweep.grid import expand_grid  # noqa: E402

ETA, LAMBDA0, PHI, D = 0.1, 1.0, 1.0, 10
LOSS_TOL = 5e-13
GAUSSIAN, ONES, NOISY = DataSpec(n=1000), DataSpec(n=1000, x="ones"), DataSpec(n=1000, noise=0.1)
WITHOUT, WITH = "without_replacement", "with_replacement"
BATCHES = (1, 2, 4, 8, 16, 32)


class Case(NamedTuple):
    label: str
    data: DataSpec
    batch_size: int
    label_noise: float
    sampling: str
    long: bool  # runs to max_steps = 2000 (noisy data or label noise) on a twentieth of the trajectories


CASES = (
    *(Case(f"gaussian x, B = {b}", GAUSSIAN, b, 0.0, WITHOUT, False) for b in BATCHES),
    Case("gaussian x, B = 8, with replacement", GAUSSIAN, 8, 0.0, WITH, False),
    Case("gaussian x, B = 32, with replacement", GAUSSIAN, 32, 0.0, WITH, False),
    Case("gaussian x, B = n (full batch)", GAUSSIAN, 1000, 0.0, WITHOUT, False),
    Case("x ones, B = 1", ONES, 1, 0.0, WITHOUT, False),
    Case("x ones, B = 32", ONES, 32, 0.0, WITHOUT, False),
    *(Case(f"noisy data, B = {b}", NOISY, b, 0.0, WITHOUT, True) for b in (1, 8, 32)),
    *(Case(f"noisy data, B = {b}, label noise 0.1", NOISY, b, 0.1, WITHOUT, True) for b in (1, 8, 32)),
    Case("x ones, B = 1, label noise 0.1", ONES, 1, 0.1, WITHOUT, True),
    Case("x ones, B = 32, label noise 0.1", ONES, 32, 0.1, WITHOUT, True),
)


def kernel_at(revision: str, folder: Path) -> ModuleType:
    """The SGD kernel module of git revision ``revision``, loaded from a copy in ``folder``."""
    source = subprocess.run(
        ["git", "show", f"{revision}:lin2net/dynamics/sgd/kernel.py"], cwd=ROOT, check=True, capture_output=True,
        text=True,
    ).stdout
    path = folder / "sgd_kernel_at_revision.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("sgd_kernel_at_revision", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectories", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--against", metavar="REV", help="also time the SGD kernel of this git revision")
    args = parser.parse_args()
    folder = tempfile.TemporaryDirectory()
    kernels = {"today": integrate_sgd_compiled}
    if args.against:
        kernels["against"] = kernel_at(args.against, Path(folder.name)).integrate_sgd_compiled
    config = parse_config(
        {"trajectories": args.trajectories, "grid": {"eta": ETA, "lambda0": LAMBDA0, "phi": PHI, "d": D}}
    )
    initial = initial_conditions(config, expand_grid(config)[0])
    n = initial.eps0.shape[0]
    n_long = max(64, n // 20)
    keys = trajectory_keys(0, np.arange(n, dtype=np.int64))
    data_sets = {spec: build_data(spec, 0) for spec in (GAUSSIAN, ONES, NOISY)}

    def gd() -> tuple[float, int]:
        started = time.process_time()
        results = integrate_compiled(
            initial.eps0, initial.lam0, ETA, PHI, StopRule(LOSS_TOL, 100_000), threads=args.threads,
            s0=initial.s0, p0=initial.p0,
        )
        return time.process_time() - started, int(results.steps.sum())

    def sgd(case: Case, kernel: str = "today") -> tuple[float, int]:
        rows = slice(0, n_long if case.long else n)
        count = rows.stop
        params = SGDParameters.broadcast(count, ETA, PHI, case.batch_size, case.label_noise, keys[rows])
        rule = StopRule(LOSS_TOL, 2_000 if case.long else 100_000)
        started = time.process_time()
        results = kernels[kernel](
            initial.eps0[rows], initial.lam0[rows], params, data_sets[case.data], case.sampling, rule,
            window=100 if case.long else 1000, threads=args.threads, s0=initial.s0[rows], p0=initial.p0[rows],
        )
        return time.process_time() - started, int(results.steps.sum())

    gd()  # compile (or load the cache) outside the timing
    for case in CASES:
        for kernel in kernels:
            sgd(case, kernel)
    ratios: dict[str, list[float]] = {case.label: [] for case in CASES}
    against: dict[str, list[float]] = {case.label: [] for case in CASES}
    gd_rates = []
    for round_number in range(args.repeats):
        seconds, steps = gd()
        gd_step = seconds / steps
        gd_rates.append(1.0 / gd_step)
        for case in CASES:
            seconds, steps = sgd(case)
            ratios[case.label].append(seconds / steps / gd_step)
            if args.against:  # today's again and REV's, in alternating order
                order = ("against", "today") if round_number % 2 else ("today", "against")
                per_step = {kernel: (lambda t: t[0] / t[1])(sgd(case, kernel)) for kernel in order}
                against[case.label].append(per_step["today"] / per_step["against"])
    ratio = {label: statistics.median(values) for label, values in ratios.items()}
    print(
        f"{n} trajectories ({n_long} for the rows that run to max_steps = 2000), d = {D}, η = {ETA}, "
        f"λ0 = {LAMBDA0}, Φ = {PHI}, {args.threads} thread(s); GD: {statistics.median(gd_rates):.3g} "
        f"trajectory-steps per CPU second; medians of {args.repeats} rounds\n"
    )
    print("| SGD case | CPU time per step / GD's |")
    print("|---|---|")
    for case in CASES:
        print(f"| {case.label} | {ratio[case.label]:.2f}x |")
    per_element = (ratio["gaussian x, B = 32"] - ratio["gaussian x, B = 8"]) / 24
    slope = float(np.polyfit(BATCHES, [ratio[f"gaussian x, B = {b}"] for b in BATCHES], 1)[0])
    print(
        f"\neach further batch element (B = 8 → 32, without replacement) costs {per_element:.2f} GD steps "
        f"(least-squares slope over B = 1 … 32: {slope:.2f})"
    )
    noise = [ratio[f"noisy data, B = {b}, label noise 0.1"] - ratio[f"noisy data, B = {b}"] for b in (1, 8, 32)]
    print("label noise costs " + ", ".join(f"{c:.2f}" for c in noise) + " GD steps per step at B = 1, 8, 32")
    if args.against:
        print(f"\n| SGD case | CPU time per step, today's kernel / {args.against}'s |")
        print("|---|---|")
        for case in CASES:
            print(f"| {case.label} | {statistics.median(against[case.label]):.2f}x |")
    folder.cleanup()


if __name__ == "__main__":
    main()
