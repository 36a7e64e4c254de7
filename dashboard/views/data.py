"""Data view: choose files (inside the data directory, or uploaded), give them
roles and labels, set k, cutoff and bandwidth, and compute with a progress bar.

The sidebar holds the controls (:meth:`DataView.sidebar`); the Data tab
(:meth:`DataView.panel`) shows the chosen files and the per-file and
per-frame results.
"""

from __future__ import annotations

import html
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import panel as pn
import param
from panel.reactive import ReactiveHTML

from quests_core.errors import QuestsError

from ..compute import topology_problem, type_map_warning
from ..jobs import ComputeJob
from ..paths import (
    DATA_NAMES,
    DATA_SUFFIXES,
    TOPOLOGY_ONLY_SUFFIXES,
    check_upload_size,
    default_selection,
    is_data_file,
    is_lammps_file,
    is_md_trajectory,
    is_topology_file,
    resolve_in_dir,
    safe_upload_name,
    scan_data_files,
    upload_too_large_message,
)
from ..state import ROLES
from .base import View
from .job_panel import JobPanel, Outcome

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

#: Upload file types offered by the browser's file dialog (the data picker's endings and
#: the topology files of MD trajectories).
UPLOAD_ACCEPT = ",".join(DATA_SUFFIXES + TOPOLOGY_ONLY_SUFFIXES)
#: Width (px) of the files table's columns other than the file name.
TABLE_WIDTHS = {"role": 76, "label": 44, "frames": 56, "types": 50, "topology": 56,
                "remove": 28}
#: Prefix of the names of this session's uploads (``upload/<name>``).
UPLOAD_PREFIX = "upload/"
#: The files table: names wrap inside their column, never a sideways scroll.
TABLE_CSS = """
.tabulator { font-size: 12px !important; }
.tabulator .tabulator-cell { white-space: normal !important; overflow-wrap: anywhere; }
.tabulator .tabulator-col-title { white-space: normal !important; overflow-wrap: anywhere; }
"""


#: The Data tab's frames table: per-frame columns shown, in order (the results first, so
#: that they are on screen beside the sidebar), with their headers (words and units).
#: Columns of no information for the files at hand (no energies, no labels, every H
#: exact) are left out by :func:`frames_table`.
FRAME_COLUMNS = {
    "source": "file", "frame": "frame", "time": "time (ps)",
    "H": "H (nats)", "H_stderr": "H std. error (nats)", "mean_dH": "mean dH (nats)",
    "frac_novel": "fraction dH > 0", "n_atoms": "atoms", "elements": "elements",
    "volume_per_atom": "V/atom (Å³)", "temperature": "T (K)", "energy": "E (eV, frame)",
    "label": "label", "generation": "generation",
}


def frames_table(frames: pd.DataFrame) -> pd.DataFrame:
    """The per-frame results as the Data tab shows them: the file and its own frame
    number (0-based) first, headers in words with units, values to 4 decimals, and
    without the columns that say nothing here (all empty, all NaN, generation -1
    everywhere, H standard errors all 0 because every H is exact) or only serve the
    program (path, atom offsets, the global structure number)."""
    keep = []
    for column in FRAME_COLUMNS:
        if column not in frames:
            continue
        values = frames[column]
        if column in ("time", "temperature", "energy") and values.isna().all():
            continue
        if column == "label" and (values.astype(str) == "").all():
            continue
        if column == "generation" and (values < 0).all():
            continue
        if column == "H_stderr" and (values.fillna(0) == 0).all():
            continue
        keep.append(column)
    return frames[keep].round(4).rename(columns=FRAME_COLUMNS)


def split_topology_cell(text: str) -> tuple[str, str]:
    """A topology cell of the files table as (file, MDAnalysis format): ``"posfor.top as
    TOP"`` gives ``("posfor.top", "TOP")``, a plain file name no format. The format is
    checked where the topology is read (one line listing MDAnalysis's formats)."""
    text = str(text or "").strip()
    head, sep, fmt = text.rpartition(" as ")
    if sep and head.strip() and fmt.strip() and " " not in fmt.strip():
        return head.strip(), fmt.strip().upper()
    return text, ""


def default_role(name: str) -> str:
    """A first guess of a file's role from its name."""
    low = name.lower()
    if "solid" in low and ("ref" in low or "400k" in low or "crystal" in low):
        return "solid reference"
    if any(w in low for w in ("traj", "melt", "quench", "md", "simulation", "failed")):
        return "trajectory"
    if any(w in low for w in ("train", "dataset", "reference", "ref")):
        return "reference"
    return "test"


#: CSS class of the upload widget whose files the browser checks (see :class:`UploadGuard`).
UPLOAD_CLASS = "quests-upload"
#: Browser side of :class:`UploadGuard`: Bokeh's FileInput reads a chosen file whole
#: and sends it base64-encoded in one websocket message, which the server drops (and
#: the session with it) past its message limit. Wrap its ``load_files`` so a file over
#: the cap is never read: the input is cleared and the guard tells the server, which
#: answers with a notification.
UPLOAD_GUARD_JS = """
window.__questsUploadGuard = {
  limit: () => data.max_bytes,
  refuse: (name, size) => { data.refused = JSON.stringify([name, size, Date.now()]) },
};
const FileInput = window.Bokeh && window.Bokeh.Models.get("FileInput");
const proto = FileInput != null ? FileInput.prototype.default_view.prototype : null;
if (proto != null && !proto.__questsGuarded) {
  const load_files = proto.load_files;
  proto.load_files = async function (files) {
    const guard = window.__questsUploadGuard;
    const classes = this.model.css_classes || [];
    if (guard != null && classes.includes("UPLOAD_CLASS")) {
      for (const file of files) {
        if (file.size > guard.limit()) {
          this.input_el.value = "";
          guard.refuse(file.name, file.size);
          return;
        }
      }
    }
    return load_files.call(this, files);
  };
  proto.__questsGuarded = true;
}
""".replace("UPLOAD_CLASS", UPLOAD_CLASS)


class UploadGuard(ReactiveHTML):
    """Refuses an upload over the cap in the browser, before it is read or sent.

    Holds the cap (``max_bytes``) for the page's script; a refused file comes back
    as ``refused`` (JSON ``[name, size, time]``). Invisible.
    """

    max_bytes = param.Integer(default=50_000_000, doc="Largest upload in bytes.")
    refused = param.String(default="", doc="JSON [name, size, time] of the last refused file.")

    _template = '<div id="guard" style="display: none"></div>'
    _scripts = {"render": UPLOAD_GUARD_JS}


def upload_problem(filename, content) -> str:
    """Why an upload message is malformed ("" when it is a file name and bytes).

    The browser sends one file as a name and its bytes; anything else (a list of
    files, None, a dict, text, a name with a NUL byte or folders) is refused.
    """
    shown = html.escape(str(filename)[:120]) if isinstance(filename, str) else "upload"
    if isinstance(content, (list, tuple)) or isinstance(filename, (list, tuple)):
        n = len(content) if isinstance(content, (list, tuple)) else len(filename)
        return f"upload refused: {n} files in one message; upload one file at a time"
    if not isinstance(filename, str) or not filename.strip():
        return (f"upload refused: malformed upload message (file name is "
                f"{type(filename).__name__}, expected text)")
    if "\x00" in filename:
        return f"{shown!r}: upload refused: the file name contains a NUL byte"
    if not isinstance(content, (bytes, bytearray, memoryview)):
        return (f"{shown}: upload refused: malformed upload message (content is "
                f"{type(content).__name__}, expected bytes)")
    return ""


class DataView(View):
    """File picker, roles, settings and the Compute button."""

    title = "Data"

    job_mode = param.Selector(default="process", objects=["process", "thread"],
                              doc="Run computations in a worker process or a thread.")
    figure_tabs = param.List(default=[], doc="Tabs whose plots 'a tab's figures' can save "
                             "(set by the app).")
    tab_figures = param.Callable(
        default=None, doc="``tab_figures(tab) -> {name: HoloViews object}``: the plots a "
        "tab shows now (set by the app), for 'a tab's figures'.")
    analysis_sections = param.Callable(
        default=None, doc="The analysis tabs' results as report sections (set by the app), "
        "for 'Save report' and 'Save figures'.")

    def __init__(self, **params):
        super().__init__(**params)
        self.jobs = JobPanel(  # the pipeline: Compute, Cancel, progress, status
            state=self.state, on_run=self.compute, on_done=self._use_results,
            on_cancelled=lambda: self._no_results("was cancelled", "Cancelled",
                                                  "Computation cancelled"),
            on_failed=lambda error: self._no_results(f"failed ({error})", f"Failed: {error}",
                                                     error),
            run_label="Compute", run_width=None, status_name="status",
            status="Pick files, give them roles, then Compute.")
        self._type_warnings: dict[tuple, str] = {}
        self._topology_warnings: dict[tuple, str] = {}
        self.file_select = pn.widgets.MultiSelect(
            label="Files in the data directory", options=self._list_files(), size=4,
            sizing_mode="stretch_width",
        )
        self.listing_note = pn.pane.Markdown(
            self._listing_text, name="listing-note", visible=bool(self._listing_text),
            margin=(0, 10), styles={"font-size": "12px", "color": "#8a5300"})
        self.refresh_button = pn.widgets.Button(label="Refresh", color="light", width=80)
        self.role_select = pn.widgets.Select(label="Role", options=list(ROLES), value="test",
                                             width=130)
        self.label_input = pn.widgets.TextInput(label="Label (optional)", width=130,
                                                placeholder="keep file labels")
        self.add_button = pn.widgets.Button(label="Add selected files", color="primary",
                                            sizing_mode="stretch_width")
        max_mb = float(self.state.max_upload_mb)
        self.upload = pn.widgets.FileInput(accept=UPLOAD_ACCEPT, multiple=False,
                                           sizing_mode="stretch_width",
                                           css_classes=[UPLOAD_CLASS],
                                           label=f"Or upload a file (at most {max_mb:g} MB)")
        self.upload_guard = UploadGuard(max_bytes=int(max_mb * 1e6), height=0, width=0,
                                        margin=0, sizing_mode="fixed")
        self.types_input = pn.widgets.TextInput(
            label="LAMMPS types of added files", placeholder="e.g. 1:O,2:H or O H",
            sizing_mode="stretch_width",
        )
        self.files_table = pn.widgets.Tabulator(
            self._table_value(), show_index=False, sizing_mode="stretch_width",
            layout="fit_columns", widths=dict(TABLE_WIDTHS), max_height=320,
            formatters={"file": {"type": "textarea"}, "role": {"type": "textarea"}},
            editors={"file": None, "role": {"type": "list", "values": list(ROLES)},
                     "label": "input", "frames": "input", "types": "input",
                     "topology": "input", "remove": None},
            titles={"remove": "", "topology": "topo\u00adlogy"},  # breaks at the hyphen
            text_align={"remove": "center"},
            sortable=False, selectable=False,
            stylesheets=[TABLE_CSS],
        )
        self.h_used = pn.pane.Markdown("", name="h-used", margin=(0, 5), align="center",
                                       styles={"font-size": "12px"})
        # wiring
        self.refresh_button.on_click(lambda _: self.refresh())
        self.add_button.on_click(lambda _: self.add_selected())
        self.upload.param.watch(self._on_upload, "value")
        self.upload_guard.param.watch(self._on_refused, "refused")
        self.files_table.on_edit(self._on_edit)
        self.files_table.on_click(self._on_remove, column="remove")
        self.state.param.watch(self._on_files, "files")
        self.state.param.watch(self._on_results, "results")
        self.state.settings.param.watch(self._on_timestep, "lammps_timestep_fs")

    # -------------------------------------------------------------------- files

    def _list_files(self) -> list[str]:
        """The data directory's structure files; entries that cannot be listed (symlink
        loops, unreadable, names too long) are counted in :attr:`listing_note`."""
        note = ""
        files: list[str] = []
        if self.state.data_dir:
            try:
                listing = scan_data_files(self.state.data_dir)
                files, note = listing.files, listing.summary()
            except QuestsError as exc:
                self.state.notify("error", str(exc))
                note = html.escape(str(exc))
        if hasattr(self, "listing_note"):
            self.listing_note.object, self.listing_note.visible = note, bool(note)
        else:
            self._listing_text = note
        return files

    def refresh(self) -> None:
        self.file_select.options = self._list_files()

    def add_file(self, relative: str, role: str | None = None, label: str = "",
                 index: str = ":", type_map: str | None = None) -> None:
        """Add a file of the data directory (path checked: never outside it).

        The same file may be added again with another role, label or frames: it
        becomes a second entry (``name #2``). ``type_map`` (LAMMPS files) defaults to
        the sidebar's "LAMMPS types of added files".
        """
        path = resolve_in_dir(self.state.data_dir, relative)
        self._add(str(path), relative, role or default_role(relative), label, index, type_map)

    def _add(self, path: str, name: str, role: str, label: str, index: str = ":",
             type_map: str | None = None) -> None:
        """Add one entry to the state; say so when it was already there or when its LAMMPS
        types will be read as H, He, ..."""
        lammps = is_lammps_file(path)
        if type_map is None:
            type_map = self.types_input.value.strip() if lammps else ""
        before = len(self.state.files)
        spec = self.state.add_file(path, name, role, label, index=index, type_map=type_map,
                                   timestep_fs=self.state.settings.lammps_timestep_fs)
        if len(self.state.files) == before:
            self.state.notify("info", f"{spec.name} is already chosen as {spec.role} with "
                              "these frames; add it with another role or change its frames")
            return
        if lammps:
            warning = self.type_warning(spec)
            if warning:
                self.state.notify("warning", warning)
        warning = self.topology_warning(spec)
        if warning:
            self.state.notify("warning", warning)

    def topology_path(self, text: str, topology_format: str = "") -> str:
        """The server path of a topology named in the files table: a file of the data
        directory, or ``upload/<name>`` of this session's uploads ("" for none). With a
        ``topology_format`` (MDAnalysis's name) any ending is accepted.

        Raises
        ------
        QuestsError
            For a path outside those folders, a missing file, or a file that is no
            topology (one line).
        """
        text = str(text or "").strip()
        if not text:
            return ""
        if text.startswith(UPLOAD_PREFIX) and self.state.upload_dir:
            path = resolve_in_dir(self.state.upload_dir, text[len(UPLOAD_PREFIX):])
        else:
            path = resolve_in_dir(self.state.data_dir, text)
        if not topology_format and not is_topology_file(path):
            raise QuestsError(f"{text}: not a topology file; use a PDB, GRO, PSF, LAMMPS data, "
                              "Amber prmtop or GROMACS tpr file, or name the format of "
                              f"another: '{text} as TOP' (an Amber .top)")
        return str(path)

    def topology_warning(self, spec) -> str:
        """The one-line problem with a chosen MD trajectory's topology ("" when it names
        every atom, or for other files; :func:`dashboard.compute.topology_problem`).
        Cached per file, topology and their modification times (without a topology, the
        trajectory's folder's: a topology put next to it counts): the check parses the
        topology."""
        if not is_md_trajectory(spec.path):
            return ""
        stamps = []
        for path in (spec.path, spec.topology or os.path.dirname(spec.path)):
            try:
                stamps.append(os.stat(path).st_mtime_ns)
            except OSError:
                stamps.append(-1)
        key = (spec.path, spec.topology, spec.type_map, spec.name, *stamps)
        if key not in self._topology_warnings:
            self._topology_warnings[key] = topology_problem(
                spec, self.state.topology_name(spec.topology))
        return self._topology_warnings[key]

    def type_warning(self, spec) -> str:
        """The warning for a chosen LAMMPS file whose types will be read as H, He, ...
        ("" when it has element names or a type map). Cached per file and type map: the
        check reads the file's first frame."""
        if not is_lammps_file(spec.path):
            return ""
        try:
            stamp = os.stat(spec.path).st_mtime_ns
        except OSError:
            return ""
        key = (spec.path, stamp, spec.type_map, spec.name)
        if key not in self._type_warnings:
            self._type_warnings[key] = type_map_warning(spec)
        return self._type_warnings[key]

    def file_warnings(self) -> list[str]:
        """Warnings about the chosen files that hold until the user fixes them."""
        found = [self.type_warning(f) for f in self.state.files]
        found += [self.topology_warning(f) for f in self.state.files]
        return [w for w in found if w]

    def preselect_defaults(self) -> list[str]:
        """On a fresh session, choose a reference and a trajectory whose names suggest those
        roles (see :func:`dashboard.paths.default_selection`); returns their names."""
        if self.state.files:
            return []
        chosen = []
        for relative, role in default_selection(list(self.file_select.options)):
            try:
                self.add_file(relative, role)
                chosen.append(relative)
            except QuestsError as exc:
                self.state.notify("error", str(exc))
        if chosen:
            self.jobs.status = "Ready: press Compute, or choose other files first."
        return chosen

    def add_selected(self) -> None:
        chosen = list(self.file_select.value)
        if not chosen:
            self.state.notify("warning", "Select one or more files in the list first.")
            return
        for rel in chosen:
            try:
                self.add_file(rel, self.role_select.value, self.label_input.value.strip())
            except QuestsError as exc:
                self.state.notify("error", str(exc))

    def save_upload(self, filename: str, content: bytes, role: str | None = None) -> Path:
        """Store an upload in the session's private folder and add it.

        Raises :class:`QuestsError` (one line) for a malformed message (see
        :func:`upload_problem`), a file over the cap or empty, or a name that is not
        a structure file; folders in the name are dropped (the file stays in the
        session's folder).
        """
        problem = upload_problem(filename, content)
        if problem:
            raise QuestsError(problem)
        content = bytes(content)
        max_bytes = int(self.state.max_upload_mb * 1e6)
        check_upload_size(html.escape(filename[:120]), len(content), max_bytes)
        name = safe_upload_name(filename)
        topology_only = name.lower().endswith(TOPOLOGY_ONLY_SUFFIXES)
        if not is_data_file(name) and not topology_only:
            raise QuestsError(
                f"{name}: not a structure file the dashboard reads; use one of "
                f"{', '.join(DATA_SUFFIXES + TOPOLOGY_ONLY_SUFFIXES)} or "
                f"{'/'.join(DATA_NAMES)}"
            )
        folder = Path(self.state.upload_dir)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        path.write_bytes(content)
        if topology_only:  # no structures of its own: it names an uploaded trajectory's atoms
            self.state.notify("info", f"{UPLOAD_PREFIX}{name} stored: a trajectory uploaded "
                              "with the same name uses it, or name it in the files table's "
                              "'topology' column")
            self._recheck_topologies()
            return path
        self._add(str(path), f"{UPLOAD_PREFIX}{name}", role or self.role_select.value,
                  self.label_input.value.strip())
        return path

    def _recheck_topologies(self) -> None:
        """After a topology arrived: say which chosen trajectories still lack one."""
        for spec in self.state.files:
            warning = self.topology_warning(spec)
            if warning:
                self.state.notify("warning", warning)

    def _on_upload(self, event) -> None:
        """An upload arrived from the browser: store it, or say in one line why not."""
        content, filename = event.new, self.upload.filename
        if content is None or (isinstance(content, (bytes, list)) and not content
                               and not filename):
            return  # the input was cleared
        shown = html.escape(str(filename)[:120])
        try:
            if isinstance(filename, str) and ("/" in filename or "\\" in filename):
                raise QuestsError(f"{shown}: upload refused: malformed upload message "
                                  "(a browser sends a file name without folders)")
            self.save_upload(filename, content)
            self.state.notify("success", f"Uploaded {shown}")
        except QuestsError as exc:
            self.state.notify("error", str(exc))
        except OSError as exc:
            self.state.notify("error", f"{shown}: could not store upload: {exc}")
        except Exception as exc:  # a bad message must never end the session
            log.exception("upload %r failed", filename)
            self.state.notify("error", f"{shown}: upload refused ({type(exc).__name__})")

    def _on_refused(self, event) -> None:
        """The browser refused a file over the cap before sending it: say so."""
        try:
            name, size, _ = json.loads(event.new)
            name, size = html.escape(str(name)[:120]), float(size)
        except (TypeError, ValueError):
            return
        self.state.notify("error", upload_too_large_message(
            name, size, int(self.state.max_upload_mb * 1e6)), duration=15000)

    def _on_edit(self, event) -> None:
        table = self.state.files_table()
        try:
            name = table["file"].iat[event.row]
            column = {"frames": "index", "types": "type_map"}.get(event.column, event.column)
            value = "" if event.value is None else str(event.value).strip()
            if column == "index":
                value = value or ":"
            changes = {column: value}
            if column == "topology":  # "posfor.top as TOP": a format the ending does not say
                path, fmt = split_topology_cell(value)
                changes = {"topology": self.topology_path(path, fmt), "topology_format": fmt}
            self.state.update_file(name, **changes)
            spec = next(f for f in self.state.files if f.name == name)
            if column == "type_map" and not value:
                warning = self.type_warning(spec)
                if warning:
                    self.state.notify("warning", warning)
            if column in ("topology", "type_map"):
                warning = self.topology_warning(spec)
                if warning:
                    self.state.notify("warning", warning)
        except (QuestsError, IndexError, TypeError, StopIteration) as exc:
            self.state.notify("error", str(exc))
            self._on_files()

    def _on_remove(self, event) -> None:
        table = self.state.files_table()
        if 0 <= event.row < len(table):
            self.state.remove_file(table["file"].iat[event.row])

    def _table_value(self):
        """The chosen files with a last column of remove marks (a plain column, so that it
        keeps its width: Tabulator's button columns take a share of the free width)."""
        table = self.state.files_table()
        table["remove"] = "✖"
        return table

    def _on_files(self, *_) -> None:
        # only a real change redraws the table: after a cell edit it already shows the new
        # value, and a redraw then would drop what the user is typing in the next cell
        table = self._table_value()
        shown = self.files_table.value
        if shown is None or not table.equals(shown.reset_index(drop=True)):
            self.files_table.value = table

    def _on_timestep(self, event) -> None:
        """The LAMMPS time step applies to every chosen file (and to files added later)."""
        try:
            for spec in list(self.state.files):
                if spec.timestep_fs != event.new:
                    self.state.update_file(spec.name, timestep_fs=float(event.new))
        except QuestsError as exc:
            self.state.notify("error", str(exc))

    def _on_results(self, *_) -> None:
        res = self.state.results
        self.h_used.object = "" if res is None else (
            f"h used: **{res.h:.4g}\u00a01/Å**")

    # ------------------------------------------------------------------ compute

    async def compute(self) -> ComputeJob | None:
        """Run the computation off the event loop; results land in the state."""
        if self.jobs.busy():
            return None
        if not self.state.files:
            self.state.notify("error", "No files chosen: add files from the list or upload one.")
            return None
        try:
            settings = self.state.settings.frozen()
        except QuestsError as exc:  # e.g. a species that is not an element symbol
            self.state.notify("error", f"Settings: {exc}")
            return None
        return await self.jobs.drive(self.jobs.start(self.state.files, settings,
                                                     mode=self.job_mode))

    def _use_results(self, res) -> Outcome:
        """A finished Compute: its results into the state."""
        self.state.results = res
        self.state.selected_structure = None
        self.state.results_note = ""
        self.state.notify("success", f"Computed {res.n_atoms:,} atoms")
        for warning in res.warnings:  # after it: the pop-up left on screen is a warning
            self.state.notify("warning", warning)
        return Outcome(
            f"Done in {res.timings.get('total', float('nan')):.1f} s: "
            f"{len(res.frames):,} frames, {res.n_atoms:,} atoms, h = {res.h:.4g} 1/Å")

    def _no_results(self, what: str, status: str, notice: str) -> Outcome:
        """After a Compute that gave no results: the results still shown are older ones,
        of other inputs maybe; the Data tab says so above them."""
        res = self.state.results
        if res is not None:
            self.state.results_note = (
                f"The last Compute {what}. The results below are from the computation "
                "before it, on " + ", ".join(f.name for f in res.files) + ".")
        return Outcome(status, notice or "computation failed")

    def cancel(self) -> None:
        self.jobs.cancel()

    # ------------------------------------------------------------------ layouts

    def sidebar(self) -> list:
        """The served page's sidebar: the files, then the settings and Compute."""
        files, settings = self.sidebar_parts()
        return [*files, *settings]

    def sidebar_parts(self) -> tuple[list, list]:
        """The sidebar in two parts: choosing files, and settings with Compute (a notebook
        cell lays them side by side)."""
        settings = self.state.settings
        k = pn.widgets.IntInput.from_param(settings.param.k, name="k", width=80)
        cutoff = pn.widgets.FloatInput.from_param(settings.param.cutoff, name="Cutoff (Å)",
                                                  step=0.5, width=90)
        mode = pn.widgets.RadioButtonGroup.from_param(
            settings.param.bandwidth_mode, name="Bandwidth", width=150, align="center",
            color="primary", variant="outline")
        bandwidth = pn.widgets.FloatInput.from_param(settings.param.bandwidth,
                                                     name="h (1/Å)", step=0.001, width=90)
        bandwidth.disabled = settings.bandwidth_mode != "fixed"
        settings.param.watch(lambda e: setattr(bandwidth, "disabled", e.new != "fixed"),
                             "bandwidth_mode")
        advanced = pn.Card(
            self.types_input,
            pn.Param(settings,
                     parameters=["species", "precision", "lammps_timestep_fs",
                                 "learning_max_n", "learning_repeats",
                                 "overlap_max_n", "cluster_method", "seed", "exact_entropy",
                                 "cnt_t_melt", "cnt_latent_heat", "cnt_gamma_min",
                                 "cnt_gamma_max", "cnt_v_atom"],
                     widgets={"lammps_timestep_fs": {"type": pn.widgets.FloatInput,
                                                     "step": 0.5}},
                     show_name=False, sizing_mode="stretch_width"),
            title="Advanced settings", collapsed=True, sizing_mode="stretch_width",
        )
        files = [
            pn.pane.Markdown(f"**Data directory:** `{self.state.data_dir}`", margin=(0, 10),
                             styles={"font-size": "12px"}),
            self.file_select,
            self.listing_note,
            pn.Row(self.role_select, self.label_input),
            pn.Row(self.add_button, self.refresh_button),
            self.upload,
            self.upload_guard,
            pn.pane.Markdown("**Chosen files** (edit role, label, frames and an MD "
                             "trajectory's topology in the table)",
                             margin=(0, 10), styles={"font-size": "12px"}),
            self.files_table,
        ]
        compute = [
            pn.Row(k, cutoff, bandwidth, sizing_mode="stretch_width"),
            pn.Row(pn.pane.Markdown("Bandwidth", align="center", margin=(0, 0, 0, 10)), mode,
                   self.h_used, sizing_mode="stretch_width"),
            advanced,
            *self.jobs.stacked(),
        ]
        return files, compute

    def landing_text(self) -> str:
        """What a fresh page says to do (two sentences)."""
        if self.state.files:
            return (
                "### Start here\n"
                "The files chosen in the sidebar are ready: press **Compute** to get the "
                "entropy H of every frame and the dH of every atom against the reference "
                "(dH > 0 marks an environment the reference does not cover). "
                "Then explore the other tabs, or choose other files, roles, frames and "
                "settings in the sidebar and compute again."
            )
        return (
            "### Start here\n"
            "Choose files in the sidebar (select them in the list or upload one), give each a "
            "role (**reference** for the training set, **trajectory** for a run, **test**) "
            "and press **Add selected files**. "
            "Then press **Compute** and explore the entropy H and the per-atom dH (dH > 0: "
            "not covered by the reference) in the other tabs."
        )

    @param.depends("state.results", "state.files", "state.results_note")
    def _results_panel(self):
        res = self.results
        warnings = self.file_warnings()
        alert = [pn.pane.Alert("\n".join(f"- {w}" for w in warnings), alert_type="warning",
                               name="file-warnings", sizing_mode="stretch_width")
                 ] if warnings else []
        if res is None:
            return pn.Column(pn.pane.Markdown(self.landing_text(), name="landing"), *alert,
                             sizing_mode="stretch_width")
        summary = res.summary().round(4)
        frames = frames_table(res.frames)
        info = ("**Files:** " + ", ".join(f"{f.name} ({f.role})" for f in res.files)
                + f"  \n**Reference:** {res.reference}  \n"
                f"**Settings:** {res.settings_text()}  \n"
                f"**Time:** " + ", ".join(f"{k} {v:.1f} s" for k, v in res.timings.items()))
        if self.state.results_note:  # older results than the last Compute: say so first
            alert = [pn.pane.Alert(self.state.results_note, alert_type="danger",
                                   name="results-note", sizing_mode="stretch_width"), *alert]
        notes = []
        if res.warnings:
            notes = [pn.pane.Alert("\n".join(f"- {w}" for w in res.warnings),
                                   alert_type="warning", name="notes",
                                   sizing_mode="stretch_width")]
        return pn.Column(
            *alert,
            self.share_panel(),
            pn.pane.Markdown(info, name="results-info"),
            *notes,
            pn.pane.Markdown("### Files"),
            pn.widgets.Tabulator(summary, show_index=False, disabled=True,
                                 sizing_mode="stretch_width"),
            pn.pane.Markdown("### Frames (each file's own frame numbers, from 0)"),
            pn.widgets.Tabulator(frames, show_index=False, disabled=True,
                                 pagination="remote", page_size=15,
                                 sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )

    # ------------------------------------------------------------ report and figures

    def _analyses(self) -> list:
        return list(self.analysis_sections()) if self.analysis_sections else []

    def figure_widgets(self) -> list:
        """Format, width and height (inches) and DPI of the figures (kept across redraws
        of the results panel)."""
        if not hasattr(self, "_figure_widgets"):
            from ..report import FIGURE_DPI, FIGURE_DPIS, FIGURE_FORMATS, FIGURE_SIDES, FIGURE_SIZE

            self._figure_widgets = [
                pn.widgets.Select(label="Figure format", options={f.upper(): f for f in
                                                                 FIGURE_FORMATS},
                                  value=FIGURE_FORMATS[0], width=90),
                pn.widgets.FloatInput(label="Width (in)", value=FIGURE_SIZE[0],
                                      start=FIGURE_SIDES[0], end=FIGURE_SIDES[1], step=0.5,
                                      width=90),
                pn.widgets.FloatInput(label="Height (in)", value=FIGURE_SIZE[1],
                                      start=FIGURE_SIDES[0], end=FIGURE_SIDES[1], step=0.5,
                                      width=90),
                pn.widgets.IntInput(label="DPI", value=FIGURE_DPI, start=FIGURE_DPIS[0],
                                    end=FIGURE_DPIS[1], step=50, width=80),
            ]
        return self._figure_widgets

    @property
    def share_jobs(self) -> JobPanel:
        """The job panel of "Build": the report or the figures, built off the event loop
        (:func:`dashboard.report.share_task`), then offered by the Download button."""
        if not hasattr(self, "_share_jobs"):
            from ..report import SHARE_KINDS, share_task

            self.share_kind = pn.widgets.RadioButtonGroup(
                options={text: kind for kind, text in SHARE_KINDS.items()}, value="report",
                name="share-kind", color="primary", variant="outline",
                width=430, sizing_mode="fixed", align="end")
            self._share_jobs = JobPanel(
                share_task, state=self.state, title="Share", on_run=self.build_share,
                on_done=self._shared, run_label="Build", run_width=90,
                status="Build the self-contained HTML report of these results (the CLI's "
                       "`quests-dashboard report`), or their figures as PNG or SVG at the "
                       "size and DPI chosen, then press Download.",
                status_name="share-status", busy_text="a report is already being built.")
            self.share_download = pn.widgets.FileDownload(
                file=None, filename="quests_report.html", label="Download", disabled=True,
                color="primary", width=260, css_classes=["share-download"], align="end")
            self.state.param.watch(self._share_outdated, ["results", "dh_scale"])

            self.share_tab = pn.widgets.Select(
                name="Tab", options=list(self.figure_tabs), width=130, sizing_mode="fixed",
                visible=False)

            def figure_options(*_):  # the size and DPI are the figures', not the report's
                for widget in self.figure_widgets():
                    widget.disabled = self.share_kind.value == "report"
                self.share_tab.visible = self.share_kind.value == "tab"

            self.share_kind.param.watch(figure_options, "value")
            figure_options()
        return self._share_jobs

    def share_panel(self) -> pn.viewable.Viewable:
        """Report and figures: what, the figures' options, Build (with progress), Download."""
        jobs = self.share_jobs
        # fixed widths that wrap onto a new row in a narrow notebook cell (a Row of them
        # overlapped there)
        return pn.Column(
            pn.FlexBox(self.share_kind, self.share_tab, *self.figure_widgets(),
                       jobs.run_button, jobs.cancel_button, self.share_download,
                       align_items="flex-end", sizing_mode="stretch_width"),
            jobs.progress_bar, jobs.status_text, sizing_mode="stretch_width",
            name="share")

    def share_job(self, what: str | None = None, tab: str | None = None) -> ComputeJob | None:
        """A job building the report (``what="report"``), the report's figures
        (``"figures"``) or the plots tab ``tab`` shows (``"tab"``); by default the kind
        and tab chosen. None, with a notification, before Compute, for bad figure
        options, a tab without plots or while one is being built."""
        from ..report import share_request

        jobs = self.share_jobs
        if jobs.busy():
            return None
        what = what or self.share_kind.value
        tab = tab or self.share_tab.value
        fmt, width, height, dpi = (w.value for w in self.figure_widgets())
        try:
            figures = (self.tab_figures(tab) if what == "tab" and self.tab_figures else None)
            request = share_request(self.state, what, self._analyses(), formats=(fmt,),
                                    size=(float(width or 0), float(height or 0)),
                                    dpi=int(dpi or 0), figures=figures, tab=tab)
        except QuestsError as exc:
            jobs.refuse(exc)
            return None
        self._clear_download()
        # a tab's plots hold their live streams (zoom, choices): a thread, not a process
        mode = "thread" if what == "tab" else self.job_mode
        return jobs.start([], request, mode=mode)

    async def build_share(self) -> ComputeJob | None:
        """Build the chosen report or figures off the event loop (the Build button)."""
        return await self.share_jobs.drive(self.share_job())

    def build_share_sync(self, what: str, timeout: float = 600.0,
                         tab: str | None = None) -> bytes | None:
        """Build ``what`` (of ``tab``) in the calling thread (scripts and tests): the
        bytes the Download button then gives, or None (refused, failed or cancelled)."""
        job = self.share_jobs.drive_sync(self.share_job(what, tab), timeout)
        return job.result if job is not None and job.state == "done" else None

    def _shared(self, data: bytes) -> Outcome:
        import io

        request = self.share_jobs.job.settings
        size = f"{len(data) / 1e6:.1f} MB" if len(data) >= 1e5 else f"{len(data) / 1e3:.0f} kB"
        self.share_download.param.update(file=io.BytesIO(data), filename=request.filename,
                                         label=f"Download {request.filename} ({size})",
                                         disabled=False)
        return Outcome(f"Built {request.filename} ({size}): press Download.",
                       f"{request.filename} is ready ({size})")

    def _clear_download(self) -> None:
        self.share_download.param.update(file=None, label="Download", disabled=True)

    def _share_outdated(self, *_) -> None:
        """Other results (or another dH scale) than those built: no stale download."""
        if not self.share_download.disabled:
            self._clear_download()
            self.share_jobs.status = "The results changed since the last Build: build again."

    def panel(self) -> pn.viewable.Viewable:
        return pn.Column(self._results_panel, sizing_mode="stretch_width", name="Data")

