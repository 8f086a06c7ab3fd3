"""Figures 1 and 2 of the seed paper, drawn from the exact dynamics (no sweep needed).

**Figure 1** (:func:`draw_phase_portrait`): d = 1, the (a, b) plane. Gradient
flow ȧ = −ε b, ḃ = −ε a (ε = a·b − Φ) conserves Q = a² − b², so each flow
line stays on one hyperbola a² − b² = Q(0) (drawn grey) until it reaches the
minima a·b = Φ (black). One GD step, a ← a − ηε b, b ← b − ηε a, moves along
the tangent of that hyperbola and lands inside it: Q(t+1) = (1 − η²ε(t)²) Q(t)
(equation (8) of the paper), so GD's limit is more balanced than the flow's.
The flow is the exact solution (:meth:`lin2net.theory.gradient_flow.GradientFlow.vectors_at`).

**Figure 2** (:func:`draw_regions`): the three regions of the proof in the
plane (a·b, λ), λ = ‖a‖² + ‖b‖² ≥ 2|a·b| (Cauchy–Schwarz; the grey wedge
below is empty): A, ε > 0 (a·b > Φ); B, ε < 0 < a·b; C, a·b < 0. The top axis
reads the same positions as ε = a·b − Φ. Sample GD trajectories
(:func:`lin2net.analysis.trace.trace_trajectory`, exact reduced map) start in
each region and end on the minima (a·b = Φ, λ ≥ 2Φ).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lin2net.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PHASE_STARTS = ((2.5, -0.5), (0.25, 0.3), (1.9, 1.3), (-0.8, 2.3))
"""Starts (a, b) of Figure 1: in regions C (a·b < 0), B (0 < a·b < Φ), A (a·b > Φ), C."""
REGION_STARTS = ((1.8, 1.0), (0.4, 0.3), (0.9, -1.3), (-0.2, 1.6))
"""Starts of Figure 2, as the first coordinates of d = 2 vectors (:func:`_region_start`)."""


def _check(eta: float, phi: float) -> None:
    if not (np.isfinite(eta) and eta > 0):
        raise ConfigError("--eta", f"must be a finite number > 0, got {eta!r}")
    if not (np.isfinite(phi) and phi > 0):
        raise ConfigError("--phi", f"must be a finite number > 0, got {phi!r}")


def gd_path(a: float, b: float, eta: float, phi: float, steps: int = 400, tol: float = 1e-12) -> np.ndarray:
    """GD iterates (a_t, b_t) for d = 1 until ε²/2 ≤ tol, divergence, or ``steps``."""
    points = [(a, b)]
    for _ in range(steps):
        eps = a * b - phi
        if 0.5 * eps * eps <= tol or not np.isfinite(eps) or abs(eps) > 1e6:
            break
        a, b = a - eta * eps * b, b - eta * eps * a
        points.append((a, b))
    return np.array(points)


def gf_path(a: float, b: float, eta: float, phi: float, horizon: float) -> np.ndarray:
    """The exact gradient flow from (a, b), sampled at 400 times in [0, horizon]."""
    from lin2net.theory.gradient_flow import GradientFlow

    flow = GradientFlow.from_vectors(np.array([a]), np.array([b]), phi)
    points = [flow.vectors_at(np.array([a]), np.array([b]), float(t)) for t in np.linspace(0.0, horizon, 400)]
    return np.array([(float(pa[0]), float(pb[0])) for pa, pb in points])


def draw_phase_portrait(
    eta: float = 0.15, phi: float = 1.0, starts: Sequence[tuple[float, float]] = PHASE_STARTS
) -> Figure:
    """Figure 1 (see module doc)."""

    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    _check(eta, phi)
    limit = 3.0
    figure = Figure(figsize=(6.4, 7.2), layout="constrained")
    ax = figure.subplots()
    grid = np.linspace(-limit, limit, 601)
    a_grid, b_grid = np.meshgrid(grid, grid)
    ax.contour(
        a_grid,
        b_grid,
        a_grid**2 - b_grid**2,
        levels=np.arange(-8.0, 8.5, 1.0),
        colors="0.8",
        linewidths=0.7,
        linestyles="-",
    )
    branch = np.linspace(phi / limit, limit, 400)
    for sign in (1.0, -1.0):
        ax.plot(sign * branch, sign * phi / branch, color="black", linewidth=2.0)
    ax.axhline(0.0, color="0.6", linewidth=0.6)
    ax.axvline(0.0, color="0.6", linewidth=0.6)
    ax.plot(grid, grid, color="0.6", linewidth=0.6, linestyle=(0, (1, 3)))
    for k, (a0, b0) in enumerate(starts):
        colour = f"C{k % 10}"
        gd = gd_path(a0, b0, eta, phi)
        horizon = eta * max(len(gd) - 1, 1) * 1.5
        gf = gf_path(a0, b0, eta, phi, horizon)
        q0 = a0 * a0 - b0 * b0
        ax.contour(
            a_grid,
            b_grid,
            a_grid**2 - b_grid**2,
            levels=[q0],
            colors=[colour],
            linewidths=0.8,
            linestyles=":",
            alpha=0.9,
        )
        ax.plot(gf[:, 0], gf[:, 1], color=colour, linestyle="--", linewidth=1.4)
        ax.plot(gd[:, 0], gd[:, 1], color=colour, marker="o", markersize=3.5, linewidth=0.9)
        ax.plot([a0], [b0], marker="s", color=colour, markersize=7)
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    ax.set_xlabel("a")
    ax.set_ylabel("b")
    handles = [
        Line2D([], [], color="0.3", marker="o", markersize=3.5, linewidth=0.9, label=f"gradient descent, η = {eta:g}"),
        Line2D([], [], color="0.3", linestyle="--", label="gradient flow, same start"),
        Line2D([], [], color="0.3", linestyle=":", label="a² − b² = Q(0), conserved by the flow"),
        Line2D([], [], color="black", linewidth=2.0, label="minima a·b = Φ"),
        Line2D([], [], color="0.3", marker="s", linestyle="", label="start"),
    ]
    figure.legend(handles=handles, loc="outside lower center", ncols=2, fontsize="small")
    figure.suptitle(
        f"d = 1, Φ = {phi:g}, η = {eta:g}: GD shrinks the imbalance Q = a² − b², the flow keeps it",
        fontsize="medium",
    )
    return figure


def _region_start(a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """A d = 2 start with a·b and λ those of the scalars (a, b) plus a small orthogonal part."""
    return np.array([a, 0.3]), np.array([b, -0.1])


def draw_regions(eta: float = 0.25, phi: float = 1.0, starts: Sequence[tuple[float, float]] = REGION_STARTS) -> Figure:
    """Figure 2 (see module doc)."""

    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from lin2net.analysis.trace import start_from_vectors, trace_trajectory
    from lin2net.dynamics.gd.reference import StopRule

    _check(eta, phi)
    figure = Figure(figsize=(7.6, 6.0), layout="constrained")
    ax = figure.subplots()
    runs = []
    for a0, b0 in starts:
        va, vb = _region_start(a0, b0)
        runs.append(trace_trajectory(start_from_vectors(va, vb, phi), eta, StopRule(1e-12, 2000)))
    products = np.concatenate([r.table["eps"].to_numpy() + phi for r in runs])
    lams = np.concatenate([r.table["lambda"].to_numpy() for r in runs])
    x_low = min(-1.5 * phi, float(products.min()) - 0.3 * phi)
    x_high = max(2.5 * phi, float(products.max()) + 0.3 * phi)
    y_high = max(5.0 * phi, float(lams.max()) * 1.1)
    shades = {"C": (x_low, 0.0, "#f4d6d6"), "B": (0.0, phi, "#fbeccc"), "A": (phi, x_high, "#d9ead3")}
    for name, (low, high, colour) in shades.items():
        ax.axvspan(low, high, color=colour, zorder=0)
        ax.text(
            0.5 * (low + high),
            0.96 * y_high,
            name,
            ha="center",
            va="top",
            fontsize="x-large",
            fontweight="bold",
            color="0.25",
        )
    xs = np.linspace(x_low, x_high, 400)
    ax.fill_between(xs, 0.0, 2.0 * np.abs(xs), color="0.55", zorder=1, label="λ < 2|a·b|: no (a, b) there")
    ax.plot([phi, phi], [2.0 * phi, y_high], color="black", linewidth=3.0, zorder=2)
    for k, run in enumerate(runs):
        colour = f"C{k % 10}"
        x = run.table["eps"].to_numpy() + phi
        y = run.table["lambda"].to_numpy()
        ax.plot(x, y, color=colour, marker="o", markersize=3.5, linewidth=1.0, zorder=3)
        ax.plot(x[:1], y[:1], color=colour, marker="s", markersize=7, zorder=4)
    ax.set_xlim(x_low, x_high)
    ax.set_ylim(0.0, y_high)
    ax.set_xlabel("a·b")
    ax.set_ylabel("λ = ‖a‖² + ‖b‖²")

    def to_eps(v: Any) -> Any:
        return np.asarray(v) - phi

    def to_product(v: Any) -> Any:
        return np.asarray(v) + phi

    top = ax.secondary_xaxis("top", functions=(to_eps, to_product))
    top.set_xlabel("ε = a·b − Φ")
    handles = [
        Line2D([], [], color="0.3", marker="o", markersize=3.5, linewidth=1.0, label=f"gradient descent, η = {eta:g}"),
        Line2D([], [], color="0.3", marker="s", linestyle="", label="start"),
        Line2D([], [], color="black", linewidth=3.0, label="minima: a·b = Φ, λ ≥ 2Φ"),
        ax.collections[-1] if ax.collections else Line2D([], []),
    ]
    figure.legend(handles=handles, loc="outside lower center", ncols=2, fontsize="small")
    figure.suptitle(
        f"Regions of the proof, Φ = {phi:g}, d = 2: A (ε > 0), B (ε < 0 < a·b), C (a·b < 0), with GD trajectories",
        fontsize="medium",
    )
    return figure


def plot_paper_figure(kind: str, path: Path, eta: float | None = None, phi: float | None = None) -> Path:
    """Write Figure 1 (``phase``) or Figure 2 (``regions``) to ``path``."""
    from lin2net.analysis.plotting import _save, check_figure_path

    check_figure_path(path)
    phi = 1.0 if phi is None else phi
    if kind == "phase":
        figure = draw_phase_portrait(0.15 if eta is None else eta, phi)
    elif kind == "regions":
        figure = draw_regions(0.25 if eta is None else eta, phi)
    else:
        raise ConfigError("--kind", f"unknown paper figure {kind!r}; choose phase or regions")
    _save(figure, path)
    return path
