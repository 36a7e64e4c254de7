"""Atoms view: the per-atom dH explorer.

Datashader rasterises every atom (millions are fine) on two axes chosen
among atom index, frame, time, x/y/z and any per-atom array; the colour is
the mean dH of the atoms in a pixel on a diverging map centred at 0 (blue:
known, red: novel). Zooming re-aggregates on the server. Beside it: the dH
histogram and CDF with the fraction dH > 0. Atoms are picked with a dH
threshold and, optionally, a box selection.
"""

from __future__ import annotations

import datashader as ds
import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param
from holoviews.operation.datashader import dynspread, rasterize

from ..theme import DH_CMAP, SPREAD_PX, SPREAD_THRESHOLD, label, symmetric_clim
from .base import EMPTY_TEXT, View, placeholder

ALL = "all files"
#: Columns that can be axes before any per-atom array.
BASE_AXES = ("index", "structure", "frame", "time", "atom", "x", "y", "z", "dH")
NOT_AXES = {"label", "species", "source", "role", "generation"}


def axis_options(atoms: pd.DataFrame) -> list[str]:
    """Axis choices: ``index`` plus every numeric per-atom column (base columns first)."""
    numeric = [c for c in atoms.columns
               if c not in NOT_AXES and pd.api.types.is_numeric_dtype(atoms[c])]
    base = [c for c in BASE_AXES if c == "index" or c in numeric]
    return base + [c for c in numeric if c not in base]


def finite_values(values: np.ndarray, max_n: int | None = None) -> np.ndarray:
    """The finite entries of ``values`` (no copy when all are finite), optionally a strided
    subsample of at most about ``max_n`` of them."""
    v = np.asarray(values)
    if max_n is not None and len(v) > max_n:
        v = v[:: len(v) // max_n + 1]
    ok = np.isfinite(v)
    return v if ok.all() else v[ok]


def robust_range(dh: np.ndarray, quantile: float = 0.01, include: tuple = (0.0,)
                 ) -> tuple[float, float]:
    """Range from the ``quantile`` to the ``1 - quantile`` quantile of dH, widened to
    contain the values in ``include`` (a few exploding atoms must not squash the plot)."""
    v = finite_values(dh, max_n=1_000_000)
    if len(v) == 0:
        return (-1.0, 1.0)
    lo, hi = (float(q) for q in np.quantile(v.astype(np.float64), [quantile, 1.0 - quantile]))
    lo, hi = min([lo, *include]), max([hi, *include])
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return lo, hi


def dh_histogram(dh: np.ndarray, bins: int = 100, range_: tuple[float, float] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of finite dH values on ``range_`` (default: min to max): ``(edges, counts)``.

    Values outside ``range_`` are not counted.
    """
    v = finite_values(dh)
    if len(v) == 0:
        return np.linspace(-1, 1, bins + 1), np.zeros(bins, dtype=np.int64)
    lo, hi = range_ if range_ is not None else (float(v.min()), float(v.max()))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    return edges, counts


def dh_cdf(dh: np.ndarray, n_points: int = 400, range_: tuple[float, float] | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """Empirical CDF of dH at ``n_points + 1`` values spanning ``range_``:
    ``(x, fraction of atoms with dH < x)`` (atoms below the range are counted; the
    last point includes the atoms equal to the upper end)."""
    v = finite_values(dh)
    if len(v) == 0:
        return np.zeros(0), np.zeros(0)
    edges, counts = dh_histogram(v, bins=n_points, range_=range_)
    below = int(np.sum(v < edges[0]))
    return edges, (below + np.concatenate([[0], np.cumsum(counts)])) / len(v)


def fraction_above(dh: np.ndarray, threshold: float = 0.0) -> float:
    """Fraction of atoms with dH > threshold (NaN for no atoms)."""
    v = np.asarray(dh)
    return float(np.mean(v > threshold)) if len(v) else float("nan")


def box_mask(df: pd.DataFrame, x: str, y: str, bounds) -> np.ndarray:
    """Rows of ``df`` inside ``bounds = (x0, y0, x1, y1)`` on columns x, y."""
    x0, y0, x1, y1 = bounds
    xs, ys = _column(df, x), _column(df, y)
    return (xs >= min(x0, x1)) & (xs <= max(x0, x1)) & (ys >= min(y0, y1)) & (ys <= max(y0, y1))


def _column(df: pd.DataFrame, name: str) -> np.ndarray:
    if name == "index" and "index" not in df:
        return np.arange(len(df))
    return df[name].to_numpy()


def plot_frame(df: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Columns ``x``, ``y`` (float64) and ``dH_colour`` (float32) for Datashader.

    One dtype for every axis means Datashader compiles its kernels once;
    float64 axes keep HoloViews' image bounds exact.
    """
    columns = {
        x: np.asarray(_column(df, x), dtype=np.float64),
        y: np.asarray(_column(df, y), dtype=np.float64),
        "dH_colour": np.asarray(df["dH"].to_numpy(), dtype=np.float32),
    }
    return pd.DataFrame(columns, copy=False)


def dh_image(data: pd.DataFrame, x: str, y: str, clim: tuple[float, float], **opts):
    """Datashaded (rasterised, dynamically spread) points coloured by mean dH.

    ``data`` comes from :func:`plot_frame`. Zooming re-aggregates on the server.
    """
    points = hv.Points(
        data,
        kdims=[hv.Dimension(x, label=label(x)), hv.Dimension(y, label=label(y))],
        vdims=[hv.Dimension("dH_colour", label="dH (nats)")],
    )
    image = rasterize(points, aggregator=ds.mean("dH_colour"), dynamic=True)
    return dynspread(image, threshold=SPREAD_THRESHOLD, max_px=SPREAD_PX).opts(
        cmap=DH_CMAP, clim=clim, colorbar=True, clabel="mean dH (nats)",
        xlabel=label(x), ylabel=label(y), **opts,
    )


class AtomsView(View):
    """Per-atom dH explorer (Datashader)."""

    title = "Atoms"

    x_axis = param.Selector(default="index", objects=["index"], doc="Horizontal axis.")
    y_axis = param.Selector(default="dH", objects=["dH"], doc="Vertical axis.")
    subset = param.Selector(default=ALL, objects=[ALL], doc="Which file's atoms to show.")
    frame_only = param.Boolean(default=False, doc="Only the frame opened from Trajectory.")
    threshold = param.Number(default=0.0, softbounds=(-5.0, 20.0), step=0.1,
                             doc="Atoms with dH above this value are picked (nats).")
    box = param.NumericTuple(default=None, allow_None=True, length=4,
                             doc="Box selection (x0, y0, x1, y1) in axis units.")
    colour_limit = param.Number(default=None, allow_None=True, bounds=(0, None),
                                doc="Colour range ±limit (nats); empty: automatic.")
    bins = param.Integer(default=100, bounds=(10, 1000), doc="Histogram bins.")

    def __init__(self, **params):
        super().__init__(**params)
        self._rows: np.ndarray | None = None
        self.state.param.watch(self._on_results, "results")
        self.state.param.watch(self._on_structure, "selected_structure")
        self.state.param.watch(self._on_focus, "frame_focus")
        self.param.watch(lambda e: setattr(self.state, "frame_focus", e.new), "frame_only")
        self.param.watch(self._update_selection, ["threshold", "box", "subset", "frame_only"])
        self._on_results()

    # ---------------------------------------------------------------- data

    def _on_results(self, *_):
        res = self.results
        if res is None:
            return
        axes = axis_options(res.atoms)
        self.param.x_axis.objects = axes
        self.param.y_axis.objects = axes
        files = [ALL] + [f for f in pd.unique(res.frames["source"])]
        self.param.subset.objects = files
        with param.parameterized.batch_call_watchers(self):
            self.box = None
            if self.x_axis not in axes:
                self.x_axis = "index"
            if self.y_axis not in axes:
                self.y_axis = "dH"
            if self.subset not in files:
                self.subset = ALL
        self._update_selection()

    def _on_focus(self, event):
        self.frame_only = bool(event.new)

    def _on_structure(self, event):
        if event.new is not None and self.frame_only:
            self._update_selection()

    def rows(self) -> np.ndarray | slice:
        """Rows of the per-atom table shown (a slice when all are shown)."""
        res = self.results
        atoms = res.atoms
        mask = None
        if self.subset != ALL:
            mask = (atoms["source"] == self.subset).to_numpy()
        if self.frame_only and self.state.selected_structure is not None:
            fmask = (atoms["structure"] == self.state.selected_structure).to_numpy()
            mask = fmask if mask is None else mask & fmask
        if mask is None:
            return slice(0, len(atoms))
        return np.flatnonzero(mask)

    def data(self) -> pd.DataFrame:
        """The shown part of the per-atom table, with an ``index`` column (global row)."""
        atoms = self.results.atoms
        rows = self.rows()
        if isinstance(rows, slice):
            dtype = np.int32 if len(atoms) < 2**31 else np.int64
            return atoms.assign(index=np.arange(len(atoms), dtype=dtype))
        return atoms.iloc[rows].assign(index=rows)

    def selection(self) -> np.ndarray:
        """Global rows of the picked atoms: dH > threshold (and inside the box, if any)."""
        if self.results is None:
            return np.zeros(0, dtype=np.int64)
        df = self.data()
        mask = df["dH"].to_numpy() > self.threshold
        if self.box is not None:
            mask &= box_mask(df, self.x_axis, self.y_axis, self.box)
        return df["index"].to_numpy()[mask]

    def _update_selection(self, *_):
        if self.results is None:
            return
        self.state.selected_atoms = self.selection()

    # --------------------------------------------------------------- plots

    def _on_box(self, bounds=None, **_):
        self.box = tuple(float(b) for b in bounds) if bounds else None

    @param.depends("x_axis", "y_axis", "subset", "frame_only", "colour_limit", "state.results",
                   "state.selected_structure")
    def plot(self):
        if self.results is None:
            return placeholder(EMPTY_TEXT)
        if self.x_axis == self.y_axis:
            return placeholder("Choose two different axes.")
        df = self.data()
        if len(df) == 0:
            return placeholder("No atoms in this selection.")
        clim = symmetric_clim(df["dH"].to_numpy())
        if self.colour_limit:
            clim = (-float(self.colour_limit), float(self.colour_limit))
        x, y = self.x_axis, self.y_axis
        shown = dh_image(
            plot_frame(df, x, y), x, y, clim,
            tools=["box_select", "hover"],
            active_tools=["box_zoom"],
            responsive=True,
            min_height=420,
            title=f"Per-atom dH ({len(df):,} atoms)",
            default_tools=["pan", "box_zoom", "wheel_zoom", "reset", "save"],
        )
        stream = hv.streams.BoundsXY(source=shown)
        stream.add_subscriber(self._on_box)
        return pn.pane.HoloViews(shown, sizing_mode="stretch_width", min_height=440,
                                 name="atoms-plot")

    @param.depends("threshold", "subset", "frame_only", "bins", "state.results",
                   "state.selected_structure")
    def histogram(self):
        if self.results is None:
            return pn.Spacer()
        dh = self.data()["dH"].to_numpy()
        span = robust_range(dh, include=(0.0, float(self.threshold)))
        outside = int(np.sum((dh < span[0]) | (dh > span[1])))
        title = "dH histogram" + (f" ({outside:,} atoms off scale)" if outside else "")
        edges, counts = dh_histogram(dh, self.bins, span)
        hist = hv.Histogram((edges, counts), kdims=[hv.Dimension("dH", label="dH (nats)")],
                            vdims=[hv.Dimension("count", label="atoms")]).opts(
            color="#888888", line_color=None, title=title, responsive=True, height=240
        )
        xs, cdf = dh_cdf(dh, range_=span)
        curve = hv.Curve((xs, cdf), kdims=[hv.Dimension("dH", label="dH (nats)")],
                         vdims=[hv.Dimension("cdf", label="fraction of atoms below dH")]).opts(
            color="black", title="dH CDF", responsive=True, height=240, ylim=(0, 1.02)
        )
        zero = hv.VLine(0.0).opts(color="#3b4cc0", line_dash="dotted", line_width=1.5)
        thr = hv.VLine(float(self.threshold)).opts(color="#b40426", line_dash="dashed",
                                                    line_width=1.5)
        return pn.Column(
            pn.pane.HoloViews(hist * zero * thr, sizing_mode="stretch_width", name="atoms-hist"),
            pn.pane.HoloViews(curve * zero * thr, sizing_mode="stretch_width", name="atoms-cdf"),
            sizing_mode="stretch_width",
        )

    @param.depends("threshold", "box", "subset", "frame_only", "state.results",
                   "state.selected_atoms")
    def summary(self):
        if self.results is None:
            return pn.pane.Markdown("")
        dh = self.data()["dH"].to_numpy()
        frac = fraction_above(dh, 0.0)
        picked = self.state.selected_atoms
        n_picked = 0 if picked is None else len(picked)
        n_frames = 0
        if n_picked:
            n_frames = len(np.unique(self.results.atoms["structure"].to_numpy()[picked]))
        box = "" if self.box is None else " inside the box"
        return pn.pane.Markdown(
            f"**Fraction dH > 0: {frac:.3f}** ({int((dh > 0).sum()):,} of {len(dh):,} atoms)  \n"
            f"Picked: **{n_picked:,} atoms** with dH > {self.threshold:g} nats{box}, "
            f"in {n_frames:,} frames",
            name="atoms-summary",
        )

    def _export(self):
        from ..exporting import export_atoms

        return export_atoms(self.results, self.state.selected_atoms)

    def panel(self) -> pn.viewable.Viewable:
        controls = pn.Param(
            self.param,
            parameters=["x_axis", "y_axis", "subset", "frame_only", "threshold", "colour_limit"],
            widgets={"threshold": {"type": pn.widgets.FloatInput, "name": "dH threshold (nats)"},
                     "colour_limit": {"type": pn.widgets.FloatInput,
                                      "name": "Colour limit (nats)"}},
            show_name=False,
            default_layout=pn.Row,
            sizing_mode="stretch_width",
        )
        clear = pn.widgets.Button(label="Clear box", color="light", width=100)
        clear.on_click(lambda _: setattr(self, "box", None))
        download = pn.widgets.FileDownload(
            callback=lambda: self.safe_download(self._export),
            filename="picked_atoms.extxyz",
            label="Export picked atoms (extxyz)", color="primary", width=260,
        )
        return pn.Column(
            controls,
            pn.Row(clear, download, self.summary, sizing_mode="stretch_width"),
            pn.Row(
                pn.Column(self.plot, sizing_mode="stretch_width"),
                pn.Column(self.histogram, width=380),
                sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
            name="Atoms",
        )
