"""Follow mode of the Trajectory view: watch a file that a running simulation appends.

:class:`FollowSession` (one per browser session) holds the followed file, the
rule's controls, the per-frame table so far and two Bokeh
``ColumnDataSource`` s that the view draws: ``follow-frames`` (one row per
frame) and ``follow-flags`` (the frames the rule flags).

How a frame gets to the page
----------------------------
A background thread (:meth:`FollowSession.start`) computes the reference once
(the Data tab's reference files through the descriptor cache,
:func:`dashboard.compute.file_descriptors`, bandwidth by
:func:`dashboard.compute.choose_bandwidth`; without reference files the first
frame of the followed file), then runs :class:`quests_core.follow.Follower`
and :func:`quests_core.watch.frame_report` for each new complete frame, and
puts one row per frame on a queue. It never touches the document: it asks the
document for a next-tick callback (``Document.add_next_tick_callback``, the
one thread-safe document call), which drains the queue on the server's event
loop (:meth:`FollowSession.drain`): the new rows are appended with
``ColumnDataSource.stream`` (only the new rows go to the browser), the rule
(:class:`quests_core.watch.NoveltyRule`) is fed their fraction novel and
flagged frames are streamed into the flags source. Without a document (tests,
notebooks without a server) :meth:`drain` is called by the caller.

Invariants and memory
---------------------
- Each frame is computed once (one :func:`frame_report` call) and drained
  once; the work per new frame does not depend on the number of frames shown.
  Changing the rule's controls re-evaluates the rule over the stored fractions
  (O(frames), no kernel work); switching the dH scale re-transforms the stored
  columns.
- Memory: the reference descriptors, one frame being computed, and one row of
  numbers per frame (no per-atom data is kept).
- A truncated or replaced file (a new run) empties the table and the rule; the
  reference stays the one computed at Start.
- A bad frame ends the follow with its one-line message in :attr:`status`;
  the server keeps serving. :meth:`stop` (also on session close) sets the stop
  event and joins the thread: no thread outlives the session.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import param

from quests_core.errors import QuestsError
from quests_core.follow import DEFAULT_INTERVAL, FOLLOW_FORMATS, Follower
from quests_core.watch import (
    DEFAULT_NOVEL_FRACTION,
    DEFAULT_PATIENCE,
    NoveltyRule,
    Reference,
    frame_report,
    load_reference,
)

from . import dhscale
from .state import AppState

__all__ = ["FRAME_COLUMNS", "FollowSession", "followable_files"]

log = logging.getLogger("dashboard")

#: Columns of the per-frame table (and of the ``follow-frames`` source, which adds
#: ``x`` and the plotted dH coordinates ``t_mean_dH``, ``t_max_dH``): ``seconds`` is
#: the time spent on the frame, ``computed_at`` the Unix time its numbers were ready.
FRAME_COLUMNS = ("frame", "time", "n_atoms", "H", "H_stderr", "mean_dH", "max_dH",
                 "frac_novel", "seconds", "computed_at")
#: Columns of the ``follow-flags`` source.
FLAG_COLUMNS = ("frame", "time", "x", "H", "mean_dH", "max_dH", "frac_novel", "t_mean_dH",
                "t_max_dH", "novel_run")
#: Seconds :meth:`FollowSession.stop` waits for the thread.
JOIN_TIMEOUT = 30.0


def followable_files(data_dir: str) -> list[str]:
    """Relative paths of the data directory's files that can be followed (extxyz, xyz,
    LAMMPS text dumps), as :func:`dashboard.paths.list_data_files` lists them."""
    from quests_core.io import EXTENSION_FORMATS

    from .paths import list_data_files

    out = []
    for rel in list_data_files(data_dir):
        name = rel.lower()
        ext = name.rsplit(".", 1)[-1] if "." in name else ""
        if EXTENSION_FORMATS.get(ext) in FOLLOW_FORMATS:
            out.append(rel)
    return out


def _empty(columns) -> dict[str, list]:
    return {c: [] for c in columns}


class FollowSession(param.Parameterized):
    """The follow mode of one session: file, rule, table so far, background thread.

    Parameters
    ----------
    state : AppState
        The session (data directory, chosen files, compute settings, dH scale).
    interval : float
        Seconds between two looks at the file (the follower's poll).
    """

    state = param.ClassSelector(class_=AppState, doc="The session state.")
    path = param.Selector(default=None, objects=[], allow_None=True, label="File to follow",
                          doc="A trajectory file of the data directory being written.")
    novel_fraction = param.Number(
        default=DEFAULT_NOVEL_FRACTION, bounds=(0.0, 1.0), inclusive_bounds=(True, False),
        step=0.01, label="Flag: fraction dH > 0 above",
        doc="A frame counts as novel when more than this fraction of its atoms has dH > 0.")
    patience = param.Integer(default=DEFAULT_PATIENCE, bounds=(1, 10_000),
                             label="for N frames in a row",
                             doc="Frames flagged once this many consecutive frames are novel.")
    interval = param.Number(default=DEFAULT_INTERVAL, bounds=(0.01, 60.0),
                            doc="Seconds between two looks at the file.")
    running = param.Boolean(default=False, doc="A follow is in progress.")
    status = param.String(default="stopped", doc="One line: what the follow is doing.")
    n_frames = param.Integer(default=0, doc="Frames shown.")
    reference_text = param.String(default="", doc="The reference in use and its bandwidth.")
    bandwidth = param.Number(default=None, allow_None=True,
                             doc="Bandwidth h of dH (1/Å) of the current follow.")
    first_flag = param.Integer(default=None, allow_None=True,
                               doc="First frame the rule flagged (None: none yet).")
    xcol = param.Selector(default="frame", objects=["frame", "time"],
                          doc="x axis of the plots: time when the frames carry one.")

    def __init__(self, **params):
        from bokeh.models import ColumnDataSource

        super().__init__(**params)
        self.frames_source = ColumnDataSource(
            data=_empty((*FRAME_COLUMNS, "x", "t_mean_dH", "t_max_dH")), name="follow-frames")
        self.flags_source = ColumnDataSource(data=_empty(FLAG_COLUMNS), name="follow-flags")
        self._rows: list[dict[str, Any]] = []
        self._flags: list[int] = []  # row indices flagged
        self._runs: list[int] = []  # the rule's run length after each row
        self._rule = NoveltyRule(self.novel_fraction, self.patience)
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._doc = None
        self._scheduled = threading.Event()
        self._name = ""
        self._ended = False
        self._drain_lock = threading.Lock()
        if self.state is not None:
            self.refresh_files()
            self.state.param.watch(self._on_scale, "dh_scale")
            self.state.param.watch(self._on_files, "files")

    # ------------------------------------------------------------------ files

    def refresh_files(self) -> None:
        """List the followable files of the data directory; default: the Data tab's
        trajectory file (when it is one of them), else the current choice."""
        if self.state is None or not self.state.data_dir:
            return
        try:
            files = followable_files(self.state.data_dir)
        except (OSError, QuestsError) as exc:
            self.status = f"cannot list the data directory: {exc}"
            return
        current = self.path
        self.param.path.objects = files
        chosen = self._data_tab_trajectory(files)
        if current in files:
            self.path = current
        elif chosen is not None:
            self.path = chosen
        else:
            self.path = files[0] if files else None

    def _on_files(self, _event) -> None:
        """A trajectory chosen in the Data tab becomes the default file (when idle)."""
        if self.running:
            return
        chosen = self._data_tab_trajectory(list(self.param.path.objects))
        if chosen is not None:
            self.path = chosen

    def _data_tab_trajectory(self, files: list[str]) -> str | None:
        root = Path(self.state.data_dir).resolve()
        for spec in self.state.files:
            if spec.role != "trajectory":
                continue
            try:
                rel = Path(spec.path).resolve().relative_to(root).as_posix()
            except ValueError:
                continue
            if rel in files:
                return rel
        return None

    # -------------------------------------------------------------- lifecycle

    @property
    def alive(self) -> bool:
        """Whether the background thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, path: str | None = None, doc: Any = None) -> None:
        """Start following ``path`` (relative to the data directory; default
        :attr:`path`) from its first frame; the table starts empty.

        ``doc``: the Bokeh document to push updates to (default: the current one,
        ``pn.state.curdoc``; None: the caller calls :meth:`drain`).
        """
        import panel as pn

        self.stop()
        rel = self.path if path is None else path
        if rel is None:
            self.status = "stopped: choose a file to follow"
            return
        from .paths import resolve_in_dir

        try:
            full = str(resolve_in_dir(self.state.data_dir, rel))
        except QuestsError as exc:
            self.status = f"stopped: {exc}"
            return
        self._doc = doc if doc is not None else pn.state.curdoc
        self._clear()
        self.reference_text, self.bandwidth = "", None
        self._name = rel
        self._ended = False
        self._queue = queue.Queue()
        self._stop_event = threading.Event()
        specs = [f for f in self.state.files if f.role == "reference"]
        traj = next((f for f in self.state.files
                     if f.role == "trajectory" and Path(f.path) == Path(full)), None)
        run = self.state.settings.frozen()
        self.running = True
        self.status = f"following {rel}: starting"
        self._thread = threading.Thread(
            target=self._work, name=f"follow {rel}", daemon=True,
            args=(full, rel, specs, traj.type_map if traj else "", run, self._queue,
                  self._stop_event),
        )
        self._thread.start()

    def stop(self, wait: bool = True, timeout: float = JOIN_TIMEOUT) -> None:
        """Stop the follow (thread-safe; idempotent).

        ``wait``: join the thread (at most ``timeout`` s) and show "stopped" at
        once; else the thread ends at its next check (within a poll, or after
        the frame being computed) and :meth:`drain` shows "stopped" then (the
        Stop button: the event loop is never blocked).
        """
        self._stop_event.set()
        if not wait:
            return
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():  # pragma: no cover - a frame longer than the timeout
                log.warning("follow thread of %s still running after %.0f s", self._name,
                            timeout)
        self._thread = None
        if self.running:
            self.drain()
            self.running = False
            if not self._ended:
                self.status = f"stopped ({self.n_frames} frames of {self._name})"

    # ------------------------------------------------------------- the thread

    def _work(self, full: str, rel: str, specs, type_map: str, run, q: queue.Queue,
              stop: threading.Event) -> None:
        """Reference, then one row per complete frame; never touches the document."""
        from quests_core.dataset import frame_record

        try:
            reference = None
            if specs:
                q.put(("status", f"following {rel}: computing the reference descriptors"))
                self._wake()
                reference = self._reference(specs, run, stop)
                q.put(("reference", reference))
            follower = Follower(full, type_map=type_map or None, interval=self.interval,
                                stop=stop, notify=lambda m: (q.put(("message", m)),
                                                             self._wake()))
            q.put(("status", f"following {rel}: 0 frames, waiting"))
            self._wake()
            timestep_fs = (run.options.lammps_timestep_fs
                           if follower.format == "lammps-dump-text" else None)
            rule = NoveltyRule()  # the rule shown lives in drain(); frame_report needs one
            restarts = 0
            for item in follower:
                if item.restarts != restarts:
                    restarts = item.restarts
                    q.put(("restart", restarts))
                if reference is None:
                    reference = load_reference([item.atoms], run.core)
                    reference = Reference(reference.x, reference.h,
                                          f"frame {item.frame} of {rel}", reference.settings)
                    q.put(("reference", reference))
                report = frame_report(item.atoms, reference, rule, item.frame,
                                      exact_entropy=run.options.exact_entropy, source=rel)
                s = report.stats
                record = frame_record(item.atoms, rel, item.frame, timestep_fs=timestep_fs)
                q.put(("row", {
                    "frame": int(report.frame), "time": float(record["time"]),
                    "n_atoms": int(s.n_atoms), "H": float(s.H),
                    "H_stderr": float(s.H_stderr), "mean_dH": float(s.mean_dH),
                    "max_dH": float(s.max_dH), "frac_novel": float(s.frac_novel),
                    "seconds": float(report.seconds), "computed_at": time.time(),
                }))
                self._wake()
        except QuestsError as exc:
            q.put(("error", str(exc)))
        except Exception as exc:  # noqa: BLE001 - the server must keep serving
            log.exception("follow of %s failed", rel)
            q.put(("error", f"{rel}: {type(exc).__name__}: {exc}"))
        finally:
            q.put(("end", None))
            self._wake()

    def _reference(self, specs, run, stop: threading.Event) -> Reference:
        """The Data tab's reference files: descriptors through the cache, bandwidth by
        the Data tab's rule."""
        from .compute import Progress, choose_bandwidth, file_descriptors, load_files

        prog = Progress(None, stop)
        loaded = load_files(specs, prog)
        xs = [np.asarray(file_descriptors(item.dataset, run.core, prog, name=item.spec.name),
                         dtype=np.float64) for item in loaded]
        h = choose_bandwidth(run.core, loaded)
        names = ", ".join(s.name for s in specs)
        return Reference(np.concatenate(xs) if len(xs) > 1 else xs[0], h, names, run.core)

    def _wake(self) -> None:
        """Ask the document to drain the queue on its event loop (thread-safe)."""
        doc = self._doc
        if doc is None or self._scheduled.is_set():
            return
        self._scheduled.set()
        try:
            doc.add_next_tick_callback(self._drain_in_doc)
        except Exception:  # noqa: BLE001 - the session is gone: nothing to update
            self._scheduled.clear()

    def _drain_in_doc(self) -> None:
        from panel.io.state import set_curdoc

        self._scheduled.clear()
        with set_curdoc(self._doc):
            self.drain()

    # ---------------------------------------------------------- on the loop

    def drain(self) -> int:
        """Apply what the thread queued: new rows streamed, flags, status. Returns the
        number of new rows."""
        with self._drain_lock:
            rows: list[dict[str, Any]] = []
            status = None
            count = 0
            while True:
                try:
                    kind, value = self._queue.get_nowait()
                except queue.Empty:
                    break
                if kind == "row":
                    rows.append(value)
                    count += 1
                    if not self._ended:
                        status = None  # the newest news is a frame
                    continue
                self._append(rows)
                rows = []
                if kind == "restart":
                    self._clear()
                    status = f"following {self._name}: the file restarted"
                elif kind == "status":
                    status = value
                elif kind == "reference":
                    self.bandwidth = float(value.h)
                    self.reference_text = (f"reference: {value.description}, {len(value.x)} "
                                           f"atoms; h = {value.h:.4g} 1/Å")
                elif kind == "message":
                    log.info(value)
                elif kind == "error":
                    self._ended = True
                    status = value
                elif kind == "end":
                    self.running = False
                    if not self._ended:
                        self._ended = True
                        status = f"stopped ({self.n_frames} frames of {self._name})"
            self._append(rows)
            if status is not None:
                self.status = status
            elif self.running and self._rows:
                self.status = self._following_line()
            return len(rows)

    def _following_line(self) -> str:
        last = self._rows[-1] if self._rows else None
        if last is None:
            return f"following {self._name}: 0 frames, waiting"
        t = last["time"]
        at = f"t = {t:g} ps" if math.isfinite(t) else f"frame {last['frame']}"
        n = len(self._rows)
        return f"following {self._name}: {n} frame{'s' if n != 1 else ''}, last at {at}, waiting"

    def _append(self, rows: list[dict[str, Any]]) -> None:
        """Stream ``rows`` into the sources and feed them to the rule (O(len(rows)))."""
        if not rows:
            return
        if not self._rows:
            self.xcol = "time" if math.isfinite(rows[0]["time"]) else "frame"
        mode = self.state.dh_scale if self.state is not None else "asinh"
        start = len(self._rows)
        self._rows.extend(rows)
        new = {c: [r[c] for r in rows] for c in FRAME_COLUMNS}
        new["x"] = [float(r[self.xcol]) for r in rows]
        for c in ("mean_dH", "max_dH"):
            new[f"t_{c}"] = dhscale.forward(np.asarray(new[c], dtype=np.float64),
                                            mode).tolist()
        self.frames_source.stream(new)
        flagged = []
        for i, r in enumerate(rows, start):
            if self._rule.update(r["frac_novel"]):
                flagged.append(i)
            self._runs.append(self._rule.run)
        if flagged:
            self._flags.extend(flagged)
            self.flags_source.stream(self._flag_data(flagged, mode))
            if self.first_flag is None:
                self.first_flag = int(self._rows[flagged[0]]["frame"])
        self.n_frames = len(self._rows)

    def _flag_data(self, indices: list[int], mode: str) -> dict[str, list]:
        """Columns of the flags source for the rows ``indices`` (O(len(indices)))."""
        rows = [self._rows[i] for i in indices]
        data = {c: [r[c] for r in rows] for c in ("frame", "time", "H", "mean_dH", "max_dH",
                                                   "frac_novel")}
        data["x"] = [float(r[self.xcol]) for r in rows]
        for c in ("mean_dH", "max_dH"):
            data[f"t_{c}"] = dhscale.forward(np.asarray(data[c], dtype=np.float64),
                                             mode).tolist()
        data["novel_run"] = [self._runs[i] for i in indices]
        return data

    def _clear(self) -> None:
        self._rows = []
        self._flags = []
        self._runs = []
        self._rule = NoveltyRule(self.novel_fraction, self.patience)
        self.frames_source.data = _empty(self.frames_source.data.keys())
        self.flags_source.data = _empty(FLAG_COLUMNS)
        self.first_flag = None
        self.n_frames = 0

    # ------------------------------------------------------ control changes

    @param.depends("novel_fraction", "patience", watch=True)
    def _on_rule(self) -> None:
        """Re-evaluate the rule over the stored fractions (no kernel work)."""
        with self._drain_lock:
            self._rule = NoveltyRule(self.novel_fraction, self.patience)
            self._flags, self._runs = [], []
            for i, r in enumerate(self._rows):
                if self._rule.update(r["frac_novel"]):
                    self._flags.append(i)
                self._runs.append(self._rule.run)
            mode = self.state.dh_scale if self.state is not None else "asinh"
            self.flags_source.data = (self._flag_data(self._flags, mode) if self._flags
                                      else _empty(FLAG_COLUMNS))
            self.first_flag = (int(self._rows[self._flags[0]]["frame"]) if self._flags
                               else None)

    def _on_scale(self, event) -> None:
        with self._drain_lock:
            if not self._rows:
                return
            data = dict(self.frames_source.data)
            for c in ("mean_dH", "max_dH"):
                data[f"t_{c}"] = dhscale.forward(np.asarray(data[c], dtype=np.float64),
                                                 event.new).tolist()
            self.frames_source.data = data
            self.flags_source.data = (self._flag_data(self._flags, event.new) if self._flags
                                      else _empty(FLAG_COLUMNS))

    # ------------------------------------------------------------------ table

    def table(self) -> pd.DataFrame:
        """The per-frame table so far (:data:`FRAME_COLUMNS` plus ``flagged``)."""
        frame = pd.DataFrame(self._rows, columns=list(FRAME_COLUMNS))
        flagged = np.zeros(len(frame), dtype=bool)
        flagged[self._flags] = True
        frame["flagged"] = flagged
        return frame
