"""Trajectory view: the failed-simulation inspector.

Per-frame H, mean dH and fraction dH > 0 (and the largest solid-like cluster
when computed) against time; a sampled H (frames too large for the exact n^2
sum) is drawn with a band of ±2 standard errors. Frames where novelty jumps are flagged (a
robust z-score of the frame-to-frame change). Clicking a frame opens it in
the Atoms and Structure views; flagged frames export to extxyz.
"""

from __future__ import annotations

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param

from .. import dhscale
from ..theme import label
from .base import EMPTY_TEXT, ZOOM_OPTS, View, placeholder, plot_pane

#: Per-frame columns drawn, in order (largest_cluster only when present).
CURVES = ("H", "mean_dH", "frac_novel", "largest_cluster")
#: Columns whose jumps flag a frame.
FLAG_COLUMNS = ("mean_dH", "frac_novel")
ATOMS_TAB, STRUCTURE_TAB = 1, 2
#: Columns of the flagged-frames table and their (short) headers.
FLAG_TABLE = {"structure": "struct.", "time": "t (ps)", "H": "H", "mean_dH": "mean dH",
              "frac_novel": "dH > 0", "largest_cluster": "cluster"}


def robust_jumps(
    values: np.ndarray, z: float = 5.0, min_step: float = 0.0, range_fraction: float = 0.2
) -> np.ndarray:
    """Frames where the value jumps up from the previous frame.

    With ``d_i = v_i - v_{i-1}``, frame i >= 1 is flagged when
    ``d_i - median(d) > z * 1.4826 * MAD(d)`` (an outlier among the
    frame-to-frame changes), ``d_i > min_step`` and ``d_i`` is at least
    ``range_fraction`` of the range of ``values`` (so that the ordinary
    fluctuations after one big jump are not flagged too). Returns a boolean
    array of ``len(values)``; frame 0 is never flagged.
    """
    v = np.asarray(values, dtype=np.float64)
    flags = np.zeros(len(v), dtype=bool)
    if len(v) < 3:
        return flags
    d = np.diff(v)
    ok = np.isfinite(d)
    if ok.sum() < 2:
        return flags
    med = np.median(d[ok])
    mad = 1.4826 * np.median(np.abs(d[ok] - med))
    if mad <= 0:  # most frames do not change at all: any change stands out
        mad = np.finfo(float).eps
    finite = v[np.isfinite(v)]
    floor = max(min_step, range_fraction * float(finite.max() - finite.min()))
    with np.errstate(invalid="ignore"):
        jump = ok & (d - med > z * mad) & (d > floor)
    flags[1:] = jump
    return flags


def flag_frames(frames: pd.DataFrame, z: float = 5.0) -> np.ndarray:
    """Flags of a trajectory's frames: an upward jump of mean dH or of the fraction dH > 0."""
    flags = np.zeros(len(frames), dtype=bool)
    for column in FLAG_COLUMNS:
        if column in frames:
            step = 0.02 if column == "frac_novel" else 0.0
            flags |= robust_jumps(frames[column].to_numpy(), z, min_step=step)
    return flags


def time_axis(frames: pd.DataFrame) -> str:
    """``time`` when every frame has one and they increase, else ``structure``."""
    t = frames["time"].to_numpy(np.float64)
    if len(t) and np.all(np.isfinite(t)) and np.all(np.diff(t) > 0):
        return "time"
    return "structure"


def nearest_structure(frames: pd.DataFrame, xcol: str, x: float) -> int:
    """Structure whose ``xcol`` value is closest to ``x``."""
    xs = frames[xcol].to_numpy(np.float64)
    return int(frames["structure"].iat[int(np.nanargmin(np.abs(xs - x)))])


def stderr_band(f: pd.DataFrame, column: str, data: pd.DataFrame, xcol: str,
                xdim: hv.Dimension, ydim: hv.Dimension) -> hv.Area | None:
    """The ±2 standard-error band of a sampled per-frame H (None when every H is exact).

    Frames above the size threshold get H from a random sample of atoms
    (:func:`quests_core.sampling.frame_entropy`) with its standard error in ``H_stderr``.
    """
    err_col = f"{column}_stderr"
    if column != "H" or err_col not in f:
        return None
    err = f[err_col].to_numpy(np.float64)
    if not (np.isfinite(err) & (err > 0)).any():
        return None
    err = np.where(np.isfinite(err), err, 0.0)
    values = data["plotted"].to_numpy(np.float64)
    band = pd.DataFrame({xcol: data[xcol].to_numpy(np.float64), "plotted": values - 2 * err,
                         "upper": values + 2 * err})
    return hv.Area(band, xdim, [ydim, "upper"], label="±2 stderr (sampled H)").opts(
        color="#3b4cc0", alpha=0.25, line_alpha=0, framewise=True, responsive=True,
        height=200, **{**ZOOM_OPTS, "tools": []})


class TrajectoryView(View):
    """Per-frame curves of one file with flagged novelty jumps."""

    title = "Trajectory"

    source = param.Selector(default=None, objects=[], allow_None=True, doc="File shown.")
    z_threshold = param.Number(default=5.0, bounds=(1.0, 50.0), step=0.5,
                               doc="Robust z-score above which a jump is flagged.")

    @param.depends("state.results", watch=True, on_init=True)
    def _on_results(self, *_):
        res = self.results
        if res is None:
            return
        f = res.frames
        sources = list(pd.unique(f["source"]))
        self.param.source.objects = list(sources)
        trajs = list(pd.unique(f.loc[f["role"] == "trajectory", "source"]))
        multi = [s for s in sources if (f["source"] == s).sum() > 1]
        self.source = (trajs or multi or sources)[0]

    def frames(self) -> pd.DataFrame:
        f = self.results.frames
        return f.loc[f["source"] == self.source].reset_index(drop=True)

    def flagged(self) -> pd.DataFrame:
        """Flagged frames of the shown file."""
        f = self.frames()
        return f.loc[flag_frames(f, self.z_threshold)]

    # -------------------------------------------------------------- interaction

    def _on_tap(self, x=None, y=None, **_):
        if x is None or self.results is None:
            return
        f = self.frames()
        self.state.selected_structure = nearest_structure(f, time_axis(f), float(x))

    def open_in(self, tab: int) -> None:
        if self.state.selected_structure is None:
            self.state.notify("warning", "Click a frame on the curves first.")
            return
        self.state.active_tab = tab

    # -------------------------------------------------------------------- plots

    @param.depends("source", "z_threshold", "state.results", "state.selected_structure",
                   "state.dh_scale")
    def plots(self):
        if self.results is None or self.source is None:
            return placeholder(EMPTY_TEXT)
        f = self.frames()
        if len(f) < 2:
            return placeholder(f"{self.source} has a single frame: nothing to follow in time.")
        xcol = time_axis(f)
        flags = flag_frames(f, self.z_threshold)
        sel = self.state.selected_structure
        xdim = hv.Dimension(xcol, label=label(xcol))
        mode = self.state.dh_scale
        panels = []
        for column in CURVES:
            if column not in f or not np.isfinite(f[column].to_numpy(np.float64)).any():
                continue
            values = f[column].to_numpy(np.float64)
            on_dh_scale = dhscale.is_dh(column)
            text = dhscale.axis_label(label(column), mode) if on_dh_scale else label(column)
            data = pd.DataFrame({xcol: f[xcol].to_numpy(np.float64),
                                 "plotted": dhscale.forward(values, mode) if on_dh_scale
                                 else values,
                                 "value": values, "structure": f["structure"].to_numpy()})
            ydim = hv.Dimension("plotted", label=text)
            hooks = [dhscale.axis_hook("y", mode, target=5)] if on_dh_scale else []
            # a fraction keeps its whole [0, 1] axis (a constant 1 must not look like noise)
            limits = {"ylim": (-0.02, 1.02)} if column == "frac_novel" else {}
            curve = hv.Curve(data, xdim, [ydim, "value", "structure"]).opts(
                color="black", line_width=1.5, responsive=True, height=200,
                title=f"{label(column)} per frame", show_grid=True, hooks=hooks,
                framewise=True, ylabel=text, **limits,
                hover_tooltips=[("structure", "@structure"), (label(xcol), f"@{{{xcol}}}"),
                                (label(column), "@value{0.0000}")],
                **{**ZOOM_OPTS, "tools": ["hover", "tap"]},
            )
            marks = hv.Scatter(data.loc[flags], xdim, [ydim, "value", "structure"]).opts(
                color="#b40426", size=8, marker="triangle")
            overlay = curve * marks
            band = stderr_band(f, column, data, xcol, xdim, ydim)
            if band is not None:
                overlay = band * overlay
            if sel is not None and (f["structure"] == sel).any():
                xsel = float(f.loc[f["structure"] == sel, xcol].iat[0])
                overlay = overlay * hv.VLine(xsel).opts(color="#3b4cc0", line_width=2)
            tap = hv.streams.Tap(source=curve)
            tap.add_subscriber(self._on_tap)
            panels.append(overlay)
        # the curves show the same frames on one time axis: they share it on purpose
        # (zooming one zooms all); their y axes are different quantities and stay apart
        layout = hv.Layout(panels).cols(1).opts(shared_axes=True)
        return plot_pane(layout, name="trajectory-plots")

    @param.depends("source", "z_threshold", "state.results")
    def flag_table(self):
        if self.results is None or self.source is None:
            return pn.Spacer()
        flagged = self.flagged()
        cols = [c for c in FLAG_TABLE if c in flagged]
        text = (f"**{len(flagged)} flagged frame(s)** in {self.source} "
                f"(jump z-score > {self.z_threshold:g})")
        table = pn.widgets.Tabulator(
            flagged[cols].round(3).rename(columns=FLAG_TABLE), show_index=False,
            disabled=True, height=220, layout="fit_columns",
            configuration={"columnDefaults": {"headerSort": False}},
            sizing_mode="stretch_width", pagination="local", page_size=8,
        )
        table.on_click(lambda e: self._select_row(flagged, e.row))
        return pn.Column(pn.pane.Markdown(text, name="trajectory-summary"), table,
                         sizing_mode="stretch_width")

    def _select_row(self, flagged: pd.DataFrame, row: int) -> None:
        if 0 <= row < len(flagged):
            self.state.selected_structure = int(flagged["structure"].iat[row])

    @param.depends("state.selected_structure")
    def selected_text(self):
        s = self.state.selected_structure
        text = "Click a frame on a curve to open it."
        if s is not None:
            text = f"Selected structure **{s}**"
        return pn.pane.Markdown(text, name="trajectory-selected")

    def _export(self):
        from ..exporting import export_frames

        flagged = self.flagged()
        atoms = self.results.atoms
        structs = flagged["structure"].to_numpy()
        rows = np.flatnonzero(atoms["structure"].isin(structs).to_numpy()
                              & (atoms["dH"].to_numpy() > 0))
        return export_frames(self.results, structs, rows)

    def panel(self) -> pn.viewable.Viewable:
        controls = pn.Param(self.param, parameters=["source", "z_threshold"], show_name=False,
                            default_layout=pn.Row)
        to_atoms = pn.widgets.Button(label="Open in Atoms", color="primary", width=140)
        to_structure = pn.widgets.Button(label="Open in Structure", color="primary",
                                         width=150)
        to_atoms.on_click(lambda _: self._open_atoms())
        to_structure.on_click(lambda _: self.open_in(STRUCTURE_TAB))
        download = pn.widgets.FileDownload(
            callback=lambda: self.safe_download(self._export), filename="flagged_frames.extxyz",
            label="Export flagged frames (extxyz)", color="success", width=260,
        )
        return pn.Column(
            controls,
            pn.Row(self.selected_text, to_atoms, to_structure, download),
            pn.Row(pn.Column(self.plots, sizing_mode="stretch_width"),
                   pn.Column(self.flag_table, width=420), sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
            name="Trajectory",
        )

    def _open_atoms(self):
        if self.state.selected_structure is not None:
            self.state.frame_focus = True
        self.open_in(ATOMS_TAB)
