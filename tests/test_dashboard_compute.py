"""The dashboard's computation pipeline and job runner (no browser).

Values are checked against the core API called directly and against the
identities of SPEC section 2 (H <= log n, overlap of a set with itself = 1).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from ase.io import read

import dashboard.compute as compute
from dashboard._testing import JUMP_FRAME
from dashboard.jobs import ComputeJob
from dashboard.pipeline import run_pipeline
from dashboard.state import ComputeSettings, FileSpec
from dashboard.views.trajectory import flag_frames
from quests_core import bandwidth_from_volume, delta_entropy, descriptors, entropy, overlap
from quests_core.errors import QuestsError
from quests_core.learning import learning_sizes
from quests_core.overlaps import sample_rows
from quests_core.trajectory import per_frame_stats

SMALL = ComputeSettings(learning_max_n=200, learning_repeats=2, overlap_max_n=100_000).frozen()


pytestmark = pytest.mark.usefixtures("private_cache")


@pytest.fixture(scope="module")
def results(specs):
    files = specs(("solid.extxyz", "reference"), ("melt.extxyz", "test"),
                  ("failed_traj.extxyz", "trajectory"), ("labelled.extxyz", "test"))
    seen = []
    res = run_pipeline(files, SMALL, progress=lambda f, t: seen.append(f))
    res.progress_seen = seen
    return res


def test_small_helpers():
    mean, frac = per_frame_stats(np.array([-1.0, 1.0, 3.0, -2.0, -4.0]), np.array([3, 2]))
    np.testing.assert_allclose(mean, [1.0, -3.0])
    np.testing.assert_allclose(frac, [2 / 3, 0.0])
    with pytest.raises(QuestsError):
        per_frame_stats(np.zeros(4), np.array([3, 2]))
    sizes = learning_sizes(1000, 300)
    assert sizes[0] == 10 and sizes[-1] == 300 and np.all(np.diff(sizes) > 0)
    assert len(learning_sizes(5, 300)) == 0
    rng = np.random.default_rng(0)
    rows = sample_rows(100, 10, rng)
    assert len(rows) == 10 and len(np.unique(rows)) == 10 and np.all(np.diff(rows) > 0)
    np.testing.assert_array_equal(sample_rows(5, 10, rng), np.arange(5))


def test_tables_are_consistent(results):
    f, a = results.frames, results.atoms
    assert list(f["structure"]) == list(range(len(f)))
    assert f["n_atoms"].sum() == len(a)
    np.testing.assert_array_equal(
        f["atom_offset"].to_numpy(), np.concatenate([[0], np.cumsum(f["n_atoms"])[:-1]])
    )
    # every atom row belongs to the structure its offset says
    starts = np.repeat(f["structure"].to_numpy(), f["n_atoms"].to_numpy())
    np.testing.assert_array_equal(a["structure"].to_numpy(), starts)
    assert set(f["source"]) == {"solid.extxyz", "melt.extxyz", "failed_traj.extxyz",
                                "labelled.extxyz"}
    # progress is reported in order and ends at 1
    assert results.progress_seen[-1] == pytest.approx(1.0)
    assert np.all(np.diff(results.progress_seen) >= -1e-12)


def test_values_match_the_core(results, sample):
    h = results.h
    solid = read(sample["solid.extxyz"], ":")
    melt = read(sample["melt.extxyz"], ":")
    x_ref = descriptors(solid)
    x_melt = descriptors(melt)
    a = results.atoms
    got = a.loc[a["source"] == "melt.extxyz", "dH"].to_numpy()
    want = delta_entropy(x_melt, x_ref, h)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    # per-frame H of the first melt frame is the entropy of its own environments
    f = results.frames
    first_melt = f.loc[f["source"] == "melt.extxyz"].iloc[0]
    assert first_melt["H"] == pytest.approx(entropy(descriptors(melt[0]), h), rel=1e-10)
    # H <= log n; mean dH and the fraction dH > 0 come from the per-atom values
    assert np.all(f["H"] <= np.log(f["n_atoms"]) + 1e-9) and np.all(f["H"] >= -1e-12)
    for _, row in f.iterrows():
        dh = a["dH"].to_numpy()[row["atom_offset"] : row["atom_offset"] + row["n_atoms"]]
        assert row["mean_dH"] == pytest.approx(dh.mean(), rel=1e-5, abs=1e-4)
        assert row["frac_novel"] == pytest.approx(np.mean(dh > 0))


def test_overlap_and_learning(results, sample):
    ov = results.overlap["file"]
    np.testing.assert_allclose(np.diag(ov.matrix), 1.0)  # dH(x | x) <= 0 always
    x_ref = descriptors(read(sample["solid.extxyz"], ":"))
    x_melt = descriptors(read(sample["melt.extxyz"], ":"))
    i, j = ov.names.index("melt.extxyz"), ov.names.index("solid.extxyz")
    assert ov.matrix[i, j] == pytest.approx(overlap(x_melt, x_ref, results.h))
    assert ov.matrix[i, j] == pytest.approx(np.mean(ov.delta[(i, j)] <= 0))
    # labels: "solid" and "liquid" groups only (unlabelled structures form no group)
    assert results.overlap["label"].names == ["solid", "liquid"]
    for lc in results.learning.values():
        assert np.all(lc.mean <= np.log(lc.sizes) + 1e-9)
        assert lc.sizes[-1] == min(lc.n_total, SMALL.options.learning_max_n)
        assert np.all(lc.std >= 0)


def test_failed_trajectory_is_flagged(results):
    f = results.frames
    traj = f.loc[f["source"] == "failed_traj.extxyz"].reset_index(drop=True)
    assert np.all(traj["frac_novel"].iloc[:JUMP_FRAME] < 0.05)
    assert np.all(traj["frac_novel"].iloc[JUMP_FRAME:] > 0.5)
    np.testing.assert_array_equal(np.flatnonzero(flag_frames(traj)), [JUMP_FRAME])


def test_volume_rule_and_first_frame_reference(specs):
    files = specs(("failed_traj.extxyz", "trajectory"))
    settings = SMALL.replace(bandwidth_rule="volume")
    res = run_pipeline(files, settings)
    v = res.frames["volume_per_atom"].mean()
    assert v == pytest.approx(3.61**3 / 4, rel=1e-6)
    assert res.h == pytest.approx(0.0897141 * np.exp(-0.5 * (v / 10.896) ** 2) + 0.0119417)
    assert res.h == pytest.approx(bandwidth_from_volume(v))
    assert "first frame" in res.reference
    # against its own first frame, frame 0 is fully covered
    assert res.frames["frac_novel"].iat[0] == 0.0
    assert res.nucleation is None and "solid reference" in res.nucleation_note


def test_solid_like_clusters(specs):
    """Against the solid, the trajectory is one solid cluster until it melts at JUMP_FRAME."""
    files = specs(("failed_traj.extxyz", "trajectory"),
                  ("solid.extxyz", "solid reference"))
    res = run_pipeline(files, SMALL)
    nuc = res.nucleation
    assert nuc is not None and nuc.source == "failed_traj.extxyz"
    np.testing.assert_array_equal(nuc.largest[:JUMP_FRAME], 108)
    assert np.all(nuc.largest[JUMP_FRAME:] < 108 // 2)
    traj = res.frames["source"] == "failed_traj.extxyz"
    np.testing.assert_array_equal(res.frames.loc[traj, "largest_cluster"], nuc.largest)
    a = res.atoms.loc[res.atoms["source"] == "failed_traj.extxyz"]
    # solid-like atoms (dH vs solid <= 0) carry a cluster id, the others -1
    np.testing.assert_array_equal(a["cluster"].to_numpy() >= 0, a["dH_solid"].to_numpy() <= 0)
    # at 900 K the CNT critical size is finite: one band (Cu constants), at the mean
    # temperature of the pooled frames
    assert np.all(np.isfinite(nuc.band_max)) and np.all(nuc.band_max > nuc.band_min)
    assert len(np.unique(nuc.band_min)) == 1 and nuc.constants["element"] == "Cu"
    assert nuc.t_pooled == pytest.approx(900.0) and nuc.weights == "none"


def test_every_trajectory_gets_its_clusters(sample, specs):
    """Two trajectories and a solid: each is analysed against the solid on its own frames
    (numbered as in its file), none is silently left out."""
    files = specs(("solid.extxyz", "solid reference"),
                  ("failed_traj.extxyz", "trajectory"))
    files.append(FileSpec(str(sample["failed_traj.extxyz"]), "every_other.extxyz",
                          "trajectory", index="::2"))
    res = run_pipeline(files, SMALL)
    assert list(res.nucleations) == ["failed_traj.extxyz", "every_other.extxyz"]
    full, half = res.nucleations.values()
    assert res.nucleation is full  # the first trajectory's
    # clusters are per frame: the selection's frames have the same clusters
    np.testing.assert_array_equal(half.largest, full.largest[::2])
    np.testing.assert_array_equal(half.file_frames(), np.arange(0, len(full.largest), 2))
    np.testing.assert_array_equal(full.file_frames(), np.arange(len(full.largest)))
    for name, nuc in res.nucleations.items():
        rows = res.frames["source"] == name
        np.testing.assert_array_equal(res.frames.loc[rows, "largest_cluster"], nuc.largest)
        a = res.atoms.loc[res.atoms["source"] == name]
        assert (a["cluster"] >= 0).any()
        np.testing.assert_array_equal(a["cluster"].to_numpy() >= 0,
                                      a["dH_solid"].to_numpy() <= 0)
    assert not any("first trajectory" in w for w in res.warnings)


def test_nucleation_needs_constants_of_its_element(sample, tmp_path):
    """A Ni trajectory gets its clusters but no Cu constants: a one-line note, no band,
    no fit; with the constants given, one band at the pooled temperature."""
    from ase.io import write

    from quests_core.analysis import cnt

    paths = {}
    for name in ("failed_traj.extxyz", "solid.extxyz"):
        frames = read(sample[name], index=":")
        for atoms in frames:
            atoms.symbols[:] = "Ni"
        paths[name] = tmp_path / name.replace(".extxyz", "_ni.extxyz")
        write(paths[name], frames, format="extxyz")
    files = [FileSpec(str(paths["failed_traj.extxyz"]), "ni_traj.extxyz", "trajectory"),
             FileSpec(str(paths["solid.extxyz"]), "ni_solid.extxyz", "solid reference")]
    nuc = run_pipeline(files, SMALL).nucleation
    assert nuc.constants is None and nuc.fit is None
    assert nuc.note.startswith("ni_traj.extxyz: no CNT constants for Ni (the defaults are Cu's)")
    assert "\n" not in nuc.note and np.all(np.isnan(nuc.band_min))
    np.testing.assert_array_equal(nuc.largest[:JUMP_FRAME], 108)  # the clusters still
    given = SMALL.replace(cnt_t_melt=1728.0, cnt_latent_heat=17.5, cnt_gamma_min=0.25,
                          cnt_gamma_max=0.30, cnt_v_atom=10.94)
    nuc = run_pipeline(files, given).nucleation
    assert nuc.constants["T_melt (K)"] == 1728.0 and nuc.note == ""
    assert nuc.t_pooled == pytest.approx(900.0)
    band = cnt.critical_size_band(900.0, (0.25, 0.30), t_melt=1728.0, latent_heat=17.5,
                                  v_atom=10.94)
    assert nuc.critical_band == pytest.approx((band.n_min[0], band.n_max[0]), rel=1e-12)
    np.testing.assert_array_equal(nuc.band_min, band.n_min[0])  # one band, every frame


def test_force_error_from_two_models():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    err = compute.force_error({"forces_emt": a, "forces_model": b, "dH": np.zeros(5)})
    np.testing.assert_allclose(err, np.sqrt(((a - b) ** 2).sum(axis=1)))
    assert compute.force_error({"forces": a}) is None


def test_input_errors(specs, tmp_path):
    with pytest.raises(QuestsError, match="melt.extxyz.*reference"):
        run_pipeline(specs(("melt.extxyz", "test")), SMALL)
    with pytest.raises(QuestsError, match="no files"):
        run_pipeline([], SMALL)
    bad = tmp_path / "bad.extxyz"
    bad.write_text("3\nnot an extxyz comment\nCu 0 0\n")
    with pytest.raises(QuestsError, match="bad.extxyz"):
        run_pipeline([FileSpec(str(bad), "bad.extxyz", "trajectory")], SMALL)


def test_thread_job_cancel_and_error(specs):
    files = specs(("solid.extxyz", "reference"), ("melt.extxyz", "test"))
    job = ComputeJob(files, SMALL, mode="thread")
    assert job.try_start()
    job.cancel()
    job.run_sync(timeout=120)
    assert job.state == "cancelled" and job.result is None
    bad = ComputeJob(specs(("melt.extxyz", "test")), SMALL, mode="thread").run_sync(60)
    assert bad.state == "error" and "reference" in bad.error


def test_process_job_matches_in_process(specs, results):
    """The default worker-process mode returns the same tables."""
    files = specs(("solid.extxyz", "reference"), ("melt.extxyz", "test"))
    job = ComputeJob(files, SMALL, mode="process").run_sync(timeout=300)
    assert job.state == "done", job.error
    a = job.result.atoms
    ref = results.atoms
    got = a.loc[a["source"] == "melt.extxyz", "dH"].to_numpy()
    want = ref.loc[ref["source"] == "melt.extxyz", "dH"].to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert job.fraction == 1.0


def test_process_job_cancel(specs):
    files = specs(("solid.extxyz", "reference"), ("melt.extxyz", "test"),
                  ("failed_traj.extxyz", "trajectory"))
    job = ComputeJob(files, SMALL, mode="process")
    assert job.try_start() and job.state == "running"
    end = time.monotonic() + 120
    while job.fraction == 0.0 and not job.finished and time.monotonic() < end:
        job.poll(0.2)  # wait until the worker reports progress
    job.cancel()
    job.run_sync(timeout=60)
    assert job.state == "cancelled" and job.result is None
    job._worker.join(20)
    assert not job._worker.is_alive()


def test_settings_are_frozen_from_the_core_defaults():
    """ComputeSettings takes its defaults from quests_core.settings.DEFAULTS and gives the
    worker a frozen, picklable RunSettings (core Settings + the dashboard's options)."""
    import pickle

    from dashboard.state import OPTIONS, DashboardOptions, RunSettings
    from quests_core.settings import DEFAULTS

    ui = ComputeSettings()
    assert (ui.k, ui.cutoff, ui.bandwidth, ui.seed) == (DEFAULTS.k, DEFAULTS.cutoff,
                                                        DEFAULTS.bandwidth, DEFAULTS.seed)
    assert ui.frozen() == RunSettings() == RunSettings(DEFAULTS, OPTIONS)
    ui.param.update(k=16, bandwidth_mode="volume rule", exact_entropy=True, seed=4)
    frozen = ui.frozen()
    assert frozen.core == DEFAULTS.replace(k=16, bandwidth_rule="volume", seed=4)
    assert frozen.options == DashboardOptions(exact_entropy=True)
    assert pickle.loads(pickle.dumps(frozen)) == frozen
    with pytest.raises(AttributeError):
        frozen.core = DEFAULTS  # frozen: a job's settings never change under it
    changed = frozen.replace(cutoff=4.0, overlap_max_n=10)
    assert changed.core.cutoff == 4.0 and changed.options.overlap_max_n == 10
    assert changed.core.k == 16 and frozen.core.cutoff == DEFAULTS.cutoff
    with pytest.raises(QuestsError, match="unknown settings nope"):
        frozen.replace(nope=1)
    with pytest.raises(QuestsError, match="cluster_method"):
        DashboardOptions(cluster_method="nope")


def test_file_spec_gives_the_core_file_spec(sample):
    from quests_core.dataset import FileSpec as CoreFileSpec

    spec = FileSpec("/data/run.dump", "run.dump", "trajectory", "hot", "2::3", "1:O,2:H", 2.0)
    assert spec.core_spec() == CoreFileSpec("/data/run.dump", "2::3", None,
                                            ((1, "O"), (2, "H")))
    assert FileSpec("a.xyz", "a.xyz").core_spec() == CoreFileSpec("a.xyz")


def test_volume_rule_is_the_atom_weighted_mean_of_the_reference_frames():
    """h of the volume rule: total volume over total atoms of the reference files' frames
    (not the mean of the frames' volumes per atom); other files do not count."""
    from types import SimpleNamespace

    import pandas as pd

    def loaded(name, role, volumes, atoms):
        frames = pd.DataFrame({"volume_per_atom": volumes, "n_atoms": atoms})
        return compute.Loaded(FileSpec(name, name, role), SimpleNamespace(frames=frames))

    rule = ComputeSettings(bandwidth_mode="volume rule").frozen().core
    ref = loaded("ref.xyz", "reference", [10.0, 20.0], [300, 100])
    other = loaded("t.xyz", "test", [50.0], [1000])
    want = bandwidth_from_volume((10.0 * 300 + 20.0 * 100) / 400)  # 12.5, not 15
    assert compute.choose_bandwidth(rule, [ref, other]) == pytest.approx(want, rel=1e-12)
    assert compute.choose_bandwidth(rule, [ref, other]) != pytest.approx(
        bandwidth_from_volume(15.0), rel=1e-6)
    assert compute.choose_bandwidth(rule.replace(bandwidth_rule="fixed"), [ref]) == rule.bandwidth
    with pytest.raises(QuestsError, match="t.xyz: the volume rule needs periodic cells"):
        compute.choose_bandwidth(rule, [loaded("t.xyz", "test", [np.nan], [5])])


def test_descriptor_cache_keys_the_species(sample, tmp_path, monkeypatch):
    """A multicomponent run: the dashboard's descriptors go through the cache with the
    settings' species, so each species setting has its own entry (hit on a repeat, miss on
    a change) and the multicomponent width."""
    from ase.io import write

    import quests_core

    frames = read(sample["solid.extxyz"], index=":")
    for atoms in frames:
        atoms.symbols[::4] = "Ni"
    path = tmp_path / "cuni.extxyz"
    write(path, frames, format="extxyz")
    calls = []
    real = quests_core.descriptors

    def counting(structures, *args, **kw):
        calls.append(kw.get("species"))
        return real(structures, *args, **kw)

    monkeypatch.setattr(quests_core, "descriptors", counting)
    (item,) = compute.load_files([FileSpec(str(path), "cuni.extxyz", "test")],
                                 compute.Progress(None, None))
    single = SMALL.core
    multi = SMALL.core.replace(species=("Cu", "Ni"))

    def get(settings):
        return compute.file_descriptors(item.dataset, settings, compute.Progress(None, None))

    x1 = get(single)
    assert calls and set(calls) == {None}  # a miss: computed
    n = len(calls)
    np.testing.assert_array_equal(get(single), x1)
    assert len(calls) == n  # a hit
    x2 = get(multi)
    assert len(calls) > n and calls[-1] == ("Cu", "Ni")  # another species: a miss
    assert x1.shape == (4 * 108, 2 * 32 - 1) and x2.shape == (4 * 108, 3 * (2 * 32 - 1))
    np.testing.assert_allclose(x2, real(frames, species=("Cu", "Ni")), rtol=0, atol=1e-12)
    n = len(calls)
    np.testing.assert_array_equal(get(multi), x2)
    assert len(calls) == n  # a hit of the multicomponent entry
