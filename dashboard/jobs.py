"""Jobs of the dashboard: computations off the server's event loop.

:class:`ComputeJob` runs one task (by default the Data tab's
:func:`dashboard.pipeline.pipeline_task`) for one session, by default in a
separate worker process so that the Numba kernels (which hold the GIL) never
freeze the server's event loop, i.e. never freeze other browser sessions.
Progress comes back over a queue; cancellation is an Event checked between
blocks (the core functions accept ``cancel=``), with a hard stop of the worker
as a fallback. At most :data:`MAX_JOBS` jobs run at once per server; a standby
worker process is started ahead (:meth:`ComputeJob.prepare_standby`).

:class:`JobRunner` is the one job lifecycle the views use (the Data, Stores and
analysis tabs): start a task with frozen settings, follow its progress and
status as Param parameters, cancel it, and hand the finished job to the view.

A task is a module-level ``task(files, settings, report, cancel, n_threads)``
(picklable for worker processes); ``settings`` is a frozen, picklable object
(:class:`dashboard.state.RunSettings` or a task's request of
:mod:`dashboard.tasks`).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import queue as queue_mod
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import param

from quests_core.errors import Cancelled, QuestsError

from .compute import format_time_left, time_left
from .pipeline import pipeline_task
from .state import FileSpec

#: Most jobs running at once in this server (others wait, shown as queued).
MAX_JOBS = max(2, min(4, os.cpu_count() or 2))
_JOB_SLOTS = threading.BoundedSemaphore(MAX_JOBS)
#: Niceness added to worker processes (the server's event loop keeps priority).
WORKER_NICE = 5


def _worker_main(task, files, settings, out_queue, cancel, n_threads, nice: int = 0) -> None:
    """Entry point of a worker process (or thread) running ``task``.

    ``task(files, settings, report, cancel, n_threads)`` is a module-level function
    (picklable for worker processes); its result, progress and errors go back
    through ``out_queue`` as ``(kind, payload, text)``.
    """
    if nice:
        try:  # computations yield the CPU to the server that answers the browsers
            os.nice(nice)
        except OSError:
            pass

    def report(fraction: float, text: str) -> None:
        out_queue.put(("progress", float(fraction), str(text)))

    try:
        result = task(files, settings, report, cancel, n_threads)
        report(1.0, "Sending the results")
    except Cancelled:
        out_queue.put(("cancelled", None, "Cancelled"))
    except QuestsError as exc:
        text = str(exc)
        for spec in files:  # name files as the user knows them, not by their server path
            text = text.replace(spec.path, spec.name)
        out_queue.put(("error", None, text))
    except MemoryError:
        out_queue.put(("error", None, "out of memory: choose fewer or smaller files"))
    except Exception as exc:  # noqa: BLE001 - reported to the page, never crash silently
        tb = traceback.format_exc(limit=3).strip().splitlines()[-1]
        out_queue.put(("error", None, f"computation failed: {type(exc).__name__}: {exc} ({tb})"))
    else:
        out_queue.put(("result", result, "Done"))


def _leave_process(out_queue) -> None:
    """End a worker process as soon as its last message is in the pipe.

    Nothing is left to do after the last message, but a normal interpreter exit of
    a process that imported Numba, BLAS and pandas runs their thread shutdowns and
    atexit handlers, which took more than 30 s on the loaded 2-core CI machine (the
    reaper then saw a live worker long after its result). The queue's feeder thread
    is flushed first, so no message is lost; then the process exits at once.
    """
    try:
        out_queue.close()
        out_queue.join_thread()
    finally:
        os._exit(0)


def _process_main(task, files, settings, out_queue, cancel, n_threads, nice: int = 0) -> None:
    """Entry point of a worker process: :func:`_worker_main`, then leave at once."""
    try:
        _worker_main(task, files, settings, out_queue, cancel, n_threads, nice)
    finally:
        _leave_process(out_queue)


def _process_standby(receive, out_queue, cancel, nice: int = 0, ready=None) -> None:
    """Entry point of a standby worker process: :func:`_worker_standby`, then leave."""
    try:
        _worker_standby(receive, out_queue, cancel, nice, ready)
    finally:
        _leave_process(out_queue)


def _worker_standby(receive, out_queue, cancel, nice: int = 0, ready=None) -> None:
    """Entry point of a standby worker process (see :meth:`ComputeJob.prepare_standby`).

    Imports everything and loads the compiled kernels ahead of time, then runs the one
    job it receives through ``receive`` (``(task, files, settings, n_threads, environ)``,
    the server's environment at the time of the job) with :func:`_worker_main`.
    """
    if nice:
        try:
            os.nice(nice)
        except OSError:
            pass
    try:  # machine code from Numba's on-disk cache into memory, unless a job is waiting
        import importlib

        from .kernel_warmup import KERNEL_MODULES

        for name in KERNEL_MODULES:
            if receive.poll():
                break
            importlib.import_module(name).warm_up()
    except Exception:  # noqa: BLE001 - the job itself will report any real problem
        pass
    if ready is not None:
        ready.set()
    try:
        task, files, settings, n_threads, environ = receive.recv()
    except (EOFError, OSError):  # the server went away before giving a job
        return
    for key in set(os.environ) - set(environ):
        del os.environ[key]
    os.environ.update(environ)  # e.g. QUESTS_CACHE_DIR as the server has it now
    _worker_main(task, files, settings, out_queue, cancel, n_threads, 0)


class ComputeJob:
    """One computation for one session, run in a worker process or thread.

    Parameters
    ----------
    files : list of FileSpec
        The files of the task.
    settings
        Frozen settings of the task (:class:`dashboard.state.RunSettings` for the
        pipeline, a request of :mod:`dashboard.tasks` for the other tabs).
    mode : {"process", "thread"}
        ``"process"`` (default) keeps the server's event loop free even while
        Numba kernels hold the GIL; ``"thread"`` is lighter (notebooks, tests).
    n_threads : int, optional
        Numba/BLAS threads of the job.
    task : callable, optional
        Module-level ``task(files, settings, report, cancel, n_threads)`` run instead
        of the Data tab's pipeline (the analysis tabs and the Stores tab use this).

    Notes
    -----
    Worker processes are spawned (no fork of the threaded server). Spawning costs
    an interpreter start and the imports (0.5-1 s on 2 cores, seconds when the
    machine is busy), so a server calls :meth:`prepare_standby`: a worker process is
    then always started ahead, and a process job takes it instead of spawning one.
    """

    #: ``(process, queue, cancel event, pipe end, ready event)`` of the standby worker
    _standby: tuple | None = None
    _standby_enabled = False
    _standby_lock = threading.Lock()

    def __init__(self, files: list[FileSpec], settings: Any, mode: str = "process",
                 n_threads: int | None = None, task: Callable | None = None):
        if mode not in ("process", "thread"):
            raise QuestsError(f"unknown job mode {mode!r}")
        self.task = task or pipeline_task
        self.files = list(files)
        self.settings = settings
        self.mode = mode
        self.n_threads = n_threads
        self.fraction = 0.0
        self.text = "Queued"
        self.state = "created"  # created, queued, running, done, error, cancelled
        self.result: Any = None
        self.error: str | None = None
        self._worker = None
        self._queue = None
        self._cancel = None
        self._slot = False
        self._cancel_requested = False
        self._running_since: float | None = None  # until the worker's first message
        self._working_since: float | None = None  # the worker's first progress message

    # -- lifecycle -----------------------------------------------------------------

    def _target(self) -> tuple:
        """The worker function and its leading arguments (before queue, cancel, threads,
        nice)."""
        return _worker_main, (self.task, self.files, self.settings)

    def try_start(self) -> bool:
        """Start if a job slot is free; returns whether it started."""
        if self.state not in ("created", "queued"):
            return True
        if self._cancel_requested:
            self._finish("cancelled", "Cancelled")
            return True
        ready, waited = self._kernels_ready()
        if not ready:  # the server's first minute: compiled kernels are on their way
            self.state = "queued"
            self.text = ("Compiling the numerical kernels (first start of the server only, "
                         f"{waited:.0f} s)")
            return False
        if not _JOB_SLOTS.acquire(blocking=False):
            self.state = "queued"
            self.text = "Queued: waiting for another computation to finish"
            return False
        self._slot = True
        target, leading = self._target()
        if (self.mode == "process" and target is _worker_main
                and self._start_on_standby(*leading)):
            self.state = "running"
            self.text = "Starting"
            self._running_since = time.monotonic()
            return True
        if self.mode == "process":
            ctx = mp.get_context("spawn")
            self._queue, self._cancel = ctx.Queue(), ctx.Event()
            worker, nice = ctx.Process, WORKER_NICE
            target = _process_main if target is _worker_main else target
        else:
            self._queue, self._cancel = queue_mod.Queue(), threading.Event()
            worker, nice = threading.Thread, 0
        self._worker = worker(
            target=target,
            args=(*leading, self._queue, self._cancel, self.n_threads, nice),
            daemon=True,
            name="quests-dashboard-job",
        )
        self._worker.start()
        self.state = "running"
        self.text = "Starting"
        self._running_since = time.monotonic()
        return True

    @staticmethod
    def prepare_standby() -> None:
        """Keep a worker process started ahead (imports done, compiled kernels loaded)
        for the next process job of this server, and start a new one after each job."""
        ComputeJob._standby_enabled = True
        ComputeJob._start_standby()

    @staticmethod
    def stop_standby() -> None:
        """Stop keeping a standby worker and end the one waiting (joined: no zombie)."""
        with ComputeJob._standby_lock:
            ComputeJob._standby_enabled = False
            standby, ComputeJob._standby = ComputeJob._standby, None
        if standby is not None:
            proc, _queue, _cancel, send, _ready = standby
            send.close()  # the standby sees the end of the pipe and exits
            proc.join(10)
            if proc.exitcode is None:
                proc.terminate()
                proc.join(5)

    @staticmethod
    def _start_standby() -> None:
        with ComputeJob._standby_lock:
            if not ComputeJob._standby_enabled or ComputeJob._standby is not None:
                return
            ctx = mp.get_context("spawn")
            receive, send = ctx.Pipe(duplex=False)
            queue, cancel, ready = ctx.Queue(), ctx.Event(), ctx.Event()
            proc = ctx.Process(target=_process_standby,
                               args=(receive, queue, cancel, WORKER_NICE, ready),
                               daemon=True, name="quests-dashboard-job")
            proc.start()
            receive.close()
            ComputeJob._standby = (proc, queue, cancel, send, ready)

    @staticmethod
    def wait_standby(timeout: float = 60.0) -> bool:
        """Wait until the standby worker has its imports done and its kernels loaded;
        returns whether it has (False without a standby)."""
        standby = ComputeJob._standby
        if standby is None:
            return False
        end = time.monotonic() + timeout
        while not standby[4].wait(0.2):
            if not standby[0].is_alive() or time.monotonic() > end:
                return False
        return True

    def _start_on_standby(self, task, files, settings) -> bool:
        """Give the job to the standby worker; False when there is none (or it died)."""
        with ComputeJob._standby_lock:
            standby, ComputeJob._standby = ComputeJob._standby, None
        if standby is None:
            return False
        proc, queue, cancel, send, _ready = standby
        try:
            send.send((task, files, settings, self.n_threads, dict(os.environ)))
        except (OSError, ValueError):  # it died: forget it (and reap it)
            send.close()
            self._reap(proc)
            return False
        finally:
            send.close()
        # keep every synchronisation object the standby was started with: one that is
        # collected here before the standby has unpickled it would be gone for it
        self._worker, self._queue, self._cancel, self._ready = proc, queue, cancel, _ready
        return True

    @staticmethod
    def _kernels_ready() -> tuple[bool, float]:
        """Whether the server's kernel warm-up (:mod:`dashboard.kernel_warmup`) has
        finished, and for how long it has run. A worker started earlier would compile the
        same Numba kernels again instead of loading them from the on-disk cache."""
        from . import kernel_warmup

        return kernel_warmup.kernels_ready(), kernel_warmup.kernels_waited()

    @staticmethod
    def _reap(worker, grace: float = 30.0) -> None:
        """Join a finished job's worker process so that it never stays ``<defunct>``:
        at once when it has exited, else from a daemon thread (it is still shutting
        down), stopping it if it has not exited after ``grace`` seconds."""
        worker.join(0.1)
        if worker.exitcode is not None:
            return

        def wait() -> None:
            worker.join(grace)
            if worker.exitcode is None:
                worker.terminate()
                worker.join(5)
            if worker.exitcode is None:
                worker.kill()
                worker.join()

        threading.Thread(target=wait, name="quests-dashboard-job-reaper", daemon=True).start()

    def cancel(self) -> None:
        """Ask the job to stop (it stops at the next block)."""
        self._cancel_requested = True
        if self._cancel is not None:
            self._cancel.set()

    def poll(self, timeout: float = 0.0) -> bool:
        """Read pending messages (blocking up to ``timeout`` s); True when finished."""
        if self.state in ("done", "error", "cancelled"):
            return True
        if self.state in ("created", "queued"):
            self.try_start()
            return self.state in ("done", "error", "cancelled")
        deadline = time.monotonic() + timeout
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                kind, payload, text = self._queue.get(timeout=remaining) if remaining else \
                    self._queue.get_nowait()
            except queue_mod.Empty:
                break
            if kind == "progress":
                self.fraction, self.text = payload, text
                self._running_since = None
                if self._working_since is None:
                    self._working_since = time.monotonic()
                continue
            if kind == "result":
                self.result = payload
                self.fraction = 1.0
                self._finish("done", text)
            elif kind == "cancelled":
                self._finish("cancelled", text)
            else:
                self.error = text
                self._finish("error", text)
            return True
        if self._running_since is not None:  # a worker process still starting: say so
            waited = time.monotonic() - self._running_since
            if waited >= 1.0:
                self.text = f"Starting the worker process ({waited:.0f} s)"
        if not self._worker.is_alive():
            # drain once more: the final message may have arrived just now
            try:
                kind, payload, text = self._queue.get(timeout=0.5)
            except queue_mod.Empty:
                code = getattr(self._worker, "exitcode", None)
                if self._cancel_requested:
                    self._finish("cancelled", "Cancelled")
                else:
                    self.error = f"the computation stopped unexpectedly (exit code {code})"
                    self._finish("error", self.error)
                return True
            if kind == "result":
                self.result = payload
                self._finish("done", text)
            elif kind == "cancelled":
                self._finish("cancelled", text)
            elif kind == "error":
                self.error = text
                self._finish("error", text)
            return self.state in ("done", "error", "cancelled")
        return False

    def terminate(self) -> None:
        """Hard stop of a worker process that ignores cancellation."""
        if self.mode == "process" and self._worker is not None and self._worker.is_alive():
            self._worker.terminate()
            self._worker.join(2)
        if self.state not in ("done", "error"):
            self._finish("cancelled", "Cancelled")

    def _finish(self, state: str, text: str) -> None:
        self.state = state
        self.text = text
        if self._slot:
            self._slot = False
            _JOB_SLOTS.release()
        if self.mode == "process" and self._worker is not None:
            self._reap(self._worker)
            self._start_standby()  # the next job's worker, while this one's results show

    @property
    def finished(self) -> bool:
        return self.state in ("done", "error", "cancelled")

    def time_left(self, now: float | None = None) -> float | None:
        """Seconds left by :func:`dashboard.compute.time_left` (the time since the task
        started working, not counting a worker's start, and the bar's fraction); None
        while that means nothing or once the job has ended."""
        if self.state != "running" or self._working_since is None:
            return None
        now = time.monotonic() if now is None else now
        return time_left(now - self._working_since, self.fraction)

    # -- asyncio driver --------------------------------------------------------------

    async def run_async(
        self,
        on_progress: Callable[[ComputeJob], None] | None = None,
        interval: float = 0.25,
        cancel_grace: float = 5.0,
    ) -> ComputeJob:
        """Drive the job from an event loop without ever blocking it."""
        loop = asyncio.get_running_loop()
        cancel_since = None
        while not self.finished:
            if self.state in ("created", "queued"):
                self.try_start()
                if self.state == "queued":
                    if on_progress:
                        on_progress(self)
                    await asyncio.sleep(interval)
                    continue
            # the blocking read (and unpickling of a large result) runs in a thread
            await loop.run_in_executor(None, self.poll, interval)
            if on_progress:
                on_progress(self)
            if self._cancel_requested and not self.finished:
                cancel_since = cancel_since or time.monotonic()
                if time.monotonic() - cancel_since > cancel_grace:
                    self.terminate()
        if self.state == "done":  # what the session does next (run_sync ends with "Done")
            self.text = "Done: drawing the results"
        if on_progress:
            on_progress(self)
            if self.state == "done":  # let the page show it before the views draw
                await asyncio.sleep(0.05)
        return self

    def run_sync(self, timeout: float = 3600.0,
                 on_progress: Callable[[ComputeJob], None] | None = None) -> ComputeJob:
        """Run to completion in the calling thread (scripts and tests); ``on_progress(job)``
        after every read of the job's messages."""
        end = time.monotonic() + timeout
        while not self.finished:
            if time.monotonic() > end:
                self.cancel()
                self.terminate()
                break
            if self.state in ("created", "queued"):
                if not self.try_start():
                    time.sleep(0.1)
                continue
            self.poll(0.25)
            if on_progress is not None and not self.finished:
                on_progress(self)
        return self


class JobRunner(param.Parameterized):
    """The one job lifecycle of the views: start, progress, cancel, finish, sync run.

    A view owns one runner per kind of job. :meth:`start` makes a :class:`ComputeJob`
    of :attr:`task`; :meth:`drive` (from the event loop) or :meth:`drive_sync` (scripts
    and tests) run it (:meth:`run` and :meth:`run_sync` do both), keep
    :attr:`running`, :attr:`progress` and :attr:`status` up to date while it runs,
    and call ``on_finish(job)`` once it has ended (done, error or cancelled),
    after :attr:`running` went back to False.

    Parameters
    ----------
    task : callable, optional
        Module-level ``task(files, settings, report, cancel, n_threads)``; the
        Data tab's pipeline when omitted.
    on_finish : callable, optional
        ``on_finish(job)``: what the view does with a finished job.
    show_percent : bool
        Add the percentage to :attr:`status` while the job runs.
    """

    running = param.Boolean(default=False, doc="A job is running.")
    progress = param.Integer(default=0, bounds=(0, 100), doc="Progress of the job (%).")
    status = param.String(default="", doc="What the job is doing.")

    def __init__(self, task: Callable | None = None,
                 on_finish: Callable[[ComputeJob], None] | None = None,
                 show_percent: bool = True, **params):
        super().__init__(**params)
        self.task = task
        self.on_finish = on_finish
        self.show_percent = show_percent
        self.job: ComputeJob | None = None

    def start(self, files: list[FileSpec], settings: Any, mode: str = "process") -> ComputeJob:
        """A new job of :attr:`task` (not started yet: :meth:`run` and :meth:`run_sync`
        drive it). Raises QuestsError while another job of this runner runs."""
        if self.running:
            raise QuestsError("a computation is already running")
        self.job = ComputeJob(files, settings, mode=mode, task=self.task)
        self.running, self.progress, self.status = True, 0, "Starting"
        return self.job

    async def drive(self, job: ComputeJob) -> ComputeJob:
        """Drive a job of :meth:`start` off the event loop until it has finished."""
        try:
            await job.run_async(self._update)
        finally:
            self.running = False
        self._finish(job)
        return job

    def drive_sync(self, job: ComputeJob, timeout: float = 3600.0) -> ComputeJob:
        """Drive a job of :meth:`start` to its end in the calling thread."""
        try:
            job.run_sync(timeout, self._update)
        finally:
            self.running = False
        self._finish(job)
        return job

    async def run(self, files: list[FileSpec], settings: Any,
                  mode: str = "process") -> ComputeJob:
        """Start a job and run it off the event loop; returns it once finished."""
        return await self.drive(self.start(files, settings, mode))

    def run_sync(self, files: list[FileSpec], settings: Any, mode: str = "process",
                 timeout: float = 3600.0) -> ComputeJob:
        """Start a job and run it to completion in the calling thread (scripts, tests)."""
        return self.drive_sync(self.start(files, settings, mode), timeout)

    def cancel(self, text: str = "Cancelling") -> bool:
        """Ask the running job to stop; returns whether there was one."""
        if self.job is None or self.job.finished:
            return False
        self.job.cancel()
        self.status = text
        return True

    def _update(self, job: ComputeJob) -> None:
        self.progress = int(round(100 * job.fraction))
        self.status = self.status_text(job)

    def status_text(self, job: ComputeJob, now: float | None = None) -> str:
        """What the job is doing, with its percentage (:attr:`show_percent`) and, once it
        means something, the time left: ``"dH of a.xyz (40%, about 12 s left)"``."""
        notes = []
        if job.state == "running":
            if self.show_percent:
                notes.append(f"{100 * job.fraction:.0f}%")
            left = format_time_left(job.time_left(now))
            if left:
                notes.append(left)
        return f"{job.text} ({', '.join(notes)})" if notes else job.text

    def _finish(self, job: ComputeJob) -> None:
        self.progress = 100 if job.state == "done" else 0
        if self.on_finish is not None:
            self.on_finish(job)
