"""quests_core's Numba kernels into Numba's on-disk cache, once per server, in a separate
low-priority process (see :mod:`dashboard.warm` for the whole start-up).

The kernels (neighbour search, descriptors, the float64 and float32 kernel sums, the
approximate-dH scan) take about 10 s to compile on 2 cores. :func:`start_kernel_warm_up`
compiles them into the cache at server start; job workers
(:class:`dashboard.jobs.ComputeJob`) wait for it (:func:`kernels_ready`) instead of
compiling the same kernels a second time, then load them in milliseconds.

This module imports neither the jobs nor the views: :mod:`dashboard.jobs` asks it
whether the kernels are ready, :mod:`dashboard.warm` starts it (no import cycle).
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import threading
import time

#: Modules whose ``warm_up()`` compiles their Numba kernels.
KERNEL_MODULES = ("quests_core.descriptors", "quests_core.kernels", "quests_core.approximate")
#: Niceness of the kernel warm-up process (as the job workers': the server keeps priority).
KERNEL_WARM_UP_NICE = 5
#: Longest wait for the kernel warm-up (s), at server start and before a job.
KERNEL_WAIT_MAX = 300.0
_KERNELS_LOCK = threading.Lock()
_KERNELS_DONE = threading.Event()
_KERNELS: dict = {"process": None, "started": None, "seconds": None, "exitcode": None}


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


def kernel_warm_up_info() -> dict:
    """Seconds the warm-up process took and its exit code (None while it runs)."""
    return {"seconds": _KERNELS["seconds"], "exitcode": _KERNELS["exitcode"]}
