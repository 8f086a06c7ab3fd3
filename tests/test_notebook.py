"""docs/examples/quickstart.ipynb runs from top to bottom (slow: it starts a kernel and sweeps)."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "examples" / "quickstart.ipynb"


@pytest.mark.slow
def test_quickstart_notebook_runs_and_draws(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("xarray")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    committed = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.outputs for c in committed), "the committed notebook carries its outputs"
    client = nbclient.NotebookClient(notebook, timeout=600, resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    images = sum("image/png" in o.get("data", {}) for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    assert images >= 4  # the line plot, the heatmaps, the xarray facets, the trace
    assert (tmp_path / "runs" / "quickstart" / ".lin2net").is_file()
