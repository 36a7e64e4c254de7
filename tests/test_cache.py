"""Tests of quests_core.cache: keys, atomic writes, corruption handling, streaming."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
from ase.io import write
from conftest import cu_frames

from quests_core.cache import DescriptorCache, default_cache_dir
from quests_core.cache_keys import checksum_bytes, descriptor_key, structures_digest
from quests_core.dataset import Dataset
from quests_core.errors import QuestsError
from quests_core.pipeline import dataset_descriptors, file_descriptors


class FakeCompute:
    """Stands in for quests_core.descriptors: rows = [x, y, z, Z, k, cutoff]; counts calls."""

    def __init__(self):
        self.calls = 0
        self.atoms_seen = 0

    def __call__(self, structures, k, cutoff, species=None):
        self.calls += 1
        rows = []
        for atoms in structures:
            n = len(atoms)
            self.atoms_seen += n
            rows.append(
                np.column_stack([atoms.positions, atoms.numbers, np.full(n, k), np.full(n, cutoff)])
            )
        return np.concatenate(rows)


def expected_rows(frames, k, cutoff):
    return FakeCompute()(frames, k, cutoff)


@pytest.fixture()
def cache(tmp_path):
    return DescriptorCache(tmp_path / "cache")


def tmp_files(cache: DescriptorCache) -> list[str]:
    return [p.name for p in cache.directory.rglob("*.tmp")]


def test_default_dir_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("QUESTS_CACHE_DIR", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x"
    assert DescriptorCache().directory == tmp_path / "x"
    monkeypatch.delenv("QUESTS_CACHE_DIR")
    assert default_cache_dir().parts[-2:] == (".cache", "quests-dashboard")


def test_put_get_round_trip(cache):
    rng = np.random.default_rng(0)
    a = rng.random((50, 7))
    cache.put("k1", a)
    got = cache.get("k1")
    np.testing.assert_array_equal(got, a)
    assert got.flags.writeable and got.flags.c_contiguous
    f32 = rng.random((9, 3)).astype(np.float32)
    cache.put("k2", f32)
    got = cache.get("k2", mmap=True)
    assert isinstance(got, np.memmap) and got.dtype == np.float32 and not got.flags.writeable
    np.testing.assert_array_equal(got, f32)
    # the entry is a plain .npy file
    np.testing.assert_array_equal(np.load(cache.directory / "descriptors" / "k1.npy"), a)
    assert cache.get("missing") is None
    assert cache.entries() == ["k1", "k2"]


def test_streaming_writer_matches_concatenation(cache):
    blocks = [np.full((n, 4), float(n)) for n in (3, 5, 1)]
    with cache.writer("w", dtype=np.float64) as writer:
        for b in blocks:
            writer.append(b)
    np.testing.assert_array_equal(cache.get("w"), np.concatenate(blocks))
    with pytest.raises(ValueError, match="columns"):
        with cache.writer("w2", dtype=np.float64) as writer:
            writer.append(np.zeros((2, 4)))
            writer.append(np.zeros((2, 5)))
    assert cache.get("w2") is None
    assert tmp_files(cache) == []


def test_keys():
    frames = cu_frames(2)
    digest = structures_digest(frames)
    assert digest == structures_digest([a.copy() for a in frames])
    moved = [a.copy() for a in frames]
    moved[1].positions[0, 0] += 1e-9
    assert structures_digest(moved) != digest
    nopbc = [a.copy() for a in frames]
    nopbc[0].pbc = [True, True, False]
    assert structures_digest(nopbc) != digest
    base = descriptor_key(digest, 32, 5.0, None, version="1")
    assert base == descriptor_key(digest, 32, 5, None, version="1")
    others = {
        descriptor_key(digest, 16, 5.0, None, version="1"),
        descriptor_key(digest, 32, 4.5, None, version="1"),
        descriptor_key(digest, 32, 5.0, ["Cu"], version="1"),
        descriptor_key(digest, 32, 5.0, None, dtype=np.float32, version="1"),
        descriptor_key(digest, 32, 5.0, None, version="2"),
    }
    assert base not in others and len(others) == 5
    # species order does not matter (the descriptor sorts them)
    assert descriptor_key(digest, 32, 5.0, ["Ni", "Cu"], version="1") == descriptor_key(
        digest, 32, 5.0, "Cu,Ni", version="1"
    )


def test_get_or_compute_hits(cache):
    frames = cu_frames(3)
    fake = FakeCompute()
    x1 = cache.get_or_compute(frames, k=8, cutoff=4.0, compute=fake)
    x2 = cache.get_or_compute([a.copy() for a in frames], k=8, cutoff=4.0, compute=fake)
    assert fake.calls == 1
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(x1, expected_rows(frames, 8, 4.0))
    cache.get_or_compute(frames, k=9, cutoff=4.0, compute=fake)
    assert fake.calls == 2
    assert (cache.hits, cache.misses) == (1, 2)


def test_compute_with_structures_only(cache):
    frames = cu_frames(2)
    seen = []

    def compute(structures):  # parameters bound by the caller
        seen.append(len(structures))
        return FakeCompute()(structures, 5, 2.0)

    x = cache.get_or_compute(frames, k=5, cutoff=2.0, compute=compute)
    np.testing.assert_array_equal(x, expected_rows(frames, 5, 2.0))
    assert seen == [2]
    with pytest.raises(ValueError, match="compute returned shape"):
        cache.get_or_compute(frames, k=6, cutoff=2.0, compute=lambda s: np.zeros((3, 2)))
    assert len(cache.entries()) == 1


@pytest.mark.parametrize(
    "damage", ["flip", "truncate", "no_meta", "no_data", "bad_meta", "header", "grown"]
)
def test_corrupt_entries_are_recomputed(cache, damage):
    frames = cu_frames(2)
    fake = FakeCompute()
    x = cache.get_or_compute(frames, k=4, cutoff=3.0, compute=fake)
    (key,) = cache.entries()
    data = cache.directory / "descriptors" / f"{key}.npy"
    meta = cache.directory / "descriptors" / f"{key}.json"
    if damage == "flip":
        raw = bytearray(data.read_bytes())
        raw[-3] ^= 0xFF
        data.write_bytes(bytes(raw))
    elif damage == "truncate":
        data.write_bytes(data.read_bytes()[:-16])
    elif damage == "no_meta":  # killed between the two renames
        meta.unlink()
    elif damage == "no_data":
        data.unlink()
    elif damage == "header":  # same size, same data, another shape in the header
        raw = data.read_bytes()
        assert b"(64, 6)" in raw[:128]
        data.write_bytes(raw.replace(b"(64, 6)", b"(32, 6)", 1))
    elif damage == "grown":
        data.write_bytes(data.read_bytes() + b"\0" * 8)
    else:
        meta.write_text("{not json")
    assert cache.get(key) is None
    assert not meta.exists()
    again = cache.get_or_compute(frames, k=4, cutoff=3.0, compute=fake)
    assert fake.calls == 2
    np.testing.assert_array_equal(again, x)
    np.testing.assert_array_equal(cache.get(key), x)


@pytest.mark.parametrize(
    ("verify", "detected"), [("checksum", True), ("sha256", True), (True, True), ("size", False)]
)
def test_verify_modes(tmp_path, verify, detected):
    cache = DescriptorCache(tmp_path / "c", verify=verify)
    cache.put("e", np.arange(4096, dtype=np.float64).reshape(-1, 8))
    data = cache.directory / "descriptors" / "e.npy"
    raw = bytearray(data.read_bytes())
    raw[1000] ^= 0x01  # one flipped bit, same size
    data.write_bytes(bytes(raw))
    assert (cache.get("e") is None) == detected
    with pytest.raises(ValueError, match="verify must be"):
        DescriptorCache(tmp_path, verify="maybe")


def test_checksum_bytes_sensitivity():
    rng = np.random.default_rng(3)
    data = rng.integers(0, 255, size=3 * 4096 + 5, dtype=np.uint8).tobytes()
    ref = checksum_bytes(data)
    assert checksum_bytes(bytes(data)) == ref and len(ref) == 64
    flipped = bytearray(data)
    flipped[5000] ^= 0x10
    swapped = data[4096:8192] + data[:4096] + data[8192:]
    zeroed = data[:4096] + bytes(4096) + data[8192:]
    tail = bytearray(data)
    tail[-1] ^= 0x01
    variants = [bytes(flipped), swapped, zeroed, bytes(tail), data[:-1], data + b"\0"]
    assert all(checksum_bytes(v) != ref for v in variants)


def test_killed_writer_leaves_no_entry(cache):
    """A process killed in the middle of a streaming write leaves no readable entry."""
    script = textwrap.dedent(
        f"""
        import os, numpy as np
        from quests_core.cache import DescriptorCache
        cache = DescriptorCache({str(cache.directory)!r})
        writer = cache.writer("killed", dtype=np.float64)
        writer.append(np.ones((1000, 8)))
        writer._fd.flush()
        os._exit(9)   # no cleanup, like SIGKILL
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    assert len(tmp_files(cache)) == 1  # the partial temp file is there ...
    assert cache.get("killed") is None  # ... but no entry
    assert "killed" not in cache.entries()
    cache.put("killed", np.zeros((2, 2)))
    np.testing.assert_array_equal(cache.get("killed"), 0.0)
    assert cache.clear() >= 3
    assert cache.entries() == [] and tmp_files(cache) == []


def test_tables(cache):
    table = pd.DataFrame({"structure": [0, 0, 1], "dH": [0.5, -1.0, 2.0], "label": list("aab")})
    path = cache.put_table("t", table)
    assert path.suffix == ".parquet"
    pd.testing.assert_frame_equal(cache.get_table("t"), table)
    pd.testing.assert_frame_equal(pd.read_parquet(path), table)
    path.write_bytes(path.read_bytes()[:20])
    assert cache.get_table("t") is None
    assert cache.entries("tables") == []


def test_file_descriptors_cached_and_identical(cache, tmp_path):
    frames = cu_frames(5)
    path = tmp_path / "traj.extxyz"
    write(path, frames)
    fake = FakeCompute()
    first = file_descriptors(
        path, k=6, cutoff=3.5, compute=fake, cache=cache, chunk_atoms=70, index="1:"
    )
    assert not first.from_cache
    assert fake.calls == 2  # 4 frames of 32 atoms in chunks of at most 70 atoms
    np.testing.assert_allclose(first.descriptors, expected_rows(frames[1:], 6, 3.5), atol=1e-6)
    assert list(first.dataset.frames["frame"]) == [1, 2, 3, 4]
    assert first.dataset.is_lazy and first.dataset.n_atoms == 128

    def boom(*args, **kwargs):
        raise AssertionError("must not compute on a cache hit")

    second = file_descriptors(path, k=6, cutoff=3.5, compute=boom, cache=cache, index="1:")
    assert second.from_cache
    np.testing.assert_array_equal(second.descriptors, first.descriptors)
    pd.testing.assert_frame_equal(second.dataset.frames, first.dataset.frames)
    # the lazy dataset still reads the structures back from the file
    np.testing.assert_allclose(
        second.dataset.structure(0).positions, frames[1].positions, atol=1e-6
    )
    # same content under another name: cache hit, source column follows the new path
    copy = tmp_path / "copy.extxyz"
    copy.write_bytes(path.read_bytes())
    third = file_descriptors(copy, k=6, cutoff=3.5, compute=boom, cache=cache, index="1:")
    assert third.from_cache and set(third.dataset.frames["source"]) == {str(copy)}
    # another selection or other content is a miss
    assert not file_descriptors(path, k=6, cutoff=3.5, compute=fake, cache=cache).from_cache
    write(path, frames[:2])
    assert not file_descriptors(path, k=6, cutoff=3.5, compute=fake, cache=cache).from_cache


def test_file_descriptors_without_cache(tmp_path):
    frames = cu_frames(3)
    path = tmp_path / "a.traj"
    write(path, frames)
    res = file_descriptors(
        path, k=5, cutoff=3.0, compute=FakeCompute(), cache=None, label="md", time_step=0.2
    )
    assert res.key is None and not res.from_cache
    np.testing.assert_allclose(res.descriptors, expected_rows(frames, 5, 3.0))
    assert list(res.dataset.frames["label"]) == ["md"] * 3
    np.testing.assert_allclose(res.dataset.frames["time"], [0.0, 0.2, 0.4])


def test_bad_frame_leaves_cache_untouched(cache, tmp_path):
    frames = cu_frames(4)
    frames[2].positions[1] = np.nan
    path = tmp_path / "bad.extxyz"
    write(path, frames)
    with pytest.raises(QuestsError, match=r"bad.extxyz: frame 2: non-finite"):
        file_descriptors(path, k=4, cutoff=3.0, compute=FakeCompute(), cache=cache, chunk_atoms=32)
    assert cache.entries() == [] and cache.entries("tables") == []
    assert tmp_files(cache) == []


def test_dataset_descriptors(cache, tmp_path):
    frames = cu_frames(3)
    path = tmp_path / "a.extxyz"
    write(path, frames)
    lazy = Dataset.from_files(path, lazy=True)
    fake = FakeCompute()
    x = dataset_descriptors(lazy, 7, 4.0, compute=fake, cache=cache, chunk_atoms=40)
    assert fake.calls == 3
    np.testing.assert_allclose(x, expected_rows(frames, 7, 4.0), atol=1e-6)
    # a read of one file is keyed by the file: file_descriptors of it is a hit
    res = file_descriptors(path, k=7, cutoff=4.0, compute=fake, cache=cache)
    assert res.from_cache and fake.calls == 3
    np.testing.assert_array_equal(res.descriptors, x)
    # structures in memory are keyed by their content: one computation, then hits
    mem = Dataset.from_structures(lazy.structures)
    y = cache.get_or_compute(mem, k=7, cutoff=4.0, compute=fake)
    assert fake.calls == 4
    np.testing.assert_array_equal(x, y)
    z = cache.get_or_compute(Dataset.from_structures(lazy.structures), k=7, cutoff=4.0,
                             compute=fake)
    assert fake.calls == 4
    np.testing.assert_array_equal(x, z)
    sub = dataset_descriptors(mem.subset([2]), 7, 4.0, compute=fake, cache=None)
    np.testing.assert_array_equal(sub, x[64:])


def test_meta_records_parameters(cache):
    frames = cu_frames(1)
    cache.get_or_compute(frames, k=3, cutoff=2.5, species=["Cu"], compute=FakeCompute())
    (key,) = cache.entries()
    meta = json.loads((cache.directory / "descriptors" / f"{key}.json").read_text())
    assert meta["shape"] == [32, 6]
    assert meta["k"] == 3 and meta["cutoff"] == 2.5 and meta["species"] == ["Cu"]
    assert meta["size"] == os.path.getsize(cache.directory / "descriptors" / f"{key}.npy")


def test_opening_the_cache_removes_leftover_temporary_files(cache):
    """A writer killed mid-write leaves ``<key>.npy.*.tmp``; the next open removes it
    (its writer is dead), plus old leftovers of writers it cannot check, and keeps a
    concurrent writer's file and recent files of unknown writers."""
    script = textwrap.dedent(
        f"""
        import os, numpy as np
        from quests_core.cache import DescriptorCache
        writer = DescriptorCache({str(cache.directory)!r}).writer("killed", dtype=np.float64)
        writer.append(np.ones((100, 8)))
        writer._fd.flush()
        print(os.getpid(), flush=True)
        os._exit(9)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    [dead] = tmp_files(cache)
    assert dead.startswith("killed.npy.") and f"-{proc.stdout.strip()}." in dead  # its writer
    folder = cache.directory / "descriptors"
    old = folder / "old.npy.abcd1234.tmp"  # an older name: no writer in it
    old.write_bytes(b"x" * 10)
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    fresh = folder / "fresh.npy.abcd1234.tmp"
    fresh.write_bytes(b"x")
    other_host = folder / "remote.npy.00000000-1.abcd1234.tmp"  # another machine, recent
    other_host.write_bytes(b"x")
    table_old = cache.directory / "tables" / "t.parquet.zz.tmp"
    table_old.parent.mkdir(exist_ok=True)
    table_old.write_bytes(b"x")
    os.utime(table_old, (time.time() - 3600, time.time() - 3600))
    unrelated = folder / "notes.tmp"  # not a cache entry's temp: never touched
    unrelated.write_bytes(b"x")
    os.utime(unrelated, (time.time() - 3600, time.time() - 3600))
    with cache.writer("live", dtype=np.float64) as live:  # a concurrent writer (this process)
        live.append(np.ones((3, 2)))
        reopened = DescriptorCache(cache.directory)
        assert live.tmp.exists()
    assert sorted(p.name for p in reopened.removed_leftovers) == sorted(
        [dead, old.name, table_old.name])
    assert fresh.exists() and other_host.exists() and unrelated.exists()
    np.testing.assert_array_equal(reopened.get("live"), 1.0)
    assert reopened.get("killed") is None
