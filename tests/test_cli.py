"""Tests of the quests-dashboard command line (quests_core.cli)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from ase.build import bulk
from ase.io import read, write

import quests_core as qc
from quests_core.cli import main
from quests_core.dataset import ATOM_COLUMNS
from quests_core.errors import QuestsError
from quests_core.io import count_frames, read_structures

SAMPLE = Path(
    os.environ.get("QUESTS_SAMPLE_DATA", Path(__file__).resolve().parent.parent / "sample_data")
)
K, CUTOFF = 8, 4.0  # small descriptors keep the tests fast
OPTS = ["-k", str(K), "--cutoff", str(CUTOFF), "--no-progress"]


def cu_frames(n: int, amplitude: float = 0.05, seed: int = 0, label: str | None = None):
    base = bulk("Cu", cubic=True) * (2, 2, 2)
    out = []
    for i in range(n):
        atoms = base.copy()
        atoms.rattle(amplitude, seed=seed + i)
        atoms.info["time"] = 0.1 * i
        if label is not None:
            atoms.info["label"] = label
        out.append(atoms)
    return out


@pytest.fixture()
def env(tmp_path, monkeypatch):
    """A private cache directory and a few input files."""
    monkeypatch.setenv("QUESTS_CACHE_DIR", str(tmp_path / "cache"))
    write(tmp_path / "solid.extxyz", cu_frames(4, 0.03))
    write(tmp_path / "hot.extxyz", cu_frames(3, 0.25, seed=10))
    labelled = cu_frames(2, 0.03, label="train") + cu_frames(2, 0.3, seed=5, label="test")
    write(tmp_path / "labelled.extxyz", labelled)
    return tmp_path


def desc(path, index=":"):
    return qc.descriptors(read_structures(path, index=index), k=K, cutoff=CUTOFF)


def run(argv, capsys):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


# ------------------------------------------------------------------ commands


def test_descriptors_npy_and_cache(env, capsys):
    out = env / "x.npy"
    rc, _, err = run(
        ["descriptors", env / "solid.extxyz", env / "hot.extxyz", *OPTS, "-o", out], capsys
    )
    assert rc == 0, err
    expected = np.concatenate([desc(env / "solid.extxyz"), desc(env / "hot.extxyz")])
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-12, atol=1e-12)
    # second run: served from the cache, identical
    rc, _, err = run(
        ["descriptors", env / "solid.extxyz", env / "hot.extxyz", *OPTS, "-o", env / "s.json"],
        capsys,
    )
    assert rc == 0, err
    rows = json.loads((env / "s.json").read_text())["rows"]
    assert [r["from_cache"] for r in rows] == [True, True]
    assert [r["atoms"] for r in rows] == [128, 96]
    rc, _, _ = run(["descriptors", env / "solid.extxyz", *OPTS, "-o", env / "y.npy"], capsys)
    np.testing.assert_array_equal(np.load(env / "y.npy"), np.load(out)[:128])


def test_descriptors_table_and_no_cache(env, capsys):
    rc, _, err = run(
        [
            "descriptors",
            env / "hot.extxyz",
            *OPTS,
            "--no-cache",
            "--index",
            "1:",
            "-o",
            env / "d.parquet",
        ],
        capsys,
    )
    assert rc == 0, err
    table = pd.read_parquet(env / "d.parquet")
    assert list(table.columns[:7]) == ["source", *ATOM_COLUMNS[:6]]  # up to "atom"
    assert len(table) == 64 and list(table["frame"].unique()) == [1, 2]
    np.testing.assert_allclose(
        table[[f"d{i}" for i in range(2 * K - 1)]].to_numpy(), desc(env / "hot.extxyz", "1:")
    )
    assert not (env / "cache").exists()


def test_entropy_by_file_and_by_label(env, capsys):
    rc, out, err = run(
        [
            "entropy",
            env / "solid.extxyz",
            env / "hot.extxyz",
            *OPTS,
            "--bandwidth",
            "0.05",
            "-o",
            env / "h.json",
        ],
        capsys,
    )
    assert rc == 0, err
    payload = json.loads((env / "h.json").read_text())
    rows = {r["group"]: r for r in payload["rows"]}
    x = desc(env / "solid.extxyz")
    assert rows["solid.extxyz"]["H"] == pytest.approx(qc.entropy(x, 0.05), rel=1e-10)
    assert rows["solid.extxyz"]["D"] == pytest.approx(qc.diversity(x, 0.05), rel=1e-10)
    assert rows["hot.extxyz"]["atoms"] == 96
    assert "solid.extxyz" in out

    rc, _, err = run(
        ["entropy", env / "labelled.extxyz", *OPTS, "--by", "label", "-o", env / "h.csv"], capsys
    )
    assert rc == 0, err
    table = pd.read_csv(env / "h.csv")
    assert list(table["group"]) == ["train", "test"]
    y = desc(env / "labelled.extxyz")
    assert table["H"].iloc[1] == pytest.approx(qc.entropy(y[64:], 0.015), rel=1e-10)


def test_entropy_auto_bandwidth(env, capsys):
    rc, _, err = run(
        ["entropy", env / "solid.extxyz", *OPTS, "--bandwidth", "auto", "-o", env / "a.json"],
        capsys,
    )
    assert rc == 0, err
    row = json.loads((env / "a.json").read_text())["rows"][0]
    assert row["bandwidth"] == pytest.approx(qc.bandwidth_from_volume(3.61**3 / 4))


def test_auto_bandwidth_is_the_atom_weighted_mean_volume(env, capsys):
    """--bandwidth auto: h(V) of the total volume over the total atoms of the reference
    (not the median of the frames' volumes per atom), for entropy, dH and each overlap column."""
    frames = [bulk("Cu", cubic=True) * (2, 2, 2), bulk("Cu", cubic=True) * (2, 2, 2)]
    frames += [bulk("Cu", cubic=True) * (3, 3, 3)]
    for i, atoms in enumerate(frames):
        atoms.set_cell(atoms.cell * (1.0 + 0.04 * i), scale_atoms=True)
        atoms.rattle(0.02, seed=i)
    write(env / "mixed.extxyz", frames)
    volumes = np.array([a.get_volume() / len(a) for a in frames])
    counts = np.array([len(a) for a in frames])
    h_mean = qc.bandwidth_from_volume(np.sum(volumes * counts) / counts.sum())
    assert abs(h_mean - qc.bandwidth_from_volume(np.median(volumes))) > 1e-4  # the rules differ
    h_solid = qc.bandwidth_from_volume(3.61**3 / 4)
    auto = [*OPTS, "--bandwidth", "auto"]

    rc, _, err = run(["entropy", env / "mixed.extxyz", *auto, "-o", env / "e.json"], capsys)
    assert rc == 0, err
    row = json.loads((env / "e.json").read_text())["rows"][0]
    assert row["bandwidth"] == pytest.approx(h_mean, rel=1e-12)
    x = desc(env / "mixed.extxyz")
    assert row["H"] == pytest.approx(qc.entropy(x, h_mean), rel=1e-10)

    rc, _, err = run(
        ["dh", env / "solid.extxyz", "-r", env / "mixed.extxyz", *auto, "-o", env / "d.json"],
        capsys,
    )
    assert rc == 0, err
    summary = json.loads((env / "d.json").read_text())["summary"]
    assert summary["bandwidth"] == pytest.approx(h_mean, rel=1e-12)

    rc, _, err = run(
        ["overlap", env / "solid.extxyz", env / "mixed.extxyz", *auto, "-o", env / "o.csv"],
        capsys,
    )
    assert rc == 0, err
    m = pd.read_csv(env / "o.csv", index_col=0)
    y = desc(env / "solid.extxyz")
    # column j uses the h of reference j
    assert m.loc["solid.extxyz", "mixed.extxyz"] == pytest.approx(qc.overlap(y, x, h_mean))
    assert m.loc["mixed.extxyz", "solid.extxyz"] == pytest.approx(qc.overlap(x, y, h_solid))


def test_auto_bandwidth_needs_a_cell(env, capsys):
    write(env / "molecule.extxyz", Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 2.5]]))
    rc, _, err = run(["entropy", env / "molecule.extxyz", *OPTS, "--bandwidth", "auto"], capsys)
    assert rc == 1
    assert err.strip().splitlines()[-1] == (
        "error: molecule: --bandwidth auto: the volume rule needs periodic cells "
        "(no volume per atom)"
    )


def test_dh_exact_approx_and_extxyz(env, capsys):
    dh = ["dh", env / "hot.extxyz", "-r", env / "solid.extxyz", *OPTS, "--bandwidth", "0.05"]
    rc, out, err = run([*dh, "-o", env / "dh.csv"], capsys)
    assert rc == 0, err
    table = pd.read_csv(env / "dh.csv")
    y, x = desc(env / "hot.extxyz"), desc(env / "solid.extxyz")
    exact = qc.delta_entropy(y, x, 0.05)
    np.testing.assert_allclose(table["dH"], exact, rtol=1e-9)
    assert list(table["frame"].unique()) == [0, 1, 2]
    assert "novelty" in out

    rc, out, err = run([*dh, "--approx", "--n-neighbors", "3", "-o", env / "approx.parquet"],
                       capsys)
    assert rc == 0, err
    approx = pd.read_parquet(env / "approx.parquet")["dH"].to_numpy()
    assert np.all(approx >= exact - 1e-9)

    rc, _, err = run([*dh, "-o", env / "dh.extxyz"], capsys)
    assert rc == 0, err
    frames = read(env / "dh.extxyz", index=":")
    assert len(frames) == 3
    np.testing.assert_allclose(np.concatenate([a.arrays["dH"] for a in frames]), exact, atol=1e-7)


def test_dh_table_cached_as_parquet(env, capsys, monkeypatch):
    argv = ["dh", env / "hot.extxyz", "-r", env / "solid.extxyz", *OPTS, "-o", env / "a.json"]
    rc, _, err = run(argv, capsys)
    assert rc == 0, err
    first = json.loads((env / "a.json").read_text())
    assert first["summary"]["dH_from_cache"] is False
    tables = list((env / "cache" / "tables").glob("*.parquet"))
    dh_tables = [pd.read_parquet(t) for t in tables]
    dh_tables = [t for t in dh_tables if "dH" in t]
    assert len(dh_tables) == 1 and list(dh_tables[0].columns) == [
        "structure",
        "frame",
        "atom",
        "dH",
    ]

    def no_kernel(*args, **kwargs):
        raise AssertionError("dH must come from the cache")

    monkeypatch.setattr(qc, "delta_entropy", no_kernel)
    rc, _, err = run(argv, capsys)
    assert rc == 0, err
    second = json.loads((env / "a.json").read_text())
    assert second["summary"]["dH_from_cache"] is True
    assert second["rows"] == first["rows"]
    # another bandwidth is another result
    rc, _, err = run([*argv, "--bandwidth", "0.02"], capsys)
    assert rc == 3  # an unexpected exception: one line, exit status 3
    assert err.strip() == (
        "internal error: AssertionError: dH must come from the cache "
        "(rerun with --debug for the traceback)"
    )


def test_dh_store_matches_in_memory_and_resumes(env, capsys, monkeypatch):
    """``dh --store``: chunked into a Parquet store, same dH as in memory, resumable."""
    from quests_core.chunk_store import ChunkStore

    traj = env / "traj.extxyz"
    write(traj, cu_frames(4, 0.03) + cu_frames(3, 0.25, seed=10))
    store = env / "store"
    argv = ["dh", traj, "-r", env / "solid.extxyz", *OPTS, "--bandwidth", "0.05",
            "--store", store, "--chunk-frames", "3", "-o", env / "frames.json"]
    rc, out, err = run(argv, capsys)
    assert rc == 0, err
    result = json.loads((env / "frames.json").read_text())
    summary = result["summary"]
    assert summary["chunks_computed"] == 3 and summary["chunks_resumed"] == 0
    assert summary["complete"] is True and summary["test_atoms"] == 7 * 32
    exact = qc.delta_entropy(desc(traj), desc(env / "solid.extxyz"), 0.05)
    np.testing.assert_array_equal(ChunkStore(store).delta_entropy(), exact)
    assert summary["mean_dH"] == pytest.approx(exact.mean(), rel=1e-12)
    assert summary["max_dH"] == pytest.approx(exact.max(), rel=1e-12)
    assert summary["novelty"] == pytest.approx(np.mean(exact > 0), rel=1e-12)
    frames = pd.DataFrame(result["rows"])
    assert len(frames) == 7 and frames["max_dH"].to_numpy() == pytest.approx(
        exact.reshape(7, 32).max(axis=1))

    # a finished chunk is never recomputed: forget the last one, then run again
    manifest = json.loads((store / "manifest.json").read_text())
    del manifest["chunks"]["000-000002"]
    manifest["complete"] = False
    (store / "manifest.json").write_text(json.dumps(manifest))
    rc, out, err = run(argv, capsys)
    assert rc == 0, err
    summary = json.loads((env / "frames.json").read_text())["summary"]
    assert (summary["chunks_computed"], summary["chunks_resumed"]) == (1, 2)
    np.testing.assert_array_equal(ChunkStore(store).delta_entropy(), exact)

    # Ctrl-C: exit status 130, one line saying how to resume, nothing lost
    import quests_core.chunked as chunked

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    manifest = json.loads((store / "manifest.json").read_text())
    manifest["chunks"].pop("000-000001")
    (store / "manifest.json").write_text(json.dumps(manifest))
    with monkeypatch.context() as patch:
        patch.setattr(chunked, "_compute_chunk", interrupt)
        rc, _, err = run(argv, capsys)
    assert rc == 130 and err.strip() == (
        f"interrupted: the finished chunks are kept in {store}; run the same command again "
        "to resume")
    assert ChunkStore(store).chunk_ids == ["000-000000", "000-000002"]
    rc, _, err = run(argv, capsys)
    assert rc == 0 and ChunkStore(store).complete

    # other parameters: refused with one line naming the store and the difference
    rc, _, err = run([*argv[:-2], "--bandwidth", "0.02"], capsys)
    assert rc == 1
    assert err.strip().startswith(f"error: {store}: holds a run with other parameters (h: 0.05")
    assert "--overwrite" in err
    rc, _, err = run([*argv[:-2], "--bandwidth", "0.02", "--overwrite"], capsys)
    assert rc == 0, err
    assert ChunkStore(store).params["h"] == 0.02


def test_dh_store_option_errors(env, capsys, monkeypatch):
    base = ["dh", env / "hot.extxyz", "-r", env / "solid.extxyz", *OPTS, "--store", env / "s"]
    rc, _, err = run([*base, "--approx"], capsys)
    assert (rc, err.count("\n")) == (1, 1) and "--approx cannot be combined" in err
    rc, _, err = run([*base, "-o", env / "out.extxyz"], capsys)
    assert rc == 1 and "use .csv, .parquet or .json" in err
    import quests_core.dask_tools as dask_tools

    monkeypatch.setattr(dask_tools, "SCHEDULER_TIMEOUT_S", 1)
    rc, _, err = run([*base, "--scheduler", "tcp://127.0.0.1:9"], capsys)
    assert rc == 1
    assert err.strip().startswith("error: cannot reach the Dask scheduler at tcp://127.0.0.1:9")
    assert err.count("\n") == 1


def test_dh_store_on_a_local_dask_cluster(env, capsys):
    from quests_core.chunk_store import ChunkStore

    pytest.importorskip("distributed")
    store = env / "dask-store"
    rc, _, err = run(["dh", env / "hot.extxyz", "-r", env / "solid.extxyz", *OPTS,
                      "--store", store, "--chunk-frames", "1", "--scheduler", "local"], capsys)
    assert rc == 0, err
    exact = qc.delta_entropy(desc(env / "hot.extxyz"), desc(env / "solid.extxyz"), 0.015)
    np.testing.assert_array_equal(ChunkStore(store).delta_entropy(), exact)


def test_overlap_matrix(env, capsys):
    rc, _, err = run(
        [
            "overlap",
            env / "solid.extxyz",
            env / "hot.extxyz",
            *OPTS,
            "--bandwidth",
            "0.05",
            "-o",
            env / "o.csv",
        ],
        capsys,
    )
    assert rc == 0, err
    m = pd.read_csv(env / "o.csv", index_col=0)
    assert list(m.index) == ["solid.extxyz", "hot.extxyz"] == list(m.columns)
    # dH(x | X) <= 0 for every member of X: the diagonal is exactly 1
    np.testing.assert_array_equal(np.diag(m.to_numpy()), [1.0, 1.0])
    y, x = desc(env / "hot.extxyz"), desc(env / "solid.extxyz")
    assert m.loc["hot.extxyz", "solid.extxyz"] == pytest.approx(qc.overlap(y, x, 0.05))
    assert m.loc["solid.extxyz", "hot.extxyz"] == pytest.approx(qc.overlap(x, y, 0.05))

    rc, _, err = run(
        ["overlap", env / "labelled.extxyz", *OPTS, "--by", "label", "-o", env / "o.json"], capsys
    )
    assert rc == 0, err
    summary = json.loads((env / "o.json").read_text())["summary"]
    assert summary["labels"] == ["train", "test"]
    assert np.asarray(summary["matrix"]).shape == (2, 2)


def test_learning_curve(env, capsys):
    rc, _, err = run(
        [
            "learning-curve",
            env / "solid.extxyz",
            env / "hot.extxyz",
            *OPTS,
            "--sizes",
            "10,20,40,80,120,160,224",
            "--repeats",
            "2",
            "-o",
            env / "lc.json",
        ],
        capsys,
    )
    assert rc == 0, err
    payload = json.loads((env / "lc.json").read_text())
    table = pd.DataFrame(payload["rows"])
    assert list(table["size"]) == [10, 20, 40, 80, 120, 160, 224]
    np.testing.assert_allclose(table["log_n"], np.log(table["size"]))
    # the full set has a single subset: its H is the entropy of everything, std 0
    x = np.concatenate([desc(env / "solid.extxyz"), desc(env / "hot.extxyz")])
    assert table["H_mean"].iloc[-1] == pytest.approx(qc.entropy(x, 0.015), rel=1e-10)
    assert table["H_std"].iloc[-1] == pytest.approx(0.0, abs=1e-12)
    assert (table["H_mean"] <= table["log_n"] + 1e-12).all()


def test_trajectory(env, capsys):
    traj = env / "md.extxyz"
    write(traj, cu_frames(3, 0.03) + cu_frames(2, 0.4, seed=20))
    rc, _, err = run(
        ["trajectory", traj, *OPTS, "--bandwidth", "0.05", "-o", env / "t.csv"], capsys
    )
    assert rc == 0, err
    table = pd.read_csv(env / "t.csv")
    x = desc(traj)
    frames = [x[32 * i : 32 * (i + 1)] for i in range(5)]
    np.testing.assert_allclose(table["H"], [qc.entropy(f, 0.05) for f in frames], rtol=1e-10)
    dh = [qc.delta_entropy(f, frames[0], 0.05) for f in frames]
    np.testing.assert_allclose(table["mean_dH"], [d.mean() for d in dh], rtol=1e-10)
    np.testing.assert_allclose(table["frac_novel"], [np.mean(d > 0) for d in dh])
    np.testing.assert_allclose(table["max_dH"], [d.max() for d in dh], rtol=1e-10)
    assert list(table.columns) == [
        "structure", "source", "frame", "time", "n_atoms", "temperature",
        "H", "H_stderr", "mean_dH", "frac_novel", "max_dH",
    ]
    np.testing.assert_array_equal(table["H_stderr"], 0.0)  # 32-atom frames: exact H
    assert table["frac_novel"].iloc[0] == 0.0
    np.testing.assert_allclose(table["time"], [0.0, 0.1, 0.2, 0.0, 0.1])

    # against a reference file, written as extxyz with per-atom dH and per-frame info
    rc, _, err = run(
        [
            "trajectory",
            traj,
            "-r",
            env / "solid.extxyz",
            *OPTS,
            "--bandwidth",
            "0.05",
            "--index",
            "::2",
            "-o",
            env / "t.extxyz",
        ],
        capsys,
    )
    assert rc == 0, err
    back = read(env / "t.extxyz", index=":")
    ref = desc(env / "solid.extxyz")
    assert len(back) == 3
    np.testing.assert_allclose(
        back[2].arrays["dH"], qc.delta_entropy(frames[4], ref, 0.05), atol=1e-7
    )
    assert back[1].info["H"] == pytest.approx(qc.entropy(frames[2], 0.05), rel=1e-7)


# ----------------------------------------------------------------- bad input


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {}
    good = cu_frames(3)
    p = tmp_path / "truncated.extxyz"
    write(p, good)
    lines = p.read_text().splitlines(keepends=True)
    # frame 2 loses 7 atom lines and another frame follows (a cut last frame is only a warning)
    p.write_text("".join(lines[:-7] + lines[: len(lines) // 3]))
    files["truncated"] = p
    p = tmp_path / "empty.extxyz"
    p.touch()
    files["empty"] = p
    p = tmp_path / "adir"
    p.mkdir()
    files["directory"] = p
    p = tmp_path / "notes.weird"
    p.write_text("nothing to see\n")
    files["unknown"] = p
    nan = cu_frames(3)
    nan[1].positions[4, 2] = np.nan
    p = tmp_path / "nan.extxyz"
    write(p, nan)
    files["nan"] = p
    p = tmp_path / "zero.extxyz"
    write(p, [cu_frames(1)[0], Atoms(cell=[4, 4, 4], pbc=True)])
    files["zero"] = p
    return files


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("truncated", r"truncated.extxyz: frame 2: "),
        ("empty", r"empty.extxyz: empty file"),
        ("directory", r"adir: is a directory"),
        ("unknown", r"notes.weird: unknown file format"),
        ("nan", r"nan.extxyz: frame 1: non-finite"),
        ("zero", r"zero.extxyz: frame 1: has zero atoms"),
    ],
)
def test_bad_input_one_line_error(env, capsys, kind, message):
    bad = _bad_files(env)[kind]
    rc, out, err = run(["entropy", env / "solid.extxyz", bad, *OPTS], capsys)
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert __import__("re").search(message, lines[0]), lines[0]
    assert "Traceback" not in err
    # the cache holds only complete entries (solid.extxyz), nothing from the bad file
    cache = env / "cache" / "descriptors"
    assert not list(cache.glob("*.tmp"))
    for meta in cache.glob("*.json"):
        assert json.loads(meta.read_text())["source"].endswith("solid.extxyz")


def test_skip_bad_processes_the_rest(env, capsys):
    bad = _bad_files(env)
    files = [env / "solid.extxyz", *bad.values(), env / "hot.extxyz"]
    rc, out, err = run(["entropy", *files, *OPTS, "--skip-bad", "-o", env / "r.json"], capsys)
    assert rc == 0, err
    payload = json.loads((env / "r.json").read_text())
    assert [r["group"] for r in payload["rows"]] == ["solid.extxyz", "hot.extxyz"]
    skipped = payload["summary"]["skipped"]
    assert [Path(s["file"]).name for s in skipped] == [p.name for p in bad.values()]
    assert "skipped 6 bad file(s)" in err
    assert "truncated.extxyz: frame 2" in err and "nan.extxyz: frame 1" in err
    # every file bad: still an error
    rc, _, err = run(["entropy", bad["empty"], bad["nan"], *OPTS, "--skip-bad"], capsys)
    assert rc == 1 and "no usable input files (2 skipped)" in err


def test_debug_shows_the_exception(env):
    empty = _bad_files(env)["empty"]
    with pytest.raises(QuestsError, match="empty file"):
        main(["entropy", str(empty), *OPTS, "--debug"])
    with pytest.raises(QuestsError, match="empty file"):
        main(["--debug", "entropy", str(empty), *OPTS])


def test_usage_errors(env, capsys):
    rc, _, err = run(["entropy", env / "solid.extxyz", *OPTS, "-o", env / "x.txt"], capsys)
    assert rc == 1 and "unsupported output extension '.txt'" in err
    rc, _, err = run(["entropy", env / "solid.extxyz", "-k", "0"], capsys)
    assert rc == 2
    rc, _, err = run(["frobnicate"], capsys)
    assert rc == 2
    rc, _, err = run(["entropy", env / "solid.extxyz", *OPTS, "--index", "x:y"], capsys)
    assert rc == 1 and "index" in err
    rc, _, err = run(["dh", env / "solid.extxyz", *OPTS], capsys)
    assert rc == 2 and "--reference" in err
    # values argparse accepts but Settings rejects: one line, exit status 1, before any work
    rc, _, err = run(["entropy", env / "solid.extxyz", *OPTS, "--cutoff", "1e6"], capsys)
    assert rc == 1 and err.count("\n") == 1 and err.startswith("error: cutoff must be between")
    rc, _, err = run(["entropy", env / "solid.extxyz", *OPTS, "--species", "Cu,Qq"], capsys)
    assert rc == 1 and err == "error: species: 'Qq' is not an element symbol\n"


def test_type_map_option(env, capsys):
    atoms = cu_frames(2)
    lines = []
    for step, a in enumerate(atoms):
        lines += [
            "ITEM: TIMESTEP",
            str(step),
            "ITEM: NUMBER OF ATOMS",
            str(len(a)),
            "ITEM: BOX BOUNDS pp pp pp",
            "0 7.22",
            "0 7.22",
            "0 7.22",
            "ITEM: ATOMS id type x y z",
        ]
        lines += [f"{i + 1} {1 + i % 2} {p[0]} {p[1]} {p[2]}" for i, p in enumerate(a.positions)]
    dump = env / "md.lammpstrj"
    dump.write_text("\n".join(lines) + "\n")
    rc, _, err = run(
        [
            "descriptors",
            dump,
            *OPTS,
            "--type-map",
            "Cu,Ni",
            "--species",
            "Cu,Ni",
            "-o",
            env / "m.npy",
        ],
        capsys,
    )
    assert rc == 0, err
    structs = read_structures(dump, type_map="Cu,Ni")
    np.testing.assert_allclose(
        np.load(env / "m.npy"), qc.descriptors(structs, k=K, cutoff=CUTOFF, species=["Cu", "Ni"])
    )
    assert np.load(env / "m.npy").shape == (64, 3 * (2 * K - 1))
    rc, _, err = run(["descriptors", dump, *OPTS, "--type-map", "Cu"], capsys)
    assert rc == 1 and "type(s) [2] missing from the type map" in err


# --------------------------------------------------------------------- serve


def test_serve_hands_over_to_dashboard(monkeypatch):
    calls = []
    fake = types.ModuleType("dashboard.launch")
    fake.main = lambda argv: calls.append(argv) or 7
    monkeypatch.setitem(sys.modules, "dashboard.launch", fake)
    assert main(["serve", "--port", "5999", "--no-show"]) == 7
    assert main(["--debug", "serve"]) == 7
    assert calls == [["--port", "5999", "--no-show"], []]


def test_cli_does_not_import_the_dashboard():
    code = "import sys, quests_core.cli; print(any(m.startswith('dashboard') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_console_script_runs(env):
    exe = Path(sys.executable).parent / "quests-dashboard"
    if not exe.exists():
        pytest.skip("quests-dashboard console script not installed in this environment")
    missing = env / "missing.extxyz"
    proc = subprocess.run(
        [str(exe), "entropy", str(missing), "--no-progress"],
        capture_output=True,
        text=True,
        env={"QUESTS_CACHE_DIR": str(env / "cache"), "PATH": "/usr/bin"},
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: {missing}: file not found"


# --------------------------------------------------------------- sample data


def _sample(name: str) -> Path:
    path = SAMPLE / name
    if not path.exists():
        pytest.skip(f"sample_data/{name} is not in the repository yet")
    return path


def test_sample_trajectory(env, capsys):
    path = _sample("cu_melt.extxyz")
    step = max(1, count_frames(path) // 8)  # about 8 frames keep the test fast
    rc, _, err = run(
        ["trajectory", path, "--index", f"::{step}", "--no-progress", "-o", env / "melt.csv"],
        capsys,
    )
    assert rc == 0, err
    table = pd.read_csv(env / "melt.csv")
    assert len(table) >= 2
    assert table["frac_novel"].iloc[0] == 0.0
    assert ((table["frac_novel"] >= 0) & (table["frac_novel"] <= 1)).all()
    assert (table["H"] <= np.log(table["n_atoms"]) + 1e-9).all()


def test_sample_labelled_overlap(env, capsys):
    path = _sample("cu_dataset_labelled.extxyz")
    index = "::3"  # a third of the frames keeps the test fast
    rc, _, err = run(
        [
            "overlap",
            path,
            "--by",
            "label",
            "--index",
            index,
            "-k",
            "16",
            "--no-progress",
            "-o",
            env / "labels.json",
        ],
        capsys,
    )
    assert rc == 0, err
    summary = json.loads((env / "labels.json").read_text())["summary"]
    labels = sorted({atoms.info["label"] for atoms in read_structures(path, index=index)})
    assert sorted(summary["labels"]) == labels
    np.testing.assert_array_equal(np.diag(np.asarray(summary["matrix"])), 1.0)


def test_sample_failed_simulation_and_generations(env, capsys):
    """A batch over the sample files: every file is either processed or reported on one
    line naming it (the failed run's last frames may be unphysical)."""
    names = ["cu_solid_400K.extxyz", "cu_failed_simulation.extxyz", "cu_generations.extxyz"]
    paths = [_sample(n) for n in names]
    rc, out, err = run(
        [
            "entropy",
            *paths,
            "--index",
            "::7",
            "-k",
            "16",
            "--skip-bad",
            "--no-progress",
            "-o",
            env / "batch.json",
        ],
        capsys,
    )
    assert rc == 0, err
    payload = json.loads((env / "batch.json").read_text())
    done = {r["group"] for r in payload["rows"]}
    skipped = payload["summary"].get("skipped", [])
    assert done | {Path(s["file"]).name for s in skipped} == set(names)
    for s in skipped:
        assert "\n" not in s["error"] and Path(s["file"]).name in s["error"]
    for r in payload["rows"]:
        assert 0.0 <= r["H"] <= r["log_n"] + 1e-9
    rc, _, err = run(
        [
            "overlap",
            paths[2],
            "--by",
            "generation",
            "--index",
            "::3",
            "-k",
            "16",
            "--no-progress",
            "-o",
            env / "gen.csv",
        ],
        capsys,
    )
    assert rc == 0, err
    m = pd.read_csv(env / "gen.csv", index_col=0)
    assert list(m.index) == sorted(m.index) and m.shape[0] >= 2
    np.testing.assert_array_equal(np.diag(m.to_numpy()), 1.0)


def test_learning_curve_refuses_an_asymptote_above_log_n(env, capsys, monkeypatch):
    """A fit whose asymptote is above log n (seen: 15.3 nats for 2,160 environments of a
    solid with H = 0.95) is reported as no reliable fit, with no gap column."""
    from quests_core.learning import AsymptoteFit

    def overshoot(sizes, entropies, drop=3):
        sizes = np.asarray(sizes, dtype=float)
        return AsymptoteFit(a=15.3, b=14.0, c=0.01, sizes=sizes,
                            gap=15.3 - np.asarray(entropies, dtype=float),
                            used=np.ones(len(sizes), dtype=bool), a_err=1.0)

    monkeypatch.setattr(qc, "fit_asymptote", overshoot)
    rc, _, err = run(["learning-curve", env / "solid.extxyz", *OPTS, "--sizes", "10,20,40,80",
                      "--repeats", "2", "-o", env / "lc_bad.json"], capsys)
    assert rc == 0, err
    payload = json.loads((env / "lc_bad.json").read_text())
    n = payload["summary"]["environments"]
    assert payload["summary"]["fit"] == (f"no reliable fit: asymptote a = 15.3 nats is above "
                                         f"log n = {np.log(n):.4g}")
    assert "asymptote_a" not in payload["summary"]
    assert "gap" not in pd.DataFrame(payload["rows"]).columns
