"""A CNT fit whose numbers leave their physical bounds reads "no reliable fit", with the
reason, in the API, the CLI and the dashboard (never as a value): an interfacial energy
that is not positive or whose error exceeds it, a prefactor that is not finite and
positive or whose error exceeds it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from quests_core.analysis import cnt
from quests_core.analysis.cnt import j_per_m2_to_ev_per_a2

ROOT = Path(__file__).resolve().parents[1]
T, V = 800.0, 11.777
SIZES = np.arange(1, 41, dtype=float)


def _counts(gamma_j_m2: float, dg_ev_a3: float = 0.0, n0: float = 1e4) -> np.ndarray:
    log_n = cnt.cnt_log_distribution(SIZES, np.log(n0), dg_ev_a3,
                                     j_per_m2_to_ev_per_a2(gamma_j_m2), T, V)
    return np.exp(log_n)


def test_a_physical_fit_has_no_problem():
    fit = cnt.fit_cnt_distribution(SIZES, _counts(0.15), T, v_atom=V)
    assert abs(fit.gamma_sl_j_m2 - 0.15) < 1e-9 and fit.problem() == ""


def test_a_negative_interfacial_energy_is_no_fit():
    fit = cnt.fit_cnt_distribution(SIZES, _counts(-0.05), T, v_atom=V)
    assert fit.problem() == (f"gamma_SL = {fit.gamma_sl_j_m2:.3g} J/m^2 is not positive")
    assert fit.gamma_sl_j_m2 < 0


def test_an_error_above_the_value_is_no_fit():
    rng = np.random.default_rng(3)
    counts = _counts(0.01) * np.exp(rng.normal(0.0, 2.0, SIZES.size))  # noise >> signal
    fit = cnt.fit_cnt_distribution(SIZES, counts, T, v_atom=V)
    if fit.gamma_sl_j_m2 > 0:
        assert fit.gamma_sl_err_j_m2 > fit.gamma_sl_j_m2
        assert "has a relative error above 100 %" in fit.problem()
    else:
        assert "is not positive" in fit.problem()


def test_cli_and_dashboard_say_no_reliable_fit_for_the_failed_run(tmp_path):
    """The failed run (not a nucleation run) against the solid: the pooled-cluster fit
    gave gamma_SL = 0.04 +- 0.06 J/m^2, printed as a value before."""
    run = [sys.executable, "-m", "quests_core.cli", "nucleation",
           str(ROOT / "sample_data" / "cu_failed_simulation.extxyz"),
           "-r", str(ROOT / "sample_data" / "cu_solid_400K.extxyz"), "--fit", "-q"]
    proc = subprocess.run(run, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = {x.split(None, 1)[0]: x.split(None, 1)[1] for x in proc.stdout.splitlines()
             if x.startswith("fit")}
    assert lines["fit"].startswith("no reliable fit: gamma_SL = ")
    assert "relative error above 100 %" in lines["fit"]
    assert "fit_gamma_SL_J_m2" not in lines and "fit_N0" not in lines
    assert lines["fit_weights"] == "none"


def test_dashboard_shows_no_reliable_fit_instead_of_values():
    from dashboard.pipeline import fit_nucleation
    from dashboard.state import NucleationResult
    from dashboard.views.nucleation import fit_table, nucleation_text

    n, c = 4, cnt.CU
    counts = np.maximum(np.round(_counts(-0.05)), 1)  # counts growing with size
    result = NucleationResult(
        source="q", structure=np.arange(n), time=np.arange(n, dtype=float),
        largest=np.full(n, 40), n_solid=np.full(n, 50), temperature=np.full(n, T),
        band_min=np.full(n, 60.0), band_max=np.full(n, 120.0), sizes=SIZES.astype(int),
        counts=counts, n_frames=n, pre_frames=np.arange(n), t_pooled=T,
        critical_band=(60.0, 120.0),
        constants={"element": "Cu", "T_melt (K)": c.t_melt,
                   "latent heat (kJ/mol)": c.latent_heat, "V_atom (Å^3)": c.v_atom,
                   "gamma_SL range (J/m^2)": c.gamma_range, "V_atom fit (Å^3)": c.v_fit})
    out = fit_nucleation(result)
    assert out.fit is None and out.fit_curve is None
    assert out.fit_error.startswith("No reliable CNT fit: gamma_SL = -")
    assert out.fit_error.endswith("J/m^2 is not positive")
    assert len(fit_table(out)) == 0 and out.fit_error in nucleation_text(out)
