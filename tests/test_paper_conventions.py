"""The conventions of the Nat. Commun. 2025 QUESTS paper (and its SI) in the analyses.

- phase-entropy: one bandwidth from "the average of the volumes between the alpha and
  beta phases": each phase's own mean volume per atom, then the plain mean of the two
  (each phase counted once, whatever its number of frames or atoms).
- CNT fit: unweighted least squares on log N by default (Poisson weights an option),
  the fit's clusters sized with the paper's density of Cu (8.96 g/cm^3, 11.78
  Å^3/atom) while the critical band uses 12.893 Å^3/atom.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from ase.io import read, write

import quests_core as qc
from quests_core.analysis import cnt, thermo
from quests_core.cli import build_parser, main
from quests_core.errors import QuestsError

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
SOLID, MELT = SAMPLE / "cu_solid_400K.extxyz", SAMPLE / "cu_melt.extxyz"


def _phase_entropy(tmp_path, *argv) -> dict:
    out = tmp_path / f"pe{len(list(tmp_path.iterdir()))}.json"
    code = main(["phase-entropy", *map(str, argv), "-q", "-o", str(out)])
    assert code == 0
    return json.loads(out.read_text())["summary"]


# ---------------------------------------------------------------- phase entropy


def test_phase_entropy_one_frame_of_a_gives_the_bandwidth_of_ten(tmp_path):
    """The bundled solid (10 frames) against the melt (10 frames), and one frame of the
    solid against the same melt: one bandwidth from the mean of the two phases' volumes
    per atom both times.

    The solid's frames differ slightly in volume per atom (11.838-11.910 Å^3/atom), so
    frame 0 alone (11.886) is not exactly their mean (11.880): the pooled volume moves by
    half that difference (0.003 Å^3/atom) and h by |dh/dV| x 0.003 ~ 1.5e-5 1/Å. The
    tolerances below are half the spread of the solid's frames (0.036 Å^3/atom) and
    the h of that; weighting each set by its environments moved h from 0.0552 to 0.0502.
    """
    if not (SOLID.exists() and MELT.exists()):
        pytest.skip("bundled Cu solid / melt not generated")
    vols = [a.get_volume() / len(a) for a in read(SOLID, index=":")]
    spread = (max(vols) - min(vols)) / 2
    ten = _phase_entropy(tmp_path, SOLID, MELT, "--max-envs", "2000")
    one = _phase_entropy(tmp_path, SOLID, MELT, "--index-a", "0", "--max-envs", "2000")
    assert one["volume_A"] == pytest.approx(vols[0], rel=1e-12)
    assert ten["volume_pooled"] == (ten["volume_A"] + ten["volume_B"]) / 2
    assert one["volume_pooled"] == (one["volume_A"] + one["volume_B"]) / 2
    assert abs(one["volume_pooled"] - ten["volume_pooled"]) <= spread
    h_tol = abs(float(qc.bandwidth_from_volume(ten["volume_pooled"] + spread))
                - ten["h_A"])
    assert one["h_A"] == one["h_B"] and ten["h_A"] == ten["h_B"]
    assert abs(one["h_A"] - ten["h_A"]) <= h_tol < 2e-4
    assert ten["h_A"] == pytest.approx(0.05516, abs=1e-5)
    # the old weighting by environments (864 against 8640) would have given 0.0502
    weighted = (one["volume_A"] * 864 + one["volume_B"] * 8640) / (864 + 8640)
    assert abs(float(qc.bandwidth_from_volume(weighted)) - one["h_A"]) > 4e-3
    assert "mean of the two phases'" in one["volume_per_atom"]
    assert "each phase counted once" in one["volume_per_atom"]


def test_phase_entropy_pooled_volume_exact_when_a_frames_share_their_volume(tmp_path):
    """Every frame of A with the same volume per atom (cell 24 x 24 x 18 Å, 864 atoms:
    12 Å^3/atom up to the last bit of numpy's determinant): one frame of A and ten give
    the same pooled volume and the same h, bit for bit."""
    if not (SOLID.exists() and MELT.exists()):
        pytest.skip("bundled Cu solid / melt not generated")
    frames = read(SOLID, index=":")
    for atoms in frames:
        atoms.set_cell(np.diag([24.0, 24.0, 18.0]), scale_atoms=True)
    solid = tmp_path / "solid_12.extxyz"
    write(solid, frames, format="extxyz")
    small = ("-k", "12", "--cutoff", "4.0", "--max-envs", "300")
    ten = _phase_entropy(tmp_path, solid, MELT, *small)
    one = _phase_entropy(tmp_path, solid, MELT, "--index-a", "0", *small)
    assert one["volume_A"] == ten["volume_A"] == pytest.approx(12.0, rel=1e-14)
    assert one["volume_pooled"] == ten["volume_pooled"] == (
        ten["volume_A"] + ten["volume_B"]) / 2
    assert one["h_A"] == ten["h_A"] == one["h_B"] == ten["h_B"]
    assert ten["h_A"] == float(qc.bandwidth_from_volume(ten["volume_pooled"]))


def test_phase_entropy_api_counts_each_phase_once():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(500, 5)), rng.normal(size=(50, 5))
    big = thermo.phase_entropy_difference(a, b, volume_a=11.8, volume_b=14.5, max_envs=40)
    small = thermo.phase_entropy_difference(a[:60], b, volume_a=11.8, volume_b=14.5,
                                            max_envs=40)
    assert big.volume_pooled == small.volume_pooled == (11.8 + 14.5) / 2
    assert big.h_a == small.h_a == float(qc.bandwidth_from_volume((11.8 + 14.5) / 2))
    assert "A 11.8, B 14.5 Å^3/atom" in big.volume_text()


# ---------------------------------------------------------------- CNT fit weights


def _ols(sizes, counts, t, v_atom):
    """Ordinary least squares of log N on (1, -n, -n^(2/3)) by numpy.linalg.lstsq, in
    the fit's physical parameters (log N0, dg_SL eV/Å^3, gamma_SL eV/Å^2)."""
    n = np.asarray(sizes, float)
    design = np.stack([np.ones_like(n), -n, -(n ** (2 / 3))], axis=1)
    c, *_ = np.linalg.lstsq(design, np.log(np.asarray(counts, float)), rcond=None)
    kt = cnt.BOLTZMANN_EV * t
    area = 4 * np.pi * (3 * v_atom / (4 * np.pi)) ** (2 / 3)
    return np.array([c[0], c[1] * kt / v_atom, c[2] * kt / area])


def _params(fit):
    return np.array([np.log(fit.n0), fit.dg_sl, fit.gamma_sl])


def test_default_fit_is_ordinary_least_squares_on_log_n():
    """log N = a + b n^(2/3) + c n exactly: the default fit is numpy.linalg.lstsq's answer
    (and the generating parameters) to 1e-10; on noisy counts still lstsq's, and the
    Poisson option differs."""
    assert cnt.FIT_WEIGHTS[0] == "none"
    t, v = 800.0, cnt.CU.v_fit
    sizes = np.arange(1, 31, dtype=float)
    a, b, c = 8.0, -1.3, 0.02
    counts = np.exp(a + b * sizes ** (2 / 3) + c * sizes)
    fit = cnt.fit_cnt_distribution(sizes, counts, t, v_atom=v)
    assert fit.weights == "none"
    np.testing.assert_allclose(_params(fit), _ols(sizes, counts, t, v), rtol=1e-10, atol=0)
    kt = cnt.BOLTZMANN_EV * t
    area = 4 * np.pi * (3 * v / (4 * np.pi)) ** (2 / 3)
    np.testing.assert_allclose(_params(fit), [a, -c * kt / v, -b * kt / area], rtol=1e-10)
    # noisy counts: still lstsq's answer; Poisson weights give another
    rng = np.random.default_rng(5)
    noisy = rng.poisson(counts)
    keep = noisy > 0
    fit = cnt.fit_cnt_distribution(sizes, noisy, t, v_atom=v)
    ols = _ols(sizes[keep], noisy[keep], t, v)
    np.testing.assert_allclose(_params(fit), ols, rtol=1e-10, atol=0)
    pois = cnt.fit_cnt_distribution(sizes, noisy, t, v_atom=v, weights="poisson")
    assert pois.weights == "poisson"
    assert abs(pois.gamma_sl - ols[2]) > 1e-2 * abs(ols[2])
    assert "unweighted" in fit.describe() and "Poisson" in pois.describe()


def test_cli_and_dashboard_default_to_the_unweighted_fit():
    args = build_parser().parse_args(["nucleation", "t.extxyz", "-r", "s.extxyz"])
    assert args.weights == "none"
    for option in ("--fit-weights", "--weights"):
        args = build_parser().parse_args(["nucleation", "t.extxyz", "-r", "s.extxyz",
                                          option, "poisson"])
        assert args.weights == "poisson"
    from dashboard.state import NucleationResult
    from dashboard.views.nucleation import NucleationView

    assert NucleationView.param.fit_weights.default == "none"
    assert NucleationView.param.fit_weights.names["unweighted (paper)"] == "none"
    assert NucleationView.param.fit_weights.names["Poisson"] == "poisson"
    assert NucleationResult.__dataclass_fields__["weights"].default == "none"


# ---------------------------------------------------------------- the two volumes


def test_cu_defaults_are_the_papers_two_volumes():
    c = cnt.cnt_constants("Cu")
    assert c.v_atom == cnt.CU_V_ATOM == 12.893
    # 8,960 kg/m^3 of Cu (63.546 g/mol): 11.777 Å^3/atom
    assert c.v_fit == cnt.CU.v_fit == pytest.approx(11.777, abs=1e-3)
    assert c.v_fit == pytest.approx(cnt.atomic_volume("Cu", density=8.96), rel=1e-12)
    assert cnt.cnt_constants("Cu", fit_density=8.0).v_fit == pytest.approx(
        cnt.atomic_volume("Cu", density=8.0), rel=1e-12)
    # only the band's volume given: the fit keeps the paper's for Cu
    assert cnt.cnt_constants("Cu", v_atom=13.5).v_fit == c.v_fit
    # another element: the fit's clusters take the band's (given) volume unless told
    ni = dict(t_melt=1728.0, latent_heat=17.5, gamma_range=(0.25, 0.3), v_atom=10.94)
    assert cnt.cnt_constants("Ni", **ni).v_fit == 10.94
    assert cnt.cnt_constants("Ni", **ni, fit_v_atom=11.5).v_fit == 11.5
    with pytest.raises(QuestsError):
        cnt.cnt_constants("Cu", fit_v_atom=11.0, fit_density=8.9)


def _band_and_fit(constants, sizes, counts, temps):
    band = cnt.pooled_critical_band(temps, constants.gamma_range, **constants.kwargs())
    fit = cnt.fit_cnt_distribution(sizes, counts, float(np.mean(temps)),
                                   v_atom=constants.v_fit)
    return band, fit


def test_fit_volume_sizes_the_fit_and_band_volume_sizes_the_band():
    """Change one volume: only its quantity changes."""
    temps = np.array([790.0, 800.0, 795.0])
    sizes = np.arange(1, 25, dtype=float)
    rng = np.random.default_rng(2)
    counts = rng.poisson(np.exp(9.0 - 1.5 * sizes ** (2 / 3) + 0.05 * sizes))
    base = cnt.cnt_constants("Cu")
    band0, fit0 = _band_and_fit(base, sizes, counts, temps)
    # another fit volume: the band is the same, gamma_SL scales as V^(-2/3), N0 as is
    other_fit = cnt.cnt_constants("Cu", fit_v_atom=12.893)
    band1, fit1 = _band_and_fit(other_fit, sizes, counts, temps)
    assert band1.n_min[0] == band0.n_min[0] and band1.r_max[0] == band0.r_max[0]
    assert fit1.gamma_sl_j_m2 == pytest.approx(
        fit0.gamma_sl_j_m2 * (base.v_fit / 12.893) ** (2 / 3), rel=1e-10)
    assert fit1.n0 == pytest.approx(fit0.n0, rel=1e-10)
    assert fit1.v_atom == 12.893 and fit0.v_atom == base.v_fit
    # another band volume: the fit is the same, the band moves (r* ~ V, n* ~ V^2)
    other_band = cnt.cnt_constants("Cu", v_atom=14.0)
    band2, fit2 = _band_and_fit(other_band, sizes, counts, temps)
    assert fit2.gamma_sl == fit0.gamma_sl and fit2.n0 == fit0.n0
    assert band2.r_min[0] == pytest.approx(band0.r_min[0] * 14.0 / 12.893, rel=1e-12)
    assert band2.n_min[0] == pytest.approx(band0.n_min[0] * (14.0 / 12.893) ** 2, rel=1e-12)


def test_cli_summary_names_weights_and_both_volumes():
    """The nucleation CLI's CNT part: --fit-v-atom moves only the fit, --v-atom only the
    band; the summary says which weighting and which volumes."""
    from quests_core.cli import nucleation

    temps = np.array([790.0, 800.0, 795.0])
    sizes = np.arange(1, 25, dtype=float)
    counts = np.random.default_rng(4).poisson(np.exp(9.0 - 1.5 * sizes ** (2 / 3)))
    dist = SimpleNamespace(sizes=sizes, counts=counts)

    def summary(*options):
        from quests_core.analysis import cnt
        from quests_core.analysis.nucleation_study import fit_distribution

        args = build_parser().parse_args(["nucleation", "t.extxyz", "-r", "s.extxyz",
                                          "--fit", *options])
        constants = nucleation.cnt_constants(args, ["Cu"], "t.extxyz")
        pooled = np.arange(3)
        band = cnt.pooled_critical_band(temps, constants.gamma_range, pooled,
                                        **constants.kwargs())
        fit = fit_distribution(dist.sizes, dist.counts, len(pooled), band.temperature[0],
                               v_atom=constants.v_fit, weights=args.weights)
        # the part of nucleation_study's result that the summary reads
        study = SimpleNamespace(constants=constants, temperature=temps, pooled=pooled,
                                band=band, t_pooled=float(band.temperature[0]), fit=fit)
        return nucleation._cnt_summary(args, study)

    base = summary()
    assert base["fit_weights"] == "none" and base["V_atom_A3"] == 12.893
    assert base["V_atom_fit_A3"] == pytest.approx(11.777, abs=1e-3)
    assert base["fit_note"].startswith("unweighted least squares on log N (the paper's)")
    assert "cluster radii from 11.777 Å^3/atom (critical band: 12.893 Å^3/atom)" in \
        base["fit_note"]
    fit = summary("--fit-v-atom", "12.5")
    assert fit["n_star_min"] == base["n_star_min"] and fit["fit_N0"] == base["fit_N0"]
    assert fit["fit_gamma_SL_J_m2"] != base["fit_gamma_SL_J_m2"]
    band = summary("--v-atom", "14")
    assert band["fit_gamma_SL_J_m2"] == base["fit_gamma_SL_J_m2"]
    assert band["n_star_min"] != base["n_star_min"]
    dens = summary("--fit-density", "8.96")
    assert dens["fit_gamma_SL_J_m2"] == pytest.approx(base["fit_gamma_SL_J_m2"], rel=1e-12)
    pois = summary("--fit-weights", "poisson")
    assert pois["fit_weights"] == "poisson" and pois["fit_note"].startswith("Poisson")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["nucleation", "t", "-r", "s", "--fit-v-atom", "12",
                                   "--fit-density", "9"])


def test_dashboard_fit_uses_the_fit_volume_and_the_band_its_own():
    from dashboard.pipeline import fit_nucleation
    from dashboard.state import NucleationResult

    n = 4
    sizes = np.arange(1, 12)
    counts = np.array([400, 150, 70, 40, 22, 12, 8, 5, 3, 2, 1])
    c = cnt.CU
    result = NucleationResult(
        source="q", structure=np.arange(n), time=np.arange(n, dtype=float),
        largest=np.full(n, 11), n_solid=np.full(n, 50), temperature=np.full(n, 800.0),
        band_min=np.full(n, 60.0), band_max=np.full(n, 120.0), sizes=sizes, counts=counts,
        n_frames=n, pre_frames=np.arange(n), t_pooled=800.0, critical_band=(60.0, 120.0),
        constants={"element": "Cu", "T_melt (K)": c.t_melt,
                   "latent heat (kJ/mol)": c.latent_heat, "V_atom (Å^3)": c.v_atom,
                   "gamma_SL range (J/m^2)": c.gamma_range, "V_atom fit (Å^3)": c.v_fit})
    out = fit_nucleation(result)
    assert out.weights == "none"
    expected = cnt.fit_cnt_distribution(sizes, counts, 800.0, v_atom=c.v_fit)
    assert out.fit["gamma_SL (J/m^2)"] == pytest.approx(expected.gamma_sl_j_m2, rel=1e-12)
    assert out.fit["V_atom of the fit's cluster radii (Å^3)"] == c.v_fit
    assert out.fit["V_atom of the critical band (Å^3)"] == c.v_atom
    other = fit_nucleation(out, fit_v_atom=12.893)
    assert other.fit["gamma_SL (J/m^2)"] == pytest.approx(
        expected.gamma_sl_j_m2 * (c.v_fit / 12.893) ** (2 / 3), rel=1e-10)
    assert other.critical_band == out.critical_band == (60.0, 120.0)
    assert fit_nucleation(other).fit_v_atom == 12.893  # kept when refitting
    assert fit_nucleation(other, "poisson", None).fit["gamma_SL (J/m^2)"] == pytest.approx(
        cnt.fit_cnt_distribution(sizes, counts, 800.0, v_atom=c.v_fit,
                                 weights="poisson").gamma_sl_j_m2, rel=1e-12)
    with pytest.raises(QuestsError):
        fit_nucleation(out, fit_v_atom=-1.0)


def test_nucleation_view_controls_name_the_papers_fit():
    """The Nucleation tab's controls: the weights selector opens on "unweighted (paper)"
    (Poisson the other choice) and a number input for the fit's volume per atom."""
    import panel as pn
    from bokeh.document import Document

    from dashboard.state import AppState
    from dashboard.views.nucleation import NucleationView

    view = NucleationView(state=AppState())
    layout = view.panel()
    layout.get_root(Document())
    select = next(w for w in layout.select(pn.widgets.Select) if w.name == "CNT fit weights")
    assert select.options == {"unweighted (paper)": "none", "Poisson": "poisson"}
    assert select.value == "none"
    volume = next(w for w in layout.select(pn.widgets.FloatInput)
                  if w.name == "CNT fit V_atom (Å^3)")
    assert volume.value is None
