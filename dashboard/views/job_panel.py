"""The one job panel of the dashboard: Run and Cancel, a progress bar and a status line.

Every long computation of a tab (the Data tab's Compute, the analysis tabs' Run,
the Stores tab's Write store, the Data tab's report and figures) is a job of a
:class:`dashboard.jobs.JobRunner`, run off the server's event loop. The runner
holds the job's running flag, progress and status (nothing else keeps a copy);
:class:`JobPanel` draws them and owns what happens when the job ends: the three
finish branches (done, cancelled, failed) with their status line and
notification, each tab giving only what is its own (an :class:`Outcome`).

A :class:`JobPanel` is a Panel ``Viewer`` (Panel's "manual threading" pattern: one
component owns value, status and progress): put it in a layout as it is, or lay
its widgets out yourself (:meth:`JobPanel.stacked` for a narrow sidebar).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import panel as pn
import param

from quests_core.errors import QuestsError

from ..jobs import ComputeJob, JobRunner
from ..state import ERROR_MS, AppState, FileSpec


@dataclass(frozen=True)
class Outcome:
    """What a finished job says: its status line and its notification (None: none)."""

    status: str
    notice: str | None = None


class JobPanel(pn.viewable.Viewer):
    """Run / Cancel buttons, progress bar and status line of one kind of job.

    Parameters
    ----------
    task : callable, optional
        Module-level ``task(files, request, report, cancel, n_threads)`` (see
        :class:`dashboard.jobs.ComputeJob`); the Data tab's pipeline when None.
    state : AppState
        The session (its notifications).
    on_run : callable
        What the Run button does (a coroutine function or a plain one): it usually
        checks its inputs and calls :meth:`start` then :meth:`drive`.
    on_done : callable
        ``on_done(result) -> Outcome``: use the result of a finished job.
    on_cancelled, on_failed : callable, optional
        ``on_cancelled() -> Outcome`` and ``on_failed(error) -> Outcome``; by default
        "Cancelled" and "Failed: <error>", with notifications named by :attr:`title`.
    run_label : str
        Label of the Run button.
    status : str
        The status line before the first job.
    show_percent : bool
        Add the percentage to the status while a job runs.
    """

    title = param.String(default="", doc="Who speaks in notifications ('Compression: ...').")
    busy_text = param.String(default="a computation is already running.",
                             doc="Said when Run is pressed during a job.")

    def __init__(self, task: Callable | None = None, *, state: AppState,
                 on_run: Callable[..., Any] | None = None,
                 on_done: Callable[[Any], Outcome],
                 on_cancelled: Callable[[], Outcome] | None = None,
                 on_failed: Callable[[str], Outcome] | None = None,
                 run_label: str = "Run", status: str = "", show_percent: bool = True,
                 status_name: str = "job-status", run_width: int | None = 120,
                 **params):
        super().__init__(**params)
        self.state = state
        self.on_done, self.on_cancelled, self.on_failed = on_done, on_cancelled, on_failed
        self.runner = JobRunner(task, on_finish=self._finish, show_percent=show_percent)
        self.runner.status = status
        button_size = ({"width": run_width} if run_width
                       else {"sizing_mode": "stretch_width"})
        self.run_button = pn.widgets.Button(label=run_label, color="success", **button_size)
        self.cancel_button = pn.widgets.Button(label="Cancel", color="danger", disabled=True,
                                               width=90)
        self.progress_bar = pn.indicators.Progress(value=0, max=100, bar_color="success",
                                                   sizing_mode="stretch_width")
        self.status_text = pn.pane.Markdown(status, name=status_name, margin=(0, 10))
        if on_run is not None:
            self.run_button.on_click(self._click(on_run))
        self.cancel_button.on_click(lambda _: self.cancel())
        self.runner.param.watch(self._show, ["running", "progress", "status"])

    @staticmethod
    def _click(on_run: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(on_run):
            async def clicked(_event=None):
                await on_run()
        else:
            def clicked(_event=None):
                on_run()
        return clicked

    # ------------------------------------------------------------------ the job's state

    @property
    def running(self) -> bool:
        return self.runner.running

    @property
    def progress(self) -> int:
        return self.runner.progress

    @property
    def status(self) -> str:
        return self.runner.status

    @status.setter
    def status(self, text: str) -> None:
        self.runner.status = text

    @property
    def job(self) -> ComputeJob | None:
        """The last job started."""
        return self.runner.job

    def _prefix(self) -> str:
        return f"{self.title}: " if self.title else ""

    def _show(self, *_) -> None:
        self.status_text.object = self.runner.status
        self.progress_bar.value = int(self.runner.progress)
        self.run_button.disabled = self.runner.running
        self.cancel_button.disabled = not self.runner.running

    # --------------------------------------------------------------------------- run

    def busy(self) -> bool:
        """Whether a job of this panel runs (then the user is told so)."""
        if self.running:
            self.state.notify("warning", f"{self._prefix()}{self.busy_text}")
        return self.running

    def start(self, files: list[FileSpec], request: Any,
              mode: str = "process") -> ComputeJob | None:
        """A job of the panel's task (started by :meth:`drive`), or None (with a
        notification) while another job of this panel runs."""
        return None if self.busy() else self.runner.start(files, request, mode=mode)

    def refuse(self, exc: QuestsError | str, notice: str | None = None) -> None:
        """Inputs that cannot start a job: say why in the status line and a notification."""
        self.status = f"Not started: {exc}"
        self.state.notify("error", notice or f"{self._prefix()}{exc}", duration=ERROR_MS)

    async def drive(self, job: ComputeJob | None) -> ComputeJob | None:
        """Run ``job`` off the event loop until it ends (None passes through)."""
        return None if job is None else await self.runner.drive(job)

    def drive_sync(self, job: ComputeJob | None, timeout: float = 600.0) -> ComputeJob | None:
        """Run ``job`` to its end in the calling thread (scripts and tests)."""
        return None if job is None else self.runner.drive_sync(job, timeout)

    def cancel(self, text: str = "Cancelling") -> bool:
        """Ask the running job to stop; returns whether there was one."""
        return self.runner.cancel(text)

    def _finish(self, job: ComputeJob) -> None:
        if job.state == "done" and job.result is not None:
            outcome, level = self.on_done(job.result), "success"
        elif job.state == "cancelled":
            outcome = (self.on_cancelled() if self.on_cancelled is not None
                       else Outcome("Cancelled", f"{self._prefix()}cancelled"))
            level = "info"
        else:
            error = job.error or "the computation failed"
            outcome = (self.on_failed(error) if self.on_failed is not None
                       else Outcome(f"Failed: {error}", f"{self._prefix()}{error}"))
            level = "error"
        self.status = outcome.status
        if outcome.notice:
            self.state.notify(level, outcome.notice,
                              **({"duration": ERROR_MS} if level == "error" else {}))

    # ------------------------------------------------------------------------ layout

    def stacked(self) -> list:
        """The widgets for a narrow column: the buttons, then the bar, then the status."""
        return [pn.Row(self.run_button, self.cancel_button, sizing_mode="stretch_width"),
                self.progress_bar, self.status_text]

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.Row(self.run_button, self.cancel_button, self.progress_bar,
                   sizing_mode="stretch_width"),
            self.status_text, sizing_mode="stretch_width")
