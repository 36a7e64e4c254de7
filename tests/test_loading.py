"""The core's loading and reference service (:mod:`quests_core.loading`): the one
bandwidth policy, the per-group overlap policy, the hooks, and the dashboard's
worker-side calls of it (precision and backend reach the engine)."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from quests_core import loading
from quests_core.errors import Cancelled, QuestsError
from quests_core.settings import Settings, bandwidth_from_volume

DATA = Path(__file__).resolve().parents[1] / "sample_data"
MELT = DATA / "cu_melt.extxyz"
VOLUME = Settings(bandwidth_rule="volume", k=8, cutoff=4.0)


def _item(name: str, role: str, volumes, atoms, x=None) -> loading.Loaded:
    frames = pd.DataFrame({"volume_per_atom": volumes, "n_atoms": atoms})
    return loading.Loaded(loading.FileRequest(name, name=name, role=role),
                          SimpleNamespace(frames=frames, name=name), x)


def test_reference_files_set_h_from_all_their_frames():
    ref = _item("ref.xyz", "reference", [10.0, 20.0], [300, 100], np.zeros((400, 3)))
    run = _item("run.xyz", "trajectory", [50.0], [10], np.ones((10, 3)))
    res = loading.reference([ref, run], VOLUME)
    assert not res.self_reference and res.items == (ref,)
    assert res.h == pytest.approx(bandwidth_from_volume(12.5), rel=1e-12)  # atom-weighted
    assert res.of(run) is res.x
    assert loading.reference([ref, run], VOLUME.replace(bandwidth_rule="fixed")).h == 0.015


def test_without_a_reference_file_h_is_the_first_frames_volume():
    """Each file against its own first frame: h of those first frames only (the later
    frames, here twice as large, do not move it)."""
    a = _item("a.xyz", "trajectory", [10.0, 20.0, 20.0], [100, 100, 100],
              np.arange(300.0)[:, None])
    b = _item("b.xyz", "trajectory", [14.0, 30.0], [300, 300], np.zeros((600, 1)))
    res = loading.reference([a, b], VOLUME)
    assert res.self_reference and res.x is None
    assert res.h == pytest.approx(bandwidth_from_volume((10.0 * 100 + 14.0 * 300) / 400))
    np.testing.assert_array_equal(res.of(a), np.arange(100.0)[:, None])


def test_reference_errors_name_the_data():
    no_cell = _item("gas.xyz", "reference", [np.nan], [5])
    with pytest.raises(QuestsError, match="^gas.xyz: the volume rule needs periodic cells"):
        loading.reference([no_cell], VOLUME)
    descriptors = loading.Loaded(loading.FileRequest("ref.npz", role="reference"), None,
                                 np.zeros((3, 3)))
    with pytest.raises(QuestsError, match="^--bandwidth auto needs the reference structures: "
                       r"descriptor files hold no cell volumes \(give --bandwidth H\)$"):
        loading.reference([descriptors], VOLUME, needs="--bandwidth auto",
                          remedy="give --bandwidth H")


def test_overlap_bandwidths_one_policy():
    tables = {"a": pd.DataFrame({"volume_per_atom": [10.0], "n_atoms": [100]}),
              "b": pd.DataFrame({"volume_per_atom": [20.0], "n_atoms": [300]})}
    assert loading.overlap_bandwidths(tables, VOLUME.replace(bandwidth_rule="fixed")) == \
        (0.015, "")
    h, note = loading.overlap_bandwidths(tables, VOLUME)
    assert note == "" and h == {"a": bandwidth_from_volume(10.0),
                                "b": bandwidth_from_volume(20.0)}
    tables["gas"] = pd.DataFrame({"volume_per_atom": [np.nan], "n_atoms": [50]})
    h, note = loading.overlap_bandwidths(tables, VOLUME)
    assert h == pytest.approx(bandwidth_from_volume(17.5))  # all frames with a cell, pooled
    assert note.startswith("gas: the volume rule needs periodic cells (no volume per atom); "
                           f"every column uses h = {h:.4g} 1/Å")
    with pytest.raises(QuestsError, match="the volume rule needs periodic cells"):
        loading.overlap_bandwidths({"gas": tables["gas"]}, VOLUME)


def test_load_files_hooks_skip_bad_and_cancel(tmp_path):
    bad = tmp_path / "bad.xyz"
    bad.write_text("2\n\nCu 0 0 0\n")
    seen, opened = [], []

    class Bar:
        def __init__(self, path):
            opened.append(path)

        def __enter__(self):
            return lambda frames, atoms: seen.append((frames, atoms))

        def __exit__(self, *exc):
            return False

    batch = loading.load_files([loading.FileRequest(str(MELT), index=":2"), str(bad)],
                               VOLUME, skip_bad=True, file_progress=Bar)
    assert [it.path for it in batch.items] == [str(MELT)]
    assert batch.skipped and batch.skipped[0][0] == str(bad)
    assert opened == [str(MELT), str(bad)] and seen[-1] == (2, 2 * 864)
    assert batch.items[0].x.shape == (2 * 864, 2 * 8 - 1)
    with pytest.raises(QuestsError, match=r"^no usable input files \(1 skipped\)$"):
        loading.load_files([str(bad)], VOLUME, skip_bad=True)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        loading.load_files([str(MELT)], VOLUME, cancel=stop)


def test_in_memory_read_gives_the_streamed_descriptors():
    (item,) = loading.read_files([loading.FileRequest(str(MELT), index=":2")])
    assert item.dataset.structures[0] is not None  # kept in memory
    done = []
    x = loading.compute_descriptors(item.dataset, VOLUME, progress=lambda a, n: done.append(a))
    streamed = loading.load_files([loading.FileRequest(str(MELT), index=":2")], VOLUME)
    np.testing.assert_array_equal(x, streamed.items[0].x)
    assert done[-1] == 2 * 864


def test_dashboard_delta_passes_precision_and_backend(monkeypatch):
    """The dashboard's dH sends the run's precision and backend to the engine."""
    import quests_core
    from dashboard.compute import Progress, delta

    calls = []
    real = quests_core.delta_entropy

    def spy(y, x, h, **kw):
        calls.append(kw)
        return real(y, x, h, **kw)

    monkeypatch.setattr(quests_core, "delta_entropy", spy)
    rng = np.random.default_rng(0)
    y, x = rng.normal(size=(5, 3)), rng.normal(size=(7, 3))
    out = delta(y, x, 0.5, Progress(None, None), None, precision="float32", backend="numba")
    assert calls[-1]["precision"] == "float32" and calls[-1]["backend"] == "numba"
    np.testing.assert_allclose(out, real(y, x, 0.5), rtol=1e-5)
