"""Sampled per-frame H (quests_core.sampling) and its use by the CLI ``trajectory``."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from ase.build import bulk
from ase.io import write

import quests_core as qc
from quests_core.cli import main
from quests_core.io import read_structures
from quests_core.sampling import EXACT_MAX_ATOMS_ENV, exact_max_atoms, frame_entropy

K, CUTOFF, H = 8, 4.0, 0.05
OPTS = ["-k", str(K), "--cutoff", str(CUTOFF), "--bandwidth", str(H), "--no-progress"]


def noisy_cu(repeat: int, sigma: float, seed: int):
    atoms = bulk("Cu", cubic=True) * (repeat, repeat, repeat)
    atoms.rattle(sigma, seed=seed)
    return atoms


@pytest.fixture(scope="module")
def frame():
    """Descriptors of 4,000 noisy Cu atoms (10^3 cubic cells) and their exact H."""
    x = qc.descriptors([noisy_cu(10, 0.1, 1)], k=K, cutoff=CUTOFF)
    return x, float(qc.entropy(x, H))


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_estimate_within_three_stderr(frame, seed):
    x, exact = frame
    est = qc.sampled_entropy(x, H, m=500, seed=seed)
    assert not est.exact and est.m == 500 and est.n == len(x)
    assert est.stderr > 0
    assert abs(est.H - exact) <= 3 * est.stderr, (est, exact)


def test_stderr_shrinks_like_inverse_sqrt_m(frame):
    x, _ = frame
    err = {m: np.mean([qc.sampled_entropy(x, H, m=m, seed=s).stderr for s in range(3)])
           for m in (200, 800)}
    n = len(x)
    fpc = math.sqrt((n - 200) / (n - 800))  # ratio of the finite-population corrections
    assert err[200] / err[800] == pytest.approx(2.0 * fpc, rel=0.2)


def test_same_seed_same_estimate(frame):
    x, _ = frame
    a = qc.sampled_entropy(x, H, m=300, seed=7)
    b = qc.sampled_entropy(x, H, m=300, seed=7)
    c = qc.sampled_entropy(x, H, m=300, seed=8)
    assert a == b
    assert a.H != c.H


def test_full_sample_is_exact(frame):
    x, exact = frame
    est = qc.sampled_entropy(x, H, m=len(x))
    assert est.exact and est.stderr == 0.0
    assert est.H == pytest.approx(exact, abs=1e-12)
    # several bandwidths at once
    hs = np.array([0.03, H])
    multi = qc.sampled_entropy(x, hs, m=len(x))
    np.testing.assert_allclose(multi.H, qc.entropy(x, hs), atol=1e-12)
    np.testing.assert_array_equal(multi.stderr, 0.0)


def test_frame_entropy_threshold_and_target(frame, monkeypatch):
    x, exact = frame
    below = frame_entropy(x, H, threshold=len(x))
    assert below.exact and below.H == pytest.approx(exact, abs=1e-12) and below.stderr == 0.0
    forced = frame_entropy(x, H, threshold=10, exact=True)
    assert forced.exact and forced.H == pytest.approx(exact, abs=1e-12)
    done = []
    est = frame_entropy(x, H, threshold=10, target_stderr=0.02, pilot=200, max_sample=3000,
                        progress=lambda d, t: done.append((d, t)))
    assert not est.exact and 200 <= est.m <= 3000
    assert est.stderr <= 0.02 * 1.25  # the pilot's spread sizes m; allow its own error
    assert abs(est.H - exact) <= 3 * est.stderr
    assert done[-1][0] == done[-1][1] >= est.m  # rows against all n, control variate included
    assert all(d <= t for d, t in done)
    plain = frame_entropy(x, H, threshold=10, control=0, pilot=500, max_sample=500, seed=3)
    same = qc.sampled_entropy(x, H, m=500, seed=3)  # without control variate: the same rows
    assert plain.H == pytest.approx(same.H, abs=1e-12)
    assert plain.stderr == pytest.approx(same.stderr, rel=1e-9)
    capped = frame_entropy(x, H, threshold=10, target_stderr=1e-4, pilot=100, max_sample=300)
    assert capped.m == 300
    monkeypatch.setenv(EXACT_MAX_ATOMS_ENV, "123")
    assert exact_max_atoms() == 123
    assert exact_max_atoms(5) == 5


@pytest.fixture()
def traj(tmp_path, monkeypatch):
    monkeypatch.setenv("QUESTS_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "md.extxyz"
    # 2,048 atoms each: more than the pilot sample of 2,000 rows
    write(path, [noisy_cu(8, 0.05 + 0.05 * i, seed=i) for i in range(3)])
    return path


def run(argv, capsys):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out, err


def _frames(path):
    x = qc.descriptors(read_structures(path), k=K, cutoff=CUTOFF)
    return [x[2048 * i : 2048 * (i + 1)] for i in range(3)]


def test_cli_exact_below_threshold(traj, capsys):
    out, _ = run(["trajectory", traj, *OPTS, "-o", traj.with_suffix(".csv")], capsys)
    table = pd.read_csv(traj.with_suffix(".csv"))
    assert (table["H_stderr"] == 0).all()
    exact = [qc.entropy(f, H) for f in _frames(traj)]
    np.testing.assert_allclose(table["H"], exact, rtol=1e-10)
    assert "exact for all 3 frame(s)" in out


def test_cli_sampled_above_threshold(traj, capsys, monkeypatch):
    monkeypatch.setenv(EXACT_MAX_ATOMS_ENV, "1000")
    out, _ = run(["trajectory", traj, *OPTS, "--entropy-stderr", "0.02",
                  "-o", traj.with_suffix(".csv")], capsys)
    table = pd.read_csv(traj.with_suffix(".csv"))
    assert (table["H_stderr"] > 0).all()
    exact = np.array([qc.entropy(f, H) for f in _frames(traj)])
    assert (np.abs(table["H"] - exact) <= 3 * table["H_stderr"] + 1e-12).all()
    assert "sampled for 3 of 3 frame(s) with > 1000 atoms" in out
    assert "H_stderr" in out
    # the option overrides the environment; a rerun with the same seed is identical
    run(["trajectory", traj, *OPTS, "--entropy-stderr", "0.02", "--exact-max-atoms", "1000",
         "-o", traj.with_name("again.csv")], capsys)
    pd.testing.assert_frame_equal(table, pd.read_csv(traj.with_name("again.csv")))


def test_cli_exact_entropy_forces_exact(traj, capsys, monkeypatch):
    monkeypatch.setenv(EXACT_MAX_ATOMS_ENV, "1000")
    out, err = run(["trajectory", traj, *OPTS, "--exact-entropy",
                    "-o", traj.with_suffix(".csv")], capsys)
    table = pd.read_csv(traj.with_suffix(".csv"))
    assert (table["H_stderr"] == 0).all()
    np.testing.assert_allclose(table["H"], [qc.entropy(f, H) for f in _frames(traj)],
                               rtol=1e-10)
    assert "--exact-entropy:" in err and "expected" in err and "pairs/s" in err
    assert "exact for all 3 frame(s) (--exact-entropy)" in out


def test_trajectory_view_band():
    """The Trajectory view draws ±2 stderr around a sampled H, nothing around an exact one."""
    import holoviews as hv

    from dashboard.views.trajectory import stderr_band

    hv.extension("bokeh")
    f = pd.DataFrame({"time": [0.0, 1.0, 2.0], "H": [4.9, 4.8, 5.0],
                      "H_stderr": [0.002, 0.003, 0.0]})
    data = pd.DataFrame({"time": f["time"], "plotted": f["H"]})
    xdim, ydim = hv.Dimension("time"), hv.Dimension("plotted")
    band = stderr_band(f, "H", data, "time", xdim, ydim)
    assert isinstance(band, hv.Area)
    np.testing.assert_allclose(band.dimension_values("plotted"), [4.896, 4.794, 5.0])
    np.testing.assert_allclose(band.dimension_values("upper"), [4.904, 4.806, 5.0])
    hv.render(band * hv.Curve(data, xdim, ydim))  # draws with the curve on one y axis
    assert stderr_band(f.assign(H_stderr=0.0), "H", data, "time", xdim, ydim) is None
    assert stderr_band(f, "mean_dH", data, "time", xdim, ydim) is None


def test_dashboard_pipeline_sampled_and_exact(traj, monkeypatch):
    """run_pipeline's per-frame H: sampled with H_stderr above the threshold, exact with the
    exact_entropy setting (and below the threshold)."""
    from dashboard import compute
    from dashboard.pipeline import run_pipeline
    from dashboard.state import ComputeSettings, FileSpec

    monkeypatch.setattr(compute, "_CACHE", None)
    settings = ComputeSettings(k=K, cutoff=CUTOFF, bandwidth=H, learning_max_n=50,
                               learning_repeats=1, overlap_max_n=50).frozen()
    files = [FileSpec(str(traj), "md.extxyz", "trajectory")]
    exact = np.array([qc.entropy(f, H) for f in _frames(traj)])
    monkeypatch.setenv(EXACT_MAX_ATOMS_ENV, "1000")
    sampled = run_pipeline(files, settings).frames
    assert (sampled["H_stderr"] > 0).all()
    assert (np.abs(sampled["H"] - exact) <= 3 * sampled["H_stderr"]).all()
    forced = run_pipeline(files, settings.replace(exact_entropy=True)).frames
    assert (forced["H_stderr"] == 0).all()
    np.testing.assert_allclose(forced["H"], exact, rtol=1e-10)
    monkeypatch.delenv(EXACT_MAX_ATOMS_ENV)
    below = run_pipeline(files, settings).frames
    assert (below["H_stderr"] == 0).all()
    np.testing.assert_allclose(below["H"], exact, rtol=1e-10)
