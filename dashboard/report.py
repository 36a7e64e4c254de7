"""Reports to share: one self-contained HTML file of a computation, and figures for papers.

:func:`build_report` takes the dashboard's :class:`~dashboard.state.Results` (what
:func:`dashboard.pipeline.run_pipeline` returns, for the CLI's ``quests-dashboard
report`` and for the Data tab's "Save report" alike) and returns a :class:`Report`:
the HTML (every script and style inline: Bokeh's ``INLINE`` resources, no request to
any host, so it opens offline from a ``file://`` URL), the HoloViews objects of its
plots (:meth:`Report.save_figures` writes them as PNG and SVG through HoloViews'
Matplotlib backend, at a chosen size and DPI) and its numbers (also embedded in the
page as JSON, ``<script type="application/json" id="quests-report-data">``).

The plots are the dashboard's own: the Trajectory tab's curves and jump rule
(:class:`~dashboard.views.trajectory.TrajectoryView`, ``flag_frames``), the Learning
and Overlap tabs' plots and gap table, the Atoms tab's dH histogram and CDF
(``dh_histogram``, ``dh_cdf``) and the Structure tab's slab
(:class:`~dashboard.views.structure.StructureView`), all on the dH scale of
:mod:`dashboard.dhscale` and with the colour maps of :mod:`dashboard.theme`. Two are
the report's own: the 3D view (the dashboard's is Plotly, served by the server; here
a Bokeh projection turned with two sliders) and the per-atom dH plot (the dashboard
re-aggregates with Datashader on every zoom; a file cannot, see the limits below).

Sections, each only where the results allow it: header (inputs with their SHA-256,
settings, version, time); per file H, D and environments (as ``quests-dashboard
entropy``); learning curves with asymptote and gap; overlap matrix; per trajectory the
per-frame H, mean dH and fraction dH > 0 with the jump frames and the first jump frame
coloured by dH (slab and 3D); per-atom dH (histogram, CDF, scatter or image); with a
solid reference, nucleation (the Nucleation tab's plots, ``Results.nucleations``); on
request, compression, active learning and uncertainty (:func:`compression_section`,
:func:`active_learning_section`, :func:`uncertainty_section`: the numbers of
``quests-dashboard compress``, ``active-learning`` and ``uq``, the plots of their
tabs). :func:`share_task` is the Data tab's "Build": the report, a ZIP of every
figure of a session's results, or of the plots one tab shows, exported by
:func:`save_figure`, as a job with progress.

Limits (they keep a report of any run at a few MB; also in the report's footer):

- per-atom dH: up to :data:`POINTS_MAX` atoms as points (each with a hover);
  above, Datashader images of the mean dH per pixel at two resolutions,
  :data:`IMAGE_LOW` (with a hover, shown zoomed out) and :data:`IMAGE_HIGH` (a PNG,
  shown when zoomed in), so the size no longer grows with the atoms;
- the histogram and CDF use every atom (the numbers are exact);
- the 3D view draws frames up to :data:`MAX_3D_ATOMS` atoms, the slab up to
  :data:`~dashboard.views.structure.MAX_MARKER_ATOMS` atoms as markers (more: an image);
- per-file H is exact up to :func:`quests_core.sampling.exact_max_atoms` environments
  (40,000), else sampled with its standard error; D (n^2 pairs, no sampled form) only
  up to that size;
- at most :data:`MAX_FILE_SECTIONS` files get a per-atom section, at most
  :data:`MAX_FILE_SECTIONS` trajectories a trajectory section.

Memory: the per-atom table of the results (held anyway) plus one file's descriptors
at a time for H and D.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import html
import io
import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import holoviews as hv
import numpy as np
import pandas as pd

from . import dhscale
from .state import AppState, Results, RunSettings
from .theme import DH_CMAP

#: Per-atom dH drawn as points up to this many atoms; above, as Datashader images.
POINTS_MAX = 200_000
#: Pixels (width, height) of the two Datashader images of more atoms than that.
IMAGE_LOW = (480, 300)
IMAGE_HIGH = (1600, 1000)
#: Largest frame drawn in the report's 3D view.
MAX_3D_ATOMS = 20_000
#: Most files that get a per-atom section, and most trajectories a trajectory section.
MAX_FILE_SECTIONS = 4
#: Default size (inches) and resolution of a saved figure.
FIGURE_SIZE = (6.0, 4.0)
FIGURE_DPI = 300
#: Sides (inches) and resolutions (DPI) a figure may take (the Data tab's inputs and
#: :func:`check_figure_options`).
FIGURE_SIDES = (0.5, 50.0)
FIGURE_DPIS = (50, 1200)
#: Default height (inches) of each of stacked panels in a saved figure.
PANEL_HEIGHT = 2.2
#: Formats of :meth:`Report.save_figures`.
FIGURE_FORMATS = ("png", "svg")
#: Roles whose atoms are tested against the reference (the per-atom sections).
TESTED_ROLES = ("trajectory", "test")

ProgressFn = Callable[[float, str], None]

_CSS = """
:host { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; font-size: 14px; }
table { border-collapse: collapse; margin: 4px 0 10px 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f3f7; }
td.text, th.text { text-align: left; }
h1 { font-size: 22px; margin: 6px 0; } h2 { font-size: 18px; margin: 14px 0 4px 0;
  border-bottom: 2px solid #0072B5; } h3 { font-size: 15px; margin: 8px 0 2px 0; }
p, li { max-width: 1100px; } code { background: #f4f4f4; padding: 0 3px; }
.note { color: #555; }
"""


@dataclasses.dataclass
class Report:
    """A built report: its HTML, the HoloViews objects of its plots and its numbers.

    Attributes
    ----------
    html : str
        The self-contained page.
    figures : dict
        Name -> HoloViews object of every plot (for :meth:`save_figures`).
    data : dict
        The numbers of the report (JSON-able; also embedded in the page).
    """

    html: str
    figures: dict[str, Any]
    data: dict[str, Any]
    dh_mode: str = "asinh"

    @property
    def size(self) -> int:
        """Bytes of the page (UTF-8)."""
        return len(self.html.encode("utf-8"))

    def write(self, path: str | Path) -> Path:
        """Write the page (atomically: a reader never sees half a report)."""
        from quests_core.atomic import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_bytes(self.html.encode("utf-8"))
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # an ordinary file to share, not a private temp
        return path

    def save_figures(self, directory: str | Path, formats: Sequence[str] = FIGURE_FORMATS,
                     size: tuple[float, float] | None = None, dpi: int = FIGURE_DPI,
                     names: Sequence[str] | None = None,
                     progress: ProgressFn | None = None) -> list[Path]:
        """Every plot (or those in ``names``) as ``<directory>/<name>.<format>``.

        ``size`` (inches) applies to every figure; by default :data:`FIGURE_SIZE`, and
        for stacked panels (the trajectory's three curves) :func:`default_size`.
        ``progress(fraction, text)`` is called before each figure."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        out = []
        chosen = [(n, o) for n, o in self.figures.items() if names is None or n in names]
        todo = len(chosen) * len(formats)
        for name, obj in chosen:
            for fmt in formats:
                if progress is not None:
                    progress(len(out) / max(todo, 1), f"figure {name}.{fmt}")
                out.append(save_figure(obj, directory / f"{name}.{fmt}",
                                       size=size or default_size(obj), dpi=dpi,
                                       mode=self.dh_mode))
        return out


# ----------------------------------------------------------------------------
# figures for papers
# ----------------------------------------------------------------------------


def figures_zip(report: Report, formats: Sequence[str] = ("png",),
                size: tuple[float, float] | None = None, dpi: int = FIGURE_DPI,
                progress: ProgressFn | None = None) -> bytes:
    """Every figure of ``report`` as one ZIP archive (``<name>.<format>`` at its root),
    written by :meth:`Report.save_figures` (:func:`save_figure`: HoloViews' Matplotlib
    backend, ``size`` inches at ``dpi``); the Data tab's "Save figures"."""
    import tempfile
    import zipfile

    buf = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="quests-figures-") as tmp:
        paths = report.save_figures(tmp, formats=formats, size=size, dpi=dpi,
                                    progress=progress)
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in paths:
                zf.write(path, arcname=path.name)
    return buf.getvalue()


@dataclasses.dataclass(frozen=True)
class ShareRequest:
    """What the Data tab's "Build" makes, in a job (:func:`share_task`): the report or
    the figures of one session's results, as they were when Build was pressed.

    Attributes
    ----------
    what : {"report", "figures"}
        The self-contained HTML report, or a ZIP of every figure.
    results, settings, dh_mode, analyses
        The session's results, frozen settings, dH scale and analysis sections.
    formats, size, dpi
        The figures' formats, size (inches) and DPI (``what == "figures"``).
    """

    what: str
    results: Results
    settings: RunSettings | None
    dh_mode: str = "asinh"
    analyses: tuple = ()
    formats: tuple[str, ...] = ("png",)
    size: tuple[float, float] | None = None
    dpi: int = FIGURE_DPI
    figures: tuple[tuple[str, Any], ...] = ()
    tab: str = ""

    @property
    def filename(self) -> str:
        """The name the browser saves it as."""
        if self.what == "tab":
            return f"quests_{_slug(self.tab.lower())}_figures.zip"
        return "quests_report.html" if self.what == "report" else "quests_figures.zip"


#: What the Data tab can build, in words: the report, the report's figures, or the
#: plots one tab shows now (as zoomed, with the tab's choices).
SHARE_KINDS = {"report": "HTML report", "figures": "report figures (.zip)",
               "tab": "a tab's figures (.zip)"}


def check_figure_options(size: tuple[float, float], dpi: int) -> None:
    """Refuse a figure size outside :data:`FIGURE_SIDES` inches a side or a DPI outside
    :data:`FIGURE_DPIS`."""
    from quests_core.errors import QuestsError

    (lo, hi), (dpi_lo, dpi_hi) = FIGURE_SIDES, FIGURE_DPIS
    if not all(side and lo <= side <= hi for side in size):
        raise QuestsError(f"figure size: each side {lo:g} to {hi:g} inches")
    if not dpi or not dpi_lo <= dpi <= dpi_hi:
        raise QuestsError(f"figure DPI: {dpi_lo} to {dpi_hi}")


def share_request(state: AppState, what: str, analyses: Sequence[Any] = (), *,
                  formats: Sequence[str] = ("png",), size: tuple[float, float] | None = None,
                  dpi: int = FIGURE_DPI, figures: Mapping[str, Any] | None = None,
                  tab: str = "") -> ShareRequest:
    """The :class:`ShareRequest` of a session now; raises QuestsError before Compute, for
    an unknown kind, bad figure options or a tab (``what="tab"``: ``figures`` are its
    plots, name -> HoloViews object) that shows no plot."""
    from quests_core.errors import QuestsError

    if what not in SHARE_KINDS:
        raise QuestsError(f"unknown kind {what!r}; use one of {list(SHARE_KINDS)}")
    if state.results is None and what != "tab":
        raise QuestsError("nothing computed yet: press Compute first")
    if what != "report":
        check_figure_options(size or FIGURE_SIZE, dpi)
    if what == "tab" and not figures:
        raise QuestsError(f"the {tab or 'chosen'} tab shows no plot yet: open it (and run "
                          "its analysis, or Compute) first")
    return ShareRequest(what=what, results=state.results, settings=state.settings.frozen(),
                        dh_mode=state.dh_scale, analyses=tuple(analyses),
                        formats=tuple(formats), size=size, dpi=int(dpi),
                        figures=tuple((figures or {}).items()), tab=tab)


def share_task(files, request: ShareRequest, report: ProgressFn, cancel, n_threads) -> bytes:
    """The job of the Data tab's "Build" (:class:`dashboard.jobs.ComputeJob` task): the
    report's page (UTF-8) or the figures' ZIP, with progress; stops at the next step
    once ``cancel`` is set. The report computes H and D per file (descriptors from the
    cache); the figures have no plot of those and skip them."""
    from quests_core.errors import Cancelled

    def progress(fraction: float, text: str) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")
        report(fraction, text)

    if request.what == "tab":  # the plots as the tab shows them: no report is built
        shown = Report(html="", figures=dict(request.figures), data={},
                       dh_mode=request.dh_mode)
        return figures_zip(shown, formats=request.formats, size=request.size,
                           dpi=request.dpi, progress=lambda f, t: progress(f, f"Figures: {t}"))
    if request.what == "report":
        page = build_report(request.results, request.settings, dh_mode=request.dh_mode,
                            analyses=request.analyses, n_threads=n_threads,
                            progress=lambda f, t: progress(0.95 * f, f"Report: {t}"))
        return page.html.encode("utf-8")
    built = build_report(request.results, request.settings, dh_mode=request.dh_mode,
                         analyses=request.analyses, entropy=False,
                         progress=lambda f, t: progress(0.2 * f, f"Figures: {t}"))
    return figures_zip(built, formats=request.formats, size=request.size, dpi=request.dpi,
                       progress=lambda f, t: progress(0.2 + 0.8 * f, f"Figures: {t}"))


def _mpl_dh_ticks(axis: str, mode: str):
    """A Matplotlib hook putting dH ticks in nats on a plotted (asinh) axis: the same
    ticks as the Bokeh axes (:func:`dashboard.dhscale.nice_ticks`)."""

    def hook(plot, element) -> None:
        if mode == "linear":
            return
        ax = plot.handles["axis"]
        lo, hi = ax.get_xlim() if axis == "x" else ax.get_ylim()
        ticks = dhscale.nice_ticks(min(lo, hi), max(lo, hi), mode, target=6)
        where = dhscale.forward(np.asarray(ticks, dtype=float), mode)
        texts = [dhscale.format_tick(t) for t in ticks]
        if axis == "x":
            ax.set_xticks(where, texts)
        else:
            ax.set_yticks(where, texts)

    return hook


def default_size(obj: Any) -> tuple[float, float]:
    """The default size (inches) of a figure: :data:`FIGURE_SIZE`, and for a layout of
    ``n`` stacked panels :data:`PANEL_HEIGHT` inches per panel (at least the default)."""
    if isinstance(obj, hv.Layout) and len(obj) > 1:
        return (FIGURE_SIZE[0], max(FIGURE_SIZE[1], PANEL_HEIGHT * len(obj)))
    return FIGURE_SIZE


def save_figure(obj: Any, path: str | Path, *, size: tuple[float, float] = FIGURE_SIZE,
                dpi: int = FIGURE_DPI, mode: str = "asinh") -> Path:
    """Save a HoloViews object as a PNG or SVG figure (format by ``path``'s extension).

    Drawn by HoloViews' Matplotlib backend at ``size`` inches and ``dpi`` dots per inch
    (recorded in the PNG's pHYs chunk; the file is ``size x dpi`` pixels); text stays
    text in an SVG (editable, searchable), axis labels carry their units and dH axes
    (``mode``'s scale) have their ticks in nats.

    Raises
    ------
    QuestsError
        For another extension, or when Matplotlib is missing.
    """
    from quests_core.errors import QuestsError

    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FIGURE_FORMATS:
        raise QuestsError(f"{path}: a figure is saved as {' or '.join(FIGURE_FORMATS)}")
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import holoviews.plotting.mpl  # noqa: F401 - registers the backend
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise QuestsError(f"saving figures needs Matplotlib ({exc.name} missing)") from None
    current = hv.Store.current_backend
    try:
        with matplotlib.rc_context({"svg.fonttype": "none", "font.size": 10,
                                    "axes.titlesize": 11, "axes.labelsize": 10}):
            paper = _mpl_opts(obj, size, mode)
            if isinstance(paper, hv.Layout):
                fig = _render_panels(paper, size, dpi, keep_aspect=_equal_aspect(obj))
            else:
                fig = hv.render(paper, backend="matplotlib")
                fig.set_size_inches(*size)
                fig.set_dpi(dpi)
                if not _equal_aspect(obj) and len(fig.axes) == 1:  # the axes fill the
                    fig.axes[0].set_aspect("auto")  # figure (a colorbar is placed by hand)
                _tight(fig)
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=dpi, format=fmt)
            plt.close(fig)
    finally:
        hv.Store.set_current_backend(current)
    return path


def _tight(fig) -> None:
    """Fit the axes, labels and ticks into the figure; colour bars (axes HoloViews adds
    beside the plot, which ``tight_layout`` neither sees nor moves) go back to the right
    of the plot, inside the figure (tight layout had moved the plot under them)."""
    main, bars = fig.axes[0], fig.axes[1:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "not compatible with tight_layout"
        fig.tight_layout(rect=(0, 0, 0.84, 1) if bars else None)
    if not bars:
        return
    main.apply_aspect()
    box = main.get_position()
    width = 0.025
    for i, bar in enumerate(bars):
        bar.set_position([box.x1 + 0.02 + i * (width + 0.1), box.y0, width, box.height])
    # what still sticks out (a label beside axes of fixed aspect): squeeze it back in
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if hasattr(fig.canvas, "get_renderer") else FigureCanvasAgg(fig)
    inches = fig.get_figwidth()
    for _ in range(4):  # a fixed aspect re-centres the plot: a few rounds settle it
        for ax in fig.axes:
            ax.apply_aspect()
        drawn = fig.get_tightbbox(canvas.get_renderer())
        left, right = max(0.0, -drawn.x0) / inches, max(0.0, drawn.x1 - inches) / inches
        if left < 1e-3 and right < 1e-3:
            break
        scale = 1.0 - left - right - 0.01
        for ax in fig.axes:
            p = ax.get_position()
            ax.set_position([left + 0.005 + p.x0 * scale, p.y0, p.width * scale, p.height])


def _equal_aspect(obj: Any) -> bool:
    """Whether a plot of ``obj`` needs equal x and y scales (a structure in Å)."""
    found = []

    def check(el):
        try:
            kw = hv.Store.lookup_options("bokeh", el, "plot").kwargs
        except Exception:  # noqa: BLE001
            kw = {}
        if kw.get("data_aspect") or kw.get("aspect") == "equal":
            found.append(el)
        return el

    obj.map(check, [hv.Element, hv.Overlay])
    return bool(found)


def _render_panels(layout: Any, size: tuple[float, float], dpi: int, keep_aspect: bool):
    """A Matplotlib figure of a layout's panels stacked one above the other at ``size``
    inches: each panel as wide as the figure, titles, labels and ticks inside it
    (constrained layout), and panels on one x axis (the trajectory's time) name it once,
    under the bottom panel. ``keep_aspect``: the axes keep their aspect (equal scales)."""
    import matplotlib.pyplot as plt

    panels = list(layout)
    fig, axes = plt.subplots(len(panels), 1, figsize=size, dpi=dpi, layout="constrained",
                             squeeze=False)
    axes = list(axes[:, 0])
    renderer = hv.renderer("matplotlib")
    for el, ax in zip(panels, axes, strict=True):
        plot = hv.Store.registry["matplotlib"][type(el)](el, fig=fig, axis=ax,
                                                          renderer=renderer)
        plot.initialize_plot()
        if not keep_aspect:
            ax.set_aspect("auto")
    labels = [ax.get_xlabel() for ax in axes]
    if len(axes) > 1 and labels[0] and len(set(labels)) == 1:
        for ax in axes[:-1]:
            ax.set_xlabel("")
    fig.get_layout_engine().set(h_pad=0.04, w_pad=0.04, hspace=0.02)
    return fig


#: Bokeh options a paper figure keeps (same name in Matplotlib), and renamed ones.
_SAME_OPTS = ("title", "xlabel", "ylabel", "logx", "logy", "xlim", "ylim", "invert_yaxis",
              "show_grid", "color", "alpha", "cmap", "clim", "colorbar", "clabel", "xrotation")
_RENAMED_OPTS = {"line_width": "linewidth"}
_DASHES = {"dashed": "--", "dotted": ":", "dashdot": "-."}
#: Bokeh marker -> Matplotlib marker (a jump frame is a triangle in both).
_MARKERS = {"circle": "o", "triangle": "^", "inverted_triangle": "v", "square": "s",
            "diamond": "D", "cross": "+", "x": "x", "star": "*", "dot": "."}


def _paper_element(el: Any, aspect: float, mode: str) -> Any:
    """One element with the Matplotlib options of its Bokeh look (colours, titles,
    limits, dashes), ``aspect`` and dH ticks in nats on its asinh axes."""
    if not isinstance(el, hv.Element):
        return el
    given = {}
    for group in ("plot", "style"):
        try:
            given.update(hv.Store.lookup_options("bokeh", el, group).kwargs)
        except Exception:  # noqa: BLE001 - an element without Bokeh options
            pass
    opts: dict[str, Any] = {k: given[k] for k in _SAME_OPTS if k in given}
    for key in ("xlim", "ylim"):  # factors (a categorical axis) are no Matplotlib limits
        if key in opts and any(isinstance(v, str) for v in opts[key] or ()):
            del opts[key]
    opts.update({new: given[old] for old, new in _RENAMED_OPTS.items() if old in given})
    if given.get("line_dash") in _DASHES:
        opts["linestyle"] = _DASHES[given["line_dash"]]
    if isinstance(opts.get("title"), str):
        opts["title"] = opts["title"].replace("\n", " ")
    if isinstance(el, hv.Points | hv.Scatter):
        if given.get("marker") in _MARKERS:
            opts["marker"] = _MARKERS[given["marker"]]
        if isinstance(given.get("size"), int | float):  # a diameter (px) -> an area (pt^2)
            opts["s"] = float(given["size"]) ** 2
    hooks = []
    dims = el.dimensions()
    if len(dims) >= 1 and "asinh" in dims[0].pprint_label:
        hooks.append(_mpl_dh_ticks("x", mode))
    if len(dims) >= 2 and "asinh" in dims[1].pprint_label:
        hooks.append(_mpl_dh_ticks("y", mode))
    if isinstance(el, (hv.Histogram, hv.Area)) and "color" in opts:  # a face, no edge
        opts["facecolor"] = opts.pop("color")
        opts["edgecolor"] = "none"
    if not isinstance(el, (hv.HLine, hv.VLine)):
        opts["aspect"] = aspect
    if hooks:
        opts["hooks"] = hooks
    out = el
    for key, value in opts.items():  # one by one: an option Matplotlib lacks is dropped
        try:
            out = out.opts(backend="matplotlib", **{key: value})
        except Exception:  # noqa: BLE001
            pass
    return out


def _mpl_opts(obj: Any, size: tuple[float, float], mode: str = "asinh") -> Any:
    """``obj`` with the Matplotlib options of a paper figure: the Bokeh look of every
    element, panels stacked to fill ``size`` (inches)."""
    panels = len(obj) if isinstance(obj, hv.Layout) else 1
    aspect = size[0] / (size[1] / panels) * (0.82 if panels == 1 else 0.6)
    out = obj.map(lambda el: _paper_element(el, aspect, mode), hv.Element)
    out = out.map(_paper_overlay, hv.Overlay)
    if isinstance(out, hv.Layout):
        out = out.cols(1).opts(hv.opts.Layout(backend="matplotlib", sublabel_format="",
                                              vspace=0.3), clone=False)
    return out


def _paper_overlay(ov: Any) -> Any:
    """An overlay with the Matplotlib options of its Bokeh look (title, axis labels with
    their units, log axes, limits: the views set them on the overlay). A heat map with
    its values as Labels becomes the heat map showing its values (Matplotlib draws no
    Labels on categorical axes)."""
    heat = [el for el in ov if isinstance(el, hv.HeatMap)]
    if heat and all(isinstance(el, hv.HeatMap | hv.Labels) for el in ov):
        return heat[0].opts(backend="matplotlib", show_values=True, clone=True)
    try:
        given = hv.Store.lookup_options("bokeh", ov, "plot").kwargs
    except Exception:  # noqa: BLE001
        return ov
    keep = ("title", "xlabel", "ylabel", "logx", "logy", "xlim", "ylim", "show_grid",
            "invert_yaxis")
    out = ov
    for key in keep:
        if key not in given:
            continue
        value = given[key]
        if key == "title" and isinstance(value, str):
            value = value.replace("\n", " ")
        try:
            out = out.opts(backend="matplotlib", **{key: value})
        except Exception:  # noqa: BLE001
            pass
    legend = given.get("legend_position")
    if isinstance(legend, str) and legend in ("bottom", "top", "right", "left"):
        # outside the axes in Bokeh: inside (best place) in a paper figure
        try:
            out = out.opts(backend="matplotlib", legend_position="best")
        except Exception:  # noqa: BLE001
            pass
    return out


# ----------------------------------------------------------------------------
# the report
# ----------------------------------------------------------------------------


def build_report(
    results: Results,
    settings: RunSettings | None = None,
    *,
    title: str = "QUESTS report",
    dh_mode: str = "asinh",
    z_threshold: float = 5.0,
    entropy: bool = True,
    exact_entropy: bool = False,
    progress: ProgressFn | None = None,
    n_threads: int | None = None,
    command: str = "",
    analyses: Sequence[Any] = (),
) -> Report:
    """The report of ``results``.

    Parameters
    ----------
    results : Results
        What :func:`dashboard.pipeline.run_pipeline` computed.
    settings : RunSettings, optional
        The settings it ran with (names the bandwidth rule in the header and gives
        each file's h for its H and D; ignored when they are not those of
        ``results``: other k, cutoff, species, precision or h).
    title : str
        Title of the page.
    dh_mode : str
        How dH is drawn (:data:`dashboard.dhscale.DH_SCALES`).
    z_threshold : float
        Robust z-score of the Trajectory tab's jump rule.
    entropy : bool
        Compute H and D of every file (reads the files again; descriptors from the cache).
    exact_entropy : bool
        Exact H of every file whatever its size.
    progress : callable, optional
        ``progress(fraction, text)``.
    command : str
        The command line that made the report (shown in the header), if any.
    analyses : sequence
        Analysis sections computed outside the pipeline (:func:`compression_section`,
        :func:`active_learning_section`), drawn after the pipeline's sections. The
        nucleation section comes from ``results.nucleations`` (a file with the role
        'solid reference').
    """
    import holoviews.plotting.bokeh  # noqa: F401 - registers the backend
    from bokeh.embed import file_html
    from bokeh.layouts import column
    from bokeh.resources import INLINE

    dhscale.check_mode(dh_mode)
    hv.Store.set_current_backend("bokeh")
    say = progress or (lambda fraction, text: None)
    settings = matching_settings(results, settings)
    builder = _Builder(results, settings, dh_mode, z_threshold)
    steps: list[tuple[str, Callable[[], None]]] = [("header", builder.header)]
    if entropy:
        steps.append(("H and D per file",
                      lambda: builder.files(exact_entropy, n_threads, say)))
    else:
        steps.append(("files", lambda: builder.files(None, n_threads, say)))
    steps += [("learning curves", builder.learning), ("overlap", builder.overlap)]
    for source in builder.trajectories()[:MAX_FILE_SECTIONS]:
        steps.append((f"trajectory {source}", lambda s=source: builder.trajectory(s)))
    for source in builder.tested()[:MAX_FILE_SECTIONS]:
        steps.append((f"per-atom dH of {source}", lambda s=source: builder.per_atom(s)))
    for source in list(results.nucleations)[:MAX_FILE_SECTIONS]:
        steps.append((f"nucleation in {source}", lambda s=source: builder.nucleation(s)))
    for section in analyses:
        steps.append((f"{section.kind} of {section.result.source}",
                      lambda a=section: getattr(builder, a.kind.replace(" ", "_"))(a)))
    steps.append(("footer", builder.footer))
    for i, (text, step) in enumerate(steps):
        say(i / (len(steps) + 1), text)
        builder.current = text
        step()
    say(len(steps) / (len(steps) + 1), "writing the page")
    builder.data["command"] = command
    layout = column(builder.models, sizing_mode="stretch_width",
                    styles={"max-width": "1400px", "margin": "0 auto", "padding": "0 12px"})
    page = strip_external(file_html(layout, resources=INLINE, title=title))
    end = page.rfind("</body>")  # the last one: the inline scripts hold the text too
    page = page[:end] + _data_script(builder.data) + "\n" + page[end:]
    say(1.0, "done")
    return Report(html=page, figures=builder.figures, data=builder.data, dh_mode=dh_mode)


def strip_external(page: str) -> str:
    """``page`` without scripts and stylesheets loaded from elsewhere.

    Bokeh lists the external files of every model class imported in the process;
    once Panel is imported that includes a module shim of Panel's ESM components
    (as a relative ``static/...`` URL), which no report uses and no browser could
    load from a file. Everything the report needs is inline.
    """
    import re

    page = re.sub(r'<script[^>]*\bsrc="(?!data:)[^"]*"[^>]*>\s*</script>\s*', "", page)
    return re.sub(r'<link[^>]*\bhref="(?!data:)[^"]*"[^>]*>\s*', "", page)


def matching_settings(results: Results, settings: RunSettings | None) -> RunSettings | None:
    """``settings`` when they are those ``results`` were computed with, else None (the
    Data tab's settings may have been changed after Compute)."""
    if settings is None:
        return None
    core = settings.core
    same = (core.k == results.k and float(core.cutoff) == float(results.cutoff)
            and (core.species or None) == (results.species or None)
            and core.precision == results.precision
            and (core.bandwidth_rule != "fixed" or float(core.bandwidth) == float(results.h)))
    return settings if same else None


def _data_script(data: dict) -> str:
    text = json.dumps(_jsonable(data), allow_nan=False).replace("</", "<\\/")
    return f'<script type="application/json" id="quests-report-data">{text}</script>'


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray, pd.Series)):
        return [_jsonable(v) for v in list(value)]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if np.isfinite(v) else None
    return value


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _num(value: Any, digits: int = 4) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return _esc(value)
    if not np.isfinite(v):
        return "–"
    if float(v).is_integer() and abs(v) < 1e15 and isinstance(value, (int, np.integer)):
        return f"{int(v):,}"
    return f"{v:.{digits}g}"


def html_table(table: pd.DataFrame, text_columns: Sequence[str] = (), digits: int = 4,
               name: str = "") -> str:
    """A small HTML table (numbers to ``digits`` significant digits, text escaped)."""
    head = "".join(f'<th class="{"text" if c in text_columns else ""}">{_esc(c)}</th>'
                   for c in table.columns)
    rows = []
    for _, row in table.iterrows():
        cells = []
        for c in table.columns:
            v = row[c]
            if c in text_columns or isinstance(v, str):
                cells.append(f'<td class="text">{_esc(v)}</td>')
            else:
                cells.append(f"<td>{_num(v, digits)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    attr = f' data-name="{_esc(name)}"' if name else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


class _Builder:
    """The sections of one report: Bokeh models in page order, figures and numbers."""

    def __init__(self, results: Results, settings: RunSettings | None, mode: str, z: float):
        self.res = results
        self.settings = settings
        self.mode = mode
        self.z = float(z)
        self.models: list[Any] = []
        self.figures: dict[str, Any] = {}
        self.data: dict[str, Any] = {}
        self.current = ""
        self.state = AppState()
        self.state.results = results
        self.state.dh_scale = mode

    # ------------------------------------------------------------- helpers

    def div(self, text: str, name: str = "") -> None:
        from bokeh.models import Div

        kw = {"name": name} if name else {}
        self.models.append(Div(text=text, sizing_mode="stretch_width", stylesheets=[_CSS],
                               **kw))

    def plot(self, obj: Any, name: str) -> None:
        """Render a HoloViews object into the page and keep it as figure ``name``."""
        model = hv.render(obj, backend="bokeh")
        model.name = f"report-{name}"
        for ref in model.references():  # the views' Python callbacks (taps) need a server
            ref._callbacks = {}
            ref._event_callbacks = {}
        self._wheel_zoom(model)
        self.models.append(model)
        self.figures[name] = obj

    @staticmethod
    def _wheel_zoom(model) -> None:
        """The page scrolls with the wheel; zoom is Ctrl + wheel (as in the dashboard)."""
        from .views.base import ctrl_wheel

        ctrl_wheel(model)

    def trajectories(self) -> list[str]:
        f = self.res.frames
        trajs = list(pd.unique(f.loc[f["role"] == "trajectory", "source"]))
        counts = f.groupby("source", sort=False).size()
        return [s for s in trajs if counts.get(s, 0) >= 2]

    def tested(self) -> list[str]:
        f = self.res.frames
        return list(pd.unique(f.loc[f["role"].isin(TESTED_ROLES), "source"]))

    # ------------------------------------------------------------- sections

    def header(self) -> None:
        from quests_core import __version__
        from quests_core.cache_keys import file_digest

        res = self.res
        f = res.frames
        when = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        rows = []
        for spec in res.files:
            sub = f.loc[f["source"] == spec.name]
            try:
                digest = file_digest(spec.path)
            except Exception:  # noqa: BLE001 - a file gone since Compute: say so, no digest
                digest = "(file not readable now)"
            rows.append({"file": spec.name, "role": spec.role, "frames selected": spec.index,
                         "frames": int(len(sub)), "atoms": int(sub["n_atoms"].sum()),
                         "SHA-256": digest})
        inputs = pd.DataFrame(rows)
        self.data["inputs"] = rows
        h_text, rule = self._bandwidth_text()
        settings = {"k": res.k, "cutoff (Å)": res.cutoff, "h (1/Å)": res.h,
                    "bandwidth rule": rule,
                    "species": ",".join(res.species) if res.species else "one block (all)",
                    "precision": res.precision}
        self.data["settings"] = settings
        self.data["version"] = __version__
        self.data["created"] = when
        notes = "".join(f"<li>{_esc(w)}</li>" for w in res.warnings)
        self.div(
            f"<h1>QUESTS report</h1><p>quests-dashboard {_esc(__version__)}, made "
            f"{_esc(when)}. dH is in nats (natural logarithm); dH &gt; 0 marks an "
            "environment the reference does not cover (novel).</p>"
            "<h2>Inputs</h2>" + html_table(inputs, ["file", "role", "frames selected",
                                                    "SHA-256"], name="inputs")
            + f"<p><b>Reference:</b> {_esc(res.reference)}<br>"
            f"<b>Settings:</b> k = {res.k}, cutoff = {res.cutoff:g} Å, {h_text}, species: "
            f"{_esc(settings['species'])}, precision {res.precision}</p>"
            + (f"<p><b>Notes</b></p><ul>{notes}</ul>" if notes else ""),
            name="report-header")

    def _bandwidth_text(self) -> tuple[str, str]:
        h = self.res.h
        if self.settings is None:
            return f"h = {h:.4g} 1/Å", "not recorded"
        if self.settings.core.bandwidth_rule == "volume":
            return (f"h = {h:.4g} 1/Å from the volume rule (atom-weighted mean volume per "
                    "atom of the reference files)", "volume rule")
        return f"h = {h:.4g} 1/Å (fixed)", "fixed"

    def files(self, exact: bool | None, n_threads: int | None, say: ProgressFn) -> None:
        summary = self.res.summary()
        if exact is not None:
            entropies = file_entropies(self.res, self.settings, exact=exact,
                                       n_threads=n_threads)
            summary = summary.merge(entropies, on="file", how="left")
        self.data["files"] = summary.to_dict(orient="records")
        note = ("H = the information entropy of all environments of the file, D = its "
                "diversity, log(environments) the largest H possible "
                "(as <code>quests-dashboard entropy</code>); mean dH and the fraction "
                "dH &gt; 0 are against the reference.")
        if exact is None:
            note = "H and D per file were not computed (switched off)."
        self.div("<h2>Files</h2>" + html_table(summary, ["file", "role", "H method"],
                                                name="files")
                 + f"<p class='note'>{note}</p>", name="report-files")

    def learning(self) -> None:
        from .views.learning import LearningView, gap_table

        res = self.res
        if not res.learning:
            return
        view = LearningView(state=self.state)
        obj = view.plot().object
        table = gap_table(res.learning)
        table["note"] = [n or "" for n in table["note"]]
        fits = []
        for row in table.itertuples():
            fits.append("no reliable fit" + (f" ({row.note})" if row.note else "")
                        if row.note or not np.isfinite(row._5) else "fitted")
        table.insert(len(table.columns) - 1, "fit", fits)
        shown = table.drop(columns=["note"]).copy()
        shown.loc[[f != "fitted" for f in fits], ["asymptote (nats)",
                                                  "information gap (nats)"]] = np.nan
        self.data["learning"] = table.to_dict(orient="records")
        self.div("<h2>Learning curves</h2><p>H of random subsets of N environments (mean "
                 "and spread of the repeats), the fitted asymptote (dashed) and log N, the "
                 "largest H possible (dotted). Information gap = asymptote − H at the "
                 "largest N.</p>", name="report-learning")
        self.plot(obj, "learning_curves")
        self.div(html_table(shown, ["dataset", "fit"], name="learning"))

    def overlap(self) -> None:
        from .views.overlap import OverlapView

        res = self.res
        for grouping, result in res.overlap.items():
            view = OverlapView(state=self.state)
            view.grouping = grouping
            heat = view.heatmap()[0].object
            self.data.setdefault("overlap", {})[grouping] = {
                "names": list(result.names), "matrix": result.matrix.tolist(),
                "sampled": {k: int(v) for k, v in result.sizes.items()},
                "bandwidths": dict(result.bandwidths)}
            self.div(f"<h2>Overlap by {_esc(grouping)}</h2><p>overlap(row | column): the "
                     "fraction of the row's environments with dH(row | column) ≤ 0, on up "
                     "to " + ", ".join(f"{_esc(k)}: {v:,}" for k, v in result.sizes.items())
                     + " sampled environments.</p>", name=f"report-overlap-{grouping}")
            self.plot(heat.opts(responsive=False, width=640, height=480, clone=True),
                      f"overlap_{_slug(grouping)}")
            # a paper figure: the heat map with its values (Matplotlib draws no Labels on
            # categorical axes)
            self.figures[f"overlap_{_slug(grouping)}"] = heat.get(0).opts(
                backend="matplotlib", show_values=True, colorbar=True, cmap="Blues",
                clim=(0, 1), xrotation=30, clone=True)

    def trajectory(self, source: str) -> None:
        from .views.trajectory import FLAG_TABLE, JUMP_RULE, TrajectoryView

        view = TrajectoryView(state=self.state)
        view.source = source
        view.z_threshold = self.z
        frames = view.frames()
        flagged = view.flagged()
        layout = view.plots().object
        slug = _slug(source)
        first = None if flagged.empty else int(flagged["structure"].iat[0])
        self.data.setdefault("trajectories", {})[source] = {
            "frame": frames["frame"].to_numpy(np.int64).tolist(),
            "time": frames["time"].to_numpy(np.float64).tolist(),
            "H": frames["H"].to_numpy(np.float64).tolist(),
            "mean_dH": frames["mean_dH"].to_numpy(np.float64).tolist(),
            "frac_novel": frames["frac_novel"].to_numpy(np.float64).tolist(),
            "flagged_frames": flagged["frame"].to_numpy(np.int64).tolist(),
            "z_threshold": self.z,
        }
        cols = [c for c in FLAG_TABLE if c in flagged]
        table = flagged[cols].rename(columns=FLAG_TABLE)
        words = (f"<b>{len(flagged)} jump frame(s)</b> ({JUMP_RULE}, robust z-score &gt; "
                 f"{self.z:g}; frames numbered as in the file, from 0)")
        first_text = ""
        if first is not None:
            first_text = (f"<p>First jump frame: <b>frame {int(flagged['frame'].iat[0])}</b> "
                          "of the file, drawn below coloured by dH.</p>")
        self.div(f"<h2>Trajectory: {_esc(source)}</h2><p>Per frame: H of the frame, mean "
                 "dH and the fraction of atoms with dH &gt; 0 against the reference; red "
                 f"triangles: jump frames.</p><p>{words}</p>"
                 + (html_table(table, name=f"jumps-{slug}") if len(table) else "")
                 + first_text, name=f"report-trajectory-{slug}")
        self.plot(layout, f"trajectory_{slug}")
        if first is not None:
            self.structure(first, slug)

    def structure(self, structure: int, slug: str) -> None:
        from .views.structure import StructureView

        view = StructureView(state=self.state)
        view.structure = structure
        frame = view.frame()
        slab = view.slab().object
        self.div(f"<h3>{_esc(view.describe())}</h3>", name=f"report-structure-{slug}")
        self.plot(slab.opts(responsive=False, width=620, height=560, clone=True),
                  f"structure_slab_{slug}")
        if len(frame) <= MAX_3D_ATOMS:
            self.models.append(view_3d(frame, self.mode, self.res.frame_name(structure)))
        else:
            self.div(f"<p class='note'>No 3D view: the frame has {len(frame):,} atoms (the "
                     f"report draws frames up to {MAX_3D_ATOMS:,} atoms in 3D).</p>")

    def per_atom(self, source: str) -> None:
        from .views.atoms import AtomsView, fraction_above

        view = AtomsView(state=self.state)
        view.subset = source
        view.threshold = 0.0
        atoms = view.data()
        dh = atoms["dH"].to_numpy()
        slug = _slug(source)
        hist = view.histogram()
        n = len(atoms)
        frac = fraction_above(dh, 0.0)
        self.data.setdefault("per_atom", {})[source] = {
            "atoms": int(n), "fraction_novel": frac,
            "drawn_as": "points" if n <= POINTS_MAX else "images"}
        self.div(f"<h2>Per-atom dH: {_esc(source)}</h2><p><b>Fraction dH &gt; 0: "
                 f"{frac:.4f}</b> ({int((dh > 0).sum()):,} of {n:,} atoms). Histogram and "
                 "CDF of every atom (dotted line: dH = 0).</p>", name=f"report-atoms-{slug}")
        self.plot(hist[0].object, f"dh_histogram_{slug}")
        self.plot(hist[1].object, f"dh_cdf_{slug}")
        if n <= POINTS_MAX:
            obj = dh_points(atoms, self.mode)
            self.div(f"<p>Every atom, by its position in the file (frames in order); "
                     f"colour and height: dH. {n:,} atoms drawn as points.</p>")
            self.plot(obj, f"dh_atoms_{slug}")
        else:
            model, obj = dh_images(atoms, self.mode)
            self.div(f"<p>{n:,} atoms: Datashader images of the mean dH per pixel, "
                     f"{IMAGE_LOW[0]}×{IMAGE_LOW[1]} pixels zoomed out (hover: mean dH) and "
                     f"{IMAGE_HIGH[0]}×{IMAGE_HIGH[1]} when zoomed in (Ctrl + wheel); "
                     f"more than {POINTS_MAX:,} atoms are not drawn one by one in a "
                     "report.</p>")
            model.name = f"report-dh_atoms_{slug}"
            self.models.append(model)
            self.figures[f"dh_atoms_{slug}"] = obj

    def nucleation(self, source: str) -> None:
        """Largest solid-like cluster per frame with the critical band, the pooled
        cluster-size distribution with its CNT fit (or why there is none), as the
        Nucleation tab (and ``quests-dashboard nucleation TRAJ -r SOLID --fit``)."""
        from .views.nucleation import NucleationView, fit_table, nucleation_text

        nuc = self.res.nucleations[source]
        view = NucleationView(state=self.state)
        slug = _slug(source)
        frames = nuc.file_frames()
        fit_v = None
        if nuc.constants is not None:
            fit_v = float(nuc.fit_volume())
        self.data.setdefault("nucleation", {})[source] = {
            "frame": np.asarray(frames, np.int64).tolist(),
            "time": np.asarray(nuc.time, np.float64).tolist(),
            "temperature": np.asarray(nuc.temperature, np.float64).tolist(),
            "n_solid": np.asarray(nuc.n_solid, np.int64).tolist(),
            "largest_cluster": np.asarray(nuc.largest, np.int64).tolist(),
            "pooled_frames": np.asarray(frames[nuc.pre_frames], np.int64).tolist(),
            "T_pooled_K": nuc.t_pooled,
            "critical_band_atoms": list(nuc.critical_band),
            "sizes": np.asarray(nuc.sizes, np.int64).tolist(),
            "counts": np.asarray(nuc.counts, np.int64).tolist(),
            "constants": None if nuc.constants is None else {
                k: (list(v) if isinstance(v, tuple) else v) for k, v in nuc.constants.items()},
            "fit_weights": nuc.weights, "fit_V_atom_A3": fit_v,
            "fit": dict(nuc.fit) if nuc.fit else None, "fit_error": nuc.fit_error,
        }
        if nuc.fit:
            fit_words = (f"<b>CNT fit: gamma_SL = {nuc.fit['gamma_SL (J/m^2)']:.4g} ± "
                         f"{nuc.fit['gamma_SL error (J/m^2)']:.2g} J/m²</b> at "
                         f"{nuc.fit['temperature (K)']:.1f} K.")
        else:
            reason = nuc.fit_error or "no fit"
            reason = reason[0].lower() + reason[1:] if reason else reason
            if not reason.startswith("no reliable"):
                reason = f"no reliable fit: {reason}"
            fit_words = f"<b>{_esc(reason)}</b>."
        self.div(f"<h2>Nucleation: {_esc(source)}</h2><p>{_markdown(nucleation_text(nuc))}"
                 f"</p><p>{fit_words} The same numbers as <code>quests-dashboard nucleation "
                 f"{_esc(source)} -r SOLID --fit</code> (frames pooled: the pre-nucleation "
                 "frames, <code>--frames pre</code>).</p>", name=f"report-nucleation-{slug}")
        self.plot(view.timeline(nuc), f"nucleation_largest_cluster_{slug}")
        self.plot(view.distribution(nuc), f"nucleation_cluster_sizes_{slug}")
        table = fit_table(nuc)
        if len(table):
            self.div(html_table(table, ["quantity"], name=f"nucleation-fit-{slug}"))

    def compression(self, section: CompressionSection) -> None:
        """H, D and overlap of the compressed subsets per method (the Compression tab's
        plots) and the summary of ``quests-dashboard compress``."""
        from .tasks import METHOD_LABELS
        from .views.compression import METRICS, REPORT_HEADERS, gap_text, metric_plot

        res = section.result
        slug = _slug(res.source)
        self.data.setdefault("compression", {})[res.source] = {
            "summary": section.summary, "command": section.command,
            "report": res.report.to_dict(orient="records")}
        s = section.summary
        how = _how(section.command)
        gap = _esc(gap_text(res.report, res.gap_reference, res.gap_kind))
        chosen = "" if not s else (
            f"<b>{_esc(METHOD_LABELS.get(s['method'], s['method']))}, "
            f"{s['kept_structures']} structures kept ({s['kept_environments']:,} "
            f"environments): H = {s['H']:.6g} nats, D = {s['D']:.6g} nats, overlap with the "
            f"full set {s['overlap']:.6g}</b> ({how}). ")
        self.div(
            f"<h2>Compression: {_esc(res.source)}</h2><p>{res.n_structures} structures, "
            f"{res.n_envs:,} environments, k = {res.k}, cutoff = {res.cutoff:g} Å, h = "
            f"{res.h:.4g} 1/Å. {chosen}"
            "Below: every method against the subset size (error bars: spread over seeds)."
            f"{gap}</p>", name=f"report-compression-{slug}")
        for metric in METRICS:
            self.plot(metric_plot(res.report, metric), f"compression_{metric}_{slug}")
        shown = res.report.drop(columns=["gap_reference"]).rename(columns=REPORT_HEADERS)
        self.div(html_table(shown, ["method"], name=f"compression-{slug}"))

    def active_learning(self, section: ActiveLearningSection) -> None:
        """Novelty of each generation, H and D of the cumulative dataset (the Active
        learning tab's plots; the table of ``quests-dashboard active-learning``)."""
        from .views.active_learning import CURVES, REPORT_HEADERS, generation_plot

        res = section.result
        slug = _slug(res.source)
        self.data.setdefault("active_learning", {})[res.source] = {
            "summary": section.summary, "command": section.command,
            "report": res.report.to_dict(orient="records")}
        self.div(
            f"<h2>Active learning: {_esc(res.source)}</h2><p>{res.n_structures} structures, "
            f"generations from info key <code>{_esc(res.key)}</code>, every environment, "
            f"k = {res.k}, cutoff = {res.cutoff:g} Å, h = {res.h:.4g} 1/Å. Novelty of "
            "generation g: the fraction of its environments with dH &gt; 0 against all "
            "earlier generations (none for the first); H and D: the dataset of generations "
            f"≤ g ({_how(section.command)}).</p>",
            name=f"report-active-learning-{slug}")
        for column in CURVES:
            self.plot(generation_plot(res.report, column), f"active_learning_{column}_{slug}")
        self.div(html_table(res.report.rename(columns=REPORT_HEADERS), [],
                            name=f"active-learning-{slug}"))

    def uncertainty(self, section: UncertaintySection) -> None:
        """Model error against dH with the running average and the high-error threshold
        (the Uncertainty tab's plot), the numbers of ``quests-dashboard uq`` and its
        binned table."""
        res = section.result
        s = section.summary
        slug = _slug(res.source)
        self.data.setdefault("uncertainty", {})[res.source] = {
            "summary": s, "command": section.command, "reference": res.reference,
            "forces": list(res.forces), "bins": res.bins().to_dict(orient="records")}
        what = (f"forces <code>{_esc(res.forces[0])}</code> − <code>{_esc(res.forces[1])}"
                "</code> (eV/Å)" if res.forces[1] else
                f"per-atom error <code>{_esc(res.forces[0])}</code>")
        self.div(
            f"<h2>Uncertainty: {_esc(res.source)}</h2><p>{s['test_atoms']:,} test atoms "
            f"against {_esc(res.reference)} ({s['reference_atoms']:,} environments), k = "
            f"{res.k}, cutoff = {res.cutoff:g} Å, h = {s['bandwidth']:.4g} 1/Å; error: "
            f"{what}. <b>dH &gt; 0 flags {s['frac_dH_positive']:.4g} of the atoms. High "
            f"error: above {s['error_threshold']:.6g} ({s['high_error_atoms']:,} atoms); "
            f"recall {s['recall']:.6g}, precision {s['precision']:.6g}</b> "
            f"({_how(section.command)}). Recall: share of the high-error atoms "
            "with dH &gt; 0; precision: share of the atoms with dH &gt; 0 that have a high "
            "error. Blue: atoms per cell; red: mean error of the atoms within "
            f"{res.running.window:g} bin widths ({res.running.width:.3g} nats) of each of "
            f"{len(res.running.centers)} bin centres, band ± one standard deviation; dashed: "
            "dH = 0; dotted: the high-error threshold.</p>",
            name=f"report-uncertainty-{slug}")
        self.plot(uncertainty_plot(section, self.mode), f"uncertainty_{slug}")
        table = res.bins().rename(columns={
            "dH_center": "dH bin centre (nats)", "mean_error": "mean error",
            "std_error": "std of the error", "count": "atoms in the window"})
        self.div(html_table(table, name=f"uncertainty-{slug}"))

    def footer(self) -> None:
        timings = ", ".join(f"{k} {v:.1f} s" for k, v in self.res.timings.items())
        self.div(
            "<h2>About this report</h2><p>One file: every script and style is inline, it "
            "opens offline in any browser. Plots zoom with Ctrl + wheel or a box, pan with "
            "a drag; hover for values; the toolbar's save button writes a PNG. Figures for "
            "papers: <code>quests-dashboard report ... --figures DIR</code> (PNG and SVG at "
            "a chosen size and DPI).</p>"
            f"<p class='note'>Limits: per-atom dH is drawn as points up to {POINTS_MAX:,} "
            f"atoms, above as Datashader images ({IMAGE_LOW[0]}×{IMAGE_LOW[1]} and "
            f"{IMAGE_HIGH[0]}×{IMAGE_HIGH[1]} pixels); histograms and fractions use every "
            f"atom; the 3D view draws frames up to {MAX_3D_ATOMS:,} atoms; H per file is "
            "sampled above 40,000 environments and D is given only up to that size; at "
            f"most {MAX_FILE_SECTIONS} trajectory and {MAX_FILE_SECTIONS} per-atom "
            f"sections. Computation time: {_esc(timings)}.</p>", name="report-footer")


def _markdown(text: str) -> str:
    """The views' Markdown (bold, code) as HTML, escaped."""
    import re

    out = _esc(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)


# ----------------------------------------------------------------------------
# analysis sections (computed outside the pipeline, as their commands do)
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class CompressionSection:
    """A compression study (:func:`compression_section`) for the report."""

    result: Any  #: :class:`dashboard.tasks.CompressionResult` (the Compression tab's)
    summary: dict[str, Any]  #: ``quests-dashboard compress``'s summary
    command: str  #: the equivalent command
    kind: str = "compression"


@dataclasses.dataclass
class ActiveLearningSection:
    """An active-learning study (:func:`active_learning_section`) for the report."""

    result: Any  #: :class:`dashboard.tasks.ActiveLearningResult`
    summary: dict[str, Any]  #: ``quests-dashboard active-learning``'s summary
    command: str
    kind: str = "active learning"


@dataclasses.dataclass
class UncertaintySection:
    """A dH-versus-model-error study (:func:`uncertainty_section`) for the report."""

    result: Any  #: :class:`dashboard.tasks.UncertaintyResult` (the Uncertainty tab's)
    summary: dict[str, Any]  #: ``quests-dashboard uq``'s summary (its ``key value`` lines)
    command: str
    error_label: str = "force error (eV/Å)"  #: the error axis (``--error-key``: its name)
    kind: str = "uncertainty"


def uncertainty_section(test: Any, settings: RunSettings, *, references: Sequence[Any] = (),
                        reference_label: str | None = None, test_label: str | None = None,
                        forces: tuple[str, str] | None = None, error_key: str | None = None,
                        n_bins: int | None = None, window: float | None = None,
                        error_threshold: float | None = None,
                        n_threads: int | None = None) -> UncertaintySection:
    """dH of the atoms of ``test`` against a training set versus their model error, as
    ``quests-dashboard uq TEST (--reference TRAIN... | --reference-label L) (--forces PRED
    REF | --error-key KEY)``, with the same selection rules and numbers:

    - test atoms: the structures of ``test`` labelled ``test_label``, else all of them
      (as ``uq``; the Uncertainty tab leaves the training label out instead);
    - training set: the ``references`` (dashboard file entries; a ``.npz``/``.npy`` one is
      a descriptor file), those labelled ``reference_label`` when given, or without
      ``references`` the structures of ``test`` labelled ``reference_label``;
    - error: ||F_pred - F_ref|| of the two per-atom force arrays ``forces``, or the
      per-atom array ``error_key`` ((n,) or the norm of (n, 3));
    - h: fixed, or the volume rule of the training structures;
    - :func:`quests_core.analysis.uncertainty.uncertainty_study`, the ``uq`` command's
      and the tab's (``n_bins``, ``window``; high error above ``error_threshold``,
      default the 0.9 quantile), at the settings' precision and backend.

    The result is the Uncertainty tab's :class:`~dashboard.tasks.UncertaintyResult`, drawn
    with the tab's functions."""
    from quests_core.analysis import uncertainty as uq
    from quests_core.dataset import concat
    from quests_core.errors import QuestsError

    from .compute import Progress, descriptor_file, file_descriptors, load_files
    from .tasks import UncertaintyResult

    if reference_label is None and not references:
        raise QuestsError("uncertainty: give the training set (reference files or the label "
                          "of its structures)")
    if bool(forces) == bool(error_key):
        raise QuestsError("uncertainty: give the two force arrays or the error key (one)")
    core = settings.core
    prog = Progress(None, None)
    n_bins = uq.DEFAULT_BINS if n_bins is None else int(n_bins)
    window = uq.DEFAULT_WINDOW if window is None else float(window)
    (full,) = (item.dataset for item in load_files([test], prog))
    tested = _with_label(full, test_label, test.name, "") if test_label is not None else full
    ref_ds = None
    if references:
        structures = [r for r in references
                      if not r.path.lower().endswith(DESCRIPTOR_SUFFIXES)]
        if reference_label is not None and len(structures) < len(references):
            raise QuestsError("--reference-label needs training structures, not descriptor "
                              "files")
        if len(structures) == len(references):
            sets = [item.dataset for item in load_files(list(references), prog)]
            ref_ds = sets[0] if len(sets) == 1 else concat(sets)
            if reference_label is not None:
                ref_ds = _with_label(ref_ds, reference_label,
                                     " ".join(r.name for r in references), "reference ")
            x_ref = file_descriptors(ref_ds, core, prog, n_threads, ref_ds.name)
        else:  # descriptor files among them: the descriptors of every file, in order
            parts = []
            for r in references:
                if r in structures:
                    (item,) = load_files([r], prog)
                    parts.append(file_descriptors(item.dataset, core, prog, n_threads, r.name))
                else:
                    parts.append(descriptor_file(r.path, r.name, core))
            x_ref = np.concatenate(parts)
        reference = " ".join(r.name for r in references)
        if reference_label is not None:
            reference += f" (label {reference_label!r})"
    else:
        ref_ds = _with_label(full, reference_label, test.name, "reference ")
        x_ref = file_descriptors(ref_ds, core, prog, n_threads, test.name)
        reference = f"label {reference_label!r} of {test.name}"
    y = file_descriptors(tested, core, prog, n_threads, test.name)
    error = _model_errors(tested, forces, error_key, test.name)
    if ref_ds is None:
        if core.bandwidth_rule != "fixed":
            raise QuestsError("--bandwidth auto needs the reference structures: descriptor "
                              "files hold no cell volumes (give --bandwidth H)")
        h = core.bandwidth
    else:
        h = core.resolve_bandwidth(ref_ds.frames,
                                   source=f"{ref_ds.name}: --bandwidth auto")
    kw = core.kernel_kwargs()
    if n_threads:
        kw["n_threads"] = n_threads
    res = uq.uncertainty_study(y, x_ref, error, h, n_bins=n_bins, window=window,
                               threshold=error_threshold, test_name=test.name,
                               reference_name=reference, **kw)
    r = res.recall
    summary = {"test_atoms": int(len(y)), "reference_atoms": int(len(x_ref)), "bandwidth": h,
               "frac_dH_positive": r.frac_flagged, "error_threshold": r.threshold,
               "high_error_atoms": r.n_high, "recall": r.recall, "precision": r.precision}
    names = tuple(forces) if forces else (error_key, "")
    result = UncertaintyResult(
        source=test.name, reference=reference, forces=names, dh=res.dh, error=res.error,
        running=res.running, recall=r,
        quantile=uq.DEFAULT_ERROR_QUANTILE if error_threshold is None else float("nan"),
        h=h, k=core.k, cutoff=core.cutoff, n_reference=int(len(x_ref)),
        frames=test.index or ":")
    ref_words = (" --reference " + " ".join(r.name for r in references) if references else "")
    ref_words += f" --reference-label {reference_label}" if reference_label is not None else ""
    command = (f"quests-dashboard uq {test.name}{ref_words}"
               + (f" --test-label {test_label}" if test_label is not None else "")
               + (f" --forces {forces[0]} {forces[1]}" if forces else
                  f" --error-key {error_key}")
               + (f" --bins {n_bins}" if n_bins != uq.DEFAULT_BINS else "")
               + (f" --window {window:g}" if window != uq.DEFAULT_WINDOW else "")
               + (f" --error-threshold {error_threshold:g}" if error_threshold is not None
                  else ""))
    label = "force error (eV/Å)" if forces else f"error ({error_key})"
    return UncertaintySection(result=result, summary=summary, command=command,
                              error_label=label)


#: Reference files read as saved descriptors (as ``uq --reference``).
DESCRIPTOR_SUFFIXES = (".npz", ".npy")


def _with_label(dataset: Any, label: str, source: str, what: str) -> Any:
    """The structures of ``dataset`` labelled ``label`` (as ``uq``'s selection)."""
    from quests_core.errors import QuestsError

    rows = (dataset.frames["label"] == label).to_numpy()
    if not rows.any():
        raise QuestsError(f"no {what}structure with label {label!r}", source=source)
    return dataset.subset(rows)


def _model_errors(dataset: Any, forces: tuple[str, str] | None, key: str | None,
                  source: str) -> np.ndarray:
    """Per-atom model error of the structures (as ``uq --forces`` / ``--error-key``)."""
    from quests_core.analysis import uncertainty as uq

    return uq.model_errors(list(dataset.iter_structures()), forces=forces, key=key,
                           source=source)


def uncertainty_plot(section: UncertaintySection, mode: str = "asinh") -> Any:
    """The Uncertainty tab's plot as a static figure: the (dH, error) cloud binned by
    Datashader (atoms per cell, :data:`~dashboard.views.uncertainty.ERROR_GRID`), the
    running average of the error +- one standard deviation (the binned errors,
    :func:`~dashboard.views.uncertainty.running_curve` and ``running_spread``), dH = 0
    and the high-error threshold."""
    import holoviews.plotting.bokeh  # noqa: F401 - the options below need a backend
    from holoviews.operation.datashader import rasterize

    from .views.uncertainty import DH_DIM, ERROR_GRID, running_curve, running_spread

    res = section.result
    xlabel = dhscale.axis_label("dH (nats)", mode)
    dh_dim = DH_DIM.clone(label=xlabel)  # the paper figure puts nats ticks on it
    err_dim = hv.Dimension("error", label=section.error_label)
    x = dhscale.forward(res.dh, mode)
    points = hv.Points(pd.DataFrame({"dH": x, "error": res.error}), [dh_dim, err_dim])
    cloud = rasterize(points, dynamic=False, width=ERROR_GRID[0], height=ERROR_GRID[1])
    cloud = cloud.opts(cmap="Blues", cnorm="log", colorbar=True, clabel="atoms per cell",
                       tools=["hover"], hover_tooltips=[("atoms", "@image")])
    threshold = float(res.recall.threshold)
    dims = {"dH": dh_dim, "error": err_dim}
    curve = running_curve(res, mode).redim(**dims)
    spread = running_spread(res, mode).redim(**dims)
    line = hv.HLine(threshold).opts(color="#ff7f0e", line_dash="dotted", line_width=2)
    unit = " eV/Å" if "eV/Å" in section.error_label else ""
    words = hv.Text(float(np.nanmin(x)) if len(x) else 0.0, threshold,
                    f" high error > {threshold:.3g}{unit}", fontsize=9, halign="left",
                    valign="bottom").opts(color="#c05600")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:  # the paper figure: the band in the curve's colour (mpl has no 'color' for it)
            import holoviews.plotting.mpl  # noqa: F401

            spread = spread.opts(backend="matplotlib", facecolor="#d62728", alpha=0.15,
                                 edgecolor="none")
        except Exception:  # noqa: BLE001 - no Matplotlib: the page needs none
            pass
    overlay = (cloud * spread * curve
               * hv.VLine(0.0).opts(color="black", line_dash="dashed", line_width=1)
               * line * words)
    what = section.error_label.split(" (")[0]
    return overlay.opts(
        title=f"{what[:1].upper()}{what[1:]} against dH ({len(res.dh):,} atoms)",
        responsive=True, height=460, show_grid=True, legend_position="top_left",
        xlabel=xlabel, ylabel=section.error_label,
        hooks=[dhscale.axis_hook("x", mode)], active_tools=["pan", "wheel_zoom"],
    )


def compression_section(spec: Any, settings: RunSettings, *, fraction: float,
                        method: str = "msc", methods: Sequence[str] | None = None,
                        fractions: Sequence[float] = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0),
                        seeds: int = 3, gap: bool = True,
                        n_threads: int | None = None) -> CompressionSection:
    """The compression of one file as ``quests-dashboard compress FILE --fraction F
    --method M --compare --sweep FRACTIONS --seeds N``: the summary of ``method`` at
    ``fraction`` (:func:`~quests_core.analysis.compression.compress`, the command's)
    and the table of
    ``methods`` (default all) at ``fractions`` and ``fraction``
    (:func:`~quests_core.analysis.compression.compression_study`, the Compression
    tab's function), on every environment. h: fixed, or the volume rule of the file."""
    from quests_core.analysis import compression as comp

    from .compute import Progress, structure_descriptors
    from .tasks import CompressionResult

    core = settings.core
    methods = [m for m in comp.METHODS if m in (methods or comp.METHODS)]
    _, descs, h = structure_descriptors(spec, core, Progress(None, None), n_threads)
    n = len(descs)
    size = comp.fraction_to_size(fraction, n)
    chosen = sorted({*map(float, fractions), float(fraction)})
    for f in chosen:
        comp.fraction_to_size(f, n)
    kernel = {"precision": core.precision, "backend": core.backend}
    m = comp.compress(descs, method, size, h=h, seed=core.seed, n_threads=n_threads,
                      **kernel).metrics
    summary = {"method": method, "structures": n, "kept_structures": m.n_structures,
               "kept_environments": m.n_envs, "bandwidth": h, "H": m.entropy,
               "D": m.diversity, "overlap": m.overlap}
    study = comp.compression_study(descs, methods=methods, fractions=chosen, h=h,
                                   seeds=tuple(range(core.seed, core.seed + int(seeds))),
                                   gap=gap, n_threads=n_threads, **kernel)
    result = CompressionResult(
        source=spec.name, frames=spec.index or ":", report=study.report, h=h, k=core.k,
        cutoff=core.cutoff, n_structures=study.n_structures, n_envs=study.n_envs,
        env_step=1, gap_reference=study.gap.value, gap_kind=study.gap.kind)
    every = "--compare" if list(methods) == list(comp.METHODS) else \
        "(methods " + ",".join(methods) + ")"
    command = (f"quests-dashboard compress {spec.name} --fraction {fraction:g} --method "
               f"{method} {every} --sweep {','.join(f'{f:g}' for f in chosen)} --seeds "
               f"{int(seeds)}{'' if gap else ' --no-gap'}")
    return CompressionSection(result=result, summary=summary, command=command)


def active_learning_section(spec: Any, settings: RunSettings, *, key: str = "generation",
                            n_threads: int | None = None) -> ActiveLearningSection:
    """What each generation of a file adds, as ``quests-dashboard active-learning FILE
    --generation-key KEY``: :func:`~quests_core.analysis.active_learning.generation_study`
    (the Active learning tab's function) on every environment."""
    from quests_core.analysis import active_learning as al
    from quests_core.errors import QuestsError

    from .compute import Progress, structure_descriptors
    from .tasks import ActiveLearningResult

    core = settings.core
    ds, descs, h = structure_descriptors(spec, core, Progress(None, None), n_threads)
    try:
        generations = al.generation_labels(ds.structures, key)
    except QuestsError as exc:
        where = (f"frame {int(ds.frames['frame'].iat[exc.index])}: "
                 if exc.index is not None else "")
        raise QuestsError(where + exc.detail, source=spec.name) from None
    study = al.generation_study(descs, generations, h=h, env_step=1, n_threads=n_threads,
                                precision=core.precision, backend=core.backend)
    result = ActiveLearningResult(
        source=spec.name, frames=spec.index or ":", key=key, report=study.report, h=h,
        k=core.k, cutoff=core.cutoff, n_structures=study.n_structures, env_step=1)
    summary = {"structures": len(descs), "environments": int(sum(len(x) for x in descs)),
               "generations": int(len(study.report)), "bandwidth": h}
    command = f"quests-dashboard active-learning {spec.name} --generation-key {key}"
    return ActiveLearningSection(result=result, summary=summary, command=command)


def _how(command: str) -> str:
    """Where an analysis section's numbers come from: its command, or the dashboard."""
    return (f"as <code>{_esc(command)}</code>" if command else
            "computed in the dashboard's tab, with its settings")


def sections_of_views(compression: Any = None, active_learning: Any = None,
                      uncertainty: Any = None) -> list[Any]:
    """The analysis tabs' last results as report sections (the Data tab's "Save report"
    and "Save figures"): the tabs' own numbers, no command line (they were computed in
    the dashboard, with the tab's settings)."""
    out: list[Any] = []
    if compression is not None:
        out.append(CompressionSection(result=compression, summary={}, command=""))
    if active_learning is not None:
        rep = active_learning.report
        out.append(ActiveLearningSection(
            result=active_learning, command="",
            summary={"structures": active_learning.n_structures,
                     "environments": int(rep["n_envs"].sum()) if "n_envs" in rep else None,
                     "generations": int(len(rep)), "bandwidth": active_learning.h}))
    if uncertainty is not None:
        r = uncertainty.recall
        out.append(UncertaintySection(
            result=uncertainty, command="",
            summary={"test_atoms": int(len(uncertainty.dh)),
                     "reference_atoms": int(uncertainty.n_reference),
                     "bandwidth": uncertainty.h, "frac_dH_positive": r.frac_flagged,
                     "error_threshold": r.threshold, "high_error_atoms": r.n_high,
                     "recall": r.recall, "precision": r.precision}))
    return out


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9]+", "_", str(text)).strip("_") or "file"


# ----------------------------------------------------------------------------
# H and D per file
# ----------------------------------------------------------------------------


def file_entropies(results: Results, settings: RunSettings | None, *, exact: bool = False,
                   n_threads: int | None = None) -> pd.DataFrame:
    """H and D of every file of ``results``, as ``quests-dashboard entropy`` gives them.

    The file's descriptors come from the descriptor cache (the computation put them
    there). h: the settings' fixed bandwidth, or with the volume rule the file's own
    (as the entropy command); without settings, the results' h. H is exact up to
    :func:`quests_core.sampling.exact_max_atoms` environments (or with ``exact``), else
    sampled with its standard error; D = logsumexp(dH of every environment against
    the file) only where H is exact.
    """
    from scipy.special import logsumexp

    import quests_core as qc
    from quests_core.sampling import exact_max_atoms, frame_entropy
    from quests_core.settings import DEFAULTS

    from .compute import Progress, file_descriptors, load_files

    if settings is not None:
        core = settings.core
    else:
        core = DEFAULTS.replace(k=results.k, cutoff=results.cutoff, bandwidth=results.h,
                                bandwidth_rule="fixed", species=results.species,
                                precision=results.precision)
    prog = Progress(None, None)
    rows = []
    limit = exact_max_atoms()
    for spec in results.files:
        (item,) = load_files([spec], prog)
        x = file_descriptors(item.dataset, core, prog, n_threads, spec.name)
        h = (core.bandwidth if core.bandwidth_rule == "fixed"
             else core.resolve_bandwidth(item.dataset.frames, source=spec.name))
        n = len(x)
        row = {"file": spec.name, "environments": n, "h (1/Å)": h}
        if exact or n <= limit:
            H, dh = qc.entropy_and_delta(x, h, **{**core.kernel_kwargs(),
                                                  "n_threads": n_threads or core.threads})
            row.update({"H (nats)": float(H), "H stderr (nats)": 0.0,
                        "D (nats)": float(logsumexp(np.asarray(dh))), "H method": "exact"})
        else:
            est = frame_entropy(x, h, seed=core.seed, **{**core.kernel_kwargs(),
                                                          "n_threads": n_threads or core.threads})
            row.update({"H (nats)": float(est.H), "H stderr (nats)": float(est.stderr),
                        "D (nats)": float("nan"),
                        "H method": f"sampled (> {limit:,} environments; no D)"})
        row["log(environments)"] = float(np.log(n))
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------
# the report's own plots
# ----------------------------------------------------------------------------


def dh_points(atoms: pd.DataFrame, mode: str) -> hv.Points:
    """Every atom as a point: its position in the file (x) and dH (y and colour)."""
    from .views.atoms import dh_clim

    dh = atoms["dH"].to_numpy(np.float64)
    t = dhscale.forward(dh, mode).astype(np.float32)
    clim = dh_clim(dh, mode)
    data = pd.DataFrame({"index": np.arange(len(atoms), dtype=np.int32), "t": t,
                         "dH": dh.astype(np.float32),
                         "frame": atoms["frame"].to_numpy(np.int32),
                         "atom": atoms["atom"].to_numpy(np.int32)})
    ylabel = dhscale.axis_label("dH (nats)", mode)
    size = 3 if len(data) > 20_000 else 5
    return hv.Points(data, [hv.Dimension("index", label="atom index (frames in order)"),
                            hv.Dimension("t", label=ylabel)], ["dH", "frame", "atom"]).opts(
        color="t", cmap=DH_CMAP, clim=clim, colorbar=True, size=size, line_color=None,
        clabel=ylabel, colorbar_opts=dhscale.colorbar_opts(mode),
        hooks=[dhscale.axis_hook("y", mode)], responsive=True, height=420,
        title=f"Per-atom dH ({len(data):,} atoms)", show_grid=True,
        hover_tooltips=[("frame (file)", "@frame"), ("atom", "@atom"),
                        ("dH (nats)", "@dH{0.000}")],
        tools=["hover", "box_zoom"], active_tools=["pan", "wheel_zoom"],
    ).opts(backend="matplotlib", color="t", cmap=DH_CMAP, clim=clim, colorbar=True, s=2,
           hooks=[_mpl_dh_ticks("y", mode)])


def dh_images(atoms: pd.DataFrame, mode: str):
    """Datashader images of per-atom dH (mean per pixel): a Bokeh figure with the
    low-resolution image (hover: mean dH) and the high-resolution one (a PNG) shown
    when zoomed in, and an ``hv.RGB`` of the high-resolution one for figures."""
    import datashader as ds
    import datashader.transfer_functions as tf
    from bokeh.models import (
        ColorBar,
        CustomJS,
        HoverTool,
        LinearColorMapper,
    )
    from bokeh.plotting import figure

    from .views.atoms import dh_clim

    dh = atoms["dH"].to_numpy(np.float64)
    t = dhscale.forward(dh, mode)
    ok = np.isfinite(t)
    df = pd.DataFrame({"index": np.arange(len(atoms), dtype=np.float64)[ok], "t": t[ok]})
    x0, x1 = 0.0, float(max(len(atoms) - 1, 1))
    y0, y1 = dhscale.data_range(dh, mode)
    clim = dh_clim(dh, mode)
    images = {}
    for name, (w, h) in (("low", IMAGE_LOW), ("high", IMAGE_HIGH)):
        canvas = ds.Canvas(plot_width=w, plot_height=h, x_range=(x0, x1), y_range=(y0, y1))
        images[name] = canvas.points(df, "index", "t", agg=ds.mean("t"))
    ylabel = dhscale.axis_label("dH (nats)", mode)
    fig = figure(height=440, sizing_mode="stretch_width", x_range=(x0, x1), y_range=(y0, y1),
                 tools="pan,box_zoom,wheel_zoom,reset,save", active_drag="pan",
                 title=f"Per-atom dH ({len(atoms):,} atoms, mean dH per pixel)")
    mapper = LinearColorMapper(palette=DH_CMAP, low=clim[0], high=clim[1], nan_color=(0, 0, 0, 0))
    low = images["low"].values.astype(np.float32)
    image = fig.image(image=[low], x=x0, y=y0, dw=x1 - x0, dh=y1 - y0, color_mapper=mapper)
    shaded = tf.shade(images["high"], cmap=DH_CMAP, span=clim, how="linear")
    png = io.BytesIO()
    shaded.to_pil().save(png, format="PNG", optimize=True)
    url = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode("ascii")
    high = fig.image_url(url=[url], x=x0, y=y0, w=x1 - x0, h=y1 - y0, anchor="bottom_left",
                         visible=False)
    fig.add_tools(HoverTool(renderers=[image], tooltips=[
        ("atom index", "$x{0}"), ("mean dH (nats)", "@image{custom}")],
        formatters={"@image": _nats_formatter(mode)}))
    # zoomed in to less than half of either axis: the sharper image
    toggle = CustomJS(args={"xr": fig.x_range, "yr": fig.y_range, "high": high,
                            "low": image, "fx": x1 - x0, "fy": y1 - y0}, code="""
        const zoomed = Math.abs(xr.end - xr.start) < 0.5 * fx ||
                       Math.abs(yr.end - yr.start) < 0.5 * fy;
        high.visible = zoomed; low.glyph.global_alpha = zoomed ? 0.0 : 1.0;""")
    for rng in (fig.x_range, fig.y_range):
        rng.js_on_change("start", toggle)
        rng.js_on_change("end", toggle)
    ticker, formatter = dhscale.bokeh_ticking(mode) if mode != "linear" else (None, None)
    if ticker is not None:
        fig.yaxis.ticker, fig.yaxis.formatter = ticker, formatter
    bar = ColorBar(color_mapper=mapper, title=ylabel,
                   **(dhscale.colorbar_opts(mode) if mode != "linear" else {}))
    fig.add_layout(bar, "right")
    fig.xaxis.axis_label = "atom index (frames in order)"
    fig.yaxis.axis_label = ylabel
    from .views.base import ctrl_wheel

    ctrl_wheel(fig)
    rgb = np.asarray(shaded.to_pil().convert("RGBA"))
    obj = hv.RGB(rgb, bounds=(x0, y0, x1, y1),
                 kdims=[hv.Dimension("index", label="atom index (frames in order)"),
                        hv.Dimension("t", label=ylabel)]).opts(
        backend="matplotlib", hooks=[_mpl_dh_ticks("y", mode)], aspect=1.6,
        title=f"Per-atom dH ({len(atoms):,} atoms)")
    return fig, obj


def _nats_formatter(mode: str):
    from .views.atoms import nats_hover

    return nats_hover(mode)


#: The 3D view's projection (orthographic, turned by azimuth and elevation), in the page.
_ROTATE_JS = """
const d = src.data, a = az.value * Math.PI / 180, e = el.value * Math.PI / 180;
const n = x0.length, ca = Math.cos(a), sa = Math.sin(a), ce = Math.cos(e), se = Math.sin(e);
const depth = new Float64Array(n), u = new Float64Array(n), v = new Float64Array(n);
for (let i = 0; i < n; i++) {
  const xr = ca * x0[i] - sa * y0[i], yr = sa * x0[i] + ca * y0[i];
  u[i] = xr; v[i] = ce * z0[i] - se * yr; depth[i] = ce * yr + se * z0[i];
}
const order = Array.from({length: n}, (_, i) => i).sort((p, q) => depth[q] - depth[p]);
const out = {};
for (const k of Object.keys(d)) out[k] = order.map((i) => base[k][i]);
out.u = order.map((i) => u[i]); out.v = order.map((i) => v[i]);
src.data = out;
"""


def view_3d(frame: pd.DataFrame, mode: str, name: str):
    """A frame in 3D, coloured by dH: an orthographic projection turned with two
    sliders (azimuth, elevation), the far atoms drawn first (Bokeh has no 3D plot; the
    dashboard's Plotly view needs its server)."""
    from bokeh.layouts import column, row
    from bokeh.models import (
        ColorBar,
        ColumnDataSource,
        CustomJS,
        HoverTool,
        LinearColorMapper,
        Slider,
    )
    from bokeh.plotting import figure

    from .views.atoms import dh_clim

    xyz = frame[["x", "y", "z"]].to_numpy(np.float64)
    xyz = xyz - xyz.mean(axis=0)
    dh = frame["dH"].to_numpy(np.float64)
    clim = dh_clim(dh, mode)
    base = {"t": dhscale.forward(dh, mode).round(4).tolist(), "dH": dh.round(4).tolist(),
            "atom": frame["atom"].to_numpy(np.int64).tolist(),
            "species": frame["species"].astype(str).tolist()}
    src = ColumnDataSource({**base, "u": xyz[:, 0].tolist(), "v": xyz[:, 2].tolist()})
    span = float(np.abs(xyz).max() * 1.1) if len(xyz) else 1.0
    fig = figure(width=560, height=560, x_range=(-span, span), y_range=(-span, span),
                 match_aspect=True, tools="pan,wheel_zoom,reset,save", active_drag="pan",
                 title=f"{name} in 3D, coloured by dH",
                 name="report-3d")
    mapper = LinearColorMapper(palette=DH_CMAP, low=clim[0], high=clim[1])
    n = len(frame)
    size = 9 if n < 2000 else 6 if n < 8000 else 4
    glyph = fig.scatter("u", "v", source=src, size=size, line_color="#333333",
                        line_width=0.3, fill_color={"field": "t", "transform": mapper})
    fig.add_tools(HoverTool(renderers=[glyph], tooltips=[
        ("atom", "@atom"), ("species", "@species"), ("dH (nats)", "@dH{0.000}")]))
    fig.xaxis.axis_label = "projected (Å)"
    fig.yaxis.axis_label = "projected (Å)"
    bar = ColorBar(color_mapper=mapper, title=dhscale.axis_label("dH (nats)", mode),
                   **(dhscale.colorbar_opts(mode) if mode != "linear" else {}))
    fig.add_layout(bar, "right")
    az = Slider(start=-180, end=180, value=30, step=5, title="azimuth (°)", width=260)
    el = Slider(start=-90, end=90, value=20, step=5, title="elevation (°)", width=260)
    code = CustomJS(args={"src": src, "az": az, "el": el, "x0": xyz[:, 0].round(3).tolist(),
                          "y0": xyz[:, 1].round(3).tolist(), "z0": xyz[:, 2].round(3).tolist(),
                          "base": base}, code=_ROTATE_JS)
    az.js_on_change("value", code)
    el.js_on_change("value", code)
    # the first view: the same projection in Python (the page needs no callback to draw)
    a, e = np.radians(30.0), np.radians(20.0)
    xr = np.cos(a) * xyz[:, 0] - np.sin(a) * xyz[:, 1]
    yr = np.sin(a) * xyz[:, 0] + np.cos(a) * xyz[:, 1]
    u, v = xr, np.cos(e) * xyz[:, 2] - np.sin(e) * yr
    order = np.argsort(-(np.cos(e) * yr + np.sin(e) * xyz[:, 2]), kind="stable")
    src.data = {**{k: [vals[i] for i in order] for k, vals in base.items()},
                "u": u[order].round(3).tolist(), "v": v[order].round(3).tolist()}
    from .views.base import ctrl_wheel

    ctrl_wheel(fig)
    return column(row(az, el), fig)
