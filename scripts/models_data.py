#!/usr/bin/env python3
"""The vector and relu study of docs/models.md ("Vector inputs and ReLU"): three questions, printed tables, two figures.

Usage (from the repository root; a few minutes of CPU, it prints its own total):

    python3 scripts/models_data.py            # prints Markdown tables, writes docs/figures/{vector,relu}_questions.png
    python3 scripts/models_data.py --quick    # fewer trajectories (a smoke run)

Every sweep goes through the same code as ``lin2net sweep`` (``lin2net.run(config)``:
config → cells → the family's model under the generic GD of parameter_vector.py),
in memory. Per family, over η·λ(0) at λ(0) = 2, Φ = 1, width d = 4, sphere starts:

1. Does GD end flatter than GF? The ratio S(T)/λ_GF per trajectory (vector: λ_GF
   from the integrated flow; relu, whose flow seldom comes to rest within its
   step caps: S(T) against the same start's S(T) under GD at η·λ(0) = 0.25, a
   small-step proxy of the flow);
2. Does GD shrink the imbalance? Q(T)/Q(0), Q = Σ_j |‖a_j‖² − b_j²|;
3. Where does convergence stop? The fraction converged.

The shallow model (today's, the same d, λ(0), Φ) is swept on the same grid as the
depth-2 reference, with its closed-form λ_GF.
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
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lin2net  # noqa: E402

LAMBDA0, PHI, WIDTH = 2.0, 1.0, 4
ETA_LAMBDA0 = [0.25, 0.5, 1.0, 1.5, 1.75, 1.9, 2.0, 2.1, 2.25, 2.5, 3.0]
PROXY = ETA_LAMBDA0[0]  # relu: η·λ(0) of the small-step GD that stands in for the flow


def config(family: str, trajectories: int, axis: list[float], **model: Any) -> dict[str, Any]:
    relu = family == "relu"  # ReLU GD approaches its minima slowly: a looser loss_tol, more steps
    out: dict[str, Any] = {
        "name": f"study-{family}",
        "seed": 1,
        "trajectories": trajectories,
        "max_steps": 20_000 if relu else 5_000,
        "loss_tol": 1e-6 if relu else 1e-10,
        "grid": {"eta_lambda0": axis, "lambda0": [LAMBDA0], "phi": [PHI], "d": [WIDTH]},
    }
    if family != "shallow":
        out["model"] = {"family": family, **model}
        out["data"] = {"n": 24, "x": "whitened", "teacher": "linear" if family == "vector" else "relu"}
    return out


def sweep(cfg: dict[str, Any]) -> pd.DataFrame:
    table = lin2net.run(cfg)
    return table.to_pandas()  # type: ignore[union-attr]


def per_eta(rows: pd.DataFrame, flat: pd.Series | None = None) -> pd.DataFrame:
    """Per η·λ(0): fraction converged, median S(T)/λ_GF (or / proxy), fraction with
    S(T) < λ_GF, median Q(T)/Q(0), over converged trajectories."""
    out = []
    for key, group in rows.groupby("eta_lambda0"):
        conv = group[group.status == "converged"]
        reference = conv.lambda_gf if flat is None else flat.reindex(conv.trajectory).to_numpy()
        ratio = conv.sharpness_T.to_numpy() / np.asarray(reference, dtype=float)
        finite = ratio[np.isfinite(ratio)]
        out.append(
            {
                "eta_lambda0": key,
                "converged": len(conv) / len(group),
                "S_T/λ_GF": float(np.median(finite)) if finite.size else np.nan,
                "flatter": float(np.mean(finite < 1 - 1e-9)) if finite.size else np.nan,
                "max S_T/λ_GF": float(np.max(finite)) if finite.size else np.nan,
                "Q_T/Q_0": float(np.median(conv.q_ratio)) if len(conv) else np.nan,
                "q>1": float(np.mean(conv.q_ratio > 1 + 1e-12)) if len(conv) else np.nan,
                "λ_GF found": float(np.mean(np.isfinite(group.lambda_gf))),
            }
        )
    return pd.DataFrame(out)


def figure(name: str, tables: dict[str, pd.DataFrame], title: str) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for label, table in tables.items():
        style = "--" if label == "shallow" else "-o"
        axes[0].plot(table.eta_lambda0, table["S_T/λ_GF"], style, label=label, ms=4)
        axes[1].plot(table.eta_lambda0, table["Q_T/Q_0"], style, label=label, ms=4)
        axes[2].plot(table.eta_lambda0, table.converged, style, label=label, ms=4)
    axes[0].axhline(1.0, color="grey", lw=0.5)
    axes[0].set(xlabel="η·λ(0)", ylabel="median S(T)/λ_GF", title="1. flatter than GF?")
    axes[1].set(xlabel="η·λ(0)", ylabel="median Q(T)/Q(0)", title="2. imbalance", yscale="log")
    axes[2].set(xlabel="η·λ(0)", ylabel="fraction converged", title="3. convergence")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out = ROOT / "docs" / "figures" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out.relative_to(ROOT)}")


def show(label: str, table: pd.DataFrame) -> None:
    print(f"\n### {label}\n")
    print("| " + " | ".join(table.columns) + " |")
    print("|" + "---|" * len(table.columns))
    for row in table.itertuples(index=False):
        print("| " + " | ".join(f"{v:.4g}" for v in row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer trajectories (a smoke run)")
    args = parser.parse_args()
    count = 6 if args.quick else 24
    pd.set_option("display.width", 200)
    began = time.process_time()

    shallow = per_eta(sweep(config("shallow", count, ETA_LAMBDA0)))
    vector_rows = sweep(config("vector", count, ETA_LAMBDA0, inputs=3))
    vector = per_eta(vector_rows)
    vector_m1 = per_eta(sweep(config("vector", count, ETA_LAMBDA0, inputs=1)))
    relu_count = count
    relu_rows = sweep(config("relu", relu_count, ETA_LAMBDA0, inputs=2))
    proxy_rows = relu_rows[(relu_rows.eta_lambda0 == PROXY) & (relu_rows.status == "converged")]
    proxy = proxy_rows.set_index("trajectory").sharpness_T
    relu = per_eta(relu_rows, flat=proxy)
    relu_own = per_eta(relu_rows)

    show("shallow (d = 4), λ_GF closed form", shallow)
    show("vector m = 3 (d = 4, n = 24 whitened, linear teacher), λ_GF integrated", vector)
    show("vector m = 1 (d = 4, n = 24 whitened): today's model", vector_m1)
    show(f"relu m = 2 (d = 4, n = 24 whitened, relu teacher), S(T) against GD at η·λ(0) = {PROXY}", relu)
    print(f"\nrelu proxy run at η·λ(0) = {PROXY}: {len(proxy)} of {relu_count} converged")
    print(f"relu: fraction of starts whose flow came to rest (λ_GF finite): {relu_own['λ_GF found'].iloc[0]:.3g}")
    show("relu against its own λ_GF (where the flow came to rest)", relu_own)

    figure(
        "vector_questions.png",
        {"vector m=3": vector, "vector m=1": vector_m1, "shallow": shallow},
        f"vector f = bᵀAx, d = {WIDTH}, λ(0) = {LAMBDA0}, Φ = {PHI}, n = 24 whitened, {count} sphere starts per η",
    )
    figure(
        "relu_questions.png",
        {"relu m=2": relu, "shallow": shallow},
        f"relu, d = {WIDTH}, m = 2, λ(0) = {LAMBDA0}, Φ = {PHI}, n = 24 whitened, relu teacher, "
        f"{relu_count} starts; panel 1 against GD at η·λ(0) = {PROXY}",
    )
    print(f"\nCPU time: {time.process_time() - began:.0f} s")


if __name__ == "__main__":
    main()
