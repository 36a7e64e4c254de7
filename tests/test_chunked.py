"""Out-of-core chunked dH: equality with the in-memory path, resume, atomicity, parameters."""

from __future__ import annotations

import json
import sys
import threading

import numpy as np
import pandas as pd
import pytest
from ase.io import read, write
from conftest import noisy_cu

import quests_core as qc
import quests_core.chunked as chunked
from quests_core import Cancelled, QuestsError
from quests_core.chunk_store import ChunkStore
from quests_core.chunked import chunked_delta_entropy, plan_chunks
from quests_core.dataset import ATOM_COLUMNS

N_FRAMES = 7


def assert_same_dh(actual, desired):
    """Equal up to the last bits: BLAS may round a GEMM of a 32-row chunk differently from
    the same rows inside a larger block (the per-row arithmetic is otherwise the same)."""
    np.testing.assert_allclose(actual, desired, rtol=1e-13, atol=1e-13)


def _trajectory(path, n_frames=N_FRAMES, seed0=0):
    frames = []
    for i in range(n_frames):
        atoms = noisy_cu((2, 2, 2), noise=0.03 + 0.02 * i, seed=seed0 + i)
        atoms.info["time"] = 0.5 * i
        frames.append(atoms)
    write(path, frames, format="extxyz")
    return path


@pytest.fixture(scope="module")
def traj(tmp_path_factory):
    return str(_trajectory(tmp_path_factory.mktemp("traj") / "cu.extxyz"))


@pytest.fixture(scope="module")
def reference():
    return qc.descriptors(noisy_cu((2, 2, 2), noise=0.05, seed=99))


@pytest.fixture(scope="module")
def in_memory(traj, reference):
    """dH of every atom, computed in one process from the same file."""
    frames = read(traj, ":")
    x = qc.descriptors(frames)
    return frames, x, qc.delta_entropy(x, reference, 0.015)


def _part_stats(store, ids):
    out = {}
    for cid in ids:
        for kind in ("atoms", "frames"):
            p = store / f"{kind}/part-{cid}.parquet"
            st = p.stat()
            out[str(p)] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return out


def test_plan_covers_selection_in_chunks(traj):
    files, plans = plan_chunks([traj], index="1::2", chunk_frames=2)
    assert files[0].n_frames == 3  # frames 1, 3, 5
    assert [(p.start, p.stop, p.step, p.n_frames) for p in plans] == [(1, 5, 2, 2), (5, 7, 2, 1)]
    assert [p.first_structure for p in plans] == [0, 2]
    with pytest.raises(QuestsError, match="chunk_frames"):
        plan_chunks([traj], chunk_frames=0)
    with pytest.raises(QuestsError, match="selects no frames"):
        plan_chunks([traj], index="50:")


def test_chunked_equals_in_memory(tmp_path, traj, reference, in_memory):
    frames, _, dh = in_memory
    calls = []
    run = chunked_delta_entropy(
        traj, reference, tmp_path / "store", chunk_frames=3, progress=lambda d, t: calls.append(d)
    )
    assert run.computed == ["000-000000", "000-000001", "000-000002"]
    assert run.skipped == [] and run.complete
    assert calls == [0, 3, 6, 7]
    store = run.store
    assert_same_dh(store.delta_entropy(), dh)
    atoms = store.atoms()
    sizes = [len(a) for a in frames]
    np.testing.assert_array_equal(atoms["structure"], np.repeat(np.arange(N_FRAMES), sizes))
    np.testing.assert_array_equal(atoms["atom"], np.concatenate([np.arange(n) for n in sizes]))
    np.testing.assert_array_equal(
        atoms[["x", "y", "z"]].to_numpy(), np.concatenate([a.positions for a in frames])
    )
    assert set(atoms["species"]) == {"Cu"}
    np.testing.assert_allclose(atoms["time"].unique(), 0.5 * np.arange(N_FRAMES))
    table = store.frames()
    np.testing.assert_array_equal(table["atom_offset"], np.cumsum([0] + sizes[:-1]))
    per_frame = np.split(dh, np.cumsum(sizes)[:-1])
    np.testing.assert_allclose(table["mean_dH"], [f.mean() for f in per_frame], rtol=1e-12)
    np.testing.assert_allclose(table["frac_novel"], [np.mean(f > 0) for f in per_frame])
    # noisier frames are less covered by the reference
    assert table["mean_dH"].iloc[-1] > table["mean_dH"].iloc[0]


def test_resume_after_interruption_skips_finished_chunks(
    tmp_path, traj, reference, in_memory, monkeypatch
):
    store = tmp_path / "store"

    def stop_after_two(done, total):
        if done >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        chunked_delta_entropy(traj, reference, store, chunk_frames=2, progress=stop_after_two)
    partial = ChunkStore(store)
    assert partial.chunk_ids == ["000-000000", "000-000001"] and not partial.complete
    assert len(partial.atoms()) == 4 * 32
    before = _part_stats(store, partial.chunk_ids)

    structures_seen = []

    class Counting(chunked.FrameDescriptors):
        def __init__(self, atoms, *args, **kw):
            structures_seen.append(atoms.info["time"])
            super().__init__(atoms, *args, **kw)

    monkeypatch.setattr(chunked, "FrameDescriptors", Counting)
    run = chunked_delta_entropy(traj, reference, store, chunk_frames=2)
    assert run.skipped == ["000-000000", "000-000001"]
    assert run.computed == ["000-000002", "000-000003"]
    assert structures_seen == [2.0, 2.5, 3.0]  # only the unfinished frames 4, 5, 6
    assert _part_stats(store, ["000-000000", "000-000001"]) == before
    assert_same_dh(run.store.delta_entropy(), in_memory[2])
    assert run.complete
    again = chunked_delta_entropy(traj, reference, store, chunk_frames=2)
    assert again.computed == [] and len(again.skipped) == 4


def test_crash_between_part_and_manifest_loses_only_that_chunk(
    tmp_path, traj, reference, in_memory, monkeypatch
):
    store = tmp_path / "store"
    real = chunked._write_manifest
    writes = []

    def failing(root, manifest):
        writes.append(len(manifest["chunks"]))
        if len(writes) == 3:  # initial manifest, chunk 0, then "killed" at chunk 1
            raise OSError("simulated crash")
        real(root, manifest)

    monkeypatch.setattr(chunked, "_write_manifest", failing)
    with pytest.raises(OSError, match="simulated crash"):
        chunked_delta_entropy(traj, reference, store, chunk_frames=3)
    monkeypatch.setattr(chunked, "_write_manifest", real)
    orphan = store / "atoms/part-000-000001.parquet"
    assert orphan.exists()  # written, but never recorded
    partial = ChunkStore(store)
    assert partial.chunk_ids == ["000-000000"]
    assert len(partial.atoms()) == 3 * 32
    run = chunked_delta_entropy(traj, reference, store, chunk_frames=3)
    assert run.computed == ["000-000001", "000-000002"]
    assert_same_dh(run.store.delta_entropy(), in_memory[2])


def test_missing_or_truncated_part_is_recomputed(tmp_path, traj, reference, in_memory):
    store = tmp_path / "store"
    chunked_delta_entropy(traj, reference, store, chunk_frames=3)
    (store / "frames/part-000-000002.parquet").unlink()
    part = store / "atoms/part-000-000000.parquet"
    part.write_bytes(part.read_bytes()[:100])
    run = chunked_delta_entropy(traj, reference, store, chunk_frames=3)
    assert run.computed == ["000-000000", "000-000002"]
    assert_same_dh(run.store.delta_entropy(), in_memory[2])


def test_cancel_keeps_finished_chunks(tmp_path, traj, reference):
    store = tmp_path / "store"
    event = threading.Event()

    def cancel_after_first(done, total):
        if done > 0:
            event.set()

    with pytest.raises(Cancelled):
        chunked_delta_entropy(
            traj, reference, store, chunk_frames=3, progress=cancel_after_first, cancel=event
        )
    assert ChunkStore(store).chunk_ids == ["000-000000"]


def test_saved_descriptors_of_another_layout_version_are_not_mixed(
    tmp_path, traj, reference, monkeypatch
):
    import quests_core.chunked as chunked

    store = tmp_path / "store"
    chunked_delta_entropy(traj, reference, store, chunk_frames=3, save_descriptors=True)
    monkeypatch.setattr(chunked, "DESCRIPTOR_VERSION", "999")
    with pytest.raises(QuestsError, match=r"other parameters \(descriptor_version"):
        chunked_delta_entropy(traj, reference, store, chunk_frames=3, save_descriptors=True)
    # a store without saved descriptors does not depend on the layout
    plain = tmp_path / "plain"
    chunked_delta_entropy(traj, reference, plain, chunk_frames=3)
    monkeypatch.setattr(chunked, "DESCRIPTOR_VERSION", "1000")
    chunked_delta_entropy(traj, reference, plain, chunk_frames=3)


def test_parameter_mismatch_raises_and_overwrite_restarts(tmp_path, traj, reference):
    store = tmp_path / "store"
    chunked_delta_entropy(traj, reference, store, chunk_frames=3)
    with pytest.raises(QuestsError, match=r"other parameters \(h: 0.015 -> 0.02\)"):
        chunked_delta_entropy(traj, reference, store, 0.02, chunk_frames=3)
    with pytest.raises(QuestsError, match="chunk_frames: 3 -> 2"):
        chunked_delta_entropy(traj, reference, store, chunk_frames=2)
    with pytest.raises(QuestsError, match="reference"):
        chunked_delta_entropy(traj, reference[:-1], store, chunk_frames=3)
    with pytest.raises(QuestsError, match="precision"):
        chunked_delta_entropy(traj, reference, store, chunk_frames=3, precision="float32")
    run = chunked_delta_entropy(traj, reference, store, 0.02, chunk_frames=2, overwrite=True)
    assert len(run.computed) == 4
    assert json.loads((store / "manifest.json").read_text())["params"]["h"] == 0.02
    assert not (store / "atoms/part-000-000000.parquet").read_bytes() == b""


def test_changed_input_file_is_a_parameter_mismatch(tmp_path, reference):
    path = _trajectory(tmp_path / "t.extxyz", n_frames=3)
    store = tmp_path / "store"
    chunked_delta_entropy(path, reference, store, chunk_frames=2)
    _trajectory(path, n_frames=3, seed0=50)
    with pytest.raises(QuestsError, match="files"):
        chunked_delta_entropy(path, reference, store, chunk_frames=2)


def test_bad_inputs_raise_quests_error(tmp_path, traj, reference):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(QuestsError, match="no manifest.json"):
        chunked_delta_entropy(traj, reference, tmp_path / "busy")
    with pytest.raises(QuestsError, match="columns"):
        chunked_delta_entropy(traj, reference[:, :10], tmp_path / "s1")
    with pytest.raises(QuestsError, match="one bandwidth"):
        chunked_delta_entropy(traj, reference, tmp_path / "s2", [0.01, 0.02])
    with pytest.raises(QuestsError, match="file not found"):
        chunked_delta_entropy(tmp_path / "missing.extxyz", reference, tmp_path / "s3")
    with pytest.raises(QuestsError, match="not a chunk store"):
        ChunkStore(tmp_path / "busy")


def test_two_files_with_selection_and_descriptors(tmp_path, traj, reference):
    other = _trajectory(tmp_path / "other.extxyz", n_frames=4, seed0=20)
    run = chunked_delta_entropy(
        [traj, other],
        reference,
        tmp_path / "store",
        index="::2",
        chunk_frames=3,
        save_descriptors=True,
        label="md",
    )
    assert run.computed == ["000-000000", "000-000001", "001-000000"]
    table = run.store.frames()
    assert table["structure"].tolist() == list(range(6))
    assert table["frame"].tolist() == [0, 2, 4, 6, 0, 2]
    assert table["source"].tolist() == [traj] * 4 + [str(other)] * 2
    assert set(table["label"]) == {"md"}
    wanted = read(traj, "::2") + read(other, "::2")
    x = qc.descriptors(wanted)
    np.testing.assert_array_equal(run.store.descriptors(), x)
    assert_same_dh(run.store.delta_entropy(), qc.delta_entropy(x, reference))


def test_frames_split_into_atom_blocks_give_the_same_store(tmp_path, traj, reference):
    """block_atoms smaller than a frame: same tables and descriptors, one row group per
    block, and the store can resume with another block size (it is not a parameter)."""
    import pyarrow.parquet as pq

    whole = chunked_delta_entropy(traj, reference, tmp_path / "whole", chunk_frames=3,
                                  save_descriptors=True)
    split = chunked_delta_entropy(traj, reference, tmp_path / "split", chunk_frames=3,
                                  save_descriptors=True, block_atoms=7)
    pd.testing.assert_frame_equal(split.store.atoms(), whole.store.atoms())
    pd.testing.assert_frame_equal(split.store.frames(), whole.store.frames())
    np.testing.assert_array_equal(split.store.descriptors(), whole.store.descriptors())
    first = split.store.part_paths("atoms")[0]
    assert pq.ParquetFile(first).num_row_groups == 3 * 5  # 3 frames of 32 atoms, blocks of 7
    again = chunked_delta_entropy(traj, reference, tmp_path / "split", chunk_frames=3,
                                  save_descriptors=True, block_atoms=1000)
    assert again.computed == [] and len(again.skipped) == 3
    with pytest.raises(QuestsError, match="block_atoms must be an integer >= 1"):
        chunked_delta_entropy(traj, reference, tmp_path / "bad", block_atoms=0)


def test_descriptor_error_names_file_and_frame(tmp_path, reference):
    frames = [noisy_cu((2, 2, 2), noise=0.03, seed=i) for i in range(3)]
    frames[2][5].symbol = "Au"
    path = tmp_path / "alloy.extxyz"
    write(path, frames, format="extxyz")
    width = qc.descriptors(frames[0], species=["Cu", "Ni"]).shape[1]
    ref = np.zeros((4, width))
    with pytest.raises(QuestsError) as info:
        chunked_delta_entropy(path, ref, tmp_path / "store", species=["Cu", "Ni"])
    assert str(info.value) == (
        f"{path}: frame 2: species ['Au'] not in the species list ['Cu', 'Ni']"
    )
    del reference


def test_float32_store_within_tolerance(tmp_path, traj, reference, in_memory):
    run = chunked_delta_entropy(
        traj, reference, tmp_path / "store", chunk_frames=4, precision="float32"
    )
    dh32 = run.store.delta_entropy()
    assert np.max(np.abs(dh32 - in_memory[2])) <= 1e-3
    assert not np.array_equal(dh32, in_memory[2])  # really the float32 path


def test_store_without_positions(tmp_path, traj, reference):
    run = chunked_delta_entropy(traj, reference, tmp_path / "store", positions=False)
    atoms = run.store.atoms()
    assert list(atoms.columns) == [*ATOM_COLUMNS[:6], "dH"]  # up to "atom": no species, x, y, z
    assert isinstance(run.store.frames(), pd.DataFrame)


def test_works_without_dask(tmp_path, traj, reference, monkeypatch):
    for name in ("dask", "distributed", "dask.dataframe"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
    import quests_core.distributed as qd

    run = chunked_delta_entropy(traj, reference, tmp_path / "store", chunk_frames=4)
    assert run.complete and run.store.n_atoms == N_FRAMES * 32
    with pytest.raises(QuestsError, match="needs dask"):
        qd.dask_delta_entropy(reference, reference)
    with pytest.raises(QuestsError, match="needs dask"):
        run.store.atoms_dask()


def test_opening_a_store_removes_leftover_temporary_files(tmp_path, traj, reference):
    """A run killed mid-chunk leaves ``atoms/.part-*.parquet.*.tmp``: opening or resuming
    the store removes leftovers of dead writers and old ones of writers it cannot check,
    never a live writer's or a recent one of an unknown writer."""
    import os
    import subprocess
    import time

    store = tmp_path / "store"
    chunked_delta_entropy(traj, reference, store, chunk_frames=3)
    # a writer killed like SIGKILL inside _atomic_path
    script = (
        "import os\nfrom quests_core.atomic import atomic_path as _atomic_path\n"
        f"cm = _atomic_path({str(store / 'atoms/part-000-000009.parquet')!r})\n"
        "tmp = cm.__enter__(); tmp.write_bytes(b'partial')\n"
        "print(tmp.name, os.getpid(), flush=True); os._exit(9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    name, pid = proc.stdout.split()
    dead = store / "atoms" / name
    assert dead.exists() and f"-{pid}." in dead.name
    hour_ago = time.time() - 3600
    old = store / "frames/.part-000-000001.parquet.x1y2z3w4.tmp"  # an older name: no writer
    old.write_bytes(b"x")
    os.utime(old, (hour_ago, hour_ago))
    old_manifest = store / ".manifest.json.abcdefgh.tmp"
    old_manifest.write_text("{")
    os.utime(old_manifest, (hour_ago, hour_ago))
    fresh = store / "atoms/.part-000-000002.parquet.x1y2z3w4.tmp"  # maybe a live remote writer
    fresh.write_bytes(b"x")
    remote = store / "atoms/.part-000-000003.parquet.00000000-7.x1y2z3w4.tmp"
    remote.write_bytes(b"x")
    with chunked._atomic_path(store / "atoms/part-000-000004.parquet") as live:
        live.write_bytes(b"live writer")  # this process: alive
        opened = ChunkStore(store)
        assert live.exists()
    assert sorted(p.name for p in opened.removed_leftovers) == sorted(
        [dead.name, old.name, old_manifest.name])
    assert fresh.exists() and remote.exists()
    assert opened.complete and len(opened.atoms()) == N_FRAMES * 32
    # resuming removes them too (here: the recent one once it is old)
    os.utime(fresh, (hour_ago, hour_ago))
    run = chunked_delta_entropy(traj, reference, store, chunk_frames=3)
    assert run.computed == [] and not fresh.exists() and remote.exists()
