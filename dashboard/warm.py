"""Warm-up: run the Datashader pipeline once so that no session waits for Numba.

Datashader compiles its aggregation and spreading kernels on first use
(tens of seconds on a small machine). ``launch.py`` runs :func:`warm_up`
before the server starts listening; ``panel serve dashboard/app.py`` starts
it in a background thread at the first session.
"""

from __future__ import annotations

import threading

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
    """Start :func:`warm_up` in a daemon thread (once per process)."""
    global _STARTED
    if _STARTED or _DONE.is_set():
        return
    _STARTED = True
    threading.Thread(target=warm_up, name="dashboard-warm-up", daemon=True).start()


def is_warm() -> bool:
    return _DONE.is_set()
