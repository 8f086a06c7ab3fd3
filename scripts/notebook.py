#!/usr/bin/env python3
"""Build docs/examples/quickstart.ipynb from the cells below and execute it, so
that the committed notebook carries its outputs (it reads on GitHub).

Usage (from the repository root; needs the `notebook` extra):

    python3 scripts/notebook.py

The notebook runs in docs/examples/, so its sweep goes to
docs/examples/runs/quickstart (ignored by git: runs/ is in .gitignore).
tests/test_notebook.py executes the committed notebook again (slow marker).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "examples" / "quickstart.ipynb"

CELLS = [
    (
        "markdown",
        """# lin2net quickstart

Run a sweep of gradient descent on the depth-2 linear network L(a, b) = ½(a·b − Φ)², load it,
and draw a line plot and a heatmap. The API is documented in [docs/python.md](../python.md).""",
    ),
    (
        "code",
        """%matplotlib inline
import lin2net

config = {
    "name": "quickstart",
    "trajectories": 100,
    "grid": {"eta": {"geomspace": [0.01, 1.5, 8]}, "lambda0": [0.1, 1.0, 4.0], "phi": 1.0, "d": [1, 10]},
    "max_steps": 20000,
}
out = lin2net.run(config, "runs/quickstart")   # resumes if it is already there
out""",
    ),
    (
        "markdown",
        """`out` is the opened output: every shard file was verified when it was opened.
The summary is the table of `lin2net summarize` (`stable`: converged at a stable minimum, η·S(T) < 2).""",
    ),
    (
        "code",
        """columns = ["eta", "d", "trajectories", "frac_converged", "frac_stable"]
columns += ["q_ratio_median", "sharpness_T_median"]
out.summary(by=["eta", "d"])[columns]""",
    ),
    (
        "markdown",
        """A line plot: the median sharpness at convergence against η, one line per λ(0), a panel per d,
with the q25–q75 band.""",
    ),
    ("code", """out.plot(kind="line", x="eta", value="sharpness_T", hue="lambda0", facet="d")"""),
    (
        "markdown",
        """The heatmaps of the paper's Figure 3 (median Q(T)/Q(0) and median convergence time), one row per d.""",
    ),
    ("code", """out.plot()"""),
    ("markdown", """The same statistics as labelled arrays: `to_xarray` puts the grid axes on the dimensions."""),
    (
        "code",
        """q = out.to_xarray("q_ratio", "median")
q""",
    ),
    ("code", """q.sel(d=10).plot(x="eta", xscale="log", col="lambda0");"""),
    (
        "markdown",
        """Filters and derived values are DuckDB expressions, as with `--where` and `--value` on the command line.""",
    ),
    ("code", """out.to_xarray("eta * sharpness_T", "median", where="lambda0 = 4").to_pandas()"""),
    ("markdown", """One trajectory step by step, as `lin2net trace`."""),
    (
        "code",
        """from lin2net.analysis.plotting import draw_trace

tr = lin2net.trace(eta=0.5, lambda0=3.0, d=10, trajectory=0)
print(tr.status.label, "at T =", tr.steps)
draw_trace(tr)""",
    ),
]


def build() -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, source in CELLS:
        cell = nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source)
        notebook.cells.append(cell)
    return notebook


def execute(notebook: nbformat.NotebookNode, directory: Path) -> nbformat.NotebookNode:
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(directory)}}
    ).execute()
    return notebook


def main() -> None:
    notebook = execute(build(), NOTEBOOK.parent)
    nbformat.write(notebook, NOTEBOOK)
    print(f"wrote {NOTEBOOK.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
