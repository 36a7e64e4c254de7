"""Uncertainty (dH) versus error: running average, recall, force errors."""

from __future__ import annotations

import numpy as np
import pytest

from quests_core.analysis import uncertainty as uq
from quests_core.errors import QuestsError


def brute_running_average(d, e, n_bins, window):
    lo, hi = d.min(), d.max()
    width = (hi - lo) / n_bins
    centers = lo + width * (np.arange(n_bins) + 0.5)
    means = []
    for c in centers:
        sel = np.abs(d - c) <= window * width * (1 + 1e-12)
        means.append(e[sel].mean() if sel.any() else np.nan)
    return centers, np.array(means)


def test_running_average_recovers_linear_function_exactly():
    d = np.linspace(-2.0, 8.0, 20001)
    e = 0.3 * d + 1.0
    res = uq.running_average(d, e)
    assert res.centers.shape == (20,) and res.width == pytest.approx(0.5)
    np.testing.assert_allclose(res.centers, -2.0 + 0.5 * (np.arange(20) + 0.5))
    # interior windows are symmetric around their centres: the mean is f(centre)
    np.testing.assert_allclose(res.mean[1:-1], 0.3 * res.centers[1:-1] + 1.0, rtol=1e-9)
    # window half-width 0.75 l = 0.375: the first window holds [-2, -1.375]
    assert res.mean[0] == pytest.approx(0.3 * (-2.0 - 1.375) / 2 + 1.0, rel=1e-6)
    assert res.count[5] == np.sum(np.abs(d - res.centers[5]) <= 0.375 + 1e-12)


def test_running_average_of_quadratic_has_known_window_bias():
    d = np.linspace(0.0, 20.0, 400_001)
    e = d**2
    res = uq.running_average(d, e, n_bins=20, window=0.75)
    half = 0.75 * res.width
    expected = res.centers**2 + half**2 / 3.0  # mean of x^2 over [c - w, c + w]
    np.testing.assert_allclose(res.mean[1:-1], expected[1:-1], rtol=0, atol=5e-5)


@pytest.mark.parametrize("window, n_bins", [(0.75, 20), (0.5, 7), (1.3, 3)])
def test_running_average_matches_brute_force(window, n_bins):
    rng = np.random.default_rng(1)
    d = np.concatenate([rng.normal(0, 1, 500), rng.normal(6, 0.3, 50)])
    e = rng.gamma(2.0, 1.0, len(d))
    centers, means = brute_running_average(d, e, n_bins, window)
    res = uq.running_average(d, e, n_bins=n_bins, window=window)
    np.testing.assert_allclose(res.centers, centers)
    np.testing.assert_allclose(res.mean, means, equal_nan=True)
    assert np.all(np.isnan(res.mean) == (res.count == 0))


def test_running_average_drops_non_finite_and_rejects_bad_input():
    d = np.array([0.0, 1.0, 2.0, np.nan, 3.0])
    e = np.array([1.0, 1.0, 1.0, 5.0, np.inf])
    res = uq.running_average(d, e, n_bins=2)
    assert res.width == pytest.approx(1.0)  # range 0..2 after dropping
    with pytest.raises(QuestsError, match="equal"):
        uq.running_average(np.ones(5), np.arange(5.0))
    with pytest.raises(QuestsError, match="empty"):
        uq.running_average(np.array([]), np.array([]))
    with pytest.raises(QuestsError, match="errors"):
        uq.running_average(np.arange(3.0), np.arange(4.0))
    with pytest.raises(QuestsError):
        uq.running_average(np.arange(3.0), np.arange(3.0), n_bins=0)


def test_high_error_recall_known_answers():
    err = np.arange(100, dtype=float)
    dh = np.where(err >= 90, 1.0, -1.0)  # dH flags exactly the top 10
    r = uq.high_error_recall(dh, err, threshold=89.5)
    assert (r.n_high, r.recall, r.precision, r.frac_flagged) == (10, 1.0, 1.0, 0.1)
    dh_half = dh.copy()
    dh_half[[90, 92, 94, 96, 98]] = -1.0
    dh_half[[0, 1, 2, 3, 4]] = 2.0
    r = uq.high_error_recall(dh_half, err, threshold=89.5)
    assert r.recall == pytest.approx(0.5) and r.precision == pytest.approx(0.5)
    # default: the 0.9 quantile of the errors
    r = uq.high_error_recall(dh, err)
    assert r.threshold == pytest.approx(np.quantile(err, 0.9))
    assert r.n_high == 10 and r.recall == 1.0
    r = uq.high_error_recall(dh, err, threshold=1e9)
    assert r.n_high == 0 and np.isnan(r.recall)
    with pytest.raises(QuestsError, match="quantile"):
        uq.high_error_recall(dh, err, quantile=1.5)


def test_force_errors():
    a = np.array([[1.0, 2.0, 2.0], [0.0, 0.0, 0.0]])
    b = np.zeros((2, 3))
    np.testing.assert_allclose(uq.force_errors(a, b), [3.0, 0.0])
    with pytest.raises(QuestsError, match="shape"):
        uq.force_errors(a, np.zeros((3, 3)))
    with pytest.raises(QuestsError, match="shape"):
        uq.force_errors(np.zeros((2, 2)), np.zeros((2, 2)))


def test_uncertainty_vs_error_bundles_both():
    rng = np.random.default_rng(2)
    d = rng.uniform(-3, 3, 2000)
    e = np.exp(0.5 * d)
    res = uq.uncertainty_vs_error(d, e)
    assert res.running.mean.shape == (20,)
    assert np.all(np.diff(res.running.mean) > 0)  # monotone error follows dH
    # the 10 % largest errors are the 10 % largest dH, all positive
    assert res.recall.recall == 1.0


def test_sample_two_models_dh_against_training_set():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "sample_data" / "cu_forces_two_models.extxyz"
    if not path.exists():
        pytest.skip(f"{path.name} not generated yet")
    from ase.io import read

    import quests_core as qc

    frames = read(path, index=":")
    train = [f for f in frames if f.info["label"] == "train"]
    test = [f for f in frames if f.info["label"] == "test"]
    assert train and test
    err = np.concatenate(
        [uq.force_errors(f.arrays["forces_model"], f.arrays["forces_emt"]) for f in test]
    )
    dh = qc.delta_entropy(qc.descriptors(test), qc.descriptors(train), 0.015)
    assert dh.shape == err.shape == (sum(len(f) for f in test),)
    res = uq.uncertainty_vs_error(dh, err)
    filled = res.running.count > 0
    assert filled[0] and filled[-1] and np.all(np.isfinite(res.running.mean[filled]))
    # the windows overlap (0.75 l half-width), so every atom is counted at least once
    assert res.running.count.sum() >= len(dh)
    # liquid, hot, defective and surface atoms are new to a 300 K crystal training set,
    # and the two potentials disagree more on them
    novel = dh > 0
    assert novel.mean() > 0.5
    assert err[novel].mean() > err[~novel].mean()
    assert 0.0 <= res.recall.recall <= 1.0 and res.recall.n_high > 0


def test_force_array_names():
    arrays = {"forces_emt": np.zeros((2, 3)), "forces_model": np.ones((2, 3)),
              "charges": np.zeros(2)}
    # automatic: the second in sorted order is the prediction
    assert uq.force_array_names(arrays) == ("forces_model", "forces_emt")
    assert uq.force_array_names(arrays, "forces_emt", "forces_model") == ("forces_emt",
                                                                          "forces_model")
    with pytest.raises(QuestsError, match="name both"):
        uq.force_array_names(arrays, "forces_emt", "")
    with pytest.raises(QuestsError, match=r"f.xyz: per-atom array 'nope' missing"):
        uq.force_array_names(arrays, "nope", "forces_emt", source="f.xyz")
    with pytest.raises(QuestsError, match=r"found \['forces'\]"):
        uq.force_array_names({"forces": np.zeros((2, 3))})


def test_uncertainty_study_is_dh_against_the_training_set():
    import quests_core as qc

    rng = np.random.default_rng(4)
    x_ref = rng.normal(size=(60, 5))
    x_test = np.concatenate([x_ref[:20] + 0.01, rng.normal(3.0, 1.0, size=(20, 5))])
    error = np.linspace(0.0, 1.0, 40)
    seen = []
    res = uq.uncertainty_study(x_test, x_ref, error, 0.5, n_bins=5, window=0.5,
                               progress=lambda d, t: seen.append((d, t)))
    dh = qc.delta_entropy(x_test, x_ref, 0.5)
    np.testing.assert_allclose(res.dh, dh)
    want = uq.uncertainty_vs_error(dh, error, n_bins=5, window=0.5)
    np.testing.assert_allclose(res.running.mean, want.running.mean, equal_nan=True)
    assert res.recall == want.recall and seen[-1] == (40, 40)
    with pytest.raises(QuestsError, match="t.xyz: 39 errors for 40 test atoms"):
        uq.uncertainty_study(x_test, x_ref, error[:-1], 0.5, test_name="t.xyz")
    with pytest.raises(QuestsError):
        uq.uncertainty_study(x_test[:, :4], x_ref, error, 0.5)
