"""The dashboard's precision setting reaches every kernel call of every job.

The same spy as ``tests/test_cli_precision.py`` (``kernel_dtypes`` of conftest, on
:func:`quests_core.kernels.log_kernel_sums`) records the dtype of each kernel call
while the Data tab's pipeline (H, dH, learning curves, overlap, nucleation) and the
three analysis tabs (compression, active learning, uncertainty) run their jobs in
this process, once at the sidebar's default precision and once with float32.
Before issue 20 the analysis tabs' tasks passed no precision: their kernels ran in
float64 whatever the sidebar said.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboard.app import load_extensions
from dashboard.pipeline import run_pipeline
from dashboard.state import AppState, ComputeSettings
from dashboard.views import ActiveLearningView, CompressionView, UncertaintyView

DATA = Path(__file__).resolve().parents[1] / "sample_data"
pytestmark = pytest.mark.usefixtures("private_cache")


def _session(precision: str) -> AppState:
    st = AppState(data_dir=str(DATA))
    st.settings = ComputeSettings(precision=precision, learning_max_n=200,
                                  learning_repeats=1, overlap_max_n=200)
    st.add_file(str(DATA / "cu_solid_400K.extxyz"), "solid", "reference", index=":2")
    st.add_file(str(DATA / "cu_solid_400K.extxyz"), "solid ref", "solid reference",
                index=":2")
    st.add_file(str(DATA / "cu_quench.extxyz"), "quench", "trajectory", index="30:32")
    st.add_file(str(DATA / "cu_dataset_labelled.extxyz"), "labelled", "test", index=":10")
    st.add_file(str(DATA / "cu_generations.extxyz"), "generations", "test", index=":8")
    st.add_file(str(DATA / "cu_forces_two_models.extxyz"), "forces", "test", index=":3")
    return st


def _jobs(st: AppState):
    """Each job of the session, by name, as a function running it here."""
    def pipeline():
        res = run_pipeline([f for f in st.files if f.name in ("solid", "solid ref", "quench")],
                           st.settings.frozen())
        assert res.nucleations, "the pipeline ran its nucleation analysis"

    def tab(view_class, source, **options):
        def run():
            view = view_class(state=st, job_mode="thread")
            view.source = source
            view.param.update(**options)
            job = view.run_sync(300)
            assert job.state == "done", job.error
        return run

    return {
        "pipeline": pipeline,
        "compression": tab(CompressionView, "labelled", fractions="0.3", n_seeds=1,
                           env_step=8),
        "active learning": tab(ActiveLearningView, "generations", env_step=8),
        "uncertainty": tab(UncertaintyView, "forces", reference="solid"),
    }


@pytest.mark.parametrize("job", ["pipeline", "compression", "active learning", "uncertainty"])
def test_the_sidebar_precision_reaches_every_kernel_call(kernel_dtypes, job):
    spy = kernel_dtypes
    load_extensions()
    _jobs(_session("float64"))[job]()
    default = list(spy)
    spy.clear()
    _jobs(_session("float32"))[job]()
    assert default and set(default) == {"float64"}, (job, default)
    assert spy == ["float32"] * len(default), (job, spy)
