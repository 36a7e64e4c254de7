"""The pure formulas of quests_core.entropy: H and dH from log kernel sums (SPEC section 2)."""

from __future__ import annotations

import math

import numpy as np

import quests_core as qc
from quests_core.entropy import delta_from_log_sums, entropy_from_log_sums


def brute_log_sums(y: np.ndarray, x: np.ndarray, h: float) -> np.ndarray:
    d2 = ((y[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    return np.log(np.exp(-d2 / (2 * h * h)).sum(1))


def test_entropy_from_log_sums_is_the_spec_formula():
    rng = np.random.default_rng(3)
    x = rng.normal(scale=0.02, size=(40, 5))
    h = 0.015
    logs = brute_log_sums(x, x, h)[:, None]
    n = len(x)
    kernel = np.exp(-((x[:, None] - x[None]) ** 2).sum(-1) / (2 * h * h))
    spec = -np.mean(np.log(kernel.sum(1) / n))  # -(1/n) sum_i log((1/n) sum_j K_ij)
    assert math.isclose(entropy_from_log_sums(logs, n)[0], spec, rel_tol=1e-13)
    assert math.isclose(qc.entropy(x, h), spec, rel_tol=1e-9)
    # copies of one point: H = 0; far-apart points: H = log n
    assert entropy_from_log_sums(np.full((7, 1), math.log(7)), 7)[0] == 0.0
    assert math.isclose(entropy_from_log_sums(np.zeros((7, 1)), 7)[0], math.log(7))


def test_delta_from_log_sums_and_entropy_and_delta_agree():
    rng = np.random.default_rng(4)
    x = rng.normal(scale=0.02, size=(30, 4))
    y = rng.normal(scale=0.05, size=(12, 4))
    h = [0.01, 0.03]
    logs = np.column_stack([brute_log_sums(y, x, hh) for hh in h])
    np.testing.assert_allclose(delta_from_log_sums(logs), qc.delta_entropy(y, x, h), rtol=1e-9)
    ent, dh = qc.entropy_and_delta(x, h)
    # H = log n + mean_i dH(x_i | x)
    np.testing.assert_allclose(ent, math.log(len(x)) + np.mean(dh, axis=0), rtol=1e-12)
