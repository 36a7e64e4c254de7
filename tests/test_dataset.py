"""Tests of quests_core.dataset: the per-frame table, per-atom arrays, lazy streaming,
concat/split/select."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from quests_core.dataset import ATOM_COLUMNS, FRAME_COLUMNS, Dataset, concat, frame_record
from quests_core.errors import QuestsError


def cu_frames(n: int, size: int = 2, label: str | None = None, gen: int | None = None):
    base = bulk("Cu", cubic=True) * (size, size, size)
    out = []
    for i in range(n):
        atoms = base.copy()
        atoms.rattle(0.05, seed=100 + i)
        atoms.info["time"] = 0.25 * i
        if label is not None:
            atoms.info["label"] = label
        if gen is not None:
            atoms.info["generation"] = gen
        out.append(atoms)
    return out


def test_frame_record_columns_and_values():
    atoms = bulk("Cu", cubic=True) * (2, 2, 2)
    atoms.info.update(label="train", generation=3, time=1.5, temperature=400.0)
    rec = frame_record(atoms, "a.extxyz", 7)
    assert rec["source"] == "a.extxyz"
    assert rec["frame"] == 7
    assert rec["label"] == "train"
    assert rec["generation"] == 3
    assert rec["time"] == 1.5
    assert rec["temperature"] == 400.0
    assert rec["n_atoms"] == 32
    assert rec["volume_per_atom"] == pytest.approx(3.61**3 / 4)
    assert rec["elements"] == "Cu"
    # defaults: "" label, -1 generation, NaN time/temperature/energy, time from time_step
    bare = Atoms("Cu2", positions=[[0, 0, 0], [2, 0, 0]])
    rec = frame_record(bare, "m.xyz", 4, time_step=0.1)
    assert rec["label"] == "" and rec["generation"] == -1
    assert rec["time"] == pytest.approx(0.4)
    assert np.isnan(rec["temperature"]) and np.isnan(rec["energy"])
    assert np.isnan(rec["volume_per_atom"])


def test_temperature_from_momenta():
    atoms = bulk("Cu", cubic=True) * (2, 2, 2)
    atoms.set_momenta(np.random.default_rng(0).normal(size=(len(atoms), 3)))
    rec = frame_record(atoms)
    assert rec["temperature"] == pytest.approx(atoms.get_temperature())
    assert rec["temperature"] > 0


def test_from_structures_tables():
    frames = cu_frames(3) + [bulk("Ni", cubic=True)]
    ds = Dataset.from_structures(frames, name="mix", label="bulk")
    assert len(ds) == 4
    assert ds.n_atoms == 3 * 32 + 4
    assert list(ds.frames.columns[: len(FRAME_COLUMNS)]) == list(FRAME_COLUMNS)
    np.testing.assert_array_equal(ds.frames["structure"], [0, 1, 2, 3])
    np.testing.assert_array_equal(ds.frames["atom_offset"], [0, 32, 64, 96])
    np.testing.assert_array_equal(ds.frames["time"][:3], [0.0, 0.25, 0.5])
    assert (ds.frames["label"] == "bulk").all()
    assert ds.species == ("Ni", "Cu")
    table = ds.atoms_table()
    assert list(table.columns[: len(ATOM_COLUMNS)]) == list(ATOM_COLUMNS)
    assert len(table) == ds.n_atoms
    np.testing.assert_array_equal(table["atom"][30:34], [30, 31, 0, 1])
    np.testing.assert_array_equal(table["structure"][95:97], [2, 3])
    assert list(table["species"][-4:]) == ["Ni"] * 4
    np.testing.assert_allclose(table[["x", "y", "z"]].to_numpy()[32:64], frames[1].positions)


def test_forces_from_arrays_and_calculator(tmp_path):
    frames = cu_frames(3)
    for i, atoms in enumerate(frames):
        atoms.arrays["forces_emt"] = np.full((32, 3), float(i))
        atoms.arrays["forces_model"] = np.full((32, 3), 10.0 + i)
    # the calculator's forces appear in extxyz as the "forces" column
    frames[0].calc = SinglePointCalculator(frames[0], forces=np.ones((32, 3)), energy=-3.0)
    path = tmp_path / "f.extxyz"
    write(path, frames)
    ds = Dataset.from_files(path)
    assert set(ds.arrays) == {"forces", "forces_emt", "forces_model"}
    assert ds.arrays["forces_emt"].shape == (96, 3)
    np.testing.assert_array_equal(ds.arrays["forces_emt"][32:64], 1.0)
    np.testing.assert_array_equal(ds.arrays["forces_model"][64:], 12.0)
    # frames 1 and 2 have no calculator forces: filled with NaN
    np.testing.assert_array_equal(ds.arrays["forces"][:32], 1.0)
    assert np.isnan(ds.arrays["forces"][32:]).all()
    assert ds.frames["energy"].iloc[0] == pytest.approx(-3.0)
    table = ds.atoms_table()
    assert {"forces_emt_x", "forces_emt_y", "forces_emt_z", "forces_model_z"} <= set(table)
    np.testing.assert_array_equal(table["forces_model_y"][64:], 12.0)


def test_from_files_several_and_slicing(tmp_path):
    write(tmp_path / "a.extxyz", cu_frames(6))
    write(tmp_path / "b.traj", cu_frames(4))
    ds = Dataset.from_files([tmp_path / "a.extxyz", tmp_path / "b.traj"], index="::2")
    assert ds.name == "a+b"
    assert list(ds.frames["frame"]) == [0, 2, 4, 0, 2]
    assert list(ds.frames["source"].map(lambda s: s.rsplit("/", 1)[-1])) == [
        "a.extxyz",
        "a.extxyz",
        "a.extxyz",
        "b.traj",
        "b.traj",
    ]
    np.testing.assert_array_equal(ds.frames["atom_offset"], np.arange(5) * 32)
    assert not ds.is_lazy


def test_lazy_dataset_streams_the_same_structures(tmp_path):
    frames = cu_frames(7)
    path = tmp_path / "traj.extxyz"
    write(path, frames)
    lazy = Dataset.from_files(path, index="1::2", lazy=True)
    eager = Dataset.from_files(path, index="1::2")
    assert lazy.is_lazy and not eager.is_lazy
    pd.testing.assert_frame_equal(lazy.frames, eager.frames)
    got = list(lazy.iter_structures())
    assert len(got) == 3
    for a, f in zip(got, [1, 3, 5], strict=True):
        np.testing.assert_allclose(a.positions, frames[f].positions, atol=1e-6)
    np.testing.assert_allclose(lazy.structure(-1).positions, frames[5].positions, atol=1e-6)
    pd.testing.assert_frame_equal(lazy.atoms_table(), eager.atoms_table())
    assert lazy.arrays == {}
    loaded = lazy.load()
    assert not loaded.is_lazy and len(loaded.structures) == 3


def test_lazy_subset_in_any_order(tmp_path):
    frames = cu_frames(5)
    path = tmp_path / "traj.extxyz"
    write(path, frames)
    lazy = Dataset.from_files(path, lazy=True)
    sub = lazy.subset([4, 1, 2])
    assert list(sub.frames["frame"]) == [4, 1, 2]
    for a, f in zip(sub.iter_structures(), [4, 1, 2], strict=True):
        np.testing.assert_allclose(a.positions, frames[f].positions, atol=1e-6)


def test_iter_chunks_respects_max_atoms():
    ds = Dataset.from_structures(cu_frames(5))
    chunks = list(ds.iter_chunks(max_atoms=70))
    assert [(first, len(c)) for first, c in chunks] == [(0, 2), (2, 2), (4, 1)]
    # a structure larger than the limit is a chunk on its own
    assert [len(c) for _, c in ds.iter_chunks(max_atoms=10)] == [1] * 5


def test_split_select_concat_round_trip():
    train = Dataset.from_structures(cu_frames(3, label="train", gen=0), name="t")
    test = Dataset.from_structures(cu_frames(2, label="test", gen=1), name="u")
    train.set_array("dH", np.arange(96, dtype=float))
    test.set_array("dH", -np.arange(64, dtype=float))
    both = concat([train, test])
    assert both.name == "t+u"
    assert len(both) == 5 and both.n_atoms == 160
    np.testing.assert_array_equal(both.arrays["dH"][94:98], [94, 95, 0, -1])

    parts = both.split_by("label")
    assert list(parts) == ["train", "test"]
    np.testing.assert_array_equal(parts["test"].arrays["dH"], -np.arange(64))
    np.testing.assert_array_equal(parts["train"].frames["atom_offset"], [0, 32, 64])
    assert parts["test"].name == "test"

    by_gen = both.split_by("generation")
    assert list(by_gen) == [0, 1] and len(by_gen[1]) == 2

    sel = both.select(label="train", time=lambda t: t > 0.1)
    assert list(sel.frames["time"]) == [0.25, 0.5]
    np.testing.assert_array_equal(sel.arrays["dH"], np.arange(32, 96))
    assert len(both.select(generation=[1, 5])) == 2
    with pytest.raises(QuestsError, match="no per-frame column 'colour'"):
        both.select(colour="red")

    again = Dataset.concat([parts["train"], parts["test"]])
    pd.testing.assert_frame_equal(again.frames, both.frames)
    np.testing.assert_array_equal(again.arrays["dH"], both.arrays["dH"])


def test_concat_fills_missing_arrays():
    a = Dataset.from_structures(cu_frames(1))
    b = Dataset.from_structures(cu_frames(1))
    a.set_array("cluster", np.arange(32))
    b.set_array("force_error", np.ones(32))
    ab = concat([a, b])
    np.testing.assert_array_equal(ab.arrays["cluster"][32:], -1)
    assert ab.arrays["cluster"].dtype.kind == "i"
    assert np.isnan(ab.arrays["force_error"][:32]).all()
    np.testing.assert_array_equal(ab.arrays["force_error"][32:], 1.0)


def test_concat_lazy_and_in_memory(tmp_path):
    write(tmp_path / "a.extxyz", cu_frames(2))
    lazy = Dataset.from_files(tmp_path / "a.extxyz", lazy=True)
    mem = Dataset.from_structures([bulk("Ni", cubic=True)], name="ni")
    mixed = concat([lazy, mem, lazy])
    assert mixed.is_lazy
    formulas = [a.get_chemical_formula() for a in mixed.iter_structures()]
    assert formulas == ["Cu32", "Cu32", "Ni4", "Cu32", "Cu32"]
    assert len(mixed.specs) == 1


def test_set_array_and_column_validate_lengths():
    ds = Dataset.from_structures(cu_frames(2))
    with pytest.raises(QuestsError, match="has 10 rows, expected 64"):
        ds.set_array("dH", np.zeros(10))
    with pytest.raises(QuestsError, match="has 3 values, expected 2"):
        ds.set_column("H", [1.0, 2.0, 3.0])
    ds.set_column("H", [1.0, 2.0])
    assert list(ds.frames["H"]) == [1.0, 2.0]
    # computed columns survive subsets
    assert list(ds.subset([1]).frames["H"]) == [2.0]


def test_from_structures_validates():
    bad = cu_frames(2)
    bad[1].positions[3] = np.nan
    with pytest.raises(QuestsError, match="frame 1: non-finite"):
        Dataset.from_structures(bad, name="bad")


def test_lazy_detects_changed_file(tmp_path):
    path = tmp_path / "a.extxyz"
    write(path, cu_frames(3))
    lazy = Dataset.from_files(path, lazy=True)
    write(path, cu_frames(1))
    with pytest.raises(QuestsError, match="a.extxyz"):
        list(lazy.iter_structures())


def test_sample_two_force_sources():
    import os
    from pathlib import Path

    root = Path(os.environ.get("QUESTS_SAMPLE_DATA", Path(__file__).parent.parent / "sample_data"))
    path = root / "cu_forces_two_models.extxyz"
    if not path.exists():
        pytest.skip("sample_data/cu_forces_two_models.extxyz is not in the repository yet")
    ds = Dataset.from_files(path)
    assert {"forces_emt", "forces_model"} <= set(ds.arrays)
    for name in ("forces_emt", "forces_model"):
        assert ds.arrays[name].shape == (ds.n_atoms, 3)
        assert np.isfinite(ds.arrays[name]).all()
    assert not np.allclose(ds.arrays["forces_emt"], ds.arrays["forces_model"])
    table = ds.atoms_table()
    error = np.linalg.norm(ds.arrays["forces_model"] - ds.arrays["forces_emt"], axis=1)
    np.testing.assert_allclose(
        np.linalg.norm(
            table[["forces_model_x", "forces_model_y", "forces_model_z"]].to_numpy()
            - table[["forces_emt_x", "forces_emt_y", "forces_emt_z"]].to_numpy(),
            axis=1,
        ),
        error,
    )
    assert set(ds.split_by("label")) >= {"train"}
