"""Uncertainty view: per-atom model error against dH of the same environments
relative to a training set.

The (dH, error) cloud is rasterised by Datashader (any number of atoms) and
overlaid with the running average of the error over 20 uniform dH bins with
windows of +-0.75 bin widths (:mod:`quests_core.analysis.uncertainty`), and
a line says how many of the high-error atoms dH > 0 flags.

The training set is a label of the test file (e.g. ``train``), another file
chosen in the Data view, or a descriptor file (``.npz`` with ``descriptors``,
``k`` and ``cutoff``, as written by the CLI) in the data directory.
"""

from __future__ import annotations

import os

import holoviews as hv
import pandas as pd
import panel as pn
import param
from holoviews.operation.datashader import rasterize

from quests_core.analysis import uncertainty as uq
from quests_core.errors import QuestsError

from .. import dhscale
from ..paths import resolve_in_dir
from ..state import FileSpec
from ..tasks import UncertaintyRequest, UncertaintyResult, uncertainty_task
from .base import ZOOM_OPTS, AnalysisView, dh_scale_widget, frames_text, placeholder, plot_pane

#: Reference choices besides the other files.
LABEL_REFERENCE = "a label of the same file"
DESCRIPTOR_REFERENCE = "a descriptor file (.npz)"
DESCRIPTOR_SUFFIXES = (".npz", ".npy")
DH_DIM = hv.Dimension("dH", label="dH (nats)")
#: Cells (x, y) of the error-against-dH histogram.
ERROR_GRID = (160, 100)
ERROR_DIM = hv.Dimension("error", label="force error (eV/Å)")


def error_image(result: UncertaintyResult, mode: str = "linear") -> hv.DynamicMap:
    """The (dH, error) cloud rasterised by Datashader (count of atoms per pixel); dH on
    ``mode``'s scale (:mod:`dashboard.dhscale`)."""
    points = hv.Points(pd.DataFrame({"dH": dhscale.forward(result.dh, mode),
                                     "error": result.error}), [DH_DIM, ERROR_DIM])
    # a coarse grid (a 2-D histogram, re-binned on zoom): thousands of atoms stay visible
    # as cells, and each atom is counted once (spreading would count it several times)
    # the grid is fixed (no PlotSize stream): with it, the first draw binned at the
    # plot's pixel size (1-4 atoms per cell, the cloud hardly visible) and a redraw at
    # the grid's, so the same data looked different before and after a toggle
    return rasterize(points, dynamic=True, width=ERROR_GRID[0], height=ERROR_GRID[1],
                     streams=[hv.streams.RangeXY]).opts(
        cmap="Blues", cnorm="log", colorbar=True, clabel="atoms per cell", tools=["hover"],
        hover_tooltips=[("atoms", "@image")])


def running_table(result: UncertaintyResult, mode: str = "linear") -> pd.DataFrame:
    """Bins with atoms in their window, on the axes of the cloud: ``dH`` (bin centre, on
    ``mode``'s scale), ``dH_nats``, ``error`` (mean error), ``std_error``, ``count``."""
    bins = result.bins().rename(columns={"dH_center": "dH", "mean_error": "error"})
    bins = bins[bins["count"] > 0].reset_index(drop=True)
    return bins.assign(dH_nats=bins["dH"], dH=dhscale.forward(bins["dH"].to_numpy(), mode))


def running_curve(result: UncertaintyResult, mode: str = "linear") -> hv.Curve:
    """Running average of the error against the dH bin centres (empty windows dropped)."""
    return hv.Curve(running_table(result, mode), DH_DIM,
                    [ERROR_DIM, "std_error", "count", "dH_nats"],
                    label="running average").opts(
        color="#d62728", line_width=3, tools=["hover"],
        hover_tooltips=[("dH (nats)", "@dH_nats{0.000}"), ("mean error (eV/Å)", "@error{0.000}"),
                        ("std (eV/Å)", "@std_error{0.000}"), ("atoms", "@count")])


def running_spread(result: UncertaintyResult, mode: str = "linear") -> hv.Spread:
    """Mean +- one standard deviation of the errors in each window."""
    return hv.Spread(running_table(result, mode), DH_DIM, [ERROR_DIM, "std_error"]).opts(
        color="#d62728", alpha=0.15, line_width=0)


_FORCE_ARRAYS: dict[tuple, tuple[str, ...]] = {}


def force_arrays_of(spec: FileSpec) -> tuple[str, ...]:
    """The per-atom ``forces*`` arrays (n, 3) of the first frame of a chosen file (empty
    when it has fewer than two, or cannot be read): what makes the file usable here.
    Remembered by path, size and modification time."""
    from quests_core.io import iter_frames

    try:
        stat = os.stat(spec.path)
    except OSError:
        return ()
    key = (spec.path, stat.st_size, stat.st_mtime_ns, spec.type_map, spec.topology)
    if key not in _FORCE_ARRAYS:
        names: tuple[str, ...] = ()
        try:
            frame = next(iter(iter_frames(spec.path, index=0, type_map=spec.type_map or None,
                                          validate=False, topology=spec.topology or None)))
            names = tuple(uq.force_arrays(frame.atoms.arrays))
        except Exception:  # noqa: BLE001 - unreadable here: the Run says why
            names = ()
        _FORCE_ARRAYS[key] = names if len(names) >= 2 else ()
    return _FORCE_ARRAYS[key]


class UncertaintyView(AnalysisView):
    """Force error against dH, with the running average."""

    title = "Uncertainty"
    task = staticmethod(uncertainty_task)
    controls = ("reference", "reference_label", "test_label", "descriptor_file", "forces_pred",
                "forces_ref", "n_bins", "window", "error_quantile")
    name_hints = ("force", "model", "uq", "test")

    reference = param.Selector(default=LABEL_REFERENCE,
                               objects=[LABEL_REFERENCE, DESCRIPTOR_REFERENCE],
                               doc="Training set the test atoms are compared with.")
    reference_label = param.String(default="train",
                                   doc="Label of the training structures (same file).")
    test_label = param.String(default="", doc="Label of the test structures (empty: every "
                                              "structure, less the training label).")
    descriptor_file = param.String(default="", doc="Descriptor file (.npz) in the data "
                                                   "directory, for that reference choice.")
    forces_pred = param.String(default="", doc="Per-atom array of predicted forces (empty: "
                                               "the file's two forces* arrays).")
    forces_ref = param.String(default="", doc="Per-atom array of reference forces.")
    n_bins = param.Integer(default=uq.DEFAULT_BINS, bounds=(1, 500),
                           doc="Uniform dH bins of the running average.")
    window = param.Number(default=uq.DEFAULT_WINDOW, bounds=(0.01, 10.0), step=0.05,
                          doc="Half-width of each averaging window (bin widths).")
    error_quantile = param.Number(default=uq.DEFAULT_ERROR_QUANTILE, bounds=(0.01, 0.99),
                                  step=0.01, doc="Errors above this quantile are high.")
    result = param.ClassSelector(class_=UncertaintyResult, allow_None=True)

    def preferred(self, names: list[str]) -> list[str]:
        """Files whose first frame carries two per-atom force arrays (the only ones this
        analysis can use), then the name hints."""
        with_forces = [n for n in names if force_arrays_of(self.spec(n))]
        return with_forces + [n for n in super().preferred(names) if n not in with_forces]

    def _on_files(self, *_) -> None:
        super()._on_files()
        others = [f.name for f in self.state.files if f.name != self.source]
        self.param.reference.objects = [LABEL_REFERENCE, *others, DESCRIPTOR_REFERENCE]
        if self.reference not in self.param.reference.objects:
            self.reference = LABEL_REFERENCE

    @param.depends("source", watch=True)
    def _on_source(self) -> None:
        self._on_files()

    def request(self) -> tuple[list[FileSpec], UncertaintyRequest]:
        spec = self.spec()
        files = [spec]
        descriptor_path = descriptor_name = ""
        if self.reference == LABEL_REFERENCE:
            mode = "label"
            if not self.reference_label.strip():
                raise QuestsError("missing reference: give the label of the training "
                                  "structures, or choose a reference file")
        elif self.reference == DESCRIPTOR_REFERENCE:
            mode = "descriptors"
            descriptor_name = self.descriptor_file.strip()
            if not descriptor_name:
                raise QuestsError("missing reference: name a descriptor file (.npz) in the "
                                  "data directory")
            if not descriptor_name.lower().endswith(DESCRIPTOR_SUFFIXES):
                raise QuestsError(f"{descriptor_name}: a descriptor file ends with .npz or .npy")
            descriptor_path = str(resolve_in_dir(self.state.data_dir, descriptor_name))
        else:
            mode = "file"
            if self.reference == spec.name:
                raise QuestsError(f"{spec.name}: the reference must differ from the test file")
            files.append(self.spec(self.reference))
        if bool(self.forces_pred.strip()) != bool(self.forces_ref.strip()):
            raise QuestsError("name both force arrays (predicted and reference) or neither")
        return files, UncertaintyRequest(
            settings=self.base_settings(), reference_mode=mode,
            reference_label=self.reference_label.strip(), test_label=self.test_label.strip(),
            forces_pred=self.forces_pred.strip(), forces_ref=self.forces_ref.strip(),
            n_bins=int(self.n_bins), window=float(self.window),
            quantile=float(self.error_quantile), descriptor_path=descriptor_path,
            descriptor_name=descriptor_name,
        )

    def describe(self, result: UncertaintyResult) -> str:
        return (f"{len(result.dh):,} atoms of {result.source} ({frames_text(result.frames)}) "
                f"against {result.reference} ({result.n_reference:,} environments)")

    def plot(self) -> hv.DynamicMap:
        """Datashaded error-vs-dH cloud, running average (+- std) and the line dH = 0."""
        res = self.result
        mode = self.state.dh_scale
        overlay = (error_image(res, mode) * running_spread(res, mode) * running_curve(res, mode)
                   * hv.VLine(0.0).opts(color="black", line_dash="dashed", line_width=1))
        return overlay.opts(
            title=f"Force error against dH ({len(res.dh):,} atoms of {res.source})",
            responsive=True, height=460, show_grid=True, legend_position="top_left",
            xlabel=dhscale.axis_label("dH (nats)", mode), ylabel="force error (eV/Å)",
            hooks=[dhscale.axis_hook("x", mode)], framewise=True, **ZOOM_OPTS,
        )

    def recall_text(self) -> str:
        """How many high-error atoms dH > 0 flags (markdown)."""
        r, res = self.result.recall, self.result
        return (
            f"dH > 0 (environment not covered by {res.reference}) flags "
            f"**{r.frac_flagged:.1%}** of the {len(res.dh):,} atoms. High error: above the "
            f"{res.quantile:.0%} quantile, {r.threshold:.3g} eV/Å ({r.n_high:,} atoms); dH > 0 "
            f"catches **{r.recall:.1%}** of them (precision {r.precision:.1%}). Forces "
            f"compared: `{res.forces[0]}` - `{res.forces[1]}`; k = {res.k}, cutoff = "
            f"{res.cutoff:g} Å, h = {res.h:.4g} 1/Å. Red: mean error of the atoms within "
            f"{res.running.window:g} bin widths ({res.running.width:.3g} nats) of each of "
            f"{len(res.running.centers)} bin centres, band +- one standard deviation."
        )

    def body(self):
        res = self.result
        if res is None:
            return placeholder("Choose a file with two per-atom force arrays, the training "
                               "set (a label, a file or a descriptor file) and press **Run**.")
        return pn.Column(
            dh_scale_widget(self.state),
            pn.bind(lambda _: plot_pane(self.plot(), name="uncertainty-plot"),
                    self.state.param.dh_scale),
            pn.pane.Markdown(self.recall_text(), name="uncertainty-recall"),
            pn.widgets.Tabulator(res.bins().round(4), show_index=False, disabled=True,
                                 pagination="local", page_size=10, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )

    def widget_types(self) -> dict:
        return {"window": pn.widgets.FloatInput, "error_quantile": pn.widgets.FloatInput}
