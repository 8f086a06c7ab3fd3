#!/usr/bin/env python3
"""The SGD study of docs/sgd.md: three questions, printed tables and three figures.

Usage (from the repository root; about 30 s of CPU, it prints its own total):

    python3 scripts/sgd_study.py            # prints Markdown tables, writes docs/sgd_q{1,2,3}.png
    python3 scripts/sgd_study.py --quick    # fewer trajectories and steps, same questions (a smoke run)

1. Mini-batch noise at equal η: median Q(T)/Q(0) and median steps over η × batch
   size (interpolating Gaussian data, n = 64; batch 64 is full-batch GD).
2. Label noise: the drift of log Q(t)/Q(0) per step and of λ towards 2Φ, over η
   and the noise level σ (x = ones, so the data are the paper's model and only
   the label noise is random), against the rate 2η²σ²/(B(2 − ηλ)) of the
   linearized dynamics (derived in docs/sgd.md).
3. The edge of convergence: fraction converged over η·λ(0) for each batch size,
   against GD's edge and against the mean-log linear stability of a minimum,
   E log|1 − c·s_B| = 0 with s_B the batch mean of x² (estimated here from 10⁵
   batches of the same data set).

Every cell is simulated with the compiled SGD kernel through the same code as
``lin2net sweep`` (config → cells → ``simulate_sgd_cell``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lin2net.dynamics.gd.reference import Status  # noqa: E402
from lin2net.dynamics.protocol import StopRule  # noqa: E402
from lin2net.dynamics.sgd.cell import cached_data, simulate_sgd_cell, trace_sgd_cell  # noqa: E402
from lin2net.dynamics.sgd.reference import SGDParameters, SGDResults, sample_batch  # noqa: E402
from lin2net.kernels.counter_rng import trajectory_keys  # noqa: E402
from lin2net.sweep.config import SweepConfig, parse_config  # noqa: E402
from lin2net.sweep.grid import Cell, expand_grid  # noqa: E402

DOCS = ROOT / "docs"
N_DATA = 64
BATCHES = (1, 2, 4, 8, 16, 32, 64)


def run(raw: dict[str, Any]) -> tuple[SweepConfig, list[tuple[Cell, SGDResults]]]:
    config = parse_config({"seed": 0, "algorithm": "sgd", "init": "sphere", **raw})
    return config, [(cell, simulate_sgd_cell(config, cell)[1]) for cell in expand_grid(config)]


def median_converged(values: np.ndarray, status: np.ndarray) -> float:
    ok = status == Status.CONVERGED
    return float(np.median(values[ok])) if ok.mean() >= 0.5 else float("nan")


def question1(trajectories: int) -> None:
    etas = [float(v) for v in np.geomspace(0.01, 1.0, 13)]
    config, cells = run(
        {
            "trajectories": trajectories,
            "grid": {"eta": etas, "lambda0": 1.0, "phi": 1.0, "d": 10, "batch_size": list(BATCHES)},
            "data": {"n": N_DATA, "x": "gaussian"},
            "loss_tol": 1e-10,
            "max_steps": 100_000,
        }
    )
    q = np.full((len(BATCHES), len(etas)), np.nan)
    steps = np.full_like(q, np.nan)
    conv = np.zeros_like(q)
    for cell, res in cells:
        i, j = BATCHES.index(int(cell.value("batch_size"))), etas.index(cell.eta)
        q[i, j] = median_converged(res.q_ratio, res.status)
        steps[i, j] = median_converged(res.steps.astype(float), res.status)
        conv[i, j] = float(np.mean(res.status == Status.CONVERGED))
    print("\n## Q1: mini-batch noise at equal η (λ0 = 1, Φ = 1, d = 10, Gaussian x, n = 64, no label noise)\n")
    print("median Q(T)/Q(0) [median steps] over converged trajectories; '—' where fewer than half converged\n")
    shown = [0, 3, 6, 8, 10, 11, 12]
    print("| batch | " + " | ".join(f"η = {etas[j]:.3g}" for j in shown) + " |")
    print("|---" * (len(shown) + 1) + "|")
    for i, b in enumerate(BATCHES):
        label = f"{b} (GD)" if b == N_DATA else str(b)
        cells_text = ["—" if np.isnan(q[i, j]) else f"{q[i, j]:.3f} [{steps[i, j]:.0f}]" for j in shown]
        print(f"| {label} | " + " | ".join(cells_text) + " |")
    gd = len(BATCHES) - 1
    data = cached_data(config.data, config.seed)  # type: ignore[arg-type]
    spread = float(np.mean(data.x2 * data.x2) - 1.0)  # variance of x² over the data (mean x² = 1)
    print("\nlog Q(T)/Q(0) relative to GD at the same η (median over converged; >1: SGD shrinks Q more),")
    print("and E[s_B²] = 1 + Var(x²)(n − B)/(B(n − 1)), the first-order prediction (η² Σ g², g = s_B ε):\n")
    print("| batch | " + " | ".join(f"η = {etas[j]:.3g}" for j in shown) + " | E[s_B²] |")
    print("|---" * (len(shown) + 2) + "|")
    for i, b in enumerate(BATCHES[:-1]):
        ratio = np.log(q[i]) / np.log(q[gd])
        predicted = 1.0 + spread * (N_DATA - b) / (b * (N_DATA - 1))
        text = " | ".join("—" if np.isnan(ratio[j]) else f"{ratio[j]:.2f}" for j in shown)
        print(f"| {b} | {text} | {predicted:.2f} |")

    fig, axes = plt.subplots(1, 3, figsize=(15, 4), constrained_layout=True)
    ticks = np.arange(len(etas))[::2]
    relative = np.log(q) / np.log(q[gd])[None, :]
    for ax, values, title, cmap in (
        (axes[0], q, "median Q(T)/Q(0)", "viridis"),
        (axes[1], relative, "log Q(T)/Q(0) relative to GD at the same η", "cividis"),
        (axes[2], np.log10(steps), "log10 median steps T", "magma"),
    ):
        image = ax.imshow(values, origin="lower", aspect="auto", cmap=cmap)
        fig.colorbar(image, ax=ax, label=title)
        ax.set_xticks(ticks, [f"{etas[j]:.2g}" for j in ticks])
        ax.set_yticks(range(len(BATCHES)), [f"{b}{' (GD)' if b == N_DATA else ''}" for b in BATCHES])
        ax.set_xlabel("η")
        ax.set_ylabel("batch size")
        ax.set_title(title)
    fig.suptitle(
        f"SGD, interpolating Gaussian data (n = 64), λ0 = 1, Φ = 1, d = 10, {trajectories} trajectories per cell: "
        "blank where < 50% converged"
    )
    fig.savefig(DOCS / "sgd_q1.png", dpi=110)
    plt.close(fig)


def question2(trajectories: int, max_steps: int) -> None:
    etas = [0.05, 0.1, 0.2, 0.4]
    sigmas = [0.05, 0.1, 0.2, 0.4]
    lambda0 = 3.0
    config, cells = run(
        {
            "trajectories": trajectories,
            "grid": {"eta": etas, "lambda0": lambda0, "phi": 1.0, "d": 10, "batch_size": 1, "label_noise": sigmas},
            "data": {"n": N_DATA, "x": "ones"},
            "max_steps": max_steps,
            "window": max_steps // 10,
        }
    )
    print(f"\n## Q2: label noise (x = ones, batch 1, λ0 = {lambda0}, Φ = 1, d = 10, T = {max_steps} steps)\n")
    print("medians over trajectories: Q(T)/Q(0); decay rate of log Q per step in the final window")
    print("(mean of log Q/Q0 over the window minus its final value, over half the window) and its ratio to")
    print("2η²σ²/(2 − ηλ̄), λ̄ = mean λ over the window (also shown, with λ_GF: where gradient flow from the")
    print("same start ends, and 2Φ = 2: the flattest minimum); status counts\n")
    print("| η | σ | Q(T)/Q(0) | rate | rate / theory | λ̄ (window) | λ_GF | max_steps / diverged |")
    print("|---|---|---|---|---|---|---|---|")
    rates = np.full((len(etas), len(sigmas)), np.nan)
    half = (config.window - 1) / 2
    for cell, res in cells:
        ok = res.status == Status.MAX_STEPS
        rate = (res.log_q_ratio_window[ok] - res.log_q_ratio[ok]) / half
        lam_bar = res.lambda_window[ok]
        sigma = float(cell.value("label_noise"))
        theory = 2 * cell.eta**2 * sigma**2 / (2 - cell.eta * lam_bar)
        rates[etas.index(cell.eta), sigmas.index(sigma)] = np.median(rate)
        print(
            f"| {cell.eta:g} | {sigma:g} | {np.median(res.q_ratio[ok]):.3g} | {np.median(rate):.3g} | "
            f"{np.median(rate / theory):.3f} | {np.median(lam_bar):.4f} | {np.median(_lambda_gf(config, cell)):.4f} | "
            f"{int(ok.sum())} / {int(np.sum(res.status == Status.DIVERGED))} |"
        )
    fit = np.polyfit(np.log(np.repeat(etas, len(sigmas))), np.log(rates.ravel()), 1)[0]
    fit_sigma = np.polyfit(np.log(np.tile(sigmas, len(etas))), np.log(rates.ravel()), 1)[0]
    print(f"\nlog-log slopes of the median rate: {fit:.2f} in η (all σ pooled), {fit_sigma:.2f} in σ (all η pooled)")

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    cell_by = {(c.eta, c.value("label_noise")): c for c, _ in cells}
    rule = StopRule(config.loss_tol, config.max_steps, config.divergence_threshold)
    for sigma, color in zip(sigmas, ("C0", "C1", "C2", "C3"), strict=True):
        trace, _ = trace_sgd_cell(config, cell_by[(0.2, sigma)], 0, rule)
        axes[0].plot(trace["t"], trace["log_q_ratio"], color=color, label=f"σ = {sigma}")
        smooth = np.convolve(trace["lam"], np.ones(200) / 200, mode="valid")  # running mean over 200 steps
        axes[1].plot(trace["t"][199:], smooth, color=color, label=f"σ = {sigma}")
    axes[1].axhline(2.0, color="k", ls="--", lw=1, label="2Φ (flattest minimum)")
    axes[1].axhline(float(trace["lam"][0]), color="grey", ls=":", lw=1, label="λ(0)")
    axes[0].set_xlabel("step t")
    axes[0].set_ylabel("log Q(t)/Q(0)")
    axes[1].set_xlabel("step t")
    axes[1].set_ylabel("λ(t) = ‖a‖² + ‖b‖², running mean of 200 steps")
    axes[0].xaxis.set_major_locator(MaxNLocator(5))  # the labels of 2 500-step ticks would touch
    axes[0].legend()
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")  # beside: the lines fill the axes
    axes[1].set_xscale("log")
    fig.suptitle("Label-noise SGD, η = 0.2, trajectory 0 (x = ones, batch 1, λ0 = 3, Φ = 1, d = 10)")
    fig.savefig(DOCS / "sgd_q2.png", dpi=110)
    plt.close(fig)


def _lambda_gf(config: SweepConfig, cell: Cell) -> np.ndarray:
    from lin2net.dynamics.initialization import initial_conditions
    from lin2net.theory.closed_forms import gradient_flow_sharpness

    initial = initial_conditions(config, cell)
    return gradient_flow_sharpness(initial.eps0, initial.lam0, cell.phi)


def mean_log_edge(batch: int, samples: int = 100_000) -> float:
    """c* with mean over batches of log|1 − c s_B| = 0 (c > 0), by bisection on sampled s_B."""
    data = cached_data(parse_config(_q3_raw(1, 10)).data, 0)  # type: ignore[arg-type]
    keys = trajectory_keys(99, np.arange(samples, dtype=np.int64))
    s = sample_batch(data, SGDParameters.broadcast(samples, 1.0, 1.0, batch, 0.0, keys), 0, "without_replacement").s

    def growth(c: float) -> float:
        with np.errstate(divide="ignore"):
            return float(np.mean(np.log(np.abs(1.0 - c * s))))

    low, high = 0.5, 20.0
    for _ in range(60):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if growth(mid) < 0 else (low, mid)
    return low


def _q3_raw(trajectories: int, max_steps: int) -> dict[str, Any]:
    return {
        "seed": 0,
        "algorithm": "sgd",
        "trajectories": trajectories,
        "grid": {
            "eta_lambda0": {"linspace": [1.0, 5.0, 21]},
            "lambda0": 4.0,
            "phi": 1.0,
            "d": 10,
            "batch_size": [1, 4, 16, 64],
        },
        "data": {"n": N_DATA, "x": "gaussian"},
        "loss_tol": 1e-10,
        "max_steps": max_steps,
    }


def question3(trajectories: int, max_steps: int) -> None:
    config, cells = run(_q3_raw(trajectories, max_steps))
    xs = sorted({float(c.eta_lambda0 or 0.0) for c, _ in cells})
    batches = [1, 4, 16, 64]
    frac = {b: np.zeros(len(xs)) for b in batches}
    lam_t = {b: np.full(len(xs), np.nan) for b in batches}
    for cell, res in cells:
        b, j = int(cell.value("batch_size")), xs.index(float(cell.eta_lambda0 or 0.0))
        conv = res.status == Status.CONVERGED
        frac[b][j] = conv.mean()
        if conv.any():
            lam_t[b][j] = np.median(res.lambda_T[conv] * cell.eta)
    print(f"\n## Q3: edge of convergence (λ0 = 4, Φ = 1, d = 10, Gaussian x, n = 64, max_steps = {max_steps})\n")
    print("fraction converged over η·λ(0):\n")
    shown = list(range(0, len(xs), 2))
    print("| batch | " + " | ".join(f"{xs[j]:.1f}" for j in shown) + " |")
    print("|---" * (len(shown) + 1) + "|")
    for b in batches:
        label = f"{b} (GD)" if b == N_DATA else str(b)
        print(f"| {label} | " + " | ".join(f"{frac[b][j]:.2f}" for j in shown) + " |")
    data = cached_data(config.data, config.seed)  # type: ignore[arg-type]
    print(f"\nlargest x² in the data set: {data.x2.max():.2f}")
    print(
        "\n| batch | edge: first η·λ(0) with < 50% converged | median η·λ(T) of converged just below it | "
        "mean-log stability c*(B) |"
    )
    print("|---|---|---|---|")
    for b in batches:
        below_half = np.nonzero(frac[b] < 0.5)[0]
        edge = xs[below_half[0]] if below_half.size else float("nan")
        before = lam_t[b][below_half[0] - 1] if below_half.size and below_half[0] > 0 else float("nan")
        label = f"{b} (GD)" if b == N_DATA else str(b)
        print(f"| {label} | {edge:.1f} | {before:.2f} | {mean_log_edge(b):.3f} |")

    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for b in batches:
        ax.plot(xs, frac[b], marker="o", ms=3, label=f"batch {b}{' (GD)' if b == N_DATA else ''}")
    ax.axvline(2.0, color="k", ls="--", lw=1, label="η·λ(0) = 2")
    ax.set_xlabel("η·λ(0)")
    ax.set_ylabel("fraction converged")
    ax.set_title(
        f"SGD on interpolating Gaussian data (n = 64), λ0 = 4, Φ = 1, d = 10\n{trajectories} trajectories per point"
    )
    ax.legend()
    fig.savefig(DOCS / "sgd_q3.png", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer trajectories and steps (a smoke run)")
    args = parser.parse_args()
    started = time.perf_counter()
    question1(trajectories=40 if args.quick else 500)
    question2(trajectories=20 if args.quick else 200, max_steps=2_000 if args.quick else 20_000)
    question3(trajectories=40 if args.quick else 500, max_steps=2_000 if args.quick else 20_000)
    print(f"\n(total {time.perf_counter() - started:.0f} s; figures in {DOCS.relative_to(ROOT)}/sgd_q*.png)")


if __name__ == "__main__":
    main()
