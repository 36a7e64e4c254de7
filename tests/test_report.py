"""The report to share (``quests-dashboard report``, the Data tab's "Save report") and
the figures for papers (dashboard/report.py; docs/report.md).

The browser side (the page opened offline in Chromium) is tests/test_browser_report.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dashboard.pipeline import run_pipeline
from dashboard.report import (
    POINTS_MAX,
    build_report,
    save_figure,
)
from dashboard.state import AppState, ComputeSettings, FileSpec, Results
from quests_core.cli import main

ROOT = Path(__file__).resolve().parent.parent
FAILED = ROOT / "sample_data" / "cu_failed_simulation.extxyz"
SOLID = ROOT / "sample_data" / "cu_solid_400K.extxyz"
needs_sample = pytest.mark.skipif(not (FAILED.exists() and SOLID.exists()),
                                  reason="bundled sample data missing")
#: learning curves and overlap kept small: the numbers under test do not depend on them
SMALL = dict(learning_max_n=200, learning_repeats=1, overlap_max_n=300)
#: the report's size bound for 100,000 atoms (docs/report.md)
MB_100K = 15e6


def report_data(page: str) -> dict:
    """The numbers embedded in a report page."""
    m = re.search(r'<script type="application/json" id="quests-report-data">(.*?)</script>',
                  page, re.S)
    assert m, "no embedded report data"
    return json.loads(m.group(1))


def trajectory_table(tmp_path: Path) -> pd.DataFrame:
    """`quests-dashboard trajectory FAILED -r SOLID -o t.csv`, the reference numbers."""
    out = tmp_path / "t.csv"
    assert main(["trajectory", str(FAILED), "-r", str(SOLID), "-o", str(out), "-q"]) == 0
    return pd.read_csv(out)


@pytest.fixture(scope="module")
def failed_run():
    st = AppState()
    st.add_file(str(FAILED), FAILED.name, "trajectory")
    st.add_file(str(SOLID), SOLID.name, "reference")
    st.settings = ComputeSettings(**SMALL)
    st.results = run_pipeline(st.files, st.settings.frozen())
    return st


@needs_sample
def test_report_numbers_equal_the_trajectory_command(failed_run, tmp_path):
    table = trajectory_table(tmp_path)
    rep = build_report(failed_run.results, failed_run.settings.frozen())
    data = report_data(rep.html)
    assert data == json.loads(json.dumps(data))  # JSON without NaN
    traj = data["trajectories"][FAILED.name]
    assert traj["frame"] == table["frame"].tolist()
    np.testing.assert_allclose(traj["H"], table["H"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(traj["frac_novel"], table["frac_novel"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(traj["mean_dH"], table["mean_dH"], rtol=1e-9)
    assert traj["flagged_frames"] == [31]
    assert "frame 31" in rep.html
    # header: inputs with digests, settings, version
    from quests_core import __version__
    from quests_core.cache_keys import file_digest

    inputs = {row["file"]: row for row in data["inputs"]}
    assert inputs[FAILED.name]["SHA-256"] == file_digest(FAILED)
    assert inputs[FAILED.name]["frames"] == 35
    assert data["settings"]["bandwidth rule"] == "fixed"
    assert data["version"] == __version__
    # per file H and D as `quests-dashboard entropy`
    out = tmp_path / "e.csv"
    assert main(["entropy", str(SOLID), "-o", str(out), "-q"]) == 0
    solid = pd.read_csv(out).iloc[0]
    files = {row["file"]: row for row in data["files"]}
    assert files[SOLID.name]["H (nats)"] == pytest.approx(solid["H"], rel=1e-9)
    assert files[SOLID.name]["D (nats)"] == pytest.approx(solid["D"], rel=1e-9)
    # every script and style inline: no src/href to another file or host
    assert not re.search(r'<script[^>]*\bsrc="(?!data:)', rep.html)
    assert not re.search(r'<link[^>]*\bhref="(?!data:)', rep.html)
    assert rep.size < 5e6


@needs_sample
def test_save_report_of_the_dashboard_gives_the_same_numbers(failed_run, tmp_path):
    from dashboard.views.data import DataView

    view = DataView(state=failed_run, job_mode="process")  # as served: a worker process
    texts = []
    view.share_jobs.runner.param.watch(lambda e: texts.append(e.new), "status")
    page = view.build_share_sync("report", timeout=300).decode("utf-8")
    data = report_data(page)
    table = trajectory_table(tmp_path)
    traj = data["trajectories"][FAILED.name]
    np.testing.assert_allclose(traj["H"], table["H"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(traj["frac_novel"], table["frac_novel"], atol=1e-12)
    assert traj["flagged_frames"] == [31]
    assert data["settings"]["bandwidth rule"] == "fixed"
    # built as a job with progress, then offered by the Download button
    assert sum(t.startswith("Report: ") for t in texts) >= 2, texts
    assert view.share_jobs.status.startswith("Built quests_report.html (")
    download = view.share_download
    assert not download.disabled and download.filename == "quests_report.html"
    assert download.file.getvalue() == page.encode("utf-8")
    assert download.label == f"Download quests_report.html ({len(page) / 1e6:.1f} MB)"
    # other results: the built page is not offered for them
    view.state.param.trigger("results")  # (the fixture's state is shared: not replaced)
    assert download.disabled and download.file is None
    assert view.share_jobs.status.startswith("The results changed")
    # nothing computed: one line, no page
    empty = DataView(state=AppState(), job_mode="thread")
    assert empty.build_share_sync("report") is None and empty.share_jobs.job is None
    assert "nothing computed" in empty.state.messages[-1][1]
    assert empty.share_jobs.status == "Not started: nothing computed yet: press Compute first"


@needs_sample
def test_cli_report_and_its_errors(tmp_path, capsys):
    out = tmp_path / "report.html"
    figs = tmp_path / "figs"
    code = main(["report", str(FAILED), "-r", str(SOLID), "-o", str(out), "-q",
                 "--learning-max-n", "200", "--overlap-max-n", "300", "--no-file-entropy",
                 "--figures", str(figs), "--figure-format", "svg", "--figure-size", "5x3"])
    assert code == 0
    text = capsys.readouterr().out
    assert "jump frames (0-based): 31" in text
    data = report_data(out.read_text(encoding="utf-8"))
    assert data["trajectories"][FAILED.name]["flagged_frames"] == [31]
    assert sorted(p.suffix for p in figs.iterdir()) == [".svg"] * len(list(figs.iterdir()))
    for argv, words in (
        (["report", str(tmp_path / "none.xyz"), "-o", str(out)], "no such file"),
        (["report", str(FAILED), "-o", str(tmp_path / "r.txt")], "unsupported output"),
        (["report", str(FAILED)], "give the output file"),
        (["report", str(FAILED), "-o", str(out), "--figure-format", "gif"], "--figure-format"),
    ):
        assert main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and words in err and "\n" not in err, err


def synthetic_results(n_frames: int, per_frame: int, seed: int = 0) -> Results:
    """Results of a made-up trajectory (no computation): for the size bounds."""
    rng = np.random.default_rng(seed)
    n = n_frames * per_frame
    frame = np.repeat(np.arange(n_frames), per_frame)
    dh = rng.normal(-3, 1, n)
    late = frame >= int(0.8 * n_frames)
    dh[late] = rng.lognormal(5, 2, late.sum())
    atoms = pd.DataFrame({
        "structure": frame.astype(np.int32), "frame": frame.astype(np.int32),
        "time": (0.1 * frame).astype(np.float32), "label": pd.Categorical([""] * n),
        "atom": np.tile(np.arange(per_frame), n_frames).astype(np.int32),
        "species": pd.Categorical(["Cu"] * n),
        "x": rng.uniform(0, 40, n).astype(np.float32),
        "y": rng.uniform(0, 40, n).astype(np.float32),
        "z": rng.uniform(0, 40, n).astype(np.float32), "source": pd.Categorical(["big.xyz"] * n),
        "role": pd.Categorical(["trajectory"] * n), "dH": dh.astype(np.float32)})
    by = pd.Series(dh).groupby(frame)
    frames = pd.DataFrame({
        "structure": np.arange(n_frames), "source": "big.xyz", "frame": np.arange(n_frames),
        "time": 0.1 * np.arange(n_frames), "label": "", "n_atoms": per_frame,
        "atom_offset": np.arange(n_frames) * per_frame, "H": rng.normal(4, 0.1, n_frames),
        "H_stderr": 0.0, "mean_dH": by.mean().to_numpy(),
        "frac_novel": by.apply(lambda s: float((s > 0).mean())).to_numpy(),
        "role": "trajectory", "path": "big.xyz", "temperature": np.nan})
    return Results(frames=frames, atoms=atoms, h=0.015, k=32, cutoff=5.0, reference="ref",
                   files=[FileSpec("/nonexistent/big.xyz", "big.xyz", "trajectory")])


@pytest.mark.parametrize("n_frames, per_frame, bound", [(20, 5_000, MB_100K),
                                                         (25, 10_000, MB_100K)])
def test_report_size_stays_bounded(n_frames, per_frame, bound):
    res = synthetic_results(n_frames, per_frame)
    rep = build_report(res, entropy=False)
    n = n_frames * per_frame
    assert rep.data["per_atom"]["big.xyz"]["drawn_as"] == ("points" if n <= POINTS_MAX
                                                          else "images")
    assert rep.size < bound, f"{n:,} atoms: {rep.size / 1e6:.1f} MB"
    assert rep.data["trajectories"]["big.xyz"]["flagged_frames"] == [int(0.8 * n_frames)]
    print(f"report of {n:,} atoms: {rep.size / 1e6:.2f} MB")


def test_figures_png_and_svg(tmp_path):
    from PIL import Image

    res = synthetic_results(10, 200)
    rep = build_report(res, entropy=False)
    name = "trajectory_big_xyz"
    assert name in rep.figures and "dh_histogram_big_xyz" in rep.figures
    png = save_figure(rep.figures["dh_histogram_big_xyz"], tmp_path / "hist.png", size=(5, 3),
                      dpi=200)
    with Image.open(png) as im:
        assert im.size == (1000, 600)
        assert tuple(round(d) for d in im.info["dpi"]) == (200, 200)
    svg = save_figure(rep.figures[name], tmp_path / "traj.svg", size=(6, 6))
    text = svg.read_text(encoding="utf-8")
    labels = re.findall(r"<text[^>]*>([^<]*)</text>", text)
    assert any("time (ps)" in t for t in labels), labels
    assert any("H (nats)" in t for t in labels)
    assert any("fraction dH > 0" in t.replace("&gt;", ">") for t in labels)
    with pytest.raises(Exception, match="png or svg"):
        save_figure(rep.figures[name], tmp_path / "x.gif")


# ----------------------------------------------------------------------------
# analysis sections: the same numbers as their commands
# ----------------------------------------------------------------------------

SAMPLE = ROOT / "sample_data"
QUENCH = SAMPLE / "cu_quench.extxyz"
LABELLED = SAMPLE / "cu_dataset_labelled.extxyz"
GENERATIONS = SAMPLE / "cu_generations.extxyz"
needs_analysis_data = pytest.mark.skipif(
    not all(p.exists() for p in (QUENCH, SOLID, LABELLED, GENERATIONS)),
    reason="bundled sample data missing")
#: frame selections that keep the nucleation test fast (17 quench frames, 5 solid frames)
QUENCH_INDEX, SOLID_INDEX = "::4", "::2"


def command_summary(argv: list[str], capsys) -> dict[str, str]:
    """The ``key value`` lines a command prints (its summary), run in-process."""
    assert main([*argv, "-q"]) == 0
    out = capsys.readouterr().out
    summary = {}
    for line in out.splitlines():
        if not line.strip():
            break  # the table follows the summary after a blank line
        key, _, value = line.partition(" ")
        summary[key] = value.strip()
    return summary


def same(report_value, printed: str) -> bool:
    """A report number equals a command's printed one (``%.6g``)."""
    from quests_core.cli.output import format_value

    return format_value(float(report_value)) == printed or \
        float(report_value) == pytest.approx(float(printed), rel=5e-6)


@pytest.fixture(scope="module")
def analysis_report(tmp_path_factory):
    """`quests-dashboard report QUENCH -r SOLID --nucleation --compression LABELLED
    --active-learning GENERATIONS` (small learning curves and overlap, no H per file)."""
    tmp = tmp_path_factory.mktemp("analysis")
    out = tmp / "report.html"
    figs = tmp / "figs"
    argv = ["report", str(QUENCH), "-r", str(SOLID), "--index", QUENCH_INDEX,
            "--reference-index", SOLID_INDEX, "--nucleation", "-o", str(out), "-q",
            "--learning-max-n", "200", "--learning-repeats", "1", "--overlap-max-n", "300",
            "--no-file-entropy", "--compression", str(LABELLED), "--compression-fraction",
            "0.2", "--compression-sweep", "0.1,0.5", "--compression-seeds", "2",
            "--active-learning", str(GENERATIONS), "--figures", str(figs),
            "--figure-format", "png", "--dpi", "100"]
    assert main(argv) == 0
    page = out.read_text(encoding="utf-8")
    return report_data(page), page, figs


@needs_analysis_data
def test_nucleation_section_equals_the_nucleation_command(analysis_report, tmp_path,
                                                         capsys):
    data, page, figs = analysis_report
    nuc = data["nucleation"][QUENCH.name]
    table_path = tmp_path / "nuc.csv"
    s = command_summary(["nucleation", str(QUENCH), "-r", str(SOLID), "--index", QUENCH_INDEX,
                         "--reference-index", SOLID_INDEX, "--fit", "-o", str(table_path)],
                        capsys)
    table = pd.read_csv(table_path)
    assert nuc["frame"] == table["frame"].tolist()
    assert nuc["largest_cluster"] == table["largest_cluster"].tolist()
    assert nuc["n_solid"] == table["n_solid"].tolist()
    assert len(nuc["pooled_frames"]) == int(s["pooled_frames"])
    assert same(nuc["T_pooled_K"], s["T_pooled_K"])
    assert same(nuc["critical_band_atoms"][0], s["n_star_min"])
    assert same(nuc["critical_band_atoms"][1], s["n_star_max"])
    assert nuc["fit_weights"] == s["fit_weights"] == "none"
    assert same(nuc["fit_V_atom_A3"], s["V_atom_fit_A3"])
    if "fit_gamma_SL_J_m2" in s:  # a reliable fit: gamma_SL and its error as the command's
        assert same(nuc["fit"]["gamma_SL (J/m^2)"], s["fit_gamma_SL_J_m2"])
        assert same(nuc["fit"]["gamma_SL error (J/m^2)"], s["fit_gamma_SL_err_J_m2"])
        assert same(nuc["fit"]["N0"], s["fit_N0"])
        assert "CNT fit: gamma_SL = " in page
    else:  # none: the report says why, as the command
        assert nuc["fit"] is None and s["fit"].startswith("no reliable fit")
        assert "no reliable fit" in page
    assert (figs / f"nucleation_largest_cluster_{QUENCH.name.replace('.', '_')}.png").exists()
    assert (figs / f"nucleation_cluster_sizes_{QUENCH.name.replace('.', '_')}.png").exists()


@needs_analysis_data
def test_nucleation_without_a_reliable_fit_says_why(failed_run):
    """A trajectory whose fit cannot be made: "no reliable fit: <reason>", no gamma_SL."""
    import dataclasses

    from dashboard.pipeline import fit_nucleation
    from dashboard.state import NucleationResult

    n = 6
    nuc = NucleationResult(
        source="quench.extxyz", structure=np.arange(n), time=np.arange(n, dtype=float),
        largest=np.array([1, 2, 1, 3, 2, 1]), n_solid=np.arange(n),
        temperature=np.full(n, 800.0), band_min=np.full(n, 60.0), band_max=np.full(n, 120.0),
        sizes=np.array([1, 2]), counts=np.array([5, 1]), n_frames=n,
        pre_frames=np.arange(n), t_pooled=800.0, critical_band=(60.0, 120.0),
        constants={"element": "Cu", "T_melt (K)": 1323.0, "latent heat (kJ/mol)": 11.99,
                   "V_atom (Å^3)": 12.893, "gamma_SL range (J/m^2)": (0.177, 0.221),
                   "V_atom fit (Å^3)": 11.78})
    nuc = fit_nucleation(nuc)
    assert not nuc.fit and nuc.fit_error
    res = dataclasses.replace(failed_run.results, nucleations={"quench.extxyz": nuc})
    rep = build_report(res, entropy=False)
    assert rep.data["nucleation"]["quench.extxyz"]["fit"] is None
    assert "no reliable fit" in rep.html.lower()


@needs_analysis_data
def test_compression_section_equals_the_compress_command(analysis_report, tmp_path, capsys):
    data, page, figs = analysis_report
    comp = data["compression"][LABELLED.name]
    table_path = tmp_path / "comp.csv"
    s = command_summary(["compress", str(LABELLED), "--fraction", "0.2", "--method", "msc",
                         "--compare", "--sweep", "0.1,0.5", "--seeds", "2", "--report",
                         str(table_path)], capsys)
    ours = comp["summary"]
    assert ours["method"] == s["method"] == "msc"
    for key in ("structures", "kept_structures", "kept_environments"):
        assert str(ours[key]) == s[key], key
    for key in ("bandwidth", "H", "D", "overlap"):
        assert same(ours[key], s[key]), (key, ours[key], s[key])
    table = pd.read_csv(table_path)
    mine = pd.DataFrame(comp["report"])
    assert mine["method"].tolist() == table["method"].tolist()
    assert mine["size"].tolist() == table["size"].tolist()
    for column in ("entropy", "entropy_std", "diversity", "overlap", "info_gap"):
        np.testing.assert_allclose(mine[column].to_numpy(float), table[column], rtol=1e-9,
                                   atol=1e-12, err_msg=column)
    assert f"compress {LABELLED.name} --fraction 0.2 --method msc --compare" in page
    for metric in ("entropy", "diversity", "overlap"):
        assert (figs / f"compression_{metric}_{LABELLED.name.replace('.', '_')}.png").exists()


@needs_analysis_data
def test_active_learning_section_equals_its_command(analysis_report, tmp_path, capsys):
    data, page, figs = analysis_report
    al = data["active_learning"][GENERATIONS.name]
    table_path = tmp_path / "al.csv"
    s = command_summary(["active-learning", str(GENERATIONS), "-o", str(table_path)], capsys)
    assert str(al["summary"]["generations"]) == s["generations"] == "5"
    assert str(al["summary"]["environments"]) == s["environments"]
    table = pd.read_csv(table_path)
    mine = pd.DataFrame(al["report"])
    assert mine["generation"].tolist() == table["generation"].tolist()
    for column in ("novelty", "mean_dH", "entropy", "diversity"):
        np.testing.assert_allclose(mine[column].to_numpy(float), table[column], rtol=1e-9,
                                   atol=1e-12, equal_nan=True, err_msg=column)
    for column in ("novelty", "entropy", "diversity"):
        assert (figs / f"active_learning_{column}_{GENERATIONS.name.replace('.', '_')}.png"
                ).exists()


def test_nucleation_needs_a_solid(tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(FAILED), "-o", str(out), "--nucleation"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "solid reference" in err and "\n" not in err


def test_stacked_panels_fill_the_figure_with_one_time_label(tmp_path):
    """The 3-panel trajectory figure: as wide as the figure, every label inside it, the
    shared time axis named once (under the bottom panel)."""
    import matplotlib

    matplotlib.use("Agg")
    res = synthetic_results(10, 200)
    rep = build_report(res, entropy=False)
    paths = rep.save_figures(tmp_path, formats=("svg", "png"), names=["trajectory_big_xyz"],
                             dpi=100)
    svg = next(p for p in paths if p.suffix == ".svg").read_text(encoding="utf-8")
    labels = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    assert sum("time (ps)" in t for t in labels) == 1, labels
    from PIL import Image

    with Image.open(next(p for p in paths if p.suffix == ".png")) as im:
        assert im.size == (600, 660)  # the default: 6 in wide, 2.2 in per panel
        ink = np.asarray(im.convert("L")) < 128
    cols = np.flatnonzero(ink.any(axis=0))
    rows = np.flatnonzero(ink.any(axis=1))
    assert cols[-1] - cols[0] > 0.85 * im.size[0]  # the panels fill the width
    assert rows[-1] < im.size[1] - 1  # nothing cut at the bottom (the time label)


# ----------------------------------------------------------------------------
# uncertainty section: the numbers of `quests-dashboard uq`
# ----------------------------------------------------------------------------

FORCES = SAMPLE / "cu_forces_two_models.extxyz"
UQ_ARGS = ["--reference-label", "train", "--test-label", "test", "--forces", "forces_model",
           "forces_emt"]


@pytest.mark.skipif(not (FORCES.exists() and FAILED.exists() and SOLID.exists()),
                    reason="bundled sample data missing")
def test_uncertainty_section_equals_the_uq_command(tmp_path, capsys):
    """`report ... --uncertainty FORCES --uncertainty-reference-label train
    --uncertainty-test-label test --uncertainty-forces forces_model forces_emt`: the
    section's numbers are `uq FORCES --reference-label train --test-label test --forces
    forces_model forces_emt`'s printed `key value` lines and its binned table."""
    table_path = tmp_path / "uq.csv"
    s = command_summary(["uq", str(FORCES), *UQ_ARGS, "-o", str(table_path)], capsys)
    out = tmp_path / "r.html"
    figs = tmp_path / "figs"
    argv = ["report", str(FAILED), "-r", str(SOLID), "--index", "::10", "-o", str(out),
            "--no-file-entropy", "--learning-max-n", "200", "--learning-repeats", "1",
            "--overlap-max-n", "300", "--uncertainty", str(FORCES),
            *[a if not a.startswith("--") else "--uncertainty-" + a[2:] for a in UQ_ARGS],
            "--figures", str(figs), "--figure-format", "png,svg", "--dpi", "100"]
    assert main([*argv, "-q"]) == 0
    printed = capsys.readouterr().out
    page = out.read_text(encoding="utf-8")
    unc = report_data(page)["uncertainty"][FORCES.name]
    ours = unc["summary"]
    assert set(ours) == set(s) - {"meaning"}
    for key in ("test_atoms", "reference_atoms", "high_error_atoms"):
        assert str(ours[key]) == s[key], key
    for key in ("bandwidth", "frac_dH_positive", "error_threshold", "recall", "precision"):
        assert same(ours[key], s[key]), (key, ours[key], s[key])
    assert s["recall"] == "1" and s["high_error_atoms"] == "295"  # sample_data/README.md
    table = pd.read_csv(table_path)
    bins = pd.DataFrame(unc["bins"])
    for column in ("dH_center", "mean_error", "std_error", "count"):
        np.testing.assert_allclose(bins[column].to_numpy(float), table[column], rtol=1e-9,
                                   atol=1e-12, equal_nan=True, err_msg=column)
    assert (f"uq {FORCES.name} --reference-label train --test-label test --forces "
            "forces_model forces_emt") in page
    assert f"recall {s['recall']}, precision {s['precision']}" in printed
    slug = FORCES.name.replace(".", "_")
    svg = (figs / f"uncertainty_{slug}.svg").read_text(encoding="utf-8")
    labels = [t.replace("&gt;", ">") for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]
    assert "force error (eV/Å)" in labels and "dH (nats, asinh)" in labels, labels
    assert any(f"high error > {float(s['error_threshold']):.3g}" in t for t in labels)
    assert (figs / f"uncertainty_{slug}.png").exists()


def test_uncertainty_needs_a_training_set_and_an_error(tmp_path, capsys):
    out = tmp_path / "r.html"
    base = ["report", str(FAILED), "-o", str(out), "--uncertainty", str(FORCES)]
    assert main([*base, "--uncertainty-forces", "forces_model", "forces_emt"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "training set" in err and "\n" not in err
    assert main([*base, "--uncertainty-reference-label", "train"]) == 1
    err = capsys.readouterr().err.strip()
    assert "--uncertainty-forces" in err and "\n" not in err


# ----------------------------------------------------------------------------
# the Data tab's "Save figures": a ZIP of every figure at the chosen size and DPI
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_run():
    """A few frames of the failed simulation against the solid (a fast computation)."""
    st = AppState()
    st.add_file(str(FAILED), FAILED.name, "trajectory", index="::7")
    st.add_file(str(SOLID), SOLID.name, "reference", index="::2")
    st.settings = ComputeSettings(**SMALL)
    st.results = run_pipeline(st.files, st.settings.frozen())
    return st


@needs_sample
def test_save_figures_of_the_dashboard(small_run):
    import io
    import zipfile

    from PIL import Image

    from dashboard.views.data import DataView

    view = DataView(state=small_run, job_mode="thread")
    fmt, width, height, dpi = view.figure_widgets()
    fmt.value, width.value, height.value, dpi.value = "png", 3.0, 2.5, 120
    with zipfile.ZipFile(io.BytesIO(view.build_share_sync("figures"))) as zf:
        names = zf.namelist()
        slug = FAILED.name.replace(".", "_")
        expected = {f"trajectory_{slug}", f"dh_histogram_{slug}", f"dh_cdf_{slug}",
                    f"dh_atoms_{slug}", "learning_curves"}
        assert expected <= {n.rsplit(".", 1)[0] for n in names}, names
        assert all(n.endswith(".png") for n in names)
        for name in names:
            with Image.open(io.BytesIO(zf.read(name))) as im:
                assert im.size == (360, 300), name  # 3 x 2.5 in at 120 DPI
                assert tuple(round(d) for d in im.info["dpi"]) == (120, 120), name
    fmt.value = "svg"
    with zipfile.ZipFile(io.BytesIO(view.build_share_sync("figures"))) as zf:
        assert all(n.endswith(".svg") for n in zf.namelist())
        svg = zf.read(f"trajectory_{slug}.svg").decode("utf-8")
        hist = zf.read(f"dh_histogram_{slug}.svg").decode("utf-8")
    labels = [t.replace("&gt;", ">") for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]
    assert "time (ps)" in labels and "H (nats)" in labels, labels
    assert any("fraction dH > 0" in t for t in labels), labels
    assert any("dH (nats" in t for t in re.findall(r"<text[^>]*>([^<]*)</text>", hist))
    # a size out of range, or nothing computed: a notification, an empty file
    width.value = 0.1
    assert view.build_share_sync("figures") is None
    assert "0.5 to 50 inches" in view.state.messages[-1][1]
    empty = DataView(state=AppState(), job_mode="thread")
    assert empty.build_share_sync("figures") is None
    assert "nothing computed" in empty.state.messages[-1][1]


@needs_sample
def test_save_report_holds_the_analysis_tabs_results(small_run, tmp_path):
    """The Data tab's "Save report" and "Save figures" also hold what the Compression,
    Active learning and Uncertainty tabs computed, with the tabs' own numbers."""
    import io
    import zipfile

    from dashboard.app import DashboardApp

    sample = FAILED.parent
    app = DashboardApp(data_dir=sample, job_mode="thread")
    app.state.results = small_run.results
    app.state.settings = small_run.settings
    for name in ("cu_dataset_labelled.extxyz", "cu_generations.extxyz",
                 "cu_forces_two_models.extxyz"):
        app.state.add_file(str(sample / name), name, "test")
    app.compression.source = "cu_dataset_labelled.extxyz"
    app.compression.param.update(n_seeds=1, env_step=8)
    app.active_learning.source = "cu_generations.extxyz"
    app.active_learning.env_step = 8
    app.uncertainty.source = "cu_forces_two_models.extxyz"
    for view in (app.compression, app.active_learning, app.uncertainty):
        job = view.run_sync()
        assert job.state == "done", job.error
    data = report_data(app.data.build_share_sync("report").decode("utf-8"))
    comp = data["compression"]["cu_dataset_labelled.extxyz"]
    assert comp["command"] == "" and len(comp["report"]) == len(app.compression.result.report)
    al = data["active_learning"]["cu_generations.extxyz"]
    assert [row["generation"] for row in al["report"]] == [0, 1, 2, 3, 4]
    uq = data["uncertainty"]["cu_forces_two_models.extxyz"]
    assert uq["summary"]["recall"] == pytest.approx(app.uncertainty.result.recall.recall)
    assert uq["summary"]["test_atoms"] == len(app.uncertainty.result.dh)
    with zipfile.ZipFile(io.BytesIO(app.data.build_share_sync("figures"))) as zf:
        stems = {n.rsplit(".", 1)[0] for n in zf.namelist()}
    assert any(s.startswith("compression_") for s in stems), stems
    assert any(s.startswith("active_learning_") for s in stems), stems
    assert any(s.startswith("uncertainty_") for s in stems), stems


@needs_sample
def test_paper_figures_draw_jump_frames_as_the_dashboard_does(failed_run):
    """The jump frames of the trajectory figure are the dashboard's red triangles (8 px
    across: 64 pt² in Matplotlib), not Matplotlib's default circles."""
    import holoviews as hv
    import holoviews.plotting.mpl  # noqa: F401 - registers the backend's options

    from dashboard.report import _mpl_opts

    rep = build_report(failed_run.results, failed_run.settings.frozen(), entropy=False)
    figure = rep.figures[f"trajectory_{FAILED.name.replace('.', '_')}"]
    marks = [el for el in _mpl_opts(figure, (6.0, 6.0)).traverse(lambda e: e, [hv.Scatter])]
    assert len(marks) == 3  # one per panel: H, mean dH, fraction dH > 0
    for el in marks:
        style = hv.Store.lookup_options("matplotlib", el, "style").kwargs
        assert (style["marker"], style["s"], style["color"]) == ("^", 64.0, "#b40426")
        assert list(el.dframe()["frame"]) == [31]  # the flagged frame of the file


@needs_sample
def test_a_tabs_figures_as_the_tab_shows_them(small_run):
    """"A tab's figures": the plots one tab shows now (its own choices, its zoom), as PNG
    or SVG at the chosen size and DPI, named by the tab; a tab without plots says so."""
    import io
    import zipfile

    from PIL import Image

    from dashboard.app import DashboardApp

    app = DashboardApp(data_dir=FAILED.parent, job_mode="thread")
    app.state.results = small_run.results
    app.state.settings = small_run.settings
    fmt, width, height, dpi = app.data.figure_widgets()
    fmt.value, width.value, height.value, dpi.value = "png", 4.0, 3.0, 100
    shown = {"Atoms": 3, "Trajectory": 1, "Learning curves": 1, "Overlap": 1, "Structure": 1}
    for tab, n_plots in shown.items():
        data = app.data.build_share_sync("tab", tab=tab)
        assert data is not None, (tab, app.state.messages[-1])
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = sorted(zf.namelist())
            slug = tab.lower().replace(" ", "_")
            assert names == [f"{slug}_{i + 1}.png" for i in range(n_plots)], names
            for name in names:
                with Image.open(io.BytesIO(zf.read(name))) as im:
                    assert im.size == (400, 300), (tab, name)
    assert app.data.share_download.filename == "quests_structure_figures.zip"
    fmt.value = "svg"
    with zipfile.ZipFile(io.BytesIO(app.data.build_share_sync("tab", tab="Overlap"))) as zf:
        svg = zf.read("overlap_1.svg").decode("utf-8")
    assert "overlap(row | column)" in svg  # the heat map's title, as text
    # an analysis tab never run shows no plot: one line, nothing built
    assert app.data.build_share_sync("tab", tab="Compression") is None
    assert app.state.messages[-1] == (
        "error", "Share: the Compression tab shows no plot yet: open it (and run its "
        "analysis, or Compute) first")


def test_paper_figure_colour_bars_stand_beside_the_plot():
    """A figure with a colour bar: after the layout the bar is right of the plot (not over
    it, as tight_layout alone left it) and every label stays inside the figure."""
    import holoviews as hv
    import holoviews.plotting.bokeh  # noqa: F401 - the look is given for Bokeh
    import holoviews.plotting.mpl  # noqa: F401
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from dashboard.report import _mpl_opts, _tight

    names = ["a_long_reference_file_name.extxyz", "b.extxyz"]
    table = pd.DataFrame([(c, r, 1.0 if c == r else 0.5) for c in names for r in names],
                         columns=["column", "row", "overlap"])
    heat = hv.HeatMap(table, ["column", "row"], "overlap").opts(
        backend="bokeh", colorbar=True, clabel="overlap(row | column)", cmap="Blues",
        ylabel="test (row)", xrotation=30)
    fig = hv.render(_mpl_opts(heat, (6.0, 4.0)), backend="matplotlib")
    fig.set_size_inches(6.0, 4.0)
    _tight(fig)
    plot, bar = fig.axes[0].get_position(), fig.axes[1].get_position()
    assert bar.x0 >= plot.x1 and bar.x1 <= 1.0
    drawn = fig.get_tightbbox(FigureCanvasAgg(fig).get_renderer())
    assert drawn.x0 >= -0.01 and drawn.x1 <= 6.0 + 0.01, drawn
