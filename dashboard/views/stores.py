"""Stores view: per-atom dH of runs larger than memory, read from a chunk store.

Pick a store under the data directory (made with ``quests-dashboard dh ...
--store DIR``). The summary and the per-frame curves come from the store's
small per-frame table; the per-atom raster is aggregated by Datashader from
the Parquet parts through Dask in a background thread, so 100 million atoms
render without any process holding them all and without blocking other
sessions. Zooming re-aggregates the visible range at full resolution.
"""

from __future__ import annotations

import functools
import logging
import time

import holoviews as hv
import numpy as np
import panel as pn
import param

from quests_core.errors import QuestsError

from .. import dhscale
from ..compute import store_path
from ..jobs import ComputeJob
from ..stores import (
    BackgroundRaster,
    RasterRequest,
    StoreData,
    find_stores,
    open_store,
    rasterize_store,
)
from ..tasks import StoreRequest, run_store
from ..theme import DH_CMAP, label, symmetric_clim
from .atoms import axis_text, dh_hooks, hover_tooltips
from .base import ZOOM_OPTS, View, control_box, dh_scale_widget, placeholder, plot_pane
from .job_panel import JobPanel, Outcome

log = logging.getLogger("dashboard")

NONE = "(none)"
HINT = (
    "No chunk store under the data directory yet. Write one with **New store** above, or "
    "from the command line, e.g.  \n"
    "`quests-dashboard dh sample_data/cu_quench.extxyz -r sample_data/cu_solid_400K.extxyz "
    "--store sample_data/quench_store`  \nthen press **Rescan**."
)
#: Per-frame curves drawn when the store has them.
FRAME_CURVES = ("mean_dH", "max_dH", "frac_novel")


def image_element(agg, x: str, y: str, clim: tuple[float, float] | None = None,
                  scale: str = "linear") -> hv.Image:
    """An ``hv.Image`` of a mean-dH aggregate (on ``scale``), coloured on the diverging dH
    map, with dH-like axes and the colour bar labelled in nats."""
    if clim is None:
        values = np.asarray(agg.values)
        clim = symmetric_clim(values[np.isfinite(values)])
    xl, yl = axis_text(x, scale), axis_text(y, scale)
    image = hv.Image(agg.rename("mean_dH"),
                     kdims=[hv.Dimension(x, label=xl), hv.Dimension(y, label=yl)],
                     vdims=[hv.Dimension("mean_dH", label="mean dH (nats)")])
    tips, formatters = hover_tooltips(x, y, scale)
    return image.opts(cmap=DH_CMAP, clim=clim, colorbar=True,
                      clabel=dhscale.axis_label("mean dH (nats)", scale),
                      colorbar_opts=dhscale.colorbar_opts(scale), xlabel=xl, ylabel=yl,
                      hooks=dh_hooks(x, y, scale), hover_tooltips=tips,
                      hover_formatters=formatters)


class StoreView(View):
    """Chunk-store explorer: summary, per-frame curves, per-atom dH raster through Dask."""

    title = "Stores"

    store = param.Selector(default=NONE, objects=[NONE], doc="Chunk store to open.")
    x_axis = param.Selector(default="structure", objects=["structure"], doc="Horizontal axis.")
    y_axis = param.Selector(default="dH", objects=["dH"], doc="Vertical axis.")
    colour_limit = param.Number(default=None, allow_None=True, bounds=(0, None),
                                doc="Colour range ±limit (nats); empty: from the first raster.")
    clip_outliers = param.Boolean(
        default=False, doc="Start from the 0.5-99.5 % range of dH instead of the whole range "
        "(on the linear dH scale the exploding atoms of a failed run squash the view; the "
        "asinh scale shows them all).")
    data = param.ClassSelector(class_=StoreData, allow_None=True, doc="The opened store.")
    busy = param.Boolean(default=False, doc="A raster is being aggregated.")
    rasters = param.Integer(default=0, doc="Rasters shown so far.")
    home = param.Parameter(default=None, doc="(x_range, y_range) the plot starts from.")
    status = param.String(default="", doc="What the last raster showed and how long it took.")
    # -- a new store from the sidebar's files
    new_store = param.String(default="dH_store", doc="Name of the store to write (under "
                             "stores/ in the data directory); an existing one is resumed.")
    chunk_frames = param.Integer(default=16, bounds=(1, 10_000), doc="Frames per chunk.")
    job_mode = param.Selector(default="process", objects=["process", "thread"],
                              doc="Run the store's job in a worker process or a thread.")

    def __init__(self, **params):
        super().__init__(**params)
        self._pipe = hv.streams.Pipe(data=None)
        self._ranges = hv.streams.RangeXY()
        self._ranges.add_subscriber(self._on_ranges)
        self._clim: tuple[float, float] | None = None
        self._last: RasterRequest | None = None
        self._doc = None
        self._raster = BackgroundRaster(self._compute, self._deliver)
        self.jobs = JobPanel(  # writing a store: Write store, Cancel, progress, status
            run_store, state=self.state, title="Stores", on_run=self.write_store,
            on_done=self._store_written, on_cancelled=self._store_cancelled,
            run_label="Write store", run_width=130, show_percent=False,
            status_name="store-job-status", busy_text="a store is already being written.")
        self.param.watch(self._open, "store")
        self.param.watch(self._on_axes, ["x_axis", "y_axis", "clip_outliers"])
        self.state.param.watch(self._on_axes, "dh_scale")
        self.rescan()

    # ---------------------------------------------------------------- stores

    def rescan(self, *_) -> None:
        """List the stores under the data directory again (and reopen the current one)."""
        try:
            names = find_stores(self.state.data_dir) if self.state.data_dir else []
        except QuestsError as exc:
            self.state.notify("error", str(exc))
            names = []
        self.param.store.objects = [NONE] + names
        if self.store not in names:
            self.store = NONE
        elif self.store != NONE:
            self._open()

    def _open(self, *_) -> None:
        if self.store == NONE:
            self.data = None
            return
        try:
            data = open_store(self.state.data_dir, self.store)
            x = self.x_axis if self.x_axis in data.axes else (
                "structure" if "structure" in data.axes else data.axes[0])
            y = self.y_axis if self.y_axis in data.axes else "dH"
            request = self._home_request(data, x, y)
        except QuestsError as exc:
            self.state.notify("error", str(exc))
            return
        self.param.x_axis.objects = list(data.axes)
        self.param.y_axis.objects = list(data.axes)
        self._clim = None
        self._last = None  # a reopened store (Rescan) is aggregated afresh
        # one redraw, already on the home ranges (the axis watchers then find nothing to do)
        with param.parameterized.batch_call_watchers(self):
            self.x_axis, self.y_axis = x, y
            self.home = (request.x_range, request.y_range)
            self.data = data
        self._submit(request)

    # --------------------------------------------------------------- raster

    def _home_request(self, data: StoreData, x: str, y: str) -> RasterRequest | None:
        """The whole extent of axes x, y (dH without its 0.5 % tails with clip_outliers)."""
        if x == y:
            return None

        scale = self.state.dh_scale

        def extent(column: str) -> tuple[float, float]:
            if self.clip_outliers and column == "dH":
                lo, hi = data.robust_extent(column)
            else:
                lo, hi = data.extent(column)
            if dhscale.is_dh(column):
                lo, hi = (float(v) for v in dhscale.forward(np.array([lo, hi]), scale))
            return lo, hi

        return RasterRequest(x, y, extent(x), extent(y), scale=scale)

    def request_full(self, redraw: bool = False) -> None:
        """Aggregate the home ranges of the current axes (in the background).

        ``redraw`` draws the plot afresh even when the home ranges did not change
        ("Reset view" after a zoom).
        """
        if self.data is None:
            return
        try:
            request = self._home_request(self.data, self.x_axis, self.y_axis)
        except QuestsError as exc:
            self.state.notify("error", str(exc))
            return
        if request is None:
            return
        home = (request.x_range, request.y_range)
        if self.home != home:
            self.home = home  # redraws the plot on these ranges
        elif redraw:
            self.param.trigger("home")
        self._submit(request)

    def _on_axes(self, *_) -> None:
        self._clim = None
        self.request_full()

    def _on_ranges(self, x_range=None, y_range=None, **_) -> None:
        """A zoom or pan: aggregate the visible range at full resolution."""
        if self.data is None or x_range is None or y_range is None:
            return
        if any(v is None or not np.isfinite(v) for v in (*x_range, *y_range)):
            return
        if x_range[1] <= x_range[0] or y_range[1] <= y_range[0]:
            return
        self._submit(RasterRequest(self.x_axis, self.y_axis, tuple(map(float, x_range)),
                                   tuple(map(float, y_range)), scale=self.state.dh_scale))

    def _submit(self, request: RasterRequest) -> None:
        if _same_view(self._last, request):
            return  # e.g. the range event of a freshly drawn plot: nothing new to aggregate
        self._last = request
        if self._doc is None:
            self._doc = pn.state.curdoc
        self.busy = True
        self._raster.submit(request)

    def _compute(self, request: RasterRequest):
        data = self.data
        start = time.perf_counter()
        columns = list(dict.fromkeys([request.x, request.y, "dH"]))
        agg = rasterize_store(data.atoms_dask(columns), request)
        return data, agg, time.perf_counter() - start

    def _deliver(self, request: RasterRequest, result) -> None:
        """From the worker thread: hand the raster to the session's event loop."""
        doc = self._doc
        show = functools.partial(self._show, request, result)
        if doc is not None and getattr(doc, "session_context", None) is not None:
            doc.add_next_tick_callback(show)
        else:
            show()

    def _show(self, request: RasterRequest, result) -> None:
        self.busy = request is not self._last  # a newer view was asked for meanwhile
        if isinstance(result, Exception):
            self.state.notify("error", f"{self.store}: cannot aggregate the atoms ({result})")
            log.warning("store raster failed", exc_info=result)
            return
        data, agg, seconds = result
        if data is not self.data or (request.x, request.y, request.scale) != (
                self.x_axis, self.y_axis, self.state.dh_scale):
            return  # the user moved on to another store, other axes or another dH scale
        if self._clim is None:
            values = np.asarray(agg.values)
            self._clim = symmetric_clim(values[np.isfinite(values)])
        self._pipe.send(agg)
        self.rasters += 1
        x0, x1 = _in_units(request.x, _clean(request.x_range), request.scale)
        y0, y1 = _in_units(request.y, _clean(request.y_range), request.scale)
        self.status = (f"Raster {self.rasters}: {label(request.x)} {x0:.4g} to {x1:.4g}, "
                       f"{label(request.y)} {y0:.4g} to {y1:.4g}; {data.n_atoms:,} atoms "
                       f"aggregated in {seconds:.2f} s")

    def wait(self, timeout: float = 60.0) -> bool:
        """Wait for the background raster (tests and notebooks); True when idle."""
        return self._raster.wait(timeout)

    def _element(self, data=None):
        x, y = self.x_axis, self.y_axis
        clim = (-float(self.colour_limit), float(self.colour_limit)) if self.colour_limit \
            else (self._clim or (-1.0, 1.0))
        scale = self.state.dh_scale
        if data is None or data.dims != (y, x):
            return image_element(_empty(x, y, self.home), x, y, clim, scale)
        return image_element(data, x, y, clim, scale)

    # ----------------------------------------------------------------- views

    @param.depends("data", "x_axis", "y_axis", "colour_limit", "home", "state.dh_scale")
    def plot(self):
        if self.data is None:
            return placeholder(HINT if len(self.param.store.objects) == 1 else
                               "Pick a store above.")
        if self.x_axis == self.y_axis:
            return placeholder("Choose two different axes.")
        dmap = hv.DynamicMap(self._element, streams=[self._pipe]).opts(
            responsive=True, min_height=420,
            title=f"Per-atom dH, {self.data.n_atoms:,} atoms (mean dH per pixel, via Dask)",
            **ZOOM_OPTS,
        )
        self._ranges.source = dmap
        return plot_pane(dmap, min_height=440, name="store-plot", css_classes=["store-plot"])

    @param.depends("busy", "status")
    def activity(self):
        text = "Aggregating the atoms in the background…" if self.busy else self.status
        return pn.Row(
            pn.indicators.LoadingSpinner(value=self.busy, size=24, visible=self.busy),
            pn.pane.Markdown(text, name="store-status"),
            sizing_mode="stretch_width",
        )

    @param.depends("data")
    def summary(self):
        data = self.data
        if data is None:
            return pn.pane.Markdown("", name="store-summary")
        i = data.info
        lines = [f"**{data.name}** ({i.get('kind')}): {data.n_atoms:,} atoms"
                 + (f" in {i['frames']:,} frames" if i.get("frames") else "")
                 + f", {i.get('chunks', 0)} of {i.get('planned', 0)} chunks finished"
                 + ("" if i.get("complete") else " (run not complete: Rescan to see more)")]
        if i.get("h") is not None:
            lines.append(f"k = {i['k']}, cutoff {i['cutoff']} Å, h = {i['h']} Å⁻¹, "
                         f"{i['precision']}, {i['reference']:,} reference environments; "
                         f"files: {', '.join(i['files'])}")
        if "mean_dH" in i:
            lines.append(f"mean dH **{i['mean_dH']:.3f}** nats, fraction dH > 0 "
                         f"**{i['frac_novel']:.3f}**, max dH {i['max_dH']:.3g} nats")
        return pn.pane.Markdown("  \n".join(lines), name="store-summary")

    @param.depends("data", "state.dh_scale")
    def timeline(self):
        data = self.data
        if data is None or data.frames.empty:
            return pn.Spacer(height=0)
        frames = data.frames
        xcol = "time" if frames["time"].notna().all() and frames["time"].is_monotonic_increasing \
            and frames["time"].nunique() == len(frames) else "structure"
        scale = self.state.dh_scale
        panes = []
        for column in (c for c in FRAME_CURVES if c in frames):
            values = frames[column].to_numpy(np.float64)
            text = axis_text(column, scale)
            plotted = dhscale.forward(values, scale) if dhscale.is_dh(column) else values
            data = frames[[xcol]].assign(plotted=plotted, value=values)
            curve = hv.Curve(data, kdims=[hv.Dimension(xcol, label=label(xcol))],
                             vdims=[hv.Dimension("plotted", label=text), "value"])
            curve = curve.opts(responsive=True, height=220, color="black",
                               title=f"{label(column)} per frame", ylabel=text,
                               hooks=dh_hooks("", column, scale), framewise=True,
                               hover_tooltips=[(label(xcol), f"@{{{xcol}}}"),
                                               (label(column), "@value{0.000}")], **ZOOM_OPTS)
            # one pane each: the three curves are different quantities
            panes.append(plot_pane(curve, height=230))
        return pn.Row(*panes, sizing_mode="stretch_width", name="store-frames")

    # ----------------------------------------------------------- new store

    def make_job(self) -> ComputeJob | None:
        """A job writing the store :attr:`new_store` from the sidebar's files (reference
        against test/trajectory) with the sidebar's settings (precision included), or
        None with a notification when the inputs are bad."""
        if self.jobs.busy():
            return None
        try:
            path = store_path(self.state.data_dir, self.new_store.strip())
            files = [f for f in self.state.files
                     if f.role in ("reference", "test", "trajectory")]
            if not any(f.role == "reference" for f in files) or len(files) < 2:
                raise QuestsError("add reference and test (or trajectory) files in the sidebar "
                                  "first")
            settings = self.state.settings.frozen()
        except QuestsError as exc:
            self.jobs.refuse(exc)
            return None
        request = StoreRequest(settings=settings, store_path=str(path),
                               chunk_frames=int(self.chunk_frames),
                               precision=settings.core.precision)
        return self.jobs.start(files, request, mode=self.job_mode)

    async def write_store(self, _event=None) -> ComputeJob | None:
        """Write (or resume) the store off the event loop; then list and open it."""
        return await self.jobs.drive(self.make_job())

    def write_store_sync(self, timeout: float = 600.0) -> ComputeJob | None:
        """:meth:`write_store` in the calling thread (scripts and tests)."""
        return self.jobs.drive_sync(self.make_job(), timeout)

    def cancel_store(self, *_) -> None:
        """Stop after the current chunk (the finished chunks stay in the store)."""
        self.jobs.cancel("Cancelling after the current chunk")

    def _store_written(self, _result) -> Outcome:
        name = f"stores/{self.new_store.strip()}"
        self.rescan()
        if name in self.param.store.objects:
            self.store = name
        return Outcome(f"Done: {name}", f"Stores: {name} is written")

    def _store_cancelled(self) -> Outcome:
        name = f"stores/{self.new_store.strip()}"
        self.rescan()
        return Outcome(f"Cancelled: the finished chunks are kept in {name}; Write resumes",
                       f"Stores: {name} cancelled, finished chunks kept")

    def _new_store_panel(self) -> pn.viewable.Viewable:
        controls = pn.Param(self.param, parameters=["new_store", "chunk_frames"],
                            widgets={"chunk_frames": pn.widgets.IntInput},
                            show_name=False, default_layout=pn.Row,
                            sizing_mode="stretch_width")
        return pn.Card(
            pn.pane.Markdown(
                "dH of the sidebar's **test** and **trajectory** files against its "
                "**reference** files (k, cutoff, bandwidth and precision from the sidebar), "
                "chunk by chunk, into `stores/<name>` in the data directory. Writing an "
                "existing store resumes it."),
            controls,
            self.jobs,
            title="New store from the files in the sidebar", collapsed=True,
            sizing_mode="stretch_width",
        )

    def _frames_csv(self):
        import io

        if self.data is None or self.data.frames.empty:
            raise QuestsError("no per-frame table: open a chunk store first")
        return io.BytesIO(self.data.frames.to_csv(index=False).encode())

    def panel(self) -> pn.viewable.Viewable:
        controls = control_box(
            self, ["store", "x_axis", "y_axis", "colour_limit", "clip_outliers"],
            {"colour_limit": {"type": pn.widgets.FloatInput, "name": "Colour limit (nats)"}},
            width=200)
        controls.append(dh_scale_widget(self.state))
        rescan = pn.widgets.Button(label="Rescan", color="light", width=100)
        rescan.on_click(self.rescan)
        full = pn.widgets.Button(label="Reset view", color="light", width=120)
        full.on_click(lambda _: self.request_full(redraw=True))
        download = pn.widgets.FileDownload(
            callback=lambda: self.safe_download(self._frames_csv), filename="store_frames.csv",
            label="Per-frame table (CSV)", color="primary", width=200,
        )
        return pn.Column(
            self._new_store_panel(),
            controls,
            pn.Row(rescan, full, download, self.activity, sizing_mode="stretch_width"),
            self.summary,
            self.plot,
            self.timeline,
            sizing_mode="stretch_width",
            name="Stores",
        )


def _clean(bounds: tuple[float, float]) -> tuple[float, float]:
    """Range ends with Bokeh's rounding noise (4e-14 for 0) snapped to 0."""
    span = abs(bounds[1] - bounds[0])
    return tuple(0.0 if abs(v) < 1e-9 * span else v for v in bounds)


def _in_units(column: str, bounds: tuple[float, float], scale: str) -> tuple[float, float]:
    """Range ends of an axis in the column's units (nats for dH-like axes on any scale)."""
    if not dhscale.is_dh(column):
        return bounds
    lo, hi = dhscale.inverse(np.array(bounds, dtype=np.float64), scale)
    return float(lo), float(hi)


def _same_view(a: RasterRequest | None, b: RasterRequest, tol: float = 1e-6) -> bool:
    """Same axes, scale and ranges equal to ``tol`` of their span (Bokeh echoes ranges with
    rounding noise)."""
    if a is None or (a.x, a.y, a.scale) != (b.x, b.y, b.scale):
        return False
    for ra, rb in ((a.x_range, b.x_range), (a.y_range, b.y_range)):
        span = max(ra[1] - ra[0], rb[1] - rb[0])
        if abs(ra[0] - rb[0]) > tol * span or abs(ra[1] - rb[1]) > tol * span:
            return False
    return True


def _empty(x: str, y: str, home):
    """An all-NaN 2 x 2 aggregate whose pixel edges are the home ranges: it stands in
    until the first raster arrives and sets the plot's initial axis ranges."""
    import xarray as xr

    (x0, x1), (y0, y1) = home or ((0.0, 1.0), (0.0, 1.0))
    xs = np.array([x0 + 0.25 * (x1 - x0), x0 + 0.75 * (x1 - x0)])
    ys = np.array([y0 + 0.25 * (y1 - y0), y0 + 0.75 * (y1 - y0)])
    return xr.DataArray(np.full((2, 2), np.nan), coords={y: ys, x: xs}, dims=(y, x))

