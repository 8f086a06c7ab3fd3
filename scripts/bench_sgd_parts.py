"""Where an SGD batch element's time goes: the data access of the kernel, piece by piece.

Small numba loops shaped like the SGD kernel's batch sums (``LANES`` lanes,
``--steps`` steps of a batch of ``B`` positions each, data of ``--n`` points,
L1/L2-resident for the default n = 1000) time the pieces of the work that one
batch element costs, per lane (the rows of PARTS): the counter-RNG word and the
uniform position (``word``, ``below``; vectorized over the lanes); the scalar
gathers of x² and x ν and their sums (a lane's sums in registers); both (the
kernel with replacement); and the whole batch without replacement, with the
partial Fisher–Yates swaps as the kernel did them before (both positions
written, both reset) and as it does now (only the picked position written and
reset), now also without its reset (a wrong result, to time the reset) and with
the x² gather only (data without noise, where x ν = 0).

Every figure is in GD steps: CPU time (``time.process_time``, one thread) per
lane and batch element over the CPU time per trajectory-step of the GD kernel on
the W1 workload, measured in the same run, the variants interleaved round by
round (a shared machine's load hits them alike); medians over ``--repeats``
rounds.

Usage: ``python3 scripts/bench_sgd_parts.py [--batch 8 32] [--repeats 7] [--n 1000]``
(about 20 s of CPU after compilation).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lin2net.dynamics.gd.kernel import integrate_compiled  # noqa: E402
from lin2net.dynamics.gd.reference import StopRule  # noqa: E402
from lin2net.dynamics.initialization import initial_conditions  # noqa: E402
from lin2net.dynamics.sgd.data import DataSpec, build_data  # noqa: E402
from lin2net.kernels.counter_rng import NOISE_DRAWS, below, step_counter, trajectory_keys, word  # noqa: E402
from lin2net.kernels.kit import JIT, LANES  # noqa: E402
from lin2net.sweep.config import parse_config  # noqa: E402
from lin2net.sweep.grid import expand_grid  # noqa: E402

JIT_HERE = {**JIT, "cache": False}


@njit(inline="always", **JIT_HERE)
def _draw_row(key: Any, sk: Any, kk: Any, span: Any, offset: int, out: Any, row: int) -> None:
    for j in range(LANES):
        out[row, j] = np.int32(offset + np.int64(below(word(key[j], sk[j], kk), span)))


@njit(**JIT_HERE)
def run_part(part: int, steps: int, batch: int, key: Any, x2: Any, x_nu: Any) -> float:
    """``steps`` steps of one piece (``part``, see PARTS) for LANES lanes; returns a checksum."""
    n = x2.shape[0]
    picks = np.zeros((batch, LANES), dtype=np.int32)
    perm = np.empty((LANES, n), dtype=np.int32)
    for j in range(LANES):
        for i in range(n):
            perm[j, i] = i
    s = np.zeros(LANES)
    r = np.zeros(LANES)
    sk = np.zeros(LANES, dtype=np.uint64)
    for j in range(LANES):  # positions drawn once, for the pieces that do not hash
        sk[j] = step_counter(np.uint64(0))
    for k in range(batch):
        _draw_row(key, sk, np.uint64(NOISE_DRAWS + k), np.uint64(n - k), k, picks, k)
    total = 0.0
    for t in range(steps):
        if part != 1:
            for j in range(LANES):
                sk[j] = step_counter(np.uint64(t))
            for k in range(batch):
                _draw_row(key, sk, np.uint64(NOISE_DRAWS + k), np.uint64(n - k), k, picks, k)
        if part == 0:
            total += picks[t % batch, t % LANES]
            continue
        for j in range(LANES):
            sj = 0.0
            rj = 0.0
            if part in (1, 2):  # the positions are the data indices (with replacement)
                for k in range(batch):
                    i = picks[k, j]
                    sj += x2[i]
                    rj += x_nu[i]
            elif part == 3:  # before: both positions written, both reset
                for k in range(batch):
                    pick = picks[k, j]
                    i = perm[j, pick]
                    perm[j, pick] = perm[j, k]
                    perm[j, k] = i
                    sj += x2[i]
                    rj += x_nu[i]
                for k in range(batch):
                    perm[j, k] = k
                    perm[j, picks[k, j]] = picks[k, j]
            elif part == 6:  # after, x² only
                for k in range(batch):
                    pick = picks[k, j]
                    i = perm[j, pick]
                    perm[j, pick] = perm[j, k]
                    sj += x2[i]
                for k in range(batch):
                    perm[j, picks[k, j]] = picks[k, j]
            else:  # after: only the picked position written and reset (5: no reset, timing only)
                for k in range(batch):
                    pick = picks[k, j]
                    i = perm[j, pick]
                    perm[j, pick] = perm[j, k]
                    sj += x2[i]
                    rj += x_nu[i]
                if part == 4:
                    for k in range(batch):
                        perm[j, picks[k, j]] = picks[k, j]
            s[j] = sj
            r[j] = rj
        total += s[t % LANES] + r[t % LANES]
    return total


PARTS = (
    "hash: word + uniform position (vectorized over lanes)",
    "sums: gathers of x² and x ν from given indices",
    "hash + sums (with replacement)",
    "hash + swap + sums, swap as before (both positions written and reset)",
    "hash + swap + sums, swap as now (picked position only)",
    "the same without the reset (wrong; timing only)",
    "hash + swap + sums of x² only (data without noise)",
)


def cpu_seconds(run: Callable[[], Any]) -> float:
    """CPU seconds of the process (every thread) that ``run`` took."""
    started = time.process_time()
    run()
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--trajectories", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    config = parse_config(
        {"trajectories": args.trajectories, "grid": {"eta": 0.1, "lambda0": 1.0, "phi": 1.0, "d": 10}}
    )
    initial = initial_conditions(config, expand_grid(config)[0])
    rule = StopRule(5e-13, 100_000)
    data = build_data(DataSpec(n=args.n, noise=0.1), 0)
    key = trajectory_keys(0, np.arange(LANES, dtype=np.int64))

    def gd() -> int:
        results = integrate_compiled(
            initial.eps0, initial.lam0, 0.1, 1.0, rule, threads=1, s0=initial.s0, p0=initial.p0
        )
        return int(results.steps.sum())

    gd_steps = gd()
    for batch in args.batch:
        for part in range(len(PARTS)):
            run_part(part, 10, batch, key, data.x2, data.x_nu)  # compile outside the timing
    per_element: dict[tuple[int, int], list[float]] = {}
    for _ in range(args.repeats):
        gd_step = cpu_seconds(gd) / gd_steps  # CPU seconds per GD trajectory-step, this round
        for batch in args.batch:
            for part in range(len(PARTS)):
                started = time.process_time()
                run_part(part, args.steps, batch, key, data.x2, data.x_nu)
                seconds = time.process_time() - started
                per_element.setdefault((batch, part), []).append(seconds / (args.steps * LANES * batch) / gd_step)
    print(f"{LANES} lanes, n = {args.n}, 1 thread, CPU time per lane and batch element in GD steps (medians)\n")
    print("| piece | " + " | ".join(f"B = {b}" for b in args.batch) + " |")
    print("|---|" + "---|" * len(args.batch))
    for part, label in enumerate(PARTS):
        cells = " | ".join(f"{statistics.median(per_element[(b, part)]):.3f}" for b in args.batch)
        print(f"| {label} | {cells} |")


if __name__ == "__main__":
    main()
