"""Active learning: novelty per generation and information of the cumulative set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ase.build import bulk

import quests_core as qc
from quests_core.analysis import active_learning as al
from quests_core.errors import QuestsError

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


def structure(kind: str, seed: int, stdev: float, a=None):
    atoms = bulk("Cu", kind, a=a, cubic=True).repeat((2, 2, 2))
    atoms.rattle(stdev=stdev, seed=seed)
    return atoms


def test_repeated_generations_have_zero_novelty():
    s1 = structure("fcc", 1, 0.05)
    s2 = structure("fcc", 2, 0.15)
    s3 = structure("bcc", 3, 0.05, a=2.9)
    gens = [(0, s1), (0, s2), (1, s1.copy()), (2, s3), (3, s2.copy()), (3, s3.copy())]
    xs = [qc.descriptors([s], k=12, cutoff=4.0) for _, s in gens]
    labels = np.concatenate([np.full(len(x), g) for (g, _), x in zip(gens, xs, strict=True)])
    x = np.concatenate(xs)
    report = al.active_learning_report(x, labels)
    assert report["generation"].tolist() == [0, 1, 2, 3]
    assert np.isnan(report["novelty"].iloc[0]) and np.isnan(report["mean_dH"].iloc[0])
    assert report["novelty"].iloc[1] == 0.0  # a copy of generation 0
    assert report["novelty"].iloc[2] == 1.0  # bcc is new to an fcc dataset
    assert report["novelty"].iloc[3] == 0.0  # copies of earlier structures
    assert report["mean_dH"].iloc[1] <= 0.0 and report["mean_dH"].iloc[2] > 0.0
    assert report["n_envs"].tolist() == [64, 32, 16, 48]  # fcc 32 atoms, bcc 16
    assert report["n_envs_cumulative"].tolist() == [64, 96, 112, 160]
    cum = x[labels <= 2]
    assert report["entropy"].iloc[2] == pytest.approx(float(qc.entropy(cum, 0.015)))
    assert report["diversity"].iloc[2] == pytest.approx(float(qc.diversity(cum, 0.015)))


def test_exact_copy_of_everything_keeps_diversity():
    s = [structure("fcc", i, 0.1) for i in range(3)]
    x0 = qc.descriptors(s, k=12, cutoff=4.0)
    x = np.concatenate([x0, x0])
    labels = np.repeat([0, 1], len(x0))
    report = al.active_learning_report(x, labels)
    # doubling every point halves each kernel density and doubles the count: D is unchanged
    assert report["diversity"].iloc[1] == pytest.approx(report["diversity"].iloc[0], abs=1e-9)
    assert report["novelty"].iloc[1] == 0.0


def test_generation_labels_and_bad_input():
    s = [structure("fcc", i, 0.05) for i in range(3)]
    for i, at in enumerate(s):
        at.info["gen"] = [0, 2, 1][i]
    assert al.generation_labels(s, "gen").tolist() == [0, 2, 1]
    with pytest.raises(QuestsError, match="structure 0.*'generation' missing"):
        al.generation_labels(s, "generation")
    s[1].info["gen"] = "two"
    with pytest.raises(QuestsError, match="structure 1"):
        al.generation_labels(s, "gen")
    with pytest.raises(QuestsError, match="empty"):
        al.generation_labels([], "gen")
    with pytest.raises(QuestsError, match="labels"):
        al.active_learning_report(np.zeros((4, 3)), np.zeros(3))
    with pytest.raises(QuestsError, match="empty"):
        al.active_learning_report(np.zeros((0, 3)), np.zeros(0))


def test_sample_generations():
    path = SAMPLE / "cu_generations.extxyz"
    if not path.exists():
        pytest.skip(f"{path.name} not generated yet")
    from ase.io import read

    frames = read(path, index=":")
    gens = al.generation_labels(frames, "generation")
    assert sorted(set(gens.tolist())) == list(range(5))
    # every 4th environment of each structure keeps the test fast; exact copies keep
    # exactly the same rows, so copies stay copies
    xs = [qc.descriptors([f])[::4] for f in frames]
    x = np.concatenate(xs)
    labels = np.repeat(gens, [len(v) for v in xs])
    report = al.active_learning_report(x, labels)
    assert report["generation"].tolist() == list(range(5))
    assert np.all((report["novelty"].iloc[1:] > 0) & (report["novelty"].iloc[1:] < 1))
    assert np.all(np.diff(report["n_envs_cumulative"]) > 0)
    # the generator adds exact copies of earlier structures to every later generation
    # (origin = "repeat"): put them in generations of their own, which must have zero
    # novelty; the new structures of each generation are hotter and more strained than
    # the ones before, so their novelty grows from generation to generation
    repeat = np.array([f.info["origin"] == "repeat" for f in frames])
    assert repeat.sum() >= 4
    split = 2 * gens + repeat
    split_labels = np.repeat(split, [len(v) for v in xs])
    parts = al.active_learning_report(x, split_labels).set_index("generation")
    for g in range(1, 5):
        assert parts.loc[2 * g + 1, "novelty"] == 0.0
        assert parts.loc[2 * g + 1, "mean_dH"] <= 0.0
    new_novelty = [parts.loc[2 * g, "novelty"] for g in range(1, 5)]
    assert new_novelty[0] > 0.0 and np.all(np.diff(new_novelty) > 0)


def test_generation_study_is_the_report_of_the_kept_environments():
    s = [structure("fcc", i, 0.05 + 0.05 * i) for i in range(4)]
    descs = [qc.descriptors([a], k=12, cutoff=4.0) for a in s]
    generations = np.array([0, 1, 1, 2])
    study = al.generation_study(descs, generations, env_step=3)
    kept = [x[::3] for x in descs]
    labels = np.repeat(generations, [len(x) for x in kept])
    want = al.active_learning_report(np.concatenate(kept), labels)
    pd.testing.assert_frame_equal(study.report, want, rtol=1e-12)
    assert study.n_structures == 4 and study.env_step == 3
    assert study.report["n_envs"].tolist() == [11, 22, 11]  # 32 atoms -> every 3rd: 11
    with pytest.raises(QuestsError, match="3 generations for 4 structures"):
        al.generation_study(descs, generations[:3])
