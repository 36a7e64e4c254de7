"""The Nucleation view refits off the event loop and replaces the stored result.

With an event loop running (a server or a notebook), changing the fit weights or the
fit volume hands :func:`dashboard.pipeline.fit_nucleation` to a thread; the stored
result is replaced by a new one when it is done (the old object is never changed),
and the body is drawn again. Without a loop the refit happens at once.
"""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pandas as pd
import pytest

#: A cluster-size distribution of about the CNT form whose two weightings differ.
COUNTS = np.array([5034, 2400, 1650, 950, 760, 480, 420, 280])


@pytest.fixture
def view(tmp_path):
    from dashboard.pipeline import fit_nucleation
    from dashboard.state import AppState, NucleationResult, Results
    from dashboard.views.nucleation import NucleationView

    n = 6
    result = fit_nucleation(NucleationResult(
        source="t", structure=np.arange(n), time=np.arange(n) * 0.1,
        largest=np.array([3, 5, 8, 20, 60, 120]), n_solid=np.full(n, 150),
        temperature=np.full(n, 900.0), band_min=np.full(n, 30.0), band_max=np.full(n, 60.0),
        sizes=np.arange(1, 9), counts=COUNTS, n_frames=4, pre_frames=np.arange(4),
        t_pooled=900.0, critical_band=(30.0, 60.0),
        constants={"element": "Cu", "T_melt (K)": 1323.0, "latent heat (kJ/mol)": 11.99,
                   "V_atom (Å^3)": 12.893, "gamma_SL range (J/m^2)": (0.177, 0.221)}))
    state = AppState(data_dir=str(tmp_path))
    state.results = Results(frames=pd.DataFrame(), atoms=pd.DataFrame(), h=0.015, k=32,
                            cutoff=5.0, reference="", files=[], nucleations={"t": result})
    return NucleationView(state=state)


def test_refit_without_a_loop_is_at_once_and_replaces(view):
    old = view.results.nucleations["t"]
    kept = dataclasses.replace(old)
    view.fit_weights = "poisson"
    new = view.results.nucleations["t"]
    assert new is not old and new.weights == "poisson" and view.refits == 1
    assert old.weights == kept.weights == "none" and old.fit == kept.fit  # not mutated
    assert new.fit["gamma_SL (J/m^2)"] != old.fit["gamma_SL (J/m^2)"]


def test_refit_runs_off_the_event_loop(view, monkeypatch):
    import threading

    import dashboard.views.nucleation as module

    threads = []
    fit = module.fit_nucleation

    def spy(*args):
        threads.append(threading.current_thread())
        return fit(*args)

    monkeypatch.setattr(module, "fit_nucleation", spy)
    old = view.results.nucleations["t"]

    async def change_and_wait():
        view.fit_weights = "poisson"
        # the watcher returned with the refit still to come: the loop was not held
        assert view.results.nucleations["t"] is old
        for _ in range(500):
            await asyncio.sleep(0.01)
            if view.results.nucleations["t"] is not old:
                break
        return threading.current_thread()

    loop_thread = asyncio.run(change_and_wait())
    new = view.results.nucleations["t"]
    assert new is not old and new.weights == "poisson" and view.refits == 1
    assert old.weights == "none"
    assert threads and all(t is not loop_thread for t in threads)
    # the stored result is what the body shows
    assert view.result() is new
