"""Dataset compression: selection methods, metrics and report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ase.build import bulk

import quests_core as qc
from quests_core.analysis import compression as comp
from quests_core.errors import QuestsError

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


def rattled(kind: str, seed: int, stdev: float = 0.05, size=(2, 2, 2), a=None):
    atoms = bulk("Cu", kind, a=a, cubic=True).repeat(size)
    atoms.rattle(stdev=stdev, seed=seed)
    return atoms


def descs_of(structures, k=12, cutoff=4.0):
    return [qc.descriptors([s], k=k, cutoff=cutoff) for s in structures]


# ---------------------------------------------------------------------------
# pure selection logic
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fraction, n, size", [(0.3, 10, 3), (1.0, 10, 10), (0.01, 10, 1), (0.25, 10, 3), (0.5, 1, 1)]
)
def test_fraction_to_size(fraction, n, size):
    assert comp.fraction_to_size(fraction, n) == size


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5, float("nan"), "abc"])
def test_fraction_outside_unit_interval_is_rejected(fraction):
    with pytest.raises(QuestsError, match="fraction"):
        comp.fraction_to_size(fraction, 10)


def test_fps_on_a_line_picks_the_ends_then_the_middle():
    pts = np.arange(11, dtype=float)[:, None]
    assert comp.fps_selection(pts, 3).tolist() == [0, 10, 5]
    assert comp.fps_selection(pts, 2, start=4).tolist() == [4, 10]
    assert comp.fps_selection(pts, 2, exclude=[0]).tolist() == [10, 5]
    assert sorted(comp.fps_selection(pts, 50).tolist()) == list(range(11))


def test_kmeans_picks_one_structure_per_blob():
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    pts = np.concatenate([c + rng.normal(0, 0.3, (7, 2)) for c in centers])
    for seed in range(3):
        sel = comp.kmeans_selection(pts, 3, seed=seed)
        assert sorted(sel // 7) == [0, 1, 2]
    dup = np.zeros((5, 2))  # all identical: still 5 distinct indices when asked for 3
    assert len(set(comp.kmeans_selection(dup, 3).tolist())) == 3


def test_random_selection_is_seeded_and_distinct():
    a = comp.random_selection(20, 8, seed=4)
    assert len(set(a.tolist())) == 8 and a.max() < 20
    np.testing.assert_array_equal(a, comp.random_selection(20, 8, seed=4))
    assert not np.array_equal(a, comp.random_selection(20, 8, seed=5))


def test_bad_selection_input():
    with pytest.raises(QuestsError, match="empty"):
        comp.structure_means([])
    with pytest.raises(QuestsError, match="structure 1"):
        comp.structure_means([np.zeros((2, 3)), np.zeros((2, 4))])
    with pytest.raises(QuestsError, match="method"):
        comp.select_structures([np.zeros((2, 3))], "magic", 1)
    with pytest.raises(QuestsError, match="size"):
        comp.random_selection(5, 0)
    with pytest.raises(QuestsError, match="empty selection"):
        comp.subset_metrics([np.zeros((2, 3))], [])


# ---------------------------------------------------------------------------
# with the numerical core
# ---------------------------------------------------------------------------


def test_duplicated_structures_compress_to_one_without_losing_overlap():
    one = rattled("fcc", seed=1)
    descs = descs_of([one.copy() for _ in range(6)])
    size = comp.fraction_to_size(1 / 6, 6)
    sel = comp.msc_selection(descs, size)
    assert len(sel) == 1
    m = comp.subset_metrics(descs, sel)
    assert m.overlap == 1.0
    full = np.concatenate(descs)
    assert m.diversity == pytest.approx(float(qc.diversity(full, 0.015)), abs=1e-9)
    # asking for every structure but stopping once covered also keeps one
    covered = comp.msc_selection(descs, 6, until_covered=True)
    assert len(covered) == 1


def test_msc_covers_three_families_with_three_structures():
    fam_a = rattled("fcc", seed=2)
    fam_b = rattled("bcc", seed=3, a=2.9)
    lone = rattled("fcc", seed=4, stdev=0.3)
    structures = [fam_a.copy() for _ in range(4)] + [fam_b.copy() for _ in range(4)] + [lone]
    descs = descs_of(structures)
    sel = comp.msc_selection(descs, 3)
    families = sorted({0 if i < 4 else 1 if i < 8 else 2 for i in sel.tolist()})
    assert families == [0, 1, 2]
    assert comp.subset_metrics(descs, sel).overlap == 1.0
    # the first pick is the structure of highest entropy
    ent = comp.structure_entropies(descs)
    assert sel[0] == int(np.argmax(ent))
    assert len(comp.msc_selection(descs, 9, until_covered=True)) == 3


def test_subset_metrics_of_full_set_match_core():
    structures = [rattled("fcc", seed=s, stdev=0.1) for s in range(4)]
    descs = descs_of(structures)
    full = np.concatenate(descs)
    m = comp.subset_metrics(descs, range(4))
    assert m.overlap == 1.0 and m.n_envs == len(full) and m.n_structures == 4
    assert m.entropy == pytest.approx(float(qc.entropy(full, 0.015)))
    assert m.diversity == pytest.approx(float(qc.diversity(full, 0.015)))


def test_compression_report_columns_and_seed_averaging():
    structures = [rattled("fcc", seed=s, stdev=0.02 + 0.04 * (s % 4)) for s in range(10)]
    descs = descs_of(structures)
    report = comp.compression_report(descs, fractions=(0.2, 0.5, 1.0), seeds=(0, 1, 2, 3))
    assert len(report) == 4 * 3
    assert set(report["size"]) == {2, 5, 10}
    full = report[report["size"] == 10]
    np.testing.assert_allclose(full["overlap"], 1.0)
    np.testing.assert_allclose(full["entropy"], full["entropy"].iloc[0])
    det = report[report["method"].isin(["msc", "fps"])]
    assert np.all(det["entropy_std"] == 0.0)
    rnd = report[(report["method"] == "random") & (report["size"] == 2)]
    assert float(rnd["entropy_std"].iloc[0]) > 0.0
    np.testing.assert_allclose(
        report["info_gap"],
        report["info_gap"].iloc[0] + report["entropy"].iloc[0] - report["entropy"],
    )
    with pytest.raises(QuestsError, match="fraction"):
        comp.compression_report(descs, fractions=(0.5, 1.2))
    with pytest.raises(QuestsError, match="method"):
        comp.compression_report(descs, methods=("msc", "nope"))


def _labelled_sample():
    path = SAMPLE / "cu_dataset_labelled.extxyz"
    if not path.exists():
        pytest.skip(f"{path.name} not generated yet")
    from ase.io import read

    return read(path, index=":")


def test_msc_diversity_beats_baselines_on_sample_dataset():
    structures = _labelled_sample()
    # descriptors of the full structures; every 6th environment is kept to make the
    # kernel sums of the many reports affordable in a unit test
    descs = [x[::6] for x in descs_of(structures, k=32, cutoff=5.0)]
    fractions = (0.1, 0.2, 0.3, 0.4, 0.5)
    report = comp.compression_report(descs, fractions=fractions, seeds=(0, 1, 2), gap=False)
    table = report.pivot(index="size", columns="method", values="diversity")
    wins = (table["msc"] >= table[["fps", "kmeans", "random"]].max(axis=1) - 1e-9).mean()
    assert len(table) == 5
    assert wins >= 0.8, table


def test_msc_incremental_scores_match_direct_recomputation():
    structures = [rattled("fcc", seed=s, stdev=0.02 + 0.03 * (s % 5)) for s in range(8)]
    structures += [rattled("bcc", seed=s, a=2.9, stdev=0.05) for s in range(3)]
    descs = descs_of(structures)
    ent = comp.structure_entropies(descs)
    chosen = [int(np.argmax(ent))]
    while len(chosen) < 6:
        subset = np.concatenate([descs[i] for i in chosen])
        scores = {
            i: float(np.max(qc.delta_entropy(descs[i], subset, 0.015))) + ent[i]
            for i in range(len(descs))
            if i not in chosen
        }
        chosen.append(max(scores, key=scores.get))
    assert comp.msc_selection(descs, 6).tolist() == chosen


def test_greedy_and_random_selections_are_nested():
    structures = [rattled("fcc", seed=s, stdev=0.02 + 0.02 * s) for s in range(7)]
    descs = descs_of(structures)
    means = comp.structure_means(descs)
    for small, large in ((2, 5), (3, 7)):
        big = comp.msc_selection(descs, large)
        np.testing.assert_array_equal(comp.msc_selection(descs, small), big[:small])
        np.testing.assert_array_equal(
            comp.fps_selection(means, small), comp.fps_selection(means, large)[:small]
        )
        np.testing.assert_array_equal(
            comp.random_selection(7, small, 3), comp.random_selection(7, large, 3)[:small]
        )


def test_every_nth_keeps_every_step_th_environment():
    descs = [np.arange(10.0).reshape(5, 2), np.arange(6.0).reshape(3, 2)]
    kept = comp.every_nth(descs, 2)
    np.testing.assert_array_equal(kept[0], [[0.0, 1.0], [4.0, 5.0], [8.0, 9.0]])
    np.testing.assert_array_equal(kept[1], [[0.0, 1.0], [4.0, 5.0]])
    np.testing.assert_array_equal(comp.every_nth(descs, 1)[0], descs[0])
    with pytest.raises(QuestsError, match="at least 1"):
        comp.every_nth(descs, 0)


def test_compression_study_equals_the_report_method_by_method():
    structures = [rattled("fcc", seed=s, stdev=0.02 + 0.04 * (s % 4)) for s in range(8)]
    descs = descs_of(structures)
    steps = []
    study = comp.compression_study(descs, methods=("fps", "random"), fractions=(0.25, 1.0),
                                   seeds=(0, 1), gap=True,
                                   progress=lambda s, d, t: steps.append((s, d, t)))
    report = comp.compression_report(descs, methods=("fps", "random"), fractions=(0.25, 1.0),
                                     seeds=(0, 1), gap=True)
    pd.testing.assert_frame_equal(study.report, report, rtol=1e-12)
    ref = comp.gap_reference(np.concatenate(descs))
    assert study.gap == ref and study.n_structures == 8
    assert study.n_envs == sum(len(x) for x in descs)
    assert steps == [("information gap reference", 0, 3), ("fps", 1, 3), ("random", 2, 3),
                     ("done", 3, 3)]
    none = comp.compression_study(descs, methods=("fps",), fractions=(1.0,), gap=False)
    assert none.gap.kind == "none" and none.report["info_gap"].isna().all()
    with pytest.raises(QuestsError, match="fraction"):  # before any long work
        comp.compression_study(descs, fractions=(0.5, 1.5),
                               progress=lambda *a: pytest.fail("work started"))
    with pytest.raises(QuestsError, match="no compression method"):
        comp.compression_study(descs, methods=())


def test_asymptote_bound():
    from quests_core.learning import asymptote_within_bound

    assert asymptote_within_bound(np.log(100.0), 100)  # H <= log n, equality allowed
    assert not asymptote_within_bound(np.log(100.0) + 1e-6, 100)
    assert not asymptote_within_bound(float("nan"), 100)
    assert not asymptote_within_bound(float("inf"), 100)


@pytest.mark.skipif(not (SAMPLE / "cu_solid_400K.extxyz").exists(), reason="sample data")
def test_gap_reference_never_exceeds_log_n_on_a_flat_curve():
    """Every 4th environment of the 400 K solid at h = 0.03: a flat learning curve
    (H about 0.95 nats) whose fit extrapolates to a = 15.3 nats, above log n = 7.68,
    the gap once reported as "15.182 nats". The reference falls back to H(full)."""
    from ase.io import read

    x = qc.descriptors(read(SAMPLE / "cu_solid_400K.extxyz", ":"))[::4]
    n = len(x)
    assert n == 2160
    curve = qc.learning_curve(x, np.unique(np.geomspace(10, n, 12).astype(int)), h=0.03,
                              repeats=3, seed=0)
    assert qc.fit_asymptote(curve.sizes, curve.mean).a > np.log(n)  # the fit overshoots
    ref = comp.gap_reference(x, h=0.03)
    assert ref.kind == "full"
    assert ref.value == pytest.approx(qc.entropy(x, 0.03), rel=1e-12)
    assert 0.0 <= ref.value <= np.log(n)
    # the whole file gives a fit within the bound, kept as the asymptote
    full = qc.descriptors(read(SAMPLE / "cu_solid_400K.extxyz", ":"))
    whole = comp.gap_reference(full, h=0.03)
    assert whole.kind == "asymptote" and whole.value <= np.log(len(full))
