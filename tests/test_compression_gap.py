"""The Compression tab and the report explain a negative information gap.

A subset chosen for diversity can have a higher entropy than the full set (H is not
monotone in the data), so ``info_gap = reference - H(subset)`` goes below 0; a page
that shows "-0.4 nats" with no word reads as a bug. Run on the bundled labelled Cu
dataset (every 4th environment), whose MSC and farthest-point subsets are more diverse
than the whole and whose fitted asymptote lies below the full set's own H.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dashboard.app import load_extensions
from dashboard.state import AppState
from dashboard.tasks import METHOD_LABELS
from dashboard.views.compression import CompressionView, gap_text

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
DATASET = "cu_dataset_labelled.extxyz"


@pytest.fixture(scope="module")
def result(tmp_path_factory, private_cache):
    if not (SAMPLE / DATASET).exists():
        pytest.skip(f"{DATASET} not generated yet")
    load_extensions()
    st = AppState(data_dir=str(tmp_path_factory.mktemp("data")))
    st.add_file(str(SAMPLE / DATASET), DATASET, "reference")
    view = CompressionView(state=st, job_mode="thread")
    view.fractions, view.n_seeds, view.env_step = "0.1, 0.2, 0.5, 1", 1, 4
    job = view.run_sync()
    assert job.state == "done", job.error
    return view


def test_negative_gaps_are_explained_with_their_numbers(result):
    res = result.result
    report = res.report
    # the gap is the reference minus the subset's H, row by row
    np.testing.assert_allclose(report["info_gap"], res.gap_reference - report["entropy"],
                               rtol=0, atol=1e-12)
    text = gap_text(report, res.gap_reference, res.gap_kind)
    assert text.startswith(f" Information gap = {res.gap_reference:.4g} nats")
    full = report.loc[report["size"] == 50, "info_gap"].iloc[0]
    assert res.gap_kind == "asymptote" and full < 0, "the fit lies below H(full set)"
    assert f"The fitted asymptote lies {-full:.3f} nats below the full set's own H" in text
    below = report.loc[(report["info_gap"] < 0) & (report["size"] < 50)]
    assert len(below), "the bundled dataset's diverse subsets exceed the full set's H"
    worst = below.loc[below["info_gap"].idxmin()]
    assert f"down to {worst['info_gap']:.3f} nats at {int(worst['size'])} structures" in text
    negative = text.split("Negative gaps (")[1].split(";")[0]
    assert set(negative.split(", ")) == {METHOD_LABELS[m] for m in set(below["method"])}
    assert METHOD_LABELS["random"] not in negative  # random subsets: no more diverse
    assert "H is not monotone in the data" in text
    # the tab shows the same words
    info = next(p.object for p in result.body().objects if getattr(p, "name", "")
                == "compression-info")
    assert text.strip() in info


def test_no_word_about_negative_gaps_when_there_are_none(result):
    res = result.result
    positive = res.report.assign(info_gap=res.report["info_gap"].abs() + 0.01)
    text = gap_text(positive, res.gap_reference, res.gap_kind)
    assert "Negative" not in text and text.endswith("− H(subset).")
    assert gap_text(positive, res.gap_reference, "none") == ""
