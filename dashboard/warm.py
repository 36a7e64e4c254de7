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

import threading
import time

from dashboard.kernel_warmup import (  # noqa: F401 - the start-up's API, re-exported
    KERNEL_MODULES,
    KERNEL_WAIT_MAX,
    KERNEL_WARM_UP_NICE,
    kernel_warm_up_info,
    kernels_ready,
    kernels_waited,
    start_kernel_warm_up,
    wait_kernels,
    warm_kernels,
)
from quests_core.settings import DEFAULTS

_LOCK = threading.Lock()
_DONE = threading.Event()
_STARTED = False



def warm_up() -> None:
    """Render the views' datashaded image once (outside any session document)."""
    with _LOCK:
        if _DONE.is_set():
            return
        import holoviews as hv
        import numpy as np
        from bokeh.document import Document

        from dashboard.views.atoms import dh_image, plot_frame

        hv.extension("bokeh", logo=False)
        atoms = synthetic_atoms_table(30, frames=3)
        for x, y in (("index", "dH"), ("x", "y")):
            data = atoms.assign(index=np.arange(len(atoms), dtype=np.int64)).iloc[:3]
            image = dh_image(plot_frame(data, x, y), x, y, (-1.0, 1.0), width=200, height=200)
            hv.renderer("bokeh").get_plot(image, doc=Document())
        _DONE.set()


def synthetic_atoms_table(n: int, seed: int = DEFAULTS.seed, frames: int = 1000):
    """A per-atom table of ``n`` random atoms with the dashboard's columns: what the
    warm-up draws (and the benchmarks and tests, as ``dashboard._testing.big_atoms_table``)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    per = max(n // frames, 1)
    structure = np.minimum(np.arange(n, dtype=np.int32) // per, frames - 1).astype(np.int32)
    atom = np.arange(n, dtype=np.int32)
    atom -= structure * np.int32(per)

    def uniform(scale: float) -> np.ndarray:
        out = rng.random(n, dtype=np.float32)
        out *= scale
        return out

    def category(value: str) -> pd.Categorical:
        return pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), [value])

    dh = rng.standard_normal(n, dtype=np.float32)
    dh *= 2.0
    dh -= 2.0
    time = structure.astype(np.float32)
    time *= 0.01
    columns = {
        "structure": structure, "frame": structure.copy(), "time": time,
        "label": category("bench"), "atom": atom, "species": category("Cu"),
        "x": uniform(50.0), "y": uniform(50.0), "z": uniform(50.0),
        "source": category("bench.extxyz"), "role": category("trajectory"), "dH": dh,
    }
    return pd.DataFrame(columns, copy=False)


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
