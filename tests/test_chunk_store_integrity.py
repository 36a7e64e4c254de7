"""Chunk-store parts are checked by BLAKE2b digest (issue "Nothing lost and nothing silent", 7).

Same-size changes of part files (bytes flipped in an atoms part, two frame
parts of equal size swapped) are refused naming the part, on reading and on
resuming; malformed manifests are one line naming the manifest; stores of
version 1 (no digests) are still read and, resumed, computed again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.io import write
from conftest import noisy_cu

import quests_core as qc
from quests_core import QuestsError
from quests_core.chunk_store import STORE_VERSION, ChunkStore, part_digest, read_atoms_dask
from quests_core.chunked import chunked_delta_entropy

ROOT = Path(__file__).resolve().parents[1]
N_FRAMES = 6


@pytest.fixture(scope="module")
def traj(tmp_path_factory) -> Path:
    """Six frames of 32 atoms: every frames part has one row per frame, the same size."""
    path = tmp_path_factory.mktemp("traj") / "cu.extxyz"
    frames = []
    for i in range(N_FRAMES):
        atoms = noisy_cu((2, 2, 2), noise=0.03 + 0.02 * i, seed=i)
        atoms.info["time"] = 0.5 * i
        frames.append(atoms)
    write(path, frames, format="extxyz")
    return path


@pytest.fixture(scope="module")
def reference():
    return qc.descriptors(noisy_cu((2, 2, 2), noise=0.05, seed=99))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, traj, reference) -> Path:
    store = tmp_path_factory.mktemp("pristine") / "store"
    chunked_delta_entropy(traj, reference, store, chunk_frames=2)
    return store


@pytest.fixture()
def store(tmp_path, pristine) -> Path:
    copy = tmp_path / "store"
    shutil.copytree(pristine, copy)
    return copy


def _manifest(store: Path) -> dict:
    return json.loads((store / "manifest.json").read_text())


def _flip_8_bytes_of_dh(part: Path) -> None:
    """Flip 8 bytes in the middle of a dH value of the atoms part (same size, readable)."""
    import pyarrow.parquet as pq

    table = pq.read_table(part)
    dh = table.column("dH").to_numpy()
    raw = bytearray(part.read_bytes())
    at = raw.find(dh[5:7].tobytes())
    assert at > 0
    raw[at : at + 8] = (np.frombuffer(bytes(raw[at : at + 8]), "<f8") + 0.5).tobytes()
    part.write_bytes(bytes(raw))


def test_manifest_records_a_digest_per_part(pristine):
    manifest = _manifest(pristine)
    assert manifest["version"] == STORE_VERSION == 2
    for record in manifest["chunks"].values():
        assert set(record["blake2b"]) == set(record["files"])
        for rel, digest in record["blake2b"].items():
            assert digest == part_digest(pristine / rel) and len(digest) == 64


def test_flipped_bytes_in_an_atoms_part_are_refused_naming_it(store, traj, reference):
    exact = ChunkStore(store).delta_entropy()
    part = store / "atoms/part-000-000001.parquet"
    size = part.stat().st_size
    _flip_8_bytes_of_dh(part)
    assert part.stat().st_size == size
    # the damage is silent to Parquet: the part still reads, with another dH
    import pandas as pd

    assert not np.array_equal(pd.read_parquet(part)["dH"], exact[64:128])
    message = (f"{store}: part atoms/part-000-000001.parquet changed after it was written "
               "(its BLAKE2b digest differs from the manifest's); the store must be recomputed "
               "(overwrite it)")
    for read in (lambda s: s.atoms(), lambda s: s.delta_entropy(), read_atoms_dask):
        with pytest.raises(QuestsError) as info:
            read(ChunkStore(store))
        assert str(info.value) == message
    with pytest.raises(QuestsError) as info:
        chunked_delta_entropy(traj, reference, store, chunk_frames=2)
    assert str(info.value) == (
        f"{store}: refusing to resume: part atoms/part-000-000001.parquet changed (its BLAKE2b "
        "digest differs from the manifest's); overwrite the store (overwrite=True; --overwrite "
        "in the CLI) or use another"
    )
    run = chunked_delta_entropy(traj, reference, store, chunk_frames=2, overwrite=True)
    np.testing.assert_array_equal(run.store.delta_entropy(), exact)


def test_swapped_equal_size_frame_parts_are_refused(store, traj, reference):
    """Two frame parts swapped, the manifest's sizes matching them (as for two parts of
    equal size): a size check passes and the per-frame table would be in the wrong order."""
    ra, rb = "frames/part-000-000000.parquet", "frames/part-000-000002.parquet"
    a, b = store / ra, store / rb
    first, last = a.read_bytes(), b.read_bytes()
    a.write_bytes(last)
    b.write_bytes(first)

    def sizes_of_the_swapped_files(m):
        m["chunks"]["000-000000"]["files"][ra] = len(last)
        m["chunks"]["000-000002"]["files"][rb] = len(first)

    _set(store, sizes_of_the_swapped_files)
    with pytest.raises(QuestsError, match=r"part frames/part-000-000000.parquet changed after "):
        ChunkStore(store).frames()
    with pytest.raises(QuestsError, match=r"refusing to resume: part frames/part-000-000000"):
        chunked_delta_entropy(traj, reference, store, chunk_frames=2)
    assert len(ChunkStore(store).atoms()) == N_FRAMES * 32  # the atoms parts are intact
    # what a size-only check (a store of version 1) lets through: frames out of order

    def to_version_1(m):
        m["version"] = 1
        for record in m["chunks"].values():
            record.pop("blake2b")

    _set(store, to_version_1)
    assert ChunkStore(store).frames()["frame"].tolist() == [4, 5, 2, 3, 0, 1]


def _cli_store(traj: Path, ref: Path, store: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, QUESTS_BACKEND="numba", NUMBA_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "quests_core.cli", "dh", str(traj), "--reference", str(ref),
         "--store", str(store), "--no-progress", "--no-cache", "--chunk-frames", "2"],
        capture_output=True, text=True, timeout=120, env=env, cwd=ROOT,
    )


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.mark.timeout(300)
def test_cli_byte_flip_in_a_frames_part_and_list_chunks_are_one_line(tmp_path, traj):
    ref, store = tmp_path / "ref.extxyz", tmp_path / "store"
    write(ref, noisy_cu((2, 2, 2), noise=0.05, seed=99))
    first = _cli_store(traj, ref, store)
    assert first.returncode == 0, first.stderr
    part = store / "frames/part-000-000001.parquet"
    raw = bytearray(part.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    part.write_bytes(bytes(raw))
    assert _one_error_line(_cli_store(traj, ref, store)) == (
        f"error: {store}: refusing to resume: part frames/part-000-000001.parquet changed (its "
        "BLAKE2b digest differs from the manifest's); overwrite the store (overwrite=True; "
        "--overwrite in the CLI) or use another"
    )
    with pytest.raises(QuestsError, match=r"part frames/part-000-000001.parquet changed"):
        ChunkStore(store).frames()
    _set(store, lambda m: m.__setitem__("chunks", list(m["chunks"])))
    assert _one_error_line(_cli_store(traj, ref, store)) == (
        f"error: {store / 'manifest.json'}: malformed manifest: chunks is list, not an object "
        "of chunk records"
    )


def _set(path: Path, edit) -> None:
    manifest = _manifest(path)
    edit(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda m: m.__setitem__("chunks", list(m["chunks"])), "chunks is list, not an object"),
        (lambda m: m.__setitem__("chunks", None), "chunks is NoneType, not an object"),
        (lambda m: m.pop("chunks"), "chunks is NoneType, not an object"),
        (lambda m: m.pop("params"), "params is missing or not an object"),
        (lambda m: m.__setitem__("plan", "000-000000"), "plan is not a list of chunk ids"),
        (lambda m: m["chunks"].__setitem__("000-000001", [1, 2]),
         "chunk 000-000001 is list, not an object"),
        (lambda m: m["chunks"]["000-000001"].pop("n_atoms"), "chunk 000-000001 lacks n_atoms"),
        (lambda m: m["chunks"]["000-000001"].pop("blake2b"), "chunk 000-000001 lacks blake2b"),
        (lambda m: m["chunks"]["000-000001"].__setitem__("n_atoms", "64"),
         "chunk 000-000001: n_atoms is '64', not a count"),
        (lambda m: m["chunks"]["000-000001"].__setitem__("files", ["atoms/x.parquet"]),
         "chunk 000-000001: files is list"),
        (lambda m: m["chunks"]["000-000001"]["files"].__setitem__(
            "atoms/part-000-000001.parquet", None),
         "chunk 000-000001: part 'atoms/part-000-000001.parquet' has size None"),
        (lambda m: m["chunks"]["000-000001"]["files"].__setitem__("../../etc/passwd", 1),
         "part '../../etc/passwd' is outside the store"),
        (lambda m: m["chunks"]["000-000001"]["blake2b"].popitem(),
         "chunk 000-000001: blake2b does not list one digest per part"),
        (lambda m: m.__setitem__("version", 7), "chunk store version 7, this code reads 1 and 2"),
    ],
)
def test_malformed_manifest_is_one_line_naming_it(store, traj, reference, edit, problem):
    _set(store, edit)
    for action in (lambda: ChunkStore(store).atoms(),
                   lambda: chunked_delta_entropy(traj, reference, store, chunk_frames=2)):
        with pytest.raises(QuestsError) as info:
            action()
        text = str(info.value)
        assert text.startswith(f"{store / 'manifest.json'}: ") and "\n" not in text, text
        assert problem in text, text


def test_store_of_version_1_is_read_and_recomputed_on_resume(store, traj, reference):
    """A store written before the digests: read (parts checked by size), resumed by
    computing its chunks again; the bundled sample store is one."""
    exact = ChunkStore(store).delta_entropy()

    def to_version_1(m):
        m["version"] = 1
        for record in m["chunks"].values():
            record.pop("blake2b")

    _set(store, to_version_1)
    old = ChunkStore(store)
    np.testing.assert_array_equal(old.delta_entropy(), exact)
    part = store / "atoms/part-000-000000.parquet"
    part.write_bytes(part.read_bytes()[:-10])
    with pytest.raises(QuestsError, match=r"part atoms/part-000-000000.parquet has another size"):
        ChunkStore(store).atoms()
    run = chunked_delta_entropy(traj, reference, store, chunk_frames=2)
    assert run.skipped == [] and len(run.computed) == 3
    assert _manifest(store)["version"] == 2
    np.testing.assert_array_equal(run.store.delta_entropy(), exact)


def test_bundled_version_1_store_still_reads():
    path = ROOT / "sample_data" / "cu_failed_simulation_store"
    if not (path / "manifest.json").exists():
        pytest.skip("no bundled store")
    store = ChunkStore(path)
    assert store.manifest["version"] in (1, 2)
    assert len(store.delta_entropy()) == store.n_atoms > 0
