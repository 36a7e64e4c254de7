"""Data view: choose files (inside the data directory, or uploaded), give them
roles and labels, set k, cutoff and bandwidth, and compute with a progress bar.

The sidebar holds the controls (:meth:`DataView.sidebar`); the Data tab
(:meth:`DataView.panel`) shows the chosen files and the per-file and
per-frame results.
"""

from __future__ import annotations

from pathlib import Path

import panel as pn
import param

from quests_core.errors import QuestsError

from ..compute import ComputeJob
from ..paths import check_upload_size, list_data_files, resolve_in_dir, safe_upload_name
from ..state import ROLES
from .base import View

#: Upload file types offered by the browser's file dialog.
UPLOAD_ACCEPT = ".extxyz,.xyz,.traj,.lammpstrj,.dump,.cif,.vasp,.gz"


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


class DataView(View):
    """File picker, roles, settings and the Compute button."""

    title = "Data"

    job_mode = param.Selector(default="process", objects=["process", "thread"],
                              doc="Run computations in a worker process or a thread.")

    def __init__(self, **params):
        super().__init__(**params)
        self._job: ComputeJob | None = None
        self.file_select = pn.widgets.MultiSelect(
            label="Files in the data directory", options=self._list_files(), size=8,
            sizing_mode="stretch_width",
        )
        self.refresh_button = pn.widgets.Button(label="Refresh list", color="light",
                                                width=110)
        self.role_select = pn.widgets.Select(label="Role", options=list(ROLES), value="test",
                                             width=150)
        self.label_input = pn.widgets.TextInput(label="Label (optional)", width=150,
                                                placeholder="keep file labels")
        self.add_button = pn.widgets.Button(label="Add selected files", color="primary",
                                            sizing_mode="stretch_width")
        max_mb = float(self.state.max_upload_mb)
        self.upload = pn.widgets.FileInput(accept=UPLOAD_ACCEPT, multiple=False,
                                           sizing_mode="stretch_width", label="Upload a file")
        self.upload_note = pn.pane.Markdown(f"Upload a structure file (at most {max_mb:g} MB).",
                                            margin=(0, 10))
        self.files_table = pn.widgets.Tabulator(
            self.state.files_table(), show_index=False, sizing_mode="stretch_width",
            editors={"file": None, "role": {"type": "list", "values": list(ROLES)},
                     "label": "input", "frames": "input"},
            buttons={"remove": "✖"}, height=200,
        )
        self.compute_button = pn.widgets.Button(label="Compute", color="success",
                                                sizing_mode="stretch_width")
        self.cancel_button = pn.widgets.Button(label="Cancel", color="danger",
                                               disabled=True, width=90)
        self.progress = pn.indicators.Progress(value=0, max=100, sizing_mode="stretch_width",
                                               bar_color="success")
        self.status = pn.pane.Markdown(self.state.status, name="status", margin=(0, 10))
        # wiring
        self.refresh_button.on_click(lambda _: self.refresh())
        self.add_button.on_click(lambda _: self.add_selected())
        self.upload.param.watch(self._on_upload, "value")
        self.files_table.on_edit(self._on_edit)
        self.files_table.on_click(self._on_remove, column="remove")
        self.compute_button.on_click(self._on_compute)
        self.cancel_button.on_click(lambda _: self.cancel())
        self.state.param.watch(self._on_files, "files")
        self.state.param.watch(self._on_status, ["status", "progress", "running"])

    # -------------------------------------------------------------------- files

    def _list_files(self) -> list[str]:
        if not self.state.data_dir:
            return []
        try:
            return list_data_files(self.state.data_dir)
        except QuestsError as exc:
            self.state.notify("error", str(exc))
            return []

    def refresh(self) -> None:
        self.file_select.options = self._list_files()

    def add_file(self, relative: str, role: str | None = None, label: str = "") -> None:
        """Add a file of the data directory (path checked: never outside it)."""
        path = resolve_in_dir(self.state.data_dir, relative)
        self.state.add_file(str(path), relative, role or default_role(relative), label)

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
        """Store an upload in the session's private folder and add it."""
        max_bytes = int(self.state.max_upload_mb * 1e6)
        check_upload_size(filename or "upload", len(content), max_bytes)
        name = safe_upload_name(filename or "upload.extxyz")
        folder = Path(self.state.upload_dir)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        path.write_bytes(content)
        self.state.add_file(str(path), f"upload/{name}", role or self.role_select.value,
                            self.label_input.value.strip())
        return path

    def _on_upload(self, event) -> None:
        if not event.new:
            return
        try:
            self.save_upload(self.upload.filename, event.new)
            self.state.notify("success", f"Uploaded {self.upload.filename}")
        except QuestsError as exc:
            self.state.notify("error", str(exc))
        except OSError as exc:
            self.state.notify("error", f"{self.upload.filename}: could not store upload: {exc}")

    def _on_edit(self, event) -> None:
        table = self.state.files_table()
        try:
            name = table["file"].iat[event.row]
            column = {"frames": "index"}.get(event.column, event.column)
            self.state.update_file(name, **{column: str(event.value)})
        except (QuestsError, IndexError, TypeError) as exc:
            self.state.notify("error", str(exc))
            self._on_files()

    def _on_remove(self, event) -> None:
        table = self.state.files_table()
        if 0 <= event.row < len(table):
            self.state.remove_file(table["file"].iat[event.row])

    def _on_files(self, *_) -> None:
        self.files_table.value = self.state.files_table()

    # ------------------------------------------------------------------ compute

    def _on_status(self, *_) -> None:
        self.status.object = self.state.status
        self.progress.value = int(self.state.progress)
        self.compute_button.disabled = self.state.running
        self.cancel_button.disabled = not self.state.running

    def _job_progress(self, job: ComputeJob) -> None:
        self.state.progress = int(round(100 * job.fraction))
        pct = f" ({100 * job.fraction:.0f}%)" if job.state == "running" else ""
        self.state.status = f"{job.text}{pct}"

    async def _on_compute(self, _event=None) -> None:
        await self.compute()

    async def compute(self) -> ComputeJob | None:
        """Run the computation off the event loop; results land in the state."""
        if self.state.running:
            self.state.notify("warning", "A computation is already running.")
            return None
        if not self.state.files:
            self.state.notify("error", "No files chosen: add files from the list or upload one.")
            return None
        job = ComputeJob(self.state.files, self.state.settings.as_dict(), mode=self.job_mode)
        self._job = job
        self.state.running = True
        self.state.progress = 0
        self.state.status = "Starting"
        try:
            await job.run_async(self._job_progress)
        finally:
            self.state.running = False
        self.finish(job)
        return job

    def finish(self, job: ComputeJob) -> None:
        """Put a finished job's outcome into the state (results or a notification)."""
        if job.state == "done" and job.result is not None:
            res = job.result
            self.state.results = res
            self.state.selected_structure = None
            self.state.progress = 100
            self.state.status = (
                f"Done in {res.timings.get('total', float('nan')):.1f} s: "
                f"{len(res.frames):,} frames, {res.n_atoms:,} atoms, h = {res.h:.4g} 1/Å"
            )
            self.state.notify("success", f"Computed {res.n_atoms:,} atoms")
            for warning in res.warnings:
                self.state.notify("warning", warning)
        elif job.state == "cancelled":
            self.state.progress = 0
            self.state.status = "Cancelled"
            self.state.notify("info", "Computation cancelled")
        else:
            self.state.progress = 0
            self.state.status = f"Failed: {job.error}"
            self.state.notify("error", job.error or "computation failed", duration=0)

    def cancel(self) -> None:
        if self._job is not None and not self._job.finished:
            self._job.cancel()
            self.state.status = "Cancelling"

    # ------------------------------------------------------------------ layouts

    def sidebar(self) -> list:
        settings = pn.Param(
            self.state.settings,
            parameters=["k", "cutoff", "bandwidth_mode", "bandwidth"],
            widgets={"k": pn.widgets.IntInput, "cutoff": pn.widgets.FloatInput,
                     "bandwidth": {"type": pn.widgets.FloatInput, "step": 0.001,
                                   "name": "Bandwidth h (1/Å)"},
                     "bandwidth_mode": {"type": pn.widgets.RadioButtonGroup,
                                        "name": "Bandwidth"}},
            show_name=False, sizing_mode="stretch_width",
        )
        advanced = pn.Card(
            pn.Param(self.state.settings,
                     parameters=["learning_max_n", "learning_repeats", "overlap_max_n",
                                 "cluster_method", "seed"],
                     show_name=False, sizing_mode="stretch_width"),
            title="Advanced", collapsed=True, sizing_mode="stretch_width",
        )
        return [
            pn.pane.Markdown(f"**Data directory:** `{self.state.data_dir}`", margin=(0, 10)),
            self.file_select,
            pn.Row(self.role_select, self.label_input),
            pn.Row(self.add_button, self.refresh_button),
            self.upload_note,
            self.upload,
            pn.pane.Markdown("**Chosen files** (edit role and label in the table)",
                             margin=(0, 10)),
            self.files_table,
            pn.pane.Markdown("**Settings** (cutoff in Å, h in 1/Å)", margin=(0, 10)),
            settings,
            advanced,
            pn.Row(self.compute_button, self.cancel_button),
            self.progress,
            self.status,
        ]

    @param.depends("state.results")
    def _results_panel(self):
        res = self.results
        if res is None:
            return pn.pane.Markdown(
                "### Start here\n"
                "1. Select files in the sidebar and give each a role: **reference** (training "
                "set), **test**, **trajectory** or **solid reference**.\n"
                "2. Set k, the cutoff (Å) and the bandwidth h (1/Å), or the volume rule.\n"
                "3. Press **Compute**. Then open the other tabs.\n\n"
                "dH (nats) of every atom is computed against the reference files; "
                "dH > 0 marks an environment the reference does not cover (novel)."
            )
        summary = res.summary().round(4)
        frames = res.frames.drop(columns=[c for c in ("path", "elements") if c in res.frames])
        info = (f"**Reference:** {res.reference}  \n"
                f"**Settings:** k = {res.k}, cutoff = {res.cutoff:g} Å, h = {res.h:.4g} 1/Å  \n"
                f"**Time:** " + ", ".join(f"{k} {v:.1f} s" for k, v in res.timings.items()))
        return pn.Column(
            pn.pane.Markdown(info, name="results-info"),
            pn.pane.Markdown("### Files"),
            pn.widgets.Tabulator(summary, show_index=False, disabled=True,
                                 sizing_mode="stretch_width"),
            pn.pane.Markdown("### Frames (H, mean dH in nats)"),
            pn.widgets.Tabulator(frames.round(4), show_index=False, disabled=True,
                                 pagination="remote", page_size=15,
                                 sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )

    def panel(self) -> pn.viewable.Viewable:
        return pn.Column(self._results_panel, sizing_mode="stretch_width", name="Data")

