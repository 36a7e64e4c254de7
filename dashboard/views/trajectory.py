"""Trajectory view: the failed-simulation inspector.

Per-frame H, mean dH and fraction dH > 0 (and the largest solid-like cluster
when computed) against time; a sampled H (frames too large for the exact n^2
sum) is drawn with a band of ±2 standard errors. Frames where novelty jumps are flagged (a
robust z-score of the frame-to-frame change). Clicking a frame opens it in
the Atoms and Structure views; flagged frames export to extxyz.

Follow mode (:class:`FollowPanel`, the session in :mod:`dashboard.follow`):
a file of the data directory that a simulation is still writing; each new
frame is appended to Bokeh figures that draw the session's
``ColumnDataSource`` s (streamed, never redrawn), with the frames the
:class:`quests_core.watch.NoveltyRule` flags in a table below.
"""

from __future__ import annotations

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param

from .. import dhscale
from ..follow import FollowSession
from ..theme import label
from .base import (
    EMPTY_TEXT,
    ZOOM_OPTS,
    View,
    control_box,
    ctrl_wheel,
    placeholder,
    plot_pane,
)

#: Per-frame columns drawn, in order (largest_cluster only when present).
CURVES = ("H", "mean_dH", "frac_novel", "largest_cluster")
#: Columns whose jumps flag a frame.
FLAG_COLUMNS = ("mean_dH", "frac_novel")
ATOMS_TAB, STRUCTURE_TAB = 1, 2
#: Columns of the jump-frames table and their (short) headers: the file's own frame.
FLAG_TABLE = {"frame": "frame", "time": "t (ps)", "H": "H", "mean_dH": "mean dH",
              "frac_novel": "dH > 0", "largest_cluster": "cluster"}
#: The computed section's flag rule in words (the follow mode has another: novel atoms).
JUMP_RULE = "jump rule: an upward jump of mean dH or of the fraction dH > 0"


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
    """``time`` when every frame has one and they increase, else ``frame`` (the file's
    own frame numbers)."""
    t = frames["time"].to_numpy(np.float64)
    if len(t) and np.all(np.isfinite(t)) and np.all(np.diff(t) > 0):
        return "time"
    return "frame"


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
    follow = param.ClassSelector(class_=FollowSession, doc="The follow mode of this session.")

    def __init__(self, **params):
        super().__init__(**params)
        if self.follow is None:
            self.follow = FollowSession(state=self.state)

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
                                 "value": values, "frame": f["frame"].to_numpy(),
                                 "structure": f["structure"].to_numpy()})
            ydim = hv.Dimension("plotted", label=text)
            hooks = [dhscale.axis_hook("y", mode, target=5)] if on_dh_scale else []
            # a fraction keeps its whole [0, 1] axis (a constant 1 must not look like noise)
            limits = {"ylim": (-0.02, 1.02)} if column == "frac_novel" else {}
            curve = hv.Curve(data, xdim, [ydim, "value", "frame", "structure"]).opts(
                color="black", line_width=1.5, responsive=True, height=200,
                title=f"{label(column)} per frame", show_grid=True, hooks=hooks,
                framewise=True, ylabel=text, **limits,
                hover_tooltips=[("frame (file)", "@frame"), (label(xcol), f"@{{{xcol}}}"),
                                (label(column), "@value{0.0000}")],
                **{**ZOOM_OPTS, "tools": ["hover", "tap"]},
            )
            marks = hv.Scatter(data.loc[flags], xdim, [ydim, "value", "frame", "structure"]).opts(
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
        text = (f"**{len(flagged)} jump frame(s)** in {self.source} ({JUMP_RULE}, robust "
                f"z-score > {self.z_threshold:g}; frames numbered as in the file, from 0)")
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
        if s is not None and self.results is not None:
            text = f"Selected: **{self.results.frame_name(s)}**"
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
            callback=lambda: self.safe_download(self._export), filename="jump_frames.extxyz",
            label="Export jump frames (extxyz)", color="success", width=260,
        )
        # the computed run first (what Compute produced), the live follow mode below it
        return pn.Column(
            pn.pane.Markdown("### Computed trajectory", margin=(10, 10, 0, 10)),
            controls,
            pn.Row(self.selected_text, to_atoms, to_structure, download),
            pn.Row(pn.Column(self.plots, sizing_mode="stretch_width"),
                   pn.Column(self.flag_table, width=420), sizing_mode="stretch_width"),
            FollowPanel(self.follow).panel(),
            sizing_mode="stretch_width",
            name="Trajectory",
        )

    def _open_atoms(self):
        if self.state.selected_structure is not None:
            self.state.frame_focus = True
        self.open_in(ATOMS_TAB)


# ----------------------------------------------------------------------------
# Follow mode
# ----------------------------------------------------------------------------

#: Curves of the follow mode: (source column, quantity, title).
FOLLOW_CURVES = (("H", "H", "H per frame"), ("frac_novel", "frac_novel", "fraction dH > 0"),
                 ("t_mean_dH", "mean_dH", "mean dH per frame"),
                 ("t_max_dH", "max_dH", "max dH per frame"))
FOLLOW_LABELS = {"H": "H (nats)", "mean_dH": "mean dH (nats)", "max_dH": "max dH (nats)",
                 "frac_novel": "fraction of atoms with dH > 0"}
FLAG_COLOR = "#b40426"


def _status_html(status: str, reference: str) -> str:
    """The status line (and the reference in use under it), escaped: file names are text."""
    import html

    lines = [html.escape(status)] + ([html.escape(reference)] if reference else [])
    return "<br>".join(lines)


class FollowPanel:
    """Controls, status, live curves and flagged-frame table of a :class:`FollowSession`.

    The figures draw the session's sources directly: a new frame is one
    ``stream`` of one row, whatever the number of frames already shown.
    """

    def __init__(self, session: FollowSession):
        self.session = session
        self.figures: dict[str, object] = {}
        self._build()
        session.param.watch(self._on_xcol, "xcol")
        session.param.watch(self._on_running, "running")
        session.param.watch(self._on_threshold, "novel_fraction")
        if session.state is not None:
            session.state.param.watch(self._on_scale, "dh_scale")

    # ----------------------------------------------------------------- build

    def _build(self) -> None:
        from bokeh.layouts import gridplot
        from bokeh.models import (
            DataRange1d,
            DataTable,
            HoverTool,
            NumberFormatter,
            Range1d,
            Span,
            TableColumn,
        )
        from bokeh.plotting import figure

        s = self.session
        src, flags = s.frames_source, s.flags_source
        mode = self.mode
        x_range = DataRange1d(range_padding=0.03)
        for column, quantity, title in FOLLOW_CURVES:
            kw = {"y_range": Range1d(-0.02, 1.02)} if quantity == "frac_novel" else {}
            fig = figure(height=230, sizing_mode="stretch_width", x_range=x_range,
                         title=title, tools="pan,box_zoom,wheel_zoom,reset,save",
                         active_drag="pan", active_scroll="wheel_zoom", name=f"follow-{quantity}",
                         min_border_left=60, **kw)
            line = fig.line("x", column, source=src, color="black", line_width=1.5)
            fig.scatter("x", column, source=src, color="black", size=3)
            fig.scatter("x", column, source=flags, color=FLAG_COLOR, size=9, marker="triangle")
            if quantity == "frac_novel":  # the rule's threshold
                self.threshold = Span(location=s.novel_fraction, dimension="width",
                                      line_color=FLAG_COLOR, line_dash="dashed", line_width=1.5)
                fig.add_layout(self.threshold)
            fig.add_tools(HoverTool(renderers=[line], mode="vline", tooltips=[
                ("frame", "@frame"), ("time (ps)", "@time{0.000}"),
                (FOLLOW_LABELS[quantity], f"@{quantity}{{0.0000}}")]))
            fig.xaxis.axis_label = label(s.xcol)
            fig.yaxis.axis_label = self._ylabel(quantity, mode)
            fig.grid.grid_line_alpha = 0.4
            self._set_ticks(fig, quantity, mode)
            ctrl_wheel(fig)
            self.figures[quantity] = fig
        self.grid = gridplot([list(self.figures.values())[:2], list(self.figures.values())[2:]],
                             sizing_mode="stretch_width", toolbar_location="right",
                             merge_tools=True)
        fmt = NumberFormatter(format="0.000")
        self.table = DataTable(
            source=flags, name="follow-flag-table", height=200, sizing_mode="stretch_width",
            index_position=None, sortable=False,
            columns=[TableColumn(field="frame", title="frame"),
                     TableColumn(field="time", title="t (ps)", formatter=fmt),
                     TableColumn(field="H", title="H (nats)", formatter=fmt),
                     TableColumn(field="mean_dH", title="mean dH (nats)", formatter=fmt),
                     TableColumn(field="max_dH", title="max dH (nats)", formatter=fmt),
                     TableColumn(field="frac_novel", title="fraction dH > 0", formatter=fmt),
                     TableColumn(field="novel_run", title="novel run (frames)")])
        self.start_button = pn.widgets.Button(label="Start", color="primary", width=100,
                                              sizing_mode="fixed", margin=(28, 5, 5, 10))
        self.stop_button = pn.widgets.Button(label="Stop", color="warning", width=100,
                                             sizing_mode="fixed", margin=(28, 5, 5, 5),
                                             disabled=True)
        self.refresh_button = pn.widgets.Button(label="↻ files", width=80, sizing_mode="fixed",
                                                margin=(28, 5, 5, 5),
                                                description="List the data directory again.")
        self.start_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: s.stop(wait=False))
        self.refresh_button.on_click(lambda _: s.refresh_files())
        self.status = pn.pane.HTML(pn.bind(_status_html, s.param.status, s.param.reference_text),
                                   name="follow-status", margin=(5, 10),
                                   sizing_mode="stretch_width")
        self.live = pn.Column(
            pn.pane.Bokeh(self.grid, sizing_mode="stretch_width", name="follow-plots"),
            pn.pane.Markdown(pn.bind(self._flag_text, s.param.first_flag, s.param.n_frames,
                                     s.param.novel_fraction, s.param.patience),
                             name="follow-flag-summary", margin=(0, 10)),
            pn.pane.Bokeh(self.table, sizing_mode="stretch_width"),
            sizing_mode="stretch_width", visible=False)

    @property
    def mode(self) -> str:
        st = self.session.state
        return st.dh_scale if st is not None else "asinh"

    @staticmethod
    def _ylabel(quantity: str, mode: str) -> str:
        text = FOLLOW_LABELS[quantity]
        return dhscale.axis_label(text, mode) if dhscale.is_dh(quantity) else text

    @staticmethod
    def _set_ticks(fig, quantity: str, mode: str) -> None:
        from bokeh.models import BasicTicker, BasicTickFormatter

        if not dhscale.is_dh(quantity):
            return
        if mode == "linear":
            ticker, formatter = BasicTicker(), BasicTickFormatter()
        else:
            ticker, formatter = dhscale.bokeh_ticking(mode, target=5)
        fig.yaxis.ticker = ticker
        fig.yaxis.formatter = formatter

    def _flag_text(self, first_flag, n_frames, novel_fraction, patience) -> str:
        flagged = len(self.session.flags_source.data["frame"])
        rule = (f"fraction dH > 0 above {novel_fraction:g} for {patience} "
                f"frame{'s' if patience != 1 else ''} in a row")
        if first_flag is None:
            return f"**No novel frame** of {n_frames} ({rule}; dashed line)."
        return (f"**{flagged} novel frame(s)** of {n_frames} (red triangles), first at "
                f"frame **{first_flag}** ({rule}; dashed line).")

    # ------------------------------------------------------------- reactions

    def start(self) -> None:
        self.live.visible = True
        self.session.start()

    def _on_running(self, event) -> None:
        self.start_button.disabled = event.new
        self.stop_button.disabled = not event.new

    def _on_threshold(self, event) -> None:
        self.threshold.location = event.new

    def _on_xcol(self, event) -> None:
        for fig in self.figures.values():
            fig.xaxis.axis_label = label(event.new)

    def _on_scale(self, event) -> None:
        for quantity in ("mean_dH", "max_dH"):
            fig = self.figures[quantity]
            fig.yaxis.axis_label = self._ylabel(quantity, event.new)
            self._set_ticks(fig, quantity, event.new)

    # ----------------------------------------------------------------- panel

    def panel(self) -> pn.Column:
        s = self.session
        controls = control_box(s, ["path", "novel_fraction", "patience"], width=190, widgets={
            "novel_fraction": {"type": pn.widgets.FloatInput, "step": 0.01},
            "patience": pn.widgets.IntInput})
        controls.objects = [*controls.objects, self.start_button, self.stop_button,
                            self.refresh_button]
        rule = pn.pane.Markdown(
            "### Follow a running simulation\n\n"
            "New frames of the file are computed as the simulation writes them, against "
            "the Data tab's **reference** files (else the first frame of the file), with "
            "the Data tab's bandwidth. A frame is flagged **novel** (another rule than the "
            "computed section's jumps) when the fraction of its atoms "
            "with dH > 0 stays above the threshold for N frames in a row.",
            margin=(0, 10), sizing_mode="stretch_width")
        return pn.Column(rule, controls, self.status, self.live,
                         sizing_mode="stretch_width", name="follow")
