"""Every analysis gives the same numbers through the Python API, the CLI and the dashboard.

One entry point per analysis in :mod:`quests_core.analysis` (issue 20): the nucleation
study, the compression study, the generation (active-learning) study, the uncertainty
study and the phase-entropy difference. For each, the numbers of the entry called
directly, of the CLI command (``main([...])`` in-process, its ``--output`` files) and of
the dashboard (the Data tab's pipeline for nucleation, the analysis tabs' worker tasks
for compression, active learning and uncertainty) are identical, on small slices of
the bundled sample data; nucleation and uncertainty also at precision float32. Phase
entropy has no dashboard tab: the API and the CLI are compared.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import quests_core as qc
from quests_core.cli import main as cli
from quests_core.dataset import Dataset
from quests_core.settings import DEFAULTS

DATA = Path(__file__).resolve().parents[1] / "sample_data"
SOLID = DATA / "cu_solid_400K.extxyz"
MELT = DATA / "cu_melt.extxyz"
QUENCH = DATA / "cu_quench.extxyz"
LABELLED = DATA / "cu_dataset_labelled.extxyz"
GENERATIONS = DATA / "cu_generations.extxyz"
FORCES = DATA / "cu_forces_two_models.extxyz"
#: frames used: a few of each file keep every test at a few seconds
QUENCH_INDEX, SOLID_INDEX = "::4", ":2"
LABELLED_INDEX, GENERATIONS_INDEX, FORCES_INDEX = ":12", ":12", ":6"
H = DEFAULTS.bandwidth
EXACT = {"rtol": 1e-12, "atol": 1e-12}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One descriptor cache for the CLI and the dashboard of this module."""
    import dashboard.compute as compute
    from quests_core.cache import DescriptorCache

    folder = tmp_path_factory.mktemp("agree-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QUESTS_CACHE_DIR", str(folder))
        mp.setattr(compute, "_CACHE", DescriptorCache(folder))
        yield folder


def _descriptors(path: Path, index: str):
    ds = Dataset.from_files([str(path)], index=index)
    return ds, qc.descriptors(list(ds.structures), k=DEFAULTS.k, cutoff=DEFAULTS.cutoff)


def _run(argv: list[str]) -> None:
    assert cli([*argv, "--no-progress"]) == 0


def _settings(**values):
    from dashboard.state import ComputeSettings

    return ComputeSettings(learning_max_n=50, overlap_max_n=200, **values).frozen()


def _spec(path: Path, role: str, index: str):
    from dashboard.state import FileSpec

    return FileSpec(path=str(path), name=path.name, role=role, index=index)


# ------------------------------------------------------------------ nucleation


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_nucleation(cache, tmp_path, precision):
    from dashboard.pipeline import run_pipeline
    from quests_core.analysis import cnt
    from quests_core.analysis.nucleation_study import nucleation_study

    traj, x = _descriptors(QUENCH, QUENCH_INDEX)
    _, x_ref = _descriptors(SOLID, SOLID_INDEX)
    api = nucleation_study(x, x_ref, traj.structures, H,
                           temperature=traj.frames["temperature"].to_numpy(float),
                           constants=cnt.cnt_constants("Cu"), precision=precision)
    assert api.fit.reliable and len(api.pooled) >= 4  # the case compares a real fit

    _run(["nucleation", str(QUENCH), "--index", QUENCH_INDEX, "-r", str(SOLID),
          "--reference-index", SOLID_INDEX, "--fit", "--precision", precision,
          "-o", str(tmp_path / "nuc.json"), "--distribution", str(tmp_path / "dist.csv")])
    out = json.loads((tmp_path / "nuc.json").read_text())
    rows, summary = pd.DataFrame(out["rows"]), out["summary"]
    dist = pd.read_csv(tmp_path / "dist.csv")

    res = run_pipeline([_spec(SOLID, "solid reference", SOLID_INDEX),
                        _spec(QUENCH, "trajectory", QUENCH_INDEX)],
                       _settings(precision=precision))
    dash = res.nucleations[QUENCH.name]

    fit = api.fit.fit
    for largest in (rows["largest_cluster"], dash.largest):
        np.testing.assert_array_equal(largest, api.largest)
    for n_solid in (rows["n_solid"], dash.n_solid):
        np.testing.assert_array_equal(n_solid, api.n_solid)
    np.testing.assert_allclose(rows["mean_dH"], api.mean_dh, **EXACT)
    for sizes, counts in ((dist["size"], dist["count"]), (dash.sizes, dash.counts)):
        np.testing.assert_array_equal(sizes, api.distribution.sizes)
        np.testing.assert_array_equal(counts, api.distribution.counts)
    np.testing.assert_array_equal(dash.pre_frames, api.pooled)
    assert summary["pooled_frames"] == len(api.pooled)
    for t_pooled in (summary["T_pooled_K"], dash.t_pooled):
        assert t_pooled == pytest.approx(api.t_pooled, rel=1e-12)
    assert (summary["n_star_min"], summary["n_star_max"]) == pytest.approx(
        api.critical_band, rel=1e-12)
    assert dash.critical_band == pytest.approx(api.critical_band, rel=1e-12)
    for gamma in (summary["fit_gamma_SL_J_m2"], dash.fit["gamma_SL (J/m^2)"]):
        assert gamma == pytest.approx(fit.gamma_sl_j_m2, rel=1e-12)
    for n0 in (summary["fit_N0"], dash.fit["N0"]):
        assert n0 == pytest.approx(fit.n0, rel=1e-12)
    # the dashboard keeps dH against the solid per atom (float32 column)
    dh_solid = res.atoms.loc[res.atoms["source"] == QUENCH.name, "dH_solid"].to_numpy()
    np.testing.assert_allclose(dh_solid, api.dh, rtol=1e-6, atol=1e-5)


def test_nucleation_refit_is_the_views_refit(cache):
    """The core's pure refit and the dashboard's refit of its stored result give the same
    fit, and neither changes what it was given."""
    import dataclasses

    from dashboard.pipeline import fit_nucleation
    from dashboard.state import NucleationResult
    from quests_core.analysis import cnt
    from quests_core.analysis.nucleation_study import nucleation_study, refit

    traj, x = _descriptors(QUENCH, QUENCH_INDEX)
    _, x_ref = _descriptors(SOLID, SOLID_INDEX)
    study = nucleation_study(x, x_ref, traj.structures, H,
                             temperature=traj.frames["temperature"].to_numpy(float),
                             constants=cnt.cnt_constants("Cu"))
    before = study.fit
    other = refit(study, "poisson", 12.893)
    assert study.fit is before and study.weights == "none"  # unchanged
    assert other.weights == "poisson" and other.fit_v_atom == 12.893
    assert other.fit.fit.v_atom == 12.893 and other.fit.fit.weights == "poisson"
    back = refit(other, "none", None)
    assert back.fit.fit.gamma_sl == study.fit.fit.gamma_sl

    c = study.constants
    stored = NucleationResult(
        source="q", structure=np.arange(len(study.largest)), time=np.zeros(len(study.largest)),
        largest=study.largest, n_solid=study.n_solid, temperature=study.temperature,
        band_min=study.band_min, band_max=study.band_max, sizes=study.distribution.sizes,
        counts=study.distribution.counts, n_frames=study.distribution.n_frames,
        pre_frames=study.pooled, t_pooled=study.t_pooled, critical_band=study.critical_band,
        constants={"element": c.element, "T_melt (K)": c.t_melt,
                   "latent heat (kJ/mol)": c.latent_heat, "V_atom (Å^3)": c.v_atom,
                   "gamma_SL range (J/m^2)": c.gamma_range, "V_atom fit (Å^3)": c.v_fit})
    kept = dataclasses.replace(stored)
    view = fit_nucleation(stored, "poisson", 12.893)
    assert stored.fit is None and stored.weights == kept.weights  # not mutated
    assert view.fit["gamma_SL (J/m^2)"] == other.fit.fit.gamma_sl_j_m2
    assert view.fit["N0"] == other.fit.fit.n0
    np.testing.assert_array_equal(view.fit_curve[1], other.fit.curve[1])


# ----------------------------------------------------------------- compression


def test_compression(cache, tmp_path):
    from dashboard.tasks import CompressionRequest, compression_task
    from quests_core.analysis import compression as comp

    ds, x = _descriptors(LABELLED, LABELLED_INDEX)
    descs = [x[a:a + n] for a, n in zip(ds.frames["atom_offset"], ds.frames["n_atoms"],
                                         strict=True)]
    fractions, seeds = (0.25, 0.5), (DEFAULTS.seed, DEFAULTS.seed + 1)
    api = comp.compression_study(descs, methods=comp.METHODS, fractions=fractions, h=H,
                                 seeds=seeds).report

    _run(["compress", str(LABELLED), "--index", LABELLED_INDEX, "--fraction", "0.25",
          "--sweep", "0.5", "--compare", "--seeds", "2", "--report",
          str(tmp_path / "report.csv")])
    cli_report = pd.read_csv(tmp_path / "report.csv")

    request = CompressionRequest(settings=_settings(), methods=comp.METHODS,
                                 fractions=fractions, seeds=seeds, env_step=1, gap=True)
    dash = compression_task([_spec(LABELLED, "test", LABELLED_INDEX)], request).report

    numbers = ["fraction", "size", "n_envs", "entropy", "entropy_std", "diversity",
               "diversity_std", "overlap", "overlap_std", "info_gap"]
    for table in (cli_report, dash):
        assert list(table["method"]) == list(api["method"])
        assert list(table["gap_reference"]) == list(api["gap_reference"])
        np.testing.assert_allclose(table[numbers].to_numpy(float),
                                   api[numbers].to_numpy(float), **EXACT)


# -------------------------------------------------------------- active learning


def test_active_learning(cache, tmp_path):
    from dashboard.tasks import ActiveLearningRequest, active_learning_task
    from quests_core.analysis import active_learning as al

    ds, x = _descriptors(GENERATIONS, GENERATIONS_INDEX)
    descs = [x[a:a + n] for a, n in zip(ds.frames["atom_offset"], ds.frames["n_atoms"],
                                         strict=True)]
    api = al.generation_study(descs, al.generation_labels(ds.structures), h=H).report
    assert len(api) >= 2

    _run(["active-learning", str(GENERATIONS), "--index", GENERATIONS_INDEX,
          "-o", str(tmp_path / "al.csv")])
    cli_report = pd.read_csv(tmp_path / "al.csv")
    request = ActiveLearningRequest(settings=_settings(), generation_key="generation",
                                    env_step=1)
    dash = active_learning_task([_spec(GENERATIONS, "test", GENERATIONS_INDEX)],
                                request).report
    for table in (cli_report, dash):
        np.testing.assert_allclose(table[list(api.columns)].to_numpy(float),
                                   api.to_numpy(float), equal_nan=True, **EXACT)


# -------------------------------------------------------------------- uncertainty


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_uncertainty(cache, tmp_path, precision):
    from dashboard.tasks import UncertaintyRequest, uncertainty_task
    from quests_core.analysis import uncertainty as uq

    test, y = _descriptors(FORCES, FORCES_INDEX)
    _, x_ref = _descriptors(SOLID, SOLID_INDEX)
    error = uq.model_errors(list(test.structures), forces=("forces_model", "forces_emt"))
    api = uq.uncertainty_study(y, x_ref, error, H, precision=precision)

    _run(["uq", str(FORCES), "--index", FORCES_INDEX, "-r", str(SOLID), "--reference-index",
          SOLID_INDEX, "--forces", "forces_model", "forces_emt", "--precision", precision,
          "-o", str(tmp_path / "bins.json"), "--atoms", str(tmp_path / "atoms.csv")])
    out = json.loads((tmp_path / "bins.json").read_text())
    bins, summary = pd.DataFrame(out["rows"]), out["summary"]
    atoms = pd.read_csv(tmp_path / "atoms.csv")

    request = UncertaintyRequest(
        settings=_settings(precision=precision), reference_mode="file", reference_label="",
        test_label="", forces_pred="forces_model", forces_ref="forces_emt",
        n_bins=uq.DEFAULT_BINS, window=uq.DEFAULT_WINDOW, quantile=uq.DEFAULT_ERROR_QUANTILE)
    dash = uncertainty_task([_spec(FORCES, "test", FORCES_INDEX),
                             _spec(SOLID, "reference", SOLID_INDEX)], request)

    for dh, err in ((atoms["dH"], atoms["force_error"]), (dash.dh, dash.error)):
        np.testing.assert_allclose(dh, api.dh, **EXACT)
        np.testing.assert_allclose(err, api.error, **EXACT)
    np.testing.assert_allclose(bins["mean_error"], api.running.mean, equal_nan=True, **EXACT)
    np.testing.assert_allclose(dash.running.mean, api.running.mean, equal_nan=True, **EXACT)
    for recall in (summary["recall"], dash.recall.recall):
        assert recall == pytest.approx(api.recall.recall, rel=1e-12)
    if precision == "float32":  # the precision reached the kernel: other last digits
        exact = uq.uncertainty_study(y, x_ref, error, H)
        assert not np.array_equal(exact.dh, api.dh)


# ------------------------------------------------------------------ phase entropy


def test_phase_entropy(cache, tmp_path):
    from quests_core.analysis import thermo

    a, xa = _descriptors(SOLID, ":1")
    b, xb = _descriptors(MELT, ":1")
    api = thermo.phase_entropy_difference(
        xa, xb, volume_a=thermo.volume_per_atom(list(a.structures)),
        volume_b=thermo.volume_per_atom(list(b.structures)), max_envs=500)
    _run(["phase-entropy", str(SOLID), str(MELT), "--index", ":1", "--max-envs", "500",
          "-o", str(tmp_path / "pe.json")])
    summary = json.loads((tmp_path / "pe.json").read_text())["summary"]
    for key, value in (("delta_H", api.delta), ("H_A", api.entropy_a), ("H_B", api.entropy_b),
                       ("h_A", api.h_a), ("h_B", api.h_b)):
        assert summary[key] == pytest.approx(value, rel=1e-12), key
