"""Classical nucleation theory: units, constants, critical band, pre-nucleation frames, fit."""

from __future__ import annotations

import numpy as np
import pytest

from quests_core.analysis import cnt
from quests_core.errors import QuestsError

CU = cnt.CU.kwargs()


# ---------------------------------------------------------------------------
# units and constants
# ---------------------------------------------------------------------------


def test_unit_conversions_match_si_arithmetic():
    # 1 J/m^2 = 1 J / (1e20 Å^2) = 1/(1.602176634e-19 * 1e20) eV/Å^2
    assert cnt.j_per_m2_to_ev_per_a2(1.0) == pytest.approx(0.0624150907, rel=1e-9)
    assert cnt.ev_per_a2_to_j_per_m2(cnt.j_per_m2_to_ev_per_a2(0.2)) == pytest.approx(0.2)
    # the Faraday constant: 96.485332 kJ/mol is 1 eV per atom
    assert cnt.kj_per_mol_to_ev_per_atom(96.48533212) == pytest.approx(1.0, rel=1e-9)
    assert cnt.kj_per_mol_to_ev_per_atom(11.99) == pytest.approx(0.124268, rel=1e-5)


def test_atomic_volume_from_density_number_density_or_given():
    # Cu at 8.96 g/cm^3: 63.546 g/mol / (8.96 g/cm^3 * N_A) = 1.1777e-23 cm^3 = 11.777 Å^3
    assert cnt.atomic_volume("Cu", density=8.96) == pytest.approx(
        63.546 / (8.96 * 6.02214076e23) * 1e24, rel=1e-12)
    assert cnt.atomic_volume("Cu", density=8.96) == pytest.approx(11.777, abs=1e-3)
    assert cnt.atomic_volume("Fe", number_density=0.0849) == pytest.approx(1 / 0.0849)
    assert cnt.atomic_volume("Fe", v_atom=11.8) == 11.8
    assert cnt.atomic_volume("Cu") == 12.893  # the paper's Cu EAM value, for Cu only
    with pytest.raises(QuestsError, match="Fe: the default 12.893 .* is Cu's; give the density"):
        cnt.atomic_volume("Fe")
    with pytest.raises(QuestsError, match="this trajectory"):
        cnt.atomic_volume(None)
    with pytest.raises(QuestsError, match="not v_atom and density"):
        cnt.atomic_volume("Cu", v_atom=12.0, density=8.9)
    with pytest.raises(QuestsError, match="one element"):
        cnt.atomic_volume(None, density=8.9)
    with pytest.raises(QuestsError, match="positive"):
        cnt.atomic_volume("Cu", number_density=-0.1)


def test_cnt_constants_default_to_cu_only_for_cu():
    assert cnt.cnt_constants("Cu") == cnt.CU
    custom = cnt.cnt_constants("Cu", t_melt=1358.0, density=8.96)
    assert custom.t_melt == 1358.0 and custom.latent_heat == 11.99
    assert custom.v_atom == pytest.approx(cnt.atomic_volume("Cu", density=8.96))
    with pytest.raises(QuestsError, match="melting temperature .*latent heat .*interfacial"):
        cnt.cnt_constants("Fe", v_atom=11.8)
    with pytest.raises(QuestsError, match=r"Fe .*give the density \(g/cm\^3\), the number "
                       r"density \(atoms/Å\^3\) or the volume per atom"):
        cnt.cnt_constants("Fe", t_melt=1811.0, latent_heat=13.8, gamma_range=(0.2, 0.3))
    fe = cnt.cnt_constants("Fe", t_melt=1811.0, latent_heat=13.8, gamma_range=(0.2, 0.3),
                           number_density=0.0849)
    assert fe.kwargs() == {"t_melt": 1811.0, "latent_heat": 13.8, "v_atom": 1 / 0.0849}
    with pytest.raises(QuestsError, match="low <= high"):
        cnt.cnt_constants("Cu", gamma_range=(0.3, 0.1))


# ---------------------------------------------------------------------------
# critical radius and band
# ---------------------------------------------------------------------------


def test_critical_radius_against_si_units():
    t, gamma = 1000.0, 0.177
    # everything in SI: latent heat per m^3 from J/mol and m^3/atom
    dh_vol = 11.99e3 / (6.02214076e23 * 12.893e-30)  # J/m^3
    r_si = 2 * gamma * 1323.0 / (dh_vol * (1323.0 - t))  # m
    assert cnt.cnt_critical_radius(t, gamma, **CU) == pytest.approx(r_si * 1e10, rel=1e-10)


def test_critical_band_orders_and_diverges_at_melting():
    band = cnt.critical_size_band([800.0, 1000.0, 1323.0, 1500.0], cnt.CU_GAMMA_SL_RANGE, **CU)
    assert np.all(band.r_min[:2] < band.r_max[:2])
    assert band.r_min[0] < band.r_min[1]  # deeper undercooling, smaller nucleus
    assert np.all(np.isinf(band.r_min[2:])) and np.all(np.isinf(band.n_max[2:]))
    # the size follows n V = 4/3 pi r^3
    n = 4 / 3 * np.pi * band.r_max[:2] ** 3 / cnt.CU_V_ATOM
    np.testing.assert_allclose(band.n_max[:2], n)
    np.testing.assert_allclose(cnt.size_to_radius(band.n_min[:2], cnt.CU_V_ATOM), band.r_min[:2])
    with pytest.raises(QuestsError):
        cnt.critical_size_band(1000.0, (0.3, 0.1), **CU)


def test_pooled_band_is_one_band_at_the_mean_temperature():
    temps = np.array([1900.0, 905.0, 940.0, 880.0, 1010.0, np.nan])
    frames = [1, 2, 3, 4]
    band = cnt.pooled_critical_band(temps, (0.177, 0.221), frames, **CU)
    t_mean = (905.0 + 940.0 + 880.0 + 1010.0) / 4  # 933.75 K
    assert band.temperature.tolist() == [t_mean]
    assert band.r_min.shape == (1,)
    assert band.r_min[0] == pytest.approx(cnt.cnt_critical_radius(t_mean, 0.177, **CU), rel=1e-14)
    assert band.r_max[0] == pytest.approx(cnt.cnt_critical_radius(t_mean, 0.221, **CU), rel=1e-14)
    assert band.n_min[0] == pytest.approx(cnt.radius_to_size(band.r_min[0], cnt.CU_V_ATOM))
    # frame by frame the band would jitter by more than 15 % over these frames
    per_frame = cnt.critical_size_band(temps[frames], (0.177, 0.221), **CU)
    assert per_frame.n_min.max() / per_frame.n_min.min() > 1.15
    assert per_frame.n_min.min() < band.n_min[0] < per_frame.n_min.max()
    assert cnt.pooled_temperature(temps, frames) == t_mean
    with pytest.raises(QuestsError, match="structure 5"):
        cnt.pooled_critical_band(temps, (0.177, 0.221), [4, 5], **CU)
    with pytest.raises(QuestsError, match="no frames"):
        cnt.pooled_temperature(temps, [])


def test_pre_nucleation_frames():
    inf = np.inf
    largest = np.array([0, 2, 5, 9, 120, 400, 3])
    band = np.array([inf, 60.0, 60.0, 60.0, 60.0, 60.0, 60.0])
    # frame 0 is above the melting point, frame 4 reaches the critical size
    np.testing.assert_array_equal(cnt.pre_nucleation_frames(largest, band), [1, 2, 3])
    # one pooled critical size for every frame: frames 0-3 come before frame 4
    np.testing.assert_array_equal(cnt.pre_nucleation_frames(largest, 60.0), [0, 1, 2, 3])
    np.testing.assert_array_equal(cnt.pre_nucleation_frames(largest, 6.0), [0, 1, 2])
    # a pooled value with the frames above the melting point marked inf
    temps = np.array([1900.0, 800.0, 810.0, 790.0, 800.0, 805.0, 795.0])
    crit = np.where(temps < cnt.CU_T_MELT, 60.0, inf)
    np.testing.assert_array_equal(cnt.pre_nucleation_frames(largest, crit), [1, 2, 3])
    np.testing.assert_array_equal(cnt.pre_nucleation_frames(largest, np.full(7, inf)),
                                  np.arange(7))
    np.testing.assert_array_equal(cnt.pre_nucleation_frames(largest, inf), np.arange(7))
    # the first undercooled frame already reaches it: every undercooled frame
    np.testing.assert_array_equal(
        cnt.pre_nucleation_frames(np.array([0, 100]), np.array([inf, 50.0])), [1])
    assert cnt.pre_nucleation_frames(largest, 1e9).tolist() == list(range(7))


# ---------------------------------------------------------------------------
# the CNT fit
# ---------------------------------------------------------------------------


def _design(sizes):
    n = np.asarray(sizes, dtype=float)
    return np.stack([np.ones_like(n), -n, -(n ** (2 / 3))], axis=1)


def _to_physical(c, t, v_atom):
    kt = cnt.BOLTZMANN_EV * t
    area = 4 * np.pi * (3 * v_atom / (4 * np.pi)) ** (2 / 3)
    return np.exp(c[0]), c[1] * kt / v_atom, c[2] * kt / area


def test_cnt_fit_recovers_exact_parameters():
    t = 1100.0
    log_n0, dg, gamma = np.log(5000.0), -0.004, cnt.j_per_m2_to_ev_per_a2(0.19)
    sizes = np.arange(1, 40)
    counts = np.exp(cnt.cnt_log_distribution(sizes, log_n0, dg, gamma, t, cnt.CU_V_ATOM))
    for weights in cnt.FIT_WEIGHTS:
        fit = cnt.fit_cnt_distribution(sizes, counts, t, v_atom=cnt.CU_V_ATOM, weights=weights)
        assert fit.weights == weights
        assert fit.n0 == pytest.approx(5000.0, rel=1e-6)
        assert fit.dg_sl == pytest.approx(dg, rel=1e-6)
        assert fit.gamma_sl_j_m2 == pytest.approx(0.19, rel=1e-6)
        np.testing.assert_allclose(fit.log_counts(sizes), np.log(counts), atol=1e-8)
        if weights == "none":  # no residual, no unweighted uncertainty
            assert fit.gamma_sl_err < 1e-8 * gamma


def test_cnt_fit_weights_match_least_squares_algebra():
    rng = np.random.default_rng(11)
    t, v_atom = 950.0, 11.8
    sizes = np.arange(1, 26)
    expected = np.exp(cnt.cnt_log_distribution(
        sizes, np.log(3e4), 0.001, cnt.j_per_m2_to_ev_per_a2(0.12), t, v_atom))
    counts = rng.poisson(expected)
    keep = counts > 0
    n, y = sizes[keep], np.log(counts[keep])
    a = _design(n)
    # unweighted: the normal equations of ordinary least squares, s^2 (A^T A)^-1
    c_ols = np.linalg.solve(a.T @ a, a.T @ y)
    s2 = np.sum((y - a @ c_ols) ** 2) / (len(y) - 3)
    plain = cnt.fit_cnt_distribution(sizes, counts, t, v_atom=v_atom, weights="none")
    n0, dg, gamma = _to_physical(c_ols, t, v_atom)
    assert plain.n0 == pytest.approx(n0, rel=1e-9)
    assert plain.dg_sl == pytest.approx(dg, rel=1e-9)
    assert plain.gamma_sl == pytest.approx(gamma, rel=1e-9)
    area = 4 * np.pi * (3 * v_atom / (4 * np.pi)) ** (2 / 3)
    var_c2 = s2 * np.linalg.inv(a.T @ a)[2, 2]
    assert plain.gamma_sl_err == pytest.approx(np.sqrt(var_c2) * cnt.BOLTZMANN_EV * t / area,
                                               rel=1e-9)
    # Poisson: weights N, absolute covariance (A^T N A)^-1
    w = counts[keep].astype(float)
    c_wls = np.linalg.solve(a.T @ (a * w[:, None]), a.T @ (w * y))
    pois = cnt.fit_cnt_distribution(sizes, counts, t, v_atom=v_atom, weights="poisson")
    assert pois.weights == "poisson"
    assert cnt.fit_cnt_distribution(sizes, counts, t, v_atom=v_atom).weights == "none"
    assert pois.gamma_sl == pytest.approx(_to_physical(c_wls, t, v_atom)[2], rel=1e-9)
    var_c2 = np.linalg.inv(a.T @ (a * w[:, None]))[2, 2]
    assert pois.gamma_sl_err == pytest.approx(np.sqrt(var_c2) * cnt.BOLTZMANN_EV * t / area,
                                              rel=1e-9)
    # the choice matters on noisy counts
    assert abs(pois.gamma_sl - plain.gamma_sl) > 1e-3 * abs(pois.gamma_sl)


def test_cnt_fit_poisson_noise_within_uncertainty():
    rng = np.random.default_rng(3)
    t = 1000.0
    log_n0, dg, gamma = np.log(2e5), 0.0, cnt.j_per_m2_to_ev_per_a2(0.05)
    sizes = np.arange(1, 30)
    expected = np.exp(cnt.cnt_log_distribution(sizes, log_n0, dg, gamma, t, cnt.CU_V_ATOM))
    counts = rng.poisson(expected)
    fit = cnt.fit_cnt_distribution(sizes, counts, t, v_atom=cnt.CU_V_ATOM, weights="poisson")
    assert fit.gamma_sl_err > 0 and fit.dg_sl_err > 0 and fit.n0_err > 0
    assert abs(fit.gamma_sl - gamma) < 4 * fit.gamma_sl_err
    assert abs(fit.dg_sl - dg) < 4 * fit.dg_sl_err
    assert abs(np.log(fit.n0) - log_n0) < 4 * fit.n0_err / fit.n0


def test_cnt_fit_bad_input():
    v = cnt.CU_V_ATOM
    with pytest.raises(QuestsError, match="at least 4"):
        cnt.fit_cnt_distribution([1, 2, 3], [10, 5, 1], 1000.0, v_atom=v)
    with pytest.raises(QuestsError, match="temperature"):
        cnt.fit_cnt_distribution([1, 2, 3, 4], [10, 5, 3, 1], 0.0, v_atom=v)
    with pytest.raises(QuestsError):
        cnt.fit_cnt_distribution([1, 2, 3, 4], [10, 5, 1], 1000.0, v_atom=v)
    with pytest.raises(QuestsError, match="weights"):
        cnt.fit_cnt_distribution([1, 2, 3, 4], [10, 5, 3, 1], 1000.0, v_atom=v, weights="sqrt")
    with pytest.raises(TypeError):  # no silent volume per atom
        cnt.fit_cnt_distribution([1, 2, 3, 4], [10, 5, 3, 1], 1000.0)


def test_sample_quench_fit_weights_and_pooled_band():
    from pathlib import Path

    sample = Path(__file__).resolve().parents[1] / "sample_data"
    quench_path, solid_path = sample / "cu_quench.extxyz", sample / "cu_solid_400K.extxyz"
    if not (quench_path.exists() and solid_path.exists()):
        pytest.skip("sample Cu quench / solid trajectories not generated yet")
    from ase.io import read

    import quests_core as qc
    from quests_core.analysis import clusters

    frames = read(quench_path, index=":")
    reference = qc.descriptors(read(solid_path, index=":"))
    res = clusters.trajectory_clusters(frames, clusters.solid_like_delta_entropy(frames, reference))
    temps = np.array([f.info["temperature"] for f in frames])
    per_frame = cnt.critical_size_band(temps, cnt.CU_GAMMA_SL_RANGE, **CU)
    pre = cnt.pre_nucleation_frames(res.largest, per_frame.n_min)
    assert pre.tolist() == list(range(1, 39))  # frame 0 is the melt at 1982 K
    t_pool = cnt.pooled_temperature(temps, pre)
    assert t_pool == pytest.approx(794.3, abs=0.05)
    band = cnt.pooled_critical_band(temps, cnt.CU_GAMMA_SL_RANGE, pre, **CU)
    assert band.n_min[0] == pytest.approx(61.3, abs=0.05)
    assert per_frame.n_min[pre].min() < 0.85 * band.n_min[0] < band.n_min[0] * 1.2 < (
        per_frame.n_min[pre].max())
    dist = clusters.cluster_size_distribution(res.clusters, pre)
    # the default is the paper's unweighted fit; Poisson weights are the option
    plain = cnt.fit_cnt_distribution(dist.sizes, dist.counts, t_pool, v_atom=cnt.CU_V_ATOM)
    pois = cnt.fit_cnt_distribution(dist.sizes, dist.counts, t_pool, v_atom=cnt.CU_V_ATOM,
                                    weights="poisson")
    assert plain.weights == "none" and pois.weights == "poisson"
    assert pois.gamma_sl_j_m2 == pytest.approx(0.166, abs=2e-3)
    assert plain.gamma_sl_j_m2 == pytest.approx(0.121, abs=2e-3)
    # the paper sizes the fit's clusters with 8.96 g/cm^3 (11.78 Å^3/atom), not the
    # band's 12.893: gamma_SL scales as V^(-2/3)
    assert cnt.CU.v_fit == pytest.approx(11.777, abs=1e-3)
    paper = cnt.fit_cnt_distribution(dist.sizes, dist.counts, t_pool, v_atom=cnt.CU.v_fit)
    assert paper.gamma_sl_j_m2 == pytest.approx(0.129, abs=2e-3)
    assert paper.gamma_sl_j_m2 == pytest.approx(
        plain.gamma_sl_j_m2 * (cnt.CU_V_ATOM / cnt.CU.v_fit) ** (2 / 3), rel=1e-10)
    pois_paper = cnt.fit_cnt_distribution(dist.sizes, dist.counts, t_pool, v_atom=cnt.CU.v_fit,
                                          weights="poisson")
    assert pois_paper.gamma_sl_j_m2 == pytest.approx(0.177, abs=2e-3)


def test_pre_nucleation_pool_is_self_consistent():
    """One band at the mean temperature of exactly the frames it selects (the paper's
    way), never a band per frame."""
    from quests_core.analysis import cnt

    temps = np.array([1500.0, 700.0, 760.0, 1000.0, 1100.0, 1000.0, 900.0, 800.0])
    largest = np.array([0, 2, 5, 9, 30, 60, 400, 3])
    pre, band = cnt.pre_nucleation_pool(largest, temps, cnt.CU)
    under = temps < cnt.CU_T_MELT
    np.testing.assert_array_equal(
        pre, cnt.pre_nucleation_frames(largest, np.where(under, band.n_min[0], np.inf)))
    assert pre[0] == 1 and 0 not in pre  # frame 0 is above the melting point
    assert band.temperature[0] == pytest.approx(temps[pre].mean(), rel=1e-15)
    same = cnt.pooled_critical_band(temps, cnt.CU_GAMMA_SL_RANGE, pre, **cnt.CU.kwargs())
    assert band.n_min[0] == same.n_min[0] and band.n_max[0] == same.n_max[0]
    # no undercooled frame (or no temperature): every frame, no band
    pre, band = cnt.pre_nucleation_pool(largest, np.full(8, np.nan), cnt.CU)
    np.testing.assert_array_equal(pre, np.arange(8))
    assert band is None
