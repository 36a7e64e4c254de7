"""Entropy, dH, diversity, overlap: identities and bounds of SPEC section 2."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from conftest import noisy_cu

import quests_core as qc
from quests_core import Cancelled, QuestsError
from quests_core.kernels import log_kernel_sums


@pytest.fixture(scope="module")
def cu_x():
    return qc.descriptors(noisy_cu((4, 4, 4), noise=0.06, seed=11))


def far_apart(n, d=8, spacing=1.0):
    """n points on a line, ``spacing`` apart (>> h): no kernel overlap at all."""
    x = np.zeros((n, d))
    x[:, 0] = spacing * np.arange(n)
    return x


def test_entropy_bounds_on_real_descriptors(cu_x):
    for h in (0.005, 0.015, 0.05, 1.0):
        ent = qc.entropy(cu_x, h)
        assert 0.0 <= ent <= math.log(len(cu_x))
    # more smoothing, fewer distinguishable environments
    assert qc.entropy(cu_x, 0.05) < qc.entropy(cu_x, 0.015) < qc.entropy(cu_x, 0.005)


def test_entropy_of_copies_is_zero_and_far_points_log_n():
    copies = np.tile(np.linspace(0, 1, 63), (50, 1))
    assert qc.entropy(copies) == pytest.approx(0.0, abs=1e-12)
    assert qc.diversity(copies) == pytest.approx(0.0, abs=1e-12)
    far = far_apart(37)
    assert qc.entropy(far) == pytest.approx(math.log(37), rel=1e-12)
    assert qc.diversity(far) == pytest.approx(math.log(37), rel=1e-12)


def test_delta_entropy_of_isolated_duplicate_is_zero_and_bounded_below():
    x = far_apart(20)
    dh = qc.delta_entropy(x[[3, 7]], x)
    np.testing.assert_allclose(dh, 0.0, atol=1e-14)
    assert np.all(dh <= 0.0)  # exact duplicates are never spuriously novel
    copies = np.zeros((40, 5))
    assert qc.delta_entropy(copies[:1], copies)[0] == pytest.approx(-math.log(40), rel=1e-14)


def test_entropy_identity_with_self_delta(cu_x):
    """H = log n + mean_i dH(x_i | x).

    SPEC section 2 prints the identity as ``log n - mean dH``; with its own definition
    dH = -log sum K the sign must be +, as copies (H = 0, dH = -log n) show.
    """
    n = len(cu_x)
    ent, dh = qc.entropy_and_delta(cu_x)
    assert ent == pytest.approx(math.log(n) + dh.mean(), rel=1e-12)
    np.testing.assert_allclose(qc.delta_entropy(cu_x, cu_x), dh, rtol=1e-12)
    assert np.all(dh >= -math.log(n) - 1e-12)


def test_diversity_between_zero_and_log_n(cu_x):
    d = qc.diversity(cu_x)
    assert 0.0 < d < math.log(len(cu_x))
    _, dh = qc.entropy_and_delta(cu_x)
    assert d == pytest.approx(math.log(np.exp(dh).sum()), rel=1e-12)


def test_far_point_gets_large_finite_dh(cu_x):
    y = cu_x[:4] + 5.0
    dh = qc.delta_entropy(y, cu_x)
    assert np.all(np.isfinite(dh))
    expected = ((y[:, None, :] - cu_x[None]) ** 2).sum(-1).min(1) / (2 * 0.015**2)
    np.testing.assert_allclose(dh, expected, rtol=1e-9)  # the nearest term dominates
    assert np.all(dh > 1e5)


def test_bandwidth_vector_matches_scalar_calls(cu_x):
    hs = np.array([0.01, 0.015, 0.04])
    y = cu_x[::3] + 0.003
    dh = qc.delta_entropy(y, cu_x, hs)
    ent = qc.entropy(cu_x, hs)
    assert dh.shape == (len(y), 3) and ent.shape == (3,)
    for i, h in enumerate(hs):
        np.testing.assert_allclose(dh[:, i], qc.delta_entropy(y, cu_x, h), rtol=1e-13)
        assert ent[i] == pytest.approx(qc.entropy(cu_x, float(h)), rel=1e-13)
    assert qc.overlap(y, cu_x, hs).shape == (3,)


def test_blocking_does_not_change_results(cu_x):
    y = cu_x[:300] * 1.01
    h = np.array([0.015])
    big = log_kernel_sums(y, cu_x, h)
    small = log_kernel_sums(y, cu_x, h, block_rows=7, block_cols=33)
    np.testing.assert_allclose(small, big, rtol=1e-12)


@pytest.mark.parametrize("precision, rtol", [("float64", 1e-10), ("float32", 2e-4)])
def test_log_kernel_sums_match_brute_force(cu_x, precision, rtol):
    """Blocked sums (integer-bit nearest scan, polynomial exp) against scipy's logsumexp."""
    from scipy.special import logsumexp

    rng = np.random.default_rng(3)
    y = np.concatenate([cu_x[:40], cu_x[100:140] + rng.normal(0, 0.01, (40, cu_x.shape[1]))])
    h = np.array([0.01, 0.015, 0.1])
    d2 = ((y[:, None, :] - cu_x[None, :, :]) ** 2).sum(-1)
    want = np.stack([logsumexp(-d2 / (2 * hh * hh), axis=1) for hh in h], axis=1)
    got = log_kernel_sums(y, cu_x, h, precision=precision, block_rows=16, block_cols=61)
    np.testing.assert_allclose(got, want, rtol=rtol)
    # the exact duplicates among the first 40 rows: the nearest term is exactly 1
    assert np.all(got[:40] >= 0.0)


def test_float32_path_close_to_float64(cu_x):
    h64 = qc.entropy(cu_x)
    h32 = qc.entropy(cu_x.astype(np.float32))
    assert abs(h32 - h64) <= 1e-4
    # float64 input with precision="float32": centred in float64, then rounded
    assert abs(qc.entropy(cu_x, precision="float32") - h64) <= 1e-4
    y = cu_x[::5] + 0.01
    d64 = qc.delta_entropy(y, cu_x)
    d32 = qc.delta_entropy(y, cu_x, precision="float32")
    assert np.max(np.abs(d32 - d64)) < 1e-3


def test_overlap_and_novelty(cu_x):
    inside = cu_x[:50]
    outside = cu_x[:30] + 1.0
    y = np.vstack([inside, outside])
    assert qc.overlap(y, cu_x) == pytest.approx(50 / 80)
    assert qc.novelty(y, cu_x) == pytest.approx(30 / 80)
    assert qc.overlap(cu_x, cu_x) == 1.0


def test_threads_and_determinism(cu_x):
    y = cu_x[::2] + 0.002
    a = qc.delta_entropy(y, cu_x, n_threads=1)
    b = qc.delta_entropy(y, cu_x, n_threads=qc.get_num_threads())
    np.testing.assert_array_equal(a, b)


def test_progress_and_cancel(cu_x):
    seen = []
    qc.delta_entropy(cu_x, cu_x, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (len(cu_x), len(cu_x))
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        qc.entropy(cu_x, cancel=stop)


def test_approximate_dh_never_below_exact(cu_x):
    y = qc.descriptors(noisy_cu((3, 3, 3), noise=0.15, seed=21))
    exact = qc.delta_entropy(y, cu_x)
    for m in (1, 3, 10):
        approx = qc.approx_delta_entropy(y, cu_x, n_neighbors=m)
        assert approx.shape == exact.shape
        assert np.all(approx >= exact - 1e-9)
    # with every cell probed and every point kept it is the exact value
    index = qc.NeighborIndex(cu_x, n_probe=10**6)
    full = qc.approx_delta_entropy(y, cu_x, n_neighbors=len(cu_x), index=index)
    np.testing.assert_allclose(full, exact, rtol=1e-9)
    # the nearest few carry most of the sum for a narrow kernel
    five = qc.approx_delta_entropy(y, cu_x, n_neighbors=5)
    assert np.median(five - exact) < 2.0


def test_bandwidth_from_volume():
    assert qc.bandwidth_from_volume(10.896) == pytest.approx(
        0.0897141 * math.exp(-0.5) + 0.0119417, rel=1e-15
    )
    hs = qc.bandwidth_from_volume(np.array([1.0, 11.8, 60.0]))
    assert np.all(np.diff(hs) < 0) and hs[-1] == pytest.approx(0.0119417, rel=1e-3)
    with pytest.raises(QuestsError):
        qc.bandwidth_from_volume(0.0)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda x: qc.entropy(x, h=0.0), "bandwidth h must be"),
        (lambda x: qc.entropy(x, h=-1), "bandwidth h must be"),
        (lambda x: qc.delta_entropy(x[:, :10], x), "descriptor widths differ"),
        (lambda x: qc.entropy(x[:0]), "no descriptors"),
        (lambda x: qc.entropy(np.where(x > 0.2, np.nan, x)), "NaN or Inf"),
        (lambda x: qc.entropy(x, precision="float16"), "precision"),
    ],
)
def test_bad_input(cu_x, call, match):
    with pytest.raises(QuestsError, match=match) as err:
        call(cu_x)
    assert "\n" not in str(err.value)


def test_learning_curve_deterministic_and_bounded(cu_x):
    lc = qc.learning_curve(cu_x, sizes=[10, 40, 160, len(cu_x)], repeats=3, seed=4)
    again = qc.learning_curve(cu_x, sizes=[10, 40, 160, len(cu_x)], repeats=3, seed=4)
    np.testing.assert_array_equal(lc.entropies, again.entropies)
    assert lc.entropies.shape == (4, 3)
    assert np.all(lc.mean <= lc.log_n + 1e-12)
    assert lc.std[-1] == pytest.approx(0.0, abs=1e-12)  # the full set every time
    assert lc.mean[-1] == pytest.approx(qc.entropy(cu_x), rel=1e-12)


def test_fit_asymptote_recovers_known_parameters():
    sizes = np.unique(np.geomspace(10, 1e6, 20).astype(int))
    a, b, c = 4.2, 3.1, 0.021
    ent = a - b * np.exp(-c * np.log(sizes) ** 2)
    fit = qc.fit_asymptote(sizes, ent)
    assert fit.a == pytest.approx(a, rel=1e-6)
    assert fit.b == pytest.approx(b, rel=1e-5) and fit.c == pytest.approx(c, rel=1e-5)
    np.testing.assert_allclose(fit.gap, a - ent, atol=1e-5)
    assert fit.used.sum() == len(sizes) - 6 and not fit.used[:3].any() and not fit.used[-3:].any()
    with pytest.raises(QuestsError):
        qc.fit_asymptote([10, 20], [1.0, 1.1])
