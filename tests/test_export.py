"""Tests of quests_core.export: extxyz with per-atom arrays, tables, JSON."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write
from conftest import cu_frames

from quests_core.dataset import Dataset
from quests_core.errors import QuestsError
from quests_core.export import (
    export_dataset,
    table_format,
    to_jsonable,
    write_extxyz,
    write_json,
    write_result,
    write_table,
)


def test_write_extxyz_arrays_round_trip(tmp_path):
    frames = cu_frames(3)
    rng = np.random.default_rng(1)
    dh = rng.normal(size=96) * 3.0
    cluster = rng.integers(-1, 5, size=96)
    path = tmp_path / "out.extxyz"
    write_extxyz(path, frames, {"dH": dh, "cluster": cluster}, {"H": [1.0, 2.0, 3.5]})
    back = read(path, index=":")
    assert len(back) == 3
    for i, atoms in enumerate(back):
        np.testing.assert_allclose(atoms.arrays["dH"], dh[32 * i : 32 * (i + 1)], atol=1e-7)
        np.testing.assert_array_equal(atoms.arrays["cluster"], cluster[32 * i : 32 * (i + 1)])
        assert atoms.arrays["cluster"].dtype.kind == "i"
        np.testing.assert_allclose(atoms.positions, frames[i].positions, atol=1e-7)
    assert [a.info["H"] for a in back] == [1.0, 2.0, 3.5]
    # the inputs are not modified
    assert "dH" not in frames[0].arrays


def test_write_extxyz_keeps_calculator_results(tmp_path):
    atoms = cu_frames(1)[0]
    forces = np.arange(96, dtype=float).reshape(32, 3)
    atoms.calc = SinglePointCalculator(atoms, energy=-1.25, forces=forces)
    path = tmp_path / "calc.extxyz"
    write_extxyz(path, [atoms], {"dH": np.zeros(32)})
    back = read(path)
    np.testing.assert_allclose(back.get_forces(), forces)
    assert back.get_potential_energy() == pytest.approx(-1.25)


def test_write_extxyz_length_mismatch(tmp_path):
    path = tmp_path / "bad.extxyz"
    with pytest.raises(QuestsError, match="'dH' has 70 rows for 64 atoms"):
        write_extxyz(path, cu_frames(2), {"dH": np.zeros(70)})
    with pytest.raises(QuestsError, match="'dH' has 50 rows, but structure 1 needs rows 32..63"):
        write_extxyz(path, cu_frames(2), {"dH": np.zeros(50)})
    with pytest.raises(QuestsError, match="'H' has 1 values, structure 1 has none"):
        write_extxyz(path, cu_frames(2), None, {"H": [1.0]})
    with pytest.raises(QuestsError, match="'H' has 3 values for 2 frames"):
        write_extxyz(path, cu_frames(2), None, {"H": [1.0, 2.0, 3.0]})
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_export_dataset_lazy(tmp_path):
    src = tmp_path / "traj.extxyz"
    write(src, cu_frames(4))
    ds = Dataset.from_files(src, lazy=True, index="::2", label="md")
    ds.set_array("dH", np.linspace(-1, 1, ds.n_atoms))
    ds.set_column("mean_dH", [0.1, 0.2])
    out = tmp_path / "dh.extxyz"
    export_dataset(ds, out)
    back = Dataset.from_files(out)
    np.testing.assert_allclose(back.arrays["dH"], ds.arrays["dH"], atol=1e-7)
    assert list(back.frames["label"]) == ["md", "md"]
    assert [a.info["mean_dH"] for a in back.structures] == [0.1, 0.2]
    with pytest.raises(QuestsError, match="no per-atom array"):
        export_dataset(ds, out, arrays=["cluster"])


@pytest.mark.parametrize("ext", [".csv", ".parquet", ".json"])
def test_write_table_round_trip(tmp_path, ext):
    table = pd.DataFrame(
        {"structure": [0, 0, 1], "dH": [0.5, -1.25, np.nan], "label": ["a", "a", "b"]}
    )
    path = tmp_path / f"t{ext}"
    write_table(table, path)
    if ext == ".csv":
        back = pd.read_csv(path, keep_default_na=True)
        back["label"] = back["label"].astype(str)
    elif ext == ".parquet":
        back = pd.read_parquet(path)
    else:
        back = pd.DataFrame(json.loads(path.read_text()))
        back["dH"] = back["dH"].astype(float)
    pd.testing.assert_frame_equal(back, table, check_dtype=False)


def test_table_format_and_unknown_extension(tmp_path):
    assert table_format("a.CSV") == "csv"
    assert table_format("a.pq") == "parquet"
    with pytest.raises(QuestsError, match=r"out.txt: unknown table extension '.txt'"):
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "out.txt")
    with pytest.raises(QuestsError, match="output directory does not exist"):
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "nope" / "out.csv")


def test_write_result_json_and_csv(tmp_path):
    table = pd.DataFrame({"frame": [0, 1], "H": [1.5, np.inf]})
    summary = {"n_atoms": np.int64(64), "H": np.float64(2.0), "bad": float("nan")}
    write_result(tmp_path / "r.json", table, summary)
    payload = json.loads((tmp_path / "r.json").read_text())
    assert payload["summary"] == {"n_atoms": 64, "H": 2.0, "bad": None}
    assert payload["rows"] == [{"frame": 0, "H": 1.5}, {"frame": 1, "H": None}]
    write_result(tmp_path / "r.csv", None, {"a": 1, "b": 2.5})
    assert pd.read_csv(tmp_path / "r.csv").to_dict(orient="records") == [{"a": 1, "b": 2.5}]
    matrix = pd.DataFrame([[1.0, 0.2], [0.3, 1.0]], index=["A", "B"], columns=["A", "B"])
    write_result(tmp_path / "m.csv", matrix, index=True)
    back = pd.read_csv(tmp_path / "m.csv", index_col=0)
    pd.testing.assert_frame_equal(back, matrix)


def test_to_jsonable_and_write_json(tmp_path):
    value = {"a": np.arange(3), "b": (np.float32(1.5), float("-inf")), "c": {1: np.bool_(True)}}
    assert to_jsonable(value) == {"a": [0, 1, 2], "b": [1.5, None], "c": {"1": True}}
    write_json(tmp_path / "x.json", value)
    assert json.loads((tmp_path / "x.json").read_text())["b"] == [1.5, None]
