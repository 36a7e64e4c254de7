"""The dashboard's view classes without a browser.

Results are built by hand from the per-frame / per-atom tables (the columns of
docs/architecture.md) with known dH values, so every number a view shows can
be checked against the input.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io

import bokeh.models
import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import pytest
from ase.io import read
from bokeh.document import Document

from dashboard import dhscale, show
from dashboard.app import TAB_NAMES, DashboardApp, load_extensions, message_line
from dashboard.launch import build_parser, panel_args
from dashboard.state import (
    AppState,
    FileSpec,
    LearningResult,
    NucleationResult,
    OverlapResult,
    Results,
)
from dashboard.theme import DH_CMAP, symmetric_clim
from dashboard.views import (
    AtomsView,
    DataView,
    LearningView,
    NucleationView,
    OverlapView,
    StructureView,
    TrajectoryView,
)
from dashboard.views import nucleation as nucleation_view
from dashboard.views import structure as structure_view
from dashboard.views.atoms import (
    axis_options,
    box_mask,
    dh_cdf,
    dh_histogram,
    fraction_above,
)
from dashboard.views.learning import gap_table, plausible_asymptote
from dashboard.views.overlap import HISTOGRAM_WIDTH, cell_at, heatmap_table, overlap_histogram
from dashboard.views.structure import plotly_figure, projection_axes, slab_mask
from dashboard.views.trajectory import flag_frames, nearest_structure, robust_jumps
from quests_core.dataset import Dataset
from quests_core.errors import QuestsError
from quests_core.trajectory import per_frame_stats

N_TRAJ, JUMP = 6, 4


@pytest.fixture(scope="module", autouse=True)
def extensions():
    load_extensions()


def fake_results(sample) -> Results:
    """Results of solid.extxyz (reference) + the first 6 frames of failed_traj.extxyz,
    with dH = -1 for every atom before frame 4 of the trajectory and +2 from it on,
    except atom 0 of each frame which gets +0.5 (so the fraction novel is known)."""
    parts, atoms_parts, offset = [], [], 0
    for name, role, index in (("solid.extxyz", "reference", ":"),
                              ("failed_traj.extxyz", "trajectory", f":{N_TRAJ}")):
        ds = Dataset.from_files(sample[name], index=index)
        frames = ds.frames.copy()
        table = ds.atoms_table()
        dh = np.full(len(table), -1.0)
        if role == "trajectory":
            dh[table["frame"].to_numpy() >= JUMP] = 2.0
        dh[table["atom"].to_numpy() == 0] = 0.5
        frames["structure"] += offset
        frames["source"], frames["role"], frames["path"] = name, role, str(sample[name])
        counts = frames["n_atoms"].to_numpy()
        mean, frac = per_frame_stats(dh, counts)
        frames["H"] = np.log(counts) - 0.5
        frames["mean_dH"], frames["frac_novel"] = mean, frac
        parts.append(frames)
        atoms_parts.append(pd.DataFrame({
            "structure": (table["structure"] + offset).astype(np.int32),
            "frame": table["frame"].astype(np.int32), "time": table["time"].astype(np.float32),
            "label": pd.Categorical(table["label"].astype(str)),
            "atom": table["atom"].astype(np.int32), "species": pd.Categorical(table["species"]),
            "x": table["x"].astype(np.float32), "y": table["y"].astype(np.float32),
            "z": table["z"].astype(np.float32), "source": pd.Categorical([name] * len(table)),
            "role": pd.Categorical([role] * len(table)), "dH": dh.astype(np.float32),
            "force_error": np.linspace(0, 1, len(table)).astype(np.float32),
        }))
        offset += len(frames)
    frames = pd.concat(parts, ignore_index=True)
    frames["atom_offset"] = np.concatenate([[0], np.cumsum(frames["n_atoms"])[:-1]])
    atoms = pd.concat(atoms_parts, ignore_index=True)
    for c in ("label", "species", "source", "role"):
        atoms[c] = atoms[c].astype("category")
    sizes = np.array([10, 20, 40, 80])
    learning = {"solid.extxyz": LearningResult(
        "solid.extxyz", sizes, np.log(sizes) * 0.5, np.full(4, 0.1), np.log(sizes), 432,
        asymptote=3.0, gap=3.0 - np.log(sizes) * 0.5)}
    matrix = np.array([[1.0, 0.25], [0.75, 1.0]])
    delta = {(i, j): np.array([-1.0, -0.5, 0.5, 1.0], dtype=np.float32)
             for i in range(2) for j in range(2)}
    ov = OverlapResult("file", ["solid.extxyz", "failed_traj.extxyz"], matrix, delta,
                       {"solid.extxyz": 432, "failed_traj.extxyz": 648})
    return Results(frames=frames, atoms=atoms, h=0.015, k=32, cutoff=5.0, reference="solid",
                   files=[], learning=learning, overlap={"file": ov})


@pytest.fixture
def state(sample):
    st = AppState(data_dir=str(sample["solid.extxyz"].parent))
    st.results = fake_results(sample)
    return st


def render_title(pane) -> str:
    """Title text of the Bokeh figure a HoloViews pane draws."""
    plot = hv.renderer("bokeh").get_plot(pane.object, doc=Document())
    return plot.state.title.text


# ----------------------------------------------------------------- helpers


def test_pure_helpers():
    edges, counts = dh_histogram(np.array([-1.0, 0.0, 1.0, np.nan]), bins=4)
    assert counts.sum() == 3 and edges[0] == -1.0 and edges[-1] == 1.0
    xs, cdf = dh_cdf(np.array([-2.0, -1.0, 3.0, 4.0]))
    assert cdf[0] == 0.0 and cdf[-1] == pytest.approx(1.0) and np.all(np.diff(cdf) >= 0)
    # on a clipped range the atoms below it still count
    xs, cdf = dh_cdf(np.array([-100.0, -1.0, 0.5, 1.0, 1e4]), n_points=4, range_=(-1.0, 1.0))
    np.testing.assert_allclose(cdf, [0.2, 0.4, 0.4, 0.4, 0.8])
    # on the asinh scale the bins are equally wide in asinh(dH) and the edges are asinh(dH)
    edges, counts = dh_histogram(np.array([-5.0, 0.0, 1e5]), bins=2, mode="asinh")
    np.testing.assert_allclose(edges[[0, -1]], np.arcsinh([-5.0, 1e5]))
    assert counts.tolist() == [2, 1]
    assert fraction_above(np.array([-1.0, 0.0, 2.0, 3.0])) == 0.5
    lo, hi = symmetric_clim(np.array([-3.0, 1.0, 2.0]), quantile=1.0)
    assert symmetric_clim(np.concatenate([np.full(95, -4.0), np.full(5, 1e4)])) == (-4.0, 4.0)
    assert (lo, hi) == (-3.0, 3.0)
    assert symmetric_clim(np.array([0.1, -0.2])) == (-1.0, 1.0)  # floor
    assert projection_axes("y") == ("x", "z")
    np.testing.assert_array_equal(slab_mask(np.array([0.0, 1.0, 2.0, 3.0]), 1.5, 1.0),
                                  [False, True, True, False])
    flags = robust_jumps(np.array([0, 0.01, 0, 0.02, 0.01, 5, 5.1, 5.0, 5.2]))
    np.testing.assert_array_equal(np.flatnonzero(flags), [5])
    assert not robust_jumps(np.array([5.0, 0.0, 0.0, 0.0])).any()  # drops are not failures


@pytest.mark.parametrize("mode", ["asinh", "linear"])
def test_histogram_bins_the_extremes_of_float32_dh(mode):
    """The Atoms tab's range is the smallest to the largest dH (float64 ends); the
    per-atom dH are float32. numpy's float32 arcsinh is not correctly rounded (it
    differs with the CPU's SIMD path), so asinh(float32 dH) can land one ulp past the
    range's end: the binned values must be put on the scale as the ends are."""
    # float32 values whose float32 arcsinh rounds above or below the float64 one
    for top in (0.6210178732872009, 98.6883544921875, 17110.767578125):
        for bottom in (-1.0, -7.422573089599609, -4044.471435546875):
            dh = np.array([bottom, 0.0, top], dtype=np.float32)
            ends = np.array([float(dh.min()), float(dh.max())])
            span = dhscale.data_range(ends, mode, pad=0.0)
            edges, counts = dh_histogram(dh, 7, span, mode)
            assert counts.sum() == 3, (bottom, top)
            xs, cdf = dh_cdf(dh, range_=span, mode=mode)
            assert cdf[0] == 0.0 and cdf[-1] == 1.0


# ------------------------------------------------------------------- atoms


def test_atoms_view_selection(state):
    view = AtomsView(state=state)
    atoms = state.results.atoms
    opts = axis_options(atoms)
    assert opts[:4] == ["index", "structure", "frame", "time"]
    assert "force_error" in opts and "label" not in opts and "species" not in opts
    assert view.param.x_axis.objects == opts
    # threshold 0 picks exactly the atoms with dH > 0
    np.testing.assert_array_equal(state.selected_atoms, np.flatnonzero(atoms["dH"] > 0))
    view.threshold = 1.0
    np.testing.assert_array_equal(state.selected_atoms, np.flatnonzero(atoms["dH"] > 1.0))
    # a box on (index, dH) keeps only the rows inside it
    view.threshold = -10
    view._on_box(bounds=(100, -5, 199, 5))
    np.testing.assert_array_equal(state.selected_atoms, np.arange(100, 200))
    df = view.data()
    assert box_mask(df, "index", "dH", (100, -5, 199, 5)).sum() == 100
    view.box = None
    # one file only, then one frame only
    view.subset = "failed_traj.extxyz"
    assert set(view.data()["source"]) == {"failed_traj.extxyz"}
    state.selected_structure = 4 + JUMP
    view.frame_only = True
    assert set(view.data()["structure"]) == {4 + JUMP} and state.frame_focus
    assert len(view.data()) == 108


def test_atoms_view_plots(state):
    view = AtomsView(state=state)
    pane = view.plot()
    n = len(state.results.atoms)
    assert render_title(pane) == f"Per-atom dH ({n:,} atoms)"
    text = view.summary().object
    # of the atoms tested against the reference: the reference's own are left out
    atoms = state.results.atoms
    tested = atoms["role"] != "reference"
    assert 0 < (~tested).sum() < len(atoms)
    frac = float(np.mean(atoms.loc[tested, "dH"] > 0))
    assert f"Fraction dH > 0: {frac:.3f}** ({int((atoms.loc[tested, 'dH'] > 0).sum()):,} " \
           f"of {int(tested.sum()):,} atoms outside the reference" in text
    assert frac != pytest.approx(float(np.mean(atoms["dH"] > 0)), abs=1e-3)
    view.subset = "solid.extxyz"  # the reference alone: its own atoms, said so
    assert "of the reference's own atoms" in view.summary().object
    view.subset = "all files"
    hist = view.histogram()
    assert isinstance(hist, pn.Column) and len(hist) == 2
    # every atom is in a bin on both scales, an extreme outlier included; the x axis is
    # asinh(dH) from the smallest to the largest dH (the default scale)
    first = state.results.atoms.index[0]
    saved = state.results.atoms.loc[first, "dH"]
    state.results.atoms.loc[first, "dH"] = 1.6e5
    dh = state.results.atoms["dH"].to_numpy()
    try:
        for scale in ("asinh", "linear"):
            state.dh_scale = scale
            element = view.histogram()[0].object
            counts = element.get(0).dimension_values("count")
            edges = element.get(0).edges
            assert counts.sum() == n
            want = np.arcsinh([dh.min(), dh.max()]) if scale == "asinh" else [dh.min(), 1.6e5]
            np.testing.assert_allclose([edges[0], edges[-1]], want, rtol=1e-6)
    finally:
        state.results.atoms.loc[first, "dH"] = saved
        state.dh_scale = "asinh"
    view.x_axis = view.y_axis
    assert isinstance(view.plot(), pn.pane.Alert)
    view.x_axis, view.y_axis = "x", "y"
    assert render_title(view.plot()).startswith("Per-atom dH")
    view.threshold = 0.0
    data = view._export()  # every frame with a picked atom, picked flag per atom
    frames = read(io.StringIO(data.getvalue().decode()), ":", format="extxyz")
    picked = np.flatnonzero(state.results.atoms["dH"] > 0)
    assert len(frames) == len(np.unique(state.results.atoms["structure"].to_numpy()[picked]))
    assert sum(int(f.arrays["picked"].sum()) for f in frames) == len(picked)
    assert all(f.arrays["dH"].shape == (len(f),) for f in frames)


# --------------------------------------------------------------- structure


def test_structure_view(state, monkeypatch):
    view = StructureView(state=state)
    state.selected_structure = 5
    assert view.structure == 5 and view.structure_widget.value == 5
    view.structure = 2
    assert state.selected_structure == 2
    frame = view.frame()
    assert len(frame) == 108 and set(frame["structure"]) == {2}
    # the default slab holds one (100) layer of the fcc frame (18 of its 108 atoms in 6
    # layers 1.8 Å apart): no atom hides another in the projection
    z = frame["z"].to_numpy()
    layer = slab_mask(z, view.position, view.thickness)
    assert 12 <= layer.sum() <= 24 and np.ptp(z[layer]) < 0.9
    xy = frame[["x", "y"]].to_numpy()[layer]
    gaps = np.linalg.norm(xy[:, None] - xy[None], axis=-1)[np.triu_indices(len(xy), 1)]
    assert gaps.min() > 1.5
    assert render_title(view.slab()).endswith(f"({int(layer.sum())} atoms)")
    assert view.thickness_widget.end > np.ptp(z)  # the whole frame stays reachable
    view.thickness = 1.0
    inside = int(slab_mask(frame["z"].to_numpy(), view.position, 1.0).sum())
    assert render_title(view.slab()).endswith(f"({inside:,} atoms)")
    fig = plotly_figure(frame, (-2.0, 2.0), "t")
    trace = fig["data"][0]
    assert trace["type"] == "scatter3d" and len(trace["x"]) == 108
    assert trace["marker"]["cmid"] == 0.0 and trace["marker"]["cmin"] == -2.0
    scale = trace["marker"]["colorscale"]
    assert scale[0] == [0.0, DH_CMAP[0]] and scale[-1] == [1.0, DH_CMAP[-1]]
    assert DH_CMAP[0].startswith("#") and len(DH_CMAP) == 256
    three_d = view.view3d()
    assert isinstance(three_d, pn.pane.Plotly)
    # named by its file and the file's frame, not the session-wide structure number
    assert three_d.object["layout"]["title"]["text"].startswith("solid.extxyz frame 2 in 3D")
    assert view.structure_widget.label == "Structure (all files, in order)"
    monkeypatch.setattr(structure_view, "MAX_3D_ATOMS", 50)
    assert isinstance(view.view3d(), pn.pane.Alert)
    assert "H =" in view.describe() and "solid.extxyz frame 2" in view.describe()


def test_structure_view_colours_clusters(state):
    view = StructureView(state=state)
    frame = view.frame()
    view.color_by = "cluster"
    if "cluster" not in frame:  # no solid reference in this computation
        assert isinstance(view.view3d(), pn.pane.Alert)
    clusters = np.where(np.arange(len(frame)) < 10, 0, -1)
    clusters[10:13] = 1
    fig = plotly_figure(frame.assign(cluster=clusters), (-1.0, 1.0), "t", color_by="cluster")
    colors = fig["data"][0]["marker"]["color"]
    assert colors[:10] == [structure_view.CLUSTER_COLORS[0]] * 10
    assert colors[10:13] == [structure_view.CLUSTER_COLORS[1]] * 3
    assert set(colors[13:]) == {structure_view.NON_SOLID_COLOR}
    assert "cluster 0" in fig["data"][0]["text"][0] and "colorscale" not in fig["data"][0]["marker"]


# -------------------------------------------------------------- trajectory


def test_trajectory_view(state):
    view = TrajectoryView(state=state)
    assert view.source == "failed_traj.extxyz"
    traj = view.frames()
    assert len(traj) == N_TRAJ
    np.testing.assert_array_equal(np.flatnonzero(flag_frames(traj)), [JUMP])
    assert list(view.flagged()["frame"]) == [JUMP]
    # a click at t = 0.31 ps opens the nearest frame (t = 0.3 ps, structure 4 + 3)
    view._on_tap(x=0.31, y=0.0)
    assert state.selected_structure == 4 + 3
    assert nearest_structure(traj, "time", 0.49) == 4 + 5
    # the selection, the jump table and the hover name the file's own frame, not the
    # session-wide structure number (the trajectory's frames are structures 4, 5, ...)
    assert "Selected: **failed_traj.extxyz frame 3**" in view.selected_text().object
    table = named(view.flag_table(), "trajectory-summary")
    assert "**1 jump frame(s)** in failed_traj.extxyz" in table.object
    jumps = next(o for o in view.flag_table() if isinstance(o, pn.widgets.Tabulator))
    assert list(jumps.value["frame"]) == [JUMP] and "struct." not in jumps.value
    view.open_in(2)
    assert state.active_tab == 2
    layout = view.plots().object
    curve = layout[0].get(0) if isinstance(layout[0], hv.Overlay) else layout[0]
    tips = curve.opts.get().kwargs["hover_tooltips"]
    assert tips[0] == ("frame (file)", "@frame")
    np.testing.assert_array_equal(curve.data["frame"], np.arange(N_TRAJ))
    assert isinstance(layout, hv.Layout) and len(layout) == 3
    data = view._export()
    frames = read(io.StringIO(data.getvalue().decode()), ":", format="extxyz")
    assert [f.info["structure"] for f in frames] == [4 + JUMP]
    np.testing.assert_allclose(frames[0].arrays["dH"][1:], 2.0)


# ------------------------------------------------- learning, overlap, nucleation


def test_learning_view(state):
    view = LearningView(state=state)
    assert view.datasets == ["solid.extxyz"]
    table = gap_table(state.results.learning)
    lc = state.results.learning["solid.extxyz"]
    assert table["information gap (nats)"].iat[0] == pytest.approx(3.0 - lc.mean[-1])
    assert plausible_asymptote(lc)  # 3.0 <= log(432)
    lc2 = LearningResult("x", lc.sizes, lc.mean, lc.std, lc.log_n, 10, asymptote=5.0)
    assert not plausible_asymptote(lc2)  # above log(10)
    assert "unreliable" in gap_table({"x": lc2})["note"].iat[0]
    assert render_title(view.plot()) == "Learning curves (h = 0.015 1/Å)"


def test_overlap_view(state):
    view = OverlapView(state=state)
    res = view.result()
    table = heatmap_table(res)
    assert list(table["text"]) == ["1.00", "0.25", "0.75", "1.00"]
    assert cell_at(res, "failed_traj.extxyz", "solid.extxyz") == (0, 1)
    assert cell_at(res, 0.2, 1.1) == (1, 0)
    assert cell_at(res, "nope", 0) is None
    assert isinstance(view.histograms(), pn.pane.Alert)
    view._on_tap(x="failed_traj.extxyz", y="solid.extxyz")
    assert view.cell == (0, 1)
    column = view.histograms()
    assert len(column) == 2
    for pane, (a, b) in zip(column, ((0, 1), (1, 0)), strict=True):
        # each histogram is its own fixed-width Bokeh figure whose source holds every
        # environment of its cell (a responsive plot in the fixed column drew nothing)
        figure = pane.get_root().select_one({"type": bokeh.models.Plot})
        assert figure.width == HISTOGRAM_WIDTH and figure.height == 240
        assert figure.title.text.startswith(f"dH({res.names[a]} | {res.names[b]})")
        counts = [r.data_source.data["count"] for r in figure.renderers
                  if hasattr(r, "data_source") and "count" in r.data_source.data]
        assert len(counts) == 1 and counts[0].sum() == len(res.delta[(a, b)]) > 0
    view.cell = (1, 1)  # a diagonal cell: its one distribution
    assert [p.name for p in view.histograms()] == ["overlap-histogram-0"]
    hist = overlap_histogram(res, 0, 1, "blue")
    assert hist.opts.get().kwargs["title"] == (
        "dH(solid.extxyz | failed_traj.extxyz):\noverlap 0.25")
    assert hist.data["count"].sum() == 4


def named(layout, name: str):
    """The first object called ``name`` in a Panel layout tree."""
    return next(o for o in layout.select() if getattr(o, "name", None) == name)


#: A noisy cluster-size distribution of about the CNT form (N0 = 2e4, gamma_SL = 0.08
#: J/m^2 at 900 K) whose fits are reliable with either weighting and differ (0.073 +-
#: 0.016 unweighted, 0.080 +- 0.005 Poisson); four sizes, one degree of freedom left, gave
#: a gamma_SL error above its value: "no reliable fit".
CNT_COUNTS = np.array([5034, 2400, 1650, 950, 760, 480, 420, 280])


def test_nucleation_view(state):
    view = NucleationView(state=state)
    assert "No solid-like" in view.body().object or "solid" in view.body().object
    n = 6
    state.results.nucleation = NucleationResult(
        source="t", structure=np.arange(n), time=np.arange(n) * 0.1,
        largest=np.array([3, 5, 8, 20, 60, 120]), n_solid=np.full(n, 150),
        temperature=np.full(n, 900.0), band_min=np.full(n, 30.0), band_max=np.full(n, 60.0),
        sizes=np.arange(1, 9), counts=CNT_COUNTS, n_frames=4,
        fit={"gamma_SL (J/m^2)": 0.2}, fit_curve=(np.array([1.0, 5.0]), np.array([10.0, 0.5])),
        pre_frames=np.arange(4), t_pooled=900.0, critical_band=(30.0, 60.0),
        constants={"element": "Cu", "T_melt (K)": 1323.0, "latent heat (kJ/mol)": 11.99,
                   "V_atom (Å^3)": 12.893, "gamma_SL range (J/m^2)": (0.177, 0.221)},
    )
    body = view.body()
    assert isinstance(body, pn.Column)
    text = named(body, "nucleation-text").object
    assert "Largest cluster overall: **120 atoms**" in text
    assert "frames 0-3 pooled at their mean temperature **900.0 K**" in text
    assert "one critical size band **30-60 atoms**" in text
    assert "V_atom = 12.893 Å^3 (critical band)" in text
    # a click on the timeline selects the nearest frame; the button opens Structure
    view._on_tap(state.results.nucleation.timeline(), "time", 0.31)
    assert state.selected_structure == 3
    view.open_in_structure()
    assert state.active_tab == nucleation_view.STRUCTURE_TAB == 2
    tl = view.timeline(state.results.nucleation)
    assert isinstance(tl, hv.Overlay)  # band + curve
    assert len(tl.get(0).data) == n
    state.results.nucleation.band_min[0] = state.results.nucleation.band_max[0] = np.inf
    tl = view.timeline(state.results.nucleation)  # frame 0 above the melting point
    assert len(tl.get(0).data) == n - 1
    # the weights control refits the stored distribution at the pooled temperature
    from quests_core.analysis import cnt

    # (default: unweighted, the paper's; the selector names it so)
    assert view.fit_weights == "none"
    assert view.param.fit_weights.names == {"unweighted (paper)": "none", "Poisson": "poisson"}
    view.fit_weights = "poisson"
    nuc = state.results.nucleation
    pois = cnt.fit_cnt_distribution(nuc.sizes, nuc.counts, 900.0, v_atom=12.893,
                                    weights="poisson")
    assert nuc.weights == "poisson"
    assert nuc.fit["gamma_SL (J/m^2)"] == pytest.approx(pois.gamma_sl_j_m2, rel=1e-12)
    assert "Poisson-weighted" in named(view.body(), "nucleation-text").object
    view.fit_weights = "none"
    plain = cnt.fit_cnt_distribution(nuc.sizes, nuc.counts, 900.0, v_atom=12.893)
    assert state.results.nucleation.fit["gamma_SL (J/m^2)"] == pytest.approx(
        plain.gamma_sl_j_m2, rel=1e-12) != pytest.approx(pois.gamma_sl_j_m2, rel=1e-3)
    text = named(view.body(), "nucleation-text").object
    assert "unweighted least squares on log N (the paper's)" in text
    assert "cluster radii from V_atom = 12.89 Å^3" in text
    # the fit volume control refits with its clusters sized at 11.78 Å^3/atom; the band
    # keeps its own volume
    view.fit_v_atom = 11.78
    nuc = state.results.nucleation
    assert nuc.fit["gamma_SL (J/m^2)"] == pytest.approx(
        plain.gamma_sl_j_m2 * (12.893 / 11.78) ** (2 / 3), rel=1e-10)
    assert nuc.fit["V_atom of the fit's cluster radii (Å^3)"] == 11.78
    assert nuc.fit["V_atom of the critical band (Å^3)"] == 12.893
    assert nuc.critical_band == (30.0, 60.0)
    assert "cluster radii from V_atom = 11.78 Å^3" in named(view.body(),
                                                            "nucleation-text").object
    view.fit_v_atom = None
    assert state.results.nucleation.fit["gamma_SL (J/m^2)"] == pytest.approx(
        plain.gamma_sl_j_m2, rel=1e-12)
    # a trajectory without CNT constants: its one-line note instead of a band or a fit
    state.results.nucleation = dataclasses.replace(
        nuc, constants=None, t_pooled=float("nan"), fit=None, fit_curve=None,
        note="t: no CNT constants for Ni (the defaults are Cu's): give the melting "
             "temperature (K) (Advanced settings, CNT ...); critical band and CNT fit skipped")
    text = named(view.body(), "nucleation-text").object
    assert "no CNT constants for Ni" in text and "Pre-nucleation" not in text


def test_nucleation_view_names_and_switches_its_trajectory(state):
    """Two trajectories: the tab opens on the one with a CNT fit, names it and its frames,
    lists both, and the selector changes the text, the timeline and the fit."""
    n = 5
    quench = NucleationResult(
        source="quench.extxyz", structure=np.arange(40, 40 + n), frame=np.arange(0, 2 * n, 2),
        time=np.arange(n) * 0.2, largest=np.array([3, 5, 8, 20, 60]),
        n_solid=np.full(n, 150), temperature=np.full(n, 900.0),
        band_min=np.full(n, 30.0), band_max=np.full(n, 60.0),
        sizes=np.arange(1, 9), counts=CNT_COUNTS, n_frames=4,
        fit={"gamma_SL (J/m^2)": 0.166}, pre_frames=np.arange(4), t_pooled=900.0,
        critical_band=(30.0, 60.0),
        constants={"element": "Cu", "T_melt (K)": 1323.0, "latent heat (kJ/mol)": 11.99,
                   "V_atom (Å^3)": 12.893, "gamma_SL range (J/m^2)": (0.177, 0.221)})
    failed = dataclasses.replace(quench, source="failed.extxyz", structure=np.arange(n),
                                 frame=np.arange(n), largest=np.array([864] * n), fit=None,
                                 fit_error="CNT fit failed: too few cluster sizes")
    res = state.results
    res.nucleations = {"failed.extxyz": failed, "quench.extxyz": quench}
    state.results = None
    state.results = res
    view = NucleationView(state=state)
    assert view.param.source.objects == ["failed.extxyz", "quench.extxyz"]
    assert view.source == "quench.extxyz"  # the first with a fit
    which = named(view.body(), "nucleation-which").object
    assert "**quench.extxyz**, frames 0-8 (every 2nd)" in which
    assert "2 trajectories were analysed (failed.extxyz, quench.extxyz)" in which
    tl = view.timeline(view.result())
    assert tl.opts.get().kwargs["title"] == "Largest solid-like cluster in quench.extxyz"
    view.source = "failed.extxyz"
    body = view.body()
    assert "**failed.extxyz**, frames 0-4" in named(body, "nucleation-which").object
    assert "Largest cluster overall: **864 atoms**" in named(body, "nucleation-text").object
    assert "too few cluster sizes" in named(body, "nucleation-text").object


# -------------------------------------------------------------------- data


def test_data_view_files_and_uploads(sample, tmp_path):
    st = AppState(data_dir=str(sample["solid.extxyz"].parent), upload_dir=str(tmp_path / "up"),
                  max_upload_mb=0.001)
    view = DataView(state=st, job_mode="thread")
    assert "solid.extxyz" in view.file_select.options
    view.file_select.value = ["solid.extxyz"]
    view.role_select.value = "reference"
    view.add_selected()
    assert [(f.name, f.role) for f in st.files] == [("solid.extxyz", "reference")]
    with pytest.raises(QuestsError, match="'..'"):
        view.add_file("../etc/passwd")
    view.file_select.options = ["../outside.extxyz"]
    view.file_select.value = ["../outside.extxyz"]
    view.add_selected()
    assert st.messages[-1][0] == "error" and len(st.files) == 1
    with pytest.raises(QuestsError, match="larger than"):
        view.save_upload("big.extxyz", b"x" * 2000)
    path = view.save_upload("../../evil name.extxyz", b"1\n\nCu 0 0 0\n", role="test")
    assert path.parent == tmp_path / "up" and path.name == "evil_name.extxyz"
    assert st.files[-1].name == "upload/evil_name.extxyz"
    # the table edits roles and labels; a bad role is refused with a notification
    view._on_edit(type("E", (), {"row": 0, "column": "role", "value": "test"})())
    assert st.files[0].role == "test"
    view._on_edit(type("E", (), {"row": 0, "column": "role", "value": "bogus"})())
    assert st.files[0].role == "test" and st.messages[-1][0] == "error"
    view._on_remove(type("E", (), {"row": 0})())
    assert [f.name for f in st.files] == ["upload/evil_name.extxyz"]


def test_compute_errors_keep_the_session_working(sample, fresh_cache):
    app = DashboardApp(data_dir=sample["solid.extxyz"].parent, job_mode="thread")
    st = app.state
    asyncio.run(app.data.compute())
    assert st.messages[-1] == ("error", "No files chosen: add files from the list or upload one.")
    app.data.add_file("melt.extxyz", "test")
    job = asyncio.run(app.data.compute())
    assert job.state == "error" and st.results is None and not app.data.jobs.running
    assert st.messages[-1][0] == "error" and "reference" in st.messages[-1][1]
    st.settings.learning_max_n, st.settings.overlap_max_n = 100, 200
    app.data.add_file("solid.extxyz", "reference")
    st.settings.species = "Cu, Qq"  # not an element: refused before any work
    assert asyncio.run(app.data.compute()) is None and not app.data.jobs.running
    assert st.messages[-1] == ("error", "Settings: species: 'Qq' is not an element symbol")
    st.settings.species = ""
    job = asyncio.run(app.data.compute())
    assert job.state == "done" and st.results is not None
    assert app.data.jobs.status.startswith("Done in") and app.data.jobs.progress == 100
    assert st.messages[-1] == ("success", f"Computed {len(st.results.atoms):,} atoms")
    # every view now renders its Bokeh models
    for i in range(len(TAB_NAMES)):
        assert len(app.build_tab(i).get_root(Document()).children) == 1
    info = named(app.data._results_panel(), "results-info").object
    assert "**Files:** melt.extxyz (test), solid.extxyz (reference)" in info
    assert "h = 0.015 1/Å, float64" in info
    # a failed Compute leaves the older results, and the Data tab says whose they are
    previous = st.results
    st.remove_file("solid.extxyz")
    job = asyncio.run(app.data.compute())
    assert job.state == "error" and st.results is previous
    assert st.results_note.startswith("The last Compute failed (") and \
        st.results_note.endswith("the computation before it, on melt.extxyz, solid.extxyz.")
    assert named(app.data._results_panel(), "results-note").alert_type == "danger"
    app.data.add_file("solid.extxyz", "reference")
    assert asyncio.run(app.data.compute()).state == "done" and st.results_note == ""


def test_sessions_are_independent(sample, state):
    a = DashboardApp(data_dir=sample["solid.extxyz"].parent, job_mode="thread")
    b = DashboardApp(data_dir=sample["solid.extxyz"].parent, job_mode="thread")
    a.data.add_file("solid.extxyz", "reference")
    a.state.results = state.results
    assert b.state.files == [] and b.state.results is None
    assert a.upload_dir != b.upload_dir
    a.state.active_tab = 3
    assert a.tabs.active == 3 and b.tabs.active == 0
    b.tabs.active = 5
    assert b.state.active_tab == 5
    assert list(a.tabs._names) == list(TAB_NAMES)
    assert "QUESTS" in a.template().title
    a.cleanup()


def test_show_and_launcher(sample, tmp_path):
    inline = pn.config.inline
    try:
        layout = show(data_dir=sample["solid.extxyz"].parent)
        assert pn.config.inline  # a notebook output carries every script and style
    finally:
        pn.config.inline = inline
    assert isinstance(layout, pn.Column) and isinstance(layout.app, DashboardApp)
    assert layout.app.data.job_mode == "thread"
    # a notebook cell: files and settings side by side in a card, the tabs below
    message, card, tabs, probe = layout.objects
    assert probe is layout.app.render_probe and not probe.rendered  # no browser drew it
    assert asyncio.run(layout.app.displayed(timeout=0.2)) is False
    assert asyncio.run(layout.app.displayed(timeout=30)) is False  # no second wait
    probe.rendered = True
    assert asyncio.run(layout.app.displayed()) is True
    assert tabs is layout.app.tabs and list(tabs._names) == list(TAB_NAMES)
    assert isinstance(card, pn.Card) and card.title == "Files and settings"
    columns = card.objects[0].objects
    assert [c.width for c in columns] == [430, 430]
    assert any(o is layout.app.data.files_table for o in columns[0].objects)
    assert any(o is layout.app.data.jobs.status_text for o in columns[1].objects)
    # the latest message as one escaped line (a notebook has no pop-ups)
    pane = message_line([("info", "first"), ("error", "x.xyz: frame 3: <bad> cell")])
    assert "&lt;bad&gt;" in pane.object and "<bad>" not in pane.object
    assert "data-level='error'" in pane.object and "first" not in pane.object
    assert isinstance(message_line([]), pn.Spacer)
    layout.app.state.notify("error", "x.xyz: frame 3: bad cell")
    texts = [m.text for m in message.get_root(Document()).select({"type": pn.models.markup.HTML})]
    assert any("frame 3: bad cell" in t for t in texts)
    layout.app.cleanup()
    args = build_parser().parse_args(["--port", "5100", "--data-dir",
                                      str(sample["solid.extxyz"].parent), "--no-show"])
    cmd = panel_args(args)
    assert cmd[:3] == ["panel", "serve", cmd[2]] and cmd[2].endswith("dashboard/app.py")
    assert cmd[cmd.index("--address") + 1] == "127.0.0.1" and "--show" not in cmd
    assert cmd[cmd.index("--port") + 1] == "5100"
    assert cmd[cmd.index("--data-dir") + 1] == str(sample["solid.extxyz"].parent.resolve())
    assert "127.0.0.1:5100" in cmd and "--warm" in cmd
    with pytest.raises(QuestsError, match="does not exist"):
        panel_args(build_parser().parse_args(["--data-dir", str(tmp_path / "missing")]))
    default = panel_args(build_parser().parse_args([]))
    assert default[default.index("--data-dir") + 1].endswith("sample_data")


def test_file_spec_roles():
    st = AppState()
    with pytest.raises(QuestsError, match="unknown role"):
        st.add_file("/x", "x", role="training")
    spec = st.add_file("/x", "x", role="solid reference", label="ref")
    assert spec == FileSpec("/x", "x", "solid reference", "ref")
    assert list(st.files_table().columns) == ["file", "role", "label", "frames"]


def test_overlap_note_names_the_bandwidth_of_every_column():
    from dashboard.views.overlap import _bandwidth_text

    assert _bandwidth_text({"a": 0.015, "b": 0.015}) == "h\u00a0=\u00a00.015\u00a0Å⁻¹. "
    assert _bandwidth_text({"solid": 0.06154488, "melt": 0.04913835}) == (
        "h of each column (its volume rule): solid: 0.06154, melt: 0.04914 Å⁻¹. ")
    assert _bandwidth_text({}) == ""


def test_notifications_replace_each_other_and_time_out(monkeypatch, tmp_path):
    """One pop-up at a time, each with a timeout (errors too): none piles up over the
    plots; every message stays in the session's list."""
    from panel.io.notifications import NotificationArea

    from dashboard.state import ERROR_MS

    area = NotificationArea()
    monkeypatch.setattr(type(pn.state), "notifications", property(lambda _self: area))
    st = AppState(data_dir=str(tmp_path))
    for i in range(3):
        st.notify("error", f"x.xyz: frame {i}: bad cell", duration=ERROR_MS)
    st.notify("success", "Computed 10 atoms")
    assert [n.notification_type for n in area.notifications] == ["success"]
    assert area.notifications[0].duration == 6000 and ERROR_MS == 20_000
    assert [m for _, m in st.messages][-4:-1] == [f"x.xyz: frame {i}: bad cell"
                                                 for i in range(3)]
    st.notify("error", "sticky?", duration=0)  # no pop-up stays for ever
    assert area.notifications[-1].duration == ERROR_MS


def test_fraction_limits():
    from dashboard.views.base import fraction_limits

    assert fraction_limits([0.0, 0.04]) == pytest.approx((0.0, 0.042))
    assert fraction_limits([0.5, 1.7, np.nan]) == pytest.approx((0.475, 1.0))
    assert fraction_limits([1.0, 1.0]) == pytest.approx((0.95, 1.0))
    assert fraction_limits([]) == (0.0, 1.0)


def test_histogram_gives_the_bulk_its_bins():
    """A few atoms at 1e5 nats do not squeeze a crystal's bulk into one bar."""
    from dashboard.views.atoms import BULK_BINS, MAX_BINS, dh_histogram

    rng = np.random.default_rng(0)
    dh = np.concatenate([rng.normal(-7.0, 0.4, 20_000), rng.uniform(1e3, 1e5, 300)])
    edges, counts = dh_histogram(dh, 100, mode="asinh", bulk_bins=BULK_BINS)
    lo, hi = np.quantile(dhscale.forward(dh, "asinh"), [0.05, 0.95])
    inside = (edges[:-1] >= lo) & (edges[1:] <= hi)
    # here the cap (MAX_BINS) stops it short of BULK_BINS: still a dozen bars, not one
    assert len(counts) == MAX_BINS and inside.sum() >= 10 and counts.sum() == len(dh)
    assert counts.max() < 0.2 * len(dh)  # no single bar holds the bulk
    edges, counts = dh_histogram(dh, 100, mode="asinh")  # without: the bulk in a few bars
    assert counts.max() > 0.4 * len(dh)
    narrow = rng.normal(0.0, 1.0, 5000)  # no outliers: the bins asked for
    assert len(dh_histogram(narrow, 100, mode="linear", bulk_bins=BULK_BINS)[1]) == 100


def test_atoms_hover_names_the_atom(state, monkeypatch):
    """The Atoms hover names the atom under the cursor (file, frame in the file, atom,
    species, dH) from invisible markers, one atom at a time; above HOVER_ATOMS atoms it
    falls back to the pixel's hover."""
    from bokeh.models import HoverTool

    from dashboard.views import atoms as atoms_view

    view = AtomsView(state=state)
    overlay = view.plot().object[()]
    markers = [e for e in overlay if isinstance(e, hv.Points)]
    assert len(markers) == 1
    table = markers[0].data
    atoms = state.results.atoms
    row = int(np.argmax(atoms["dH"].to_numpy()))  # the most novel atom
    assert (table["source"].iat[row], int(table["frame"].iat[row]),
            int(table["atom"].iat[row])) == (atoms["source"].iat[row],
                                             int(atoms["frame"].iat[row]),
                                             int(atoms["atom"].iat[row]))
    assert table["dH_nats"].iat[row] == pytest.approx(float(atoms["dH"].iat[row]))
    plot = hv.renderer("bokeh").get_plot(view.plot().object, doc=Document())
    hovers = plot.state.select({"type": HoverTool})
    assert len(hovers) == 1 and hovers[0].limit == 1
    assert [t[0] for t in hovers[0].tooltips] == ["file", "frame (file)", "atom", "species",
                                                  "dH (nats)"]
    monkeypatch.setattr(atoms_view, "HOVER_ATOMS", 10)
    shown = view.plot().object[()]
    assert isinstance(shown, hv.Image) and not isinstance(shown, hv.Overlay)


def test_a_tab_says_it_is_drawing_before_its_first_drawing(sample, monkeypatch):
    """Served page: the first click on a tab shows "Drawing the <tab> tab ..." at once and
    builds the views on the next tick (a 3D view of thousands of atoms takes seconds: the
    tab used to stay blank meanwhile); without a server session (a notebook, a script)
    the tab is built at once."""
    from types import SimpleNamespace

    from panel.io.state import set_curdoc

    app = DashboardApp(data_dir=sample["solid.extxyz"].parent, job_mode="thread")
    structure = TAB_NAMES.index("Structure")
    doc = Document()
    later = []
    monkeypatch.setattr(doc, "add_next_tick_callback", later.append)
    context = SimpleNamespace(id="test", request=SimpleNamespace(arguments={}, headers={},
                                                                 cookies={}))
    doc._session_context = lambda: context  # what `panel serve` gives a page (a weakref)
    assert doc.session_context is not None
    with set_curdoc(doc):
        app.tabs.active = structure
    (placeholder,) = app.tabs[structure].objects
    assert placeholder.name == "drawing"
    assert placeholder[1].object == "Drawing the Structure tab ..."
    assert app.state.active_tab != structure and len(later) == 1
    later[0]()  # the next tick: the view replaces the placeholder
    assert app.tabs[structure].objects[0] is not placeholder and \
        app.state.active_tab == structure
    # no server session: built at once, no placeholder
    trajectory = TAB_NAMES.index("Trajectory")
    app.tabs.active = trajectory
    assert app.tabs[trajectory].objects[0].name != "drawing"
    assert app.state.active_tab == trajectory
