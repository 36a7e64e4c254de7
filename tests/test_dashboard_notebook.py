"""The example notebook runs headless (nbclient) without errors."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "dashboard.ipynb"


def test_example_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("QUESTS_CACHE_DIR", str(tmp_path / "cache"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # the dashboard itself is displayed (a Panel/Bokeh bundle)
    shown = nb.cells[1].outputs
    assert any("application/vnd.holoviews_load.v0+json" in o.get("data", {}) or
               "text/html" in o.get("data", {}) for o in shown)
    # the scripted computation finished and its status line was printed
    printed = "".join(o.get("text", "") for o in nb.cells[3].outputs if o.output_type == "stream")
    assert printed.startswith("done - Done in")
    # the per-frame table is shown, with the trajectory's frames 0, 4, 8, ...
    table = nb.cells[4].outputs[0]["data"]["text/plain"]
    assert "frac_novel" in table and "mean_dH" in table
