"""Warm-up: compile, before anybody waits for it, what the first use would compile.

* **Datashader** compiles its aggregation and spreading kernels on first use
  (tens of seconds on a small machine). ``launch.py`` runs :func:`warm_up`
  before the server starts listening (:func:`server_start`); ``panel serve
  dashboard/app.py`` starts it in a background thread at the first session
  (:func:`start_background`).
* **quests_core's Numba kernels** (neighbour search, descriptors, the float64
  and float32 kernel sums, the approximate-dH scan) take about 10 s to compile
  on 2 cores. Every computation runs in a fresh worker process
  (:class:`dashboard.jobs.ComputeJob`), which loads them from Numba's
  on-disk cache (``cache=True``; ``__pycache__`` next to the sources, else the
  user's cache directory, or ``$NUMBA_CACHE_DIR``) in milliseconds, once they
  are there. :func:`start_kernel_warm_up` compiles them into that cache in a
  separate, low-priority process at server start, so that neither the first
  Compute nor the server's event loop (compilation holds the GIL) pays for
  it; jobs started meanwhile wait for it (:func:`kernels_ready`) instead of
  compiling the same kernels a second time; ``launch.py`` waits for it before
  listening. When the cache already holds the kernels (every start after the
  first) the warm-up takes a second or two, less than Datashader's.
* **The job worker**: spawning a worker process and importing the libraries
  costs 0.5-1 s per job on 2 cores (seconds when the machine is busy), so a
  standby worker is started ahead, with its kernels loaded, for the next job
  (:meth:`dashboard.jobs.ComputeJob.prepare_standby`).
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import threading
import time

_LOCK = threading.Lock()
_DONE = threading.Event()
_STARTED = False

#: Modules whose ``warm_up()`` compiles their Numba kernels.
KERNEL_MODULES = ("quests_core.descriptors", "quests_core.kernels", "quests_core.approximate")
#: Niceness of the kernel warm-up process (as the job workers': the server keeps priority).
KERNEL_WARM_UP_NICE = 5
#: Longest wait for the kernel warm-up (s), at server start and before a job.
KERNEL_WAIT_MAX = 300.0
_KERNELS_LOCK = threading.Lock()
_KERNELS_DONE = threading.Event()
_KERNELS: dict = {"process": None, "started": None, "seconds": None, "exitcode": None}


def warm_up() -> None:
    """Render the views' datashaded image once (outside any session document)."""
    with _LOCK:
        if _DONE.is_set():
            return
        import holoviews as hv
        import numpy as np
        from bokeh.document import Document

        from dashboard._testing import big_atoms_table
        from dashboard.views.atoms import dh_image, plot_frame

        hv.extension("bokeh", logo=False)
        atoms = big_atoms_table(30, frames=3)
        for x, y in (("index", "dH"), ("x", "y")):
            data = atoms.assign(index=np.arange(len(atoms), dtype=np.int64)).iloc[:3]
            image = dh_image(plot_frame(data, x, y), x, y, (-1.0, 1.0), width=200, height=200)
            hv.renderer("bokeh").get_plot(image, doc=Document())
        _DONE.set()


def start_background() -> None:
    """Start the kernel warm-up process, then a standby job worker, and :func:`warm_up` in
    daemon threads (once per process; ``panel serve dashboard/app.py`` calls this at
    every session)."""
    global _STARTED
    if start_kernel_warm_up():
        threading.Thread(target=_standby_when_ready, name="dashboard-standby", daemon=True).start()
    if _STARTED or _DONE.is_set():
        return
    _STARTED = True
    threading.Thread(target=warm_up, name="dashboard-warm-up", daemon=True).start()


def _standby_when_ready() -> None:
    wait_kernels()
    from dashboard.jobs import ComputeJob

    ComputeJob.prepare_standby()


def is_warm() -> bool:
    return _DONE.is_set()


# ----------------------------------------------------------------------------- Numba


def warm_kernels() -> dict[str, float]:
    """Compile quests_core's Numba kernels in this process (or load them from the
    on-disk cache); returns the seconds each module took."""
    out = {}
    for name in KERNEL_MODULES:
        t = time.perf_counter()
        importlib.import_module(name).warm_up()
        out[name] = time.perf_counter() - t
    return out


def _kernel_warm_up_main(nice: int) -> None:
    """Entry point of the warm-up process."""
    if nice:
        try:
            os.nice(nice)
        except OSError:
            pass
    warm_kernels()


def start_kernel_warm_up(nice: int = KERNEL_WARM_UP_NICE) -> bool:
    """Compile the Numba kernels into the on-disk cache in a separate process.

    Once per server process; returns whether it started now. A daemon thread joins
    the process when it ends (no ``<defunct>`` process is left behind) and marks the
    kernels ready; a failed warm-up only means that jobs compile for themselves.
    """
    with _KERNELS_LOCK:
        if _KERNELS["process"] is not None:
            return False
        ctx = mp.get_context("spawn")  # as the job workers: no fork of a threaded server
        proc = ctx.Process(target=_kernel_warm_up_main, args=(nice,), daemon=True,
                           name="quests-kernel-warm-up")
        _KERNELS["started"] = time.monotonic()
        proc.start()
        _KERNELS["process"] = proc

    def reap() -> None:
        proc.join()
        _KERNELS["seconds"] = time.monotonic() - _KERNELS["started"]
        _KERNELS["exitcode"] = proc.exitcode
        _KERNELS_DONE.set()

    threading.Thread(target=reap, name="quests-kernel-warm-up-reaper", daemon=True).start()
    return True


def kernels_ready() -> bool:
    """False while the kernel warm-up process runs (True if it never started, and after
    :data:`KERNEL_WAIT_MAX` seconds: a stuck warm-up never holds jobs back for good)."""
    return (_KERNELS["process"] is None or _KERNELS_DONE.is_set()
            or kernels_waited() > KERNEL_WAIT_MAX)


def kernels_waited() -> float:
    """Seconds since the kernel warm-up started (0 if it never did)."""
    started = _KERNELS["started"]
    return 0.0 if started is None else time.monotonic() - started


def wait_kernels(timeout: float | None = KERNEL_WAIT_MAX) -> bool:
    """Block until the kernel warm-up has ended; returns :func:`kernels_ready`."""
    if _KERNELS["process"] is not None:
        _KERNELS_DONE.wait(timeout)
    return kernels_ready()


def server_start(standby: bool = True) -> dict[str, float]:
    """What ``launch.py`` does before the server listens: the Numba kernels compile into
    the on-disk cache in a separate process while Datashader compiles in this one, then
    it waits for the kernels, so that the first Compute finds everything compiled, and
    (``standby``) for the worker process of the first job, started ahead with its
    kernels loaded (:meth:`dashboard.jobs.ComputeJob.prepare_standby`).

    Returns the seconds spent on Datashader and then waiting for the kernels and the
    standby worker: ~0 s from the second start on, when the kernels load from the
    cache while Datashader compiles; 0-8 s on a fresh install, measured on 2 shared
    cores (the kernels take 9-16 s there against Datashader's 8-10 s).
    """
    if start_kernel_warm_up() and standby:  # the standby starts once the kernels are in
        threading.Thread(target=_standby_when_ready, name="dashboard-standby", daemon=True).start()
    t = time.perf_counter()
    warm_up()
    t_datashader = time.perf_counter() - t
    wait_kernels()
    if standby:  # and the first job's worker ready, kernels loaded
        from dashboard.jobs import ComputeJob

        ComputeJob.prepare_standby()
        ComputeJob.wait_standby()
    return {"datashader_s": t_datashader, "kernel_wait_s": time.perf_counter() - t - t_datashader}


def kernel_warm_up_info() -> dict:
    """Seconds the warm-up process took and its exit code (None while it runs)."""
    return {"seconds": _KERNELS["seconds"], "exitcode": _KERNELS["exitcode"]}
