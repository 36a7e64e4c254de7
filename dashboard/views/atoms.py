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

from .. import dhscale
from ..theme import DH_CMAP, SPREAD_PX, SPREAD_THRESHOLD, label, symmetric_clim
from .base import (
    EMPTY_TEXT,
    ZOOM_OPTS,
    View,
    control_box,
    dh_scale_widget,
    placeholder,
    plot_pane,
)

ALL = "all files"
#: |dH| (nats) above which the summary counts an atom as extreme.
EXTREME_DH = 100.0
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


#: Bins the central 90 % of the atoms get at least, however far the outliers reach.
BULK_BINS = 20
#: Most bins a dH histogram gets for that.
MAX_BINS = 1000


def dh_histogram(dh: np.ndarray, bins: int = 100, range_: tuple[float, float] | None = None,
                 mode: str = "linear", bulk_bins: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of finite dH values: ``(edges, counts)``; edges are plotted coordinates
    (dH on ``mode``'s scale, :mod:`dashboard.dhscale`), bins equally wide on that scale.

    ``range_`` (plotted coordinates) defaults to the data's min to max; values
    outside it are not counted. With ``bulk_bins``, ``bins`` grows (up to
    :data:`MAX_BINS`) until the central 90 % of the values spans that many bins: a few
    atoms at 1e5 nats must not squeeze the bulk of a crystal into one bar. The values
    are put on the plotted scale in float64, as :func:`dashboard.dhscale.data_range`
    puts the range's ends: a float32 dH equal
    to the largest (or smallest) dH then lands exactly on the last (first) edge and
    is counted, whatever rounding the machine's float32 ``arcsinh`` does.
    """
    v = dhscale.forward(finite_values(dh).astype(np.float64, copy=False), mode)
    if len(v) == 0:
        return np.linspace(-1, 1, bins + 1), np.zeros(bins, dtype=np.int64)
    lo, hi = range_ if range_ is not None else (float(v.min()), float(v.max()))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    if bulk_bins:
        q5, q95 = np.quantile(v, [0.05, 0.95])
        if q95 > q5:
            bins = int(min(MAX_BINS, max(bins, np.ceil(bulk_bins * (hi - lo) / (q95 - q5)))))
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    return edges, counts


def dh_cdf(dh: np.ndarray, n_points: int = 400, range_: tuple[float, float] | None = None,
           mode: str = "linear") -> tuple[np.ndarray, np.ndarray]:
    """Empirical CDF of dH at ``n_points + 1`` values spanning ``range_`` (plotted
    coordinates on ``mode``'s scale): ``(x, fraction of atoms with dH < x)`` (atoms below
    the range are counted; the last point includes the atoms equal to the upper end)."""
    v = finite_values(dh).astype(np.float64, copy=False)
    if len(v) == 0:
        return np.zeros(0), np.zeros(0)
    edges, counts = dh_histogram(v, bins=n_points, range_=range_, mode=mode)
    below = int(np.sum(dhscale.forward(v, mode) < edges[0]))
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


def plot_frame(df: pd.DataFrame, x: str, y: str, mode: str = "linear") -> pd.DataFrame:
    """Columns ``x``, ``y`` (float64) and ``dH_colour`` (float32) for Datashader.

    dH-like axes and the colour are in plotted coordinates of ``mode``'s scale
    (:mod:`dashboard.dhscale`). One dtype for every axis means Datashader compiles
    its kernels once; float64 axes keep HoloViews' image bounds exact.
    """
    columns = {}
    for name in (x, y):
        values = np.asarray(_column(df, name), dtype=np.float64)
        columns[name] = dhscale.forward(values, mode) if dhscale.is_dh(name) else values
    columns["dH_colour"] = np.asarray(dhscale.forward(df["dH"].to_numpy(), mode),
                                      dtype=np.float32)
    return pd.DataFrame(columns, copy=False)


def axis_text(column: str, mode: str) -> str:
    """Axis label of a table column, naming the dH scale on dH-like axes."""
    return dhscale.axis_label(label(column), mode) if dhscale.is_dh(column) else label(column)


def dh_hooks(x: str, y: str, mode: str) -> list:
    """Plot hooks giving dH-like axes ticks in nats on ``mode``'s scale."""
    return [dhscale.axis_hook(a, mode) for a, c in (("x", x), ("y", y)) if dhscale.is_dh(c)]


def nats_hover(mode: str, empty: str = "no atoms"):
    """A Bokeh hover formatter showing a plotted dH coordinate in nats."""
    from bokeh.models import CustomJSHover

    value = "value" if mode == "linear" else f"{dhscale.ASINH_SCALE!r} * Math.sinh(value)"
    return CustomJSHover(
        code=f"const v = {value}; return Number.isFinite(v) ? v.toPrecision(4) : '{empty}';")


def hover_tooltips(x: str, y: str, mode: str) -> tuple[list, dict]:
    """Hover text of a dH raster in the user's units (``hover_tooltips, hover_formatters``)."""
    from bokeh.models import CustomJSHover

    to_nats = nats_hover(mode)
    plain = CustomJSHover(code="return Number.isFinite(value) ? value.toPrecision(5) : '';")
    tips = [(label(x), "$x{custom}"), (label(y), "$y{custom}"),
            ("mean dH (nats)", "@image{custom}")]
    formatters = {"$x": to_nats if dhscale.is_dh(x) else plain,
                  "$y": to_nats if dhscale.is_dh(y) else plain,
                  "@image": to_nats}
    return tips, formatters


def dh_image(data: pd.DataFrame, x: str, y: str, clim: tuple[float, float],
             mode: str = "linear", hover: bool = True, **opts):
    """Datashaded (rasterised, dynamically spread) points coloured by mean dH.

    ``data`` comes from :func:`plot_frame` with the same ``mode``; ``clim`` is in
    plotted coordinates. Zooming (Ctrl + mouse wheel) re-aggregates on the
    server, and the ranges follow the data whenever the plot is rebuilt.
    """
    points = hv.Points(
        data,
        kdims=[hv.Dimension(x, label=axis_text(x, mode)),
               hv.Dimension(y, label=axis_text(y, mode))],
        vdims=[hv.Dimension("dH_colour", label="mean dH (nats)")],
    )
    image = rasterize(points, aggregator=ds.mean("dH_colour"), dynamic=True)
    # the pixel's hover (cursor position, mean dH), unless the caller names the atoms
    tips, formatters = hover_tooltips(x, y, mode) if hover else (None, {})
    opts = {**ZOOM_OPTS, **opts}
    opts["hooks"] = dh_hooks(x, y, mode) + list(opts.get("hooks", []))
    return dynspread(image, threshold=SPREAD_THRESHOLD, max_px=SPREAD_PX).opts(
        cmap=DH_CMAP, clim=clim, colorbar=True,
        clabel=dhscale.axis_label("mean dH (nats)", mode),
        colorbar_opts=dhscale.colorbar_opts(mode),
        xlabel=axis_text(x, mode), ylabel=axis_text(y, mode),
        **({"hover_tooltips": tips, "hover_formatters": formatters} if hover else {}),
        framewise=True, **opts,
    )


#: Up to this many atoms shown, the Atoms hover names the atom under the cursor (file,
#: frame, atom, species, dH) from invisible markers sent to the browser; above it, the
#: hover reports the cursor's position and the pixel's mean dH.
HOVER_ATOMS = 100_000
#: Columns of that hover: (label, column of the hover table).
ATOM_HOVER = (("file", "source"), ("frame (file)", "frame"), ("atom", "atom"),
              ("species", "species"), ("dH (nats)", "dH_nats"))


def atom_hover(df: pd.DataFrame, frame: pd.DataFrame, x: str, y: str, mode: str) -> hv.Points:
    """Invisible markers at the atoms of ``df`` (plotted at ``frame``'s ``x``/``y``)
    whose hover names each atom: its file, its frame in the file (0-based), its index
    in the frame, its species and its dH in nats."""
    identity = {
        "source": df["source"].astype(str).to_numpy(),
        "frame": df["frame"].to_numpy(np.int64), "atom": df["atom"].to_numpy(np.int64),
        "species": df["species"].astype(str).to_numpy(),
        "dH_nats": df["dH"].to_numpy(np.float64),
    }
    # the axes under the image's names (one set of axes); an identity column that is
    # also an axis is that axis
    table = pd.DataFrame({**identity, x: frame[x].to_numpy(np.float64),
                          y: frame[y].to_numpy(np.float64)})
    return hv.Points(table, [hv.Dimension(x, label=axis_text(x, mode)),
                             hv.Dimension(y, label=axis_text(y, mode))],
                     [c for _, c in ATOM_HOVER if c not in (x, y)]).opts(
        alpha=0.0, size=6, tools=["hover"], hover_tooltips=[
            (label_, f"@{{{column}}}" + ("{0.000}" if column == "dH_nats" else ""))
            for label_, column in ATOM_HOVER],
        nonselection_alpha=0.0, selection_alpha=0.0, muted_alpha=0.0,
        hooks=[_one_atom_hover])


def _one_atom_hover(plot, _element) -> None:
    """The hover of :func:`atom_hover` names one atom of those under the
    cursor (in a dense band hundreds share a pixel; a list of them covered the plot)."""
    hover = plot.handles.get("hover")
    if hover is not None:
        hover.limit = 1


def dh_clim(dh: np.ndarray, mode: str, limit: float | None = None) -> tuple[float, float]:
    """Colour limits in plotted coordinates: ``±limit`` nats when given, else symmetric
    around 0 at the 90th percentile of |dH| (at least 1 nat), so the known/novel boundary
    and the bulk are resolved and extreme atoms saturate (the axes show their size)."""
    if limit:
        m = float(dhscale.forward(float(limit), mode))
        return (-m, m)
    floor = float(dhscale.forward(1.0, mode))
    return symmetric_clim(dhscale.forward(dh, mode), quantile=0.9, floor=floor)


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
    colour_limit = param.Number(
        default=None, allow_None=True, bounds=(0, None),
        doc="Colour range ±limit (nats); empty: automatic, ±the 90th percentile of |dH| of "
            "the atoms shown (at least 1 nat). The range stays fixed while you zoom, so "
            "colours compare across zooms; type a limit to resolve a zoomed region.")
    bins = param.Integer(default=100, bounds=(10, 1000),
                         doc="Histogram bins (more where the bulk of the atoms would get fewer "
                             "than 20).")

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
        self.param.x_axis.objects = list(axes)
        self.param.y_axis.objects = list(axes)
        files = [ALL] + [f for f in pd.unique(res.frames["source"])]
        self.param.subset.objects = list(files)
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

    @param.depends("x_axis", "y_axis", "subset", "frame_only", "colour_limit", "state.results",
                   "state.selected_structure", "state.dh_scale")
    def plot(self):
        if self.results is None:
            return placeholder(EMPTY_TEXT)
        if self.x_axis == self.y_axis:
            return placeholder("Choose two different axes.")
        df = self.data()
        if len(df) == 0:
            return placeholder("No atoms in this selection.")
        mode = self.state.dh_scale
        clim = dh_clim(df["dH"].to_numpy(), mode, self.colour_limit)
        x, y = self.x_axis, self.y_axis
        frame = plot_frame(df, x, y, mode)
        named = len(df) <= HOVER_ATOMS  # the hover can name the atoms themselves
        shown = dh_image(
            frame, x, y, clim, mode,
            tools=["box_select"] if named else ["box_select", "hover"], hover=not named,
            responsive=True,
            min_height=420,
            title=f"Per-atom dH ({len(df):,} atoms)",
        )
        stream = hv.streams.BoundsXY(source=shown)
        stream.add_subscriber(self._on_box)
        if named:
            shown = shown * atom_hover(df, frame, x, y, mode)
        return plot_pane(shown, min_height=440, name="atoms-plot")

    def _on_box(self, bounds=None, **_):
        """A box selection (plotted coordinates) becomes ``box`` in table units."""
        if not bounds:
            self.box = None
            return
        x0, y0, x1, y1 = (float(b) for b in bounds)
        mode = self.state.dh_scale
        if dhscale.is_dh(self.x_axis):
            x0, x1 = (float(v) for v in dhscale.inverse([x0, x1], mode))
        if dhscale.is_dh(self.y_axis):
            y0, y1 = (float(v) for v in dhscale.inverse([y0, y1], mode))
        self.box = (x0, y0, x1, y1)

    @param.depends("threshold", "subset", "frame_only", "bins", "state.results",
                   "state.selected_structure", "state.dh_scale")
    def histogram(self):
        if self.results is None:
            return pn.Spacer()
        dh = self.data()["dH"].to_numpy()
        mode = self.state.dh_scale
        finite = finite_values(dh)  # every atom, extremes included, lands in a bin
        ends = [float(finite.min()), float(finite.max())] if len(finite) else []
        span = dhscale.data_range(np.array([*ends, float(self.threshold)]), mode, pad=0.0)
        xlabel = dhscale.axis_label("dH (nats)", mode)
        dim = hv.Dimension("dH", label=xlabel)
        edges, counts = dh_histogram(dh, self.bins, span, mode, bulk_bins=BULK_BINS)
        title = "dH histogram"
        hooks = [dhscale.axis_hook("x", mode, target=5)]
        common = {**ZOOM_OPTS, "responsive": True, "height": 250, "hooks": hooks,
                  "framewise": True, "xlabel": xlabel}
        hist = hv.Histogram((edges, counts), kdims=[dim],
                            vdims=[hv.Dimension("count", label="atoms per bin")]).opts(
            color="#888888", line_color=None, title=title,
            hover_tooltips=[("dH (nats)", "$x{custom}"), ("atoms in bin", "@count")],
            hover_formatters={"$x": nats_hover(mode, "")}, **common
        )
        xs, cdf = dh_cdf(dh, range_=span, mode=mode)
        curve = hv.Curve((xs, cdf), kdims=[dim],
                         vdims=[hv.Dimension("cdf", label="fraction below dH")]).opts(
            color="black", title="dH CDF", ylim=(0, 1.02),
            hover_tooltips=[("dH (nats)", "$x{custom}"), ("fraction below", "@cdf{0.000}")],
            hover_formatters={"$x": nats_hover(mode, "")}, **common
        )
        marks = (hv.VLine(0.0).opts(color="#3b4cc0", line_dash="dotted", line_width=1.5)
                 * hv.VLine(float(dhscale.forward(float(self.threshold), mode))).opts(
                     color="#b40426", line_dash="dashed", line_width=1.5))
        return pn.Column(
            plot_pane(hist * marks, name="atoms-hist"),
            plot_pane(curve * marks, name="atoms-cdf"),
            sizing_mode="stretch_width",
        )

    @param.depends("threshold", "box", "subset", "frame_only", "state.results",
                   "state.selected_atoms")
    def summary(self):
        if self.results is None:
            return pn.pane.Markdown("")
        shown = self.data()
        dh = shown["dH"].to_numpy()
        # the fraction of novel atoms is about the data tested against the reference: the
        # reference's own atoms (covered by themselves) are left out unless asked for
        own = (shown["role"] == "reference").to_numpy()
        whose = ""
        if own.any() and not own.all():
            dh = dh[~own]
            whose = f" outside the reference ({int(own.sum()):,} reference atoms left out)"
        elif own.all():
            whose = " of the reference's own atoms"
        frac = fraction_above(dh, 0.0)
        picked = self.state.selected_atoms
        n_picked = 0 if picked is None else len(picked)
        n_frames = 0
        if n_picked:
            n_frames = len(np.unique(self.results.atoms["structure"].to_numpy()[picked]))
        box = "" if self.box is None else " inside the box"
        extreme = int(np.sum(np.abs(finite_values(dh)) > EXTREME_DH))
        far = f", {extreme:,} with \\|dH\\| > {EXTREME_DH:g} nats" if extreme else ""
        return pn.pane.Markdown(
            f"**Fraction dH > 0: {frac:.3f}** ({int((dh > 0).sum()):,} of {len(dh):,} atoms"
            f"{whose}{far})  \n"
            f"Picked: **{n_picked:,} atoms** with dH > {self.threshold:g} nats{box}, "
            f"in {n_frames:,} frames",
            name="atoms-summary",
        )

    def _export(self):
        from ..exporting import export_atoms

        return export_atoms(self.results, self.state.selected_atoms)

    def panel(self) -> pn.viewable.Viewable:
        controls = control_box(
            self, ["x_axis", "y_axis", "subset", "frame_only", "threshold", "colour_limit"],
            {"threshold": {"type": pn.widgets.FloatInput, "name": "dH threshold (nats)"},
             "colour_limit": {"type": pn.widgets.FloatInput, "name": "Colour limit (nats)"}},
        )
        controls.append(dh_scale_widget(self.state))
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
