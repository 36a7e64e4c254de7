"""The analysis views (Compression, Active learning, Uncertainty) without a browser.

Each view runs its job on the copper sample data (thread mode, run to the end
in the test; one run in a worker process) and the values its plots draw are
checked against quests_core called directly on the same environments.
Environments are subsampled (every n-th of each structure), as in the
analysis tests, to keep the file fast.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import pytest
from ase.io import read
from bokeh.document import Document

import quests_core as qc
from dashboard.app import load_extensions
from dashboard.state import AppState
from dashboard.views.active_learning import CURVES, ActiveLearningView, generation_plot
from dashboard.views.compression import (
    METHOD_LABELS,
    CompressionView,
    metric_plot,
    parse_fractions,
)
from dashboard.views.uncertainty import (
    DESCRIPTOR_REFERENCE,
    LABEL_REFERENCE,
    UncertaintyView,
    running_curve,
)
from quests_core.analysis import active_learning as al
from quests_core.analysis import compression as comp
from quests_core.analysis import uncertainty as uq
from quests_core.analysis.uncertainty import force_array_names
from quests_core.descriptor_files import save_descriptors
from quests_core.errors import QuestsError

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
DATASET, GENERATIONS, FORCES = (
    "cu_dataset_labelled.extxyz",
    "cu_generations.extxyz",
    "cu_forces_two_models.extxyz",
)
H = 0.015


@pytest.fixture(scope="module", autouse=True)
def setup(private_cache):
    for name in (DATASET, GENERATIONS, FORCES):
        if not (SAMPLE / name).exists():
            pytest.skip(f"{name} not generated yet")
    load_extensions()


@pytest.fixture
def state(tmp_path):
    """A session with the three sample files chosen; the data directory is empty."""
    st = AppState(data_dir=str(tmp_path))
    st.add_file(str(SAMPLE / DATASET), DATASET, "reference")
    st.add_file(str(SAMPLE / GENERATIONS), GENERATIONS, "test")
    st.add_file(str(SAMPLE / FORCES), FORCES, "test")
    return st


def elements(overlay, kind, label: str):
    """The elements of one type and label in an overlay."""
    return [e for e in overlay if isinstance(e, kind) and e.label == label]


def renders(view) -> None:
    """The view's whole layout builds its Bokeh models."""
    root = view.panel().get_root(Document())
    assert root is not None


def per_structure(frames, k=32, cutoff=5.0, step=1):
    return [qc.descriptors([f], k=k, cutoff=cutoff)[::step] for f in frames]


# ------------------------------------------------------------------ compression


def test_parse_fractions():
    assert parse_fractions("0.5, 0.1;1") == (0.1, 0.5, 1.0)
    for bad, match in (("0.2, 1.5", "fraction"), ("0", "fraction"), ("-0.1", "fraction"),
                       ("a", "not a number"), (" , ", "empty")):
        with pytest.raises(QuestsError, match=match):
            parse_fractions(bad)


def test_compression_view(state):
    state.update_file(DATASET, index="::2")  # 25 structures
    view = CompressionView(state=state, job_mode="thread")
    assert view.source == DATASET
    view.fractions, view.n_seeds, view.env_step = "0.2, 0.4, 0.6, 0.8, 1", 2, 8
    job = view.run_sync()
    assert job.state == "done", job.error
    res = view.result
    assert (res.n_structures, view.jobs.progress) == (25, 100)
    # the table speaks words with units, counts as whole numbers
    table = next(t.value for t in view.body().select(pn.widgets.Tabulator)
                 if "environments (mean over seeds)" in t.value)
    envs = table["environments (mean over seeds)"]
    assert str(envs.dtype) == "Int64" and "n_envs" not in table and "H (nats)" in table
    assert list(envs) == [round(v) for v in res.report["n_envs"]]
    # the result names its file and frames (the selection typed in the files table)
    assert res.frames == "::2" and view.describe(res).startswith(
        f"compressed {DATASET} (frames ::2: 25 structures, ")
    assert state.messages[-1][0] == "success"

    # values drawn in the D plot, one curve per method
    plot = metric_plot(res.report, "diversity")
    drawn = {m: elements(plot, hv.Curve, METHOD_LABELS[m])[0].dframe().set_index("size")
             ["diversity"] for m in comp.METHODS}
    sizes = [5, 10, 15, 20, 25]
    assert all(list(d.index) == sizes for d in drawn.values())
    wins = np.mean([drawn["msc"][s] >= drawn["random"][s] - 1e-9 for s in sizes])
    assert wins >= 0.8, drawn
    # the full set is the same set for every method
    assert len({round(d[25], 9) for d in drawn.values()}) == 1
    assert elements(plot, hv.ErrorBars, "")  # seeded methods have a spread
    # the overlap is a fraction: its axis holds the values and error bars, within [0, 1]
    lo, hi = metric_plot(res.report, "overlap").opts.get().kwargs["ylim"]
    ov, sd = res.report["overlap"].to_numpy(), res.report["overlap_std"].to_numpy()
    assert 0.0 <= lo <= max(0.0, (ov - sd).min()) and min(1.0, (ov + sd).max()) <= hi <= 1.0

    # MSC values equal the core's report on the same environments
    frames = read(SAMPLE / DATASET, index="::2")
    descs = per_structure(frames, step=8)
    core = comp.compression_report(descs, methods=("msc",), fractions=(0.2, 0.4, 0.6, 0.8, 1),
                                   seeds=(0,), gap=False)
    msc = res.report[res.report["method"] == "msc"].reset_index(drop=True)
    for column in ("size", "entropy", "diversity", "overlap"):
        np.testing.assert_allclose(msc[column], core[column], rtol=1e-9, err_msg=column)
    full = np.concatenate(descs)
    assert msc["entropy"].iat[-1] == pytest.approx(float(qc.entropy(full, H)), rel=1e-9)
    np.testing.assert_allclose(res.report["info_gap"], res.gap_reference - res.report["entropy"])
    h_plot = metric_plot(res.report, "entropy")
    np.testing.assert_allclose(
        elements(h_plot, hv.Curve, METHOD_LABELS["msc"])[0].dimension_values("entropy"),
        msc["entropy"])
    assert h_plot.opts.get().kwargs["title"] == "H against subset size"
    assert hv.renderer("bokeh").get_plot(view.plots(), doc=Document()) is not None
    csv = pd.read_csv(view._report_csv())
    assert len(csv) == 4 * 5 and set(csv["method"]) == set(comp.METHODS)
    renders(view)


def test_compression_bad_input(state):
    view = CompressionView(state=state, job_mode="thread")
    for attr, value, match in (("fractions", "0.5, 1.5", "fraction must be in"),
                               ("fractions", "0.5, 0", "fraction must be in"),
                               ("fractions", "", "empty selection"),
                               ("methods", [], "no compression method")):
        old = getattr(view, attr)
        setattr(view, attr, value)
        assert view.run_sync() is None and view.jobs.job is None
        level, text = state.messages[-1]
        assert level == "error" and text.startswith("Compression:") and match in text
        setattr(view, attr, old)
    # frames that select nothing: the job fails and says so, the session goes on
    state.update_file(DATASET, index="500:")
    job = view.run_sync()
    assert job.state == "error" and view.result is None and not view.jobs.running
    assert state.messages[-1] == ("error", f"Compression: {DATASET}: index '500:' selects "
                                           "no frames")
    assert view.jobs.status.startswith("Failed")
    empty = CompressionView(state=AppState(), job_mode="thread")
    assert empty.source is None and empty.run_sync() is None
    assert "no file chosen" in empty.state.messages[-1][1]
    for cls in (CompressionView, ActiveLearningView, UncertaintyView):  # nothing run yet
        renders(cls(state=AppState()))


def test_default_file_choice(tmp_path):
    st = AppState(data_dir=str(tmp_path))
    st.add_file(str(SAMPLE / DATASET), DATASET, "reference")
    views = [cls(state=st) for cls in (CompressionView, ActiveLearningView, UncertaintyView)]
    layouts = [v.panel() for v in views]  # with their widgets, as in a browser session
    assert [v.source for v in views] == [DATASET] * 3
    st.add_file(str(SAMPLE / GENERATIONS), GENERATIONS, "test")
    st.add_file(str(SAMPLE / FORCES), FORCES, "test")  # a better match replaces a guess
    assert [v.source for v in views] == [DATASET, GENERATIONS, FORCES]
    views[2].source = GENERATIONS  # the user's choice stays
    assert views[2].param.reference.objects[1:3] == [DATASET, FORCES]
    st.add_file(str(SAMPLE / FORCES), "forces_copy.extxyz", "test")
    assert views[2].source == GENERATIONS
    st.remove_file(GENERATIONS)
    assert views[1].source == DATASET and views[2].source == FORCES
    # removing every file empties the choices, adding one picks it again (the browser
    # side of this, where removals once raised AttributeError, is in test_browser_tour)
    for name in [f.name for f in st.files]:
        st.remove_file(name)
    assert [v.source for v in views] == [None] * 3
    st.add_file(str(SAMPLE / DATASET), DATASET, "reference")
    assert [v.source for v in views] == [DATASET] * 3
    assert all(len(layout) > 0 for layout in layouts)


# -------------------------------------------------------------- active learning


def test_active_learning_view(state):
    view = ActiveLearningView(state=state, job_mode="thread")
    assert view.source == GENERATIONS
    view.env_step = 8
    progress = []
    view.jobs.runner.param.watch(lambda e: progress.append(e.new), "progress")  # the job panel's
    job = asyncio.run(view.run())  # the event-loop driver of the job
    assert job.state == "done", job.error
    assert progress[-1] == 100 and not view.jobs.running
    report = view.result.report
    assert report["generation"].tolist() == [0, 1, 2, 3, 4]
    table = next(t.value for t in view.body().select(pn.widgets.Tabulator)
                 if "environments" in t.value)
    assert str(table["environments"].dtype) == "Int64"
    assert list(table["environments"]) == report["n_envs"].tolist()
    assert "novelty (fraction dH > 0)" in table and "mean_dH" not in table

    novelty = generation_plot(report, "novelty")
    curve = [e for e in novelty if isinstance(e, hv.Curve)][0]
    # generation 0 has no earlier data: no novelty, not drawn
    assert np.isnan(report["novelty"].iat[0])
    assert curve.dimension_values("generation").tolist() == [1, 2, 3, 4]
    drawn = curve.dimension_values("novelty")
    assert np.all((drawn > 0) & (drawn < 1))
    # the fraction's axis: the data's range with 5 % padding, inside [0, 1]
    lo, hi = novelty.opts.get().kwargs["ylim"]
    span = drawn.max() - drawn.min()
    assert (lo, hi) == pytest.approx((max(0.0, drawn.min() - 0.05 * span),
                                      min(1.0, drawn.max() + 0.05 * span)))

    # against the core on the same environments
    frames = read(SAMPLE / GENERATIONS, index=":")
    gens = al.generation_labels(frames, "generation")
    xs = per_structure(frames, step=8)
    x, labels = np.concatenate(xs), np.repeat(gens, [len(v) for v in xs])
    dh1 = qc.delta_entropy(x[labels == 1], x[labels == 0], H)
    assert drawn[0] == pytest.approx(float(np.mean(dh1 > 0)))
    assert report["n_envs_cumulative"].iat[-1] == len(x)
    for column, func in (("entropy", qc.entropy), ("diversity", qc.diversity)):
        values = [e for e in generation_plot(report, column) if isinstance(e, hv.Curve)][0]
        assert values.dimension_values(column)[-1] == pytest.approx(float(func(x, H)))
    assert hv.renderer("bokeh").get_plot(view.plots(), doc=Document()) is not None
    assert set(CURVES) == {"novelty", "entropy", "diversity"}
    renders(view)


def test_active_learning_bad_key(state):
    view = ActiveLearningView(state=state, job_mode="thread")
    view.generation_key = "round"
    job = view.run_sync()
    assert job.state == "error" and view.result is None
    assert state.messages[-1] == (
        "error", f"Active learning: {GENERATIONS}: frame 0: info key 'round' missing")
    view.generation_key = "  "
    assert view.run_sync() is None
    assert "no generation key" in state.messages[-1][1]


# ------------------------------------------------------------------ uncertainty


@pytest.fixture(scope="module")
def forces_core():
    """dH of the test atoms against the training structures and their force errors."""
    frames = read(SAMPLE / FORCES, index=":")
    train = [f for f in frames if f.info["label"] == "train"]
    test = [f for f in frames if f.info["label"] != "train"]
    x_train, x_test = qc.descriptors(train), qc.descriptors(test)
    dh = qc.delta_entropy(x_test, x_train, H)
    err = np.concatenate([uq.force_errors(f.arrays["forces_model"], f.arrays["forces_emt"])
                          for f in test])
    volume = float(np.mean([f.get_volume() / len(f) for f in train]))
    return x_train, dh, err, x_test, volume


def test_uncertainty_view(state, forces_core, tmp_path):
    x_train, dh, err = forces_core[:3]
    view = UncertaintyView(state=state, job_mode="thread")
    assert view.source == FORCES and view.reference == LABEL_REFERENCE
    assert view.param.reference.objects == [LABEL_REFERENCE, DATASET, GENERATIONS,
                                            DESCRIPTOR_REFERENCE]
    job = view.run_sync()
    assert job.state == "done", job.error
    res = view.result
    assert view.describe(res).startswith(f"{len(dh):,} atoms of {FORCES} (all frames) against")
    np.testing.assert_allclose(res.dh, dh, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(res.error, err, rtol=1e-12)
    # the red curve is the core's running average (20 bins, +-0.75 bin widths)
    core = uq.running_average(dh, err)
    curve = running_curve(res)
    filled = core.count > 0
    np.testing.assert_allclose(curve.dimension_values("dH"), core.centers[filled])
    np.testing.assert_allclose(curve.dimension_values("error"), core.mean[filled])
    assert len(core.centers) == 20 and core.width * 20 == pytest.approx(np.ptp(dh))
    # the plot: the rasterised cloud (Datashader), the spread, the curve, the line dH = 0
    overlay = view.plot()
    assert isinstance(overlay, hv.DynamicMap)
    bokeh_plot = hv.renderer("bokeh").get_plot(overlay, doc=Document())
    # dH on the asinh scale (the default): ticks placed and labelled in nats by JS models
    assert bokeh_plot.state.xaxis[0].axis_label == "dH (nats, asinh)"
    assert type(bokeh_plot.state.xaxis[0].ticker).__name__ == "CustomJSTicker"
    assert bokeh_plot.state.yaxis[0].axis_label == "force error (eV/Å)"
    assert bokeh_plot.state.toolbar.active_scroll.__class__.__name__ == "WheelZoomTool"
    image = overlay[()].get(0)
    assert isinstance(image, hv.Image)
    assert np.nansum(image.dimension_values(2)) == len(dh)  # every atom counted once
    recall = uq.high_error_recall(dh, err)
    assert res.recall.recall == pytest.approx(recall.recall)
    assert f"catches **{recall.recall:.1%}**" in view.recall_text()
    renders(view)

    # a descriptor file of the training set gives the same dH
    save_descriptors(tmp_path / "train.npz", x_train, k=32, cutoff=5.0)
    view.reference, view.descriptor_file = DESCRIPTOR_REFERENCE, "train.npz"
    view.test_label = "test"  # a descriptor reference removes nothing from the file itself
    job = view.run_sync()
    assert job.state == "done", job.error
    np.testing.assert_allclose(view.result.dh, dh, rtol=1e-9, atol=1e-9)
    # the volume rule needs the training structures' cells, which a descriptor file has
    # not: refused as the CLI's uq refuses it (no h taken from the test structures)
    state.settings.bandwidth_mode = "volume rule"
    job = view.run_sync()
    assert job.state == "error" and view.result.h == H
    assert job.error == ("train.npz: the volume rule needs the reference structures: "
                         "descriptor files hold no cell volumes (choose a fixed h)")
    state.settings.bandwidth_mode = "fixed"


def test_uncertainty_opens_on_a_file_with_two_force_arrays(tmp_path):
    """Whatever the names and the order, the tab's default source is a chosen file whose
    frames carry two per-atom force arrays (no other can work here)."""
    import shutil

    from dashboard.views.uncertainty import force_arrays_of

    shutil.copy(SAMPLE / FORCES, tmp_path / "b.extxyz")
    shutil.copy(SAMPLE / DATASET, tmp_path / "a.extxyz")
    st = AppState(data_dir=str(tmp_path))
    st.add_file(str(tmp_path / "a.extxyz"), "a.extxyz", "reference")
    st.add_file(str(tmp_path / "b.extxyz"), "b.extxyz", "test")
    view = UncertaintyView(state=st, job_mode="thread")
    assert force_arrays_of(st.files[1]) == ("forces_emt", "forces_model")
    assert force_arrays_of(st.files[0]) == ()
    assert view.source == "b.extxyz"
    view.source = "a.extxyz"  # the user's choice stands when files change
    st.add_file(str(SAMPLE / GENERATIONS), GENERATIONS, "test")
    assert view.source == "a.extxyz"


def test_uncertainty_bad_input(state, forces_core, tmp_path):
    x_train = forces_core[0]
    view = UncertaintyView(state=state, job_mode="thread")

    def fails(match: str, started: bool = True) -> None:
        job = view.run_sync()
        assert (job is not None) == started
        if started:
            assert job.state == "error"
        level, text = state.messages[-1]
        assert level == "error" and text.startswith("Uncertainty:") and match in text, text

    view.reference_label = "training"
    fails(f"{FORCES}: missing reference: no structure with label 'training' "
          "(labels: ['test', 'train'])")
    view.reference_label = ""
    fails("missing reference", started=False)
    view.reference_label, view.test_label = "train", "validation"
    fails("empty selection: no structure with label 'validation'")
    view.test_label, view.forces_pred, view.forces_ref = "", "forces_dft", "forces_emt"
    fails(f"{FORCES}: per-atom array 'forces_dft' missing")
    view.forces_pred = ""
    fails("name both force arrays", started=False)
    view.forces_ref = ""
    # descriptors written with another k (or cutoff) cannot be compared
    save_descriptors(tmp_path / "k16.npz", x_train[:, :31], k=16, cutoff=5.0)
    save_descriptors(tmp_path / "cut4.npz", x_train, k=32, cutoff=4.0)
    view.reference = DESCRIPTOR_REFERENCE
    view.descriptor_file = "k16.npz"
    fails("k16.npz: descriptor layout differs: k 16 in the file, 32 asked")
    view.descriptor_file = "cut4.npz"
    fails("cut4.npz: descriptor layout differs: cutoff 4 in the file, 5 asked")
    view.descriptor_file = "missing.npz"
    fails("missing.npz: no such file in the data directory", started=False)
    view.descriptor_file = "../train.npz"
    fails("'..' is not allowed", started=False)
    view.descriptor_file = ""
    fails("missing reference", started=False)
    # a reference file without force arrays is fine; a test file without them is not
    view.reference = DATASET
    view.source = GENERATIONS
    fails(f"{GENERATIONS}: need two per-atom force arrays to compare, found ['forces']")
    assert view.result is None and not view.jobs.running
    with pytest.raises(QuestsError, match="name both"):
        force_array_names({}, "a", "", "f")


def test_cancel_before_start(state):
    view = UncertaintyView(state=state, job_mode="thread")
    job = view.make_job()
    assert view.jobs.running and view.jobs.run_button.disabled
    job.cancel()
    view.jobs.runner.drive_sync(job)
    assert job.state == "cancelled" and view.jobs.status == "Cancelled"
    assert state.messages[-1] == ("info", "Uncertainty: cancelled")
    assert not view.jobs.run_button.disabled and view.jobs.cancel_button.disabled


def test_uncertainty_in_a_worker_process(state, forces_core):
    """The server's mode: the job runs in a spawned process, results come back pickled.

    With the volume rule, h comes from the volume per atom of the training structures.
    """
    x_train, _, err, x_test, volume = forces_core
    state.settings.bandwidth_mode = "volume rule"
    view = UncertaintyView(state=state)
    assert view.job_mode == "process"
    job = asyncio.run(view.run())
    assert job.state == "done", job.error
    h = qc.bandwidth_from_volume(volume)
    assert view.result.h == pytest.approx(h, rel=1e-12) and h != H
    np.testing.assert_allclose(view.result.dh, qc.delta_entropy(x_test, x_train, h),
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(view.result.error, err, rtol=1e-12)
